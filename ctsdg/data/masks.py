"""Masks: reading mask files, the free-form generator, and writing evaluation mask sets.

Conventions. On disk a mask is an image that is white on holes: a pixel is a hole where its gray
value is at least half of full scale (>= 128 for 8-bit, >= 32768 for 16-bit). In numpy the
functions here return ``holes``, bool (H, W), True on holes. Datasets turn that into the
project's mask tensor, (1, H, W) float32, 1 on known pixels and 0 on holes (= 1 - holes). The hole
ratio of a mask is the fraction of hole pixels, ``1 - mean(mask)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ctsdg.data.images import (
    DECODE_ERRORS,
    UnreadableImageError,
    list_images,
    require_folder,
    sixteen_to_eight,
    size_hw,
)
from ctsdg.data.skipping import SkipRegistry
from ctsdg.errors import InputError

RatioRange = tuple[float, float]

#: The ten 10 % buckets, in percent: (0, 10], (10, 20], ..., (90, 100].
ALL_BUCKETS: tuple[tuple[int, int], ...] = tuple((p, p + 10) for p in range(0, 100, 10))

MASK_INDEX = "masks.json"


# --------------------------------------------------------------------------- reading


def read_holes(path: Path) -> Image.Image:
    """Decode a mask file as an 8-bit gray (``L``) PIL image; white = hole.

    Any mode is converted to gray first (RGB, RGBA, palette, 1-bit); 16-bit masks are scaled to
    8 bits so that the threshold stays at half of full scale.

    Raises:
        UnreadableImageError: the file is missing, not an image, truncated or corrupt.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            if opened.mode.startswith("I"):
                return sixteen_to_eight(opened)
            return opened.convert("L")
    except DECODE_ERRORS as err:
        raise UnreadableImageError(path, f"{type(err).__name__}: {err}") from err


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


def holes_to_mask(holes: np.ndarray) -> np.ndarray:
    """The project's mask from holes: float32 (1, H, W), 1 on known pixels, 0 on holes."""
    return (~holes).astype(np.float32)[None]


def hole_ratio(mask: np.ndarray) -> float:
    """Hole ratio ``1 - mean(mask)`` of a mask (1 = known), any shape."""
    return 1.0 - float(np.mean(mask))


def _check_ratio_range(ratio_range: Sequence[float]) -> RatioRange:
    lo, hi = (float(r) for r in ratio_range)
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"a hole-ratio range (lo, hi] needs 0 <= lo < hi <= 1, got ({lo}, {hi}]")
    return lo, hi


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
            lo, hi = _check_ratio_range(ratio_range)
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


# --------------------------------------------------------------------------- free-form masks


def _draw_stroke(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """A random brush stroke: a thick polyline with round joints and ends."""
    import cv2  # imported here: only the generator needs OpenCV

    h, w = canvas.shape
    side = min(h, w)
    thickness = max(1, round(rng.uniform(side / 40, side / 10) * scale))
    n_vertices = int(rng.integers(4, 13))
    point = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(n_vertices):
        # brush strokes wander: each segment turns by a bounded random angle
        angle += rng.uniform(-math.pi / 2, math.pi / 2)
        length = rng.uniform(side / 16, side / 4) * max(scale, 0.25)
        nxt = point + length * np.array([math.cos(angle), math.sin(angle)])
        nxt = np.clip(nxt, 0, [w - 1, h - 1])
        p0 = (round(point[0]), round(point[1]))
        p1 = (round(nxt[0]), round(nxt[1]))
        cv2.line(canvas, p0, p1, 255, thickness, lineType=cv2.LINE_8)
        cv2.circle(canvas, p1, thickness // 2, 255, -1, lineType=cv2.LINE_8)
        if nxt[0] in (0, w - 1) or nxt[1] in (0, h - 1):
            angle += math.pi  # bounce off the border instead of piling up against it
        point = nxt
    cv2.circle(canvas, (round(point[0]), round(point[1])), thickness // 2, 255, -1)


def _draw_box(canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """A random filled rectangle."""
    import cv2

    h, w = canvas.shape
    side = min(h, w)
    bh = max(1, round(rng.uniform(side / 16, side / 3) * scale))
    bw = max(1, round(rng.uniform(side / 16, side / 3) * scale))
    top = int(rng.integers(0, max(1, h - bh + 1)))
    left = int(rng.integers(0, max(1, w - bw + 1)))
    cv2.rectangle(canvas, (left, top), (left + bw - 1, top + bh - 1), 255, -1)


def free_form_holes(
    size: int | Sequence[int],
    ratio_range: Sequence[float],
    seed: int | Sequence[int] | np.random.Generator,
    *,
    spread: float = 0.0,
    box_probability: float = 0.2,
    max_shapes: int = 10_000,
) -> np.ndarray:
    """A free-form mask: random brush strokes and boxes, with a hole ratio in (lo, hi].

    Shapes are added one by one; one that would push the ratio above ``hi`` is undone and the
    shape scale shrinks, so that narrow ranges are reached too; when shapes are down to a few
    pixels the last hole pixels are set one by one. Adding stops as soon as the ratio passes
    ``lo``, so ratios gather just above it; ``spread`` > 0 first narrows the aim to a band of
    that fraction of the range at a random position, which spreads ratios over the range.

    Args:
        size: H = W, or (H, W).
        ratio_range: (lo, hi), 0 <= lo < hi <= 1; the hole ratio ends in (lo, hi].
        seed: an int, a sequence of ints (entropy for ``numpy.random.default_rng``) or a
            Generator. The same seed gives the same mask, whatever the global RNG state.
        spread: in [0, 1]: width of the random band aimed at, as a fraction of hi - lo (0: aim
            at the whole range).
        box_probability: the chance that a shape is a rectangle instead of a stroke.
        max_shapes: give up after this many shapes (a safety net; not reached in practice).

    Returns:
        bool (H, W), True on holes.

    Raises:
        InputError: the range is invalid or holds no achievable ratio at this size (no integer
            pixel count k with lo < k / (H W) <= hi).
    """
    h, w = size_hw(size)
    lo, hi = _check_ratio_range(ratio_range)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    total = h * w
    k_min = math.floor(lo * total) + 1  # smallest pixel count with ratio > lo
    k_max = math.floor(hi * total)  # largest with ratio <= hi
    if k_min > k_max:
        raise InputError(
            f"no {h}x{w} mask has a hole ratio in ({lo}, {hi}]: the range is narrower than "
            f"one pixel ({1 / total:.2e})"
        )
    if spread > 0:
        k_min, k_max = _random_band(k_min, k_max, spread, rng)
    canvas = np.zeros((h, w), np.uint8)
    count = 0
    scale = 1.0 + lo  # bigger shapes for bigger targets: fewer of them
    for _ in range(max_shapes):
        if count >= k_min:
            return canvas > 0
        if scale < 0.02:
            # shapes are down to a pixel or two and still overshoot: finish pixel by pixel
            free = np.flatnonzero(canvas.ravel() == 0)
            chosen = rng.choice(free, size=k_min - count, replace=False)
            canvas.ravel()[chosen] = 255
            return canvas > 0
        candidate = canvas.copy()
        if rng.random() < box_probability:
            _draw_box(candidate, rng, scale)
        else:
            _draw_stroke(candidate, rng, scale)
        new_count = int(np.count_nonzero(candidate))
        if new_count <= k_max:
            canvas, count = candidate, new_count
        else:
            scale *= 0.7
    raise RuntimeError(f"free-form mask generator did not reach ({lo}, {hi}] in {max_shapes}")


def _random_band(
    k_min: int, k_max: int, spread: float, rng: np.random.Generator
) -> tuple[int, int]:
    """A sub-range of [k_min, k_max] pixel counts, ``spread`` of its width, at a random place."""
    width = round((k_max - k_min) * min(spread, 1.0))
    first = k_min + int(rng.integers(0, k_max - k_min - width + 1))
    return first, first + width


class FreeFormMasks:
    """Free-form masks generated on the fly (when no mask folder is given).

    Training: a fresh mask per sample, its hole ratio in ``ratio_range``, spread over the range
    (a random band a tenth of the range wide). Evaluation: sample ``i`` gets a mask from bucket
    ``buckets[i mod len(buckets)]``, generated from ``(seed, i)``, the same every time.

    Args:
        size: (H, W) of the masks.
        ratio_range: training ratio range (lo, hi].
        buckets: evaluation buckets in percent, e.g. ((0, 10), (10, 20)).
        seed: seed of the evaluation masks.
    """

    def __init__(
        self,
        size: tuple[int, int],
        *,
        ratio_range: RatioRange = (0.05, 0.6),
        buckets: Sequence[tuple[int, int]] = ALL_BUCKETS[:6],
        seed: int = 0,
    ) -> None:
        self.size = size
        self.ratio_range = _check_ratio_range(ratio_range)
        self.buckets = [_check_bucket(b) for b in buckets]
        if not self.buckets:
            raise InputError("free-form evaluation masks need at least one bucket")
        self.seed = seed

    def holes(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """Holes for dataset sample ``index``: bool (H, W) (see the class docstring)."""
        if rng is None:
            lo, hi = self.buckets[index % len(self.buckets)]
            return free_form_holes(self.size, (lo / 100, hi / 100), [self.seed, index], spread=0.25)
        return free_form_holes(self.size, self.ratio_range, rng, spread=0.1)


# --------------------------------------------------------------------------- mask sets


def _check_bucket(bucket: Sequence[int]) -> tuple[int, int]:
    lo, hi = (int(b) for b in bucket)
    if not 0 <= lo < hi <= 100:
        raise InputError(f"a bucket is (lo, hi] in percent with 0 <= lo < hi <= 100, got {bucket}")
    return lo, hi


def parse_buckets(text: str) -> list[tuple[int, int]]:
    """Buckets from ``"0-10,10-20,40-60"`` (percent; each bucket is (lo, hi])."""
    buckets = []
    for item in text.split(","):
        parts = item.strip().split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"bad bucket {item.strip()!r} in {text!r}: expected LO-HI in percent")
        buckets.append(_check_bucket((int(parts[0]), int(parts[1]))))
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
) -> list[dict[str, object]]:
    """Write a reproducible evaluation mask set of free-form masks.

    Files are ``OUT_DIR/ratio_<lo>-<hi>/<nnnnn>.png``: 8-bit gray PNGs, white (255) on holes,
    black (0) on known pixels, each with a hole ratio in (lo/100, hi/100]. ``OUT_DIR/masks.json``
    lists every file with its hole ratio. Ratios spread over each bucket (``spread`` 0.25 of
    ``free_form_holes``). Mask ``n`` of bucket (lo, hi) is generated from
    ``(seed, lo, hi, n)``, so a bucket's files do not depend on which other buckets are written.

    Args:
        out_dir: folder to write into (created; existing files of the same names are replaced).
        per_bucket: number of masks per bucket (>= 1).
        size: H = W, or (H, W).
        buckets: (lo, hi) pairs in percent; default the ten 10 % buckets.
        seed: base seed.

    Returns:
        The index entries: ``{"file", "bucket", "hole_ratio"}`` per mask.
    """
    out = Path(out_dir)
    h, w = size_hw(size)
    if per_bucket < 1:
        raise InputError(f"per_bucket must be >= 1, got {per_bucket}")
    checked = [_check_bucket(b) for b in buckets]
    if not checked:
        raise InputError("write_mask_set needs at least one bucket")
    entries: list[dict[str, object]] = []
    for lo, hi in checked:
        folder = out / bucket_name((lo, hi))
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_bucket):
            holes = free_form_holes((h, w), (lo / 100, hi / 100), [seed, lo, hi, n], spread=0.25)
            path = folder / f"{n:05d}.png"
            Image.fromarray(holes.astype(np.uint8) * 255, mode="L").save(path)
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
    (out / MASK_INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return entries
