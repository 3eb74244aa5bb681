"""Masks: reading mask files and arrays, mask folders, and writing evaluation mask sets.

Conventions. On disk a mask is an image that is white on holes: a pixel is a hole where its gray
value is at least half of full scale (>= 128 for 8-bit, >= 32768 for 16-bit) **and**, when the
image has an alpha channel (RGBA, LA, PA, a palette or gray image with a transparent colour), it
is opaque (alpha >= 128): a transparent background is not a hole, whatever colour is stored
under it. In numpy the functions here return ``holes``, bool (H, W), True on holes. Datasets turn
that into the project's mask tensor, (1, H, W) float32, 1 on known pixels and 0 on holes
(= 1 - holes). The hole ratio of a mask is the fraction of hole pixels, ``1 - mean(mask)``.

The free-form mask generator lives in `ctsdg.data.freeform`.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ctsdg.data.freeform import (
    ALL_BUCKETS,
    RatioRange,
    check_bucket,
    check_ratio_range,
    free_form_holes,
)
from ctsdg.data.images import (
    DECODE_ERRORS,
    UnreadableImageError,
    decode_reason,
    list_images,
    require_folder,
    sixteen_to_eight,
    size_hw,
)
from ctsdg.data.skipping import SkipRegistry
from ctsdg.errors import InpaintWarning, InputError
from ctsdg.fileio import (
    atomic_write_bytes,
    check_output_dir,
    check_overwrite,
    existing_output,
    output_is_folder,
    writing,
)

MASK_INDEX = "masks.json"


# --------------------------------------------------------------------------- reading


def holes_image(mask: Image.Image) -> Image.Image:
    """A mask image of any mode as an ``L`` image: 255 on holes, 0 elsewhere (see the module
    docstring: white, i.e. gray >= half scale, and opaque)."""
    if mask.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        gray = np.asarray(sixteen_to_eight(mask))
        alpha = None
    else:
        if mask.mode == "P" or "transparency" in mask.info:
            has_alpha = mask.mode == "PA" or "transparency" in mask.info
            mask = mask.convert("RGBA" if has_alpha else "RGB")
        gray = np.asarray(mask.convert("L"))
        alpha = np.asarray(mask.getchannel("A")) if "A" in mask.getbands() else None
    holes = gray >= 128
    if alpha is not None:
        holes &= alpha >= 128
    return Image.fromarray(holes.astype(np.uint8) * 255)


def read_holes(path: Path) -> Image.Image:
    """Decode a mask file as an ``L`` PIL image, 255 on holes and 0 elsewhere (`holes_image`).

    Raises:
        UnreadableImageError: the file is missing, not an image, truncated or corrupt.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            return holes_image(opened)
    except DECODE_ERRORS as err:
        raise UnreadableImageError(path, decode_reason(err)) from err


def mask_holes(mask: Image.Image | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W) holes of a mask given to the API, at the image's (H, W).

    Args:
        mask: a PIL image of any mode (white and opaque = hole), or an array: bool (True =
            hole) or uint8 (H, W) / (H, W, 1) (>= 128 = hole).
        shape: the image's (H, W); a mask of another size is resized (nearest neighbour)
            with an `InpaintWarning`.
    """
    if isinstance(mask, np.ndarray):
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[..., 0]
        if mask.ndim != 2:
            raise InputError(f"mask: expected an (H, W) array, got shape {mask.shape}")
        if mask.dtype == bool:
            mask = Image.fromarray(mask.astype(np.uint8) * 255)
        elif mask.dtype == np.uint8:
            mask = Image.fromarray(mask)
        else:
            raise InputError(f"mask: expected a bool or uint8 array, got {mask.dtype}")
    if not isinstance(mask, Image.Image):
        raise InputError(f"mask: expected a PIL image or a numpy array, got {type(mask)}")
    gray = holes_image(mask)
    height, width = shape
    if gray.size != (width, height):
        warnings.warn(
            f"mask is {gray.width}x{gray.height} but the image is {width}x{height}; resized the "
            "mask (nearest neighbour)",
            InpaintWarning,
            stacklevel=3,
        )
    return gray_to_holes(gray, shape)


def gray_to_holes(
    gray: Image.Image,
    size: tuple[int, int],
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Holes of a gray mask image at (H, W): bool (H, W), True where gray >= 128.

    The mask is resized with nearest neighbour. With ``rng``, it is first flipped horizontally
    and vertically (each with probability 1/2) and rotated by a random multiple of 90 degrees,
    the training augmentation of irregular masks; this happens before the resize so that
    non-square targets keep their shape.
    """
    if rng is not None:
        k = int(rng.integers(0, 8))  # the 8 symmetries of the square
        if k & 1:
            gray = gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if k & 2:
            gray = gray.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if k & 4:
            gray = gray.transpose(Image.Transpose.ROTATE_90)
    h, w = size
    if gray.size != (w, h):
        gray = gray.resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(gray) >= 128


def hole_ratio(mask: np.ndarray) -> float:
    """Hole ratio ``1 - mean(mask)`` of a mask (1 = known), any shape."""
    return 1.0 - float(np.mean(mask))


class MaskFiles:
    """A folder of mask images (NVIDIA irregular masks, or a set written by ``write_mask_set``).

    Training draws a uniformly random mask per sample (optionally flipped / rotated); evaluation
    pairs sample ``i`` with mask ``i mod n``, files in sorted order.

    Args:
        root: the folder; searched recursively for png, jpg, jpeg, bmp, webp files.
        size: (H, W) the masks are resized to (nearest neighbour).
        ratio_range: keep only masks whose hole ratio at ``size`` is in (lo, hi]. Reading every
            mask to measure it takes time; a ``masks.json`` index written by ``write_mask_set``
            at the same size is used instead when present.
        augment: in training, flip and rotate masks at random.
    """

    def __init__(
        self,
        root: Path,
        size: tuple[int, int],
        *,
        ratio_range: RatioRange | None = None,
        augment: bool = True,
    ) -> None:
        root = require_folder(Path(root), "mask folder")
        files = list_images(root)
        if not files:
            raise InputError(f"no mask image (png, jpg, jpeg, bmp, webp) found under {root}")
        self.root = root
        self.size = size
        self.augment = augment
        self.ratios: list[float] | None = None
        if ratio_range is not None:
            lo, hi = check_ratio_range(ratio_range)
            ratios = self._measure_ratios(files)
            keep = [i for i, r in enumerate(ratios) if lo < r <= hi]
            if not keep:
                raise InputError(
                    f"no mask under {root} has a hole ratio in ({lo}, {hi}] "
                    f"(at {size[0]}x{size[1]}; {len(files)} masks, ratios "
                    f"{min(ratios):.3f} to {max(ratios):.3f})"
                )
            files = [files[i] for i in keep]
            self.ratios = [ratios[i] for i in keep]
        self.files = files
        self.skipped = SkipRegistry(len(files), self.describe, "mask")

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, index: int) -> str:
        """The path of mask ``index``."""
        return str(self.files[index])

    def _measure_ratios(self, files: list[Path]) -> list[float]:
        indexed = _read_index_ratios(self.root, self.size)
        ratios = []
        for path in files:
            key = path.relative_to(self.root).as_posix()
            if key in indexed:
                ratios.append(indexed[key])
            else:
                ratios.append(float(np.mean(self.load(path, rng=None, strict=True))))
        return ratios

    def load(self, path: Path, rng: np.random.Generator | None, *, strict: bool) -> np.ndarray:
        """Holes of one file at ``self.size``: bool (H, W), True on holes.

        An unreadable file raises InputError when ``strict``, UnreadableImageError otherwise.
        """
        try:
            gray = read_holes(path)
        except UnreadableImageError as err:
            if strict:
                raise InputError(f"cannot read mask {path}: {err.reason}") from err
            raise
        return gray_to_holes(gray, self.size, rng=rng if self.augment else None)

    def holes(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """Holes for dataset sample ``index``: bool (H, W).

        With ``rng`` (training) a random mask, unreadable files skipped with a warning; without
        (evaluation) mask ``index mod n``, an unreadable file being an InputError.
        """
        n = len(self.files)
        if rng is None:
            return self.load(self.files[index % n], None, strict=True)
        start = int(rng.integers(0, n))
        for step in range(n):
            i = (start + step) % n
            if self.skipped.is_skipped(i):
                continue
            try:
                return self.load(self.files[i], rng, strict=False)
            except UnreadableImageError as err:
                self.skipped.mark(i, err.reason)
        raise InputError(f"no mask under {self.root} could be read")


def _read_index_ratios(root: Path, size: tuple[int, int]) -> dict[str, float]:
    """Hole ratios from a ``masks.json`` index, if there is one written at ``size``."""
    path = root / MASK_INDEX
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
        if tuple(index["size"]) != tuple(size):
            return {}
        return {m["file"]: float(m["hole_ratio"]) for m in index["masks"]}
    except (ValueError, KeyError, TypeError):
        return {}  # not our index (or damaged): measure the files instead


# --------------------------------------------------------------------------- mask sets


def parse_buckets(text: str) -> list[tuple[int, int]]:
    """Buckets from ``"0-10,10-20,40-60"`` (percent; each bucket is (lo, hi])."""
    buckets = []
    for item in text.split(","):
        parts = item.strip().split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"bad bucket {item.strip()!r} in {text!r}: expected LO-HI in percent")
        buckets.append(check_bucket((int(parts[0]), int(parts[1]))))
    return buckets


def bucket_name(bucket: tuple[int, int]) -> str:
    """Folder name of a bucket: ``ratio_20-30``."""
    return f"ratio_{bucket[0]}-{bucket[1]}"


def write_mask_set(
    out_dir: str | Path,
    per_bucket: int,
    size: int | Sequence[int] = 256,
    buckets: Sequence[tuple[int, int]] = ALL_BUCKETS,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> list[dict[str, object]]:
    """Write a reproducible evaluation mask set of free-form masks.

    Files are ``OUT_DIR/ratio_<lo>-<hi>/<nnnnn>.png``: 8-bit gray PNGs, white (255) on holes,
    black (0) on known pixels, each with a hole ratio in (lo/100, hi/100]. ``OUT_DIR/masks.json``
    lists every file with its hole ratio. Ratios spread over each bucket (``spread`` 0.25 of
    ``free_form_holes``). Mask ``n`` of bucket (lo, hi) is generated from
    ``(seed, lo, hi, n)``, so a bucket's files do not depend on which other buckets are written.

    Args:
        out_dir: folder to write into (created). Every file is written atomically.
        per_bucket: number of masks per bucket (>= 1).
        size: H = W, or (H, W).
        buckets: (lo, hi) pairs in percent; default the ten 10 % buckets.
        seed: base seed.
        overwrite: replace existing files of the same names; otherwise an InputError names
            them before anything is written.

    Returns:
        The index entries: ``{"file", "bucket", "hole_ratio"}`` per mask.
    """
    out = Path(out_dir)
    h, w = size_hw(size)
    if per_bucket < 1:
        raise InputError(f"per_bucket must be >= 1, got {per_bucket}")
    checked = [check_bucket(b) for b in buckets]
    if not checked:
        raise InputError("write_mask_set needs at least one bucket")
    names = [f"{bucket_name(b)}/{n:05d}.png" for b in checked for n in range(per_bucket)]
    existing = []
    if output_is_folder(out):  # a name too long or a parent that is a file: one line
        existing = [n for n in [*names, MASK_INDEX] if existing_output(out / n) is not None]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise InputError(
            f"{out} already holds {len(existing)} of the files to write ({shown}); "
            "choose another folder or pass --overwrite"
        )
    for name in existing:  # what --overwrite still refuses (read-only) or warns about
        check_overwrite(out / name, overwrite=True)
    check_output_dir(out)
    entries: list[dict[str, object]] = []
    for lo, hi in checked:
        for n in range(per_bucket):
            holes = free_form_holes((h, w), (lo / 100, hi / 100), [seed, lo, hi, n], spread=0.25)
            path = out / bucket_name((lo, hi)) / f"{n:05d}.png"
            with writing(path):
                path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, png_bytes(holes))
            entries.append(
                {
                    "file": path.relative_to(out).as_posix(),
                    "bucket": f"{lo}-{hi}",
                    "hole_ratio": float(np.count_nonzero(holes)) / (h * w),
                }
            )
    index = {
        "format": "ctsdg-mask-set",
        "version": 1,
        "size": [h, w],
        "seed": seed,
        "per_bucket": per_bucket,
        "buckets": [f"{lo}-{hi}" for lo, hi in checked],
        "convention": "white (255) = hole; hole_ratio = hole pixels / all pixels",
        "masks": entries,
    }
    atomic_write_bytes(out / MASK_INDEX, (json.dumps(index, indent=1) + "\n").encode())
    return entries


def png_bytes(holes: np.ndarray) -> bytes:
    """bool (H, W) holes as an 8-bit gray PNG file's bytes, white (255) on holes."""
    buffer = io.BytesIO()
    Image.fromarray(holes.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()
