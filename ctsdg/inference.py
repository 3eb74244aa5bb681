"""Inpainting real images of any size and shape: `Inpainter` and ``ctsdg inpaint``.

The model works on ``size`` x ``size`` squares (256 for the published models). `Inpainter` owns
everything between a user's picture and that square, so the model stays unaware of it:

- ``resize``: the whole image is resized to the square, inpainted, and the result (the model's
  composite) is resized back to the original size; only the hole pixels are pasted into the
  untouched original.
- ``crop``: the holes are grouped into regions (connected components, merged when they are
  closer than ``merge_distance`` pixels); each region gets a square crop with a margin (twice
  the region's longer side, at least ``size`` pixels: small holes keep native resolution), which
  is resized to the square, inpainted, resized back and pasted (hole pixels only). All crops of
  an image run as one batch. Where the crop would exceed the image it is clamped, and stretched
  to the square.
- ``auto``: ``crop`` when the image's longer side exceeds twice ``size``, there are at most
  `MAX_AUTO_CROPS` regions and their crops cover less than half the image; ``resize``
  otherwise (small images, or holes spread over much of the picture).

Pixels outside the holes are returned bit-identical. Structure inputs (gray and Canny edges) are
computed from the resized / cropped square with `ctsdg.data.structure_inputs` in the checkpoint's
convention, as the data pipeline does for evaluation.

Masks: white (>= 50 % gray) = hole, as IOPaint and the NVIDIA masks; any mode is converted to
gray first. A mask whose size differs from the image's is resized (nearest) with a warning.
Images: RGB in, RGB out; RGBA in, RGBA out with the original alpha (the model sees the colour
channels as stored); L (gray) in, L out (hole pixels get the luminance of the model's colour
result), LA likewise; other PIL modes are converted to RGB (RGBA when they carry transparency)
and returned in that mode. uint8 numpy arrays (H, W), (H, W, 1), (H, W, 3), (H, W, 4) work the
same way and come back with the input's shape.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ctsdg.backends import build_runner
from ctsdg.data.images import DECODE_ERRORS, IMAGE_EXTENSIONS, list_images, sixteen_to_eight
from ctsdg.data.structure import structure_inputs
from ctsdg.data.tensors import image_to_tensor, tensor_to_image
from ctsdg.errors import InputError
from ctsdg.models import Generator

Strategy = Literal["auto", "resize", "crop"]
STRATEGIES: tuple[Strategy, ...] = ("auto", "resize", "crop")
#: ``auto`` picks ``crop`` only with at most this many hole regions (each is a forward pass).
MAX_AUTO_CROPS = 8
#: Crops per forward pass.
CROP_BATCH = 4

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)


class InpaintWarning(UserWarning):
    """Something was adjusted to make the input usable (e.g. a mask resized)."""


@dataclass(frozen=True)
class Region:
    """A box ``(left, top, right, bottom)`` of the image and the holes it is responsible for."""

    box: tuple[int, int, int, int]
    own: np.ndarray  # bool (H, W) of the whole image, True on the holes this region pastes


class Inpainter:
    """A generator plus the padding, resizing, cropping and pasting around it.

    Args:
        generator: the CTSDG generator (eval mode is set here).
        structure: ``"correct"`` or ``"authors"`` structure inputs (the checkpoint's convention).
        size: side of the model's square input, a multiple of 128 (256 for published models).
        strategy: ``"auto"``, ``"resize"`` or ``"crop"`` (see the module docstring).
        sigma: Canny sigma of the structure inputs (2, as in training).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast.
        backend: ``"eager"``, ``"compiled"`` or ``"onnxruntime"`` (see `ctsdg.backends`).
        merge_distance: hole regions closer than this many pixels share a crop (default
            ``size // 8``).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        structure: str = "correct",
        size: int = 256,
        strategy: Strategy = "auto",
        sigma: float = 2.0,
        precision: str = "fp32",
        merge_distance: int | None = None,
        backend: str = "eager",
    ) -> None:
        if structure not in ("correct", "authors"):
            raise InputError(f"structure: expected correct or authors, got {structure!r}")
        if strategy not in STRATEGIES:
            raise InputError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if size < 128 or size % 128:
            raise InputError(f"size: the model needs a multiple of 128, got {size}")
        self.generator = generator.eval()
        self.structure = structure
        self.size = size
        self.strategy: Strategy = strategy
        self.sigma = sigma
        self.precision = precision
        self.merge_distance = size // 8 if merge_distance is None else merge_distance
        self.device = next(generator.parameters()).device
        self.model_calls = 0  # forward passes run, for tests and logs
        self.runner = build_runner(generator, backend, precision, self.device, size=size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        strategy: Strategy = "auto",
        *,
        size: int | None = None,
        structure: str | None = None,
        precision: str = "fp32",
        backend: str = "eager",
    ) -> Inpainter:
        """An inpainter from any checkpoint `ctsdg.load_weights` accepts.

        ``size`` None uses the training size a ctsdg training checkpoint records
        (``image_load_size``), else 256. ``structure`` None uses the convention recorded in the
        checkpoint (``authors`` for the authors' and MindSpore checkpoints); ``device`` may be
        ``"auto"``.
        """
        from ctsdg.checkpoints import load_weights
        from ctsdg.runtime import resolve_device

        weights = load_weights(path)
        generator = weights.build_generator(resolve_device(str(device)))
        return cls(
            generator,
            structure=structure or weights.structure,
            size=size or trained_size(weights),
            strategy=strategy,
            precision=precision,
            backend=backend,
        )

    # ------------------------------------------------------------------ public API

    def inpaint(self, image: ImageLike, mask: Image.Image | np.ndarray) -> ImageLike:
        """Fill the holes of ``image``; pixels outside them are returned unchanged.

        Args:
            image: a PIL image (any mode) or a uint8 array (H, W), (H, W, 1), (H, W, 3) or
                (H, W, 4).
            mask: a PIL image (any mode) or an array (H, W) / (H, W, C), uint8 or bool; white
                (>= 128) or True = hole. Resized (nearest, with a warning) if its size differs.

        Returns:
            The same type, size and mode / shape as ``image`` (see the module docstring for
            modes that are converted). An empty mask returns a copy of the input without
            running the model.
        """
        pixels, rebuild = _split_image(image)
        holes = _mask_holes(mask, pixels.shape[:2])
        if not holes.any():
            return image.copy()
        return rebuild(self.inpaint_rgb(pixels, holes), holes)

    def inpaint_rgb(self, rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB and bool (H, W) holes -> uint8 (H, W, 3), holes filled."""
        result = rgb.copy()
        if not holes.any():
            return result
        strategy = self.choose_strategy(holes) if self.strategy == "auto" else self.strategy
        regions = self.regions(holes) if strategy == "crop" else [_whole(holes)]
        for start in range(0, len(regions), CROP_BATCH):
            chunk = regions[start : start + CROP_BATCH]
            filled = self._fill(
                [_crop(rgb, r.box) for r in chunk], [_crop(holes, r.box) for r in chunk]
            )
            for region, patch in zip(chunk, filled, strict=True):
                left, top, right, bottom = region.box
                own = region.own[top:bottom, left:right]
                result[top:bottom, left:right][own] = patch[own]
        return result

    def choose_strategy(self, holes: np.ndarray) -> Literal["resize", "crop"]:
        """``auto``'s choice for these holes (see the module docstring)."""
        height, width = holes.shape
        if max(height, width) <= 2 * self.size:
            return "resize"
        regions = self.regions(holes)
        covered = np.zeros_like(holes)
        for r in regions:
            left, top, right, bottom = r.box
            covered[top:bottom, left:right] = True
        if len(regions) <= MAX_AUTO_CROPS and covered.mean() < 0.5:
            return "crop"
        return "resize"

    def regions(self, holes: np.ndarray) -> list[Region]:
        """Hole regions and their crop boxes, in reading order of their first pixel."""
        import cv2

        height, width = holes.shape
        grow = 2 * (self.merge_distance // 2) + 1  # odd kernel: merge within merge_distance
        merged = cv2.dilate(holes.astype(np.uint8), np.ones((grow, grow), np.uint8))
        count, labels = cv2.connectedComponents(merged, connectivity=8)
        regions = []
        for label in range(1, count):
            own = holes & (labels == label)
            ys, xs = np.nonzero(own)
            if ys.size == 0:
                continue
            top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            # Twice the region's extent gives the model context on every side; at least the
            # model's size so that small holes are inpainted at native resolution.
            side = max(self.size, 2 * max(bottom - top, right - left))
            x0, x1 = _centred_span((left + right) / 2, side, width)
            y0, y1 = _centred_span((top + bottom) / 2, side, height)
            regions.append(Region((x0, y0, x1, y1), own))
        return regions

    # ------------------------------------------------------------------ model

    def _fill(self, crops: list[np.ndarray], holes: list[np.ndarray]) -> list[np.ndarray]:
        """Inpaint crops of any size through the model's square: uint8 (h, w, 3) each."""
        s = self.size
        images, masks, edges, grays = [], [], [], []
        for crop, hole in zip(crops, holes, strict=True):
            small = np.asarray(Image.fromarray(crop).resize((s, s), Image.Resampling.BILINEAR))
            # A square pixel is a hole if any part of it covers one (bilinear coverage > 0):
            # shrinking must not let the content to be removed leak into the model's input.
            cover = Image.fromarray(hole.astype(np.uint8) * 255).resize(
                (s, s), Image.Resampling.BILINEAR
            )
            small_holes = np.asarray(cover) > 0
            gray, edge = structure_inputs(small, self.sigma, self.structure)  # type: ignore[arg-type]
            images.append(image_to_tensor(small))  # contiguous (3, s, s), as the datasets make it
            masks.append((~small_holes).astype(np.float32)[None])
            edges.append(edge[None])
            grays.append(gray[None])
        image = torch.stack(images).to(self.device)
        mask, edge, gray = (
            torch.from_numpy(np.stack(a)).to(self.device) for a in (masks, edges, grays)
        )
        output = self.runner(image, mask, gray, edge)  # (B, 3, s, s) float32
        self.model_calls += 1
        comp = image * mask + output * (1 - mask)  # (B, 3, s, s) in [-1, 1]
        filled = []
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            up = F.interpolate(
                comp[i : i + 1], size=(h, w), mode="bilinear", antialias=h < s or w < s
            )
            filled.append(tensor_to_image(up[0]))
        return filled


def trained_size(weights: Any, default: int = 256) -> int:
    """The square side a checkpoint was trained at, if it records one (training checkpoints)."""
    config = weights.extra.get("config")
    hw = config.get("image_load_size") if isinstance(config, dict) else None
    if isinstance(hw, (list, tuple)) and len(hw) == 2 and hw[0] == hw[1] and int(hw[0]) > 0:
        return int(hw[0])
    return default


# --------------------------------------------------------------------------- geometry


def _whole(holes: np.ndarray) -> Region:
    height, width = holes.shape
    return Region((0, 0, width, height), holes)


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return np.ascontiguousarray(array[top:bottom, left:right])


def _centred_span(centre: float, side: int, limit: int) -> tuple[int, int]:
    """[start, stop) of length min(side, limit) centred on ``centre``, shifted inside [0, limit)."""
    side = min(side, limit)
    start = round(centre - side / 2)
    start = min(max(start, 0), limit - side)
    return start, start + side


# --------------------------------------------------------------------------- image modes


Rebuild = Callable[[np.ndarray, np.ndarray], Any]


def _split_image(image: Image.Image | np.ndarray) -> tuple[np.ndarray, Rebuild]:
    """(uint8 (H, W, 3) RGB for the model, rebuild(result_rgb, holes) -> the input's type)."""
    if isinstance(image, Image.Image):
        return _split_pil(image)
    if isinstance(image, np.ndarray):
        return _split_array(image)
    raise InputError(f"image: expected a PIL image or a uint8 numpy array, got {type(image)}")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) gray of uint8 RGB, as PIL's ``convert("L")`` computes it."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _split_array(array: np.ndarray) -> tuple[np.ndarray, Rebuild]:
    if array.dtype != np.uint8:
        raise InputError(f"image: expected a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        channels = array.shape[2]

        def rebuild_colour(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            out = array.copy()
            out[..., :3][holes] = rgb[holes]
            return out

        return np.ascontiguousarray(array[..., :3]) if channels == 4 else array, rebuild_colour
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        gray = array.reshape(array.shape[:2])

        def rebuild_gray(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            out = gray.copy()
            out[holes] = _luminance(rgb)[holes]
            return out.reshape(array.shape)

        return np.repeat(gray[..., None], 3, axis=2), rebuild_gray
    raise InputError(
        f"image: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}"
    )


def _split_pil(image: Image.Image) -> tuple[np.ndarray, Rebuild]:
    if image.mode.startswith("I"):
        image = sixteen_to_eight(image)
    elif image.mode not in ("RGB", "RGBA", "L", "LA"):
        transparent = "A" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    mode = image.mode
    array = np.asarray(image)
    kept = {k: v for k, v in image.info.items() if k in ("icc_profile", "dpi")}
    if mode == "LA":  # gray and alpha
        pixels, rebuild_gray = _split_array(array[..., 0])

        def rebuild(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            return np.dstack((rebuild_gray(rgb, holes), array[..., 1]))

    else:
        pixels, rebuild = _split_array(array)

    def rebuild_pil(rgb: np.ndarray, holes: np.ndarray) -> Image.Image:
        # Image.fromarray infers L / LA / RGB / RGBA from the shape (the mode= argument is
        # deprecated in Pillow 11)
        out = Image.fromarray(rebuild(rgb, holes))
        if out.mode != mode:
            raise AssertionError(f"rebuilt {out.mode}, expected {mode}")
        out.info.update(kept)
        return out

    return pixels, rebuild_pil


def _mask_holes(mask: Image.Image | np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """bool (H, W) holes of a mask (white / True = hole), resized to the image if needed."""
    if isinstance(mask, np.ndarray):
        if mask.dtype == bool:
            mask = Image.fromarray(mask.astype(np.uint8) * 255)
        elif mask.dtype == np.uint8:
            mask = Image.fromarray(mask[..., 0] if mask.ndim == 3 and mask.shape[2] == 1 else mask)
        else:
            raise InputError(f"mask: expected a bool or uint8 array, got {mask.dtype}")
    if not isinstance(mask, Image.Image):
        raise InputError(f"mask: expected a PIL image or a numpy array, got {type(mask)}")
    gray = sixteen_to_eight(mask) if mask.mode.startswith("I") else mask.convert("L")
    height, width = size_hw
    if gray.size != (width, height):
        warnings.warn(
            f"mask is {gray.width}x{gray.height} but the image is {width}x{height}; resized the "
            "mask (nearest neighbour)",
            InpaintWarning,
            stacklevel=3,
        )
        gray = gray.resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(gray) >= 128


# --------------------------------------------------------------------------- files


def open_image(path: Path, what: str = "image") -> Image.Image:
    """Decode an image file in its own mode, EXIF orientation applied; InputError naming it."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except DECODE_ERRORS as err:
        raise InputError(f"cannot read {what} {path}: {type(err).__name__}: {err}") from None


def save_image(image: Image.Image, path: Path) -> None:
    """Save by the extension of ``path``; InputError for formats that cannot hold the result."""
    suffix = path.suffix.lower()
    if suffix not in (*IMAGE_EXTENSIONS, ".tif", ".tiff"):
        raise InputError(
            f"{path}: unknown output format {suffix or '(no extension)'}; use one of "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    if suffix in (".jpg", ".jpeg") and image.mode in ("RGBA", "LA"):
        raise InputError(f"{path}: JPEG cannot store the alpha channel; write .png or .webp")
    options: dict[str, Any] = {}
    if "icc_profile" in image.info:
        options["icc_profile"] = image.info["icc_profile"]
    if suffix in (".jpg", ".jpeg", ".webp"):
        options["quality"] = 95
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image.save(path, **options)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err}") from None


@dataclass(frozen=True)
class Job:
    """One image to inpaint: its file, its mask file and where the result goes."""

    image: Path
    mask: Path
    output: Path


def plan_jobs(image: Path, mask: Path, output: Path) -> list[Job]:
    """The (image, mask, output) triples of ``ctsdg inpaint IMAGE MASK -o OUT``.

    A file IMAGE takes a file MASK; OUT is a file (its extension picks the format) or an
    existing folder (the image's name is kept). A folder IMAGE takes a folder MASK, paired by
    path relative to the folder without extension (``a/1.jpg`` with ``a/1.png``), or one mask
    file for every image; OUT is a folder and keeps relative paths and extensions.
    """
    if not image.exists():
        raise InputError(f"image not found: {image}")
    if not mask.exists():
        raise InputError(f"mask not found: {mask}")
    if image.is_file():
        if mask.is_dir():
            raise InputError(f"{mask}: a folder of masks needs a folder of images, not {image}")
        target = output / image.name if output.is_dir() else output
        if not target.suffix:
            target = target.with_suffix(image.suffix)
        return [Job(image, mask, target)]
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: a folder of images needs an output folder")
    images = list_images(image)
    if not images:
        raise InputError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) found under {image}")
    if mask.is_file():
        return [Job(p, mask, output / p.relative_to(image)) for p in images]
    masks = {_key(p, mask): p for p in list_images(mask)}
    keys = {_key(p, image): p for p in images}
    missing = [str(p.relative_to(image)) for k, p in keys.items() if k not in masks]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} image(s) in {image} have no mask of the same name in {mask}: {shown}"
        )
    unused = [str(p.relative_to(mask)) for k, p in masks.items() if k not in keys]
    if unused:
        shown = ", ".join(unused[:5]) + (", ..." if len(unused) > 5 else "")
        warnings.warn(
            f"ignoring {len(unused)} mask(s) in {mask} with no image of the same name: {shown}",
            InpaintWarning,
            stacklevel=2,
        )
    return [Job(p, masks[_key(p, image)], output / p.relative_to(image)) for p in images]


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def run_jobs(
    inpainter: Inpainter, jobs: list[Job], progress: bool = True
) -> Iterator[tuple[Job, bool]]:
    """Inpaint and save every job; yields (job, whether the mask had any hole)."""
    from tqdm import tqdm

    for job in tqdm(jobs, unit="img", disable=not progress or len(jobs) < 2, file=sys.stderr):
        image = open_image(job.image)
        mask = open_image(job.mask, "mask")
        with warnings.catch_warnings():
            warnings.simplefilter("always", InpaintWarning)
            try:
                pixels, rebuild = _split_image(image)
                holes = _mask_holes(mask, pixels.shape[:2])
            except InputError as err:
                raise InputError(f"{job.image}: {err}") from None
        result = rebuild(inpainter.inpaint_rgb(pixels, holes), holes) if holes.any() else image
        save_image(result, job.output)
        yield job, bool(holes.any())


__all__ = [
    "STRATEGIES",
    "InpaintWarning",
    "Inpainter",
    "Job",
    "open_image",
    "plan_jobs",
    "run_jobs",
    "save_image",
]
