"""``ctsdg eval``, ``ctsdg fid`` and ``ctsdg bench``: measuring models, as papers report and
for speed."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from ctsdg.cli.options import (
    Subparsers,
    config_from_args,
    config_options,
    overwrite_options,
    positive,
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
        help="benchmarks: model, data, train, infer, serve, eval (minimum of several runs; --json)",
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
            overwrite_options("the results an output_path already holds"),
        ],
    )


def _add_fid(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "fid",
        _run_fid,
        help="FID between two folders of images or .npz statistics (pytorch-fid's convention)",
        description=(
            "FID as pytorch-fid computes it: InceptionV3 (the TF 2015-12-05 graph), images "
            "bilinearly resized to 299x299, float64 statistics, the sqrtm Frechet distance. Each "
            "PATH is a folder of images (searched recursively) or an .npz of mu and sigma. With "
            "--save-stats DIR OUT.npz, writes DIR's statistics instead."
        ),
        parents=[progress_options()],
    )
    parser.add_argument("paths", nargs=2, metavar="PATH", help="two folders or .npz files")
    parser.add_argument(
        "--save-stats", action="store_true", help="write PATH1's statistics to PATH2 (.npz)"
    )
    parser.add_argument(
        "--weights",
        default="auto",
        metavar="FILE|auto",
        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or torch-fidelity's "
        "weights-inception-2015-12-05-6726825d.pth); auto: the standard file in torch.hub's cache",
    )
    parser.add_argument("--batch-size", type=positive(int), default=50, help="images per forward")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="one JSON object: fid, image counts")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.npz")


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
            config,
            structure=explicit,
            progress=not args.no_progress,
            backend=args.backend,
            overwrite=args.overwrite,
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


def _run_fid(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ctsdg.fid import (
        InceptionFeatures,
        check_path,
        fid_of,
        folder_statistics,
        write_stats,
    )
    from ctsdg.runtime import resolve_device
    from ctsdg.weights import resolve

    first, second = (Path(p) for p in args.paths)
    progress = not args.no_progress

    @functools.cache  # built only when a folder needs it, and once for both
    def extractor() -> InceptionFeatures:
        weights = resolve("fid_inception", args.weights)
        return InceptionFeatures.from_file(weights, resolve_device(args.device), args.batch_size)

    if args.save_stats:
        if second.suffix.lower() != ".npz":
            raise InputError(f"{second}: --save-stats writes an .npz file; name it OUT.npz")
        if second.exists() and not args.overwrite:
            raise InputError(f"{second} exists; pass --overwrite to replace it")
        check_path(first)
        stats = folder_statistics(first, extractor(), progress=progress)
        write_stats(second, stats, overwrite=args.overwrite)
        print(f"wrote {second} ({stats.images} images)")
        return 0
    value, stats = fid_of((first, second), extractor, progress=progress)
    if args.json:
        print(json.dumps({"fid": value, "images": [s.images for s in stats]}))
    else:
        print(f"FID: {value}")
    return 0


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_eval, _add_fid, _add_bench]
