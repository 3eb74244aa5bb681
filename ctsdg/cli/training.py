"""``ctsdg masks``, ``ctsdg train`` and ``ctsdg demo``: making masks and models."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ctsdg.cli.options import (
    Subparsers,
    config_from_args,
    config_options,
    overwrite_options,
    progress_options,
    subcommand,
)


def _add_masks(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "masks",
        _run_masks,
        help="write a reproducible evaluation mask set (free-form masks per hole-ratio bucket)",
        description=(
            "Write free-form masks, N per hole-ratio bucket, as OUT_DIR/ratio_<lo>-<hi>/<n>.png "
            "(white = hole) with an index OUT_DIR/masks.json. The same seed gives the same files."
        ),
        parents=[overwrite_options("mask files already in OUT_DIR")],
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the masks into")
    parser.add_argument("--per-bucket", type=int, default=100, metavar="N", help="masks per bucket")
    parser.add_argument("--size", type=int, default=256, metavar="S", help="mask side in pixels")
    parser.add_argument(
        "--buckets",
        default="0-10,10-20,20-30,30-40,40-50,50-60,60-70,70-80,80-90,90-100",
        help="hole-ratio buckets in percent, each (lo, hi]",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed")


def _run_masks(args: argparse.Namespace) -> int:
    from ctsdg.data import parse_buckets, write_mask_set

    buckets = parse_buckets(args.buckets)
    entries = write_mask_set(
        args.out_dir,
        args.per_bucket,
        size=args.size,
        buckets=buckets,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {len(entries)} masks ({args.per_bucket} per bucket, {args.size}x{args.size}, "
        f"seed {args.seed}) to {args.out_dir}"
    )
    return 0


def _add_train(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "train",
        _run_train,
        help="train CTSDG (stage 1, finetune, or both; torchrun for several GPUs)",
        description=(
            "Train with the paper's two-stage schedule. Defaults, then --config FILE, then "
            "KEY=VALUE overrides (anywhere on the line). Under torchrun every process trains a "
            "shard of the data with DistributedDataParallel. SIGINT/SIGTERM save a checkpoint; "
            "resume=auto continues."
        ),
        parents=[
            config_options(),
            overwrite_options("a run already in save_path, deleting its checkpoints first"),
        ],
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="make every check the run makes (paths, data, weights, the run folder, the device) "
        "with the same errors, print the resolved config and the plan, and stop",
    )


def _run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.dry_run:
        from ctsdg.runtime import resolve_device
        from ctsdg.training.trainer import prepare

        print(config.to_yaml(), end="")
        device = resolve_device(config.device)  # what the run's process-group setup checks
        ready = prepare(config, overwrite=args.overwrite, fetch=False)
        start = ready.pretrained.path if ready.pretrained else config.pretrained or "random"
        print(
            f"# {len(ready.dataset)} training images; stages {ready.plan}; "
            f"resume from {ready.source.path if ready.source else None}; "
            f"starting weights {start}; "
            f"device {device}; the run folder {config.save_path} can be used"
        )
        return 0
    from ctsdg.training import train

    result = train(config, overwrite=args.overwrite)
    return 0 if result.status == "finished" else 130


def _add_demo(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "demo",
        _run_demo,
        help="train, evaluate and inpaint on the shipped demo photographs (CPU, minutes)",
        description=(
            "The whole pipeline on scikit-image's photographs: train a reduced-width CTSDG, "
            "evaluate it beside OpenCV's Telea and Navier-Stokes by hole-ratio bucket on "
            "held-out photographs, inpaint them, and write runs/demo/report.md and "
            "runs/demo/samples.png. A smoke run, not the paper's model."
        ),
        parents=[progress_options(), overwrite_options("a demo run already in save_path")],
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="demo config overrides (save_path=...)"
    )


def _run_demo(args: argparse.Namespace) -> int:
    from ctsdg.demo import run_demo

    run_demo(args.overrides, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_masks, _add_train, _add_demo]
