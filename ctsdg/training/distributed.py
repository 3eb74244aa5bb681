"""One process or many: the process group under ``torchrun`` and the collectives training uses.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set) the process joins the group:
NCCL on CUDA, gloo on CPU; multi-node works with torchrun's own rendezvous options. Without it,
everything degrades to a single process and the collectives are no-ops. ``WORLD_SIZE`` and its
friends set by hand are checked; a process waiting for others that never come says so at once
and gives up after ``CTSDG_DIST_TIMEOUT`` seconds (default 600) with one line.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ctsdg.errors import InputError, shown
from ctsdg.runtime import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0, the only process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def quiet(*args: object, **kwargs: object) -> None:
    """``print`` for the ranks that do not print: only rank 0 talks to the user."""


#: How long to wait for the other processes to join (``CTSDG_DIST_TIMEOUT`` seconds); it is
#: the process group's timeout too, so also the longest a collective waits (NCCL's default).
DEFAULT_JOIN_TIMEOUT_S = 600.0


def _env_int(name: str, default: int, low: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise InputError(
            f"{name}={shown(text)}: expected a whole number >= {low} (torchrun sets it; unset it "
            "to run one process)"
        )
    return value


def join_timeout() -> float:
    """``CTSDG_DIST_TIMEOUT`` (seconds, > 0), else `DEFAULT_JOIN_TIMEOUT_S`."""
    text = os.environ.get("CTSDG_DIST_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_JOIN_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"CTSDG_DIST_TIMEOUT={shown(text)}: expected a number of seconds > 0")
    return value


def setup(device_name: str = "auto") -> Context:
    """Join the process group if launched by torchrun; pick this process's device.

    ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are checked (whole numbers, rank below world
    size). Outside torchrun, a process told it is one of several says which address it waits
    at for the others, and gives up after `join_timeout` seconds with one line.
    """
    world_size = _env_int("WORLD_SIZE", 1, 1)
    rank = _env_int("RANK", 0, 0)
    local_rank = _env_int("LOCAL_RANK", 0, 0)
    if rank >= world_size:
        raise InputError(f"RANK={rank} but WORLD_SIZE={world_size}: a rank is below the size")
    device = resolve_device(device_name)
    if device.type == "cuda" and device.index is None:
        if world_size > 1 and local_rank >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs on this node"
            )
        device = torch.device("cuda", local_rank if world_size > 1 else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        _join(world_size, rank, device)
    return Context(rank, world_size, local_rank, device)


def _join(world_size: int, rank: int, device: torch.device) -> None:
    timeout = join_timeout()
    unset = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if unset:
        raise InputError(
            f"WORLD_SIZE={world_size} but {' and '.join(unset)} not set: start every process "
            "with torchrun (which sets them), or unset WORLD_SIZE to run one process"
        )
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not torchrun: the user may not expect a wait
        log.warning(
            "WORLD_SIZE=%d, RANK=%d: waiting up to %gs at %s for the other %d process(es) "
            "(torchrun starts them; unset WORLD_SIZE to run alone; CTSDG_DIST_TIMEOUT sets "
            "the wait)",
            world_size,
            rank,
            timeout,
            where,
            world_size - 1,
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend=backend,
            device_id=device if device.type == "cuda" else None,
            timeout=datetime.timedelta(seconds=timeout),
        )
    except (RuntimeError, ValueError) as err:  # DistStoreError, a missing MASTER_ADDR, ...
        reason = " ".join(str(err).split())
        reason = reason if len(reason) <= 200 else reason[:200] + "..."
        raise InputError(
            f"rank {rank} of {world_size} could not join the others at {where} within "
            f"{timeout:g}s ({reason}); start every process with torchrun, or unset WORLD_SIZE"
        ) from None


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(values: dict[str, float], ctx: Context) -> dict[str, float]:
    """Average a dict of floats over all ranks (every rank gets the result)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: v / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(flags: list[bool], ctx: Context) -> list[bool]:
    """Element-wise OR of boolean flags over ranks, so that all ranks take the same branch."""
    if not ctx.distributed:
        return flags
    t = torch.tensor(flags, dtype=torch.int32, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def stop_together(error: Exception | None, ctx: Context, elsewhere: str) -> None:
    """Raise on every rank when any rank failed: this rank's ``error``, or on the others an
    InputError saying ``elsewhere`` (so that no rank waits in a collective for one that quit)."""
    if any_rank([error is not None], ctx)[0]:
        raise error or InputError(elsewhere)


def sum_over_ranks(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum a tensor over ranks (in place when distributed); returns it."""
    if ctx.distributed:
        dist.all_reduce(values)
    return values


def gather_objects(value: object, ctx: Context) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` alone."""
    if not ctx.distributed:
        return [value]
    values: list[object] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state-dict order (identical weights, same hash)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def broadcast_buffers(module: torch.nn.Module, ctx: Context) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, spectral-norm vectors) to every rank.

    Each rank updates its buffers from its own batch. Training calls this once per iteration,
    before any forward pass, in place of DDP's ``broadcast_buffers`` (which re-broadcasts before
    every forward: see `steps.data_parallel`). One broadcast per dtype, not one per buffer.
    """
    if not ctx.distributed:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in module.buffers():
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    with torch.no_grad():
        for buffers in by_dtype.values():
            flat = torch.cat([b.reshape(-1) for b in buffers])
            dist.broadcast(flat, src=0)
            if ctx.rank != 0:
                for buffer, part in zip(
                    buffers, flat.split([b.numel() for b in buffers]), strict=True
                ):
                    buffer.copy_(part.view_as(buffer))


def check_consistency(module: torch.nn.Module, ctx: Context, what: str) -> str:
    """Verify that every rank holds identical weights; returns this rank's digest.

    Buffers are first taken from rank 0 (see `broadcast_buffers`). DDP keeps the parameters
    equal only if every rank takes the same steps; a divergence would otherwise go unnoticed.
    """
    broadcast_buffers(module, ctx)
    digest = state_digest(module)
    if ctx.distributed:
        digests: list[str | None] = [None] * ctx.world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"{what} weights differ between ranks: {digests}")
    return digest
