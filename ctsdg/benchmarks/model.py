"""Generator speed: ``ctsdg bench model``.

Forward time at batch 1 (eval mode, no gradients) and forward+backward time at batch 2 (train
mode, gradients of the three outputs), 256x256 by default, minimum of several runs. With
``--reference`` the same weights also run the reference formulation (the authors' full-width
mask convolutions and per-image attention loop), so the speed-up is measured in one process,
and the inference paths of ``--paths`` (backend and precision, as `ctsdg.backends` runs them for
``ctsdg inpaint`` / ``ctsdg eval``) are timed at batch 1 interleaved with the reference's eager
fp32 forward: ``forward_ms_by_path`` and ``speedup_by_path``.
"""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

import torch

from ctsdg.benchmarks.reference import reference_copy
from ctsdg.models import Generator, generator_inputs
from ctsdg.models.generator import example_batch
from ctsdg.runtime import resolve_device, time_min, tune_cpu_allocator


def _memory_format(tensors, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [t.contiguous(memory_format=fmt) for t in tensors]


def time_generator(
    generator: Generator, device: torch.device, size: int, repeats: int, channels_last: bool
) -> dict[str, float]:
    """``forward_ms`` (batch 1, eval) and ``forward_backward_ms`` (batch 2, train)."""
    if channels_last:
        generator = generator.to(memory_format=torch.channels_last)
    one = _memory_format(generator_inputs(*example_batch(1, size, device)), channels_last)
    two = _memory_format(generator_inputs(*example_batch(2, size, device, 1)), channels_last)

    def forward() -> None:
        with torch.no_grad():
            generator(*one)

    def forward_backward() -> None:
        out = generator(*two)
        sum(o.mean() for o in out).backward()
        generator.zero_grad(set_to_none=True)

    generator.eval()
    forward_ms = time_min(forward, device, repeats)
    generator.train()
    forward_backward_ms = time_min(forward_backward, device, repeats)
    return {
        "forward_ms": round(forward_ms, 1),
        "forward_backward_ms": round(forward_backward_ms, 1),
    }


def time_paths(
    generator: Generator,
    device: torch.device,
    size: int,
    repeats: int,
    paths: list[tuple[str, str]],
) -> dict[str, float]:
    """Batch-1 forward ms of the reference formulation and of each (backend, precision) path.

    The paths run interleaved, one call each per round, and each keeps its minimum: on a
    shared machine a load spike then hits every path alike instead of one. Keys are
    ``"reference eager fp32"`` and ``"BACKEND PRECISION"``; a path that cannot run on this
    device (`ctsdg.backends.UnsupportedError`) is left out.
    """
    import tempfile

    from ctsdg.backends import UnsupportedError, build_runner

    image, edge, gray, mask = example_batch(1, size, device)
    reference = reference_copy(generator).eval()

    def reference_forward() -> None:
        with torch.no_grad():
            reference(*generator_inputs(image, edge, gray, mask))

    calls = {"reference eager fp32": reference_forward}
    with tempfile.TemporaryDirectory(prefix="ctsdg-bench-") as cache:
        for backend, precision in paths:
            try:
                run = build_runner(generator, backend, precision, device, size=size, cache=cache)
            except UnsupportedError:
                continue
            calls[f"{backend} {precision}"] = lambda run=run: run(image, mask, gray, edge)
        for call in calls.values():  # warm-up: compile, build sessions, fill caches
            call()
            call()
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(repeats):
            for name, call in calls.items():
                best[name] = min(best[name], time_min(call, device, repeats=1, warmup=0))
    return {name: round(ms, 1) for name, ms in best.items()}


def measure(
    device: torch.device,
    *,
    size: int = 256,
    width: int = 64,
    repeats: int = 5,
    channels_last: bool = False,
    reference: bool = False,
    paths: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Time the generator (and optionally its reference formulation) on one device.

    With ``reference`` and ``paths``, also `time_paths`: ``forward_ms_by_path`` and
    ``speedup_by_path`` (reference forward ms / the path's, measured interleaved).
    """
    torch.manual_seed(0)
    generator = Generator(width=width).to(device)
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": _device_name(device),
        "size": size,
        "width": width,
        "channels_last": channels_last,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    result.update(time_generator(generator, device, size, repeats, channels_last))
    if reference:
        ref = time_generator(reference_copy(generator), device, size, repeats, channels_last)
        result["reference_forward_ms"] = ref["forward_ms"]
        result["reference_forward_backward_ms"] = ref["forward_backward_ms"]
        result["speedup_forward"] = round(ref["forward_ms"] / result["forward_ms"], 2)
        result["speedup_forward_backward"] = round(
            ref["forward_backward_ms"] / result["forward_backward_ms"], 2
        )
        if paths:
            by_path = time_paths(generator, device, size, repeats, paths)
            base = by_path["reference eager fp32"]
            result["forward_ms_by_path"] = by_path
            result["speedup_by_path"] = {k: round(base / v, 2) for k, v in by_path.items()}
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_paths(text: str) -> list[tuple[str, str]]:
    """``"eager:fp32,onnxruntime:fp32"`` -> [("eager", "fp32"), ("onnxruntime", "fp32")]."""
    from ctsdg.backends import BACKENDS, PRECISIONS
    from ctsdg.errors import InputError

    paths = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        backend, _, precision = item.partition(":")
        if backend not in BACKENDS or precision not in PRECISIONS:
            raise InputError(
                f"--paths {item!r}: expected BACKEND:PRECISION with BACKEND in "
                f"{', '.join(BACKENDS)} and PRECISION in {', '.join(PRECISIONS)}"
            )
        paths.append((backend, precision))
    return paths


def devices_for(name: str) -> list[torch.device]:
    """``all``: the CPU, and the GPU when there is one; otherwise one named device."""
    if name == "all":
        found = [torch.device("cpu")]
        if torch.cuda.is_available():
            found.append(torch.device("cuda"))
        return found
    return [resolve_device(name)]


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench model`` and print the result."""
    from ctsdg.errors import InputError

    if args.size % 128 or args.size < 128:
        raise InputError(f"--size {args.size}: must be a multiple of 128")
    if args.repeats < 1 or args.width < 1:
        raise InputError("--repeats and --width must be at least 1")
    paths = parse_paths(args.paths)
    tuned = tune_cpu_allocator()
    for device in devices_for(args.device):
        result = measure(
            device, size=args.size, width=args.width, repeats=args.repeats,
            channels_last=args.channels_last, reference=args.reference, paths=paths,
        )  # fmt: skip
        result["allocator_tuned"] = tuned
        if args.json:
            print(json.dumps(result), flush=True)
            continue
        line = (
            f"generator {args.size}x{args.size} width {args.width} on {device} "
            f"({result['device_name']}, {result['threads']} threads): "
            f"forward {result['forward_ms']:.1f} ms (batch 1), "
            f"forward+backward {result['forward_backward_ms']:.1f} ms (batch 2)"
        )
        if args.reference:
            line += (
                f"; reference {result['reference_forward_ms']:.1f} / "
                f"{result['reference_forward_backward_ms']:.1f} ms "
                f"(x{result['speedup_forward']} / x{result['speedup_forward_backward']})"
            )
            for name, ms in result.get("forward_ms_by_path", {}).items():
                line += f"\n  forward {name}: {ms:.1f} ms (x{result['speedup_by_path'][name]})"
        print(line, flush=True)
    return 0
