"""The benchmark commands print what they promise (tiny sizes: these are not speed tests)."""

from __future__ import annotations

import json

import pytest
import torch

from ctsdg.cli import main


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.mark.slow
def test_bench_model_json(capsys) -> None:
    args = ["bench", "model", "--device", "cpu", "--size", "128", "--width", "8", "--repeats", "1"]
    assert main([*args, "--json", "--reference", "--paths", ""]) == 0
    (result,) = _json_lines(capsys)
    assert "forward_ms_by_path" not in result
    assert result["device"] == "cpu" and result["size"] == 128
    for key in ("forward_ms", "forward_backward_ms", "reference_forward_ms", "speedup_forward"):
        assert result[key] > 0
    assert main([*args[:-2], "--size", "100"]) == 2  # not a multiple of 128


@pytest.mark.slow
def test_bench_model_times_inference_paths_against_the_reference(capsys) -> None:
    args = ["bench", "model", "--device", "cpu", "--size", "128", "--width", "8", "--repeats",
            "2", "--json", "--reference"]  # fmt: skip
    assert main([*args, "--paths", "eager:fp32,eager:bf16,eager:fp16"]) == 0
    (result,) = _json_lines(capsys)
    by_path, speedup = result["forward_ms_by_path"], result["speedup_by_path"]
    # fp16 cannot run on a CPU: left out, not timed as something else
    assert set(by_path) == set(speedup) == {"reference eager fp32", "eager fp32", "eager bf16"}
    assert all(ms > 0 for ms in by_path.values()) and speedup["reference eager fp32"] == 1.0
    for name, ratio in speedup.items():
        assert ratio == round(by_path["reference eager fp32"] / by_path[name], 2)
    assert main([*args, "--paths", "eager:int8"]) == 2


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


# --------------------------------------------------------------------------- bench infer

INFER_KEYS = {
    "target", "device", "device_name", "backend", "precision", "status", "size", "width",
    "batch", "threads", "torch", "onnxruntime", "repeats", "batch1_ms", "batch_images_per_s",
    "peak_mb", "batch_peak_mb", "setup_s",
}  # fmt: skip
INFER = ["bench", "infer", "--json", "--device", "cpu", "--size", "128", "--width", "8",
         "--repeats", "1"]  # fmt: skip


def test_bench_infer_rows_per_backend_and_precision(capsys) -> None:
    args = [*INFER, "--batch", "2", "--backends", "eager,onnxruntime", "--precision", "fp32,bf16"]
    assert main([*args, "--in-process"]) == 0
    rows = _json_lines(capsys)
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("eager", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "bf16")
    ]  # fmt: skip
    for r in rows:
        assert set(r) - {"error"} == INFER_KEYS, r
        assert r["device"] == "cpu" and r["batch"] == 2
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 and all(r["batch1_ms"] > 0 and r["batch_images_per_s"] > 0 for r in ok)
    # In one process only the first row's CPU peak is its own; later ones are not guessed.
    assert rows[0]["peak_mb"] > 100 and rows[0]["batch_peak_mb"] >= rows[0]["peak_mb"]
    assert rows[1]["peak_mb"] is None
    (skipped,) = [r for r in rows if r["status"] != "ok"]
    assert skipped["status"] == "skipped" and "fp32 only" in skipped["error"]
    assert skipped["batch1_ms"] is None


@pytest.mark.slow  # a subprocess
def test_bench_infer_measures_each_configuration_in_its_own_process(capsys) -> None:
    args = [*INFER, "--batch", "1", "--backends", "eager", "--precision", "fp32,fp16"]
    assert main(args) == 0
    fp32, fp16 = _json_lines(capsys)
    assert fp32["status"] == "ok" and fp32["peak_mb"] > 100 and fp32["batch_peak_mb"] > 100
    assert fp16["status"] == "skipped" and "CUDA" in fp16["error"]


def test_bench_infer_reports_a_failing_backend(monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    args = [*INFER, "--batch", "1", "--backends", "compiled", "--precision", "fp32"]
    assert main([*args, "--in-process"]) == 0
    (result,) = _json_lines(capsys)
    assert result["status"] == "failed"
    assert result["error"] == "RuntimeError: no C++ compiler found"
    assert result["batch1_ms"] is None
    assert main([*args[:-1], "fp8"]) == 2  # unknown precision: a one-line error


def test_plain_bench_lists_its_targets(monkeypatch, capsys) -> None:
    import ctsdg.benchmarks.infer as infer

    monkeypatch.setattr(infer, "run", lambda args: pytest.fail("plain bench started a sweep"))
    assert main(["bench"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == [
        "model",
        "data",
        "train",
        "infer",
        "serve",
        "eval",
    ]
    assert "ctsdg bench TARGET --help" in lines[-1]


def test_markdown_rows_from_bench_json() -> None:
    from ctsdg.benchmarks.table import tables

    model = {"device_name": "GPU", "size": 256, "forward_ms": 10.0, "forward_backward_ms": 30.0,
             "forward_ms_by_path": {"reference eager fp32": 20.0, "eager bf16": 5.0},
             "speedup_by_path": {"reference eager fp32": 1.0, "eager bf16": 4.0}}  # fmt: skip
    train = {"device": "cuda", "batch_size": 6, "size": 256, "precision": "bf16",
             "channels_last": False, "compile": True, "step_ms": 300.0,
             "images_per_s": 20.0}  # fmt: skip
    infer = {"target": "infer", "device": "cuda", "device_name": "GPU", "backend": "onnxruntime",
             "precision": "bf16", "size": 256, "batch": 8, "status": "skipped",
             "error": "fp32 only"}  # fmt: skip
    text = tables([model, train, infer, {"unrelated": 1}])
    assert "| GPU | 256 | 10.0 | 30.0 | eager bf16 | 5.0 | 4.0 |" in text
    assert "| cuda | 6 | 256 | bf16 | False | True | 300.0 | 20.0 |" in text
    assert "| GPU | onnxruntime | bf16 | 256 | - | - (B=8) | - | - | skipped: fp32 only |" in text
