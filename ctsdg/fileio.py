"""File helpers every writer and reader shares: atomic writes, safe state-dict reads, and the one
line that says why an output could not be written."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import torch

from ctsdg.errors import InpaintWarning, InputError, describe_os_error, shown


def write_error(path: str | os.PathLike[str], err: OSError) -> InputError:
    """The one-line InputError for an output that could not be created or written.

    ``cannot write PATH: REASON`` with REASON from the errno (read-only, not a directory, no
    space left, permission denied, ...); the CLI prints it and exits with status 2.
    """
    return InputError(f"cannot write {describe_os_error(path, err)}")


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into `write_error`'s one-line InputError."""
    try:
        yield
    except OSError as err:
        raise write_error(path, err) from None


def _umask() -> int:
    # /proc first: os.umask can only be read by setting it, which races with other threads
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over.

    Returns ``path`` as a Path. On any error the temporary file is removed and ``path`` is
    untouched, so readers never see half a file. The file gets the permissions of an ordinary
    new file (0666 less the umask), not the 0600 of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise name_error(err, path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file 0600; the result should follow the umask like any new file.
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise name_error(err, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def name_error(err: OSError, path: str | os.PathLike[str]) -> OSError:
    """``err`` reported against ``path``, the file the user knows, not the hidden temporary
    file an atomic write used (or no file at all, as a failed ``write`` or ``fsync`` has)."""
    err.filename, err.filename2 = str(path), None
    return err


def unwrap_os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: ``err`` itself, or the one a C++ writer chained before
    failing on its own terms (``torch.save``'s ``[enforce fail at inline_container.cc]``)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
        seen += 1
    return None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_write`); OSError as `write_error`.

    Serialising to bytes first keeps C++ writers (TorchScript, ONNX) away from the disk: a full
    disk then fails here, in Python, instead of aborting the process.
    """
    with writing(path):
        return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def check_output_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (then removed).

    Called before long work (evaluation, inference, export) so that an unwritable output place
    is reported at once, not after the work is done. InputError via `write_error` otherwise.
    """
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(folder))
        fd, probe = tempfile.mkstemp(prefix=".ctsdg-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    return folder


# --------------------------------------------------------------------------- paths


def input_kind(path: str | os.PathLike[str], what: str) -> str:
    """``"file"`` or ``"folder"`` for an input path; InputError (one line) for anything else.

    A missing path, a name too long, a symbolic-link loop, and things that are neither a
    regular file nor a folder (a FIFO, ``/dev/zero``, a socket) are refused by name, so that
    they are never taken for a folder of images or read forever.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as err:
        raise InputError(f"cannot read {what} {describe_os_error(path, err)}") from None
    if stat.S_ISDIR(st.st_mode):
        return "folder"
    if stat.S_ISREG(st.st_mode):
        return "file"
    raise InputError(f"{path}: not a regular file ({_file_type(st.st_mode)}); {what} must be one")


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file or folder"


def existing_output(path: str | os.PathLike[str]) -> os.stat_result | None:
    """What is at an output path, not following a final symbolic link (a dangling or looping
    link is something there too), or None. A path that cannot be looked up (a name too long,
    a parent that is a file, no permission) is `write_error`'s one line."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise write_error(path, err) from None


def output_is_folder(path: str | os.PathLike[str]) -> bool:
    """Whether an output path names an existing folder (a link to one counts)."""
    if existing_output(path) is None:
        return False
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # a dangling or looping link: not a folder
        return False


def check_overwrite(path: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse to write over anything at ``path`` unless ``overwrite``; and even then refuse a
    read-only file, a folder or a non-file.

    ``--overwrite`` writes a new file and renames it over the old name (atomic): it never
    writes into the old file. So the old file's other hard links keep the old content (a
    warning says so), and a symbolic link is replaced by the file, not followed. A file
    without write permission is refused: replacing it would ignore what its owner said.
    """
    st = existing_output(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder; name the file to write")
    if not overwrite:
        link = " (a symbolic link)" if stat.S_ISLNK(st.st_mode) else ""
        raise InputError(f"{path}{link} already exists; pass --overwrite to replace it")
    if stat.S_ISLNK(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file ({_file_type(st.st_mode)}); not replaced")
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise InputError(
            f"{path}: is read-only; --overwrite does not replace read-only files (make it "
            f"writable first: chmod u+w {path})"
        )
    if st.st_nlink > 1:
        warnings.warn(
            InpaintWarning(
                f"{path} has {st.st_nlink - 1} other hard link(s); --overwrite writes a new "
                "file, the other links keep the old content"
            ),
            stacklevel=2,
        )


def remove_stale_temporaries(path: str | os.PathLike[str]) -> None:
    """Remove what an interrupted `atomic_write` of ``path`` left (``.NAME.XXXXXXXX.tmp``
    beside it, e.g. after a SIGKILL): called just before ``path`` is written again."""
    path = Path(path)
    remove_stale_temporaries_of(path.parent, {path.name})


def remove_stale_temporaries_of(folder: Path, names: Collection[str]) -> None:
    """`remove_stale_temporaries` for each of ``names`` in ``folder``, in one listing of it
    (a folder job's outputs: one scan per folder, not one per image)."""
    with contextlib.suppress(OSError):
        for tmp in folder.glob(".*.tmp"):
            name = tmp.name[1:-13]  # "." NAME "." 8 random chars ".tmp"
            if len(tmp.name) > 14 and tmp.name[-13] == "." and name in names:
                tmp.unlink(missing_ok=True)


def check_tensors(state: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    """``state`` if it is a mapping of names to finite tensors; InputError naming the first
    entry that is not (a string, a list, NaN or infinite weights)."""
    if not isinstance(state, dict):
        raise InputError(f"{path}: {what} weights must be a state dict, got {shown(state)}")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"{path}: {what} weight {shown(name)} is {type(value).__name__} "
                f"{shown(value)}, not a tensor"
            )
    for name, value in state.items():
        if value.is_floating_point() and value.numel() and not _finite(value):
            raise InputError(
                f"{path}: {what} weight {name} holds NaN or infinite values; the file is "
                "damaged or the training diverged"
            )
    return state


def _finite(tensor: torch.Tensor) -> bool:
    # NaN propagates into the minimum and maximum, and an infinity is one of them: one pass,
    # without the boolean copy torch.isfinite makes (a tenth of the time on the generator).
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def read_state_dict(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    """A PyTorch state dict from ``path``, read with ``weights_only=True`` (no code runs).

    A ``{"state_dict": ...}`` wrapper and ``module.`` prefixes (DataParallel) are removed.
    ``what`` names the expected content in the InputError raised for a missing or unfit file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"{path}: unreadable {what} ({err})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict of {what}, got {type(state).__name__}")
    return {str(k).removeprefix("module."): v for k, v in state.items()}
