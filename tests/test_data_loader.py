"""Data loading: samplers, sharding, exact resume, worker seeding, batches, the benchmark."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from ctsdg.data import (
    Batch,
    InfiniteSampler,
    ShardedSequentialSampler,
    build_dataset,
    build_loader,
    collate,
)


def take(iterable, n: int) -> list:
    return list(itertools.islice(iterable, n))


# --------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("size", [10, 7])
def test_infinite_sampler_shards_each_epoch(size: int) -> None:
    world = 2
    per_rank = [
        take(InfiniteSampler(size, seed=3, rank=r, world_size=world), 3 * size) for r in (0, 1)
    ]
    # the global stream, position by position, is the concatenation of shuffled epochs
    stream = {k.draw: k.index for keys in per_rank for k in keys}
    assert sorted(stream) == list(range(2 * 3 * size))
    for epoch in range(3):
        indices = [stream[epoch * size + p] for p in range(size)]
        assert sorted(indices) == list(range(size))  # every index once per epoch
    # within an epoch the two ranks' shards are disjoint and cover everything
    first = [{k.index for k in keys if k.draw < size} for keys in per_rank]
    assert not first[0] & first[1] and first[0] | first[1] == set(range(size))
    # epochs are reshuffled, deterministically
    sampler = InfiniteSampler(size, seed=3)
    assert not np.array_equal(sampler.permutation(0), sampler.permutation(1))
    np.testing.assert_array_equal(
        sampler.permutation(4), InfiniteSampler(size, seed=3).permutation(4)
    )
    assert not np.array_equal(sampler.permutation(0), InfiniteSampler(size, seed=4).permutation(0))


def test_infinite_sampler_resume_is_exact() -> None:
    size, world, batch, done = 9, 3, 2, 5
    for rank in range(world):
        uninterrupted = take(InfiniteSampler(size, seed=1, rank=rank, world_size=world), 40)
        resumed = take(
            InfiniteSampler(size, seed=1, rank=rank, world_size=world, start=done * batch * world),
            40 - done * batch,
        )
        assert resumed == uninterrupted[done * batch :]


def test_sharded_sequential_sampler() -> None:
    for size, world in [(10, 3), (2, 4), (8, 2)]:
        shards = [
            list(ShardedSequentialSampler(size, rank=r, world_size=world)) for r in range(world)
        ]
        flat = [i for shard in shards for i in shard]
        assert flat == list(range(size))  # no duplicate, nothing lost, in order
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert [
            len(ShardedSequentialSampler(size, rank=r, world_size=world)) for r in range(world)
        ] == [len(s) for s in shards]


# --------------------------------------------------------------------------- loaders


@pytest.fixture(scope="module")
def demo_train() -> Dataset:
    return build_dataset("demo", "train", image_size=32)


def batches(loader, n: int) -> list[Batch]:
    return take(iter(loader), n)


def test_batch_structure(demo_train: Dataset) -> None:
    (batch,) = batches(build_loader(demo_train, 4, train=True, num_workers=0, seed=0), 1)
    assert isinstance(batch, Batch)
    assert batch.image.shape == (4, 3, 32, 32) and batch.image.dtype == torch.float32
    assert batch.mask.shape == batch.edge.shape == batch.gray.shape == (4, 1, 32, 32)
    assert batch.index.shape == (4,) and batch.index.dtype == torch.int64
    assert not batch.image.is_pinned()  # no CUDA here: pinning is off by default
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.mask, batch.mask)
    restacked = collate([Batch(*(f[i] for f in batch)) for i in range(4)])
    assert all(torch.equal(a, b) for a, b in zip(restacked, batch, strict=True))


def test_training_loader_resume_is_exact(demo_train: Dataset) -> None:
    full = batches(build_loader(demo_train, 3, train=True, num_workers=0, seed=11), 5)
    resumed = batches(
        build_loader(demo_train, 3, train=True, num_workers=0, seed=11, start_batch=2), 3
    )
    for a, b in zip(full[2:], resumed, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_training_crops_reproducible_and_distinct_per_rank_and_worker(demo_train: Dataset) -> None:
    def run(rank: int, workers: int, seed: int = 5) -> list[Batch]:
        loader = build_loader(
            demo_train, 2, train=True, num_workers=workers, seed=seed, distributed=(rank, 2)
        )
        return batches(loader, 4)

    rank0 = run(0, workers=2)
    # the same seed gives the same samples, whatever the number of workers
    for other in (run(0, workers=2), run(0, workers=0)):
        for a, b in zip(rank0, other, strict=True):
            assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    # batches 0 and 2 come from worker 0, batches 1 and 3 from worker 1: all samples differ
    images = torch.cat([b.image for b in rank0]).flatten(1)
    assert torch.cdist(images, images).triu(1)[torch.ones(8, 8).triu(1).bool()].min() > 0
    # another rank or another seed: other crops
    rank1 = run(1, workers=0)
    assert not any(torch.equal(a.image, b.image) for a, b in zip(rank0, rank1, strict=True))
    reseeded = run(0, workers=0, seed=6)
    assert not any(torch.equal(a.image, b.image) for a, b in zip(rank0, reseeded, strict=True))


class GlobalRandomDataset(Dataset):
    """Returns what the global generators give in the worker: (numpy, random, torch) draws."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> Batch:
        draws = torch.tensor([np.random.random(), random.random(), torch.rand(()).item()])
        zero = torch.zeros(1, 1, 1)
        return Batch(draws, zero, zero, zero, torch.tensor(index))


def test_worker_seeding_of_global_generators() -> None:
    def draws(seed: int) -> torch.Tensor:
        loader = build_loader(GlobalRandomDataset(), 1, train=False, num_workers=2, seed=seed)
        # batch i comes from worker i % 2
        return torch.stack([b.image[0] for b in loader])

    np.random.seed(0)  # the parent's state must not leak into the workers
    a = draws(seed=1)
    np.random.seed(123)
    assert torch.equal(a, draws(seed=1))
    # worker 0 and worker 1 differ in every generator
    assert torch.all(a[0] != a[1]) and torch.all(a[2] != a[3])
    assert torch.all(a != draws(seed=2))


def test_worker_seeding_differs_per_rank() -> None:
    from ctsdg.data.loader import WorkerSeeder

    def first_draws(rank: int, worker: int, epoch: int = 0) -> tuple[float, float, float]:
        WorkerSeeder(7, rank, epoch)(worker)
        return np.random.random(), random.random(), torch.rand(()).item()

    base = first_draws(0, 0)
    assert base == first_draws(0, 0)
    for other in (first_draws(1, 0), first_draws(0, 1), first_draws(0, 0, epoch=1)):
        assert all(x != y for x, y in zip(base, other, strict=True))


def test_evaluation_loader_shards_without_duplicates(tmp_path: Path) -> None:
    for i in range(5):
        Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    ds = build_dataset("folder", "test", data_root=tmp_path, image_size=32)
    seen = []
    for rank in range(2):
        loader = build_loader(ds, 2, train=False, num_workers=0, distributed=(rank, 2))
        seen += [int(i) for b in loader for i in b.index]
    assert seen == [0, 1, 2, 3, 4]
    loader = build_loader(ds, 2, train=False, num_workers=0, drop_last=True)
    assert [b.index.tolist() for b in loader] == [[0, 1], [2, 3]]


def test_skip_count_is_shared_by_workers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    (tmp_path / "2.png").write_bytes(b"not a png")
    (tmp_path / "4.png").write_bytes((tmp_path / "5.png").read_bytes()[:100])
    ds = build_dataset("folder", "train", data_root=tmp_path, image_size=32)
    loader = build_loader(ds, 3, train=True, num_workers=2, seed=0, persistent_workers=False)
    # the workers warn in their own processes; the record of skipped files is shared
    indices = {int(i) for b in batches(loader, 8) for i in b.index}
    assert indices == {0, 1, 3, 5}
    assert sorted(Path(p).name for p in ds.skipped_files) == ["2.png", "4.png"]


# --------------------------------------------------------------------------- benchmark


def test_throughput_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from ctsdg.benchmarks import data as bench_data
    from ctsdg.cli import main

    result = bench_data.measure_throughput(4, image_size=64, warmup=1)
    assert result["samples"] == 4 and result["samples_per_s"] > 0
    assert main(["bench", "data", "--samples", "3", "--size", "64", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["image_size"] == [64, 64] and printed["ms_per_sample"] > 0


def test_evaluation_error_from_a_worker_is_one_line(tmp_path: Path) -> None:
    from ctsdg.errors import InputError

    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("not an image")
    ds = build_dataset("folder", "test", data_root=tmp_path, image_size=32)
    with pytest.raises(InputError) as err:
        list(build_loader(ds, 1, train=False, num_workers=1))
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot read evaluation image")
    assert str(tmp_path / "b.png") in message


def test_default_worker_count_is_capped_at_the_cores(monkeypatch) -> None:
    from ctsdg.config import load_config, shipped_config
    from ctsdg.data import loader

    monkeypatch.setattr(loader, "available_cores", lambda: 2)
    assert loader.worker_count(load_config()) == 2  # the default 4
    assert loader.worker_count(load_config(shipped_config("places2"))) == 2  # the file's 8
    assert loader.worker_count(load_config(overrides=["num_parallel_workers=6"])) == 6  # typed
    assert loader.worker_count(load_config(overrides=["num_parallel_workers=1"])) == 1
    assert loader.available_cores() >= 1
