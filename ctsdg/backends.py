"""How a generator runs for inference: one runner for ``ctsdg inpaint``, ``ctsdg eval`` and serving.

`build_runner` turns a generator into a callable ``runner(image, mask, gray, edge) -> output``
that hides the backend and the precision, so every command reaches the fast paths with one
flag (``--backend``, ``--precision``):

- ``eager``: PyTorch, in inference mode, under autocast for ``bf16`` / ``fp16``.
- ``compiled``: the same under ``torch.compile`` (static shapes; the first call of each input
  shape compiles, which takes tens of seconds; needs a C++ compiler on CPU). On CUDA it also
  replays the forward as a CUDA graph (``mode="reduce-overhead"``): at batch 1 the GPU otherwise
  waits on the launch of each of several hundred kernels.
- ``onnxruntime``: the graph of ``ctsdg export`` run by ONNX Runtime (CPU provider, or CUDA
  when the installed build has it), float32 only: ONNX Runtime's CPU provider has no bf16
  convolutions. The exported graph is cached per weights, input size and precision (see
  `cache_dir`), so only the first run of a checkpoint pays for the export.

Inputs and output of a runner (the generator's conventions, see `ctsdg.models.Generator`):
``image`` (B, 3, H, W) in [-1, 1], ``mask`` (B, 1, H, W) 1 = known / 0 = hole, ``gray`` (B, 1, H, W)
in [0, 1], ``edge`` (B, 1, H, W) in {0, 1}, float32 on the runner's device; the output is
(B, 3, H, W) float32 in [-1, 1] on the same device (not composited).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ctsdg.choices import BACKENDS, PRECISIONS
from ctsdg.errors import InputError
from ctsdg.models import Generator, generator_inputs

log = logging.getLogger(__name__)

#: Precisions each backend runs (on a device that supports them; fp16 autocast needs CUDA).
SUPPORTED = {"eager": PRECISIONS, "compiled": PRECISIONS, "onnxruntime": ("fp32",)}

Runner = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


class UnsupportedError(InputError):
    """This backend cannot run this precision on this device (a reason, not a failure)."""


def check_supported(backend: str, precision: str, device: torch.device) -> None:
    """Raise `UnsupportedError` (one line, with the reason) if the combination cannot run."""
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision not in SUPPORTED[backend]:
        raise UnsupportedError(
            f"backend {backend} runs {', '.join(SUPPORTED[backend])} only (ONNX Runtime's CPU "
            f"provider has no {precision} convolutions); use --backend eager or compiled"
        )
    if precision == "fp16" and device.type != "cuda":
        raise UnsupportedError("precision fp16 needs a CUDA device; use bf16 on CPU")


#: Eager on CPU runs a batch in chunks of at most this many pixels (4 images of 256 x 256; one
#: 512 x 512 image). Whole batches of 8 at 256 x 256 cost 1.10x batch 1 per image there (the
#: elementwise passes leave the cache), chunks of 4 0.93x (docs/benchmarks.md); each image is
#: computed alone either way (eval-mode BatchNorm, per-image attention).
CPU_CHUNK_PIXELS = 4 * 256 * 256

#: Eager on CPU runs images above this many pixels in PyTorch's default layout, not channels-last:
#: at 1024 x 1024 bf16 channels-last peaked at 10.2 GB and took 31-37 s, against 4.3 GB and 23 s
#: (fp32: 5.2 against 4.2 GB, the same time); at 768 x 768 and below it is the faster and
#: smaller one (docs/benchmarks.md).
CHANNELS_LAST_MAX_PIXELS = 768 * 768


def build_runner(
    generator: Generator,
    backend: str = "eager",
    precision: str = "fp32",
    device: str | torch.device | None = None,
    *,
    size: int = 256,
    cache: str | os.PathLike[str] | None = None,
) -> Runner:
    """A callable ``(image, mask, gray, edge) -> output`` running ``generator`` as asked.

    Args:
        generator: the generator (put in eval mode here, channels-last on CPU; not copied for
            eager / compile).
        backend: ``eager``, ``compiled`` or ``onnxruntime``.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        device: where inputs and output live; None: the generator's device.
        size: input side the ONNX graph is exported for (H = W = size; any batch).
        cache: ONNX cache folder (default `cache_dir()`).

    Raises:
        InputError (`UnsupportedError`): the backend cannot run this precision or device.
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    check_supported(backend, precision, device)
    generator = generator.to(device).eval()
    if backend == "onnxruntime":
        return _onnxruntime_runner(generator, device, size, Path(cache) if cache else cache_dir())
    # Channels-last (NHWC) weights and inputs: on CPU oneDNN picks its blocked convolution
    # kernels without reordering every layer's input (~10 % off an fp32 forward on the
    # project's machine), on CUDA cuDNN's NHWC kernels are a few per cent faster; the same
    # values up to float rounding (docs/benchmarks.md). Eager on CPU switches to the default
    # layout above `CHANNELS_LAST_MAX_PIXELS` (the weights are converted, a fraction of a second
    # next to a forward of that size).
    generator = generator.to(memory_format=torch.channels_last)
    module: Callable[..., object] = generator
    graphs = backend == "compiled" and device.type == "cuda"
    if backend == "compiled":
        module = torch.compile(generator, dynamic=False, mode="reduce-overhead" if graphs else None)
    switchable = backend == "eager" and device.type == "cpu"
    weights_layout = torch.channels_last
    compiled_shapes: set[tuple[int, ...]] = set()
    from ctsdg.runtime import autocast, large_input_memory

    def run(image: Tensor, mask: Tensor, gray: Tensor, edge: Tensor) -> Tensor:
        nonlocal weights_layout
        pixels = image.shape[-2] * image.shape[-1]
        chunk = max(1, CPU_CHUNK_PIXELS // pixels)
        if switchable and image.shape[0] > chunk:
            parts = zip(*(t.split(chunk) for t in (image, mask, gray, edge)), strict=True)
            return torch.cat([run(*part) for part in parts])
        layout = torch.channels_last
        if switchable and pixels > CHANNELS_LAST_MAX_PIXELS:
            layout = torch.contiguous_format
        if layout is not weights_layout:
            generator.to(memory_format=layout)  # in place
            weights_layout = layout
        inputs = (
            t.contiguous(memory_format=layout) for t in generator_inputs(image, edge, gray, mask)
        )
        if graphs:  # each call is a new step: the last call's graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        if backend == "compiled" and tuple(image.shape) not in compiled_shapes:
            compiled_shapes.add(tuple(image.shape))
            log.info(
                "torch.compile: compiling the generator for input %s (once per shape and "
                "process; from tens of seconds to a few minutes on a CPU)",
                " x ".join(map(str, image.shape)),
            )
        memory = large_input_memory(pixels) if device.type == "cpu" else contextlib.nullcontext()
        with torch.inference_mode(), autocast(device, precision), memory:
            out = module(*inputs)
        output = out.output.float()  # type: ignore[attr-defined]
        # A CUDA graph's output lives in its memory pool, overwritten by the next replay.
        return (
            output.clone(memory_format=torch.contiguous_format) if graphs else output.contiguous()
        )

    return run


# --------------------------------------------------------------------------- ONNX Runtime


def cache_dir() -> Path:
    """``$CTSDG_CACHE``, else ``$XDG_CACHE_HOME/ctsdg``, else ``~/.cache/ctsdg``."""
    if os.environ.get("CTSDG_CACHE"):
        return Path(os.environ["CTSDG_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ctsdg"


def weights_digest(generator: Generator) -> str:
    """SHA-256 of the generator's architecture and every state-dict tensor (names, bytes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([generator.width, generator.align_corners]).encode())
    for name, tensor in generator.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def onnx_cache_path(generator: Generator, size: int, precision: str, cache: Path) -> Path:
    """Where the exported graph of these weights, size and precision is cached."""
    from ctsdg import __version__
    from ctsdg.export import OPSET

    key = hashlib.sha256(
        json.dumps(
            [weights_digest(generator), size, precision, OPSET, torch.__version__, __version__]
        ).encode()
    ).hexdigest()[:32]
    return cache / "onnx" / f"generator-{size}-{precision}-{key}.onnx"


def cached_onnx(generator: Generator, size: int, cache: Path) -> Path:
    """The exported graph for ``generator`` at ``size``: from the cache, else exported into it.

    A new export is checked against PyTorch (`ctsdg.export.TOLERANCE`) before it is moved into
    place atomically, so a reader never sees a partial or unchecked file.
    """
    from ctsdg.export import (
        TOLERANCE,
        ExportMismatchError,
        announce_export,
        max_difference,
        write_onnx,
    )
    from ctsdg.fileio import atomic_write

    path = onnx_cache_path(generator, size, "fp32", cache)
    if path.is_file():
        return path
    cpu = copy.deepcopy(generator).cpu().eval()  # the exporter traces on the CPU

    def write(tmp: Path) -> None:
        started = announce_export(
            "onnx",
            size,
            f" for ONNX Runtime (once per checkpoint and size; cached in {path.parent})",
        )
        write_onnx(cpu, tmp, size, {"producer": "ctsdg backends cache"})
        log.info("exported in %.0f s; checking it against PyTorch", time.perf_counter() - started)
        diff = max_difference(tmp, "onnx", cpu, size, (1,))
        if not diff <= TOLERANCE:
            raise ExportMismatchError(f"ONNX export differs from PyTorch by {diff:.3g}")

    try:
        return atomic_write(path, write)
    except OSError as err:
        raise InputError(
            f"ONNX cache {path.parent}: cannot write ({err}); set CTSDG_CACHE"
        ) from None


def _onnxruntime_runner(
    generator: Generator, device: torch.device, size: int, cache: Path
) -> Runner:
    import onnxruntime as ort

    from ctsdg.export import INPUT_NAMES

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UnsupportedError(
                "backend onnxruntime on CUDA: this ONNX Runtime build has no "
                "CUDAExecutionProvider (install onnxruntime-gpu)"
            )
        providers: list[object] = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    path = cached_onnx(generator, size, cache)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # a damaged cache file (truncated, overwritten): export it again
        reason = " ".join(str(err).split())[:200]
        log.warning("ONNX cache %s is unreadable (%s); exporting it again", path, reason)
        path.unlink(missing_ok=True)
        path = cached_onnx(generator, size, cache)
        session = ort.InferenceSession(str(path), options, providers=providers)

    def run(image: Tensor, mask: Tensor, gray: Tensor, edge: Tensor) -> Tensor:
        if image.shape[-2:] != (size, size):
            raise InputError(
                f"backend onnxruntime was built for {size}x{size} inputs, got "
                f"{tuple(image.shape[-2:])}"
            )
        inputs = generator_inputs(image, edge, gray, mask)
        feed = {
            n: t.detach().float().cpu().numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)
        }
        (output,) = session.run(["output"], feed)
        return torch.from_numpy(output).to(image.device)

    return run


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "SUPPORTED",
    "Runner",
    "UnsupportedError",
    "build_runner",
    "cache_dir",
    "cached_onnx",
    "check_supported",
    "onnx_cache_path",
    "weights_digest",
]
