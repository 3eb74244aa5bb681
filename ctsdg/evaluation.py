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
``output_path`` is set. The output place is checked before the first image is evaluated, every
file is written atomically, and when the reports cannot be written after all (a full disk) the
command still prints the figures before the error (`ReportWriteError` carries them).

Under ``torchrun`` every process evaluates its own contiguous block of the images (gloo on CPU,
NCCL on GPUs); the per-image scores are gathered, and rank 0 alone summarises, prints and
writes: the figures are the same as one process's. Buckets, printouts and the report files are
`ctsdg.evaluation_report`'s.

Structure inputs follow the checkpoint's convention (`LoadedWeights.structure`: ``authors`` for
the authors' and MindSpore checkpoints) unless ``structure`` is passed explicitly, which the
command line does for a ``structure=`` given there. The ``structure`` key of a config *file* is
a training setting (what new training uses) and does not override the checkpoint: evaluating a
model on inputs it was not trained on only measures the mismatch.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ctsdg.config import Config
from ctsdg.data import Batch, build_loader, dataset_from_config
from ctsdg.data.loader import worker_count
from ctsdg.data.structure import STRUCTURES
from ctsdg.data.tensors import image_to_tensor, tensor_to_image
from ctsdg.errors import InputError
from ctsdg.evaluation_report import (
    DROPPED_BUCKET,
    SEED_BUCKETS,
    Evaluation,
    ImageResult,
    ReportWriteError,
    full_table,
    in_bucket,
    markdown_report,
    seed_block,
    summarize,
    summarize_all,
    write_reports,
)
from ctsdg.fileio import atomic_write_bytes, check_output_dir
from ctsdg.heartbeat import Heartbeat, eta
from ctsdg.metrics import LPIPS, score_composites

BASELINE_FLAGS = {"telea": "INPAINT_TELEA", "ns": "INPAINT_NS"}


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
    from ctsdg.runtime import tune_cpu_allocator
    from ctsdg.training import distributed

    tune_cpu_allocator()
    joined = torch.distributed.is_initialized()  # a caller's process group is left alone
    ctx = distributed.setup(cfg.device)  # one process, or this rank's share under torchrun
    device = ctx.device
    if not ctx.is_main:
        echo = distributed.quiet
    if structure is not None and structure not in STRUCTURES:
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
    out_dir = Path(cfg.output_path) if cfg.output_path else default_output_dir(cfg, checkpoint)
    composites = out_dir / "composites" if cfg.output_path else None
    check_output_dir(composites or out_dir)  # now, not after the whole evaluation

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
        dataset, cfg.test_batch_size, train=False, num_workers=worker_count(cfg),
        distributed=(ctx.rank, ctx.world_size),
    )  # fmt: skip
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
        processes=ctx.world_size,
        lpips=lpips_net is not None,
    )
    what = f"{checkpoint} ({settings['checkpoint_format']})" if checkpoint else "OpenCV"
    echo(
        f"evaluating {cfg.method} {what} on {cfg.dataset} ({len(dataset)} images, "
        f"{cfg.image_load_size[0]}x{cfg.image_load_size[1]}) on {device}, {cfg.precision}, "
        f"batch {cfg.test_batch_size}"
        + (f", {ctx.world_size} processes" if ctx.distributed else "")
    )
    if generator is not None:
        echo(f"structure inputs: '{used}' ({reason})")
    if lpips_net is None:
        echo("LPIPS not reported: set lpips_weights=PATH and pretrained_vgg=PATH to add it")

    results: list[ImageResult] = []
    start = time.perf_counter()
    # a bar on a terminal only: in a log file it is thousands of carriage returns
    shown = progress and ctx.is_main and sys.stderr.isatty()
    bar = tqdm(total=len(dataset), unit="img", disable=not shown, desc="eval", file=sys.stderr)

    def where() -> str:  # off a terminal, said when a while passed without a line
        done = len(results) * ctx.world_size
        return f"evaluating {cfg.method}: {eta(done, len(dataset), time.perf_counter() - start)}"

    beat = Heartbeat(where, enabled=ctx.is_main and not shown)
    with torch.inference_mode(), beat:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            if generator is not None:
                output = runner(batch.image, batch.mask, batch.gray, batch.edge)
            else:
                output = opencv_inpaint(batch, cfg.method, cfg.inpaint_radius)
            comp, scores = score_composites(output, batch.image, batch.mask, lpips_net)
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
                    atomic_write_bytes(composites / name, _png(array))
            # progress of every rank: each shows its own share
            bar.update(len(indices) * ctx.world_size)
    bar.close()
    settings["seconds"] = time.perf_counter() - start
    results = [r for part in distributed.gather_objects(results, ctx) for r in part]
    results.sort(key=lambda r: r.index)
    evaluation = Evaluation(settings, results)
    summarize_all(evaluation)
    if not joined:
        distributed.teardown()
    if ctx.is_main:
        write_reports(evaluation, out_dir)
    return evaluation


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "DROPPED_BUCKET",
    "SEED_BUCKETS",
    "Evaluation",
    "ImageResult",
    "ReportWriteError",
    "choose_structure",
    "evaluate",
    "full_table",
    "in_bucket",
    "markdown_report",
    "seed_block",
    "summarize",
    "summarize_all",
    "write_reports",
]
