"""The standard weight files other people published, one word away: ``auto``.

Three files are known by name (`REGISTRY`): torchvision's VGG16 (the perceptual and style losses,
LPIPS's trunk), pytorch-fid's InceptionV3 (FID) and the ``lpips`` package's v0.1 linear layers.
``resolve(name, "auto")`` returns the file in torch.hub's cache, ``torch.hub.get_dir()/checkpoints``
(so ``TORCH_HOME`` and ``torch.hub.set_dir`` are honoured, and a file torchvision already fetched
is used as it is), fetching it on first use:

- from ``CTSDG_WEIGHTS_MIRROR`` when set (a URL base, ``https://...`` or ``file:///...``, that
  holds the same file names), else from where its authors publish it; the lpips layers are
  copied from the installed ``lpips`` distribution when it has them (found without importing
  ``lpips``: it imports torchvision);
- written atomically (a temporary file beside the target, renamed over; nothing partial is left
  on an error or Ctrl-C), with a progress bar on a terminal;
- verified by SHA-256, the full digest where it is known, otherwise the 8-hex prefix in the file
  name, as torch.hub checks it. A file that does not match is refused and not kept.

A file already in the cache is verified the same way each time it is resolved. Any spec other
than ``auto`` is a path that must exist. Every failure is a `CommandError` of one line.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ctsdg.errors import CommandError, InputError

MIRROR_VARIABLE = "CTSDG_WEIGHTS_MIRROR"
AUTO = "auto"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StandardWeights:
    """One published weight file.

    Attributes:
        name: the registry name (``ctsdg weights fetch NAME``).
        file: the file name in the cache (and on a mirror).
        url: where its authors publish it.
        sha256: the full SHA-256 hex digest, or its first hex digits when only those are known.
        what: what it is, for messages.
        keys: the config keys / options that take it (``pretrained_vgg``, ...).
        installed: a function returning a local copy to take before downloading, if any.
    """

    name: str
    file: str
    url: str
    sha256: str
    what: str
    keys: tuple[str, ...]
    installed: Callable[[], Path | None] | None = None

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64


def _installed_lpips_vgg() -> Path | None:
    """The installed ``lpips`` distribution's ``weights/v0.1/vgg.pth``, found without importing
    the package (its ``__init__`` imports torchvision)."""
    relative = Path("lpips", "weights", "v0.1", "vgg.pth")
    try:
        located = Path(str(importlib.metadata.distribution("lpips").locate_file(relative)))
        if located.is_file():
            return located
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # find_spec of a top-level name reads the path, it does not import the package
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / relative.relative_to("lpips")
        if candidate.is_file():
            return candidate
    return None


REGISTRY: dict[str, StandardWeights] = {
    w.name: w
    for w in (
        StandardWeights(
            name="vgg16",
            file="vgg16-397923af.pth",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            sha256="397923af",
            what="VGG16 weights (torchvision's vgg16-397923af.pth)",
            keys=("pretrained_vgg",),
        ),
        StandardWeights(
            name="fid_inception",
            file="pt_inception-2015-12-05-6726825d.pth",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            sha256="6726825d",
            what="FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)",
            keys=("fid_weights", "ctsdg fid --weights"),
        ),
        StandardWeights(
            name="lpips_vgg",
            file="lpips-v0.1-vgg.pth",
            url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/"
            "v0.1/vgg.pth",
            # The digest of the lpips 0.1.4 distribution's weights/v0.1/vgg.pth.
            sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
            what="LPIPS VGG linear layers (the lpips package's v0.1 vgg.pth)",
            keys=("lpips_weights",),
            installed=_installed_lpips_vgg,
        ),
    )
}


def entry(name: str) -> StandardWeights:
    """The registry entry ``name``; InputError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown standard weights {name!r}; known: {', '.join(REGISTRY)}"
        ) from None


def cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``, where torch.hub and torchvision keep weights."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_path(name: str) -> Path:
    return cache_dir() / entry(name).file


def source_url(name: str) -> str:
    """Where ``name`` is downloaded from: the mirror when ``CTSDG_WEIGHTS_MIRROR`` is set."""
    weights = entry(name)
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    return f"{mirror.rstrip('/')}/{weights.file}" if mirror else weights.url


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# torchvision (and torch.hub) name a published file NAME-<first hex digits of its SHA-256>.EXT.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")


def check_published_hash(path: str | os.PathLike[str]) -> None:
    """For a file named like torchvision's downloads (``vgg16-397923af.pth``), check that its
    SHA-256 starts with the hex digits in the name; raise InputError if it does not (a partial
    or altered download). Other names are not checked."""
    path = Path(path)
    found = _HASH_IN_NAME.search(path.name)
    if found is None or not path.is_file():
        return
    digest = sha256_of(path)
    if not digest.startswith(found.group(1)):
        raise InputError(
            f"{path}: SHA-256 {digest[:12]}... does not start with {found.group(1)}, "
            "the checksum its name carries (an incomplete or altered download; fetch it again)"
        )


def matches(weights: StandardWeights, digest: str) -> bool:
    return digest.startswith(weights.sha256)


def _mismatch(
    weights: StandardWeights, where: str, digest: str, hint: str = "not kept"
) -> CommandError:
    expected = "" if weights.full_digest else " prefix"
    return CommandError(
        f"{where}: checksum does not match {weights.file} (SHA-256 {digest[:16]}..., expected"
        f"{expected} {weights.sha256[:16]}{'...' if weights.full_digest else ''}); "
        f"not the published file, {hint}"
    )


def verify(name: str, path: Path | None = None) -> Path:
    """Check ``path`` (default: the cached file) against ``name``'s digest; CommandError if it
    does not match, InputError if it is missing."""
    weights = entry(name)
    path = cache_path(name) if path is None else path
    if not path.is_file():
        raise InputError(f"{path}: {weights.what} not found")
    digest = sha256_of(path)
    if not matches(weights, digest):
        hint = f"remove it and run: ctsdg weights fetch {weights.name}"
        raise _mismatch(weights, str(path), digest, hint)
    return path


def resolve(name: str, spec: str) -> Path:
    """The file for ``spec``: ``auto`` -> the cached standard file ``name`` (fetched and verified
    on first use, verified again on every later call); anything else -> the path ``spec``,
    which must exist.

    Raises InputError for a missing path, CommandError for a download that fails or a file
    whose checksum does not match (one line each).
    """
    weights = entry(name)
    if spec != AUTO:
        path = Path(spec).expanduser()
        if not path.is_file():
            problem = (
                f"is a directory; expected {weights.what}"
                if path.is_dir()
                else f"{weights.what} not found"
            )
            raise InputError(
                f"{path}: {problem} ({weights.keys[0]}=auto fetches the standard file)"
            )
        return path
    return fetch(name)


def fetch(name: str, *, progress: bool | None = None) -> Path:
    """Put ``name`` into the cache (from the installed copy, the mirror or its URL) and verify
    it. An existing cached file is verified, not fetched again."""
    from ctsdg.fileio import atomic_write, writing

    weights = entry(name)
    path = cache_path(name)
    if path.is_file():
        return verify(name, path)
    local = _installed_copy(weights)
    if local is not None:
        with writing(path):
            return atomic_write(path, lambda tmp: shutil.copyfile(local, tmp))
    url = source_url(name)
    show = sys.stderr.isatty() if progress is None else progress
    with writing(path):
        return atomic_write(path, lambda tmp: _download(weights, url, tmp, path, show))


def _installed_copy(weights: StandardWeights) -> Path | None:
    """The local copy ``weights.installed`` finds, if it has the published digest."""
    local = weights.installed() if weights.installed else None
    return local if local is not None and matches(weights, sha256_of(local)) else None


def _unreachable(
    weights: StandardWeights, url: str, path: Path, err: OSError | http.client.HTTPException
) -> CommandError:
    """The one line for a download that failed: which file, from where, and where to put it."""
    if isinstance(err, urllib.error.HTTPError):
        reason = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, http.client.IncompleteRead):
        reason = f"connection closed with {err.expected} bytes still to come"
    else:
        reason = str(getattr(err, "reason", None) or err or type(err).__name__)
    return CommandError(
        f"{weights.file} is needed ({weights.keys[0]}=auto) and could not be downloaded from {url} "
        f"({reason}); download it and put it at {path}, or set {MIRROR_VARIABLE}=URL_BASE to a "
        "mirror holding it"
    )


def _download(weights: StandardWeights, url: str, tmp: Path, path: Path, progress: bool) -> None:
    """Stream ``url`` into ``tmp`` while hashing. Network failures and a digest that does not
    match are CommandErrors (the caller's atomic write then removes ``tmp``); only errors of
    writing ``tmp`` stay OSErrors."""
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except OSError as err:  # URLError, HTTPError, timeouts, refused connections
        raise _unreachable(weights, url, path, err) from None

    def read() -> bytes:
        try:
            return response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as err:  # reset, timeout, cut short
            raise _unreachable(weights, url, path, err) from None

    digest, received = hashlib.sha256(), 0
    with response, open(tmp, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        for chunk in _chunks(read, total, weights.file, progress):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
    if total is not None and received < total:  # http.client returns b"" when cut short
        raise _unreachable(weights, url, path, http.client.IncompleteRead(b"", total - received))
    if not matches(weights, digest.hexdigest()):
        raise _mismatch(weights, url, digest.hexdigest())


def _chunks(
    read: Callable[[], bytes], total: int | None, label: str, progress: bool
) -> Iterator[bytes]:
    from tqdm import tqdm

    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
    ) as bar:
        for chunk in iter(read, b""):
            bar.update(len(chunk))
            yield chunk


@dataclass(frozen=True)
class Status:
    """What `status` finds for one registry entry."""

    weights: StandardWeights
    path: Path
    source: str
    state: str  # "missing", "present", "verified" or "checksum mismatch"


def status(name: str, *, check: bool = False) -> Status:
    """Where ``name`` lives and whether it is there; ``check`` hashes it too."""
    weights = entry(name)
    path = cache_path(name)
    local = _installed_copy(weights)
    source = f"installed lpips ({local})" if local is not None else source_url(name)
    if not path.is_file():
        state = "missing"
    elif not check:
        state = "present"
    else:
        state = "verified" if matches(weights, sha256_of(path)) else "checksum mismatch"
    return Status(weights, path, source, state)


__all__ = [
    "AUTO",
    "MIRROR_VARIABLE",
    "REGISTRY",
    "StandardWeights",
    "Status",
    "cache_dir",
    "cache_path",
    "entry",
    "fetch",
    "resolve",
    "source_url",
    "status",
    "verify",
]
