"""Process-level settings shared by the commands: device choice, precision, the CPU allocator."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

import torch

from ctsdg.choices import PRECISIONS
from ctsdg.errors import InputError

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # both thresholds while tuned: freed blocks of any size stay in the process
_allocator_tuned = False
_libc: ctypes.CDLL | None = None

#: Images above this many pixels (256 x 256, the training size) run with large blocks handed
#: back to the OS (see `large_input_memory`).
LARGE_INPUT_PIXELS = 256 * 256
_LARGE_BLOCK = 32 << 20


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the OS (glibc).

    glibc serves large blocks with ``mmap`` and unmaps them on free, so every new activation
    of a 256x256 CTSDG pass starts with thousands of page faults; on a 2-core machine that was
    40 % of a training step. Raising the mmap and trim thresholds lets freed blocks be reused.
    The cost is that the process keeps its peak memory. Set ``CTSDG_TUNE_MALLOC=0`` to skip.
    Returns True if the setting was applied.
    """
    global _allocator_tuned, _libc
    if _allocator_tuned or os.environ.get("CTSDG_TUNE_MALLOC", "1") == "0":
        return _allocator_tuned
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _KEEP) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP) == 1
    _allocator_tuned, _libc = ok, libc
    return ok


@contextlib.contextmanager
def large_input_memory(pixels: int) -> Iterator[None]:
    """Inside, blocks of 32 MiB and more come from and go back to the OS, and so does free heap
    memory above 32 MiB (``pixels`` per image above `LARGE_INPUT_PIXELS`, allocator tuned);
    otherwise a no-op.

    With every freed block kept, the full-resolution buffers of a large forward fragment the
    heap: a 512 x 512 forward's peak RSS came out anywhere between 1.5 and 2.4 GB from run to
    run of the same command. With both thresholds at 32 MiB it is 1.2-1.4 GB, at 11-18 % more
    time per 512 x 512 forward (page faults; docs/benchmarks.md). Free heap memory kept from
    earlier calls is returned on entry.
    """
    if _libc is None or pixels <= LARGE_INPUT_PIXELS:
        yield
        return
    _libc.malloc_trim(0)
    _libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)
    _libc.mallopt(_M_TRIM_THRESHOLD, _LARGE_BLOCK)
    try:
        yield
    finally:
        _libc.mallopt(_M_MMAP_THRESHOLD, _KEEP)
        _libc.mallopt(_M_TRIM_THRESHOLD, _KEEP)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


_PRECISIONS = dict(zip(PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for ``bf16`` / ``fp16``, or a no-op for ``fp32``."""
    if precision not in _PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(_PRECISIONS)}")
    dtype = _PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype is torch.float16:
        raise InputError("precision fp16 needs a CUDA device; use bf16 on CPU")
    return torch.autocast(device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_min(
    fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1
) -> float:
    """Minimum wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best * 1000.0
