"""Reading image files: as RGB for the datasets, in their own mode for inpainting; the crop /
resize / flip geometry of the datasets.

Datasets get uint8 RGB PIL images (`read_rgb`); tensors are made in ``datasets.py``. Resizing
uses PIL's bilinear filter, as the authors' torchvision pipeline does for PIL images.

Inpainting keeps the picture as the user has it (`open_image`, `split_image`): the model sees
8-bit RGB, and the result is rebuilt in the input's mode and depth with every known pixel as it
was decoded. RGB, RGBA, L, LA, 16-bit gray (``I;16``, ``I``), palette (``P``, known pixels keep
their palette index, filled ones take the nearest palette colour), CMYK and bilevel (``1``)
images keep their mode; palette images with transparency come back RGBA, any other mode RGB,
with an `InpaintWarning` saying so. Multi-frame files (animated GIF, multi-page TIFF) are refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from ctsdg.errors import InpaintWarning, InputError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Fit = Literal["resize_crop", "crop", "resize"]
FITS: tuple[Fit, ...] = ("resize_crop", "crop", "resize")

# What decoding untrusted bytes may raise: anything. PIL's decoders raise OSError, ValueError
# and SyntaxError for most bad data, but others escape from some plugins on mutated files
# (NotImplementedError from DDS, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError
# from EXIF and TIFF tags), so every Exception met while a file is opened or decoded means "this
# file is unreadable" (tests/test_fuzz.py). KeyboardInterrupt and SystemExit are not Exceptions.
DECODE_ERRORS: tuple[type[BaseException], ...] = (Exception,)

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
        raise UnreadableImageError(path, decode_reason(err)) from err


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


# --------------------------------------------------------------------------- inpainting input

#: ``rebuild(rgb, holes)``: the inpainted uint8 (H, W, 3) RGB and bool (H, W) holes -> the result
#: in the input's type and mode, known pixels as they were.
Rebuild = Callable[[np.ndarray, np.ndarray], Any]


def open_image(path: Path, what: str = "image") -> Image.Image:
    """Decode an image file in its own mode, EXIF orientation applied; InputError naming it.

    A JPEG's quantisation tables and chroma subsampling are kept in ``info["jpeg_qtables"]`` /
    ``info["jpeg_subsampling"]`` so that a JPEG result can be encoded like its source.
    Multi-frame files are refused: only one frame would be inpainted and written.
    """
    try:
        with Image.open(path) as opened:
            require_one_frame(opened, f"{what} {path}")
            if opened.mode in ("RGB", "RGBA") and _sixteen_bit_colour(opened):
                warnings.warn(
                    f"{path} has 16 bits per colour channel, which Pillow decodes to 8: the "
                    "result is 8-bit",
                    InpaintWarning,
                    stacklevel=2,
                )
            opened.load()
            hints = {}
            if opened.format == "JPEG":
                from PIL import JpegImagePlugin

                hints = {
                    "jpeg_qtables": opened.quantization,  # type: ignore[attr-defined]
                    "jpeg_subsampling": JpegImagePlugin.get_sampling(opened),
                }
            image = ImageOps.exif_transpose(opened)
            image.info.update(hints)
            return image
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except InputError:
        raise
    except DECODE_ERRORS as err:
        raise InputError(f"cannot read {what} {path}: {decode_reason(err)}") from None


def require_one_frame(opened: Image.Image, what: str) -> None:
    """InputError when an opened file holds several frames (animated GIF, multi-page TIFF):
    only one would be inpainted. ``what`` names the file in the message."""
    frames = getattr(opened, "n_frames", 1)
    if frames > 1:
        raise InputError(
            f"{what} has {frames} frames ({opened.format}); ctsdg inpaints single images: "
            "extract the frame you want first"
        )


def decode_reason(err: BaseException, limit: int = 200) -> str:
    """A decoder's exception as one short line: its type and the first line of its message."""
    first = (str(err).splitlines() or [""])[0].strip()
    if len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _sixteen_bit_colour(image: Image.Image) -> bool:
    """Whether a not yet loaded RGB(A) file stores 16 bits per channel (its decoder's raw mode,
    e.g. ``RGB;16B`` for a 48-bit PNG), which Pillow reduces to 8."""
    for tile in getattr(image, "tile", None) or ():
        raw = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) gray of uint8 RGB, as PIL's ``convert("L")`` computes it."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def split_image(image: Image.Image | np.ndarray) -> tuple[np.ndarray, Rebuild]:
    """(uint8 (H, W, 3) RGB for the model, ``rebuild``) for a PIL image or a uint8 array.

    Arrays (H, W), (H, W, 1), (H, W, 3), (H, W, 4) come back as arrays of the same shape; PIL
    images as PIL images in their mode (see the module docstring), ICC profile and dpi kept.
    """
    if isinstance(image, Image.Image):
        return _split_pil(image)
    if isinstance(image, np.ndarray):
        return _split_array(image)
    raise InputError(f"image: expected a PIL image or a uint8 numpy array, got {type(image)}")


def _split_array(array: np.ndarray) -> tuple[np.ndarray, Rebuild]:
    if array.dtype != np.uint8:
        raise InputError(f"image: expected a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4):

        def rebuild_colour(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            out = array.copy()
            out[..., :3][holes] = rgb[holes]
            return out

        rgb = np.ascontiguousarray(array[..., :3]) if array.shape[2] == 4 else array
        return rgb, rebuild_colour
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


def _split_sixteen(
    image: Image.Image,
) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], Any]]:
    """16-bit gray: the model sees it scaled to 8 bits; filled pixels are scaled back (x 257)."""
    values = np.asarray(image)
    eight = np.asarray(sixteen_to_eight(image))

    def rebuild(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[holes] = _luminance(rgb)[holes].astype(values.dtype) * 257
        return out

    return np.repeat(eight[..., None], 3, axis=2), rebuild


def _split_pil(image: Image.Image) -> tuple[np.ndarray, Rebuild]:
    mode = image.mode
    kept = {
        k: v for k, v in image.info.items() if k in ("icc_profile", "dpi", "transparency", "exif")
    }
    kept.update({k: v for k, v in image.info.items() if k.startswith("jpeg_")})
    to_array: Callable[[np.ndarray, np.ndarray], Any]
    if mode in _SIXTEEN_BIT_MODES:
        pixels, to_array = _split_sixteen(image)
    elif mode == "P" and "transparency" not in image.info:
        pixels, to_array = _split_palette(image)
    elif mode == "CMYK":
        cmyk = np.asarray(image)

        def to_array(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            out = cmyk.copy()
            out[holes] = np.asarray(Image.fromarray(rgb).convert("CMYK"))[holes]
            return out

        pixels = np.asarray(image.convert("RGB"))
    elif mode == "1":
        bits = np.asarray(image)

        def to_array(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
            out = bits.copy()
            out[holes] = _luminance(rgb)[holes] >= 128
            return out

        pixels = np.repeat(bits[..., None].astype(np.uint8) * 255, 3, axis=2)
    else:
        if mode not in ("RGB", "RGBA", "L", "LA"):
            # LAB has an "A" band that is a colour axis, not alpha: ask Pillow, not the name
            transparent = image.has_transparency_data
            image = image.convert("RGBA" if transparent else "RGB")
            kept.pop("transparency", None)
            warnings.warn(
                f"{mode} images are inpainted and written as {image.mode}",
                InpaintWarning,
                stacklevel=3,
            )
            mode = image.mode
        array = np.asarray(image)
        if mode == "LA":  # gray and alpha
            pixels, rebuild_gray = _split_array(array[..., 0])

            def to_array(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
                return np.dstack((rebuild_gray(rgb, holes), array[..., 1]))

        else:
            pixels, to_array = _split_array(array)
    palette = image.getpalette() if mode == "P" else None

    def rebuild_pil(rgb: np.ndarray, holes: np.ndarray) -> Image.Image:
        # Image.fromarray infers 1 / L / LA / RGB / RGBA / CMYK / I;16 / I from the array
        array = to_array(rgb, holes)
        if mode == "CMYK":  # fromarray reads 4 channels as RGBA
            out = Image.frombytes("CMYK", (array.shape[1], array.shape[0]), array.tobytes())
        else:
            out = Image.fromarray(array)
        if mode == "P":
            out = out.convert("L") if out.mode != "L" else out
            out = _with_palette(out, palette)
        if out.mode != mode and not (mode.startswith("I;16") and out.mode.startswith("I;16")):
            raise AssertionError(f"rebuilt {out.mode}, expected {mode}")
        out.info.update(kept)
        return out

    return pixels, rebuild_pil


def _with_palette(indices: Image.Image, palette: list[int] | None) -> Image.Image:
    """A ``P`` image from uint8 indices (an ``L`` image) and a palette."""
    out = Image.frombytes("P", indices.size, indices.tobytes())
    if palette is not None:
        out.putpalette(palette)
    return out


def _split_palette(
    image: Image.Image,
) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], Any]]:
    """Palette images: known pixels keep their index, filled ones take the nearest colour."""
    indices = np.asarray(image)
    reference = image.copy()

    def rebuild(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        nearest = Image.fromarray(rgb).quantize(palette=reference, dither=Image.Dither.NONE)
        out = indices.copy()
        out[holes] = np.asarray(nearest)[holes]
        return out

    return np.asarray(image.convert("RGB")), rebuild
