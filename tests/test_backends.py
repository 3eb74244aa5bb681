"""Runners (ctsdg/backends.py): same output as the generator, the ONNX cache, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ctsdg.backends import (
    UnsupportedError,
    build_runner,
    cache_dir,
    onnx_cache_path,
    weights_digest,
)
from ctsdg.checkpoints import ModelConfig, save_weights
from ctsdg.cli import main
from ctsdg.errors import InputError
from ctsdg.models import Generator, generator_inputs
from ctsdg.models.generator import example_batch

SIZE = 128


def _generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(width=8).eval()


def _inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    image, edge, gray, mask = example_batch(batch, SIZE)
    return image, mask, gray, edge  # the runner's order


def test_eager_cpu_runner_runs_large_batches_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch over the pixel budget runs a chunk at a time: same output, bounded batches."""
    from ctsdg import backends

    generator = _generator()
    image, mask, gray, edge = _inputs(batch=5)
    whole = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    monkeypatch.setattr(backends, "CPU_CHUNK_PIXELS", 2 * SIZE * SIZE)
    batches: list[int] = []
    generator.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    chunked = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    assert batches == [2, 2, 1]
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_eager_cpu_runner_leaves_channels_last_for_large_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ctsdg import backends

    generator = _generator()
    image, mask, gray, edge = _inputs(batch=1)
    run = build_runner(generator, "eager", "fp32")
    expected = run(image, mask, gray, edge)
    weight = generator.texture_encoder[1].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(backends, "CHANNELS_LAST_MAX_PIXELS", SIZE * SIZE - 1)
    torch.testing.assert_close(run(image, mask, gray, edge), expected, atol=1e-5, rtol=0)
    weights = [t for t in (*generator.parameters(), *generator.buffers()) if t.dim() == 4]
    assert all(t.stride() == torch.empty(t.shape).stride() for t in weights)
    monkeypatch.setattr(backends, "CHANNELS_LAST_MAX_PIXELS", SIZE * SIZE)
    run(image, mask, gray, edge)
    assert generator.texture_encoder[1].conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_eager_runner_is_the_generator_and_bf16_stays_close() -> None:
    generator = _generator()
    image, mask, gray, edge = _inputs()
    with torch.no_grad():
        expected = generator(*generator_inputs(image, edge, gray, mask)).output
    out = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    # channels-last on CPU: other convolution kernels, the same values up to float rounding
    assert out.is_contiguous() and generator.fusion_down.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    bf16 = build_runner(generator, "eager", "bf16")(image, mask, gray, edge)
    assert bf16.dtype == torch.float32 and bf16.shape == expected.shape
    assert 0 < (bf16 - expected).abs().max() < 0.1  # autocast ran, and stayed close


def test_unsupported_combinations_are_refused_with_a_reason(tmp_path: Path) -> None:
    generator = _generator()
    with pytest.raises(UnsupportedError, match="onnxruntime runs fp32 only"):
        build_runner(generator, "onnxruntime", "bf16")
    with pytest.raises(UnsupportedError, match="fp16 needs a CUDA device"):
        build_runner(generator, "eager", "fp16")
    with pytest.raises(InputError, match="backend 'tensorrt'"):
        build_runner(generator, "tensorrt", "fp32")
    with pytest.raises(InputError, match="precision 'fp8'"):
        build_runner(generator, "eager", "fp8")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(InputError, match=r"ONNX cache .*cannot write"):
        build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=blocked)


def test_cache_key_follows_weights_size_and_precision(monkeypatch, tmp_path: Path) -> None:
    a, b = _generator(0), _generator(1)
    assert weights_digest(a) == weights_digest(_generator(0)) != weights_digest(b)
    path = onnx_cache_path(a, SIZE, "fp32", tmp_path)
    assert path.parent == tmp_path / "onnx" and path.suffix == ".onnx"
    assert path != onnx_cache_path(b, SIZE, "fp32", tmp_path)
    assert path != onnx_cache_path(a, 2 * SIZE, "fp32", tmp_path)
    assert path == onnx_cache_path(a, SIZE, "fp32", tmp_path)
    monkeypatch.setenv("CTSDG_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CTSDG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "ctsdg"


@pytest.mark.slow
def test_onnxruntime_runner_matches_and_reuses_its_cache(
    monkeypatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger("ctsdg"), "propagate", True)  # the CLI turns it off
    caplog.set_level("INFO", logger="ctsdg")
    generator = _generator()
    # Several attention blocks (L = 1024 here): the exported graph must keep correct block
    # bounds at a batch other than the traced one (it once sliced by the traced batch size).
    generator.cfa.ral.block_elements = 256 * 1024  # 256 rows at batch 1, 128 at batch 2
    image, mask, gray, edge = _inputs()
    expected = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    runner = build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=tmp_path)
    torch.testing.assert_close(runner(image, mask, gray, edge), expected, atol=1e-4, rtol=0)
    (cached,) = (tmp_path / "onnx").iterdir()  # one file, no temporary left behind
    assert cached == onnx_cache_path(generator, SIZE, "fp32", tmp_path)
    said = [
        r.getMessage() for r in caplog.records
    ]  # the export says what it does, and for how long
    assert any(m.startswith("exporting the generator to ONNX at 128 x 128 for ONNX") for m in said)
    assert any(m.startswith("exported in ") for m in said)
    caplog.clear()

    def no_export(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("exported again instead of using the cache")

    monkeypatch.setattr("ctsdg.export.write_onnx", no_export)
    again = build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=tmp_path)
    torch.testing.assert_close(again(image, mask, gray, edge), expected, atol=1e-4, rtol=0)
    assert not any("exporting" in r.getMessage() for r in caplog.records)  # cached: no export
    big = torch.zeros(1, 3, 2 * SIZE, 2 * SIZE)
    with pytest.raises(InputError, match="built for 128x128"):
        again(big, big[:, :1], big[:, :1], big[:, :1])


def test_cli_refuses_bf16_onnxruntime_in_one_line(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    state = Generator(width=8).state_dict()
    weights = save_weights(
        tmp_path / "g.safetensors", model=ModelConfig(8), structure="correct", generator=state
    )

    Image.new("RGB", (128, 128)).save(tmp_path / "in.png")
    Image.new("L", (128, 128), 255).save(tmp_path / "mask.png")
    args = ["inpaint", str(tmp_path / "in.png"), str(tmp_path / "mask.png"), "-o",
            str(tmp_path / "out.png"), "--checkpoint", str(weights), "--size", "128"]  # fmt: skip
    assert main([*args, "--backend", "onnxruntime", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctsdg: error: backend onnxruntime runs fp32 only") and "\n" not in err
    assert not (tmp_path / "out.png").exists()


def test_compiled_backend_says_when_a_shape_compiles(monkeypatch, caplog) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger("ctsdg"), "propagate", True)  # the CLI turns it off
    caplog.set_level("INFO", logger="ctsdg")
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # no C++ needed
    runner = build_runner(_generator(), "compiled", "fp32")
    image, mask, gray, edge = _inputs(batch=1)
    runner(image, mask, gray, edge)
    runner(image, mask, gray, edge)  # the same shape: compiled already
    runner(*(t.repeat(2, 1, 1, 1) for t in (image, mask, gray, edge)))  # a new shape
    # One record can reach caplog through two handlers (an earlier in-process main() leaves
    # ctsdg's logger with pytest's handlers beside its own): count records, not deliveries.
    records = {id(r): r for r in caplog.records}.values()
    said = [r.getMessage() for r in records if "torch.compile" in r.getMessage()]
    assert [m.split(" for input ")[1].split(" (")[0] for m in said] == [
        "1 x 3 x 128 x 128",
        "2 x 3 x 128 x 128",
    ]
    assert all("a few minutes on a CPU" in m for m in said)


@pytest.mark.slow
def test_a_damaged_onnx_cache_file_is_exported_again(tmp_path: Path, caplog) -> None:
    generator = _generator()
    image, mask, gray, edge = _inputs()
    expected = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    path = onnx_cache_path(generator, SIZE, "fp32", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x07\x12\x04half")  # a truncated file where the cache looks
    with caplog.at_level("WARNING", "ctsdg"):
        runner = build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=tmp_path)
    assert f"ONNX cache {path} is unreadable" in caplog.text
    torch.testing.assert_close(runner(image, mask, gray, edge), expected, atol=1e-4, rtol=0)
    assert path.stat().st_size > 10_000 and [p.name for p in path.parent.iterdir()] == [path.name]
