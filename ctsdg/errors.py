"""The one exception type the command line turns into a one-line message, and the words for
OS errors."""

from __future__ import annotations

import errno
import os


class InputError(ValueError):
    """Bad input from the user: a missing or unreadable file, an unknown key, a wrong value.

    The message names the file or key and says what was expected. The CLI prints it as
    ``ctsdg: error: <message>`` and exits with status 2; the Python API lets it propagate.
    """


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "is a directory",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "name too long",
    errno.EIO: "input/output error",
}


def describe_os_error(path: str | os.PathLike[str] | None, exc: OSError) -> str:
    """``PATH: reason`` for an OSError in words a user acts on (read-only, disk full, ...).

    ``path`` is what the user asked for; the error's own file name is used when it is None.
    """
    where = path if path is not None else (exc.filename or "?")
    reason = _REASONS.get(exc.errno or -1) or exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}"
