"""``ctsdg compare``: several evaluations side by side (`ctsdg.comparison`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ctsdg.cli.options import Subparsers, overwrite_options, subcommand


def _add_compare(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "compare",
        _run_compare,
        help="several ctsdg eval results as one paper-style table (Markdown) and one plot",
        description=(
            "Read the metrics.json files ctsdg eval wrote (or their folders) and print one "
            "Markdown table: a row per method, PSNR / SSIM / L1 / LPIPS / FID (P-IDS / U-IDS) "
            "per hole-ratio bucket, the columns that some file has; the best of each in bold. "
            "--plot draws PSNR, SSIM, LPIPS and FID against the hole ratio, a line per method."
        ),
        parents=[overwrite_options("the table and plot files")],
    )
    parser.add_argument(
        "metrics", nargs="+", metavar="METRICS", help="metrics.json files (or folders holding one)"
    )
    parser.add_argument("-o", "--output", metavar="TABLE.md", help="also write the table here")
    parser.add_argument("--plot", metavar="PLOT.png", help="write the figure here")
    parser.add_argument(
        "--buckets",
        choices=("seed", "10"),
        default="seed",
        help="columns: the seed's 0-20/20-40/40-60%% groups, or the 10%% buckets; then all",
    )
    parser.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="row names, one per file in order (default: the method each file records)",
    )


def _run_compare(args: argparse.Namespace) -> int:
    from ctsdg.comparison import (
        comparison_table,
        load_results,
        plot_comparison,
        write_text,
    )
    from ctsdg.fileio import check_overwrite

    for path in (args.output, args.plot):
        if path:
            check_overwrite(path, args.overwrite)
    results = load_results(args.metrics, args.name)
    table = comparison_table(results, args.buckets)
    print(table, end="")
    if args.output:
        print(f"wrote {write_text(args.output, table)}")
    if args.plot:
        print(f"wrote {plot_comparison(results, args.plot)}")
    return 0


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_compare]
