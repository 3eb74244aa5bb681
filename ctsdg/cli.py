"""The ``ctsdg`` command line.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that does the work. Heavy imports (torch, the models, data) happen inside the run
functions, so ``ctsdg --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ctsdg import __version__
from ctsdg.errors import InputError

Runner = Callable[[argparse.Namespace], int | None]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctsdg",
        description="CTSDG image inpainting: train, evaluate, inpaint, export, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"ctsdg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def _configure_logging() -> None:
    """ctsdg's own warnings and notes on stderr, one line each."""
    logger = logging.getLogger("ctsdg")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ctsdg: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging()
    run: Runner = args.run
    try:
        return int(run(args) or 0)
    except InputError as err:
        print(f"ctsdg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ctsdg: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- subcommands
# Each _add_* registers one subcommand; keep them in the order of the README.

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(add: Callable[[argparse._SubParsersAction], None]):
    _COMMANDS.append(add)
    return add


@_command
def _add_masks(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "masks",
        help="write a reproducible evaluation mask set (free-form masks per hole-ratio bucket)",
        description=(
            "Write free-form masks, N per hole-ratio bucket, as OUT_DIR/ratio_<lo>-<hi>/<n>.png "
            "(white = hole) with an index OUT_DIR/masks.json. The same seed gives the same files."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the masks into")
    parser.add_argument(
        "--per-bucket", type=int, default=100, metavar="N", help="masks per bucket (default 100)"
    )
    parser.add_argument(
        "--size", type=int, default=256, metavar="S", help="mask side in pixels (default 256)"
    )
    parser.add_argument(
        "--buckets",
        default="0-10,10-20,20-30,30-40,40-50,50-60,60-70,70-80,80-90,90-100",
        help="hole-ratio buckets in percent, each (lo, hi] (default: the ten 10%% buckets)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed (default 0)")
    parser.set_defaults(run=_run_masks)


def _run_masks(args: argparse.Namespace) -> int:
    from ctsdg.data import parse_buckets, write_mask_set

    buckets = parse_buckets(args.buckets)
    entries = write_mask_set(
        args.out_dir, args.per_bucket, size=args.size, buckets=buckets, seed=args.seed
    )
    print(
        f"wrote {len(entries)} masks ({args.per_bucket} per bucket, {args.size}x{args.size}, "
        f"seed {args.seed}) to {args.out_dir}"
    )
    return 0


@_command
def _add_convert(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="write this project's weights file (.safetensors) from any accepted checkpoint",
        description=(
            "Read SRC (a ctsdg run folder, training checkpoint or weights file, the authors' "
            "PyTorch checkpoint, or a MindSpore model-zoo .ckpt) and write DST as a safetensors "
            "weights file with its model config and structure-input convention."
        ),
    )
    parser.add_argument("source", metavar="SRC", help="checkpoint file or run folder")
    parser.add_argument("destination", metavar="DST", help="weights file to write (.safetensors)")
    parser.add_argument(
        "--structure",
        choices=("authors", "correct"),
        help="override the recorded structure-input convention (default: the source's)",
    )
    parser.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from ctsdg.checkpoints import convert

    if not args.destination.endswith(".safetensors"):
        raise InputError(f"{args.destination}: weights files end in .safetensors")
    weights = convert(args.source, args.destination, structure=args.structure)
    networks = "generator" + (" + discriminator" if weights.discriminator else "")
    print(
        f"wrote {args.destination}: {networks} from {weights.format} checkpoint {weights.path} "
        f"(width {weights.model.width}, align_corners {weights.model.align_corners}, "
        f"structure inputs '{weights.structure}')"
    )
    return 0


@_command
def _add_bench(sub: argparse._SubParsersAction) -> None:
    from ctsdg import benchmarks

    parser = sub.add_parser(
        "bench",
        help="benchmarks: model, data, train, infer (minimum of several runs; --json)",
        description="Speed measurements; each target prints a line, or JSON with --json.",
    )
    benchmarks.add_subcommands(parser)
    parser.set_defaults(run=benchmarks.run)


def _add_config_arguments(
    parser: argparse.ArgumentParser, required: bool = True, example: str = "batch_size=8"
) -> None:
    parser.add_argument(
        "--config",
        required=required,
        metavar="FILE",
        help="YAML config, or the name of a shipped one (celeba, places2, paris_streetview, demo)"
        + ("" if required else "; default: only the overrides"),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"config overrides, e.g. {example}"
    )


def _load_config(args: argparse.Namespace):
    from ctsdg.config import load_config, resolve_config_path

    return load_config(resolve_config_path(args.config), args.overrides)


@_command
def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train CTSDG (stage 1, finetune, or both; torchrun for several GPUs)",
        description=(
            "Train with the seed's two-stage schedule. Defaults, then --config FILE, then "
            "KEY=VALUE overrides. Under torchrun every process trains a shard of the data with "
            "DistributedDataParallel. SIGINT/SIGTERM save a checkpoint; resume=auto continues."
        ),
    )
    _add_config_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the config, check the data, print the plan, and stop",
    )
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.dry_run:
        from ctsdg.data import dataset_from_config
        from ctsdg.training.trainer import resume_path, stage_plan

        print(config.to_yaml(), end="")
        train_set = dataset_from_config(config, "train")
        print(f"# {len(train_set)} training images; stages {stage_plan(config)}; "
              f"resume from {resume_path(config)}")  # fmt: skip
        return 0
    from ctsdg.training import NonFiniteLossError, train

    try:
        result = train(config)
    except NonFiniteLossError as err:
        print(f"ctsdg: error: {err}", file=sys.stderr)
        return 1
    return 0 if result.status == "finished" else 130


@_command
def _add_eval(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="PSNR / SSIM / L1 (LPIPS) per hole-ratio bucket, as papers report; OpenCV baselines",
        description=(
            "Evaluate a checkpoint (method=ctsdg) or an OpenCV baseline (method=telea or ns) on "
            "the evaluation split: every image scored on its composite and bucketed by its own "
            "hole ratio. Prints the seed's PSNR/SSIM block and a table of 10%% buckets; writes "
            "metrics.json and metrics.md into output_path (composites too), or beside the "
            "checkpoint. Structure inputs follow the checkpoint unless structure= is given here."
        ),
    )
    _add_config_arguments(
        parser, required=False, example="checkpoint_path=run/ dataset=demo test_batch_size=8"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_backend_argument(parser, "precision is the config key precision=fp32|bf16|fp16")
    parser.set_defaults(run=_run_eval)


def _add_backend_argument(parser: argparse.ArgumentParser, note: str) -> None:
    parser.add_argument(
        "--backend",
        choices=("eager", "compiled", "onnxruntime"),
        default="eager",
        help="how the generator runs (ctsdg/backends.py): PyTorch eager (default), "
        "torch.compile, or ONNX Runtime (fp32; the exported graph is cached in "
        f"$CTSDG_CACHE or ~/.cache/ctsdg); {note}",
    )


def _run_eval(args: argparse.Namespace) -> int:
    from ctsdg.config import load_config, parse_overrides, resolve_config_path
    from ctsdg.evaluation import evaluate, full_table, seed_block

    overrides = parse_overrides(args.overrides)
    path = resolve_config_path(args.config) if args.config else None
    config = load_config(path, overrides)
    # Only a structure= typed on this command line overrides the checkpoint's convention; a
    # config file's structure key says what new training uses.
    explicit = config.structure if "structure" in overrides else None
    if explicit is None and path is not None and config.method == "ctsdg":
        import yaml

        if "structure" in (yaml.safe_load(path.read_text()) or {}):
            print(f"note: {path}'s structure key (for training) is not used; the checkpoint's "
                  "convention is (add structure=correct|authors here to force one)")  # fmt: skip
    result = evaluate(
        config, structure=explicit, progress=not args.no_progress, backend=args.backend
    )
    print(seed_block(result))
    print()
    print(full_table(result))
    print(f"wrote {result.output_dir / 'metrics.json'} and metrics.md")
    return 0


@_command
def _add_inpaint(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inpaint",
        help="inpaint images of any size: IMAGE MASK -o OUT (files or folders)",
        description=(
            "Fill the white (hole) pixels of MASK in IMAGE and write OUT; every other pixel is "
            "kept as it is. IMAGE and MASK may be folders (paired by relative path without "
            "extension, e.g. a/1.jpg with a/1.png), or a folder of images with one mask file. "
            "OUT keeps the input's size, mode and alpha; its extension picks the format "
            "(folders keep each input's name and format)."
        ),
    )
    parser.add_argument("image", metavar="IMAGE", help="image file or folder")
    parser.add_argument("mask", metavar="MASK", help="mask file or folder (white = hole)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="file or folder")
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="any checkpoint ctsdg reads"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--strategy",
        choices=("auto", "resize", "crop"),
        default="auto",
        help="resize the whole image to the model's size, or crop around each hole region; "
        "auto: crop for images over twice the model's size with local holes (default)",
    )
    parser.add_argument(
        "--size",
        type=int,
        help="model input side (default: the training size a ctsdg checkpoint records, else 256)",
    )
    parser.add_argument(
        "--structure",
        choices=("authors", "correct"),
        help="structure-input convention (default: the checkpoint's)",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="default fp32"
    )
    _add_backend_argument(parser, "bf16 and fp16 with eager or compiled")
    parser.set_defaults(run=_run_inpaint)


def _run_inpaint(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    from ctsdg.inference import Inpainter, plan_jobs, run_jobs
    from ctsdg.runtime import tune_cpu_allocator

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"ctsdg: warning: {message}", file=sys.stderr)

    tune_cpu_allocator()
    with warnings.catch_warnings():
        warnings.showwarning = show
        jobs = plan_jobs(Path(args.image), Path(args.mask), Path(args.output))
        inpainter = Inpainter.from_checkpoint(
            args.checkpoint, args.device, args.strategy, size=args.size,
            structure=args.structure, precision=args.precision, backend=args.backend,
        )  # fmt: skip
        print(
            f"inpainting {len(jobs)} image(s) with {args.checkpoint} on {inpainter.device} "
            f"({inpainter.size}x{inpainter.size} model input, '{inpainter.structure}' structure "
            f"inputs, strategy {args.strategy}, {args.backend} {args.precision})"
        )
        for job, had_holes in run_jobs(inpainter, jobs):
            if len(jobs) == 1 or not had_holes:
                note = "" if had_holes else " (empty mask: copied unchanged)"
                print(f"wrote {job.output}{note}")
    if len(jobs) > 1:
        print(f"wrote {len(jobs)} images under {args.output}")
    return 0


@_command
def _add_export(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="write the generator as ONNX or TorchScript and check it against PyTorch",
        description=(
            "Export a checkpoint's generator (inputs image, structure, mask; outputs output, "
            "projected_image, projected_edge; dynamic batch), record its config and "
            "structure-input convention in the file, then run it beside PyTorch on random "
            "inputs and print the largest difference (non-zero exit above 1e-4)."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="any checkpoint ctsdg reads"
    )
    parser.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        help="default: from the extension of FILE (.onnx, else torchscript)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    parser.add_argument(
        "--size",
        type=int,
        help="input side (default: the training size a ctsdg checkpoint records, else 256)",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--structure",
        choices=("authors", "correct"),
        help="record this structure-input convention (default: the checkpoint's)",
    )
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from ctsdg.export import ExportMismatchError, export

    fmt = args.format or ("onnx" if args.output.endswith(".onnx") else "torchscript")
    try:
        result = export(
            args.checkpoint, args.output, fmt, size=args.size, opset=args.opset,
            structure=args.structure,
        )  # fmt: skip
    except ExportMismatchError as err:
        print(f"ctsdg: error: {err}", file=sys.stderr)
        return 1
    batches = " and ".join(str(b) for b in result.batch_sizes)
    print(
        f"wrote {result.path} ({fmt}, {result.size}x{result.size}, structure inputs "
        f"'{result.metadata['structure']}'); max |exported - PyTorch| = "
        f"{result.max_abs_diff:.3g} at batch {batches}"
    )
    return 0


@_command
def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="train, evaluate and inpaint on the shipped demo photographs (CPU, minutes)",
        description=(
            "The whole pipeline on scikit-image's photographs: train a reduced-width CTSDG, "
            "evaluate it beside OpenCV's Telea and Navier-Stokes by hole-ratio bucket on "
            "held-out photographs, inpaint them, and write runs/demo/report.md and "
            "runs/demo/samples.png. A smoke run, not the paper's model."
        ),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="demo config overrides (save_path=...)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ctsdg.demo import run_demo

    run_demo(args.overrides, progress=not args.no_progress)
    return 0
