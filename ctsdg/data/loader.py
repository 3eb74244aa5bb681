"""Batches, samplers, worker seeding and DataLoader building.

Randomness. A training sample's augmentation (crop, flip, mask choice) is a pure function of
``(seed, draw)``, where ``draw`` is the sample's position in the global infinite stream that
``InfiniteSampler`` deals out to the ranks; the sampler hands the dataset a ``SampleKey`` instead
of a bare index. So samples are the same run to run, whatever the number of workers, they differ
between workers and ranks (each draw is taken once), and resuming at an offset continues the
stream exactly. Worker processes are seeded as well, from ``(seed, rank, worker id, epoch)``,
for any code that uses the global generators (``random``, ``numpy.random``, ``torch``) and for
datasets indexed with bare integers.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ctsdg.errors import InputError

if TYPE_CHECKING:
    from ctsdg.config import Config

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """One sample (no batch dimension) or a batch of samples.

    Fields (shapes for a batch of B; a single sample drops the B):
        image: (B, 3, H, W) float32 RGB in [-1, 1] (``x / 255 * 2 - 1``), the full ground truth.
        mask: (B, 1, H, W) float32, 1 on known pixels, 0 on holes.
        edge: (B, 1, H, W) float32 Canny edges in {0, 1} of the full (unmasked) image.
        gray: (B, 1, H, W) float32 gray image in [0, 1] of the full image.
        index: (B,) int64, the dataset index of each sample.
    """

    image: torch.Tensor
    mask: torch.Tensor
    edge: torch.Tensor
    gray: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device`` (``non_blocking`` pays off with pinned memory)."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


def collate(samples: Sequence[Batch]) -> Batch:
    """Stack per-sample ``Batch``es into one ``Batch`` with a leading batch dimension."""
    return Batch(*(torch.stack(field) for field in zip(*samples, strict=True)))


class SampleKey(NamedTuple):
    """What ``InfiniteSampler`` yields: a dataset index plus the seed of its augmentation.

    ``draw`` is the sample's position in the global stream (all ranks together), unique within
    a run; a dataset derives the sample's random generator from ``(seed, draw)``.
    """

    index: int
    seed: int
    draw: int


def sample_generators(key: SampleKey, n: int = 2) -> list[np.random.Generator]:
    """``n`` independent numpy generators for one sample, from its key.

    Separate generators for the image geometry and the mask keep the mask of a sample the same
    when the image code draws a different number of values (a replaced unreadable image, say).
    """
    seq = np.random.SeedSequence([key.seed, key.draw])
    return [np.random.default_rng(s) for s in seq.spawn(n)]


class InfiniteSampler(Sampler[SampleKey]):
    """An endless stream of shuffled epochs, dealt out to distributed ranks.

    Epoch ``e`` is a permutation of ``range(size)`` drawn from ``(seed, e)``. The epochs are
    concatenated into one global stream; rank ``r`` of ``world_size`` takes positions
    ``start + r, start + r + world_size, ...``. Within an epoch the ranks' shards are disjoint
    and together cover every index once.

    Args:
        size: dataset length (> 0).
        seed: base seed of the permutations and of every sample's augmentation.
        rank: this process's rank, 0 <= rank < world_size.
        world_size: number of ranks.
        shuffle: False keeps each epoch in order (0, 1, 2, ...).
        start: number of samples of the global stream already consumed by all ranks together;
            after ``b`` iterations of batch ``B`` on ``W`` ranks that is ``b * B * W``. The
            stream resumes exactly where an uninterrupted run would be.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start: int = 0,
    ) -> None:
        if size <= 0:
            raise ValueError(f"InfiniteSampler needs a non-empty dataset, got size {size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.start = start

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch``: int64 (size,)."""
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[SampleKey]:
        draw = self.start + self.rank
        epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            e, pos = divmod(draw, self.size)
            if e != epoch:
                epoch, order = e, self.permutation(e)
            yield SampleKey(int(order[pos]), self.seed, draw)
            draw += self.world_size


class ShardedSequentialSampler(Sampler[int]):
    """Evaluation order: each rank takes one contiguous block of indices, nothing duplicated.

    Unlike ``DistributedSampler`` no index is repeated to even out the shards (that would count
    those images twice in the metrics); ranks' lengths differ by at most one.
    """

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.begin = size * rank // world_size
        self.end = size * (rank + 1) // world_size

    def __len__(self) -> int:
        return self.end - self.begin

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))


def worker_seed_sequence(
    seed: int, rank: int, worker_id: int, epoch: int
) -> np.random.SeedSequence:
    """The seed sequence of one DataLoader worker."""
    return np.random.SeedSequence([seed, rank, worker_id, epoch])


class WorkerSeeder:
    """``worker_init_fn`` seeding each worker from ``(seed, rank, worker id, epoch)``.

    Seeds Python's ``random``, the global ``numpy.random`` state and torch's generator, and calls
    ``dataset.reseed(seed_sequence)`` when the dataset has it (its generator for bare-integer
    indexing). Workers never keep the RNG state inherited from the parent process, which would
    give every worker the same numbers.
    """

    def __init__(self, seed: int, rank: int = 0, epoch: int = 0) -> None:
        self.seed = seed
        self.rank = rank
        self.epoch = epoch

    def __call__(self, worker_id: int) -> None:
        # Ctrl-C reaches the whole process group; the main process decides how to stop (training
        # saves a checkpoint first), so a worker must not die under it mid-batch.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        seq = worker_seed_sequence(self.seed, self.rank, worker_id, self.epoch)
        py_state, torch_state = (int(s) for s in seq.generate_state(2, np.uint64))
        random.seed(py_state)
        np.random.seed(seq.generate_state(4))
        torch.manual_seed(torch_state)
        info = get_worker_info()
        reseed = getattr(info.dataset, "reseed", None) if info is not None else None
        if reseed is not None:
            reseed(seq.spawn(1)[0])


class BatchLoader(DataLoader):
    """A DataLoader whose InputErrors from worker processes keep their one-line message.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message;
    an InputError (an unreadable evaluation image, say) is meant to reach the user as one line,
    so the original message is restored.
    """

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except InputError as err:
                message = str(err)
                if "Original Traceback" not in message:
                    raise
                original = message.rsplit("InputError: ", 1)[-1].strip()
                raise InputError(original) from None
            yield batch


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def worker_count(config: Config) -> int:
    """``num_parallel_workers``, capped at `available_cores` unless it was typed on the command
    line: more workers than cores only compete with the main process (and PyTorch warns). The
    samples do not depend on the worker count (each is a function of the seed and its
    position), so the cap changes no figure."""
    asked = config.num_parallel_workers
    cores = available_cores()
    if asked <= cores or config.origin("num_parallel_workers") == "override":
        return asked
    log.info(
        "num_parallel_workers %d -> %d, the cores this process may use (num_parallel_workers=%d "
        "on the command line keeps %d)",
        asked,
        cores,
        asked,
        asked,
    )
    return cores


def build_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    train: bool,
    num_workers: int = 2,
    seed: int = 0,
    distributed: tuple[int, int] | None = None,
    start_batch: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> BatchLoader:
    """A DataLoader yielding ``Batch``es.

    Args:
        dataset: a dataset returning per-sample ``Batch``es (``build_dataset``'s).
        batch_size: samples per batch on this rank.
        train: True: an endless ``InfiniteSampler`` stream (iterate it for as many steps as
            wanted; it never raises StopIteration); False: one sequential pass, sharded.
        num_workers: worker processes (0 loads in the calling process).
        seed: seed of the shuffling, of every sample's augmentation and of the workers.
        distributed: ``(rank, world_size)``, or None for a single process.
        start_batch: training only: batches this rank already consumed (the trainer's
            iteration count); the stream resumes exactly after them.
        epoch: folded into the workers' seeds; bump it when rebuilding a loader whose workers
            should draw new global-RNG numbers.
        drop_last: evaluation only: drop a last incomplete batch.
        pin_memory: pin batches in page-locked memory; None: when CUDA is available.
        persistent_workers: keep workers alive between iterations; None: for training (the one
            endless iteration) when there are workers, not for evaluation.
        prefetch_factor: batches each worker loads ahead (None: PyTorch's default).
    """
    rank, world_size = distributed if distributed is not None else (0, 1)
    sampler: Sampler[Any]
    if train:
        sampler = InfiniteSampler(
            len(dataset),  # type: ignore[arg-type]
            seed=seed,
            rank=rank,
            world_size=world_size,
            start=start_batch * batch_size * world_size,
        )
        drop_last = False  # an endless stream has no last batch
    else:
        sampler = ShardedSequentialSampler(len(dataset), rank=rank, world_size=world_size)  # type: ignore[arg-type]
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if persistent_workers is None:
        persistent_workers = train and num_workers > 0
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra["worker_init_fn"] = WorkerSeeder(seed, rank, epoch)
        extra["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    return BatchLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
