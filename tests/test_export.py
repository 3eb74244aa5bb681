"""ONNX / TorchScript export against PyTorch, dynamic batch, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ctsdg.checkpoints import ModelConfig, save_weights
from ctsdg.cli import main
from ctsdg.export import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    ExportMismatchError,
    export,
    random_inputs,
    read_metadata,
)
from ctsdg.models import Generator

SIZE = 128


def tiny_checkpoint(folder: Path, align_corners: bool = False) -> Path:
    torch.manual_seed(0)
    generator = Generator(width=8, align_corners=align_corners)
    return save_weights(
        folder / f"tiny_{align_corners}.safetensors",
        model=ModelConfig(8, align_corners=align_corners),
        structure="authors",
        generator=generator.state_dict(),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def pytorch_outputs(checkpoint: Path, inputs) -> list[np.ndarray]:
    from ctsdg.checkpoints import load_generator

    with torch.no_grad():
        return [t.numpy() for t in load_generator(checkpoint)(*inputs)]


@pytest.mark.slow
@pytest.mark.parametrize("align_corners", [False, True])
def test_onnx_matches_pytorch_with_dynamic_batch(tmp_path: Path, align_corners: bool) -> None:
    checkpoint = tiny_checkpoint(tmp_path, align_corners)
    path = tmp_path / "g.onnx"
    result = export(checkpoint, path, "onnx", size=SIZE)
    assert result.max_abs_diff < 1e-4 and result.batch_sizes == (1, 2)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "Col2Im" in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 3):
        inputs = random_inputs(batch, SIZE, seed=10 + batch)
        got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})
        for g, e in zip(got, pytorch_outputs(checkpoint, inputs), strict=True):
            assert g.shape == e.shape and g.shape[0] == batch
            np.testing.assert_allclose(g, e, atol=1e-4, rtol=0)
    metadata = read_metadata(path)
    assert metadata["structure"] == "authors"
    assert json.loads(metadata["model"]) == {"width": 8, "align_corners": align_corners}
    assert json.loads(metadata["image_size"]) == [SIZE, SIZE]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_pytorch_with_dynamic_batch(tmp_path: Path, checkpoint: Path) -> None:
    path = tmp_path / "g.pt"
    result = export(checkpoint, path, "torchscript", size=SIZE)
    assert result.max_abs_diff < 1e-4
    module = torch.jit.load(str(path))
    for batch in (1, 3):
        inputs = random_inputs(batch, SIZE, seed=batch)
        with torch.no_grad():
            got = [t.numpy() for t in module(*inputs)]
        for g, e in zip(got, pytorch_outputs(checkpoint, inputs), strict=True):
            np.testing.assert_allclose(g, e, atol=1e-4, rtol=0)
    assert read_metadata(path)["structure"] == "authors"


@pytest.mark.slow
def test_cli_export_prints_the_difference_and_fails_on_mismatch(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = tmp_path / "g.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "-o", str(out), "--size", str(SIZE)]
    assert main([*args, "--structure", "correct"]) == 0
    printed = capsys.readouterr().out
    assert "max |exported - PyTorch| =" in printed and "'correct'" in printed
    assert read_metadata(out)["structure"] == "correct"

    import ctsdg.export

    assert main(args) == 2  # the file exists: not replaced unless asked
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    monkeypatch.setattr(ctsdg.export, "max_difference", lambda *a, **k: 0.5)
    assert main([*args, "--overwrite"]) == 1
    assert "differs from PyTorch by up to 0.5" in capsys.readouterr().err
    with pytest.raises(ExportMismatchError):
        export(checkpoint, out, "onnx", size=SIZE, overwrite=True)
    assert main([*args[:-1], "200"]) == 2  # not a multiple of 128


@pytest.mark.slow
def test_export_size_defaults_to_the_recorded_training_size(tmp_path: Path) -> None:
    from ctsdg.checkpoints import save_training_checkpoint

    state = {
        "model": {"width": 8, "align_corners": False},
        "structure": "correct",
        "generator": Generator(width=8).state_dict(),
        "config": {"image_load_size": [128, 128]},
    }
    path = save_training_checkpoint(tmp_path / "checkpoint_0000001.pt", state)
    result = export(path, tmp_path / "g.pt", "torchscript")
    assert result.size == 128 and json.loads(result.metadata["image_size"]) == [128, 128]
