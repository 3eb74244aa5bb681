"""MindSpore ``.ckpt`` files, read and written without MindSpore, and their CTSDG parameter names.

The MindSpore model-zoo port of CTSDG saves its networks with MindSpore's ``save_checkpoint``.
Such a file is one protobuf message (proto2)::

    message Checkpoint  { repeated Value value = 1; }
    message Value       { string tag = 1; TensorProto tensor = 2; }
    message TensorProto { repeated int64 dims = 1;      // unpacked on the wire
                          string tensor_type = 2;       // "Float32", "Int64", "Bool", ...
                          bytes tensor_content = 3; }   // raw little-endian elements

The message classes are built at import time from a descriptor constructed in code (no ``.proto``
file, no generated module, no MindSpore). ``tag`` and ``tensor_type`` are declared ``bytes``,
which is the same wire format as ``string``: the protobuf runtime does not check UTF-8 in proto2
strings, so this module decodes them itself and reports bad ones as :class:`InputError`.

Layout facts the reader relies on:

- MindSpore splits a very large tensor into several consecutive ``Value`` messages with the same
  tag, each carrying the full ``dims`` and a slice of the bytes; the reader concatenates every
  ``Value`` of a tag in file order (a writer that gave each slice its own leading dimension is
  understood too).
- A scalar is written with no dims; MindSpore itself writes ``dims = [0]`` with one element, which
  is read as a scalar as well.
- Unknown fields at any level are ignored.

Parameter names: the port's cells are laid out differently from the authors' PyTorch modules
(``ec_texture_layers.0.conv.conv.weight`` vs ``ec_texture_1.conv.weight``, BatchNorm
``gamma``/``beta``/``moving_mean``/``moving_variance`` vs ``weight``/``bias``/``running_mean``/
``running_var``, spectral-norm ``weight_u``/``weight_v`` as ``(n, 1)`` columns vs ``(n,)``).
:func:`mindspore_to_authors` and :func:`authors_to_mindspore` rename with a few rules;
:func:`mindspore_state_to_authors` and :func:`authors_state_to_mindspore` convert whole state
dicts, checking names and shapes against the authors' architecture.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write

__all__ = [
    "Network",
    "authors_state_shapes",
    "authors_state_to_mindspore",
    "authors_to_mindspore",
    "detect_mindspore_network",
    "is_mindspore_training_entry",
    "looks_like_mindspore_checkpoint",
    "mindspore_state_to_authors",
    "mindspore_to_authors",
    "read_mindspore_checkpoint",
    "write_mindspore_checkpoint",
]

logger = logging.getLogger(__name__)

Network = Literal["generator", "discriminator"]
_NETWORKS: tuple[str, ...] = ("generator", "discriminator")

# --------------------------------------------------------------------------------------------
# Protobuf message classes
# --------------------------------------------------------------------------------------------

_PACKAGE = "ctsdg.mindspore_ckpt"


def _build_message_classes() -> tuple[type, type, type]:
    """Build (Checkpoint, Value, TensorProto) from a proto2 descriptor made in code."""
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(
        name="ctsdg/mindspore_checkpoint.proto", package=_PACKAGE, syntax="proto2"
    )
    tensor = proto.message_type.add(name="TensorProto")
    tensor.field.add(name="dims", number=1, type=field.TYPE_INT64, label=repeated)
    tensor.field.add(name="tensor_type", number=2, type=field.TYPE_BYTES, label=optional)
    tensor.field.add(name="tensor_content", number=3, type=field.TYPE_BYTES, label=optional)
    value = proto.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=field.TYPE_BYTES, label=optional)
    value.field.add(
        name="tensor",
        number=2,
        type=field.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.TensorProto",
        label=optional,
    )
    checkpoint = proto.message_type.add(name="Checkpoint")
    checkpoint.field.add(
        name="value",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=f".{_PACKAGE}.Value",
        label=repeated,
    )
    # A private pool: no clash with MindSpore's own generated module if both are imported.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    checkpoint_cls, value_cls, tensor_cls = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("Checkpoint", "Value", "TensorProto")
    )
    return checkpoint_cls, value_cls, tensor_cls


_Checkpoint, _Value, _TensorProto = _build_message_classes()

# --------------------------------------------------------------------------------------------
# Element types
# --------------------------------------------------------------------------------------------

# MindSpore tensor_type name -> little-endian numpy dtype of the stored bytes.
_MS_DTYPES: dict[str, np.dtype] = {
    "Float16": np.dtype("<f2"),
    "Float32": np.dtype("<f4"),
    "Float64": np.dtype("<f8"),
    "Int8": np.dtype("i1"),
    "Int16": np.dtype("<i2"),
    "Int32": np.dtype("<i4"),
    "Int64": np.dtype("<i8"),
    "UInt8": np.dtype("u1"),
    "UInt16": np.dtype("<u2"),
    "UInt32": np.dtype("<u4"),
    "UInt64": np.dtype("<u8"),
    "Bool": np.dtype("u1"),  # one byte per element, read as != 0
    "BFloat16": np.dtype("<u2"),  # raw bits, widened to float32
    "Complex64": np.dtype("<c8"),
    "Complex128": np.dtype("<c16"),
}

# Native numpy dtype -> MindSpore name, for writing.
_NUMPY_TO_MS: dict[np.dtype, str] = {
    np.dtype(np.float16): "Float16",
    np.dtype(np.float32): "Float32",
    np.dtype(np.float64): "Float64",
    np.dtype(np.int8): "Int8",
    np.dtype(np.int16): "Int16",
    np.dtype(np.int32): "Int32",
    np.dtype(np.int64): "Int64",
    np.dtype(np.uint8): "UInt8",
    np.dtype(np.uint16): "UInt16",
    np.dtype(np.uint32): "UInt32",
    np.dtype(np.uint64): "UInt64",
    np.dtype(np.bool_): "Bool",
    np.dtype(np.complex64): "Complex64",
    np.dtype(np.complex128): "Complex128",
}

_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# A single Value holds at most this many content bytes when writing (protobuf caps one message
# at 2 GiB; MindSpore splits large tensors the same way).
_DEFAULT_SLICE_BYTES = 512 * 1024 * 1024


def _bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _not_a_checkpoint(path: Path, reason: str) -> InputError:
    return InputError(f"{path}: not a MindSpore checkpoint ({reason})")


@dataclass
class _Slice:
    dims: list[int]
    tensor_type: str
    content: bytes


def _decode_text(raw: bytes) -> str | None:
    """UTF-8 text without control characters, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _merge_slices(path: Path, tag: str, slices: list[_Slice]) -> np.ndarray:
    """Join the Values of one tag into one native-endian array."""
    tensor_type = slices[0].tensor_type
    if any(s.tensor_type != tensor_type for s in slices):
        types = sorted({s.tensor_type for s in slices})
        raise _not_a_checkpoint(path, f"the parts of {tag!r} disagree on the type: {types}")
    stored = _MS_DTYPES.get(tensor_type)
    if stored is None:
        raise InputError(
            f"{path}: tensor {tag!r} has MindSpore type {tensor_type!r}, which this reader does "
            f"not support (known: {', '.join(_MS_DTYPES)})"
        )
    total = sum(len(s.content) for s in slices)
    if total % stored.itemsize:
        raise _not_a_checkpoint(
            path, f"{tag!r} has {total} bytes, not a whole number of {tensor_type} elements"
        )
    count = total // stored.itemsize
    dims = slices[0].dims
    shape: tuple[int, ...]
    if all(s.dims == dims for s in slices) and math.prod(dims) == count:
        shape = tuple(dims)
    elif dims == [0] and len(slices) == 1 and count == 1:
        shape = ()  # MindSpore's own way of writing a scalar
    elif (
        len(slices) > 1
        and all(len(s.dims) >= 1 and s.dims[1:] == dims[1:] for s in slices)
        and all(math.prod(s.dims) * stored.itemsize == len(s.content) for s in slices)
    ):
        shape = (sum(s.dims[0] for s in slices), *dims[1:])  # each part with its own rows
    else:
        raise _not_a_checkpoint(
            path,
            f"{tag!r} holds {count} elements but its shape {tuple(dims)} needs {math.prod(dims)}",
        )
    data = slices[0].content if len(slices) == 1 else b"".join(s.content for s in slices)
    flat = np.frombuffer(data, dtype=stored)
    if tensor_type == "Bool":
        array = flat != 0
    elif tensor_type == "BFloat16":
        array = _bfloat16_bits_to_float32(flat)
    else:
        array = flat.astype(stored.newbyteorder("="))  # a native-endian, writable copy
    return array.reshape(shape)


def read_mindspore_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every tensor of a MindSpore ``.ckpt`` file, in file order.

    Returns ``{tag: array}`` with native-endian, writable numpy arrays of the stored shape
    (``()`` for a scalar) and type (``Float32`` -> ``float32``, ``Int64`` -> ``int64``, ``Bool``
    -> ``bool``, ...; ``BFloat16`` is widened to ``float32``). Values that repeat a tag are
    concatenated in file order and the tensor keeps the position of its first part.

    Raises :class:`InputError` naming the file when it cannot be read, is not a MindSpore
    checkpoint (empty, truncated, some other format) or holds a type this reader does not know.
    The whole file is read into memory (protobuf messages are limited to 2 GiB).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror or error})") from error
    if not data:
        raise _not_a_checkpoint(path, "the file is empty")
    message = _Checkpoint()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError) as error:
        raise _not_a_checkpoint(path, f"protobuf parse failed: {error}") from None
    del data
    if not message.value:
        raise _not_a_checkpoint(path, "no tensors in it")

    groups: dict[str, list[_Slice]] = {}
    for index, value in enumerate(message.value):
        tag = _decode_text(value.tag) if value.HasField("tag") else None
        if not tag:
            raise _not_a_checkpoint(path, f"entry {index} has no valid name")
        if not value.HasField("tensor"):
            raise _not_a_checkpoint(path, f"entry {tag!r} has no tensor")
        tensor = value.tensor
        type_text = _decode_text(tensor.tensor_type) if tensor.HasField("tensor_type") else None
        if not type_text or not _TYPE_NAME.fullmatch(type_text):
            raise _not_a_checkpoint(path, f"entry {tag!r} has no valid tensor type")
        dims = list(tensor.dims)
        if any(d < 0 for d in dims):
            raise _not_a_checkpoint(path, f"entry {tag!r} has a negative dimension {dims}")
        groups.setdefault(tag, []).append(_Slice(dims, type_text, tensor.tensor_content))
    del message
    return {tag: _merge_slices(path, tag, slices) for tag, slices in groups.items()}


# --------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------

_SNIFF_HEAD = 4096
_SNIFF_MAX_RECORDS = 1 << 20


def _varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Decode one base-128 varint at ``pos``: (value, next position), or None. Sniffing only."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            return None
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    return None


def _first_value_plausible(head: bytes) -> bool:
    """``head`` starts with field 1 (length-delimited) holding a Value whose tag is a name."""
    if not head or head[0] != 0x0A:
        return False
    length = _varint(head, 1)
    if length is None or length[0] < 4:
        return False
    value_len, pos = length
    if pos >= len(head) or head[pos] != 0x0A:  # Value.tag, length-delimited
        return False
    tag_len = _varint(head, pos + 1)
    if tag_len is None or not 0 < tag_len[0] < min(value_len, 1024):
        return False
    start = tag_len[1]
    if start + tag_len[0] > len(head) or not _decode_text(head[start : start + tag_len[0]]):
        return False
    after = start + tag_len[0]
    return after >= len(head) or head[after] == 0x12  # then Value.tensor


def looks_like_mindspore_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Cheap format check: True when ``path`` looks like a MindSpore checkpoint.

    Checks that the file starts with a ``Value`` (byte ``0x0a``, a length, a printable tag
    followed by a tensor) and that the top-level protobuf records, followed by seeking over their
    lengths, end exactly at the end of the file. Reads a few bytes per tensor, not the tensors;
    never raises (unreadable files give False). A file cut exactly between two tensors still
    looks valid.
    """
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(_SNIFF_HEAD)
            if not _first_value_plausible(head):
                return False
            pos = 0
            for _ in range(_SNIFF_MAX_RECORDS):
                if pos == size:
                    return True
                file.seek(pos)
                record = file.read(22)
                key = _varint(record, 0)
                if key is None or key[0] >> 3 == 0:
                    return False
                wire_type, at = key[0] & 7, key[1]
                if wire_type == 0:
                    skip = _varint(record, at)
                    if skip is None:
                        return False
                    at = skip[1]
                elif wire_type == 1:
                    at += 8
                elif wire_type == 5:
                    at += 4
                elif wire_type == 2:
                    length = _varint(record, at)
                    if length is None:
                        return False
                    at = length[1] + length[0]
                else:
                    return False
                pos += at
                if pos > size:
                    return False
            return True  # very many records, all well framed so far
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _ms_type_of(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """MindSpore type name and the array as little-endian elements to store."""
    if array.dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16
        return "BFloat16", array.view(np.uint16).astype("<u2", copy=False)
    ms_type = _NUMPY_TO_MS.get(array.dtype.newbyteorder("="))
    if ms_type is None:
        raise InputError(f"cannot store {name!r}: numpy type {array.dtype} has no MindSpore type")
    if ms_type == "Bool":
        return ms_type, array.astype(np.uint8)
    return ms_type, array.astype(_MS_DTYPES[ms_type], copy=False)


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
    and a run of whole elements, as MindSpore does. The file is written to a temporary file in
    the same folder and moved into place with ``os.replace``, so readers never see half a file.
    Raises :class:`InputError` for an empty mapping, a bad name or an unsupported type.
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
                    message = _Checkpoint()
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


# --------------------------------------------------------------------------------------------
# The authors' architecture: every state-dict key and shape, by rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One key of the authors' state dict."""

    name: str
    shape: tuple[int, ...]
    kind: Literal["stored", "counter", "alias"] = "stored"
    source: str | None = None  # for an alias: the key it copies


@functools.cache
def _spec(network: str) -> tuple[_Entry, ...]:
    """Every key of the authors' state dict with its shape, in this project's module order.

    Derived from this project's networks (built on the meta device, so nothing is allocated)
    renamed by `ctsdg.checkpoints.authors`: the architecture is written down once.
    """
    from ctsdg.checkpoints.authors import ours_state_to_authors
    from ctsdg.models import Discriminator, Generator

    with torch.device("meta"):
        model = Generator() if network == "generator" else Discriminator()
    entries = []
    for name, tensor in ours_state_to_authors(model.state_dict(), network).items():
        shape = tuple(tensor.shape)
        if _AUTHORS_ALIAS.fullmatch(name):
            entries.append(_Entry(name, shape, "alias", name.replace(".features.0.", ".conv1.0.")))
        elif name.endswith(".num_batches_tracked"):
            entries.append(_Entry(name, (), "counter"))
        else:
            entries.append(_Entry(name, shape))
    return tuple(entries)


@functools.cache
def _batchnorm_modules(network: str) -> frozenset[str]:
    return frozenset(
        e.name.rpartition(".")[0] for e in _spec(network) if e.name.endswith(".running_mean")
    )


def _check_network(network: str) -> None:
    if network not in _NETWORKS:
        raise InputError(f"unknown network {network!r}: expected 'generator' or 'discriminator'")


def authors_state_shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """Every key of the authors' ``state_dict()`` for ``network`` with its shape.

    Includes ``num_batches_tracked`` (shape ``()``) and the discriminator's ``features.0``
    aliases. Derived from this project's networks, not from a stored table.
    """
    _check_network(network)
    return {e.name: e.shape for e in _spec(network)}


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_BN_TO_AUTHORS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_BN_TO_MINDSPORE = {authors: ms for ms, authors in _BN_TO_AUTHORS.items()}

# Generator: the port keeps each stream's levels in a list (from 0, shallow to deep for both
# encoder and decoder) and wraps the partial convolution's nn.Conv2d one level deeper.
_MS_STREAM = re.compile(
    r"(?P<kind>ec|dc)_(?P<stream>texture|structure)_layers\.(?P<i>\d+)\.(?P<rest>.+)"
)
_AUTHORS_STREAM = re.compile(
    r"(?P<kind>ec|dc)_(?P<stream>texture|structure)_(?P<i>[1-9]\d*)\.(?P<rest>.+)"
)
# The multi-scale attention's dilated branches: a list in the port, numbered attributes for the
# authors (same index).
_MS_DILATED = re.compile(r"cfa\.msfa\.dilated_convs\.(\d+)\.(.+)")
_AUTHORS_DILATED = re.compile(r"cfa\.msfa\.dilated_conv_(\d+)\.(.+)")
# Discriminator: the last spectral-norm convolution is not inside a Sequential in the port.
_MS_LAST_SN = re.compile(r"(texture|structure)_branch\.conv5\.(weight_orig|weight_u|weight_v)")
_AUTHORS_LAST_SN = re.compile(
    r"(texture|structure)_branch\.conv5\.0\.(weight_orig|weight_u|weight_v)"
)
_AUTHORS_ALIAS = re.compile(r"(texture|structure)_branch\.features\.0\..+")

_SPECTRAL_VECTORS = (".weight_u", ".weight_v")


def mindspore_to_authors(name: str, network: Network) -> str:
    """The authors' PyTorch name of a MindSpore port parameter name (a pure rename).

    ``ec_texture_layers.{i}.conv.conv.weight`` -> ``ec_texture_{i+1}.conv.weight``,
    ``dc_*_layers.{i}.*`` -> ``dc_*_{i+1}.*``, ``cfa.msfa.dilated_convs.{i}.*`` ->
    ``cfa.msfa.dilated_conv_{i}.*``, ``*_branch.conv5.weight_*`` -> ``*_branch.conv5.0.weight_*``,
    and BatchNorm ``gamma``/``beta``/``moving_mean``/``moving_variance`` -> ``weight``/``bias``/
    ``running_mean``/``running_var``. Names no rule touches come back unchanged; whether the
    result exists is checked by :func:`mindspore_state_to_authors`.
    """
    _check_network(network)
    module, _, leaf = name.rpartition(".")
    if module and leaf in _BN_TO_AUTHORS:
        name = f"{module}.{_BN_TO_AUTHORS[leaf]}"
    if network == "generator":
        if match := _MS_STREAM.fullmatch(name):
            rest = match["rest"]
            if rest.startswith("conv.conv."):
                rest = rest[len("conv.") :]
            return f"{match['kind']}_{match['stream']}_{int(match['i']) + 1}.{rest}"
        if match := _MS_DILATED.fullmatch(name):
            return f"cfa.msfa.dilated_conv_{match[1]}.{match[2]}"
    elif match := _MS_LAST_SN.fullmatch(name):
        return f"{match[1]}_branch.conv5.0.{match[2]}"
    return name


def authors_to_mindspore(name: str, network: Network) -> str | None:
    """The MindSpore port's name for an authors' PyTorch name: the inverse of
    :func:`mindspore_to_authors`.

    Returns None for keys the port does not store: every ``num_batches_tracked`` and the
    discriminator's ``*_branch.features.0.*`` aliases. BatchNorm leaves are renamed only on the
    authors' BatchNorm modules (so a convolution's ``weight`` stays ``weight``).
    """
    _check_network(network)
    module, _, leaf = name.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    if network == "discriminator" and _AUTHORS_ALIAS.fullmatch(name):
        return None
    if module in _batchnorm_modules(network) and leaf in _BN_TO_MINDSPORE:
        name = f"{module}.{_BN_TO_MINDSPORE[leaf]}"
    if network == "generator":
        if match := _AUTHORS_STREAM.fullmatch(name):
            rest = match["rest"]
            if rest.startswith("conv."):
                rest = f"conv.{rest}"
            return f"{match['kind']}_{match['stream']}_layers.{int(match['i']) - 1}.{rest}"
        if match := _AUTHORS_DILATED.fullmatch(name):
            return f"cfa.msfa.dilated_convs.{match[1]}.{match[2]}"
    elif match := _AUTHORS_LAST_SN.fullmatch(name):
        return f"{match[1]}_branch.conv5.{match[2]}"
    return name


# Optimizer state and training bookkeeping MindSpore may save next to the parameters.
_TRAINING_PREFIXES = (
    "moment1.",
    "moment2.",
    "moments.",
    "beta1_power",
    "beta2_power",
    "learning_rate",
    "global_step",
    "adam_m",
    "adam_v",
    "accum.",
)
_TRAINING_NAMES = frozenset(
    {"epoch_num", "step_num", "current_iterator_step", "last_overflow_iterator_step"}
)


def is_mindspore_training_entry(name: str) -> bool:
    """True for optimizer state or bookkeeping (``moment1.*``, ``beta1_power``, ``global_step``,
    ``adam_m.*``, ``accum.*``, ``epoch_num``, ...), which the model conversion ignores."""
    return name.startswith(_TRAINING_PREFIXES) or name in _TRAINING_NAMES


def detect_mindspore_network(names: Iterable[str], *, source: str | None = None) -> Network:
    """``"generator"`` or ``"discriminator"`` from a MindSpore checkpoint's tag names.

    Generator files have ``ec_texture_layers.*`` tags, discriminator files ``texture_branch.*``.
    Raises :class:`InputError` when there is neither, or both.
    """
    generator = discriminator = False
    for name in names:
        generator = generator or name.startswith("ec_texture_layers.")
        discriminator = discriminator or name.startswith("texture_branch.")
    where = f"{source}: " if source else ""
    if generator and discriminator:
        raise InputError(
            f"{where}MindSpore checkpoint holds both generator and discriminator parameters"
        )
    if generator:
        return "generator"
    if discriminator:
        return "discriminator"
    raise InputError(
        f"{where}not a CTSDG MindSpore checkpoint: no generator ('ec_texture_layers.*') or "
        "discriminator ('texture_branch.*') parameters"
    )


# --------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _mindspore_shape(entry: _Entry) -> tuple[int, ...]:
    """The port stores spectral-norm u and v as column vectors."""
    return (*entry.shape, 1) if entry.name.endswith(_SPECTRAL_VECTORS) else entry.shape


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def mindspore_state_to_authors(
    tensors: Mapping[str, np.ndarray], network: Network, *, source: str | None = None
) -> dict[str, torch.Tensor]:
    """Convert MindSpore port parameters to the authors' ``state_dict`` for ``network``.

    Returns exactly the authors' keys as float32 tensors of the authors' shapes
    (``(n, 1)`` spectral-norm vectors become ``(n,)``; float16/64 and bfloat16 are converted to
    float32), plus what the port does not store: ``num_batches_tracked`` as int64 zero scalars
    and, for the discriminator, ``*_branch.features.0.*`` as copies of ``*_branch.conv1.0.*``.
    Optimizer and bookkeeping entries (see :func:`is_mindspore_training_entry`) are skipped and
    logged at INFO level. Unknown or missing names, wrong shapes and non-float arrays raise
    :class:`InputError` naming the entries (prefixed by ``source``, e.g. the file name).
    """
    _check_network(network)
    where = f"{source}: " if source else ""
    spec = _spec(network)
    stored = {e.name: e for e in spec if e.kind == "stored"}
    found: dict[str, tuple[str, np.ndarray]] = {}
    unknown: list[str] = []
    ignored: list[str] = []
    for ms_name, value in tensors.items():
        if is_mindspore_training_entry(ms_name):
            ignored.append(ms_name)
            continue
        authors_name = mindspore_to_authors(ms_name, network)
        if authors_name not in stored:
            unknown.append(ms_name)
        elif authors_name in found:
            raise InputError(
                f"{where}MindSpore entries {found[authors_name][0]!r} and {ms_name!r} both map "
                f"to {authors_name!r}"
            )
        else:
            found[authors_name] = (ms_name, np.asarray(value))
    if unknown:
        hint = ""
        try:
            detected = detect_mindspore_network(tensors)
        except InputError:
            detected = None
        if detected is not None and detected != network:
            hint = f" (this looks like a {detected} checkpoint)"
        raise InputError(
            f"{where}{len(unknown)} MindSpore entries have no place in the authors' {network}"
            f"{hint}: {_preview(unknown)}"
        )
    missing = [str(authors_to_mindspore(name, network)) for name in stored if name not in found]
    if missing:
        raise InputError(
            f"{where}{len(missing)} MindSpore {network} entries are missing: {_preview(missing)}"
        )

    state: dict[str, torch.Tensor] = {}
    for entry in spec:
        if entry.kind == "counter":
            state[entry.name] = torch.zeros((), dtype=torch.int64)
            continue
        if entry.kind == "alias":
            state[entry.name] = state[str(entry.source)].clone()
            continue
        ms_name, array = found[entry.name]
        expected = _mindspore_shape(entry)
        if array.shape != expected:
            raise InputError(
                f"{where}MindSpore entry {ms_name!r} has shape {tuple(array.shape)}, expected "
                f"{expected} (authors' {entry.name!r})"
            )
        if not _is_float(array):
            raise InputError(
                f"{where}MindSpore entry {ms_name!r} holds {array.dtype} values, expected floats"
            )
        converted = np.array(array, dtype=np.float32, order="C", copy=True)
        state[entry.name] = torch.from_numpy(converted.reshape(entry.shape))
    if ignored:
        logger.info(
            "%sskipped %d optimizer/bookkeeping entries: %s", where, len(ignored), _preview(ignored)
        )
    return state


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
    _check_network(network)
    where = f"{source}: " if source else ""
    known = {e.name for e in _spec(network)}
    unknown = [name for name in state_dict if name not in known]
    if unknown:
        raise InputError(
            f"{where}{len(unknown)} keys are not in the authors' {network}: {_preview(unknown)}"
        )
    order = [e for e in _spec(network) if e.kind == "stored"]
    missing = [e.name for e in order if e.name not in state_dict]
    if missing:
        raise InputError(
            f"{where}{len(missing)} keys of the authors' {network} are missing: {_preview(missing)}"
        )
    result: dict[str, np.ndarray] = {}
    for entry in order:
        array = _to_numpy(state_dict[entry.name])
        if tuple(array.shape) != entry.shape:
            raise InputError(
                f"{where}{entry.name!r} has shape {tuple(array.shape)}, expected {entry.shape}"
            )
        if not _is_float(array):
            raise InputError(f"{where}{entry.name!r} holds {array.dtype} values, expected floats")
        converted = np.array(array, dtype=np.float32, order="C", copy=True)
        result[str(authors_to_mindspore(entry.name, network))] = converted.reshape(
            _mindspore_shape(entry)
        )
    return result
