"""``ctsdg convert``, ``inpaint``, ``export`` and ``serve``: using a trained model."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ctsdg.choices import STRATEGIES, STRUCTURES
from ctsdg.cli.options import (
    Subparsers,
    checkpoint_options,
    model_input_options,
    original_options,
    overwrite_options,
    port,
    positive,
    runtime_options,
    subcommand,
)
from ctsdg.errors import InputError


def _add_convert(sub: Subparsers) -> None:
    parser = subcommand(
        sub,
        "convert",
        _run_convert,
        help="write this project's weights file (.safetensors) from any accepted checkpoint",
        description=(
            "Read SRC (a ctsdg run folder, training checkpoint or weights file, the authors' "
            "PyTorch checkpoint, or a MindSpore model-zoo .ckpt) and write DST as a safetensors "
            "weights file with its model config, training size and structure-input convention."
        ),
        parents=[overwrite_options("an existing DST")],
    )
    parser.add_argument("source", metavar="SRC", help="checkpoint file or run folder")
    parser.add_argument("destination", metavar="DST", help="weights file to write (.safetensors)")
    parser.add_argument(
        "--structure",
        choices=STRUCTURES,
        help="override the recorded structure-input convention (default: the source's)",
    )


def _run_convert(args: argparse.Namespace) -> int:
    from ctsdg.checkpoints import convert
    from ctsdg.fileio import check_overwrite

    if not args.destination.endswith(".safetensors"):
        raise InputError(f"{args.destination}: weights files end in .safetensors")
    check_overwrite(args.destination, args.overwrite)
    weights = convert(args.source, args.destination, structure=args.structure)
    networks = "generator" + (" + discriminator" if weights.discriminator else "")
    print(
        f"wrote {args.destination}: {networks} from {weights.format} checkpoint {weights.path} "
        f"(width {weights.model.width}, align_corners {weights.model.align_corners}, "
        f"structure inputs '{weights.structure}', trained at {weights.trained_size}x"
        f"{weights.trained_size})"
    )
    return 0


def _add_inpaint(sub: Subparsers) -> None:
    parser = subcommand(
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
            checkpoint_options(),
            runtime_options(),
            model_input_options(),
            original_options(),
            overwrite_options("existing output files, the input itself included"),
        ],
    )
    parser.add_argument("image", metavar="IMAGE", help="image file or folder")
    parser.add_argument("mask", metavar="MASK", help="mask file or folder (white = hole)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="file or folder (a trailing / makes it a folder, created if need be)",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep the outputs that exist and inpaint the rest (resumes an interrupted job)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="resize the whole image to the model's size, crop around each hole region, or run "
        "the original image at its own size (padded to multiples of 128, within "
        "--max-original-pixels); auto: crop for images over twice the model's size with local "
        "holes, else resize (docs/evaluation.md says when to use which)",
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
        backend=args.backend,
        overwrite=args.overwrite,
        max_original_pixels=args.max_original_pixels,
        skip_existing=args.skip_existing,
    )


def _add_export(sub: Subparsers) -> None:
    parser = subcommand(
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
            checkpoint_options(),
            model_input_options(structure_help="record this structure-input convention"),
            overwrite_options("an existing FILE"),
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


def _add_serve(sub: Subparsers) -> None:
    parser = subcommand(
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
            checkpoint_options(required=False),
            runtime_options(),
            model_input_options(),
            original_options(),
        ],
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=port, default=8080, help="port (0: any free one)")
    parser.add_argument(
        "--max-upload-mb", type=positive(float), default=25.0, help="largest request body"
    )
    parser.add_argument(
        "--max-pixels",
        type=positive(int),
        default=40_000_000,
        help="largest image, width x height",
    )
    parser.add_argument(
        "--max-queue",
        type=positive(int),
        default=8,
        help="requests being received, queued or running; more get 503",
    )
    parser.add_argument(
        "--timeout",
        type=positive(float),
        default=120.0,
        help="seconds a request may take to arrive (then 408), and then to wait and run (503)",
    )
    parser.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on /api/ (default: $CTSDG_TOKEN, if set)",
    )


def _run_serve(args: argparse.Namespace) -> int:
    import os

    from ctsdg.serve.server import serve
    from ctsdg.serve.uploads import Limits

    token = args.token if args.token is not None else os.environ.get("CTSDG_TOKEN")
    if args.token is None and token is not None and not token.strip():
        raise InputError(
            "CTSDG_TOKEN is set but empty; set it to the token, or unset it to serve without one"
        )
    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        max_original_pixels=args.max_original_pixels,
        token=token,  # an empty --token "$UNSET" is refused by Limits, never taken as none
    )
    return serve(
        args.checkpoint,
        host=args.host,
        port=args.port,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        size=args.size,
        structure=args.structure,
        limits=limits,
    )


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_convert, _add_inpaint, _add_export, _add_serve]
