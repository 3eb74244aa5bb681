"""`ctsdg demo` end to end at a tiny scale, and the README staying true to the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from ctsdg.cli import main
from ctsdg.config import SEED_ONLY_KEYS, Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_writes_report_and_samples(tmp_path: Path, capsys) -> None:
    run = tmp_path / "demo"
    args = [
        "demo",
        f"save_path={run}",
        "width=8",
        "train_iter=2",
        "finetune_iter=1",
        "batch_size=2",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"report: {run / 'report.md'}" in printed
    report = (run / "report.md").read_text()
    assert "A smoke run, not the paper's model" in report
    for needle in (
        "| method | PSNR 0-20% |",
        "0-20%:",
        "![metrics against the hole ratio](comparison.png)",
        "## Config",
        "## Time taken",
        "| total |",
    ):
        assert needle in report, needle
    # the table is ctsdg compare's, from the three metrics files: a row per method
    rows = [line.split(" | ")[0] for line in report.splitlines() if re.match(r"\| [A-Z]", line)]
    assert rows == ["| CTSDG", "| Telea", "| Navier-Stokes"]
    assert Image.open(run / "comparison.png").format == "PNG"
    samples = Image.open(run / "samples.png")
    assert samples.width > 5 * 128 and samples.height > 6 * 128
    assert sorted(p.name for p in (run / "inpainted").iterdir()) == [
        "chelsea.png",
        "immunohistochemistry.png",
        "rocket.png",
    ]
    for method in ("ctsdg", "telea", "ns"):
        assert (run / "eval" / method / "metrics.json").is_file()
    assert "minutes, wall-clock)" in report
    # Reporting again on the trained model keeps the training's own time, not the resume's.
    trained = json.loads((run / "demo_training_time.json").read_text())
    assert trained["iteration"] == 3 and trained["seconds"] > 0
    assert main([*args, "resume=auto"]) == 0
    assert json.loads((run / "demo_training_time.json").read_text()) == trained
    again = (run / "report.md").read_text()
    assert f"| training | {trained['seconds']:.1f} |" in again


def test_demo_refuses_to_replace_a_run(tmp_path: Path, capsys) -> None:
    run = tmp_path / "demo"
    run.mkdir()
    (run / "config.yaml").write_text("width: 8\n")  # a run from before
    assert main(["demo", f"save_path={run}", "width=8", "--no-progress"]) == 2
    lines = capsys.readouterr().err.splitlines()
    (err,) = [line for line in lines if line.startswith("ctsdg: error:")]
    assert "holds a run already" in err and "--overwrite" in err
    assert (run / "config.yaml").read_text() == "width: 8\n"


def test_readme_documents_every_config_key_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", readme, flags=re.MULTILINE))
    defaults = Config()
    for name in Config.model_fields:
        assert name in rows, f"README misses config key {name}"
        value = getattr(defaults, name)
        if isinstance(value, tuple):
            shown = "[" + ", ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, str):
            shown = value or '""'
        else:
            shown = str(value)
        assert rows[name] == shown, f"README default of {name}: {rows[name]}"
    assert not set(rows) & SEED_ONLY_KEYS


def test_readme_quick_start_matches_the_makefile_and_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/ctsdg demo", makefile, flags=re.MULTILINE)
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert "-c constraints.txt" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
