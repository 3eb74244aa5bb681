"""``ctsdg compare``: metrics files as ``ctsdg eval`` writes them, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ctsdg.cli import main
from ctsdg.comparison import comparison_table, load_results, plot_comparison
from ctsdg.errors import InputError
from ctsdg.evaluation_report import Evaluation, ImageResult, summarize_all

# (hole ratio, psnr, ssim, l1) per image; 10000-pixel images, so the ratios are exact
IMAGES = ((0.15, 35.0, 0.96, 0.004), (0.35, 27.0, 0.88, 0.02), (0.55, 23.0, 0.80, 0.03))


def write_metrics(
    folder: Path, method: str, offset: float, *, lpips: bool = False, fid: float | None = None
) -> Path:
    """A metrics.json from `Evaluation.to_json`, the writer ``ctsdg eval`` uses."""
    images = [
        ImageResult(
            index=i,
            source=f"{i}.png",
            hole_ratio=ratio,
            hole_pixels=int(ratio * 10000),
            pixels=10000,
            psnr=psnr + offset,
            ssim=ssim + offset / 100,
            l1=l1 - offset / 1000,
            lpips=(0.1 - offset / 100) if lpips else None,
        )
        for i, (ratio, psnr, ssim, l1) in enumerate(IMAGES)
    ]
    evaluation = Evaluation(settings={"method": method, "checkpoint": None}, images=images)
    summarize_all(evaluation)
    data = evaluation.to_json()
    if fid is not None:  # what the FID-aware eval adds to the same bucket objects
        for groups in (data["seed_buckets"], data["buckets"], data["all"]):
            for group in groups.values():
                group["fid"] = fid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(data))
    return folder / "metrics.json"


def _rows(table: str) -> dict[str, dict[str, str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_table_rows_columns_and_best(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", "ctsdg", 1.0, lpips=True, fid=12.5)
    b = write_metrics(tmp_path / "b", "telea", 0.0)
    table = comparison_table(load_results([a, b]))
    rows = _rows(table)
    assert list(rows) == ["ctsdg", "telea"]
    first = rows["ctsdg"]
    assert list(first)[:5] == ["method", "PSNR 0-20%", "PSNR 20-40%", "PSNR 40-60%", "PSNR all"]
    assert first["PSNR 0-20%"] == "**36.00**" and rows["telea"]["PSNR 0-20%"] == "35.00"
    assert first["PSNR all"] == "**29.33**"  # (36 + 28 + 24) / 3
    assert first["L1 20-40%"] == "**0.01900**" and rows["telea"]["L1 20-40%"] == "0.02000"
    # a metric only one file has: shown, "-" for the other, not bold (nothing to beat)
    assert first["LPIPS 40-60%"] == "0.0900" and rows["telea"]["LPIPS 40-60%"] == "-"
    assert first["FID all"] == "12.50" and rows["telea"]["FID all"] == "-"
    assert "P-IDS all" not in first  # no file has it: no column
    assert "lower is better: L1, LPIPS, FID" in table


def test_ids_columns_where_a_file_has_them(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", "ctsdg", 1.0)
    data = json.loads(a.read_text())
    data["all"]["all"].update(p_ids=0.12, u_ids=0.31)  # eval puts IDS in the "all" objects only
    a.write_text(json.dumps(data))
    b = write_metrics(tmp_path / "b", "telea", 0.0)
    rows = _rows(comparison_table(load_results([a, b])))
    assert [c for c in rows["ctsdg"] if "IDS" in c] == ["P-IDS all", "U-IDS all"]
    assert rows["ctsdg"]["P-IDS all"] == "0.1200" and rows["telea"]["U-IDS all"] == "-"


def test_ten_percent_buckets_with_images_only(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", "ctsdg", 0.0)
    columns = list(_rows(comparison_table(load_results([a]), "10"))["ctsdg"])
    assert [c for c in columns if c.startswith("PSNR")] == [
        "PSNR 10-20%",
        "PSNR 30-40%",
        "PSNR 50-60%",
        "PSNR all",
    ]


def test_names_and_different_image_counts(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "run1", "ctsdg", 0.0)
    b = write_metrics(tmp_path / "run2", "ctsdg", 1.0)
    assert [r.name for r in load_results([a, b])] == ["ctsdg (run1)", "ctsdg (run2)"]
    assert [r.name for r in load_results([a.parent, b], ["A", "B"])] == ["A", "B"]
    with pytest.raises(InputError, match="--name given 1 times for 2"):
        load_results([a, b], ["A"])
    data = json.loads(b.read_text())
    data["seed_buckets"]["0-20%"]["images"] = 7
    b.write_text(json.dumps(data))
    table = comparison_table(load_results([a, b]))
    assert "Note: 0-20% holds different numbers of images (ctsdg (run1): 1, ctsdg (run2): 7)" in (
        table
    )


def test_bad_metrics_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json: metrics file not found"):
        load_results([tmp_path / "nope.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: not a ctsdg metrics\.json \(not JSON"):
        load_results([bad])
    bad.write_text(json.dumps({"format": "something"}))
    with pytest.raises(InputError, match=r"format 'something', not 'ctsdg-eval'"):
        load_results([bad])
    bad.write_text(json.dumps({"format": "ctsdg-eval", "buckets": {}, "all": {}}))
    with pytest.raises(InputError, match=r"no 'seed_buckets' bucket objects"):
        load_results([bad])


def test_plot_is_a_png_with_a_panel_per_metric(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "a", "ctsdg", 1.0, lpips=True, fid=3.0)
    b = write_metrics(tmp_path / "b", "telea", 0.0)
    two = plot_comparison(load_results([b]), tmp_path / "out" / "two.png")
    four = plot_comparison(load_results([a, b]), tmp_path / "out" / "four.png")
    with Image.open(two) as small, Image.open(four) as large:
        assert small.format == large.format == "PNG"
        assert large.width == pytest.approx(2 * small.width, rel=0.02)  # PSNR SSIM LPIPS FID
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["four.png", "two.png"]


def test_compare_command(tmp_path: Path, capsys) -> None:
    a = write_metrics(tmp_path / "a", "ctsdg", 1.0)
    b = write_metrics(tmp_path / "b", "ns", 0.0)
    table, plot = tmp_path / "table.md", tmp_path / "plot.png"
    assert main(["compare", str(a), str(b), "-o", str(table), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert table.read_text() in out and "| ns |" in table.read_text()
    assert Image.open(plot).format == "PNG"
    assert main(["compare", str(a), "-o", str(table)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ctsdg: error: {table} already exists; pass --overwrite to replace it"
    assert main(["compare", str(a), "-o", str(table), "--overwrite"]) == 0
    assert "| ns |" not in table.read_text()
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "metrics file not found" in capsys.readouterr().err
