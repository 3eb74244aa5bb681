"""Inpainting datasets: CelebA, folders of images, the demo photographs; ``build_dataset``.

Every dataset returns a per-sample ``Batch``: image (3, H, W) in [-1, 1], mask (1, H, W) with 1
on known pixels and 0 on holes, edge and gray (1, H, W) of the full unmasked image, and the
sample's dataset index. Training samples are random (crop, flip, mask); evaluation samples are
fixed, image ``i`` paired with mask ``i mod n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ctsdg.data.celeba import CELEBA_CROP, CELEBA_PARTITIONS, Split, celeba_files, celeba_paths
from ctsdg.data.demo import DemoImages
from ctsdg.data.freeform import ALL_BUCKETS, FREE_FORM_TRAIN_RANGE, FreeFormMasks
from ctsdg.data.images import (
    FITS,
    IMAGE_EXTENSIONS,
    Fit,
    UnreadableImageError,
    center_crop,
    fit_image,
    list_images,
    read_rgb,
    require_folder,
    resize,
    size_hw,
)
from ctsdg.data.loader import Batch, SampleKey, sample_generators
from ctsdg.data.masks import MaskFiles
from ctsdg.data.skipping import SkipRegistry
from ctsdg.data.structure import STRUCTURES, Structure, structure_inputs
from ctsdg.data.tensors import image_to_tensor
from ctsdg.errors import InputError

if TYPE_CHECKING:
    from ctsdg.config import Config

Kind = Literal["celeba", "folder", "demo"]
KINDS: tuple[Kind, ...] = ("celeba", "folder", "demo")
SPLITS: tuple[Split, ...] = get_args(Split)


#: Free-form evaluation masks when no mask folder is given: 10 % buckets from 0 to 70 %, i.e.
#: the MindSpore port's three reporting groups (0-20, 20-40, 40-60 %) and the range above them.
FREE_FORM_EVAL_BUCKETS: tuple[tuple[int, int], ...] = ALL_BUCKETS[:7]


# --------------------------------------------------------------------------- image sources


class ImageSource(Protocol):
    """Where ``InpaintingDataset`` gets its RGB images from."""

    def __len__(self) -> int: ...

    def describe(self, index: int) -> str:
        """A name for messages (the file path)."""
        ...

    def load(self, index: int, rng: np.random.Generator | None) -> Image.Image:
        """RGB image of the dataset's (H, W); random geometry from ``rng``, fixed when None.

        Raises UnreadableImageError for a file that cannot be decoded.
        """
        ...


class FileImages:
    """Image files, read and brought to (H, W).

    Args:
        files: the image files, in dataset order.
        size: output (H, W).
        fit: geometry (``images.fit_image``), used when ``square_crop`` is None.
        hflip: random horizontal flips in training.
        square_crop: CelebA geometry instead of ``fit``: a centred square of this side (at most
            the image's shorter side), then a bilinear resize to (H, W).
    """

    def __init__(
        self,
        files: Sequence[Path],
        size: tuple[int, int],
        *,
        fit: Fit = "resize_crop",
        hflip: bool = True,
        square_crop: int | None = None,
    ) -> None:
        self.files = list(files)
        self.size = size
        self.fit = fit
        self.hflip = hflip
        self.square_crop = square_crop

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def load(self, index: int, rng: np.random.Generator | None) -> Image.Image:
        image = read_rgb(self.files[index])
        if self.square_crop is None:
            return fit_image(image, self.size, fit=self.fit, rng=rng, hflip=self.hflip)
        side = min(self.square_crop, *image.size)
        image = resize(center_crop(image, (side, side)), self.size)
        if rng is not None and self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


class MaskSource(Protocol):
    """Where ``InpaintingDataset`` gets its holes from (``MaskFiles``, ``FreeFormMasks``)."""

    def holes(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """bool (H, W), True on holes: random with ``rng``, for sample ``index`` without."""
        ...


# --------------------------------------------------------------------------- the dataset


class InpaintingDataset(Dataset[Batch]):
    """Images paired with masks, plus the structure inputs (gray, edges) of each image.

    Index it with an int (evaluation; or training with the dataset's own generator, see
    ``reseed``) or with a ``SampleKey`` from ``InfiniteSampler`` (training: the sample's
    randomness then comes from the key alone, which makes runs and resumes exact).

    Args:
        images: the image source.
        masks: the mask source.
        train: random geometry and masks, unreadable files skipped (with a warning, counted in
            ``skipped_files``) and replaced by the next readable index; otherwise fixed
            geometry and masks, and an unreadable file is an InputError.
        sigma: Canny sigma of the edges.
        structure: ``"correct"`` or ``"authors"`` gray / edge inputs (``structure.py``).
        seed: seed of the generator used for bare-integer training indices.
        limit: use only the first ``limit`` images.
    """

    def __init__(
        self,
        images: ImageSource,
        masks: MaskSource,
        *,
        train: bool,
        sigma: float = 2.0,
        structure: Structure = "correct",
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        if structure not in STRUCTURES:
            raise InputError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        self.images = images
        self.masks = masks
        self.train = train
        self.sigma = sigma
        self.structure = structure
        self._rng = np.random.default_rng(seed)
        self._length = len(images) if limit is None else min(max(limit, 0), len(images))
        if self._length == 0:
            raise InputError(f"the dataset is empty (limit={limit}, {len(images)} images)")
        self._skipped = SkipRegistry(self._length, images.describe, "image")

    def __len__(self) -> int:
        return self._length

    def reseed(self, seed: np.random.SeedSequence | int) -> None:
        """Reset the generator of bare-integer training indices (called in each worker)."""
        self._rng = np.random.default_rng(seed)

    @property
    def skipped_files(self) -> list[str]:
        """Training files skipped so far because they could not be read (all workers)."""
        files = self._skipped.files
        if isinstance(self.masks, MaskFiles):
            files += self.masks.skipped.files
        return files

    def __getitem__(self, key: int | SampleKey) -> Batch:
        if isinstance(key, SampleKey):
            index = key.index
            image_rng, mask_rng = sample_generators(key) if self.train else (None, None)
        else:
            index = int(key)
            if self.train:
                seeds = self._rng.integers(0, 2**63, size=2)
                image_rng, mask_rng = (np.random.default_rng(int(s)) for s in seeds)
            else:
                image_rng = mask_rng = None
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        index, image = self._load_image(index, image_rng)
        holes = self.masks.holes(index, mask_rng)
        array = np.array(image, dtype=np.uint8)  # (H, W, 3)
        gray, edge = structure_inputs(array, self.sigma, self.structure)
        return Batch(
            image=image_to_tensor(array),
            mask=torch.from_numpy((~holes).astype(np.float32))[None],
            edge=torch.from_numpy(edge)[None],
            gray=torch.from_numpy(gray)[None],
            index=torch.tensor(index, dtype=torch.int64),
        )

    def _load_image(self, index: int, rng: np.random.Generator | None) -> tuple[int, Image.Image]:
        """(index actually used, RGB image): training replaces unreadable files."""
        if not self.train:
            try:
                return index, self.images.load(index, None)
            except UnreadableImageError as err:
                raise InputError(
                    f"cannot read evaluation image {err.path}: {err.reason} (evaluation stops "
                    "instead of skipping it, which would change the metrics)"
                ) from err
        n = len(self)
        for step in range(n):
            i = (index + step) % n
            if self._skipped.is_skipped(i):
                continue
            try:
                return i, self.images.load(i, rng)
            except UnreadableImageError as err:
                self._skipped.mark(i, err.reason)
        raise InputError(f"none of the {n} training images could be read")


# --------------------------------------------------------------------------- build_dataset


def build_dataset(
    kind: Kind,
    split: Split,
    *,
    data_root: str | Path | None = None,
    anno_path: str | Path | None = None,
    masks_root: str | Path | None = None,
    image_size: int | Sequence[int] = (256, 256),
    sigma: float = 2.0,
    structure: Structure = "correct",
    partition: int | Sequence[int] | None = None,
    fit: Fit = "resize_crop",
    hflip: bool | None = None,
    mask_augment: bool = True,
    mask_ratio_range: Sequence[float] | None = None,
    limit: int | None = None,
    seed: int = 0,
    mask_seed: int = 0,
) -> InpaintingDataset:
    """Build a training or evaluation dataset from the seed's configuration keys.

    Samples are ``Batch``es: ``image`` (3, H, W) float32 RGB in [-1, 1]; ``mask`` (1, H, W)
    float32, **1 on known pixels, 0 on holes** (mask files are white on holes: gray >= 50 % of
    full scale); ``edge`` (1, H, W) in {0, 1} and ``gray`` (1, H, W) in [0, 1], both of the full
    unmasked image; ``index`` () int64.

    Args:
        kind: ``"celeba"`` (``img_align_celeba/`` + ``list_eval_partition.txt``; centre crop
            178 x 178, bilinear resize), ``"folder"`` (every jpg / jpeg / png / bmp / webp under
            ``data_root``, recursively: Places2, Paris StreetView, your photographs) or
            ``"demo"`` (photographs shipped with scikit-image; ``data_root`` is ignored).
        split: ``"train"`` gives random crops / flips / masks; ``"val"`` and ``"test"`` give
            fixed ones. For CelebA it also picks the partition (0, 1, 2) unless ``partition``
            is given. A folder is used whole for every split.
        data_root: CelebA: the folder holding ``img_align_celeba/`` (or that folder itself);
            folder: the image folder.
        anno_path: CelebA partition file; None: ``list_eval_partition.txt`` in ``data_root``
            or beside the image folder.
        masks_root: folder of mask images, white = hole (NVIDIA's training or testing masks, or
            a set from ``write_mask_set``), searched recursively. None: free-form masks
            generated on the fly: training ratios in ``mask_ratio_range`` (default
            (0.05, 0.6)); evaluation sample ``i`` gets a fixed mask from 10 % bucket
            ``i mod 7`` of 0-10 % ... 60-70 %.
        image_size: (H, W) of the samples (the MindSpore port's ``image_load_size``), or one int.
        sigma: Canny sigma (the MindSpore port's ``sigma``, default 2).
        structure: ``"correct"`` gray / edges from the true image (new training) or
            ``"authors"``, the authors' wrapped-uint8 input (models trained by the authors'
            code or the MindSpore port).
        partition: CelebA partition number(s) to use (the MindSpore port's ``anno_train_index`` /
            ``anno_eval_index``); None: 0 / 1 / 2 for train / val / test.
        fit: folder geometry: ``"resize_crop"`` (shorter side to the target, then a random
            crop in training, a centre crop otherwise), ``"crop"`` (crop at native resolution)
            or ``"resize"`` (stretch the whole image).
        hflip: random horizontal flips in training; None: on for folders and the demo, off for
            CelebA (the MindSpore port does not flip).
        mask_augment: training: random flips and 90-degree rotations of mask files.
        mask_ratio_range: (lo, hi): keep only mask files with a hole ratio in (lo, hi] at
            ``image_size``; with free-form masks, the training ratio range, and in evaluation
            only the 10 % buckets inside (lo, hi].
        limit: evaluation: use only the first ``limit`` images (a quick look).
        seed: seed of bare-integer training indexing (under ``build_loader`` training samples
            follow the loader's seed instead).
        mask_seed: seed of the free-form evaluation masks; keep the default to compare runs
            on the same masks.

    Raises:
        InputError: missing or empty folders, a missing or malformed partition file, listed
            images that are missing, an invalid option.
    """
    if kind not in KINDS:
        raise InputError(f"dataset kind must be one of {KINDS}, got {kind!r}")
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if structure not in STRUCTURES:
        raise InputError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    if fit not in FITS:
        raise InputError(f"fit must be one of {FITS}, got {fit!r}")
    size = size_hw(image_size)
    if sigma < 0:
        raise InputError(f"sigma must be >= 0, got {sigma}")
    train = split == "train"
    ratio_range = (
        (float(mask_ratio_range[0]), float(mask_ratio_range[1]))
        if mask_ratio_range is not None
        else None
    )

    images: FileImages | DemoImages
    if kind == "demo":
        images = DemoImages(size, train=train, hflip=True if hflip is None else hflip)
    else:
        if data_root is None:
            raise InputError(f"a {kind} dataset needs data_root")
        root = Path(data_root)
        if kind == "celeba":
            image_dir, anno = celeba_paths(root, Path(anno_path) if anno_path else None)
            if partition is None:
                partitions: Sequence[int] = [CELEBA_PARTITIONS[split]]
            else:
                partitions = [partition] if isinstance(partition, int) else list(partition)
            files = celeba_files(image_dir, anno, partitions)
            images = FileImages(files, size, hflip=bool(hflip), square_crop=CELEBA_CROP)
        else:
            require_folder(root, "image folder")
            files = list_images(root)
            if not files:
                raise InputError(
                    f"no image ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under {root}"
                )
            images = FileImages(files, size, fit=fit, hflip=True if hflip is None else hflip)

    masks: MaskFiles | FreeFormMasks
    if masks_root is not None:
        masks = MaskFiles(Path(masks_root), size, ratio_range=ratio_range, augment=mask_augment)
    else:
        buckets = FREE_FORM_EVAL_BUCKETS
        if ratio_range is not None:
            lo, hi = ratio_range
            buckets = tuple(b for b in buckets if lo <= b[0] / 100 and b[1] / 100 <= hi)
            if not train and not buckets:
                raise InputError(
                    f"no free-form evaluation bucket (0-10 % ... 60-70 %) lies inside "
                    f"mask_ratio_range ({lo}, {hi}]"
                )
        masks = FreeFormMasks(
            size,
            ratio_range=ratio_range or FREE_FORM_TRAIN_RANGE,
            buckets=buckets or FREE_FORM_EVAL_BUCKETS,
            seed=mask_seed,
        )
    return InpaintingDataset(
        images,
        masks,
        train=train,
        sigma=sigma,
        structure=structure,
        seed=seed,
        limit=None if train else limit,
    )


def dataset_from_config(
    config: Config,
    split: Split,
    *,
    structure: Structure | None = None,
    limit: int | None = None,
    mask_ratio_range: Sequence[float] | None = None,
) -> InpaintingDataset:
    """`build_dataset` with the run config's keys (the MindSpore port's names).

    Training uses ``data_root``, ``train_masks_root``, ``anno_train_index`` and
    ``mask_ratio_range``; ``val`` and ``test`` use ``eval_data_root`` (default ``data_root``),
    ``eval_masks_root`` and, for CelebA, partition 1 (val) or ``anno_eval_index`` (test).
    ``structure`` overrides the config's structure-input convention.
    """
    train = split == "train"
    root = config.data_root if train else (config.eval_data_root or config.data_root)
    masks = config.train_masks_root if train else config.eval_masks_root
    if config.dataset == "celeba":
        partition = {"train": config.anno_train_index, "val": 1, "test": config.anno_eval_index}
    else:
        partition = {}
    ratio_range = mask_ratio_range
    if ratio_range is None and train and not masks:
        ratio_range = config.mask_ratio_range
    return build_dataset(
        config.dataset,
        split,
        data_root=root or None,
        anno_path=config.anno_path or None,
        masks_root=masks or None,
        image_size=config.image_load_size,
        sigma=config.sigma,
        structure=structure or config.structure,
        partition=partition.get(split),
        mask_ratio_range=ratio_range,
        limit=limit,
        seed=config.seed,
    )
