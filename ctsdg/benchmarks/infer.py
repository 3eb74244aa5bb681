"""Inference speed and memory: ``ctsdg bench infer`` (also what plain ``ctsdg bench`` runs).

For each device (the CPU, and CUDA when present), backend and precision, the generator's
forward pass as `ctsdg.backends.build_runner` runs it for ``ctsdg inpaint`` / ``ctsdg eval``,
random weights, 256 x 256 by default:

- ``batch1_ms``: milliseconds per image at batch 1 (the minimum over ``repeats`` runs after a
  warm-up run);
- ``batch_images_per_s``: images per second at batch ``batch`` (8 by default), from the
  minimum time of a batch (``--batch 0`` skips it, for very large images);
- ``peak_mb``: peak memory while running batch 1, in MiB: on the CPU the peak resident set of
  the whole process (Python, PyTorch, weights and activations: what a user's process needs),
  on CUDA ``torch.cuda.max_memory_allocated``; ``batch_peak_mb`` the same for batch ``batch``.

Each configuration runs in a fresh Python process (``--in-process`` turns that off), so that one
configuration's memory peak or allocator cache cannot show up in the next one's figures; with
``--in-process`` the CPU peaks are the process's high-water mark so far and are reported as
None after the first configuration.

Backends (`ctsdg.backends`): ``eager`` (PyTorch), ``compiled`` (``torch.compile``, default mode,
static shapes; its compile time is reported as ``setup_s``), ``onnxruntime`` (the graph of
``ctsdg export``, CPU provider, or the CUDA provider on a GPU when ONNX Runtime has it;
``intra_op_num_threads`` = PyTorch's thread count; exported into a temporary cache, so
``setup_s`` includes the export). Precisions: ``fp32``, ``bf16`` / ``fp16`` autocast. A
combination that cannot run (ONNX Runtime in bf16, fp16 on a CPU, no CUDA provider) is reported
with ``status`` ``"skipped"`` and the reason in ``error``; one that fails (no C++ compiler for
``torch.compile``) with ``"failed"``; the others still run.

``--json`` prints one JSON object per device, backend and precision, one per line, with the
keys ``target``, ``device``, ``device_name``, ``backend``, ``precision``, ``status``, ``size``,
``width``, ``batch``, ``threads``, ``torch``, ``onnxruntime``, ``repeats``, ``batch1_ms``,
``batch_images_per_s``, ``peak_mb``, ``batch_peak_mb``, ``setup_s`` and, when not ``ok``,
``error``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from ctsdg.backends import BACKENDS, PRECISIONS, UnsupportedError, build_runner
from ctsdg.benchmarks.model import _device_name, devices_for
from ctsdg.errors import InputError
from ctsdg.models import Generator
from ctsdg.models.generator import example_batch
from ctsdg.runtime import time_min, tune_cpu_allocator


def _peak_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA max allocated, or the process's peak RSS (Linux: KiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (2**20 if sys.platform == "darwin" else 2**10), 1)  # macOS: bytes


def measure(
    device: torch.device,
    backend: str,
    precision: str = "fp32",
    *,
    size: int = 256,
    width: int = 64,
    batch: int = 8,
    repeats: int = 5,
) -> dict[str, Any]:
    """Time one backend and precision on one device; never raises for one that cannot run."""
    from importlib.metadata import version

    # The version without importing onnxruntime: the other backends' rows must not carry its
    # memory in peak_mb.

    result: dict[str, Any] = {
        "target": "infer",
        "device": str(device),
        "device_name": _device_name(device),
        "backend": backend,
        "precision": precision,
        "status": "ok",
        "size": size,
        "width": width,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": version("onnxruntime"),
        "repeats": repeats,
        "batch1_ms": None,
        "batch_images_per_s": None,
        "peak_mb": None,
        "batch_peak_mb": None,
        "setup_s": None,
    }
    torch.manual_seed(0)
    generator = Generator(width=width).to(device).eval()
    # example_batch gives (image, edge, gray, mask); runners take (image, mask, gray, edge)
    image, edge, gray, mask = example_batch(1, size, device)
    one = (image, mask, gray, edge)
    if batch:
        image, edge, gray, mask = example_batch(batch, size, device, seed=1)
    many = (image, mask, gray, edge)
    try:
        with tempfile.TemporaryDirectory(prefix="ctsdg-bench-") as cache:
            start = time.perf_counter()
            run = build_runner(generator, backend, precision, device, size=size, cache=cache)
            run(*one)  # compiles / builds the session for batch 1
            result["setup_s"] = round(time.perf_counter() - start, 2)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            # the setup call above was the warm-up
            ms = time_min(lambda: run(*one), device, repeats, warmup=0)
            result["batch1_ms"] = round(ms, 1)
            result["peak_mb"] = _peak_mb(device)
            if batch:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                batch_ms = time_min(lambda: run(*many), device, repeats, warmup=1)
                result["batch_images_per_s"] = round(batch * 1000 / batch_ms, 2)
                result["batch_peak_mb"] = _peak_mb(device)
    except UnsupportedError as err:
        result.update(status="skipped", error=str(err))
    except Exception as err:  # a backend failing must not stop the others
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result.update(status="failed", error=f"{type(err).__name__}: {first}"[:500])
    return result


def measure_isolated(device: torch.device, backend: str, precision: str, **kwargs: Any) -> dict:
    """`measure` in a fresh Python process (its own memory peak and allocator state)."""
    request = {"device": str(device), "backend": backend, "precision": precision, **kwargs}
    code = "from ctsdg.benchmarks.infer import _child; _child()"
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(request), capture_output=True, text=True
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode} (out of memory?)"
    return {
        "target": "infer", "device": str(device), "backend": backend, "precision": precision,
        "status": "failed", "error": f"worker process: {why}"[:500], **kwargs,
    }  # fmt: skip


def _child() -> None:
    """Entry point of `measure_isolated`'s process: a JSON request on stdin, a row on stdout."""
    request = json.loads(sys.stdin.read())
    tune_cpu_allocator()
    device = torch.device(request.pop("device"))
    print(json.dumps(measure(device, request.pop("backend"), request.pop("precision"), **request)))


def _line(r: dict[str, Any]) -> str:
    where = f"{r['backend']:<12} {r['precision']} {r['device']} ({r.get('device_name', '')}"
    where += f", {r.get('threads', '?')} threads)"
    if r["status"] != "ok":
        return f"{where}: {r['status']}: {r.get('error', '')}"
    if not r["batch"]:
        return f"{where}: {r['batch1_ms']:.1f} ms/image at batch 1 (peak {r['peak_mb']} MiB)"
    return (
        f"{where}: {r['batch1_ms']:.1f} ms/image at batch 1 (peak {r['peak_mb']} MiB), "
        f"{r['batch_images_per_s']:.2f} images/s at batch {r['batch']} "
        f"(peak {r['batch_peak_mb']} MiB, setup {r['setup_s']:.1f} s)"
    )


def _parse_list(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in allowed]
    if unknown or not names:
        raise InputError(f"{option} {text!r}: expected a comma list of {', '.join(allowed)}")
    return names


def parse_backends(text: str) -> list[str]:
    return _parse_list(text, BACKENDS, "--backends")


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench infer``: one line (or JSON object) per device, backend and precision."""
    if args.size % 128 or args.size < 128:
        raise InputError(f"--size {args.size}: must be a multiple of 128")
    if args.repeats < 1 or args.width < 1 or args.batch < 0:
        raise InputError("--repeats and --width must be at least 1, --batch at least 0")
    backends = parse_backends(args.backends)
    precisions = _parse_list(getattr(args, "precision", "fp32"), PRECISIONS, "--precision")
    isolated = not getattr(args, "in_process", True)
    tune_cpu_allocator()
    first = True
    for device in devices_for(args.device):
        for backend in backends:
            for precision in precisions:
                options = dict(size=args.size, width=args.width, batch=args.batch,
                               repeats=args.repeats)  # fmt: skip
                if isolated:
                    result = measure_isolated(device, backend, precision, **options)
                else:
                    result = measure(device, backend, precision, **options)
                    if device.type == "cpu" and not first:  # a high-water mark, not this run's
                        result["peak_mb"] = result["batch_peak_mb"] = None
                    first = first and device.type != "cpu"
                print(json.dumps(result) if args.json else _line(result), flush=True)
    return 0
