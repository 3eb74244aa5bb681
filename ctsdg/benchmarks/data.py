"""Data-loading throughput: ``ctsdg bench data``.

Measures how many training samples per second one worker produces: decoding / cropping the
demo photographs, a free-form mask, the gray image and Canny edges, tensor conversion. It runs
in the calling process, without DataLoader overhead, so the figure is per worker; a DataLoader
with N workers delivers about N times as much on N free cores.

``run(args)`` runs ``ctsdg bench data`` (options declared in `ctsdg.benchmarks`).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Literal


def measure_throughput(
    samples: int = 200,
    *,
    image_size: int = 256,
    structure: Literal["correct", "authors"] = "correct",
    warmup: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``samples`` training samples of the demo data set in this process.

    Args:
        samples: samples to time (after ``warmup`` untimed ones, which load the photographs).
        image_size: H = W of the samples.
        structure: ``"correct"`` or ``"authors"`` structure inputs.
        warmup: untimed samples first.
        seed: seed of the sample stream.

    Returns:
        ``samples``, ``seconds``, ``samples_per_s``, ``ms_per_sample``, ``image_size``,
        ``structure``, ``dataset``.
    """
    import torch

    from ctsdg.data import InfiniteSampler, build_dataset

    if samples < 1:
        from ctsdg.errors import InputError

        raise InputError(f"--samples must be >= 1, got {samples}")
    torch.set_num_threads(1)  # a DataLoader worker runs single-threaded too
    dataset = build_dataset(
        "demo",
        "train",
        image_size=image_size,
        structure=structure,  # type: ignore[arg-type]
    )
    keys = iter(InfiniteSampler(len(dataset), seed=seed))
    for _ in range(warmup):
        dataset[next(keys)]
    timed = [next(keys) for _ in range(samples)]
    start = time.perf_counter()
    for key in timed:
        dataset[key]
    seconds = time.perf_counter() - start
    return {
        "dataset": "demo/train",
        "samples": samples,
        "seconds": round(seconds, 4),
        "samples_per_s": round(samples / seconds, 1),
        "ms_per_sample": round(1000 * seconds / samples, 2),
        "image_size": [image_size, image_size],
        "structure": structure,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench data`` and print the result."""
    result = measure_throughput(args.samples, image_size=args.size, structure=args.structure)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"data ({result['dataset']}, {args.size}x{args.size}, {args.structure} edges): "
            f"{result['samples_per_s']:.1f} samples/s per worker "
            f"({result['ms_per_sample']:.2f} ms/sample over {result['samples']} samples)"
        )
    return 0
