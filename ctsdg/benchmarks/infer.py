"""Inference speed: ``ctsdg bench infer`` (also what plain ``ctsdg bench`` runs).

For each device (the CPU, and CUDA when present) and backend, the generator's forward pass in
eval mode without gradients, random weights, 256 x 256 by default:

- ``batch1_ms``: milliseconds per image at batch 1 (the minimum over ``repeats`` runs after a
  warm-up run);
- ``batch_images_per_s``: images per second at batch ``batch`` (8 by default), from the
  minimum time of a batch.

Backends: ``eager`` (PyTorch), ``compiled`` (``torch.compile``, default mode, static shapes;
its compile time is reported as ``setup_s``), ``onnxruntime`` (the model exported as by
``ctsdg export``, run with the CPU provider, or the CUDA provider on a GPU when ONNX Runtime has
it; ``intra_op_num_threads`` = PyTorch's thread count). A backend that cannot run (no C++
compiler for ``torch.compile``, no CUDA provider) is reported with ``status`` ``"failed"`` or
``"skipped"`` and an ``error``, and the others still run.

``--json`` prints one JSON object per device and backend, one per line, with the keys
``target``, ``device``, ``device_name``, ``backend``, ``status``, ``size``, ``width``,
``batch``, ``threads``, ``torch``, ``onnxruntime``, ``repeats``, ``batch1_ms``,
``batch_images_per_s``, ``setup_s`` and, when not ``ok``, ``error``.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ctsdg.benchmarks.model import _device_name, devices_for
from ctsdg.errors import InputError
from ctsdg.export import INPUT_NAMES, random_inputs, write_onnx
from ctsdg.models import Generator
from ctsdg.runtime import time_min, tune_cpu_allocator

BACKENDS = ("eager", "compiled", "onnxruntime")

Runner = Callable[[tuple[torch.Tensor, ...]], object]


def _eager(generator: Generator, device: torch.device, workdir: Path, size: int) -> Runner:
    def run(inputs: tuple[torch.Tensor, ...]) -> object:
        with torch.inference_mode():
            return generator(*inputs)

    return run


def _compiled(generator: Generator, device: torch.device, workdir: Path, size: int) -> Runner:
    compiled = torch.compile(generator, dynamic=False)
    return _eager(compiled, device, workdir, size)  # type: ignore[arg-type]


def _onnxruntime(generator: Generator, device: torch.device, workdir: Path, size: int) -> Runner:
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise _Skipped("this ONNX Runtime build has no CUDAExecutionProvider")
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    path = workdir / "generator.onnx"
    # the exporter traces on the CPU; a copy leaves the timed PyTorch model where it is
    write_onnx(copy.deepcopy(generator).cpu(), path, size, {"producer": "ctsdg bench infer"})
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=providers)

    def run(inputs: tuple[torch.Tensor, ...]) -> object:
        feed = {n: t.cpu().numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)}
        return session.run(None, feed)

    return run


class _Skipped(Exception):
    """The backend does not exist on this device (not a failure)."""


_FACTORIES: dict[str, Callable[[Generator, torch.device, Path, int], Runner]] = {
    "eager": _eager,
    "compiled": _compiled,
    "onnxruntime": _onnxruntime,
}


def measure(
    device: torch.device,
    backend: str,
    *,
    size: int = 256,
    width: int = 64,
    batch: int = 8,
    repeats: int = 5,
) -> dict[str, Any]:
    """Time one backend on one device; never raises for a backend that cannot run."""
    import onnxruntime

    result: dict[str, Any] = {
        "target": "infer",
        "device": str(device),
        "device_name": _device_name(device),
        "backend": backend,
        "status": "ok",
        "size": size,
        "width": width,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "repeats": repeats,
        "batch1_ms": None,
        "batch_images_per_s": None,
        "setup_s": None,
    }
    torch.manual_seed(0)
    generator = Generator(width=width).to(device).eval()
    one = tuple(t.to(device) for t in random_inputs(1, size))
    many = tuple(t.to(device) for t in random_inputs(batch, size, seed=1))
    try:
        with tempfile.TemporaryDirectory(prefix="ctsdg-bench-") as tmp:
            start = time.perf_counter()
            run = _FACTORIES[backend](generator, device, Path(tmp), size)
            run(one)  # compiles / builds the session for batch 1
            result["setup_s"] = round(time.perf_counter() - start, 2)
            result["batch1_ms"] = round(time_min(lambda: run(one), device, repeats, warmup=1), 1)
            batch_ms = time_min(lambda: run(many), device, repeats, warmup=1)
            result["batch_images_per_s"] = round(batch * 1000 / batch_ms, 2)
    except _Skipped as err:
        result.update(status="skipped", error=str(err))
    except Exception as err:  # a backend failing must not stop the others
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result.update(status="failed", error=f"{type(err).__name__}: {first}"[:500])
    return result


def _line(r: dict[str, Any]) -> str:
    where = f"{r['backend']:<12} {r['device']} ({r['device_name']}, {r['threads']} threads)"
    if r["status"] != "ok":
        return f"{where}: {r['status']}: {r.get('error', '')}"
    return (
        f"{where}: {r['batch1_ms']:.1f} ms/image at batch 1, "
        f"{r['batch_images_per_s']:.2f} images/s at batch {r['batch']} "
        f"(setup {r['setup_s']:.1f} s)"
    )


def parse_backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise InputError(f"--backends {text!r}: expected a comma list of {', '.join(BACKENDS)}")
    return names


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench infer`` and print one line (or JSON object) per device and backend."""
    if args.size % 128 or args.size < 128:
        raise InputError(f"--size {args.size}: must be a multiple of 128")
    if args.repeats < 1 or args.width < 1 or args.batch < 1:
        raise InputError("--repeats, --width and --batch must be at least 1")
    backends = parse_backends(args.backends)
    tune_cpu_allocator()
    for device in devices_for(args.device):
        for backend in backends:
            result = measure(
                device, backend, size=args.size, width=args.width, batch=args.batch,
                repeats=args.repeats,
            )  # fmt: skip
            print(json.dumps(result) if args.json else _line(result), flush=True)
    return 0
