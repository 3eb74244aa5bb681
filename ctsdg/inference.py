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
from ctsdg.choices import STRATEGIES, STRUCTURES, Strategy
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
        if structure not in STRUCTURES:
            raise InputError(f"structure: expected correct or authors, got {structure!r}")
        if strategy not in STRATEGIES:
            raise InputError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise InputError(f"size: the model needs a multiple of {SIZE_MULTIPLE}, got {size}")
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
        )

    # ------------------------------------------------------------------ public API

    def inpaint(
        self,
        image: ImageLike,
        mask: Image.Image | np.ndarray,
        *,
        check: Callable[[], None] | None = None,
    ) -> ImageLike:
        """Fill the holes of ``image``; pixels outside them are returned unchanged.

        Args:
            image: a PIL image (any mode) or a uint8 array (H, W), (H, W, 1), (H, W, 3) or
                (H, W, 4).
            mask: a PIL image (any mode; white and opaque = hole) or an array (H, W) /
                (H, W, 1), uint8 (>= 128 = hole) or bool (True = hole). Resized (nearest,
                with a warning) if its size differs.
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
        return rebuild(self.inpaint_rgb(pixels, holes, check=check), holes)

    def inpaint_rgb(
        self, rgb: np.ndarray, holes: np.ndarray, *, check: Callable[[], None] | None = None
    ) -> np.ndarray:
        """uint8 (H, W, 3) RGB and bool (H, W) holes -> uint8 (H, W, 3), holes filled
        (``check``: see `inpaint`)."""
        result = rgb.copy()
        if not holes.any():
            return result
        strategy = self.choose_strategy(holes) if self.strategy == "auto" else self.strategy
        regions = self.regions(holes) if strategy == "crop" else [_whole(holes)]
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

    def choose_strategy(self, holes: np.ndarray) -> Literal["resize", "crop"]:
        """``auto``'s choice for these holes (see the module docstring)."""
        height, width = holes.shape
        if max(height, width) <= 2 * self.size or self._components(holes)[0] > MAX_AUTO_CROPS:
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
        """Hole regions and their crop boxes, in reading order of their first pixel.

        More than `MAX_CROPS` regions give one region, the whole image (``resize``), with an
        `InpaintWarning`: each region costs a forward pass and an image-sized mask.
        """
        height, width = holes.shape
        found, labels = self._components(holes)
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
            x0, x1 = _centred_span((left + right) / 2, side, width)
            y0, y1 = _centred_span((top + bottom) / 2, side, height)
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
        comp = image * mask + output * (1 - mask)  # (B, 3, s, s) in [-1, 1]
        filled = []
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            up = F.interpolate(
                comp[i : i + 1], size=(h, w), mode="bilinear", antialias=h < s or w < s
            )
            filled.append(tensor_to_image(up[0]))
        return filled


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


__all__ = ["MAX_AUTO_CROPS", "MAX_CROPS", "STRATEGIES", "InpaintWarning", "Inpainter", "Region"]
