"""``ctsdg eval``: PSNR / SSIM / L1 (LPIPS; FID, P-IDS / U-IDS) by hole ratio, as papers report.

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
With ``output_path``, three folders get one PNG per image under one name
(``<index>_<source file stem>.png``): ``composites/`` (as scored, uint8), ``ground_truth/`` (the
image as evaluated) and ``masks/`` (white = hole); a folder that holds results is refused
unless ``overwrite``. The output place is checked before the first image is evaluated, every
file is written atomically, and when the reports cannot be written after all (a full disk) the
command still prints the figures before the error (`ReportWriteError` carries them).

``method=folder`` scores another method's results (`Predictions`: the file named as the
composite, or the one with its stem and any image extension) on the same images and masks.
With ``fid_weights``, the Inception features of every composite and ground truth (one batched
forward per batch) give FID per bucket and P-IDS / U-IDS for the seed range and all images
(`SetFigures`, `ctsdg.fid`, `ctsdg.ids`).

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
from ctsdg.data.images import UnreadableImageError, read_rgb, require_folder
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
from ctsdg.fid import (
    FID_EXTENSIONS,
    FID_MIN_IMAGES,
    InceptionFeatures,
    frechet_distance,
    statistics,
)
from ctsdg.fileio import atomic_write_bytes, check_output_dir, writing
from ctsdg.heartbeat import Heartbeat, eta
from ctsdg.ids import inception_discriminative_scores
from ctsdg.metrics import LPIPS, score_composites
from ctsdg.weights import resolve

BASELINE_FLAGS = {"telea": "INPAINT_TELEA", "ns": "INPAINT_NS"}
#: What ``output_path`` receives besides the reports, one file per image, same name in each.
RESULT_FOLDERS = ("composites", "ground_truth", "masks")


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


def result_name(dataset: Any, index: int) -> str:
    """``<index>_<source file stem>.png`` (``<index>.png`` for sources without files): the name
    of an image's composite, ground truth and mask, and of its prediction for method=folder."""
    stem = _source_stem(dataset, index)
    return f"{index:06d}_{stem}.png" if stem else f"{index:06d}.png"


def prepare_output(out_dir: Path, overwrite: bool) -> tuple[Path, ...]:
    """The `RESULT_FOLDERS` under ``out_dir``, created; refuses a folder that holds results
    (reports or images) unless ``overwrite``, which first removes the old images, so that a
    shorter run does not leave a longer run's files among its own."""
    folders = tuple(out_dir / name for name in RESULT_FOLDERS)
    held = [out_dir / n for n in ("metrics.json", "metrics.md") if (out_dir / n).exists()]
    held += [f for f in folders if f.is_dir() and any(f.iterdir())]
    if held and not overwrite:
        raise InputError(
            f"{held[0]} exists: {out_dir} holds evaluation results; pass --overwrite to "
            "replace them, or choose another output_path"
        )
    for folder in folders:
        check_output_dir(folder)
        if held:
            with writing(folder):
                for old in folder.iterdir():
                    if old.is_file() and old.suffix.lower() == ".png":
                        old.unlink()
    return folders


class Predictions:
    """Another method's results for method=folder (see docs/evaluation.md): the file named as
    eval names the composite, else the one file with its stem and any image extension."""

    def __init__(self, folder: Path) -> None:
        self.folder = require_folder(folder, "predictions folder (config key predictions)")
        self.by_stem: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in FID_EXTENSIONS:
                self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, name: str) -> Path:
        exact = self.folder / name
        if exact.is_file():
            return exact
        found = self.by_stem.get(Path(name).stem, [])
        if len(found) == 1:
            return found[0]
        if found:
            raise InputError(
                f"{self.folder}: {len(found)} predictions for {name} "
                f"({', '.join(p.name for p in found)}); keep one"
            )
        raise InputError(
            f"{exact}: prediction not found (expected this name, or its stem with any of "
            f"{', '.join(e[1:] for e in FID_EXTENSIONS)})"
        )

    def read(self, names: list[str], size: tuple[int, int]) -> torch.Tensor:
        """The predictions of ``names`` as (B, 3, H, W) in [-1, 1]; each must be ``size``."""
        arrays = []
        for name in names:
            path = self.find(name)
            try:
                image = read_rgb(path)
            except UnreadableImageError as err:
                raise InputError(f"{path}: unreadable prediction ({err.reason})") from None
            if (image.height, image.width) != size:
                raise InputError(
                    f"{path}: prediction is {image.width}x{image.height}, expected "
                    f"{size[1]}x{size[0]} (the size evaluated; see ground_truth/)"
                )
            arrays.append(np.asarray(image))
        return image_to_tensor(np.stack(arrays))


class SetFigures:
    """FID and P-IDS / U-IDS of sets of evaluated images, from their Inception features
    (composite, ground truth) by index; the `summarize_all` callbacks."""

    def __init__(self, features: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        self.features = features
        self._fids: dict[tuple[int, ...], float] = {}  # a set may come twice (0-60 % and all)

    def _arrays(self, chosen: list[ImageResult]) -> tuple[np.ndarray, np.ndarray]:
        comp = np.stack([self.features[r.index][0] for r in chosen])  # float64 already
        truth = np.stack([self.features[r.index][1] for r in chosen])
        return comp, truth

    def fid(self, chosen: list[ImageResult]) -> dict[str, Any]:
        if len(chosen) < 2:  # no covariance: no figure, as for an empty bucket's means
            return {"fid": None, "fid_reliable": False}
        key = tuple(r.index for r in chosen)
        if key not in self._fids:
            comp, truth = self._arrays(chosen)
            self._fids[key] = frechet_distance(
                statistics(comp, "composites"), statistics(truth, "ground truth")
            )
        return {"fid": self._fids[key], "fid_reliable": len(chosen) >= FID_MIN_IMAGES}

    def ids(self, chosen: list[ImageResult]) -> dict[str, Any]:
        if len(chosen) < 2:
            return {"p_ids": None, "u_ids": None}
        comp, truth = self._arrays(chosen)
        return inception_discriminative_scores(truth, comp)


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
    overwrite: bool = False,
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
        overwrite: replace the results an ``output_path`` already holds (refused otherwise).

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
    elif cfg.method == "folder":
        if not cfg.predictions:
            raise InputError("config key predictions: method folder needs predictions=DIR")
        predictions = Predictions(Path(cfg.predictions))
        used, reason = "correct", "not used: scoring the images in predictions"
        settings.update(predictions=str(predictions.folder))
    else:
        used, reason = "correct", f"not used by the OpenCV baseline {cfg.method}"
    settings.update(structure=used if generator is not None else None, structure_reason=reason)
    out_dir = Path(cfg.output_path) if cfg.output_path else default_output_dir(cfg, checkpoint)
    folders = None
    if cfg.output_path:
        # Rank 0 alone checks and clears the folder, and every rank waits for it: a rank that
        # looked later would find rank 0's first images there and refuse, or delete them.
        error = None
        if ctx.is_main:
            try:
                prepare_output(out_dir, overwrite)
            except InputError as err:
                error = err
        distributed.stop_together(error, ctx, f"{out_dir}: rank 0 refused the output folder")
        folders = tuple(out_dir / name for name in RESULT_FOLDERS)
    check_output_dir(out_dir)  # now, not after the whole evaluation

    lpips_net = None
    if cfg.lpips_weights:
        if not cfg.pretrained_vgg or cfg.pretrained_vgg == "random":
            raise InputError(
                "config key pretrained_vgg: LPIPS needs torchvision's vgg16-397923af.pth "
                "(pretrained_vgg=PATH) beside lpips_weights"
            )
        lpips_net = LPIPS.from_files(cfg.lpips_weights, cfg.pretrained_vgg).to(device)
    inception = None
    if cfg.fid_weights:
        fid_path = resolve("fid_inception", cfg.fid_weights)
        inception = InceptionFeatures.from_file(fid_path, device, 2 * cfg.test_batch_size)
        settings.update(fid_weights=str(fid_path), fid_min_images=FID_MIN_IMAGES)

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
        fid=inception is not None,
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
    if inception is None:
        echo("FID, P-IDS, U-IDS not reported: set fid_weights=PATH (or auto) to add them")

    results: list[ImageResult] = []
    features: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (composite, truth)
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
            indices = batch.index.tolist()
            names = [result_name(dataset, i) for i in indices]
            if generator is not None:
                output = runner(batch.image, batch.mask, batch.gray, batch.edge)
            elif cfg.method == "folder":
                output = predictions.read(names, tuple(batch.image.shape[-2:])).to(device)
            else:
                output = opencv_inpaint(batch, cfg.method, cfg.inpaint_radius)
            comp, scores = score_composites(output, batch.image, batch.mask, lpips_net)
            if inception is not None or folders is not None:  # copies to the host: when used
                comp_u8 = tensor_to_image(comp * 2 - 1)  # the composites as written
                truth_u8 = tensor_to_image(batch.image)  # the ground truth as evaluated
            if inception is not None:  # one batched forward for both
                both = inception(np.concatenate((comp_u8, truth_u8)))
                for i, index in enumerate(indices):
                    features[index] = (both[i], both[len(indices) + i])
            columns = {k: v.tolist() for k, v in scores.items()}
            hole_pixels = (batch.mask < 0.5).flatten(1).sum(dim=1).tolist()
            pixels = batch.mask[0].numel()
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
            if folders is not None:
                holes = ((batch.mask[:, 0] < 0.5).cpu().numpy() * 255).astype(np.uint8)
                for i, name in enumerate(names):
                    for folder, array in zip(folders, (comp_u8, truth_u8, holes), strict=True):
                        atomic_write_bytes(folder / name, _png(array[i]))
            # progress of every rank: each shows its own share
            bar.update(len(indices) * ctx.world_size)
    bar.close()
    settings["seconds"] = time.perf_counter() - start
    results = [r for part in distributed.gather_objects(results, ctx) for r in part]
    results.sort(key=lambda r: r.index)
    if inception is not None:
        parts = distributed.gather_objects(features, ctx)
        features = {k: v for part in parts for k, v in part.items()}
    evaluation = Evaluation(settings, results)
    if inception is not None and ctx.is_main:
        set_metrics = SetFigures(features)
        summarize_all(evaluation, set_metrics.fid, set_metrics.ids)
    else:
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
