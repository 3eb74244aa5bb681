"""The benchmark commands print what they promise (tiny sizes: these are not speed tests)."""

from __future__ import annotations

import json

import pytest

from ctsdg.cli import main


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.mark.slow
def test_bench_model_json(capsys) -> None:
    args = ["bench", "model", "--device", "cpu", "--size", "128", "--width", "8", "--repeats", "1"]
    assert main([*args, "--json", "--reference"]) == 0
    (result,) = _json_lines(capsys)
    assert result["device"] == "cpu" and result["size"] == 128
    for key in ("forward_ms", "forward_backward_ms", "reference_forward_ms", "speedup_forward"):
        assert result[key] > 0
    assert main([*args[:-2], "--size", "100"]) == 2  # not a multiple of 128


@pytest.mark.slow
def test_bench_train_json(capsys) -> None:
    args = [
        "bench",
        "train",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--size",
        "128",
        "--width",
        "8",
        "--repeats",
        "1",
        "--json",
    ]
    assert main(args) == 0
    (result,) = _json_lines(capsys)
    assert result["step_ms"] > 0 and result["batch_size"] == 2 and result["precision"] == "fp32"
    assert main([*args[:-1], "--precision", "bf16"]) == 0
    assert "bf16" in capsys.readouterr().out
    assert main([*args[:-1], "--precision", "fp16"]) == 2  # fp16 autocast needs CUDA
    assert main([*args[:5], "1", *args[6:]]) == 2  # batch 1 at 128x128: a 1x1 bottleneck
