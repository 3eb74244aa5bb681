"""The run folder (``save_path``) as rank 0 claims it: created, locked, cleaned, never clobbered.

- An advisory lock (``flock`` on ``SAVE_PATH/.lock``) keeps a second ``ctsdg train`` out of a
  folder that one is using. The kernel drops it when the process ends, crash or not, so a lock
  file left behind is never stale.
- Temporary files of interrupted checkpoint writes (``checkpoints/.checkpoint_*.tmp``, left by a
  SIGKILL mid-save) are removed on start; the lock guarantees no writer owns them.
- A fresh run (no ``resume``) refuses a folder that already holds a run, unless asked to
  overwrite it, which first removes that run's checkpoints, samples, events, log and config.
- A folder that cannot be created or written is an `InputError` naming the path and the reason.
- A run that stops before it wrote anything leaves no folder behind that it created (not even
  the lock file), so nothing looks like a run that never was.

`check_run_folder` makes the same checks without creating or locking anything (``--dry-run``).
"""

from __future__ import annotations

import contextlib
import errno
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


def check_run_folder(path: str | os.PathLike[str], *, fresh: bool, overwrite: bool) -> None:
    """Raise the `InputError` that `RunFolder` would raise for ``path``, touching nothing: a
    place that cannot be a writable folder, or (for a fresh run without ``overwrite``) a folder
    that holds a run already. A lock held by a running ``ctsdg train`` is not checked."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    code = None
    if not existing.is_dir():  # what mkdir would say: the path is a file, or a parent is
        code = errno.EEXIST if existing == path else errno.ENOTDIR
    elif os.statvfs(existing).f_flag & os.ST_RDONLY:
        code = errno.EROFS
    elif not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EACCES
    if code is not None:
        raise _unusable(path, OSError(code, os.strerror(code), str(existing)))
    if fresh and not overwrite:
        _refuse_if_used(path)


def _unusable(path: Path, err: OSError) -> InputError:
    return InputError(f"save_path {describe_os_error(path, err)}; cannot use it as the run folder")


def holds_run(path: Path) -> bool:
    """Whether the folder holds (part of) a training run."""
    return bool(list_checkpoints(path)) or (path / "config.yaml").exists()


def _refuse_if_used(path: Path) -> None:
    if holds_run(path):
        found = list_checkpoints(path)
        what = f"checkpoints up to iteration {found[-1][0]}" if found else "a config.yaml"
        raise InputError(
            f"{path}: holds a run already ({what}); continue it with resume=auto, "
            "choose another save_path, or overwrite it (--overwrite deletes its checkpoints)"
        )


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
        self._created: list[Path] = []  # the folders this run made, the outermost first

    def __enter__(self) -> RunFolder:
        self._created = [p for p in (*reversed(self.path.parents), self.path) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise _unusable(self.path, err) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._created = []  # the folder is another run's
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
        """Release the lock (closing the descriptor drops the flock). A folder this run created
        that holds nothing but the lock file is removed (with the parents it created)."""
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            if self._created and [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
                (self.path / LOCK_NAME).unlink()
                for folder in reversed(self._created):
                    folder.rmdir()
        os.close(self._lock)
        self._lock = None

    def holds_run(self) -> bool:
        """Whether the folder holds (part of) a training run."""
        return holds_run(self.path)

    def _claim(self) -> None:
        if not self.holds_run():
            return
        if not self.overwrite:
            _refuse_if_used(self.path)
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
