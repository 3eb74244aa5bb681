"""The ``ctsdg`` command line.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that does the work. Options that several commands share are declared once, in the
parent parsers below; defaults are shown by the help formatter. Errors are printed in one place,
`main`: a `CommandError` carries its own exit status. Heavy imports (torch, the models, data)
happen inside the run functions, so ``ctsdg --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ctsdg import __version__
from ctsdg.choices import PRECISIONS, STRATEGIES, STRUCTURES
from ctsdg.errors import CommandError, InputError

Runner = Callable[[argparse.Namespace], int | None]
Subparsers = argparse._SubParsersAction


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other ctsdg error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or action.help is None:
            return action.help
        return super()._get_help_string(action)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at setup
    (callers and tests swap it between in-process ``main()`` calls)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ctsdg",
        description="CTSDG image inpainting: train, evaluate, inpaint, export, serve, benchmark.",
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
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ctsdg: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:  # usage errors, --help and --version end here, with argparse's status
        args, extra = parser.parse_known_args(argv)
        # KEY=VALUE overrides may come anywhere on the line, also after a flag (argparse only
        # collects a positional list before the first option).
        if extra and hasattr(args, "overrides") and all(_is_override(a) for a in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    _configure_logging()
    run: Runner = args.run
    try:
        return int(run(args) or 0)
    except CommandError as err:
        print(f"ctsdg: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ctsdg: interrupted", file=sys.stderr)
        return 130


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and "=" in arg


# --------------------------------------------------------------------------- shared options
# Each returns a parent parser (argparse's ``parents=``) holding options several commands take.


def _parent() -> argparse.ArgumentParser:
    return _Parser(add_help=False)


def _checkpoint_options(*, required: bool = True) -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument(
        "--checkpoint", required=required, metavar="PATH", help="any checkpoint ctsdg reads"
    )
    return parent


def _model_input_options(*, structure_help: str = "structure-input convention"):
    """--size and --structure: the model's input side and the gray/edge convention."""
    parent = _parent()
    parent.add_argument(
        "--size",
        type=int,
        help="model input side (default: the training size a ctsdg checkpoint records, else 256)",
    )
    parent.add_argument(
        "--structure", choices=STRUCTURES, help=f"{structure_help} (default: the checkpoint's)"
    )
    return parent


def _runtime_options() -> argparse.ArgumentParser:
    """--device and --precision: where and in which arithmetic the generator runs."""
    parent = _parent()
    parent.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parent.add_argument("--precision", choices=PRECISIONS, default="fp32", help="arithmetic")
    return parent


def _config_options(
    *, required: bool = True, example: str = "batch_size=8"
) -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument(
        "--config",
        required=required,
        metavar="FILE",
        help="YAML config, or the name of a shipped one (celeba, places2, paris_streetview, demo)"
        + ("" if required else "; default: only the overrides"),
    )
    parent.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"config overrides, e.g. {example}"
    )
    return parent


def _progress_options() -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parent


def _overwrite_options(what: str) -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument("--overwrite", action="store_true", help=f"replace {what}")
    return parent


# --------------------------------------------------------------------------- subcommands
# Each _add_* registers one subcommand; keep them in the order of the README.

_COMMANDS: list[Callable[[Subparsers], None]] = []


def _command(add: Callable[[Subparsers], None]):
    _COMMANDS.append(add)
    return add


def _subcommand(
    sub: Subparsers,
    name: str,
    run: Runner,
    *,
    help: str,
    description: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help,
        description=description,
        parents=list(parents),
        formatter_class=_HelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


@_command
def _add_masks(sub: Subparsers) -> None:
    parser = _subcommand(
        sub,
        "masks",
        _run_masks,
        help="write a reproducible evaluation mask set (free-form masks per hole-ratio bucket)",
        description=(
            "Write free-form masks, N per hole-ratio bucket, as OUT_DIR/ratio_<lo>-<hi>/<n>.png "
            "(white = hole) with an index OUT_DIR/masks.json. The same seed gives the same files."
        ),
        parents=[_overwrite_options("mask files already in OUT_DIR")],
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


@_command
def _add_convert(sub: Subparsers) -> None:
    parser = _subcommand(
        sub,
        "convert",
        _run_convert,
        help="write this project's weights file (.safetensors) from any accepted checkpoint",
        description=(
            "Read SRC (a ctsdg run folder, training checkpoint or weights file, the authors' "
            "PyTorch checkpoint, or a MindSpore model-zoo .ckpt) and write DST as a safetensors "
            "weights file with its model config, training size and structure-input convention."
        ),
        parents=[_overwrite_options("an existing DST")],
    )
    parser.add_argument("source", metavar="SRC", help="checkpoint file or run folder")
    parser.add_argument("destination", metavar="DST", help="weights file to write (.safetensors)")
    parser.add_argument(
        "--structure",
        choices=STRUCTURES,
        help="override the recorded structure-input convention (default: the source's)",
    )


def _run_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ctsdg.checkpoints import convert

    if not args.destination.endswith(".safetensors"):
        raise InputError(f"{args.destination}: weights files end in .safetensors")
    if Path(args.destination).exists() and not args.overwrite:
        raise InputError(f"{args.destination} already exists; pass --overwrite to replace it")
    weights = convert(args.source, args.destination, structure=args.structure)
    networks = "generator" + (" + discriminator" if weights.discriminator else "")
    print(
        f"wrote {args.destination}: {networks} from {weights.format} checkpoint {weights.path} "
        f"(width {weights.model.width}, align_corners {weights.model.align_corners}, "
        f"structure inputs '{weights.structure}', trained at {weights.trained_size}x"
        f"{weights.trained_size})"
    )
    return 0


@_command
def _add_bench(sub: Subparsers) -> None:
    from ctsdg import benchmarks

    parser = _subcommand(
        sub,
        "bench",
        benchmarks.run,
        help="benchmarks: model, data, train, infer, serve (minimum of several runs; --json)",
        description="Speed measurements; each target prints a line, or JSON with --json.",
    )
    benchmarks.add_subcommands(parser)


def _load_config(args: argparse.Namespace):
    from ctsdg.config import load_config, resolve_config_path

    path = resolve_config_path(args.config) if args.config else None
    return load_config(path, args.overrides)


@_command
def _add_train(sub: Subparsers) -> None:
    parser = _subcommand(
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
            _config_options(),
            _overwrite_options("a run already in save_path, deleting its checkpoints first"),
        ],
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the config, check the data, print the plan, and stop",
    )


def _run_train(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.dry_run:
        from ctsdg.data import dataset_from_config
        from ctsdg.training.checkpoint import resume_path
        from ctsdg.training.schedule import stage_plan

        print(config.to_yaml(), end="")
        train_set = dataset_from_config(config, "train")
        print(
            f"# {len(train_set)} training images; stages {stage_plan(config)}; "
            f"resume from {resume_path(config)}"
        )
        return 0
    from ctsdg.training import train

    result = train(config, overwrite=args.overwrite)
    return 0 if result.status == "finished" else 130


@_command
def _add_eval(sub: Subparsers) -> None:
    _subcommand(
        sub,
        "eval",
        _run_eval,
        help="PSNR / SSIM / L1 (LPIPS) per hole-ratio bucket, as papers report; OpenCV baselines",
        description=(
            "Evaluate a checkpoint (method=ctsdg) or an OpenCV baseline (method=telea or ns) on "
            "the evaluation split: every image scored on its composite and bucketed by its own "
            "hole ratio. Prints the MindSpore port's PSNR/SSIM block and a table of 10%% "
            "buckets; writes metrics.json and metrics.md into output_path (composites too), or "
            "beside the checkpoint. Structure inputs follow the checkpoint unless structure= is "
            "given here. Under torchrun the images are shared out over the processes."
        ),
        parents=[
            _config_options(
                required=False, example="checkpoint_path=run/ dataset=demo test_batch_size=8"
            ),
            _progress_options(),
        ],
    )


def _run_eval(args: argparse.Namespace) -> int:
    from ctsdg.evaluation import ReportWriteError, evaluate, full_table, seed_block

    config = _load_config(args)
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
        result = evaluate(config, structure=explicit, progress=not args.no_progress)
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


@_command
def _add_inpaint(sub: Subparsers) -> None:
    parser = _subcommand(
        sub,
        "inpaint",
        _run_inpaint,
        help="inpaint images of any size: IMAGE MASK -o OUT (files or folders)",
        description=(
            "Fill the white (hole) pixels of MASK in IMAGE and write OUT; every other pixel is "
            "kept as it is (exactly, in PNG, BMP, TIFF and WebP outputs). IMAGE and MASK may be "
            "folders (paired by relative path without extension, e.g. a/1.jpg with a/1.png), "
            "or a folder of images with one mask file. OUT keeps the input's size, alpha, mode "
            "and bit depth where its format can store them (a warning says when not); its "
            "extension picks the format (folders keep each input's name and format). Existing "
            "files are not replaced without --overwrite. Folder jobs go on past bad pairs and "
            "end with a summary (exit 1). Under torchrun the images are shared out over the "
            "processes."
        ),
        parents=[
            _checkpoint_options(),
            _runtime_options(),
            _model_input_options(),
            _overwrite_options("existing output files, the input itself included"),
        ],
    )
    parser.add_argument("image", metavar="IMAGE", help="image file or folder")
    parser.add_argument("mask", metavar="MASK", help="mask file or folder (white = hole)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="file or folder")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="resize the whole image to the model's size, or crop around each hole region; "
        "auto: crop for images over twice the model's size with local holes",
    )


def _run_inpaint(args: argparse.Namespace) -> int:
    from ctsdg.jobs import inpaint_command

    return inpaint_command(
        args.image,
        args.mask,
        args.output,
        args.checkpoint,
        device=args.device,
        strategy=args.strategy,
        size=args.size,
        structure=args.structure,
        precision=args.precision,
        overwrite=args.overwrite,
    )


@_command
def _add_export(sub: Subparsers) -> None:
    parser = _subcommand(
        sub,
        "export",
        _run_export,
        help="write the generator as ONNX or TorchScript and check it against PyTorch",
        description=(
            "Export a checkpoint's generator (inputs image, structure, mask; outputs output, "
            "projected_image, projected_edge; dynamic batch), record its config and "
            "structure-input convention in the file, then run it beside PyTorch on random "
            "inputs and print the largest difference (exit status 1 above 1e-4)."
        ),
        parents=[
            _checkpoint_options(),
            _model_input_options(structure_help="record this structure-input convention"),
            _overwrite_options("an existing FILE"),
        ],
    )
    parser.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        help="default: from the extension of FILE (.onnx, else torchscript)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset")


def _run_export(args: argparse.Namespace) -> int:
    from ctsdg.export import export

    fmt = args.format or ("onnx" if args.output.endswith(".onnx") else "torchscript")
    result = export(
        args.checkpoint,
        args.output,
        fmt,
        size=args.size,
        opset=args.opset,
        structure=args.structure,
        overwrite=args.overwrite,
    )
    batches = " and ".join(str(b) for b in result.batch_sizes)
    print(
        f"wrote {result.path} ({fmt}, {result.size}x{result.size}, structure inputs "
        f"'{result.metadata['structure']}'); max |exported - PyTorch| = "
        f"{result.max_abs_diff:.3g} at batch {batches}"
    )
    return 0


@_command
def _add_demo(sub: Subparsers) -> None:
    parser = _subcommand(
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
        parents=[_progress_options(), _overwrite_options("a demo run already in save_path")],
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="demo config overrides (save_path=...)"
    )


def _run_demo(args: argparse.Namespace) -> int:
    from ctsdg.demo import run_demo

    run_demo(args.overrides, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse ``type`` that accepts positive numbers of ``kind`` only."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0 to 65535, got {value}")
    return value


@_command
def _add_serve(sub: Subparsers) -> None:
    parser = _subcommand(
        sub,
        "serve",
        _run_serve,
        help="the inpainting web page and HTTP API (http://127.0.0.1:8080/)",
        description=(
            "Serve a checkpoint: a page to paint over what should go and inpaint it, and the "
            "HTTP API under /api/v1 (docs/serving.md). Without --checkpoint, serves runs/demo "
            "(what 'make demo' writes). SIGTERM or Ctrl-C stop it after the requests in flight."
        ),
        parents=[
            _checkpoint_options(required=False),
            _runtime_options(),
            _model_input_options(),
        ],
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=_port, default=8080, help="port (0: any free one)")
    parser.add_argument(
        "--max-upload-mb", type=_positive(float), default=25.0, help="largest request body"
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive(int),
        default=40_000_000,
        help="largest image, width x height",
    )
    parser.add_argument(
        "--max-queue", type=_positive(int), default=8, help="requests queued or running; more 503"
    )
    parser.add_argument(
        "--timeout", type=_positive(float), default=120.0, help="seconds per request before 503"
    )
    parser.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on /api/ (default: $CTSDG_TOKEN, if set)",
    )


def _run_serve(args: argparse.Namespace) -> int:
    import os

    from ctsdg.serve.server import serve
    from ctsdg.serve.uploads import Limits

    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        token=args.token or os.environ.get("CTSDG_TOKEN") or None,
    )
    return serve(
        args.checkpoint,
        host=args.host,
        port=args.port,
        device=args.device,
        precision=args.precision,
        size=args.size,
        structure=args.structure,
        limits=limits,
    )
