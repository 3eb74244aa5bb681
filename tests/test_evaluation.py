"""``ctsdg eval``: per-image buckets, batch independence, the MindSpore port's printout, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctsdg.checkpoints import save_training_checkpoint
from ctsdg.cli import main
from ctsdg.config import load_config
from ctsdg.errors import InputError
from ctsdg.evaluation import (
    Evaluation,
    ImageResult,
    evaluate,
    full_table,
    in_bucket,
    seed_block,
    summarize_all,
)
from ctsdg.models import Generator
from tests.inpainting import run_ctsdg, tiny_weights

SMALL = {"dataset": "demo", "image_load_size": [128, 128], "num_parallel_workers": 0}


def config(**overrides):
    return load_config(overrides={**SMALL, **overrides})


def quiet_eval(cfg, **kwargs) -> Evaluation:
    return evaluate(cfg, progress=False, echo=lambda _: None, **kwargs)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def result(index: int, hole_pixels: int, psnr: float, ssim: float, pixels: int = 100):
    return ImageResult(
        index=index,
        source=f"img{index}",
        hole_ratio=hole_pixels / pixels,
        hole_pixels=hole_pixels,
        pixels=pixels,
        psnr=psnr,
        ssim=ssim,
        l1=0.01,
    )


# --------------------------------------------------------------------------- buckets, text


def test_images_are_bucketed_by_their_own_exact_hole_ratio() -> None:
    at_20 = result(0, 20, 30, 0.9)  # exactly 20 %: the (0, 20] bucket
    above_20 = result(1, 2001, 30, 0.9, pixels=10_000)  # 20.01 %
    assert in_bucket(at_20, (0, 20)) and not in_bucket(at_20, (20, 40))
    assert in_bucket(above_20, (20, 40)) and not in_bucket(above_20, (0, 20))
    evaluation = Evaluation({}, [at_20, above_20, result(2, 0, 99, 1.0), result(3, 65, 15, 0.5)])
    summarize_all(evaluation)
    assert evaluation.seed_buckets["0-20%"]["images"] == 1
    assert evaluation.seed_buckets["20-40%"]["images"] == 1
    assert evaluation.buckets["0% (no hole)"]["images"] == 1
    assert evaluation.buckets["60-70%"]["images"] == 1
    assert evaluation.dropped["60-100%"] == {"images": 1, "psnr": 15, "ssim": 0.5, "l1": 0.01}
    assert evaluation.overall["all"]["images"] == 4


def test_seed_block_has_the_seeds_exact_format() -> None:
    images = [
        result(0, 10, 38.0412, 0.97912),
        result(1, 30, 29.3901, 0.92249),
        result(2, 50, 24.2149, 0.8300),
        result(3, 50, 24.2051, 0.8298),
    ]
    evaluation = Evaluation({}, images)
    summarize_all(evaluation)
    assert seed_block(evaluation) == (
        "PSNR:\n0-20%: 38.04\n20-40%: 29.39\n40-60%: 24.21\n"
        "SSIM:\n0-20%: 0.979\n20-40%: 0.922\n40-60%: 0.83"
    )
    table = full_table(evaluation)
    assert "60-100% (dropped by the port)" in table
    assert table.splitlines()[2].split() == ["0-10%", "1", "38.04", "0.9791", "0.01000"]


def test_empty_seed_bucket_prints_nan() -> None:
    evaluation = Evaluation({}, [result(0, 10, 30.0, 0.9)])
    summarize_all(evaluation)
    assert seed_block(evaluation).splitlines()[2] == "20-40%: nan"


# --------------------------------------------------------------------------- running


def test_baseline_figures_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    runs = [
        quiet_eval(
            config(
                method="telea",
                eval_limit=14,
                test_batch_size=b,
                output_path=str(tmp_path / f"b{b}"),
            )
        )
        for b in (1, 4)
    ]
    one, four = ([(r.index, r.hole_pixels, r.psnr, r.l1) for r in e.images] for e in runs)
    assert one == four  # same images, same buckets, same float64 PSNR and L1
    # SSIM's float32 convolutions may round differently in a batch
    ssim_one, ssim_four = ([r.ssim for r in e.images] for e in runs)
    assert ssim_one == pytest.approx(ssim_four, rel=1e-6)
    for name, bucket in runs[0].seed_buckets.items():
        assert bucket == pytest.approx(runs[1].seed_buckets[name], rel=1e-6)
    assert [r.index for r in runs[1].images] == list(range(14))  # deterministic order


def test_workers_and_bf16_give_the_same_figures(
    weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the baselines' default report folder is ./eval/
    base = quiet_eval(config(method="telea", eval_limit=6, test_batch_size=2))
    workers = quiet_eval(
        config(method="telea", eval_limit=6, test_batch_size=2, num_parallel_workers=2)
    )
    assert base.output_dir == Path("eval/telea-demo")
    assert [(r.index, r.psnr) for r in base.images] == [(r.index, r.psnr) for r in workers.images]
    fp32, bf16 = (
        quiet_eval(config(checkpoint_path=str(weights_file), eval_limit=3, precision=p))
        for p in ("fp32", "bf16")
    )
    for a, b in zip(fp32.images, bf16.images, strict=True):
        assert math.isfinite(b.psnr) and abs(a.psnr - b.psnr) < 1.0


def test_telea_and_ns_give_plausible_figures(tmp_path: Path) -> None:
    for method in ("telea", "ns"):
        out = str(tmp_path / method)  # a folder that holds results is refused
        cfg = config(method=method, eval_limit=14, test_batch_size=7, output_path=out)
        evaluation = quiet_eval(cfg)
        buckets = evaluation.buckets
        assert all(math.isfinite(r.psnr) and 0 < r.ssim <= 1 for r in evaluation.images)
        # free-form demo masks: sample i is in 10 % bucket i mod 7
        assert [buckets[f"{p}-{p + 10}%"]["images"] for p in range(0, 70, 10)] == [2] * 7
        assert buckets["0-10%"]["psnr"] > buckets["30-40%"]["psnr"] > buckets["60-70%"]["psnr"]
        assert 25 < buckets["0-10%"]["psnr"] < 60
        assert buckets["0-10%"]["ssim"] > buckets["60-70%"]["ssim"]


def test_reports_and_composites(tmp_path: Path, weights_file: Path) -> None:
    out = tmp_path / "out"
    cfg = config(
        checkpoint_path=str(weights_file), eval_limit=7, test_batch_size=3, output_path=str(out)
    )
    evaluation = quiet_eval(cfg)
    assert evaluation.output_dir == out
    report = json.loads((out / "metrics.json").read_text())
    assert report["format"] == "ctsdg-eval" and report["images"] == 7
    assert report["structure"] == "authors"
    assert report["structure_reason"] == "recorded in the ctsdg-weights checkpoint"
    assert report["model"] == {"width": 8, "align_corners": False}
    assert set(report["seed_buckets"]) == {"0-20%", "20-40%", "40-60%"}
    assert report["dropped_by_port"]["60-100%"]["images"] == 1
    assert report["all"]["all"]["images"] == 7
    assert [r["index"] for r in report["per_image"]] == list(range(7))
    first = report["per_image"][0]
    assert first["psnr"] == pytest.approx(evaluation.images[0].psnr)
    assert sum(b["images"] for b in report["buckets"].values()) == 7
    assert "PSNR:\n0-20%:" in (out / "metrics.md").read_text()
    pngs = sorted(p.name for p in (out / "composites").iterdir())
    assert pngs == [f"{i:06d}.png" for i in range(7)]
    # the composite keeps the ground truth outside the holes
    assert np.asarray(Image.open(out / "composites" / "000000.png")).shape == (128, 128, 3)


def test_model_figures_do_not_depend_on_batch_size(weights_file: Path) -> None:
    runs = [
        quiet_eval(config(checkpoint_path=str(weights_file), eval_limit=5, test_batch_size=b))
        for b in (1, 5)
    ]
    for a, b in zip(runs[0].images, runs[1].images, strict=True):
        assert a.index == b.index and a.hole_pixels == b.hole_pixels
        assert a.psnr == pytest.approx(b.psnr, rel=1e-4)
        assert a.ssim == pytest.approx(b.ssim, rel=1e-4)
    # without output_path the reports go beside the checkpoint
    assert runs[0].output_dir == weights_file.parent / "eval" / "tiny-demo"
    assert (runs[0].output_dir / "metrics.json").is_file()


def test_run_folder_reports_into_the_run_and_explicit_structure_wins(tmp_path: Path) -> None:
    run = tmp_path / "run"
    state = {
        "model": {"width": 8, "align_corners": False},
        "structure": "correct",
        "generator": Generator(width=8).state_dict(),
        "iteration": 10,
    }
    save_training_checkpoint(run / "checkpoints" / "checkpoint_0000010.pt", state)
    evaluation = quiet_eval(config(checkpoint_path=str(run), eval_limit=2), structure="authors")
    assert evaluation.output_dir == run / "eval" / "checkpoint_0000010-demo"
    assert evaluation.settings["structure"] == "authors"
    assert evaluation.settings["structure_reason"] == "set explicitly"


def test_cli_prints_seed_block_and_respects_structure_sources(
    tmp_path: Path, weights_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "dataset: demo\nimage_load_size: [128, 128]\nnum_parallel_workers: 0\nstructure: correct\n"
        f"checkpoint_path: {weights_file}\neval_limit: 7\noutput_path: {tmp_path / 'o'}\n"
    )
    assert main(["eval", "--config", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "structure key (for training) is not used" in out
    assert "structure inputs: 'authors' (recorded in the ctsdg-weights checkpoint)" in out
    lines = out.splitlines()
    start = lines.index("PSNR:")
    assert [line.split(":")[0] for line in lines[start : start + 8]] == [
        "PSNR",
        "0-20%",
        "20-40%",
        "40-60%",
        "SSIM",
        "0-20%",
        "20-40%",
        "40-60%",
    ]
    assert "60-100% (dropped by the port)" in out
    again = ["eval", "--config", str(cfg), "structure=correct", "--no-progress", "--overwrite"]
    assert main(again) == 0
    assert "structure inputs: 'correct' (set explicitly)" in capsys.readouterr().out


def test_unreadable_image_stops_the_evaluation(tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (140, 140), (10, 200, 30)).save(images / "a.png")
    (images / "b.png").write_bytes(b"not a png")
    code = main(
        [
            "eval",
            "dataset=folder",
            f"data_root={images}",
            "method=telea",
            "image_load_size=[128,128]",
            "num_parallel_workers=0",
            f"output_path={tmp_path / 'o'}",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "b.png" in capsys.readouterr().err


def test_bad_settings_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint_path"):
        evaluate(config(eval_limit=1), progress=False, echo=lambda _: None)
    with pytest.raises(InputError, match="pretrained_vgg"):
        evaluate(
            config(method="telea", eval_limit=1, lpips_weights=str(tmp_path / "x.pth")),
            progress=False,
            echo=lambda _: None,
        )
    with pytest.raises(InputError, match="inpaint_radius"):
        config(inpaint_radius=0)


# --------------------------------------------------------------------------- output faults


def test_unwritable_output_path_fails_before_evaluating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ctsdg.evaluation as evaluation

    def no_loader(*args, **kwargs):
        raise AssertionError("evaluation started before the output place was checked")

    monkeypatch.setattr(evaluation, "build_loader", no_loader)
    (tmp_path / "file").write_text("not a folder")
    args = ["eval", "dataset=demo", "method=telea", "image_load_size=[128,128]", "eval_limit=2"]
    code = main([*args, f"output_path={tmp_path / 'file' / 'sub'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "cannot write" in err and "not a directory" in err and "file" in err


def test_figures_are_printed_when_the_reports_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    import ctsdg.fileio as fileio

    real = fileio.atomic_write

    def full_for_metrics(path, write):
        if Path(path).name.startswith("metrics"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write)

    monkeypatch.setattr(fileio, "atomic_write", full_for_metrics)
    out = tmp_path / "o"
    code = main(
        [
            "eval",
            "dataset=demo",
            "method=telea",
            "image_load_size=[128,128]",
            "eval_limit=3",
            "num_parallel_workers=0",
            f"output_path={out}",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "PSNR:\n0-20%:" in captured.out and "all" in captured.out  # the figures, first
    assert captured.err.count("\n") == 1 and "no space left" in captured.err
    assert "metrics.json" in captured.err and "not saved" in captured.err
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))
    assert len(list((out / "composites").iterdir())) == 3  # written before the disk filled


def test_no_progress_bar_in_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "dataset=demo", "method=telea", "image_load_size=[128,128]", "eval_limit=2"]
    assert main([*args, "num_parallel_workers=0", f"output_path={tmp_path}"]) == 0
    assert "img/s" not in capsys.readouterr().err  # stderr is not a terminal here


def test_eval_rejects_model_keys_it_takes_from_the_checkpoint(
    weights_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for override in ("width=32", "align_corners=true"):
        code = main(["eval", f"checkpoint_path={weights_file}", override, "dataset=demo"])
        err = capsys.readouterr().err
        assert code == 2 and override.split("=")[0] in err and "from the checkpoint" in err


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_torchrun_two_processes_give_the_same_figures(tmp_path: Path, weights_file: Path) -> None:
    """2 gloo processes shard the images; rank 0 gathers every score and writes the reports."""

    common = [
        "eval",
        "dataset=demo",
        "image_load_size=[128,128]",
        "num_parallel_workers=0",
        f"checkpoint_path={weights_file}",
        "eval_limit=7",
        "device=cpu",
    ]
    one = run_ctsdg(*common, f"output_path={tmp_path / 'one'}", "--no-progress")
    assert one.returncode == 0, one.stderr
    two = run_ctsdg(
        *common, f"output_path={tmp_path / 'two'}", "--no-progress", processes=2, port=29731
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("PSNR:") == 1  # rank 0 alone prints
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert b["processes"] == 2 and a["processes"] == 1
    assert [r["source"] for r in b["per_image"]] == [r["source"] for r in a["per_image"]]
    for key in ("per_image", "seed_buckets", "buckets", "all"):
        assert b[key] == a[key], key
    names = sorted(p.name for p in (tmp_path / "one" / "composites").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two" / "composites").iterdir())
    for name in names:
        assert (tmp_path / "one" / "composites" / name).read_bytes() == (
            tmp_path / "two" / "composites" / name
        ).read_bytes()
