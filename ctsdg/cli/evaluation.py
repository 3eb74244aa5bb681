"""``ctsdg eval`` and ``ctsdg bench``: measuring models, as papers report and for speed."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ctsdg.cli.options import (
    Subparsers,
    config_from_args,
    config_options,
    progress_options,
    runtime_options,
    runtime_overrides,
    subcommand,
)
from ctsdg.errors import InputError


def _add_bench(sub: Subparsers) -> None:
    from ctsdg import benchmarks

    parser = subcommand(
        sub,
        "bench",
        benchmarks.run,
        help="benchmarks: model, data, train, infer, serve (minimum of several runs; --json)",
        description="Speed measurements; each target prints a line, or JSON with --json.",
    )
    benchmarks.add_subcommands(parser)


def _add_eval(sub: Subparsers) -> None:
    subcommand(
        sub,
        "eval",
        _run_eval,
        help="PSNR / SSIM / L1 (LPIPS) per hole-ratio bucket, as papers report; OpenCV baselines",
        description=(
            "Evaluate a checkpoint (method=ctsdg) or an OpenCV baseline (method=telea or ns) on "
            "the evaluation split: every image scored on its composite and bucketed by its own "
            "hole ratio. Prints the MindSpore port's PSNR/SSIM block and a table of 10% "
            "buckets; writes metrics.json and metrics.md into output_path (composites too), or "
            "beside the checkpoint. Structure inputs follow the checkpoint unless structure= is "
            "given here. Under torchrun the images are shared out over the processes."
        ),
        parents=[
            config_options(
                required=False, example="checkpoint_path=run/ dataset=demo test_batch_size=8"
            ),
            progress_options(),
            runtime_options(config_keys=True),
        ],
    )


def _run_eval(args: argparse.Namespace) -> int:
    from ctsdg.evaluation import ReportWriteError, evaluate, full_table, seed_block

    args.overrides = [*args.overrides, *runtime_overrides(args)]
    config = config_from_args(args)
    # Only a structure= typed on this command line overrides the checkpoint's convention; a
    # config file's structure key says what new training uses.
    origin = config.origin("structure")
    explicit = config.structure if origin == "override" else None
    if origin == "file" and config.method == "ctsdg":
        print(
            f"note: {config.file}'s structure key (for training) is not used; the checkpoint's "
            "convention is (add structure=correct|authors here to force one)"
        )
    # eval builds the network from the checkpoint: a width / align_corners given here would be
    # silently ignored, so say so instead
    ignored = [k for k in ("width", "align_corners") if config.origin(k) == "override"]
    if ignored:
        raise InputError(
            f"{ignored[0]}=: eval takes the model's {' and '.join(ignored)} from the checkpoint "
            "(checkpoint_path); drop the override"
        )
    try:
        result = evaluate(
            config, structure=explicit, progress=not args.no_progress, backend=args.backend
        )
    except ReportWriteError as err:  # the figures first, then the one-line error
        print(seed_block(err.evaluation))
        print()
        print(full_table(err.evaluation))
        raise
    if result.output_dir is None:  # a torchrun rank other than 0: rank 0 prints and writes
        return 0
    print(seed_block(result))
    print()
    print(full_table(result))
    print(f"wrote {result.output_dir / 'metrics.json'} and metrics.md")
    return 0


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_eval, _add_bench]
