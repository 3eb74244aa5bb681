"""What every subcommand is built from: the parser and help formatter, the options several
commands share (declared once, as argparse parent parsers), value types, and the config that
``--config FILE`` and ``KEY=VALUE`` give."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

from ctsdg.choices import BACKENDS, ORIGINAL_MAX_PIXELS, PRECISIONS, STRUCTURES

Runner = Callable[[argparse.Namespace], int | None]
Subparsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other ctsdg error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or action.help is None:
            return action.help
        return super()._get_help_string(action)


# --------------------------------------------------------------------------- shared options
# Each returns a parent parser (argparse's ``parents=``) holding options several commands take.


def _parent() -> argparse.ArgumentParser:
    return Parser(add_help=False)


def checkpoint_options(*, required: bool = True) -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument(
        "--checkpoint", required=required, metavar="PATH", help="any checkpoint ctsdg reads"
    )
    return parent


def model_input_options(*, structure_help: str = "structure-input convention"):
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


def original_options() -> argparse.ArgumentParser:
    """--max-original-pixels: the largest image strategy ``original`` runs (`ctsdg.inference`)."""
    parent = _parent()
    parent.add_argument(
        "--max-original-pixels",
        type=positive(int),
        default=ORIGINAL_MAX_PIXELS,
        metavar="N",
        help="largest image strategy original runs, width x height after padding to multiples "
        "of 128 (its time grows with the square of the area)",
    )
    return parent


def runtime_options(*, config_keys: bool = False) -> argparse.ArgumentParser:
    """--device, --precision and --backend: where, in which arithmetic and how the generator
    runs (`ctsdg.backends`). ``config_keys=True`` for commands that also take ``device=`` and
    ``precision=`` config keys: the flags then default to the config's values (see
    `runtime_overrides`)."""
    parent = _parent()
    device, precision = ("auto", "fp32") if not config_keys else (None, None)
    after = " (default: the config's device key)" if config_keys else ""
    parent.add_argument("--device", default=device, help=f"auto, cpu, cuda or cuda:N{after}")
    after = " (default: the config's precision key)" if config_keys else ""
    parent.add_argument(
        "--precision", choices=PRECISIONS, default=precision, help=f"arithmetic{after}"
    )
    parent.add_argument(
        "--backend",
        choices=BACKENDS,
        default="eager",
        help="PyTorch eager, torch.compile, or ONNX Runtime (fp32 only; the exported graph is "
        "cached in $CTSDG_CACHE or ~/.cache/ctsdg); docs/benchmarks.md compares them",
    )
    return parent


def runtime_overrides(args: argparse.Namespace) -> list[str]:
    """The ``device=`` / ``precision=`` overrides that --device / --precision given on a
    ``config_keys`` command's line stand for (they come last, so they win over the keys)."""
    return [f"{k}={getattr(args, k)}" for k in ("device", "precision") if getattr(args, k)]


def config_options(
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


def progress_options() -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parent


def overwrite_options(what: str) -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument("--overwrite", action="store_true", help=f"replace {what}")
    return parent


def subcommand(
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
        formatter_class=HelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse ``type`` that accepts positive numbers of ``kind`` only."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value):  # nan / inf parse as floats but break every use
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0 to 65535, got {value}")
    return value


def config_from_args(args: argparse.Namespace):
    """The `Config` of a command with `config_options`: defaults, --config FILE, KEY=VALUE."""
    from ctsdg.config import load_config, resolve_config_path

    path = resolve_config_path(args.config) if args.config else None
    return load_config(path, args.overrides)
