"""``ctsdg eval`` as a benchmark harness: the pairs it writes, refusing to replace them, scoring
another method's results (method=folder), FID and P-IDS / U-IDS per bucket."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctsdg.cli import main
from ctsdg.config import load_config
from ctsdg.errors import InputError
from ctsdg.evaluation import Evaluation, evaluate
from tests.fid_weights import calibrated_weights

SMALL = {"dataset": "demo", "image_load_size": [128, 128], "num_parallel_workers": 0}


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval without output_path reports to ./eval/: never into the checkout."""
    monkeypatch.chdir(tmp_path)


def quiet_eval(overwrite: bool = False, **overrides) -> Evaluation:
    cfg = load_config(overrides={**SMALL, **overrides})
    return evaluate(cfg, progress=False, echo=lambda _: None, overwrite=overwrite)


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Evaluation]:
    out = tmp_path_factory.mktemp("bench") / "bench"
    return out, quiet_eval(method="telea", eval_limit=6, test_batch_size=4, output_path=str(out))


def test_output_path_holds_the_pairs_under_one_name(bench: tuple[Path, Evaluation]) -> None:
    out, evaluation = bench
    names = [f"{i:06d}.png" for i in range(6)]
    for folder in ("composites", "ground_truth", "masks"):
        assert pngs(out / folder) == names
    for r in evaluation.images:
        name = names[r.index]
        holes = np.asarray(Image.open(out / "masks" / name))
        assert holes.dtype == np.uint8 and set(np.unique(holes)) <= {0, 255}
        assert int((holes == 255).sum()) == r.hole_pixels  # white = hole
        comp = np.asarray(Image.open(out / "composites" / name))
        truth = np.asarray(Image.open(out / "ground_truth" / name))
        assert truth.shape == (128, 128, 3)  # as evaluated: cropped and resized
        known = holes == 0
        assert np.array_equal(comp[known], truth[known])  # the composite keeps the known pixels
        assert not np.array_equal(comp[~known], truth[~known])


def test_existing_results_are_refused_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["eval", *(f"{k}={v}" for k, v in SMALL.items() if k != "image_load_size")]
    argv += ["image_load_size=[128,128]", "method=telea", "eval_limit=3", f"output_path={out}"]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds evaluation results; pass --overwrite" in err and err.count("\n") == 1
    (out / "composites" / "000099_stale.png").write_bytes(b"")  # a longer run's leftover
    assert main([*argv, "--no-progress", "--overwrite", "eval_limit=2"]) == 0
    assert pngs(out / "composites") == ["000000.png", "000001.png"]


def test_method_folder_scores_another_methods_results(
    tmp_path: Path, bench: tuple[Path, Evaluation]
) -> None:
    out, telea = bench
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for i, name in enumerate(pngs(out / "composites")):
        target = predictions / (name if i % 2 else Path(name).stem + ".bmp")  # any extension
        Image.open(out / "composites" / name).save(target)
    scored = quiet_eval(method="folder", predictions=str(predictions), eval_limit=6)
    # composites of telea's composites: the same pixels, so the same figures
    for a, b in zip(telea.images, scored.images, strict=True):
        assert (a.index, a.hole_pixels) == (b.index, b.hole_pixels)
        assert b.psnr == pytest.approx(a.psnr, abs=1e-4) and b.l1 == pytest.approx(a.l1, abs=1e-6)
    assert scored.settings["predictions"] == str(predictions)


def test_method_folder_one_line_errors(tmp_path: Path, bench: tuple[Path, Evaluation]) -> None:
    out = bench[0]
    predictions = tmp_path / "p"
    shutil.copytree(out / "composites", predictions)
    (predictions / "000002.png").unlink()
    with pytest.raises(InputError, match=r"000002\.png: prediction not found"):
        quiet_eval(method="folder", predictions=str(predictions), eval_limit=6)
    Image.new("RGB", (100, 128)).save(predictions / "000002.png")
    with pytest.raises(InputError, match=r"000002\.png: prediction is 100x128, expected 128x128"):
        quiet_eval(method="folder", predictions=str(predictions), eval_limit=6)
    (predictions / "000002.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"000002\.png: unreadable prediction"):
        quiet_eval(method="folder", predictions=str(predictions), eval_limit=6)
    with pytest.raises(InputError, match="config key predictions"):
        quiet_eval(method="folder", eval_limit=6)


@pytest.mark.slow
def test_fid_and_ids_per_bucket_equal_ctsdg_fid_on_the_written_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = calibrated_weights(tmp_path / "inception.pth")
    out = tmp_path / "out"
    evaluation = quiet_eval(
        method="telea",
        eval_limit=12,
        test_batch_size=5,
        output_path=str(out),
        fid_weights=str(weights),
    )
    report = json.loads((out / "metrics.json").read_text())
    assert report["fid"] is True and report["fid_min_images"] == 2048
    for group in ("buckets", "seed_buckets", "all"):
        for bucket in report[group].values():
            assert "fid" in bucket and bucket["fid_reliable"] is False
            assert (bucket["fid"] is None) == (bucket["images"] < 2)
    everything = report["all"]["all"]
    assert 0 <= everything["p_ids"] <= 0.5 and 0 <= everything["u_ids"] <= 0.5
    assert "p_ids" in report["all"]["0-60% (seed range)"]
    assert "p_ids" not in report["buckets"]["0-10%"]
    table = (out / "metrics.md").read_text()
    assert "| FID | P-IDS | U-IDS |" in table and "* FID over fewer than 2048 images" in table
    assert everything["fid"] > 0
    argv = ["fid", str(out / "composites"), str(out / "ground_truth"), "--weights", str(weights)]
    assert main([*argv, "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["images"] == [12, 12]
    assert alone["fid"] == pytest.approx(everything["fid"], rel=5e-3)
    assert evaluation.overall["all"]["fid"] == everything["fid"]


@pytest.mark.slow
def test_bench_eval_times_both_settings(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "eval", "--images", "2", "--size", "128", "--batch", "2", "--repeats", "1"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2 and len(result["all_s"]["plain"]) == 1
    assert result["plain_s"] > 0 and result["ratio"] == pytest.approx(
        result["lpips_fid_s"] / result["plain_s"]
    )
