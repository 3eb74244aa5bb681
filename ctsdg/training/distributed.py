"""One process or many: the process group under ``torchrun`` and the collectives training uses.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set) the process joins the group:
NCCL on CUDA, gloo on CPU; multi-node works with torchrun's own rendezvous options. Without it,
everything degrades to a single process and the collectives are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ctsdg.errors import InputError
from ctsdg.runtime import resolve_device


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


def setup(device_name: str = "auto") -> Context:
    """Join the process group if launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, device_id=device if device.type == "cuda" else None
        )
    return Context(rank, world_size, local_rank, device)


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
