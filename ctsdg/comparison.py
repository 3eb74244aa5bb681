"""``ctsdg compare``: several ``ctsdg eval`` results side by side, as inpainting papers lay them
out (methods as rows, each metric per hole-ratio bucket as columns), and one figure of the
metrics against the hole ratio.

The input is what `ctsdg.evaluation_report` writes: ``metrics.json`` (``format: ctsdg-eval``)
with bucket objects ``{"images": n, "psnr": ..., "ssim": ..., "l1": ..., "lpips": ...}`` under
``seed_buckets`` (0-20 / 20-40 / 40-60 %), ``buckets`` (10 % buckets) and ``all``. Metrics that
newer files add to the same objects (``fid``, ``p_ids``, ``u_ids``) are shown when present; a
column appears only where some file has a value for it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ctsdg.errors import InputError
from ctsdg.evaluation_report import EVAL_FORMAT
from ctsdg.fileio import atomic_write, writing

#: (key in a bucket object, column label, format, higher is better), in the papers' order.
METRICS: tuple[tuple[str, str, str, bool], ...] = (
    ("psnr", "PSNR", ".2f", True),
    ("ssim", "SSIM", ".4f", True),
    ("l1", "L1", ".5f", False),
    ("lpips", "LPIPS", ".4f", False),
    ("fid", "FID", ".2f", False),
    ("p_ids", "P-IDS", ".4f", True),
    ("u_ids", "U-IDS", ".4f", True),
)
#: The panels of the figure, against the hole ratio.
PLOTTED = ("psnr", "ssim", "lpips", "fid")

Buckets = Literal["seed", "10"]
_BUCKET_LABEL = re.compile(r"(\d+)-(\d+)%")


@dataclass(frozen=True)
class MethodResult:
    """One ``metrics.json``: the name it is shown under and its bucket objects by label."""

    name: str
    path: Path
    seed_buckets: dict[str, dict[str, Any]]
    buckets: dict[str, dict[str, Any]]
    overall: dict[str, dict[str, Any]]

    def group(self, label: str) -> dict[str, Any]:
        for groups in (self.seed_buckets, self.buckets, self.overall):
            if label in groups:
                return groups[label]
        return {}


def _not_metrics(path: Path, why: str) -> InputError:
    return InputError(f"{path}: not a ctsdg metrics.json ({why}); expected what ctsdg eval writes")


def read_metrics(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The parsed ``metrics.json`` at ``path`` (or inside the folder ``path``) and its path.

    InputError (one line, naming the file) for a missing file, one that is not JSON, or JSON
    that ``ctsdg eval`` did not write.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise InputError(f"{path}: metrics file not found (ctsdg eval writes metrics.json)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _not_metrics(path, f"not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != EVAL_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _not_metrics(path, f"format {found!r}, not {EVAL_FORMAT!r}")
    for key in ("seed_buckets", "buckets", "all"):
        groups = data.get(key)
        if not isinstance(groups, dict) or not all(isinstance(g, dict) for g in groups.values()):
            raise _not_metrics(path, f"no {key!r} bucket objects")
    return data, path


def _default_name(data: dict[str, Any]) -> str:
    method = str(data.get("method") or "?")
    predictions = data.get("predictions")
    if method == "folder" and predictions:  # another method's results, scored by ctsdg eval
        return Path(str(predictions)).name or method
    return method


def load_results(
    paths: Sequence[str | os.PathLike[str]], names: Sequence[str] | None = None
) -> list[MethodResult]:
    """Read every file; name each by ``names``, else by its method (its folder name added
    where two files would get the same name)."""
    if names and len(names) != len(paths):
        raise InputError(f"--name given {len(names)} times for {len(paths)} metrics files")
    read = [read_metrics(p) for p in paths]
    labels = list(names) if names else [_default_name(data) for data, _ in read]
    if not names:
        folders = [f"{labels[i]} ({path.parent.name})" for i, (_, path) in enumerate(read)]
        labels = _distinct(labels, folders)
        labels = _distinct(labels, [str(path) for _, path in read])
    return [
        MethodResult(label, path, data["seed_buckets"], data["buckets"], data["all"])
        for label, (data, path) in zip(labels, read, strict=True)
    ]


def _distinct(labels: list[str], fuller: list[str]) -> list[str]:
    """``labels`` with each one that occurs twice replaced by its ``fuller`` form."""
    return [fuller[i] if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _groups(results: Sequence[MethodResult], buckets: Buckets) -> list[str]:
    """The bucket labels that are columns: the seed's three or the 10 % buckets some file has
    images in, then all images."""
    if buckets == "seed":
        chosen = list(dict.fromkeys(k for r in results for k in r.seed_buckets))
    else:
        chosen = list(
            dict.fromkeys(k for r in results for k, g in r.buckets.items() if g.get("images"))
        )
    return [*chosen, "all"]


def _value(result: MethodResult, label: str, key: str) -> float | None:
    value = result.group(label).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def comparison_table(results: Sequence[MethodResult], buckets: Buckets = "seed") -> str:
    """One Markdown table: a row per method, a column per (metric, bucket) that some file has a
    value for; the best value of each column in bold when two or more methods have one."""
    groups = _groups(results, buckets)
    columns = [
        (key, label, spec, higher, group)
        for key, label, spec, higher in METRICS
        for group in groups
        if any(_value(r, group, key) is not None for r in results)
    ]
    header = ["method"] + [f"{label} {group}" for _, label, _, _, group in columns]
    cells = [[r.name] for r in results]
    for key, _, spec, higher, group in columns:
        values = [_value(r, group, key) for r in results]
        present = [v for v in values if v is not None]
        best = (max if higher else min)(present) if len(present) > 1 else None
        for row, value in zip(cells, values, strict=True):
            text = "-" if value is None else format(value, spec)
            # equal when formatted counts as a tie: both are bold
            tie = best is not None and value is not None and text == format(best, spec)
            row.append(f"**{text}**" if tie else text)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    shown = {label: higher for _, label, _, higher, _ in columns}
    up = [label for label, higher in shown.items() if higher]
    down = [label for label, higher in shown.items() if not higher]
    lines += ["", f"Higher is better: {', '.join(up)}; lower is better: {', '.join(down)}."]
    if len(results) > 1:
        lines.append("Best of each column in bold.")
    lines += _count_notes(results, groups)
    return "\n".join(lines) + "\n"


def _count_notes(results: Sequence[MethodResult], groups: Sequence[str]) -> list[str]:
    """A note for every bucket whose files do not hold the same number of images (then the
    figures were not computed on the same pairs)."""
    notes = []
    for group in groups:
        counts = {r.name: r.group(group).get("images") for r in results}
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{name}: {'-' if n is None else n}" for name, n in counts.items())
            notes.append(f"Note: {group} holds different numbers of images ({shown}).")
    return notes


def _series(result: MethodResult, key: str) -> tuple[list[float], list[float]]:
    """(hole-ratio midpoints in percent, values) over the 10 % buckets that have a value."""
    xs, ys = [], []
    for label in result.buckets:
        match = _BUCKET_LABEL.fullmatch(label)
        value = _value(result, label, key)
        if match and value is not None:
            xs.append((int(match[1]) + int(match[2])) / 2)
            ys.append(value)
    return xs, ys


def plot_comparison(results: Sequence[MethodResult], path: str | os.PathLike[str]) -> Path:
    """PSNR, SSIM, LPIPS and FID (those some file has) against the hole ratio, a line per
    method, in one PNG written atomically. Matplotlib's Agg canvas, no pyplot state."""
    from matplotlib.figure import Figure

    panels = [
        (key, label)
        for key, label, _, _ in METRICS
        if key in PLOTTED and any(_series(r, key)[0] for r in results)
    ]
    if not panels:
        raise InputError("nothing to plot: no 10% bucket holds a PSNR in these metrics files")
    figure = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels, strict=True):
        for result in results:
            xs, ys = _series(result, key)
            if xs:
                ax.plot(xs, ys, marker="o", label=result.name)
        ax.set_title(label)
        ax.set_xlabel("hole ratio (%), bucket centre")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    path = Path(path)
    with writing(path):
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    path = Path(path)
    with writing(path):
        return atomic_write(path, lambda tmp: tmp.write_text(text))


__all__ = [
    "METRICS",
    "MethodResult",
    "comparison_table",
    "load_results",
    "plot_comparison",
    "read_metrics",
    "write_text",
]
