"""MindSpore checkpoints: the reader (ctsdg.checkpoints.mindspore), the port's parameter names
(ctsdg.checkpoints.mindspore_names), and the tests' writer (tests/mindspore_writer.py).

Reference files (MindSpore's own ``tiny.ckpt``, the port's name manifest, the authors' state-dict
manifest) come from ``tests/data/golden``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ctsdg.checkpoints import load_weights
from ctsdg.checkpoints import mindspore as ms
from ctsdg.checkpoints import mindspore_names as names
from ctsdg.checkpoints.authors import authors_state_shapes
from ctsdg.errors import InputError
from tests import mindspore_writer as writer
from tests.golden import DATA, authors_state_dict

NETWORKS = ("generator", "discriminator")


def _json(relative: str) -> Any:
    return json.loads((DATA / relative).read_text())


@pytest.fixture(scope="module")
def tiny_path() -> Path:
    return DATA / "mindspore" / "tiny.ckpt"


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, Any]]:
    return _json("mindspore/mindspore_names.json")


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, list[int]]]:
    return _json("official_pytorch_state_dict.json")


# ---- hand-made protobuf bytes (independent of the module's writer) -------------------------


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field; payloads stay under 128 bytes so the length is one byte."""
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def _vi(field: int, value: int) -> bytes:
    assert 0 <= value < 128
    return bytes([field << 3, value])


def _value(
    tag: str,
    dims: list[int],
    tensor_type: str,
    content: bytes,
    *,
    extra_value: bytes = b"",
    extra_tensor: bytes = b"",
    packed_dims: bool = False,
) -> bytes:
    if packed_dims:
        dims_bytes = _ld(1, bytes(dims)) if dims else b""
    else:
        dims_bytes = b"".join(_vi(1, d) for d in dims)
    tensor = dims_bytes + _ld(2, tensor_type.encode()) + _ld(3, content) + extra_tensor
    return _ld(1, _ld(1, tag.encode()) + _ld(2, tensor) + extra_value)


def _f32(*values: float) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---- reading MindSpore's own file ---------------------------------------------------------


def test_tiny_reads_as_mindspore_does(tiny_path: Path) -> None:
    expected = _json("mindspore/tiny_expected.json")
    tensors = ms.read_mindspore_checkpoint(tiny_path)
    assert list(tensors) == list(expected)
    for name, entry in expected.items():
        array = tensors[name]
        assert array.dtype == np.float32
        assert array.shape == tuple(entry["shape"])
        np.testing.assert_array_equal(array.ravel(), np.array(entry["values"], dtype=np.float32))
        assert array.flags.writeable


def test_rewritten_tiny_is_byte_identical(tiny_path: Path, tmp_path: Path) -> None:
    tensors = ms.read_mindspore_checkpoint(tiny_path)
    out = tmp_path / "again.ckpt"
    writer.write_mindspore_checkpoint(out, tensors)
    # Same field order and unpacked dims as MindSpore's writer: the very same bytes.
    assert out.read_bytes() == tiny_path.read_bytes()
    again = ms.read_mindspore_checkpoint(out)
    assert list(again) == list(tensors)
    for name, array in tensors.items():
        assert again[name].dtype == array.dtype
        np.testing.assert_array_equal(again[name], array)


def _recognised(path: Path) -> None:
    """load_weights takes ``path`` for a MindSpore file (its format is decided by parsing)."""
    with pytest.raises(InputError, match="not a CTSDG MindSpore checkpoint"):
        load_weights(path)


def test_loader_recognises_real_and_written_files(tiny_path: Path, tmp_path: Path) -> None:
    _recognised(tiny_path)
    out = tmp_path / "w.ckpt"
    writer.write_mindspore_checkpoint(out, {"a": np.zeros((300, 7), np.float32)}, slice_bytes=1000)
    _recognised(out)


# ---- round trips --------------------------------------------------------------------------


def _assorted_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    arrays: dict[str, np.ndarray] = {
        "float16": rng.standard_normal((2, 3)).astype(np.float16),
        "float32": rng.standard_normal((4, 1, 3)).astype(np.float32),
        "float64": rng.standard_normal(5),
        "bool": rng.random((2, 2, 2)) > 0.5,
        "scalar.float32": np.array(3.5, dtype=np.float32),
        "scalar.int64": np.array(-7, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "big.split": rng.standard_normal((37, 5, 3)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "complex64": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
    }
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(dtype)
        arrays[np.dtype(dtype).name] = rng.integers(
            info.min, info.max, size=(3, 3), dtype=dtype, endpoint=True
        )
    return arrays


def test_round_trip_types_shapes_and_split(tmp_path: Path) -> None:
    arrays = _assorted_arrays()
    path = tmp_path / "many.ckpt"
    writer.write_mindspore_checkpoint(path, arrays, slice_bytes=256)

    # The big tensor went out as several Values with one tag, each holding the full dims.
    message = ms.CheckpointProto()
    message.ParseFromString(path.read_bytes())
    tags = [value.tag.decode() for value in message.value]
    assert tags.count("big.split") == math.ceil(37 * 5 * 3 * 4 / 256)
    assert all(tags.count(name) == 1 for name in arrays if name != "big.split")
    assert not next(v for v in message.value if v.tag == b"scalar.float32").tensor.dims

    back = ms.read_mindspore_checkpoint(path)
    assert list(back) == list(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype, name
        assert back[name].shape == array.shape, name
        np.testing.assert_array_equal(back[name], array)
    _recognised(path)
    assert sorted(os.listdir(tmp_path)) == ["many.ckpt"]  # no temporary file left behind


def test_big_endian_input_is_stored_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "be.ckpt"
    writer.write_mindspore_checkpoint(path, {"x": np.arange(6, dtype=">i4").reshape(2, 3)})
    back = ms.read_mindspore_checkpoint(path)["x"]
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, np.arange(6).reshape(2, 3))


def test_bfloat16_round_trip(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip(
        "ml_dtypes", reason="optional ml_dtypes (bfloat16) is not installed"
    )
    values = np.array([1.0, -2.5, 0.15625, 3.0e38], dtype=ml_dtypes.bfloat16)
    path = tmp_path / "bf16.ckpt"
    writer.write_mindspore_checkpoint(path, {"w": values})
    back = ms.read_mindspore_checkpoint(path)["w"]
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, values.astype(np.float32))


def test_write_replaces_atomically_and_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "out.ckpt"
    writer.write_mindspore_checkpoint(path, {"a": np.ones(2, np.float32)})
    writer.write_mindspore_checkpoint(path, {"b": np.zeros(3, np.int32)})
    assert list(ms.read_mindspore_checkpoint(path)) == ["b"]
    with pytest.raises(InputError, match="'bad'"):
        writer.write_mindspore_checkpoint(path, {"ok": np.ones(1), "bad": np.array(["text"])})
    with pytest.raises(InputError):
        writer.write_mindspore_checkpoint(path, {})
    with pytest.raises(InputError):
        writer.write_mindspore_checkpoint(path, {"new\nline": np.ones(1)})
    assert list(ms.read_mindspore_checkpoint(path)) == ["b"]  # untouched by the failures
    assert sorted(os.listdir(tmp_path)) == ["out.ckpt"]


# ---- reader robustness on hand-made files -------------------------------------------------


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    data = (
        _vi(7, 3)  # unknown top-level varint before any value
        + _value(
            "w",
            [2],
            "Float32",
            _f32(1.5, -2.0),
            extra_value=_ld(3, b"map tensor?"),
            extra_tensor=_vi(4, 9) + bytes([5 << 3 | 5]) + b"\x00\x00\x80\x3f",
        )
        + _ld(2, b"crc or anything")
        + _value("b", [], "Int32", np.array([7], "<i4").tobytes())
    )
    path = _write(tmp_path, "extra.ckpt", data)
    tensors = ms.read_mindspore_checkpoint(path)
    assert list(tensors) == ["w", "b"]
    np.testing.assert_array_equal(tensors["w"], np.array([1.5, -2.0], np.float32))
    assert tensors["b"].shape == () and tensors["b"] == 7
    # Parsing decides the format, so a file that does not start with a Value is recognised too.
    _recognised(path)
    _recognised(_write(tmp_path, "extra2.ckpt", data[2:]))


def test_packed_dims_are_accepted(tmp_path: Path) -> None:
    data = _value("m", [2, 3], "Float32", _f32(*range(6)), packed_dims=True)
    tensors = ms.read_mindspore_checkpoint(_write(tmp_path, "packed.ckpt", data))
    np.testing.assert_array_equal(tensors["m"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_repeated_tags_concatenate_in_file_order(tmp_path: Path) -> None:
    data = (
        _value("a", [2, 3], "Float32", _f32(0, 1, 2))
        + _value("b", [1], "Float32", _f32(9))
        + _value("a", [2, 3], "Float32", _f32(3, 4, 5))
        # A writer that gives each part its own leading dimension is understood too.
        + _value("c", [1, 2], "Int32", np.array([1, 2], "<i4").tobytes())
        + _value("c", [2, 2], "Int32", np.array([3, 4, 5, 6], "<i4").tobytes())
    )
    tensors = ms.read_mindspore_checkpoint(_write(tmp_path, "split.ckpt", data))
    assert list(tensors) == ["a", "b", "c"]
    np.testing.assert_array_equal(tensors["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(tensors["c"], np.arange(1, 7, dtype=np.int32).reshape(3, 2))


def test_scalars_with_no_dims_or_mindspore_dims_zero(tmp_path: Path) -> None:
    data = (
        _value("none", [], "Float32", _f32(2.5))
        + _value("zero", [0], "Float64", np.array([0.25], "<f8").tobytes())
        + _value("empty", [0], "Float32", b"")
    )
    tensors = ms.read_mindspore_checkpoint(_write(tmp_path, "scalars.ckpt", data))
    assert tensors["none"].shape == () and tensors["none"] == np.float32(2.5)
    assert tensors["zero"].shape == () and tensors["zero"].dtype == np.float64
    assert tensors["empty"].shape == (0,)


def test_bfloat16_and_bool_bits(tmp_path: Path) -> None:
    bits = np.array([0x3F80, 0xC020, 0x0000, 0x7F80], "<u2")  # 1, -2.5, 0, inf
    data = _value("h", [2, 2], "BFloat16", bits.tobytes()) + _value(
        "flags", [3], "Bool", b"\x00\x01\x02"
    )
    tensors = ms.read_mindspore_checkpoint(_write(tmp_path, "bits.ckpt", data))
    assert tensors["h"].dtype == np.float32
    np.testing.assert_array_equal(tensors["h"], np.array([[1, -2.5], [0, np.inf]], np.float32))
    np.testing.assert_array_equal(tensors["flags"], [False, True, True])


def test_unknown_type_names_the_tag_and_type(tmp_path: Path) -> None:
    path = _write(tmp_path, "odd.ckpt", _value("w.odd", [1], "Float8E4M3", b"\x01"))
    with pytest.raises(InputError) as info:
        ms.read_mindspore_checkpoint(path)
    message = str(info.value)
    assert "odd.ckpt" in message and "'w.odd'" in message and "Float8E4M3" in message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_value("w", [3], "Float32", _f32(1, 2)), id="too-few-bytes"),
        pytest.param(_value("w", [2], "Float32", b"\x00" * 7), id="partial-element"),
        pytest.param(
            _value("w", [2], "Float32", _f32(1)) + _value("w", [2], "Int32", b"\x00" * 4),
            id="parts-disagree",
        ),
        pytest.param(_ld(1, _ld(1, b"w")), id="no-tensor"),
        pytest.param(_ld(1, _ld(2, _ld(2, b"Float32"))), id="no-tag"),
        pytest.param(_value("w", [1], "Float 32!", _f32(1)), id="garbage-type"),
        pytest.param(_value("w\x01", [1], "Float32", _f32(1)), id="control-char-tag"),
        pytest.param(_ld(1, _ld(1, b"\xff\xfe") + _ld(2, b"")), id="bad-utf8-tag"),
        pytest.param(_vi(2, 1), id="no-values"),
    ],
)
def test_malformed_entries_are_input_errors(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, "malformed.ckpt", data)
    with pytest.raises(InputError, match=r"malformed\.ckpt: not a MindSpore checkpoint"):
        ms.read_mindspore_checkpoint(path)


# ---- other formats and broken files -------------------------------------------------------


def _garbage_files(tmp_path: Path, tiny: bytes) -> list[Path]:
    files = [
        _write(tmp_path, "empty.ckpt", b""),
        _write(tmp_path, "text.ckpt", b"hello, this is not a checkpoint\n"),
        _write(tmp_path, "truncated-half.ckpt", tiny[: len(tiny) // 2]),
        _write(tmp_path, "truncated-last-byte.ckpt", tiny[:-1]),
        _write(tmp_path, "tiny-plus-junk.ckpt", tiny + b"\x0a\xff"),
    ]
    rng = np.random.default_rng(0)
    for index in range(20):
        noise = rng.bytes(int(rng.integers(1, 4096)))
        if index % 2:
            noise = b"\x0a" + noise  # starts like a checkpoint
        files.append(_write(tmp_path, f"random-{index}.ckpt", noise))
    with zipfile.ZipFile(tmp_path / "archive.ckpt", "w") as archive:
        archive.writestr("weights.txt", "not tensors")
    files.append(tmp_path / "archive.ckpt")
    torch.save({"generator": {"w": torch.zeros(3)}}, tmp_path / "torch.ckpt")
    files.append(tmp_path / "torch.ckpt")
    torch.save(
        {"w": torch.ones(2)}, tmp_path / "torch-legacy.ckpt", _use_new_zipfile_serialization=False
    )
    files.append(tmp_path / "torch-legacy.ckpt")
    return files


def test_garbage_files_are_rejected(tiny_path: Path, tmp_path: Path) -> None:
    for path in _garbage_files(tmp_path, tiny_path.read_bytes()):
        with pytest.raises(InputError) as info:
            ms.read_mindspore_checkpoint(path)
        message = str(info.value)
        assert path.name in message, message
        assert "not a MindSpore checkpoint" in message, message
        assert "\n" not in message
        assert isinstance(info.value, ms.NotAMindSporeCheckpoint), path.name


def test_every_truncation_inside_a_value_is_rejected(tiny_path: Path, tmp_path: Path) -> None:
    tiny = tiny_path.read_bytes()
    message = ms.CheckpointProto()
    message.ParseFromString(tiny)
    boundaries, end = {0}, 0
    for value in message.value:
        single = ms.CheckpointProto()
        single.value.append(value)
        end += len(single.SerializeToString())
        boundaries.add(end)
    assert end == len(tiny)
    path = tmp_path / "cut.ckpt"
    for cut in range(len(tiny)):
        path.write_bytes(tiny[:cut])
        if cut in boundaries and cut:  # a whole number of tensors is a valid, smaller file
            assert len(ms.read_mindspore_checkpoint(path)) == sorted(boundaries).index(cut)
            continue
        with pytest.raises(ms.NotAMindSporeCheckpoint, match=r"cut\.ckpt: not a MindSpore ch"):
            ms.read_mindspore_checkpoint(path)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.ckpt"):
        ms.read_mindspore_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(InputError, match=re.escape(tmp_path.name)):
        ms.read_mindspore_checkpoint(tmp_path)
    with pytest.raises(InputError, match=r"missing\.ckpt: checkpoint not found"):
        load_weights(tmp_path / "missing.ckpt")


# ---- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
def test_manifest_names_map_both_ways(network: str, manifest: dict[str, Any]) -> None:
    for ms_name, entry in manifest[network].items():
        assert names.mindspore_to_authors(ms_name, network) == entry["authors_name"], ms_name
        assert names.authors_to_mindspore(entry["authors_name"], network) == ms_name, ms_name


@pytest.mark.parametrize("network", NETWORKS)
def test_architecture_matches_authors_manifest(network: str, official: dict[str, Any]) -> None:
    shapes = authors_state_shapes(network)
    assert {k: list(v) for k, v in shapes.items()} == official[network]


@pytest.mark.parametrize("network", NETWORKS)
def test_not_stored_keys_have_no_mindspore_name(network: str, official: dict[str, Any]) -> None:
    derived = [
        name
        for name in official[network]
        if name.endswith("num_batches_tracked") or ".features.0." in name
    ]
    assert derived
    assert all(names.authors_to_mindspore(name, network) is None for name in derived)


@pytest.mark.parametrize("network", NETWORKS)
def test_mindspore_state_gets_exactly_the_authors_keys(
    network: str, manifest: dict[str, Any], official: dict[str, Any]
) -> None:
    tensors = {name: np.zeros(e["shape"], np.float32) for name, e in manifest[network].items()}
    state = names.mindspore_state_to_authors(tensors, network)
    assert set(state) == set(official[network])
    for name, shape in official[network].items():
        assert list(state[name].shape) == shape, name
        if name.endswith("num_batches_tracked"):
            assert state[name].dtype == torch.int64 and state[name].item() == 0
        else:
            assert state[name].dtype == torch.float32, name


@pytest.mark.parametrize("network", NETWORKS)
def test_state_conversion_round_trip(
    network: str, manifest: dict[str, Any], official: dict[str, Any]
) -> None:
    generator = torch.Generator().manual_seed(7)
    authors = {
        name: torch.randn(shape, generator=generator)
        if shape
        else torch.zeros((), dtype=torch.long)
        for name, shape in official[network].items()
    }
    if network == "discriminator":
        for name in authors:
            if ".features.0." in name:
                authors[name] = authors[name.replace(".features.0.", ".conv1.0.")].clone()
    exported = writer.authors_state_to_mindspore(authors, network)
    assert set(exported) == set(manifest[network])
    for name, array in exported.items():
        assert list(array.shape) == manifest[network][name]["shape"], name
        assert array.dtype == np.float32
    back = names.mindspore_state_to_authors(exported, network)
    assert set(back) == set(authors)
    for name, tensor in authors.items():
        assert torch.equal(back[name], tensor), name
    if network == "discriminator":
        alias, twin = "texture_branch.features.0.weight_u", "texture_branch.conv1.0.weight_u"
        assert back[alias].data_ptr() != back[twin].data_ptr()  # a copy, not shared storage


def _generator_arrays(manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.zeros(e["shape"], np.float32) for name, e in manifest["generator"].items()}


def test_training_entries_are_skipped_and_logged(
    manifest: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    tensors = _generator_arrays(manifest)
    extras = [
        "moment1.ec_texture_layers.0.conv.conv.weight",
        "moment2.out_layer.0.bias",
        "beta1_power",
        "beta2_power",
        "learning_rate",
        "global_step",
        "adam_m.fusion_layer1.0.weight",
        "adam_v.fusion_layer1.0.weight",
        "accum.out_layer.0.bias",
    ]
    for name in extras:
        tensors[name] = np.zeros(1, np.float32)
        assert names.is_mindspore_training_entry(name)
    assert not names.is_mindspore_training_entry("ec_texture_layers.0.conv.conv.weight")
    with caplog.at_level(logging.INFO, logger="ctsdg.checkpoints.mindspore_names"):
        state = names.mindspore_state_to_authors(tensors, "generator", source="train.ckpt")
    assert len(state) == 210
    assert "train.ckpt" in caplog.text and "beta1_power" in caplog.text


def test_conversion_errors_name_the_entry_and_file(manifest: dict[str, Any]) -> None:
    base = _generator_arrays(manifest)

    unknown = {**base, "ec_texture_layers.9.conv.conv.weight": np.zeros(1, np.float32)}
    with pytest.raises(InputError, match=r"g\.ckpt: .*'ec_texture_layers\.9\.conv\.conv\.weight'"):
        names.mindspore_state_to_authors(unknown, "generator", source="g.ckpt")

    missing = dict(base)
    del missing["cfa.msfa.dilated_convs.2.0.bias"]
    with pytest.raises(InputError, match=r"g\.ckpt: .*missing.*'cfa\.msfa\.dilated_convs\.2\.0"):
        names.mindspore_state_to_authors(missing, "generator", source="g.ckpt")

    wrong = {**base, "bigff.texture_gamma": np.zeros((1, 1), np.float32)}
    with pytest.raises(InputError, match=r"g\.ckpt: .*'bigff\.texture_gamma'.*\(1, 1\)"):
        names.mindspore_state_to_authors(wrong, "generator", source="g.ckpt")

    integer = {**base, "out_layer.0.bias": np.zeros(3, np.int32)}
    with pytest.raises(InputError, match=r"'out_layer\.0\.bias'.*int32"):
        names.mindspore_state_to_authors(integer, "generator")

    with pytest.raises(InputError, match="looks like a generator"):
        names.mindspore_state_to_authors(base, "discriminator", source="g.ckpt")


def test_spectral_vectors_must_be_columns(manifest: dict[str, Any]) -> None:
    tensors = {n: np.zeros(e["shape"], np.float32) for n, e in manifest["discriminator"].items()}
    tensors["texture_branch.conv5.weight_u"] = np.zeros(1, np.float32)  # PyTorch's (n,)
    with pytest.raises(InputError, match=r"'texture_branch\.conv5\.weight_u'.*\(1, 1\)"):
        names.mindspore_state_to_authors(tensors, "discriminator")


def test_export_errors(official: dict[str, Any]) -> None:
    authors = {n: torch.zeros(s) for n, s in official["discriminator"].items()}
    with pytest.raises(InputError, match=r"'extra\.weight'"):
        writer.authors_state_to_mindspore(
            {**authors, "extra.weight": torch.zeros(1)}, "discriminator"
        )
    partial = dict(authors)
    del partial["edge_detector.out_layer.0.bias"]
    with pytest.raises(InputError, match=r"missing.*'edge_detector\.out_layer\.0\.bias'"):
        writer.authors_state_to_mindspore(partial, "discriminator")
    with pytest.raises(InputError, match=r"'edge_detector\.out_layer\.0\.bias'.*\(2,\)"):
        writer.authors_state_to_mindspore(
            {**authors, "edge_detector.out_layer.0.bias": torch.zeros(2)}, "discriminator"
        )
    # Keys MindSpore does not store may be left out.
    trimmed = {n: t for n, t in authors.items() if names.authors_to_mindspore(n, "discriminator")}
    assert len(writer.authors_state_to_mindspore(trimmed, "discriminator")) == 50


def test_detect_network(manifest: dict[str, Any]) -> None:
    assert names.detect_mindspore_network(manifest["generator"]) == "generator"
    assert names.detect_mindspore_network(manifest["discriminator"]) == "discriminator"
    with pytest.raises(InputError, match=r"x\.ckpt"):
        names.detect_mindspore_network(["conv.weight", "gamma"], source="x.ckpt")
    with pytest.raises(InputError, match="both"):
        names.detect_mindspore_network([*manifest["generator"], *manifest["discriminator"]])
    with pytest.raises(InputError, match="unknown network"):
        names.mindspore_to_authors("out_layer.0.bias", "vgg")  # type: ignore[arg-type]


# ---- full-size files from the reference weight rule ---------------------------------------


def _full_size_round_trip(network: str, official: dict[str, Any], tmp_path: Path) -> None:
    weights = authors_state_dict(network)
    path = tmp_path / f"{network}.ckpt"
    writer.write_mindspore_checkpoint(path, writer.authors_state_to_mindspore(weights, network))
    assert load_weights(path).format == "mindspore"
    tensors = ms.read_mindspore_checkpoint(path)
    assert names.detect_mindspore_network(tensors) == network
    state = names.mindspore_state_to_authors(tensors, network, source=str(path))
    assert set(state) == set(weights)
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name


def test_full_size_discriminator_file(official: dict[str, Any], tmp_path: Path) -> None:
    _full_size_round_trip("discriminator", official, tmp_path)


@pytest.mark.slow
def test_full_size_generator_file(official: dict[str, Any], tmp_path: Path) -> None:
    _full_size_round_trip("generator", official, tmp_path)
