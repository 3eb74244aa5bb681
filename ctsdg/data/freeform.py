"""Free-form masks: random brush strokes and boxes with a hole ratio in a given range.

Used when no mask folder is given (training draws a fresh mask per sample, evaluation a fixed,
seeded set per bucket) and by ``ctsdg masks`` (`ctsdg.data.masks.write_mask_set`). Masks are
bool (H, W), True on holes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ctsdg.data.images import size_hw
from ctsdg.errors import InputError

RatioRange = tuple[float, float]
#: Hole-ratio range of the free-form training masks (the MindSpore port's).
FREE_FORM_TRAIN_RANGE: RatioRange = (0.05, 0.6)

#: The ten 10 % buckets, in percent: (0, 10], (10, 20], ..., (90, 100].
ALL_BUCKETS: tuple[tuple[int, int], ...] = tuple((p, p + 10) for p in range(0, 100, 10))


def check_ratio_range(ratio_range: Sequence[float]) -> RatioRange:
    """(lo, hi) as floats; InputError unless 0 <= lo < hi <= 1."""
    lo, hi = (float(r) for r in ratio_range)
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"a hole-ratio range (lo, hi] needs 0 <= lo < hi <= 1, got ({lo}, {hi}]")
    return lo, hi


def check_bucket(bucket: Sequence[int]) -> tuple[int, int]:
    """(lo, hi) percent as ints; InputError unless 0 <= lo < hi <= 100."""
    lo, hi = (int(b) for b in bucket)
    if not 0 <= lo < hi <= 100:
        raise InputError(f"a bucket is (lo, hi] in percent with 0 <= lo < hi <= 100, got {bucket}")
    return lo, hi


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
    lo, hi = check_ratio_range(ratio_range)
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
        ratio_range: RatioRange = FREE_FORM_TRAIN_RANGE,
        buckets: Sequence[tuple[int, int]] = ALL_BUCKETS[:6],
        seed: int = 0,
    ) -> None:
        self.size = size
        self.ratio_range = check_ratio_range(ratio_range)
        self.buckets = [check_bucket(b) for b in buckets]
        if not self.buckets:
            raise InputError("free-form evaluation masks need at least one bucket")
        self.seed = seed

    def holes(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """Holes for dataset sample ``index``: bool (H, W) (see the class docstring)."""
        if rng is None:
            lo, hi = self.buckets[index % len(self.buckets)]
            return free_form_holes(self.size, (lo / 100, hi / 100), [self.seed, index], spread=0.25)
        return free_form_holes(self.size, self.ratio_range, rng, spread=0.1)
