"""The ``ctsdg`` command line.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that does the work. Heavy imports (torch, the models, data) happen inside the run
functions, so ``ctsdg --help`` is instant.
"""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
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
