"""What a person watching a training run sees: the seed's log line, a progress bar, TensorBoard.

Only rank 0 builds a real `Monitor`; the other ranks get one with ``enabled=False`` whose methods
do nothing, so the training loop calls it unconditionally.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
from pathlib import Path
from typing import TextIO

import torch

log = logging.getLogger(__name__)


def log_line(iteration: int, loss_g: float, loss_d: float, step_ms: float) -> str:
    """The seed's line: ``2022-12-19 10:00:00 iter: 1000, loss_g: 21.058, loss_d: 1.63,
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
        progress: show the tqdm bar (only on a terminal).
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
        self._file: TextIO | None = None
        self._bar = None
        self._writer = None
        if not enabled:
            return
        save_path.mkdir(parents=True, exist_ok=True)
        self._file = open(save_path / "log.txt", "a", buffering=1)  # noqa: SIM115 - closed in close()
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
                self._writer = SummaryWriter(str(save_path / "tensorboard"), purge_step=start + 1)

    def print(self, message: str) -> None:
        """A line for the person: stdout (above the progress bar) and log.txt."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)
        if self._file is not None:
            self._file.write(message + "\n")

    def advance(self, iterations: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(iterations)

    def scalars(self, iteration: int, values: dict[str, float]) -> None:
        if self._writer is not None:
            for name, value in values.items():
                if math.isfinite(value):
                    self._writer.add_scalar(name, value, iteration)

    def image(self, iteration: int, name: str, picture) -> None:
        """A PIL image (the sample grid) into TensorBoard."""
        if self._writer is not None:
            import numpy as np

            array = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
            self._writer.add_image(name, array, iteration)

    def postfix(self, **values: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()
