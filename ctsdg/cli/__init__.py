"""The ``ctsdg`` command line.

Each subcommand has an ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that does the work, grouped by what they are for: `ctsdg.cli.training` (masks, train,
demo), `ctsdg.cli.evaluation` (eval, fid, bench), `ctsdg.cli.inference` (convert, inpaint, export,
serve). Options that several commands share are declared once, in `ctsdg.cli.options`; defaults
are shown by the help formatter. Errors are printed in one place, `main`: a `CommandError`
carries its own exit status. Heavy imports (torch, the models, data) happen inside the run
functions, so ``ctsdg --help`` is instant.

Two more groups: `ctsdg.cli.comparison` (compare) and `ctsdg.cli.weights` (weights).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence

from ctsdg import __version__
from ctsdg.cli import comparison, evaluation, inference, training, weights
from ctsdg.cli.options import Parser, Runner
from ctsdg.errors import CommandError, describe_os_error, did_you_mean


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
    groups = (training, evaluation, comparison, weights, inference)
    for add in (command for group in groups for command in group.COMMANDS):
        add(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined]  # name -> its parser
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
            command = parser.commands[args.command]  # type: ignore[attr-defined]
            flags = [f for action in command._actions for f in action.option_strings]
            hints = [did_you_mean(a.split("=")[0], flags) for a in extra if a.startswith("-")]
            command.error(f"unrecognized arguments: {' '.join(extra)}" + "".join(hints))
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    _configure_logging()
    run: Runner = args.run
    try:
        with _terminated_by_sigterm(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(run(args) or 0)
    except CommandError as err:
        print(f"ctsdg: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ctsdg: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the last net: a file problem no command turned into its own line
        print(f"ctsdg: error: {describe_os_error(err.filename, err)}", file=sys.stderr)
        return 2
    except Terminated:
        print("ctsdg: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Warnings as one line each, like the errors (``ctsdg: warning: ...``)."""
    print(f"ctsdg: warning: {message}", file=sys.stderr)


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that ``finally`` blocks and `atomic_write`
    remove their temporary files on the way out (the default action would leave them)."""


@contextlib.contextmanager
def _terminated_by_sigterm() -> Iterator[None]:
    """SIGTERM raises `Terminated` while a command runs (training and serving install their
    own handlers on top, and put this one back)."""

    def handle(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and "=" in arg
