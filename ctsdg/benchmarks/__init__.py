"""Benchmarks behind ``ctsdg bench TARGET``: model, data, train, infer, serve, eval.

This module only declares the command-line options (it imports nothing heavy); each target's
module does the measuring and printing in its ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib

from ctsdg.choices import PRECISIONS, STRUCTURES
from ctsdg.cli.options import HelpFormatter


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="all", help="all (CPU, and CUDA when present), cpu, cuda or cuda:N"
    )
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--width", type=int, default=64, help="base width")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the minimum is kept")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time the authors' formulation (full-width masks, per-image attention)",
    )
    parser.add_argument(
        "--paths",
        default="eager:fp32,onnxruntime:fp32,eager:bf16",
        help="with --reference: BACKEND:PRECISION inference paths timed interleaved with the "
        "authors' formulation, batch-1 forward ('' for none)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per device")


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=200, help="samples to time")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument(
        "--structure",
        choices=STRUCTURES,
        default="correct",
        help="structure-input convention",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=6, help="batch size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--width", type=int, default=64, help="base width")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator")
    parser.add_argument(
        "--reference", action="store_true", help="the generator's reference formulation instead"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations (minimum kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_infer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="all", help="all (CPU, and CUDA when present), cpu, cuda or cuda:N"
    )
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--width", type=int, default=64, help="base width")
    parser.add_argument("--batch", type=int, default=8, help="throughput batch (0: batch 1 only)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the minimum is kept")
    parser.add_argument(
        "--backends",
        default="eager,compiled,onnxruntime",
        help="comma list of eager, compiled (torch.compile), onnxruntime",
    )
    parser.add_argument(
        "--precision",
        default="fp32,bf16,fp16",
        help="comma list of fp32, bf16, fp16 (what cannot run is reported skipped)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure every configuration in this process (faster; CPU peak memory only for "
        "the first)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--width", type=int, default=64, help="base width")
    parser.add_argument(
        "--checkpoint", metavar="PATH", help="serve this checkpoint (default: random weights)"
    )
    parser.add_argument("--clients", default="1,4", help="comma list of concurrent clients")
    parser.add_argument("--requests", type=int, default=15, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of infer + load")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes per round")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=16, help="demo images evaluated")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--batch", type=int, default=8, help="test_batch_size")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of both; minimum kept")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


# target -> (help, option declarer, module with run(args))
TARGETS = {
    "model": (
        "generator forward (batch 1) and forward+backward (batch 2) time",
        _add_model,
        "ctsdg.benchmarks.model",
    ),
    "data": ("data-loading samples/s per worker (demo data, Canny included)", _add_data,
             "ctsdg.benchmarks.data"),
    "train": ("one training iteration (G and D steps, VGG losses): step_ms", _add_train,
              "ctsdg.benchmarks.train"),
    "infer": ("inference ms/image (batch 1), images/s (batch 8) and peak memory: eager, "
              "torch.compile, ONNX Runtime; fp32, bf16, fp16", _add_infer,
              "ctsdg.benchmarks.infer"),
    "serve": ("ctsdg serve under N concurrent clients: requests/s, p50/p95 ms, errors, server "
              "RSS, beside the generator's batch1_ms", _add_serve, "ctsdg.benchmarks.serve"),
    "eval": ("ctsdg eval with and without LPIPS + FID, interleaved: seconds and their ratio",
             _add_eval, "ctsdg.benchmarks.evaluation"),
}  # fmt: skip


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """Register ``model``, ``data``, ... under ``ctsdg bench`` (no target: the list of them)."""
    sub = parser.add_subparsers(dest="target", metavar="TARGET")
    for name, (help_text, declare, _) in TARGETS.items():
        declare(
            sub.add_parser(
                name, help=help_text, description=help_text, formatter_class=HelpFormatter
            )
        )


def target_list() -> str:
    """What plain ``ctsdg bench`` prints: every target and what it measures."""
    width = max(map(len, TARGETS))
    lines = [f"  {name:<{width}}  {help_text}" for name, (help_text, _, _) in TARGETS.items()]
    return "\n".join(
        [
            "ctsdg bench TARGET: each target runs for one to several minutes on a CPU.",
            *lines,
            "Options of a target: ctsdg bench TARGET --help (e.g. ctsdg bench infer --help).",
        ]
    )


def run(args: argparse.Namespace) -> int:
    if args.target is None:  # plain `ctsdg bench`: what it can do, not a sweep
        print(target_list())
        return 0
    return importlib.import_module(TARGETS[args.target][2]).run(args)
