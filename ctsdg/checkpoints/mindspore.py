"""MindSpore ``.ckpt`` files, read without MindSpore.

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
strings, so this module decodes them itself. Whether a file is a MindSpore checkpoint at all is
decided by parsing it: a file that does not parse, or parses into no named tensors, raises
:class:`NotAMindSporeCheckpoint`.

Layout facts the reader relies on:

- MindSpore splits a very large tensor into several consecutive ``Value`` messages with the same
  tag, each carrying the full ``dims`` and a slice of the bytes; the reader concatenates every
  ``Value`` of a tag in file order (a writer that gave each slice its own leading dimension is
  understood too).
- A scalar is written with no dims; MindSpore itself writes ``dims = [0]`` with one element, which
  is read as a scalar as well.
- Unknown fields at any level are ignored.

The port's parameter names and the conversion to the authors' state dict live in
`ctsdg.checkpoints.mindspore_names`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ctsdg.errors import InputError

__all__ = ["MS_DTYPES", "CheckpointProto", "NotAMindSporeCheckpoint", "read_mindspore_checkpoint"]

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


CheckpointProto, _ValueProto, _TensorProto = _build_message_classes()

# --------------------------------------------------------------------------------------------
# Element types
# --------------------------------------------------------------------------------------------

# MindSpore tensor_type name -> little-endian numpy dtype of the stored bytes.
MS_DTYPES: dict[str, np.dtype] = {
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

_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class NotAMindSporeCheckpoint(InputError):
    """The file does not parse as a MindSpore checkpoint (as opposed to one this reader cannot
    use, e.g. an unknown tensor type, which raises a plain :class:`InputError`)."""


def _not_a_checkpoint(path: Path, reason: str) -> NotAMindSporeCheckpoint:
    return NotAMindSporeCheckpoint(f"{path}: not a MindSpore checkpoint ({reason})")


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
    stored = MS_DTYPES.get(tensor_type)
    if stored is None:
        raise InputError(
            f"{path}: tensor {tag!r} has MindSpore type {tensor_type!r}, which this reader does "
            f"not support (known: {', '.join(MS_DTYPES)})"
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

    Raises :class:`NotAMindSporeCheckpoint` naming the file when it is not a MindSpore checkpoint
    (empty, truncated, some other format), :class:`InputError` when it cannot be read or holds a
    type this reader does not know.
    The whole file is read into memory (protobuf messages are limited to 2 GiB).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror or error})") from error
    if not data:
        raise _not_a_checkpoint(path, "the file is empty")
    message = CheckpointProto()
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
