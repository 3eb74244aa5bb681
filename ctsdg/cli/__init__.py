"""The ``ctsdg`` command line.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that does the work, grouped by what they are for: `ctsdg.cli.training` (masks, train,
demo), `ctsdg.cli.evaluation` (eval, fid, bench), `ctsdg.cli.inference` (convert, inpaint, export,
serve). Options that several commands share are declared once, in `ctsdg.cli.options`; defaults
are shown by the help formatter. Errors are printed in one place, `main`: a `CommandError`
carries its own exit status. Heavy imports (torch, the models, data) happen inside the run
functions, so ``ctsdg --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ctsdg import __version__
from ctsdg.cli import evaluation, inference, training
from ctsdg.cli.options import Parser, Runner
from ctsdg.errors import CommandError


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
    parser = Parser(
        prog="ctsdg",
        description="CTSDG image inpainting: train, evaluate, inpaint, export, serve, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"ctsdg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (*training.COMMANDS, *evaluation.COMMANDS, *inference.COMMANDS):
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
