"""``ctsdg eval``: PSNR / SSIM / L1 (and LPIPS) per image, grouped by hole ratio, as papers report.

Every image is scored on its composite ``comp = gt * mask + out * (1 - mask)`` against its
ground truth (both mapped to [0, 1], see `ctsdg.metrics`), and bucketed by **its own** hole
ratio ``1 - mean(mask)`` into (lo, hi] ranges. The MindSpore port buckets by the ratio of the
whole batch (right only at batch 1) and silently drops masks above 60 %; here the figures do
not depend on the batch size and the range above 60 % is reported separately.

Printed: the seed's block (the three 20 % groups, PSNR with 2 decimals and SSIM with 3, as
``round()`` prints them), then a table of 10 % buckets with image counts and every metric.
Written: ``metrics.json`` (settings, every bucket and every image) and ``metrics.md``, into
``output_path`` when set, otherwise into ``eval/<name>-<dataset>/`` beside the checkpoint (the
run folder for a run's checkpoint) or, for the OpenCV baselines, under the current folder.
Composites are saved as PNG (``composites/<index>_<source file stem>.png``) only when
``output_path`` is set.

Structure inputs follow the checkpoint's convention (`LoadedWeights.structure`: ``authors`` for
the authors' and MindSpore checkpoints) unless ``structure`` is passed explicitly, which the
command line does for a ``structure=`` given there. The ``structure`` key of a config *file* is
a training setting (what new training uses) and does not override the checkpoint: evaluating a
model on inputs it was not trained on only measures the mismatch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ctsdg.config import Config
from ctsdg.data import ALL_BUCKETS, Batch, build_loader, dataset_from_config
from ctsdg.data.tensors import image_to_tensor, tensor_to_image
from ctsdg.errors import InputError
from ctsdg.metrics import LPIPS, composite, finite_mean, l1, psnr, ssim, to_unit

#: The seed's reporting groups, percent, each (lo, hi].
SEED_BUCKETS: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60))
#: What the port drops without saying so.
DROPPED_BUCKET: tuple[int, int] = (60, 100)
METRICS = ("psnr", "ssim", "l1", "lpips")
BASELINE_FLAGS = {"telea": "INPAINT_TELEA", "ns": "INPAINT_NS"}

CONVENTIONS = (
    "Per image, on the composite gt*mask + out*(1-mask) against gt, both (x+1)/2 clipped to "
    "[0,1]. PSNR: peak 1, over all pixels and channels, capped at 100 dB. SSIM: 11x11 Gaussian "
    "window (sigma 1.5), K1 0.01, K2 0.03, population covariances, valid region (no padding), "
    "mean over positions and RGB channels (= skimage structural_similarity with "
    "gaussian_weights=True, use_sample_covariance=False, data_range=1). L1: mean absolute "
    "error over all pixels and channels, in [0,1]. LPIPS: VGG, v0.1 linear layers. Buckets: "
    "each image by its own hole ratio 1 - mean(mask), ranges (lo, hi]. Bucket figures are "
    "means over their images."
)


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
            "format": "ctsdg-eval",
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


def summarize(images: Sequence[ImageResult], select: Callable[[ImageResult], bool]) -> dict:
    """``images`` count and the mean of every metric over the selected images (None if empty)."""
    chosen = [r for r in images if select(r)]
    summary: dict[str, Any] = {"images": len(chosen)}
    for name in METRICS:
        values = [getattr(r, name) for r in chosen if getattr(r, name) is not None]
        if name == "lpips" and not values:
            continue
        mean = finite_mean(values)
        summary[name] = None if math.isnan(mean) else mean
    return summary


def summarize_all(evaluation: Evaluation) -> None:
    images = evaluation.images
    evaluation.seed_buckets = {
        bucket_label(b): summarize(images, lambda r, b=b: in_bucket(r, b)) for b in SEED_BUCKETS
    }
    evaluation.buckets = {
        bucket_label(b): summarize(images, lambda r, b=b: in_bucket(r, b)) for b in ALL_BUCKETS
    }
    no_hole = summarize(images, lambda r: r.hole_pixels == 0)
    if no_hole["images"]:
        evaluation.buckets = {"0% (no hole)": no_hole, **evaluation.buckets}
    evaluation.dropped = {
        bucket_label(DROPPED_BUCKET): summarize(images, lambda r: in_bucket(r, DROPPED_BUCKET))
    }
    evaluation.overall = {
        bucket_label((0, 60)) + " (seed range)": summarize(images, lambda r: in_bucket(r, (0, 60))),
        "all": summarize(images, lambda r: True),
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


def _table_rows(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    has_lpips = any(r.lpips is not None for r in evaluation.images)
    header = ["hole ratio", "images", "PSNR", "SSIM", "L1"] + (["LPIPS"] if has_lpips else [])
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
    return "\n".join(lines)


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
            "- not reported: FID (needs Inception weights; out of scope)"
            + ("" if s["lpips"] else "; LPIPS (no lpips_weights / pretrained_vgg given)"),
            "",
            "Seed's groups (the MindSpore port's printout, per-image buckets):",
            "",
            "```text",
            seed_block(evaluation),
            "```",
            "",
            *table,
            "",
        ]
    )


# --------------------------------------------------------------------------- running


def choose_structure(recorded: str, explicit: str | None, source: str) -> tuple[str, str]:
    """(convention, why): an explicit choice wins, else the one recorded in the checkpoint."""
    if explicit is not None:
        return explicit, "set explicitly"
    return recorded, f"recorded in the {source} checkpoint"


def default_output_dir(cfg: Config, checkpoint: Path | None) -> Path:
    """Where metrics go when ``output_path`` is empty (see the module docstring)."""
    if checkpoint is None:
        return Path("eval") / f"{cfg.method}-{cfg.dataset}"
    folder = checkpoint.parent
    if folder.name == "checkpoints":  # a run folder's checkpoints/: report in the run folder
        folder = folder.parent
    return folder / "eval" / f"{checkpoint.stem}-{cfg.dataset}"


def _source_stem(dataset: Any, index: int) -> str:
    files = getattr(dataset.images, "files", None)
    return Path(files[index]).stem if files is not None else ""


def opencv_inpaint(batch: Batch, method: str, radius: int) -> torch.Tensor:
    """The OpenCV baseline's output for a batch: (B, 3, H, W) in [-1, 1], on the batch's device."""
    import cv2

    flag = getattr(cv2, BASELINE_FLAGS[method])
    images = tensor_to_image(batch.image)
    holes = (batch.mask[:, 0] < 0.5).cpu().numpy().astype(np.uint8) * 255
    out = np.stack([cv2.inpaint(im, h, radius, flag) for im, h in zip(images, holes, strict=True)])
    tensor = image_to_tensor(out)
    return tensor.to(batch.image.device)


def evaluate(
    cfg: Config,
    *,
    structure: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    backend: str = "eager",
) -> Evaluation:
    """Evaluate ``cfg.method`` on the evaluation split of ``cfg.dataset``; write the reports.

    Args:
        cfg: the configuration (dataset keys, ``checkpoint_path``, ``method``, ``device``,
            ``precision``, ``test_batch_size``, ``eval_limit``, ``output_path``, ...).
        structure: ``"correct"`` or ``"authors"`` to override the checkpoint's convention.
        progress: show a progress bar (images/s).
        echo: where the one-line notes go.
        backend: how the generator runs: ``eager``, ``compiled`` or ``onnxruntime``
            (`ctsdg.backends`).

    Returns:
        The `Evaluation`, with per-image results, the bucket summaries and where the reports
        were written.
    """
    from tqdm import tqdm

    from ctsdg.backends import build_runner
    from ctsdg.checkpoints import load_weights
    from ctsdg.runtime import resolve_device, tune_cpu_allocator

    tune_cpu_allocator()
    device = resolve_device(cfg.device)
    if structure is not None and structure not in ("correct", "authors"):
        raise InputError(f"structure: expected correct or authors, got {structure!r}")
    generator = None
    checkpoint: Path | None = None
    settings: dict[str, Any] = {"method": cfg.method, "checkpoint": ""}
    if cfg.method == "ctsdg":
        if not cfg.checkpoint_path:
            raise InputError("config key checkpoint_path: method ctsdg needs a checkpoint")
        weights = load_weights(cfg.checkpoint_path)
        checkpoint = weights.path
        used, reason = choose_structure(weights.structure, structure, weights.format)
        generator = weights.build_generator(device)
        runner = build_runner(
            generator, backend, cfg.precision, device, size=cfg.image_load_size[0]
        )
        settings.update(
            checkpoint=str(weights.path),
            checkpoint_format=weights.format,
            model=weights.model.to_dict(),
        )
    else:
        used, reason = "correct", f"not used by the OpenCV baseline {cfg.method}"
    settings.update(structure=used if generator is not None else None, structure_reason=reason)

    lpips_net = None
    if cfg.lpips_weights:
        if not cfg.pretrained_vgg or cfg.pretrained_vgg == "random":
            raise InputError(
                "config key pretrained_vgg: LPIPS needs torchvision's vgg16-397923af.pth "
                "(pretrained_vgg=PATH) beside lpips_weights"
            )
        lpips_net = LPIPS.from_files(cfg.lpips_weights, cfg.pretrained_vgg).to(device)

    dataset = dataset_from_config(
        cfg,
        "test",
        structure=used,  # type: ignore[arg-type]
        limit=cfg.eval_limit or None,
    )
    loader = build_loader(
        dataset, cfg.test_batch_size, train=False, num_workers=cfg.num_parallel_workers
    )
    out_dir = Path(cfg.output_path) if cfg.output_path else default_output_dir(cfg, checkpoint)
    composites = out_dir / "composites" if cfg.output_path else None
    if composites is not None:
        composites.mkdir(parents=True, exist_ok=True)
    settings.update(
        dataset=cfg.dataset,
        data_root=cfg.eval_data_root or cfg.data_root,
        masks=cfg.eval_masks_root or "free-form (generated)",
        images=len(dataset),
        image_size=list(cfg.image_load_size),
        device=str(device),
        precision=cfg.precision,
        backend=backend if generator is not None else None,
        batch_size=cfg.test_batch_size,
        lpips=lpips_net is not None,
    )
    what = f"{checkpoint} ({settings['checkpoint_format']})" if checkpoint else "OpenCV"
    echo(
        f"evaluating {cfg.method} {what} on {cfg.dataset} ({len(dataset)} images, "
        f"{cfg.image_load_size[0]}x{cfg.image_load_size[1]}) on {device}, {cfg.precision}, "
        f"batch {cfg.test_batch_size}"
    )
    if generator is not None:
        echo(f"structure inputs: '{used}' ({reason})")
    if lpips_net is None:
        echo("LPIPS not reported: set lpips_weights=PATH and pretrained_vgg=PATH to add it")

    results: list[ImageResult] = []
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), unit="img", disable=not progress, desc="eval")
    with torch.inference_mode():
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            if generator is not None:
                output = runner(batch.image, batch.mask, batch.gray, batch.edge)
            else:
                output = opencv_inpaint(batch, cfg.method, cfg.inpaint_radius)
            gt = to_unit(batch.image)
            comp = to_unit(composite(batch.image, output.float(), batch.mask))
            scores = {"psnr": psnr(comp, gt), "ssim": ssim(comp, gt), "l1": l1(comp, gt)}
            if lpips_net is not None:
                scores["lpips"] = lpips_net(comp, gt)
            columns = {k: v.tolist() for k, v in scores.items()}
            hole_pixels = (batch.mask < 0.5).flatten(1).sum(dim=1).tolist()
            pixels = batch.mask[0].numel()
            indices = batch.index.tolist()
            for i, index in enumerate(indices):
                results.append(
                    ImageResult(
                        index=index,
                        source=dataset.images.describe(index),
                        hole_ratio=hole_pixels[i] / pixels,
                        hole_pixels=int(hole_pixels[i]),
                        pixels=pixels,
                        **{k: v[i] for k, v in columns.items()},
                    )
                )
            if composites is not None:
                for index, array in zip(indices, tensor_to_image(comp * 2 - 1), strict=True):
                    stem = _source_stem(dataset, index)
                    name = f"{index:06d}_{stem}.png" if stem else f"{index:06d}.png"
                    Image.fromarray(array).save(composites / name)
            bar.update(len(indices))
    bar.close()
    settings["seconds"] = time.perf_counter() - start
    results.sort(key=lambda r: r.index)
    evaluation = Evaluation(settings, results)
    summarize_all(evaluation)
    write_reports(evaluation, out_dir)
    return evaluation


def write_reports(evaluation: Evaluation, out_dir: Path) -> None:
    """Write ``metrics.json`` and ``metrics.md`` into ``out_dir`` (created)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(evaluation.to_json(), indent=1) + "\n")
        (out_dir / "metrics.md").write_text(markdown_report(evaluation))
    except OSError as err:
        raise InputError(
            f"{out_dir}: cannot write the metrics ({err.strerror}); set output_path=FOLDER"
        ) from None
    evaluation.output_dir = out_dir


__all__ = [
    "DROPPED_BUCKET",
    "SEED_BUCKETS",
    "Evaluation",
    "ImageResult",
    "choose_structure",
    "evaluate",
    "full_table",
    "in_bucket",
    "markdown_report",
    "seed_block",
    "summarize",
]
