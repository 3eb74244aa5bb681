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
  to the square. An image with more than `MAX_CROPS` regions is inpainted with ``resize``
  instead (with an `InpaintWarning`): each region costs a forward pass, so thousands of
  scattered holes would otherwise take minutes.
- ``auto``: ``crop`` when the image's longer side exceeds twice ``size``, there are at most
  `MAX_AUTO_CROPS` regions and their crops cover less than half the image; ``resize``
  otherwise (small images, or holes spread over much of the picture).
- ``original`` (IOPaint's "Original"): the whole image at its own size, padded on the right and
  bottom to multiples of `SIZE_MULTIPLE` by reflection (the mask too, so a hole at the edge stays
  a hole in its mirror image and what is to be removed never reaches the model through the
  padding); the padding is cut off and only hole pixels are pasted. Reflection rather than
  repeating the edge pixels: the model sees the image's own texture continue instead of flat
  streaks it never saw in training, which its attention could copy into the holes. Images whose
  padded size exceeds ``max_original_pixels`` are refused (the attention's time grows with the
  square of the area). It needs a backend that takes any input size (not ``onnxruntime``).

`IOPaintStrategy` runs IOPaint's ``hd_strategy`` values (Original, Resize, Crop) with their own
parameters on top of the same pieces (``ctsdg serve`` maps IOPaint's requests to it).

Pixels outside the holes are returned bit-identical. Structure inputs (gray and Canny edges) are
computed from the resized / cropped square with `ctsdg.data.structure_inputs` in the checkpoint's
convention, as the data pipeline does for evaluation.

Masks (`ctsdg.data.masks.mask_holes`): white (>= 50 % gray) and opaque = hole, as IOPaint and
the NVIDIA masks. A mask whose size differs from the image's is resized (nearest) with a
warning. Images (`ctsdg.data.images.split_image`): the result has the input's mode and depth
(RGB, RGBA with the original alpha, L, LA, 16-bit gray, palette, CMYK, bilevel; other modes come
back RGB or RGBA with a warning); uint8 numpy arrays (H, W), (H, W, 1), (H, W, 3), (H, W, 4)
come back with the input's shape. Reading files, pairing folders and saving results live in
`ctsdg.jobs`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ctsdg.backends import build_runner
from ctsdg.choices import ORIGINAL_MAX_PIXELS, STRATEGIES, STRUCTURES, Strategy
from ctsdg.data.images import split_image
from ctsdg.data.masks import mask_holes
from ctsdg.data.structure import structure_inputs
from ctsdg.data.tensors import image_to_tensor, tensor_to_image
from ctsdg.errors import InpaintWarning, InputError
from ctsdg.models import Generator
from ctsdg.models.generator import SIZE_MULTIPLE

if TYPE_CHECKING:
    from ctsdg.checkpoints.loading import LoadedWeights

#: ``auto`` picks ``crop`` only with at most this many hole regions (each is a forward pass).
MAX_AUTO_CROPS = 8
#: ``crop`` falls back to ``resize`` above this many hole regions (the work stays bounded).
MAX_CROPS = 32
#: Crops per forward pass.
CROP_BATCH = 4

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)


@dataclass(frozen=True)
class Region:
    """A box ``(left, top, right, bottom)`` of the image and the holes it is responsible for."""

    box: tuple[int, int, int, int]
    own: np.ndarray  # bool (H, W) of the whole image, True on the holes this region pastes


@dataclass(frozen=True)
class IOPaintStrategy:
    """IOPaint's ``hd_strategy`` with its parameters, run with this model (`Inpainter.inpaint`).

    - ``Original``: strategy ``original`` (refused over ``max_original_pixels``).
    - ``Resize``: an image whose longer side exceeds ``resize_limit`` is resized to that longer
      side (aspect ratio kept), inpainted at that size as ``original`` and resized back; only
      hole pixels are pasted. A smaller image runs as ``original``.
    - ``Crop``: an image whose longer side exceeds ``crop_trigger_size`` is inpainted region by
      region (`Inpainter.regions`): each region's bounding box grown by ``crop_margin`` pixels
      on every side (shifted inside the image), at its own resolution as ``original``. A
      smaller image runs as ``original``.

    The full-resolution passes Resize and Crop make (their crops, their resized image and their
    fall-back to ``original``) are resized down to fit ``max_original_pixels`` when they exceed
    it, instead of being refused. The defaults are IOPaint's (its ``InpaintRequest``).
    """

    name: Literal["Original", "Resize", "Crop"] = "Crop"
    crop_margin: int = 128
    crop_trigger_size: int = 800
    resize_limit: int = 1280


class Inpainter:
    """A generator plus the padding, resizing, cropping and pasting around it.

    Args:
        generator: the CTSDG generator (eval mode is set here).
        structure: ``"correct"`` or ``"authors"`` structure inputs (the checkpoint's convention).
        size: side of the model's square input, a multiple of 128 (256 for published models).
        strategy: ``"auto"``, ``"resize"``, ``"crop"`` or ``"original"`` (see the module
            docstring).
        sigma: Canny sigma of the structure inputs (2, as in training).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast.
        backend: ``"eager"``, ``"compiled"`` or ``"onnxruntime"`` (see `ctsdg.backends`).
        merge_distance: hole regions closer than this many pixels share a crop (default
            ``size // 8``).
        max_original_pixels: largest model input of ``original``, width x height after padding
            (default `ORIGINAL_MAX_PIXELS`; at least ``SIZE_MULTIPLE ** 2``).
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
        max_original_pixels: int = ORIGINAL_MAX_PIXELS,
    ) -> None:
        if structure not in STRUCTURES:
            raise InputError(f"structure: expected correct or authors, got {structure!r}")
        if strategy not in STRATEGIES:
            raise InputError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise InputError(f"size: the model needs a multiple of {SIZE_MULTIPLE}, got {size}")
        self.max_original_pixels = max_original_pixels
        self.generator = generator.eval()
        self.structure = structure
        self.size = size
        self.strategy: Strategy = strategy
        self.sigma = sigma
        self.precision = precision
        self.merge_distance = size // 8 if merge_distance is None else merge_distance
        self.device = next(generator.parameters()).device
        self.backend = backend
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
        max_original_pixels: int = ORIGINAL_MAX_PIXELS,
    ) -> Inpainter:
        """An inpainter from any checkpoint `ctsdg.load_weights` accepts.

        ``size`` None uses the training size the weights record
        (`LoadedWeights.trained_size`: a ctsdg checkpoint's, else 256). ``structure`` None
        uses the convention recorded in the checkpoint (``authors`` for the authors' and
        MindSpore checkpoints); ``device`` may be ``"auto"``.
        """
        from ctsdg.checkpoints import load_weights

        return cls.from_weights(
            load_weights(path),
            device,
            strategy,
            size=size,
            structure=structure,
            precision=precision,
            backend=backend,
            max_original_pixels=max_original_pixels,
        )

    @classmethod
    def from_weights(
        cls,
        weights: LoadedWeights,
        device: str | torch.device = "cpu",
        strategy: Strategy = "auto",
        *,
        size: int | None = None,
        structure: str | None = None,
        precision: str = "fp32",
        backend: str = "eager",
        max_original_pixels: int = ORIGINAL_MAX_PIXELS,
    ) -> Inpainter:
        """An inpainter from weights `ctsdg.load_weights` has read (see `from_checkpoint`)."""
        from ctsdg.runtime import resolve_device

        return cls(
            weights.build_generator(resolve_device(str(device))),
            structure=structure or weights.structure,
            size=size or weights.trained_size,
            strategy=strategy,
            precision=precision,
            backend=backend,
            max_original_pixels=max_original_pixels,
        )

    @property
    def max_original_pixels(self) -> int:
        """Largest model input of ``original`` (width x height after padding)."""
        return self._max_original_pixels

    @max_original_pixels.setter
    def max_original_pixels(self, value: int) -> None:
        if value < SIZE_MULTIPLE**2:  # not even one model-sized tile
            raise InputError(
                f"max_original_pixels (--max-original-pixels): at least {SIZE_MULTIPLE}x"
                f"{SIZE_MULTIPLE} = {SIZE_MULTIPLE**2}, got {value}"
            )
        self._max_original_pixels = value

    # ------------------------------------------------------------------ public API

    def inpaint(
        self,
        image: ImageLike,
        mask: Image.Image | np.ndarray,
        *,
        iopaint: IOPaintStrategy | None = None,
        check: Callable[[], None] | None = None,
    ) -> ImageLike:
        """Fill the holes of ``image``; pixels outside them are returned unchanged.

        Args:
            image: a PIL image (any mode) or a uint8 array (H, W), (H, W, 1), (H, W, 3) or
                (H, W, 4).
            mask: a PIL image (any mode; white and opaque = hole) or an array (H, W) /
                (H, W, 1), uint8 (>= 128 = hole) or bool (True = hole). Resized (nearest,
                with a warning) if its size differs.
            iopaint: run IOPaint's strategy instead of ``self.strategy``.
            check: called before each forward pass; whatever it raises stops the work there
                (the server's ``--timeout``).

        Returns:
            The same type, size and mode / shape as ``image`` (see the module docstring for
            modes that are converted). An empty mask returns a copy of the input without
            running the model.
        """
        pixels, rebuild = split_image(image)
        holes = mask_holes(mask, pixels.shape[:2])
        if not holes.any():
            return image.copy()
        return rebuild(self.inpaint_rgb(pixels, holes, iopaint=iopaint, check=check), holes)

    def inpaint_rgb(
        self,
        rgb: np.ndarray,
        holes: np.ndarray,
        *,
        iopaint: IOPaintStrategy | None = None,
        check: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """uint8 (H, W, 3) RGB and bool (H, W) holes -> uint8 (H, W, 3), holes filled
        (``iopaint``, ``check``: see `inpaint`)."""
        if not holes.any():
            return rgb.copy()
        if iopaint is not None:
            return self._inpaint_iopaint(rgb, holes, iopaint, check)
        result = rgb.copy()
        regions = self._auto_regions(holes) if self.strategy == "auto" else None
        strategy = self.strategy if self.strategy != "auto" else "crop" if regions else "resize"
        if strategy == "original":
            if check is not None:
                check()
            filled = self._fill_native(rgb, holes)
            result[holes] = filled[holes]
            return result
        if strategy == "resize":
            regions = [_whole(holes)]
        elif regions is None:  # crop asked for by name
            regions = self.regions(holes)
        for start in range(0, len(regions), CROP_BATCH):
            if check is not None:
                check()
            chunk = regions[start : start + CROP_BATCH]
            filled = self._fill(
                [_crop(rgb, r.box) for r in chunk], [_crop(holes, r.box) for r in chunk]
            )
            for region, patch in zip(chunk, filled, strict=True):
                left, top, right, bottom = region.box
                own = region.own[top:bottom, left:right]
                result[top:bottom, left:right][own] = patch[own]
        return result

    def check_original(self, width: int, height: int) -> None:
        """Raise `InputError` (one line) if ``original`` cannot run a ``width`` x ``height`` image
        here: its padded size exceeds ``max_original_pixels``, or the backend has a fixed size."""
        if self.backend == "onnxruntime":
            raise InputError(
                f"strategy original: backend onnxruntime runs the model at {self.size}x"
                f"{self.size} only; use --backend eager or compiled, or strategy auto, resize or "
                "crop"
            )
        padded_width, padded_height = _padded(width), _padded(height)
        if padded_width * padded_height > self.max_original_pixels:
            raise InputError(
                f"strategy original: a {width}x{height} image runs padded to {padded_width}x"
                f"{padded_height} = {padded_width * padded_height} pixels, over the limit of "
                f"{self.max_original_pixels} (--max-original-pixels); use strategy auto, resize "
                "or crop"
            )

    def choose_strategy(self, holes: np.ndarray) -> Literal["resize", "crop"]:
        """``auto``'s choice for these holes (see the module docstring)."""
        return "crop" if self._auto_regions(holes) else "resize"

    def _auto_regions(self, holes: np.ndarray) -> list[Region] | None:
        """The crop regions when ``auto`` chooses crop for these holes, else None (resize)."""
        height, width = holes.shape
        if max(height, width) <= 2 * self.size:
            return None
        components = self._components(holes)  # computed once, for the count and the regions
        if components[0] > MAX_AUTO_CROPS:
            return None
        regions = self.regions(holes, components=components)
        covered = np.zeros_like(holes)
        for r in regions:
            left, top, right, bottom = r.box
            covered[top:bottom, left:right] = True
        return regions if covered.mean() < 0.5 else None

    def regions(
        self,
        holes: np.ndarray,
        margin: int | None = None,
        *,
        components: tuple[int, np.ndarray] | None = None,
    ) -> list[Region]:
        """Hole regions and their crop boxes, in reading order of their first pixel.

        Boxes are squares (see the module docstring), or with ``margin`` the region's bounding
        box grown by ``margin`` pixels on every side (IOPaint's crop), shifted inside the image.

        More than `MAX_CROPS` regions give one region, the whole image (``resize``), with an
        `InpaintWarning`: each region costs a forward pass and an image-sized mask.
        ``components``: `_components`' result for these holes, when the caller has it.
        """
        height, width = holes.shape
        found, labels = components if components is not None else self._components(holes)
        if found > MAX_CROPS:
            warnings.warn(
                f"{found} separate hole regions is more than crop's {MAX_CROPS}: inpainted "
                "with resize instead",
                InpaintWarning,
                stacklevel=3,
            )
            return [_whole(holes)]
        regions = []
        for label in range(1, found + 1):
            own = holes & (labels == label)
            ys, xs = np.nonzero(own)
            if ys.size == 0:
                continue
            top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            # Twice the region's extent gives the model context on every side; at least the
            # model's size so that small holes are inpainted at native resolution.
            side = max(self.size, 2 * max(bottom - top, right - left))
            side_x = side if margin is None else right - left + 2 * margin
            side_y = side if margin is None else bottom - top + 2 * margin
            x0, x1 = _centred_span((left + right) / 2, side_x, width)
            y0, y1 = _centred_span((top + bottom) / 2, side_y, height)
            regions.append(Region((x0, y0, x1, y1), own))
        return regions

    def _components(self, holes: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of regions, int32 labels 1..n) of the holes merged within merge_distance."""
        import cv2

        grow = 2 * (self.merge_distance // 2) + 1  # odd kernel: merge within merge_distance
        merged = cv2.dilate(holes.astype(np.uint8), np.ones((grow, grow), np.uint8))
        count, labels = cv2.connectedComponents(merged, connectivity=8)
        return count - 1, labels

    # ------------------------------------------------------------------ model

    def _inpaint_iopaint(
        self,
        rgb: np.ndarray,
        holes: np.ndarray,
        hd: IOPaintStrategy,
        check: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """IOPaint's strategy ``hd`` (see `IOPaintStrategy`); holes filled, the rest as given
        (``check`` before each forward pass, as in `inpaint`)."""
        check = check or (lambda: None)
        result = rgb.copy()
        height, width = holes.shape
        longer = max(height, width)
        if hd.name == "Crop" and longer > hd.crop_trigger_size:
            for region in self.regions(holes, margin=hd.crop_margin):
                check()
                left, top, right, bottom = region.box
                patch = self._fill_native(
                    _crop(rgb, region.box), _crop(holes, region.box), fit=True
                )
                own = region.own[top:bottom, left:right]
                result[top:bottom, left:right][own] = patch[own]
            return result
        check()
        if hd.name == "Resize" and longer > hd.resize_limit:
            scale = hd.resize_limit / longer
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            filled = self._fill_native(rgb, holes, fit=True, size=size)
        else:
            filled = self._fill_native(rgb, holes, fit=hd.name != "Original")
        result[holes] = filled[holes]
        return result

    def _fill_native(
        self,
        rgb: np.ndarray,
        holes: np.ndarray,
        *,
        fit: bool = False,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """The model's composite of a whole image at its own size (or ``size``, (h, w)), padded.

        Over ``max_original_pixels``: refused (`check_original`), or with ``fit`` resized down to
        the largest size within it. Returns uint8 (H, W, 3) at the input's size.
        """
        height, width = holes.shape
        run_height, run_width = size or (height, width)
        if not fit or self.backend == "onnxruntime":
            self.check_original(run_width, run_height)
        if _padded(run_width) * _padded(run_height) > self.max_original_pixels:
            run_height, run_width = _fitting_size(run_height, run_width, self.max_original_pixels)
        scaled = (run_height, run_width) != (height, width)
        small, small_holes = rgb, holes
        if scaled:
            small, small_holes = _resized(rgb, holes, (run_width, run_height))
        pad = ((0, _padded(run_height) - run_height), (0, _padded(run_width) - run_width))
        padded = np.pad(small, (*pad, (0, 0)), mode="reflect")
        padded_holes = np.pad(small_holes, pad, mode="reflect")
        comp = self._composite([padded], [padded_holes])[:, :, :run_height, :run_width]
        if scaled:  # only ever shrunk to run, so this enlarges
            comp = F.interpolate(comp, size=(height, width), mode="bilinear")
        return tensor_to_image(comp[0])

    def _fill(self, crops: list[np.ndarray], holes: list[np.ndarray]) -> list[np.ndarray]:
        """Inpaint crops of any size through the model's square: uint8 (h, w, 3) each."""
        s = self.size
        pairs = [_resized(crop, hole, (s, s)) for crop, hole in zip(crops, holes, strict=True)]
        comp = self._composite([p[0] for p in pairs], [p[1] for p in pairs])  # (B, 3, s, s)
        filled = []
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            up = F.interpolate(
                comp[i : i + 1], size=(h, w), mode="bilinear", antialias=h < s or w < s
            )
            filled.append(tensor_to_image(up[0]))
        return filled

    def _composite(self, images: list[np.ndarray], holes: list[np.ndarray]) -> torch.Tensor:
        """The model's composite of uint8 (H, W, 3) images of one size with their bool holes:
        known pixels kept, holes from the output; (B, 3, H, W) float32 in [-1, 1]."""
        tensors, masks, edges, grays = [], [], [], []
        for image, hole in zip(images, holes, strict=True):
            gray, edge = structure_inputs(image, self.sigma, self.structure)  # type: ignore[arg-type]
            tensors.append(image_to_tensor(image))  # contiguous (3, H, W), as the datasets make it
            masks.append((~hole).astype(np.float32)[None])
            edges.append(edge[None])
            grays.append(gray[None])
        image = torch.stack(tensors).to(self.device)
        mask, edge, gray = (
            torch.from_numpy(np.stack(a)).to(self.device) for a in (masks, edges, grays)
        )
        output = self.runner(image, mask, gray, edge)  # (B, 3, H, W) float32
        return image * mask + output * (1 - mask)


# --------------------------------------------------------------------------- geometry


def _resized(
    rgb: np.ndarray, holes: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """An image (bilinear) and its holes resized to ``size`` (width, height).

    A resized pixel is a hole if any part of it covers one (bilinear coverage > 0): shrinking
    must not let the content to be removed leak into the model's input.
    """
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    cover = Image.fromarray(holes.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    return small, np.asarray(cover) > 0


def _padded(side: int) -> int:
    """``side`` rounded up to the model's multiple."""
    return -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE


def _fitting_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """The largest (h, w) of the aspect ratio of (height, width) whose padded area <= ``limit``."""
    blocks = limit // SIZE_MULTIPLE**2  # model-multiple tiles the padded input may use
    scale = max(
        min(rows * SIZE_MULTIPLE / height, (blocks // rows) * SIZE_MULTIPLE / width)
        for rows in range(1, blocks + 1)
    )
    scale = min(scale, 1.0)
    return max(1, int(height * scale)), max(1, int(width * scale))


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


__all__ = [
    "MAX_AUTO_CROPS",
    "MAX_CROPS",
    "ORIGINAL_MAX_PIXELS",
    "STRATEGIES",
    "IOPaintStrategy",
    "InpaintWarning",
    "Inpainter",
    "Region",
]
