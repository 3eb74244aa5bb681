"""Reading image files as RGB and the crop / resize / flip geometry of the datasets.

Everything here works on PIL images and returns uint8 RGB; tensors are made in ``datasets.py``.
Resizing uses PIL's bilinear filter, as the authors' torchvision pipeline does for PIL images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from ctsdg.errors import InputError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Fit = Literal["resize_crop", "crop", "resize"]
FITS: tuple[Fit, ...] = ("resize_crop", "crop", "resize")

# What PIL raises for a file that is not an image, is truncated or is corrupt. SyntaxError and
# ValueError come from some decoders (PNG chunks, BMP headers) on malformed data.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


class UnreadableImageError(Exception):
    """An image file could not be decoded; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def list_images(root: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """All image files under ``root``, recursively, sorted by their path relative to ``root``.

    Extensions are matched case-insensitively. Hidden files and folders (names starting with a
    dot) are skipped: they are OS metadata such as macOS ``._photo.jpg`` resource forks, which
    carry an image extension but are not images.
    """
    suffixes = tuple(e.lower() for e in extensions)
    found: list[Path] = []
    visited: set[str] = set()  # real paths: a symbolic link back up the tree is walked once
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            Path(folder, f) for f in files if not f.startswith(".") and f.lower().endswith(suffixes)
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def require_folder(path: Path, what: str) -> Path:
    """``path`` if it is an existing folder, else an InputError naming it."""
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_dir():
        raise InputError(f"{what} is not a folder: {path}")
    return path


def sixteen_to_eight(image: Image.Image) -> Image.Image:
    """An ``I;16`` / ``I`` image scaled from 16 bits (0..65535) to 8 bits (``L``), rounded.

    PIL's own ``convert`` clips such images at 255, which turns most of a 16-bit photograph
    white. ``I`` images are 32-bit integers; the 16-bit PNGs that open in that mode hold 0..65535,
    so the same scale is used and anything outside it is clipped.
    """
    values = np.asarray(image).astype(np.int64)
    values = np.clip(values, 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB.

    Gray and palette images are expanded; 16-bit images are scaled (not clipped); images with
    transparency are composited on white, the background they are shown on, because the colour
    stored under a transparent pixel is arbitrary (often black).
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        image = sixteen_to_eight(image)
    if image.mode == "P" or image.mode == "PA":
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def read_rgb(path: Path) -> Image.Image:
    """Decode an image file as an RGB PIL image, EXIF orientation applied.

    Raises:
        UnreadableImageError: the file is missing, not an image, truncated or corrupt.
    """
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: truncation errors surface here, not later
            image = ImageOps.exif_transpose(opened)
            return to_rgb(image)
    except DECODE_ERRORS as err:
        raise UnreadableImageError(path, f"{type(err).__name__}: {err}") from err


def size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int or a pair of positive ints."""
    pair = [size, size] if isinstance(size, int) else list(size)
    if len(pair) != 2 or not all(isinstance(s, int | np.integer) and s > 0 for s in pair):
        raise InputError(f"a size is one positive int or [H, W], got {size!r}")
    return int(pair[0]), int(pair[1])


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bilinear resize to (H, W)."""
    h, w = size
    if image.size == (w, h):
        return image
    return image.resize((w, h), Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre crop to (H, W), offsets rounded like torchvision's ``CenterCrop``."""
    h, w = size
    width, height = image.size
    if h > height or w > width:
        raise ValueError(f"cannot crop {h}x{w} from a {height}x{width} image")
    top = round((height - h) / 2)
    left = round((width - w) / 2)
    return image.crop((left, top, left + w, top + h))


def random_crop(image: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Crop (H, W) at a uniformly random position."""
    h, w = size
    width, height = image.size
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return image.crop((left, top, left + w, top + h))


def cover(image: Image.Image, size: tuple[int, int], *, upscale_only: bool = False) -> Image.Image:
    """Resize, keeping the aspect ratio, so that the image just covers (H, W).

    With ``upscale_only``, images that already cover (H, W) are returned unchanged.
    """
    h, w = size
    width, height = image.size
    scale = max(h / height, w / width)
    if upscale_only and scale <= 1:
        return image
    # max() guards against rounding one side to a pixel short of the target
    new_w = max(w, round(width * scale))
    new_h = max(h, round(height * scale))
    return image.resize((new_w, new_h), Image.Resampling.BILINEAR)


def fit_image(
    image: Image.Image,
    size: tuple[int, int],
    *,
    fit: Fit,
    rng: np.random.Generator | None,
    hflip: bool,
) -> Image.Image:
    """Bring an image to (H, W) for training (``rng`` given) or evaluation (``rng`` None).

    Args:
        image: RGB PIL image of any size.
        size: target (H, W).
        fit: ``"resize_crop"``: shorter side scaled to the target, then a crop (random when
            training, centred otherwise); ``"crop"``: a crop at native resolution (images smaller
            than the target are first scaled up to cover it); ``"resize"``: the whole image
            stretched to (H, W).
        rng: the sample's random generator when training, None for the deterministic
            evaluation geometry.
        hflip: when training, flip horizontally with probability 1/2.
    """
    if fit == "resize":
        image = resize(image, size)
    elif fit in ("resize_crop", "crop"):
        image = cover(image, size, upscale_only=fit == "crop")
        image = center_crop(image, size) if rng is None else random_crop(image, size, rng)
    else:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if rng is not None and hflip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image
