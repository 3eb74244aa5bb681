"""Markdown table rows from ``ctsdg bench ... --json`` output: ``python -m ctsdg.benchmarks.table``.

Reads JSON lines (any mix of ``bench model``, ``bench train`` and ``bench infer`` objects) on
stdin and prints, per kind, a Markdown table in the layout of docs/benchmarks.md, so figures
taken on another machine (``make gpu-check``) can be pasted as they are. Lines that are not
JSON objects are ignored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any


def _kind(row: dict[str, Any]) -> str | None:
    if row.get("target") == "infer":
        return "infer"
    if "step_ms" in row:
        return "train"
    if "forward_ms" in row:
        return "model"
    return None


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def tables(rows: Iterable[dict[str, Any]]) -> str:
    """The Markdown tables for ``rows`` (one per kind present, in model, train, infer order)."""
    kinds: dict[str, list[dict[str, Any]]] = {"model": [], "train": [], "infer": []}
    for row in rows:
        kind = _kind(row)
        if kind:
            kinds[kind].append(row)
    out: list[str] = []
    if kinds["model"]:
        out += ["| device | size | forward ms (batch 1) | forward + backward ms (batch 2) "
                "| path | path forward ms | x authors' formulation |",
                "|---|---:|---:|---:|---|---:|---:|"]  # fmt: skip
        for r in kinds["model"]:
            base = f"| {r['device_name']} | {r['size']} | {r['forward_ms']} | "
            base += f"{r['forward_backward_ms']} |"
            paths = r.get("forward_ms_by_path") or {"-": None}
            for name, ms in paths.items():
                ratio = (r.get("speedup_by_path") or {}).get(name)
                out.append(f"{base} {name} | {_fmt(ms)} | {_fmt(ratio)} |")
    if kinds["train"]:
        out += ["", "| device | batch | size | precision | channels-last | compile | ms / step "
                "| images / s |", "|---|---:|---:|---|---|---|---:|---:|"]  # fmt: skip
        for r in kinds["train"]:
            out.append(
                f"| {r['device']} | {r['batch_size']} | {r['size']} | {r['precision']} | "
                f"{r['channels_last']} | {r['compile']} | {r['step_ms']} | {r['images_per_s']} |"
            )
    if kinds["infer"]:
        out += ["", "| device | backend | precision | size | ms / image, batch 1 | images / s, "
                "batch B | peak MiB, batch 1 | peak MiB, batch B | status |",
                "|---|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in kinds["infer"]:
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error')}"
            out.append(
                f"| {r.get('device_name', r['device'])} | {r['backend']} | {r['precision']} | "
                f"{r['size']} | {_fmt(r.get('batch1_ms'))} | "
                f"{_fmt(r.get('batch_images_per_s'))} (B={r['batch']}) | "
                f"{_fmt(r.get('peak_mb'))} | {_fmt(r.get('batch_peak_mb'))} | {status} |"
            )
    return "\n".join(out).strip("\n")


def main() -> int:
    rows = []
    for line in sys.stdin:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    print(tables(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
