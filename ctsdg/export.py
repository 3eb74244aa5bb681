"""``ctsdg export``: the generator as ONNX or TorchScript, checked against PyTorch after writing.

Inputs (all float32, batch dimension dynamic, H = W = ``size``):

- ``image`` (B, 3, H, W): ``image * mask``, the image in [-1, 1] with its holes zeroed;
- ``structure`` (B, 2, H, W): ``cat(edge * mask, gray * mask)``, edges in {0, 1}, gray in [0, 1];
- ``mask`` (B, 1, H, W): 1 on known pixels, 0 on holes.

Outputs: ``output`` (B, 3, H, W) in [-1, 1], ``projected_image`` (B, 3, H, W),
``projected_edge`` (B, 1, H, W). Compose ``image * mask + output * (1 - mask)`` yourself.

The metadata says how to feed the model: the ONNX file's ``metadata_props`` and the TorchScript
archive's ``ctsdg.json`` extra file hold the model config (width, ``align_corners``), the
structure-input convention, the input size and the conventions above.

ONNX is written by PyTorch's TorchScript-based exporter (``dynamo=False``, opset 18). The
dynamo exporter would need the ``onnxscript`` package, and opset 18 is the first with
``Col2Im``, which the attention's ``F.fold`` becomes. PyTorch's own ``col2im`` symbolic reads
the static rank of the output size, which is unknown when the size is traced from the input's
shape, so a symbolic that knows ``F.fold`` is two-dimensional is registered for the export.
ONNX Runtime runs every operator of the graph (``Col2Im`` included) on its CPU provider.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ctsdg.errors import CommandError, InputError
from ctsdg.fileio import (
    atomic_write_bytes,
    check_output_dir,
    check_overwrite,
    output_is_folder,
    remove_stale_temporaries,
)
from ctsdg.models import Generator
from ctsdg.models.generator import SIZE_MULTIPLE

log = logging.getLogger(__name__)

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
INPUT_NAMES = ("image", "structure", "mask")
OUTPUT_NAMES = ("output", "projected_image", "projected_edge")
OPSET = 18
TOLERANCE = 1e-4  # fp32: the exported graph computes the same operations
METADATA_FILE = "ctsdg.json"


class ExportMismatchError(CommandError, RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance (exit
    status 1)."""


@dataclass
class ExportResult:
    """What ``export`` wrote and how closely it matches PyTorch."""

    path: Path
    format: Format
    size: int
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    metadata: dict[str, str]


def random_inputs(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The generator's three inputs ``(image, structure, mask)`` from `example_batch`, on CPU."""
    from ctsdg.models import generator_inputs
    from ctsdg.models.generator import example_batch

    return generator_inputs(*example_batch(batch, size, seed=seed))


def export_metadata(weights: Any, size: int, source: str) -> dict[str, str]:
    """String metadata recorded in the exported file (see the module docstring)."""
    from ctsdg import __version__

    return {
        "producer": f"ctsdg {__version__}",
        "model": json.dumps(weights.model.to_dict()),
        "structure": weights.structure,
        "image_size": json.dumps([size, size]),
        "inputs": "image=image*mask (B,3,H,W) in [-1,1]; structure=cat(edge*mask, gray*mask) "
        "(B,2,H,W); mask (B,1,H,W) 1=known 0=hole",
        "outputs": "output (B,3,H,W) in [-1,1]; projected_image (B,3,H,W); projected_edge "
        "(B,1,H,W) in [0,1]; composite = image*mask + output*(1-mask)",
        "source": source,
    }


@contextlib.contextmanager
def _col2im_symbolic() -> Iterator[None]:
    """Register an opset-18 ``aten::col2im`` symbolic that does not need a static output rank."""
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "v", "v", "is", "is", "is")
    def col2im(g, columns, output_size, kernel_size, dilation, padding, stride):  # type: ignore[no-untyped-def]
        # F.fold always passes explicit two-element dilation / padding / stride lists.
        pads = [p for p in padding for _ in range(2)]  # ONNX: begin and end per axis
        return g.op(
            "Col2Im",
            columns,
            output_size,
            kernel_size,
            dilations_i=dilation,
            pads_i=pads,
            strides_i=stride,
        )

    torch.onnx.register_custom_op_symbolic("aten::col2im", col2im, OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::col2im", OPSET)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    # The generator's input-size check is a Python branch the tracer warns about; exporting
    # fixes the size anyway (the batch stays dynamic).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def check_opset(opset: int) -> None:
    """InputError unless PyTorch's exporter can write ``opset`` and the model needs no more."""
    from torch.onnx import _constants

    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", OPSET)
    if opset < OPSET:
        raise InputError(f"--opset {opset}: Col2Im (the attention's fold) needs opset >= {OPSET}")
    if opset > highest:
        raise InputError(f"--opset {opset}: this PyTorch exports opsets {OPSET} to {highest}")


def onnx_bytes(
    generator: Generator, size: int, metadata: dict[str, str], opset: int = OPSET
) -> bytes:
    """``generator`` (CPU, eval) as an ONNX file's bytes: dynamic batch axis, metadata."""
    import onnx

    check_opset(opset)
    example = random_inputs(1, size)
    dynamic = {name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}
    buffer = io.BytesIO()
    with _quiet_tracing(), _col2im_symbolic(), torch.no_grad():
        torch.onnx.export(
            generator,
            example,
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def torchscript_bytes(generator: Generator, size: int, metadata: dict[str, str]) -> bytes:
    """``generator`` (CPU, eval) traced to a TorchScript archive's bytes; metadata in the
    ``ctsdg.json`` extra file."""
    buffer = io.BytesIO()
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(generator, random_inputs(1, size), check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


def write_onnx(
    generator: Generator, path: Path, size: int, metadata: dict[str, str], opset: int = OPSET
) -> None:
    """`onnx_bytes` written to ``path`` atomically."""
    atomic_write_bytes(path, onnx_bytes(generator, size, metadata, opset))


def write_torchscript(
    generator: Generator, path: Path, size: int, metadata: dict[str, str]
) -> None:
    """`torchscript_bytes` written to ``path`` atomically."""
    atomic_write_bytes(path, torchscript_bytes(generator, size, metadata))


def max_difference(
    path: Path, fmt: Format, generator: Generator, size: int, batch_sizes: tuple[int, ...]
) -> float:
    """Largest absolute difference of any output between the exported model and PyTorch."""
    worst = 0.0
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
            feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)}
            return [torch.from_numpy(o) for o in session.run(list(OUTPUT_NAMES), feed)]
    else:
        with _quiet_tracing():  # torch.jit.load is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")

        def run(inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
            return list(module(*inputs))

    with torch.no_grad():
        for batch in batch_sizes:
            inputs = random_inputs(batch, size, seed=batch)
            expected = generator(*inputs)
            got = run(inputs)
            for e, g in zip(expected, got, strict=True):
                if e.shape != g.shape:
                    raise ExportMismatchError(
                        f"{path}: batch {batch} gave shape {tuple(g.shape)}, PyTorch "
                        f"{tuple(e.shape)}"
                    )
                worst = max(worst, float((e - g).abs().max()))
    return worst


def announce_export(fmt: str, size: int, why: str = "") -> float:
    """Say that an export starts and roughly how long it takes (it prints nothing itself);
    returns the start time for the "exported in" line."""
    log.info(
        "exporting the generator to %s at %d x %d%s; this takes about 10-60 s on a CPU",
        "ONNX" if fmt == "onnx" else "TorchScript",
        size,
        size,
        why,
    )
    return time.perf_counter()


def export(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    fmt: Format = "onnx",
    *,
    size: int | None = None,
    opset: int = OPSET,
    structure: str | None = None,
    batch_sizes: tuple[int, ...] = (1, 2),
    tolerance: float = TOLERANCE,
    overwrite: bool = False,
) -> ExportResult:
    """Export a checkpoint's generator and check it against PyTorch on random inputs.

    Args:
        checkpoint: any checkpoint `ctsdg.load_weights` accepts.
        output: the file to write.
        fmt: ``"onnx"`` or ``"torchscript"``.
        size: input height and width, a multiple of 128; None: the training size the weights
            record (`LoadedWeights.trained_size`), else 256 (the published models).
        opset: ONNX opset (>= 18).
        structure: record this structure-input convention instead of the checkpoint's.
        batch_sizes: batch sizes the check runs (two sizes show the batch axis is dynamic).
        tolerance: largest accepted absolute difference.
        overwrite: replace an existing ``output`` (otherwise an InputError).

    The file is written atomically: it appears whole, or not at all (an existing file of the
    same name is replaced only then).

    Raises:
        InputError: bad arguments or checkpoint, an output that cannot be written.
        ExportMismatchError: the exported model
        differs from PyTorch by more than ``tolerance`` (the file is left for inspection).
    """
    from ctsdg.checkpoints import load_weights

    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        check_opset(opset)
    if size is not None and (size < SIZE_MULTIPLE or size % SIZE_MULTIPLE):
        raise InputError(f"--size {size}: the generator needs a multiple of {SIZE_MULTIPLE}")
    path = Path(output)
    if output_is_folder(path):
        raise InputError(f"{path}: is a folder; -o names the file to write")
    check_overwrite(path, overwrite)
    check_output_dir(path.parent)  # before the slow part: an unwritable place fails at once
    weights = load_weights(checkpoint)
    size = size or weights.trained_size
    if structure is not None:
        weights.structure = structure
    generator = weights.build_generator("cpu")
    metadata = export_metadata(weights, size, f"{weights.format}:{weights.path.name}")
    # Serialised in memory, then written atomically by Python: a full disk is a one-line error
    # and never leaves a truncated file (nor aborts TorchScript's C++ writer).
    started = announce_export(fmt, size)
    if fmt == "onnx":
        data = onnx_bytes(generator, size, metadata, opset)
    else:
        data = torchscript_bytes(generator, size, metadata)
    remove_stale_temporaries(path)  # what a killed earlier export left
    atomic_write_bytes(path, data)
    log.info("exported in %.0f s; checking it against PyTorch", time.perf_counter() - started)
    diff = max_difference(path, fmt, generator, size, batch_sizes)
    if not diff <= tolerance:
        raise ExportMismatchError(
            f"{path}: the exported model differs from PyTorch by up to {diff:.3g} (tolerance "
            f"{tolerance:g}); the file is left for inspection"
        )
    return ExportResult(path, fmt, size, diff, batch_sizes, metadata)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ctsdg metadata of an exported ONNX file or TorchScript archive."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in model.metadata_props}
    files = {METADATA_FILE: ""}
    with _quiet_tracing():
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[METADATA_FILE])


__all__ = [
    "FORMATS",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "ExportMismatchError",
    "ExportResult",
    "export",
    "random_inputs",
    "read_metadata",
]
