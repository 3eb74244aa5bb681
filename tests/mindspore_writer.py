"""MindSpore ``.ckpt`` files written without MindSpore, from arrays or the authors' state dict.

Only the tests write the port's files (to prove the reader and the loader on full-size files);
the package reads them (`ctsdg.checkpoints.mindspore`, `ctsdg.checkpoints.mindspore_names`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ctsdg.checkpoints.authors import authors_entries
from ctsdg.checkpoints.mindspore import MS_DTYPES, CheckpointProto
from ctsdg.checkpoints.mindspore_names import (
    authors_to_mindspore,
    is_float,
    mindspore_shape,
    preview,
)
from ctsdg.checkpoints.renames import Network, check_network
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write

# Native numpy dtype -> MindSpore name: the reader's table read backwards (Bool is stored as
# one byte, BFloat16 as raw bits: both are special-cased).
_NUMPY_TO_MS: dict[np.dtype, str] = {
    dtype: name for name, dtype in MS_DTYPES.items() if name not in ("Bool", "BFloat16")
} | {np.dtype(np.bool_): "Bool"}

# A single Value holds at most this many content bytes (protobuf caps one message at 2 GiB;
# MindSpore splits large tensors the same way).
_DEFAULT_SLICE_BYTES = 512 * 1024 * 1024


def _ms_type_of(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """MindSpore type name and the array as little-endian elements to store."""
    if array.dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16
        return "BFloat16", array.view(np.uint16).astype("<u2", copy=False)
    ms_type = _NUMPY_TO_MS.get(array.dtype.newbyteorder("="))
    if ms_type is None:
        raise InputError(f"cannot store {name!r}: numpy type {array.dtype} has no MindSpore type")
    if ms_type == "Bool":
        return ms_type, array.astype(np.uint8)
    return ms_type, array.astype(MS_DTYPES[ms_type], copy=False)


def write_mindspore_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    *,
    slice_bytes: int = _DEFAULT_SLICE_BYTES,
) -> None:
    """Write ``{name: array}`` as a MindSpore ``.ckpt`` file, in mapping order.

    Each array keeps its shape (a scalar gets no dims) and type (float16/32/64, (u)int8-64,
    bool, complex64/128, and ``bfloat16`` from ml_dtypes). A tensor with more than
    ``slice_bytes`` bytes is stored as several Values with the same tag, each with the full dims
    and a run of whole elements, as MindSpore does. Written atomically. Raises
    :class:`InputError` for an empty mapping, a bad name or an unsupported type.
    """
    if slice_bytes < 1:
        raise ValueError(f"slice_bytes must be positive, got {slice_bytes}")
    if not tensors:
        raise InputError(f"{path}: refusing to write a MindSpore checkpoint with no tensors")
    prepared: list[tuple[bytes, list[int], bytes, np.ndarray]] = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or not name.isprintable():
            raise InputError(f"cannot store tensor named {name!r}: names must be printable text")
        array = np.asarray(value)
        ms_type, stored = _ms_type_of(name, array)
        stored = np.ascontiguousarray(stored)
        prepared.append((name.encode("utf-8"), list(array.shape), ms_type.encode(), stored))

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:
            for tag, dims, ms_type, stored in prepared:
                raw = memoryview(stored.reshape(-1).view(np.uint8))
                step = max(1, slice_bytes // stored.itemsize) * stored.itemsize
                for start in range(0, max(len(raw), 1), step):
                    # One Checkpoint per Value: concatenated messages merge their repeated
                    # fields, so the file is the same as one big message, written in pieces.
                    message = CheckpointProto()
                    value = message.value.add()
                    value.tag = tag
                    value.tensor.dims.extend(dims)
                    value.tensor.tensor_type = ms_type
                    value.tensor.tensor_content = bytes(raw[start : start + step])
                    file.write(message.SerializeToString())

    try:
        atomic_write(path, write)
    except OSError as error:
        raise InputError(f"{path}: cannot write the file ({error.strerror or error})") from error


def _to_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def authors_state_to_mindspore(
    state_dict: Mapping[str, torch.Tensor | np.ndarray],
    network: Network,
    *,
    source: str | None = None,
) -> dict[str, np.ndarray]:
    """Convert an authors' ``state_dict`` for ``network`` to the MindSpore port's parameters.

    Returns ``{mindspore_name: float32 array}`` with
    spectral-norm ``weight_u``/``weight_v`` as ``(n, 1)`` columns and BatchNorm leaves renamed.
    ``num_batches_tracked`` and the discriminator's ``features.0`` aliases are dropped (they may
    be absent). Unknown or missing keys, wrong shapes and non-float tensors raise
    :class:`InputError` naming the key (prefixed by ``source``).
    """
    check_network(network)
    where = f"{source}: " if source else ""
    known = {e.name for e in authors_entries(network)}
    unknown = [name for name in state_dict if name not in known]
    if unknown:
        raise InputError(
            f"{where}{len(unknown)} keys are not in the authors' {network}: {preview(unknown)}"
        )
    order = [e for e in authors_entries(network) if e.kind == "tensor"]
    missing = [e.name for e in order if e.name not in state_dict]
    if missing:
        raise InputError(
            f"{where}{len(missing)} keys of the authors' {network} are missing: {preview(missing)}"
        )
    result: dict[str, np.ndarray] = {}
    for entry in order:
        array = _to_numpy(state_dict[entry.name])
        if tuple(array.shape) != entry.shape:
            raise InputError(
                f"{where}{entry.name!r} has shape {tuple(array.shape)}, expected {entry.shape}"
            )
        if not is_float(array):
            raise InputError(f"{where}{entry.name!r} holds {array.dtype} values, expected floats")
        converted = np.array(array, dtype=np.float32, order="C", copy=True)
        result[str(authors_to_mindspore(entry.name, network))] = converted.reshape(
            mindspore_shape(entry)
        )
    return result
