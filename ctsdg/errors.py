"""The errors the command line turns into one line and an exit status, and the words for OS
errors."""

from __future__ import annotations

import difflib
import errno
import os
import reprlib
from collections.abc import Iterable


class CommandError(Exception):
    """An error the CLI prints as ``ctsdg: error: <message>`` and ends with ``exit_code``.

    The CLI catches this one base class in one place; the Python API lets it propagate.
    """

    exit_code: int = 1


class InputError(CommandError, ValueError):
    """Bad input from the user: a missing or unreadable file, an unknown key, a wrong value.

    The message names the file or key and says what was expected; exit status 2.
    """

    exit_code = 2


class InpaintWarning(UserWarning):
    """Something was adjusted to make an input usable or writable (a mask resized, an image
    written in another mode than it was read in); the CLI prints it as one line."""


# errno -> the reason a user reads; anything else falls back to the system's own wording.
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "not a directory (a parent in the path is a file)",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "exists and is not a directory",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "a loop of symbolic links",
}


def describe_os_error(path: str | os.PathLike[str] | None, exc: OSError) -> str:
    """``PATH: reason`` for an OSError in words a user acts on (read-only, disk full, ...).

    ``path`` is what the user asked for; the error's own file name is used when it is None.
    """
    where = path if path is not None else (exc.filename or "?")
    reason = _REASONS.get(exc.errno or -1) or exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'checkpoint_path'?"`` for the choices closest to a mistyped ``word``
    (prefixes count: ``checkpoint`` -> ``checkpoint_path``), or ``""`` when none is close."""
    choices = list(choices)
    close = [c for c in choices if c.startswith(word) and len(word) >= 3]
    close = close or difflib.get_close_matches(word, choices, n=3)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close[:3]) + "?"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def shown(value: object) -> str:
    """A value from a file or the command line for an error line: its repr, cut short (it may
    be huge, or nest without end), so that the line stays one short line."""
    return _SHORT.repr(value)
