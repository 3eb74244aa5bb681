"""What a person watching a training run sees: the MindSpore port's log line, a progress bar,
TensorBoard.

Only rank 0 writes; the other ranks get a `Monitor` with ``enabled=False``. Every rank records
its loss terms, because the log line averages each term over the iterations since the last line
and over the ranks (a collective that all ranks join), so the loop calls it unconditionally.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import torch

from ctsdg.heartbeat import Heartbeat, eta
from ctsdg.training import distributed
from ctsdg.training.distributed import Context

log = logging.getLogger(__name__)


def log_line(iteration: int, loss_g: float, loss_d: float, step_ms: float) -> str:
    """The MindSpore port's line: ``2022-12-19 10:00:00 iter: 1000, loss_g: 21.058, loss_d: 1.63,
    step time: 589.29 ms``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{stamp} iter: {iteration}, loss_g: {round(loss_g, 3)}, loss_d: {round(loss_d, 3)}, "
        f"step time: {step_ms:.2f} ms"
    )


class Monitor:
    """Log lines (stdout and ``SAVE_PATH/log.txt``), tqdm bar with ETA, TensorBoard scalars.

    Args:
        save_path: the run folder.
        total: the iteration the run ends at; start: the iteration it starts from.
        enabled: False on ranks other than 0.
        progress: show the tqdm bar (only on a terminal). Without the bar, a `progress_line`
            goes to stdout whenever the run printed nothing for a while (`ctsdg.heartbeat`).
        tensorboard: write ``SAVE_PATH/tensorboard`` event files.
    """

    def __init__(
        self,
        save_path: Path,
        total: int,
        start: int,
        *,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self._window: dict[str, torch.Tensor] = {}  # summed loss terms since the last line
        self._window_steps = 0
        self._window_start = time.perf_counter()
        self._done, self._total, self._start = start, total, start
        self._started = time.perf_counter()
        self._heartbeat = Heartbeat(self.progress_line, enabled=False)
        self._file: TextIO | None = None
        self._bar = None
        self._writer = None
        self._event_folder: Path | None = None
        if not enabled:
            return
        self._log_path = save_path / "log.txt"
        with _naming(self._log_path):
            save_path.mkdir(parents=True, exist_ok=True)
            self._file = open(self._log_path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=start, unit="it", dynamic_ncols=True, smoothing=0.05
            )
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency; keep training if it is broken
                log.warning("tensorboard is not importable; no event files will be written")
            else:
                self._event_folder = save_path / "tensorboard"
                with _naming(self._event_folder):
                    self._writer = SummaryWriter(str(self._event_folder), purge_step=start + 1)
        if self._bar is None:  # no bar: a progress line whenever the run was quiet for a while
            self._heartbeat = Heartbeat(self.progress_line)
            self._heartbeat.start()

    def print(self, message: str) -> None:
        """A line for the person: stdout (above the progress bar) and log.txt."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)
        self._heartbeat.said()
        if self._file is not None:
            with _naming(self._log_path):
                self._file.write(message + "\n")

    def record(self, terms: dict[str, torch.Tensor]) -> None:
        """One iteration's loss terms (every rank calls this); advances the progress bar."""
        for name, value in terms.items():
            self._window[name] = self._window.get(name, 0) + value.detach().float()
        self._window_steps += 1
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)

    def progress_line(self) -> str:
        """``training: iter 57 of 400 (14 %), 0.95 s each, about 5.4 minutes left``: what the
        bar shows on a terminal, as a line (stdout only, not log.txt)."""
        done, left = self._done - self._start, self._total - self._start
        progress = eta(done, left, time.perf_counter() - self._started)
        if self._start:
            progress = f"{progress} of this run"
        return f"training: iter {self._done} of {self._total}; {progress}"

    def report(
        self, iteration: int, ctx: Context, rates: tuple[float, float], batch_size: int
    ) -> dict[str, float]:
        """The MindSpore port's log line and TensorBoard scalars since the last report.

        Every rank must call this (the terms are averaged over ranks). ``rates`` are the
        generator's and discriminator's learning rates; ``batch_size`` is per rank. Returns the
        averaged terms.
        """
        steps = max(self._window_steps, 1)
        step_ms = 1000 * (time.perf_counter() - self._window_start) / steps
        values = {k: v.item() / steps for k, v in self._window.items()}
        values = distributed.mean_over_ranks(values, ctx)
        self._window, self._window_steps = {}, 0
        self._window_start = time.perf_counter()
        self.print(log_line(iteration, values["g_total"], values["d_total"], step_ms))
        scalars = {f"loss/{k}": v for k, v in values.items()}
        scalars["lr/generator"], scalars["lr/discriminator"] = rates
        scalars["speed/step_time_ms"] = step_ms
        scalars["speed/images_per_s"] = batch_size * ctx.world_size / (step_ms / 1000)
        self.scalars(iteration, scalars)
        if self._bar is not None:
            self._bar.set_postfix(
                {"loss_g": f"{values['g_total']:.3f}", "loss_d": f"{values['d_total']:.3f}"},
                refresh=False,
            )
        return values

    def scalars(self, iteration: int, values: dict[str, float]) -> None:
        if self._writer is not None:
            with _naming(self._event_folder):  # the event writer's thread re-raises here
                for name, value in values.items():
                    if math.isfinite(value):
                        self._writer.add_scalar(name, value, iteration)

    def image(self, iteration: int, name: str, picture) -> None:
        """A PIL image (the sample grid) into TensorBoard."""
        if self._writer is not None:
            import numpy as np

            array = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
            with _naming(self._event_folder):
                self._writer.add_image(name, array, iteration)

    def close(self) -> None:
        """Close the bar, the event files and log.txt, each even if another fails; then raise
        the first OSError (a full disk can fail the last flush), naming its file."""
        self._heartbeat.stop()
        first: OSError | None = None
        parts = [
            (self._bar, None),
            (self._writer, self._event_folder),
            (self._file, getattr(self, "_log_path", None)),
        ]
        self._bar = self._writer = self._file = None
        for part, path in parts:
            if part is None:
                continue
            try:
                with _naming(path):
                    part.close()
            except OSError as err:
                first = first or err
        if first is not None:
            raise first


@contextlib.contextmanager
def _naming(path: Path | None) -> Iterator[None]:
    """An OSError without a file name (a failed ``write``) gets ``path``'s."""
    try:
        yield
    except OSError as err:
        if err.filename is None and path is not None:
            err.filename = str(path)
        raise
