"""Bookkeeping of files that training skipped because they could not be read.

Training must not stop for one corrupt JPEG among 200 000, but the user must hear about it, once
per file, and be able to report how many were skipped. DataLoader workers are separate processes
holding copies of the dataset, so the record lives in a shared-memory tensor that every worker
writes and the main process reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class SkippedFileWarning(UserWarning):
    """A training file could not be read and was replaced by another sample."""


class SkipRegistry:
    """Which of ``size`` files were found unreadable (shared across worker processes).

    Args:
        size: number of files.
        describe: the file of an index, for messages (a path).
        what: how to call the files in the warning ("image", "mask").
    """

    def __init__(self, size: int, describe: Callable[[int], str], what: str) -> None:
        self._describe = describe
        self._what = what
        # share_memory_ moves the storage to shared memory: forked or spawned DataLoader workers
        # then write into the parent's copy instead of their own.
        self._flags = torch.zeros(max(size, 1), dtype=torch.uint8).share_memory_()

    def is_skipped(self, index: int) -> bool:
        """Whether file ``index`` is already known to be unreadable."""
        return bool(self._flags[index])

    def mark(self, index: int, reason: str) -> None:
        """Record file ``index`` as unreadable; warn the first time only."""
        if self._flags[index]:
            return
        self._flags[index] = 1
        warnings.warn(
            f"skipping unreadable training {self._what} {self._describe(index)} ({reason}); "
            f"{self.count} skipped so far",
            SkippedFileWarning,
            stacklevel=3,
        )

    @property
    def count(self) -> int:
        """Number of distinct files skipped so far, in all processes."""
        return int(self._flags.sum())

    @property
    def files(self) -> list[str]:
        """The files skipped so far, in dataset order."""
        return [self._describe(i) for i in torch.nonzero(self._flags).flatten().tolist()]
