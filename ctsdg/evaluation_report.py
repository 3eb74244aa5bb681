"""``ctsdg eval``'s figures and reports: per-image results, hole-ratio buckets, the seed's
printout, the 10 % table, ``metrics.json`` / ``metrics.md``.

Buckets are decided per image, by **its own** hole ratio ``1 - mean(mask)`` in exact integer
pixel counts, into (lo, hi] ranges; the range above 60 %, which the MindSpore port drops, is
reported on its own line. `ctsdg.evaluation` computes the `ImageResult`s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctsdg.data import ALL_BUCKETS
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write_bytes, writing
from ctsdg.metrics import finite_mean

#: The ``format`` of ``metrics.json`` (what `ctsdg.comparison` reads).
EVAL_FORMAT = "ctsdg-eval"

#: The seed's reporting groups, percent, each (lo, hi].
SEED_BUCKETS: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60))
#: What the port drops without saying so.
DROPPED_BUCKET: tuple[int, int] = (60, 100)
METRICS = ("psnr", "ssim", "l1", "lpips")

CONVENTIONS = (
    "Per image, on the composite gt*mask + out*(1-mask) against gt, both (x+1)/2 clipped to "
    "[0,1]. PSNR: peak 1, over all pixels and channels, capped at 100 dB. SSIM: 11x11 Gaussian "
    "window (sigma 1.5), K1 0.01, K2 0.03, population covariances, valid region (no padding), "
    "mean over positions and RGB channels (= skimage structural_similarity with "
    "gaussian_weights=True, use_sample_covariance=False, data_range=1). L1: mean absolute "
    "error over all pixels and channels, in [0,1]. LPIPS: VGG, v0.1 linear layers. FID: "
    "pytorch-fid's convention (TF-graph InceptionV3, 2048-d pool features; uint8 RGB /255, "
    "bilinear to 299x299, 2x-1; float64 statistics; sqrtm Frechet distance) between a bucket's "
    "composites (as written, uint8) and its ground truths; marked when under 2048 images. "
    "P-IDS / U-IDS: LinearSVC(dual=False) on the same features, ground truth 1, composite 0. "
    "Buckets: "
    "each image by its own hole ratio 1 - mean(mask), ranges (lo, hi]. Bucket figures are "
    "means over their images."
)


class ReportWriteError(InputError):
    """The evaluation finished but its reports could not be written; ``evaluation`` holds the
    figures, so that the caller can still show them."""

    def __init__(self, message: str, evaluation: Evaluation) -> None:
        super().__init__(message)
        self.evaluation = evaluation


@dataclass
class ImageResult:
    """The metrics of one evaluated image."""

    index: int
    source: str
    hole_ratio: float
    hole_pixels: int
    pixels: int
    psnr: float
    ssim: float
    l1: float
    lpips: float | None = None


@dataclass
class Evaluation:
    """What ``evaluate`` returns: settings, per-image results, bucket summaries."""

    settings: dict[str, Any]
    images: list[ImageResult]
    seed_buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": EVAL_FORMAT,
            "version": 1,
            **self.settings,
            "conventions": CONVENTIONS,
            "seed_buckets": self.seed_buckets,
            "buckets": self.buckets,
            "dropped_by_port": self.dropped,
            "all": self.overall,
            "per_image": [asdict(r) for r in self.images],
        }


# --------------------------------------------------------------------------- buckets


def in_bucket(result: ImageResult, bucket: tuple[int, int]) -> bool:
    """Whether the image's hole ratio lies in (lo, hi] percent, decided in exact integers."""
    lo, hi = bucket
    scaled = 100 * result.hole_pixels
    return lo * result.pixels < scaled <= hi * result.pixels


def bucket_label(bucket: tuple[int, int]) -> str:
    return f"{bucket[0]}-{bucket[1]}%"


#: Figures of a whole set of images (FID; P-IDS / U-IDS): the chosen images -> extra fields.
SetMetric = Callable[[list[ImageResult]], dict[str, Any]]


def summarize(
    images: Sequence[ImageResult],
    select: Callable[[ImageResult], bool],
    extra: Sequence[SetMetric] = (),
) -> dict:
    """``images`` count and the mean of every metric over the selected images (None if empty),
    and the fields each of ``extra`` computes from the selected images."""
    chosen = [r for r in images if select(r)]
    summary: dict[str, Any] = {"images": len(chosen)}
    for name in METRICS:
        values = [getattr(r, name) for r in chosen if getattr(r, name) is not None]
        if name == "lpips" and not values:
            continue
        mean = finite_mean(values)
        summary[name] = None if math.isnan(mean) else mean
    for metric in extra:
        summary.update(metric(chosen))
    return summary


def summarize_all(
    evaluation: Evaluation, fid: SetMetric | None = None, ids: SetMetric | None = None
) -> None:
    """Fill the bucket summaries; ``fid`` runs for every bucket, ``ids`` for the seed range and
    all images (`ctsdg.evaluation` passes them when FID weights are given)."""
    images = evaluation.images
    per_bucket = [fid] if fid else []
    overall = [m for m in (fid, ids) if m]

    def bucket(b: tuple[int, int], extra: Sequence[SetMetric] = per_bucket) -> dict:
        return summarize(images, lambda r: in_bucket(r, b), extra)

    evaluation.seed_buckets = {bucket_label(b): bucket(b) for b in SEED_BUCKETS}
    evaluation.buckets = {bucket_label(b): bucket(b) for b in ALL_BUCKETS}
    no_hole = summarize(images, lambda r: r.hole_pixels == 0, per_bucket)
    if no_hole["images"]:
        evaluation.buckets = {"0% (no hole)": no_hole, **evaluation.buckets}
    evaluation.dropped = {bucket_label(DROPPED_BUCKET): bucket(DROPPED_BUCKET)}
    evaluation.overall = {
        bucket_label((0, 60)) + " (seed range)": bucket((0, 60), overall),
        "all": summarize(images, lambda r: True, overall),
    }


# --------------------------------------------------------------------------- printing


def _rounded(value: float | None, digits: int) -> str:
    # The seed prints round(x, n) through str(): 0.83, not 0.830
    return "nan" if value is None else str(round(value, digits))


def seed_block(evaluation: Evaluation) -> str:
    """The seed's printout: ``PSNR:`` then ``0-20%: 38.04`` ..., ``SSIM:`` then ``0-20%: 0.979``."""
    lines = ["PSNR:"]
    lines += [f"{k}: {_rounded(v['psnr'], 2)}" for k, v in evaluation.seed_buckets.items()]
    lines.append("SSIM:")
    lines += [f"{k}: {_rounded(v['ssim'], 3)}" for k, v in evaluation.seed_buckets.items()]
    return "\n".join(lines)


#: The mark of a FID over fewer images than `ctsdg.fid.FID_MIN_IMAGES`, and its footnote.
FEW_IMAGES_MARK = "*"
FEW_IMAGES_NOTE = (
    "* FID over fewer than 2048 images (the feature dimension): the covariance is "
    "rank-deficient and the figure is biased upwards; compare it only with FIDs over as many "
    "images"
)


def _table_rows(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    has_lpips = any(r.lpips is not None for r in evaluation.images)
    has_fid = bool(evaluation.settings.get("fid"))
    header = ["hole ratio", "images", "PSNR", "SSIM", "L1"] + (["LPIPS"] if has_lpips else [])
    header += ["FID", "P-IDS", "U-IDS"] if has_fid else []
    rows = []
    groups = [
        *evaluation.buckets.items(),
        *((f"{k} (dropped by the port)", v) for k, v in evaluation.dropped.items()),
        *evaluation.overall.items(),
    ]
    for name, s in groups:
        row = [name, str(s["images"])]
        row += [_fmt(s["psnr"], ".2f"), _fmt(s["ssim"], ".4f"), _fmt(s["l1"], ".5f")]
        if has_lpips:
            row.append(_fmt(s.get("lpips"), ".4f"))
        if has_fid:
            mark = "" if s.get("fid_reliable", True) or s.get("fid") is None else FEW_IMAGES_MARK
            row.append(_fmt(s.get("fid"), ".2f") + mark)
            row += [_fmt(s.get("p_ids"), ".4f"), _fmt(s.get("u_ids"), ".4f")]
        rows.append(row)
    return header, rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def full_table(evaluation: Evaluation) -> str:
    """10 % buckets, the range the port drops, the seed range and all images, aligned."""
    header, rows = _table_rows(evaluation)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if _marked(rows):
        lines.append(FEW_IMAGES_NOTE)
    return "\n".join(lines)


def _marked(rows: list[list[str]]) -> bool:
    return any(cell.endswith(FEW_IMAGES_MARK) for row in rows for cell in row)


def markdown_report(evaluation: Evaluation) -> str:
    s = evaluation.settings
    header, rows = _table_rows(evaluation)
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    what = s["checkpoint"] or f"OpenCV {s['method']}"
    return "\n".join(
        [
            f"# Evaluation: {what}",
            "",
            f"- method: {s['method']}; structure inputs: {s['structure'] or '-'} "
            f"({s['structure_reason']})",
            f"- data: {s['dataset']} ({s['images']} images, {s['image_size'][0]}x"
            f"{s['image_size'][1]}), masks: {s['masks']}",
            f"- device {s['device']}, precision {s['precision']}, batch {s['batch_size']}, "
            f"{s['seconds']:.1f} s",
            f"- conventions: {CONVENTIONS}",
            *_not_reported(s),
            "",
            "Seed's groups (the MindSpore port's printout, per-image buckets):",
            "",
            "```text",
            seed_block(evaluation),
            "```",
            "",
            *table,
            *(["", FEW_IMAGES_NOTE] if _marked(rows) else []),
            "",
        ]
    )


def _not_reported(settings: dict[str, Any]) -> list[str]:
    missing = [] if settings["lpips"] else ["LPIPS (no lpips_weights / pretrained_vgg given)"]
    if not settings.get("fid"):
        missing.append("FID, P-IDS, U-IDS (no fid_weights given)")
    return [f"- not reported: {'; '.join(missing)}"] if missing else []


# --------------------------------------------------------------------------- writing


def write_reports(evaluation: Evaluation, out_dir: Path) -> None:
    """Write ``metrics.json`` and ``metrics.md`` into ``out_dir`` (created), atomically.

    Raises:
        ReportWriteError: naming the path and the reason; it carries ``evaluation``.
    """
    try:
        with writing(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
        report = json.dumps(evaluation.to_json(), indent=1) + "\n"
        atomic_write_bytes(out_dir / "metrics.json", report.encode())
        atomic_write_bytes(out_dir / "metrics.md", markdown_report(evaluation).encode())
    except InputError as err:
        raise ReportWriteError(f"{err}; the figures above were not saved", evaluation) from None
    evaluation.output_dir = out_dir
