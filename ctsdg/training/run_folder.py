"""The run folder (``save_path``) as rank 0 claims it: created, locked, cleaned, never clobbered.

- An advisory lock (``flock`` on ``SAVE_PATH/.lock``) keeps a second ``ctsdg train`` out of a
  folder that one is using. The kernel drops it when the process ends, crash or not, so a lock
  file left behind is never stale.
- Temporary files of interrupted checkpoint writes (``checkpoints/.checkpoint_*.tmp``, left by a
  SIGKILL mid-save) are removed on start; the lock guarantees no writer owns them.
- A fresh run (no ``resume``) refuses a folder that already holds a run, unless asked to
  overwrite it, which first removes that run's checkpoints, samples, events, log and config.
- A folder that cannot be created or written is an `InputError` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from ctsdg.checkpoints.training_format import CHECKPOINT_DIR, list_checkpoints
from ctsdg.errors import InputError, describe_os_error

LOCK_NAME = ".lock"
# What a training run writes into its folder (an overwrite removes exactly these).
RUN_FILES = ("config.yaml", "log.txt")
RUN_DIRS = (CHECKPOINT_DIR, "samples", "tensorboard")


class RunFolder:
    """Rank 0's hold on a run folder; use as a context manager (the lock is released on exit).

    Args:
        path: the run folder (``save_path``).
        fresh: True when the run starts from scratch (no checkpoint to resume).
        overwrite: let a fresh run replace a run the folder already holds.
    """

    def __init__(self, path: str | os.PathLike[str], *, fresh: bool, overwrite: bool) -> None:
        self.path = Path(path)
        self.fresh = fresh
        self.overwrite = overwrite
        self.last_saved: Path | None = None  # the newest checkpoint known to be complete
        self._lock: int | None = None

    def __enter__(self) -> RunFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise InputError(
                f"save_path {describe_os_error(self.path, err)}; cannot use it as the run folder"
            ) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise InputError(
                f"{self.path}: another ctsdg train is using this run folder; wait for it to "
                "finish or choose another save_path"
            ) from None
        try:
            self._remove_stale_temporaries()
            if self.fresh:
                self._claim()
            found = list_checkpoints(self.path)
            self.last_saved = found[-1][1] if found else None
        except OSError as err:
            self.close()
            raise InputError(f"save_path {describe_os_error(err.filename, err)}") from None
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (closing the descriptor drops the flock)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def holds_run(self) -> bool:
        """Whether the folder holds (part of) a training run."""
        return bool(list_checkpoints(self.path)) or (self.path / "config.yaml").exists()

    def _claim(self) -> None:
        if not self.holds_run():
            return
        if not self.overwrite:
            found = list_checkpoints(self.path)
            what = f"checkpoints up to iteration {found[-1][0]}" if found else "a config.yaml"
            raise InputError(
                f"{self.path}: holds a run already ({what}); continue it with resume=auto, "
                "choose another save_path, or overwrite it (--overwrite deletes its checkpoints)"
            )
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            if (self.path / name).is_dir():
                shutil.rmtree(self.path / name)

    def _remove_stale_temporaries(self) -> None:
        # Written by fileio.atomic_write as .<name>.<random>.tmp beside the final file.
        for folder in (self.path, self.path / CHECKPOINT_DIR):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
