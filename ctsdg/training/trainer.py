"""CTSDG training: the MindSpore port's two-stage schedule on one device or many, resumable exactly.

`train` claims the run folder (`run_folder`), builds the networks (`steps`), resumes from a
checkpoint (`checkpoint`) and runs one plain loop: each iteration a generator step and a
discriminator step, then logging (`monitor`), sample grids, validation (`validation`) and
checkpoints as configured. The schedule (stages, learning rates, frozen BatchNorm) is in
`schedule`.

Under ``torchrun`` each rank draws its own shard of the sample stream, losses are averaged over
ranks for the log, and only rank 0 writes. SIGINT / SIGTERM end the run with a checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctsdg.checkpoints import LoadedWeights
from ctsdg.config import Config
from ctsdg.data import Batch, InpaintingDataset, build_loader, dataset_from_config
from ctsdg.data.loader import worker_count
from ctsdg.errors import InputError, describe_os_error
from ctsdg.fileio import atomic_write
from ctsdg.models import GeneratorOutput, VGG16Features
from ctsdg.runtime import tune_cpu_allocator
from ctsdg.training import checkpoint, distributed
from ctsdg.training.distributed import Context
from ctsdg.training.monitor import Monitor
from ctsdg.training.run_folder import RunFolder, check_run_folder
from ctsdg.training.schedule import learning_rates, set_stage, stage_at, stage_plan
from ctsdg.training.steps import (
    NonFiniteLossError,
    TrainState,
    build_state,
    discriminator_step,
    generator_step,
    load_pretrained,
    to_device,
    vgg_from_config,
)
from ctsdg.training.validation import validate
from ctsdg.visualize import grid, masked_for_display

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a run ended: the iteration reached, ``finished`` or ``interrupted``, and the
    checkpoint written last."""

    iteration: int
    status: str
    checkpoint: Path | None


def train(config: Config, *, overwrite: bool = False) -> TrainResult:
    """Train CTSDG as ``config`` says; resume when ``config.resume`` is set. See the README.

    ``overwrite`` lets a fresh run replace a run that ``save_path`` already holds (its
    checkpoints are deleted first); without it such a folder is refused. Returns how the run
    ended. Raises InputError on bad configuration, data or run folder (also a write failing,
    naming the last good checkpoint) and NonFiniteLossError when a loss stops being finite
    (nothing is saved from that iteration).
    """
    if config.device in ("auto", "cpu"):
        tune_cpu_allocator()
    ctx = distributed.setup(config.device)
    try:
        return _train(config, ctx, overwrite)
    finally:
        # DDP's reducers hold the process group and can sit in reference cycles: free them
        # before the group goes, or a gloo rank may abort at exit ("terminate called ...").
        gc.collect()
        distributed.teardown()


@dataclass
class Prepared:
    """What a run checked and loaded before it touches its folder (`prepare`)."""

    plan: list[tuple[str, int]]
    source: checkpoint.TrainingCheckpoint | None  # what resume= continues from
    pretrained: LoadedWeights | None
    vgg: VGG16Features | None  # None: left to `build_state` (a dry run's ``auto``)
    dataset: InpaintingDataset  # the training images


def prepare(config: Config, *, overwrite: bool, fetch: bool = True, main: bool = True) -> Prepared:
    """Everything a run checks before it starts, in the run's order and with its errors: the
    stage plan, the checkpoint ``resume`` names, the run folder's state, the training data and
    masks (and the validation data when ``val_every`` is set), the ``pretrained`` weights and
    the VGG16 loss network. ``ctsdg train --dry-run`` runs exactly this; `train` runs it before
    it creates or locks the run folder, so a run it refuses leaves nothing behind.

    ``fetch=False`` (the dry run) accepts a weights path of ``auto`` without fetching it;
    ``main=False`` (torchrun ranks other than 0) leaves the run folder to rank 0.
    """
    plan = stage_plan(config)
    if not plan:
        raise InputError("nothing to train: train_iter and finetune_iter are 0 for this stage")
    source = checkpoint.resume_source(config)
    if source is not None:
        checkpoint.check_resumable(config, source)
    # Any resume value means "continue in this folder", even when it holds nothing to resume.
    if main:
        check_run_folder(config.save_path, fresh=not config.resume, overwrite=overwrite)
    dataset = dataset_from_config(config, "train")
    if config.val_every:
        dataset_from_config(config, "val", limit=config.val_samples)
    pretrained = None
    if config.pretrained and (fetch or config.pretrained != "auto"):
        pretrained = load_pretrained(config)
    vgg = vgg_from_config(config) if fetch or config.pretrained_vgg != "auto" else None
    return Prepared(plan, source, pretrained, vgg, dataset)


def _train(config: Config, ctx: Context, overwrite: bool) -> TrainResult:
    error, ready = None, None
    try:
        ready = prepare(config, overwrite=overwrite, main=ctx.is_main)
    except InputError as err:
        error = err
    distributed.stop_together(error, ctx, "another rank refused to start; its error says why")
    assert ready is not None
    plan, source, dataset = ready.plan, ready.source, ready.dataset
    total = sum(n for _, n in plan)
    save_path = Path(config.save_path)
    with _claim(save_path, ctx, fresh=not config.resume, overwrite=overwrite) as run:
        state = build_state(config, ctx, pretrained=ready.pretrained, vgg=ready.vgg)
        start = checkpoint.restore(state, source) if source is not None else 0
        monitor: Monitor | None = None
        try:
            if ctx.is_main:
                config.save(save_path / "config.yaml")
            monitor = Monitor(
                save_path,
                total,
                start,
                enabled=ctx.is_main,
                progress=config.progress,
                tensorboard=config.tensorboard,
            )
            if source is not None:
                monitor.print(f"resumed from {source.path} at iteration {start}")
            elif config.resume:
                monitor.print(
                    f"resume={config.resume}: no checkpoint in {save_path}, starting fresh"
                )
            if start >= total:
                monitor.print(f"nothing to do: the run is already at iteration {start} of {total}")
                result = TrainResult(start, "finished", source.path if source else None)
            else:
                result = _run(state, dataset, monitor, plan, start, run)
        except OSError as err:  # config.yaml, a log line, sample grid, event file or checkpoint
            _close_quietly(monitor)
            raise _write_failed(err, run, save_path) from None
        except BaseException:
            _close_quietly(monitor)
            raise
        finally:
            skipped = getattr(dataset, "skipped_files", None)
            if skipped:
                log.warning("%d unreadable training files were skipped", len(skipped))
        try:
            monitor.close()  # the last flush of log.txt and the event files can fail too
        except OSError as err:
            raise _write_failed(err, run, save_path) from None
        return result


def _run(
    state: TrainState,
    dataset: Any,
    monitor: Monitor,
    plan: list[tuple[str, int]],
    start: int,
    run: RunFolder | None,
) -> TrainResult:
    """The data loader for this rank, the opening line, then `_loop`."""
    config, ctx = state.config, state.ctx
    loader = build_loader(
        dataset,
        config.batch_size,
        train=True,
        num_workers=worker_count(config),
        seed=config.seed,
        distributed=(ctx.rank, ctx.world_size),
        start_batch=start,
    )
    monitor.print(
        f"training {sum(p.numel() for p in state.raw_generator.parameters()) / 1e6:.1f} M "
        f"generator parameters on {ctx.world_size} x {ctx.device}, batch "
        f"{config.batch_size} per rank, {config.precision}, stages {plan}, from iteration "
        f"{start} to {sum(n for _, n in plan)}; {len(dataset)} training images; run folder "
        f"{config.save_path}"
    )
    return _loop(state, loader, monitor, plan, start, run)


def _close_quietly(monitor: Monitor | None) -> None:
    """Close ``monitor`` while another error is on its way out (that one is reported)."""
    if monitor is not None:
        with contextlib.suppress(OSError):
            monitor.close()


def _loop(
    state: TrainState,
    loader: Iterable[Batch],
    monitor: Monitor,
    plan: list[tuple[str, int]],
    start: int,
    run: RunFolder | None,
) -> TrainResult:
    """The iterations from ``start`` to the end of ``plan``, checkpointing as configured."""
    config, ctx = state.config, state.ctx
    total = sum(n for _, n in plan)
    iteration, stage = start, ""
    with _StopRequest() as stop:
        for batch in loader:
            if stage != stage_at(iteration, plan):
                stage = stage_at(iteration, plan)
                set_stage(state, stage)
                lr = learning_rates(config, stage)[0]
                monitor.print(f"iter: {iteration}, stage {stage}: generator lr {lr:g}")
            batch = to_device(batch, ctx, config.channels_last)
            try:
                out, g_terms = generator_step(state, batch)
                d_terms = discriminator_step(state, batch, out.output)
            except NonFiniteLossError as err:
                last = run.last_saved if run is not None else None
                monitor.print(
                    f"iter: {iteration + 1}: loss term(s) {err} not finite; stopping. Nothing was "
                    f"saved from this iteration; the last checkpoint is {last or 'none'}"
                )
                raise NonFiniteLossError(
                    f"iteration {iteration + 1}: non-finite loss term(s) {err}"
                ) from None
            iteration += 1
            monitor.record({**g_terms, **d_terms})

            if iteration % config.log_frequency_step == 0 or iteration == total:
                monitor.report(iteration, ctx, learning_rates(config, stage), config.batch_size)
            if ctx.is_main and config.sample_every and iteration % config.sample_every == 0:
                _sample_grid(state, batch, out, iteration, monitor)
            if config.val_every and iteration % config.val_every == 0:
                validate(state, iteration, monitor)
            stop_now = distributed.any_rank([stop.requested], ctx)[0]
            if iteration % config.save_checkpoint_steps == 0 or iteration == total or stop_now:
                _save(state, iteration, stage, run)
            if stop_now or iteration >= total:
                break
        else:  # cannot happen with the endless sampler; never end without a checkpoint
            raise RuntimeError(f"the data loader ran dry at iteration {iteration}")
    saved = checkpoint.checkpoint_path(config.save_path, iteration)
    if iteration < total:
        monitor.print(
            f"interrupted at iteration {iteration}; checkpoint {saved}; continue with resume=auto"
        )
        return TrainResult(iteration, "interrupted", saved)
    monitor.print(f"finished {iteration} iterations; checkpoint {saved}")
    return TrainResult(iteration, "finished", saved)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def _claim(
    save_path: Path, ctx: Context, *, fresh: bool, overwrite: bool
) -> Iterator[RunFolder | None]:
    """Rank 0 takes the run folder (see `RunFolder`); every rank stops if it cannot."""
    folder, error = None, None
    if ctx.is_main:
        try:
            folder = RunFolder(save_path, fresh=fresh, overwrite=overwrite).__enter__()
        except InputError as err:
            error = err
    distributed.stop_together(error, ctx, f"{save_path}: rank 0 could not take the run folder")
    try:
        yield folder
    finally:
        if folder is not None:
            folder.close()


def _save(state: TrainState, iteration: int, stage: str, run: RunFolder | None) -> None:
    """Check that all ranks agree, then write a checkpoint on rank 0; all ranks stop together
    if it cannot be written."""
    _check_replicas(state)
    error: InputError | None = None
    if run is not None:
        try:
            run.last_saved = checkpoint.save(state, iteration, stage)
        except OSError as err:
            error = _write_failed(err, run, Path(state.config.save_path))
    elsewhere = f"iteration {iteration}: rank 0 could not write the checkpoint"
    distributed.stop_together(error, state.ctx, elsewhere)
    distributed.barrier(state.ctx)


def _write_failed(err: OSError, run: RunFolder | None, save_path: Path) -> InputError:
    """One line: what could not be written and why (disk full, read-only, ...), the
    checkpoint a resume would start from, and what to do first."""
    last = run.last_saved if run is not None else None
    where = err.filename if err.filename is not None else f"a file in the run folder {save_path}"
    message = f"cannot write {describe_os_error(where, err)}; the last good checkpoint is "
    if last is None:
        return InputError(message + "none")
    return InputError(f"{message}{last} (continue with resume=auto {_remedy(err)})")


def _remedy(err: OSError) -> str:
    """When a resume can succeed, in the words of the error's cause."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "once there is room"
    if err.errno == errno.EROFS:
        return "once the file system is writable again"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "once the run folder is writable for you"
    return "once the cause is fixed"


def _check_replicas(state: TrainState) -> None:
    """All ranks must hold the same networks (see `distributed.check_consistency`)."""
    distributed.check_consistency(state.raw_generator, state.ctx, "generator")
    distributed.check_consistency(state.raw_discriminator, state.ctx, "discriminator")


def _sample_grid(
    state: TrainState, batch: Batch, out: GeneratorOutput, iteration: int, monitor: Monitor
) -> None:
    """A PNG of the first few samples: input, edges, output, composite, ground truth."""
    n = min(4, batch.image.shape[0])
    mask = batch.mask[:n]
    output = out.output[:n].detach()
    columns = [
        masked_for_display(batch.image[:n], mask),
        (batch.edge[:n] * mask) * 2 - 1,
        output,
        batch.image[:n] * mask + output * (1 - mask),
        batch.image[:n],
    ]
    picture = grid(columns, ["input", "edges", "output", "composite", "ground truth"])
    path = Path(state.config.save_path) / "samples" / f"iter_{iteration:07d}.png"
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    monitor.image(iteration, "samples", picture)


class _StopRequest:
    """SIGINT / SIGTERM ask for a checkpoint and a clean stop; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


__all__ = ["NonFiniteLossError", "TrainResult", "train"]
