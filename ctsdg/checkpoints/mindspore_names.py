"""The MindSpore model-zoo port's CTSDG parameter names, and its files as the authors' state dict.

The port's cells are laid out differently from the authors' PyTorch modules
(``ec_texture_layers.0.conv.conv.weight`` vs ``ec_texture_1.conv.weight``, BatchNorm
``gamma``/``beta``/``moving_mean``/``moving_variance`` vs ``weight``/``bias``/``running_mean``/
``running_var``, spectral-norm ``weight_u``/``weight_v`` as ``(n, 1)`` columns vs ``(n,)``).
One table of prefix pairs gives :func:`mindspore_to_authors` and, read backwards,
:func:`authors_to_mindspore`; :func:`mindspore_state_to_authors` converts the tensors of a file
(`ctsdg.checkpoints.mindspore.read_mindspore_checkpoint`), checking names and shapes against
the authors' architecture.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch

from ctsdg.checkpoints.authors import AuthorsEntry, authors_entries
from ctsdg.checkpoints.renames import NETWORKS, Network, PrefixRenames, check_network
from ctsdg.errors import InputError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

# BatchNorm leaves: the port's (MindSpore's) -> the authors' (PyTorch's).
_BN_LEAVES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_BN_LEAVES_BACK = {authors: port for port, authors in _BN_LEAVES.items()}


def _port_pairs(network: Network) -> Iterator[tuple[str, str]]:
    """(the port's prefix, the authors') for ``network``."""
    if network == "generator":
        # The port keeps each stream's levels in a list (from 0, shallow to deep for both encoder
        # and decoder) and wraps the partial convolution's nn.Conv2d one level deeper.
        for kind in ("ec", "dc"):
            for stream in ("texture", "structure"):
                for i in range(7):
                    port, authors = f"{kind}_{stream}_layers.{i}.", f"{kind}_{stream}_{i + 1}."
                    yield f"{port}conv.conv.", f"{authors}conv."
                    yield port, authors
        # The multi-scale attention's dilated branches: a list in the port, numbered
        # attributes for the authors (same index).
        for i in range(4):
            yield f"cfa.msfa.dilated_convs.{i}.", f"cfa.msfa.dilated_conv_{i}."
    else:
        # The last spectral-norm convolution is not inside a Sequential in the port.
        for branch in ("texture", "structure"):
            yield f"{branch}_branch.conv5.", f"{branch}_branch.conv5.0."


_RENAMES = {network: PrefixRenames(_port_pairs(network)) for network in NETWORKS}
_ALIAS = re.compile(r"(texture|structure)_branch\.features\.0\..+")


@functools.cache
def _batchnorm_modules(network: Network) -> frozenset[str]:
    return frozenset(
        e.name.rpartition(".")[0]
        for e in authors_entries(network)
        if e.name.endswith(".running_mean")
    )


def mindspore_to_authors(name: str, network: Network) -> str:
    """The authors' PyTorch name of a MindSpore port parameter name (a pure rename).

    ``ec_texture_layers.{i}.conv.conv.weight`` -> ``ec_texture_{i+1}.conv.weight``,
    ``dc_*_layers.{i}.*`` -> ``dc_*_{i+1}.*``, ``cfa.msfa.dilated_convs.{i}.*`` ->
    ``cfa.msfa.dilated_conv_{i}.*``, ``*_branch.conv5.*`` -> ``*_branch.conv5.0.*``, and
    BatchNorm ``gamma``/``beta``/``moving_mean``/``moving_variance`` -> ``weight``/``bias``/
    ``running_mean``/``running_var``. Names no rule touches come back unchanged; whether the
    result exists is checked by :func:`mindspore_state_to_authors`.
    """
    check_network(network)
    module, _, leaf = name.rpartition(".")
    if module and leaf in _BN_LEAVES:
        name = f"{module}.{_BN_LEAVES[leaf]}"
    return _RENAMES[network].forward(name) or name


def authors_to_mindspore(name: str, network: Network) -> str | None:
    """The MindSpore port's name for an authors' PyTorch name: the inverse of
    :func:`mindspore_to_authors`.

    Returns None for keys the port does not store: every ``num_batches_tracked`` and the
    discriminator's ``*_branch.features.0.*`` aliases. BatchNorm leaves are renamed only on the
    authors' BatchNorm modules (so a convolution's ``weight`` stays ``weight``).
    """
    check_network(network)
    module, _, leaf = name.rpartition(".")
    if leaf == "num_batches_tracked" or (network == "discriminator" and _ALIAS.fullmatch(name)):
        return None
    if module in _batchnorm_modules(network) and leaf in _BN_LEAVES_BACK:
        name = f"{module}.{_BN_LEAVES_BACK[leaf]}"
    return _RENAMES[network].backward(name) or name


# Optimizer state and training bookkeeping MindSpore may save next to the parameters.
_TRAINING_PREFIXES = (
    "moment1.",
    "moment2.",
    "moments.",
    "beta1_power",
    "beta2_power",
    "learning_rate",
    "global_step",
    "adam_m",
    "adam_v",
    "accum.",
)
_TRAINING_NAMES = frozenset(
    {"epoch_num", "step_num", "current_iterator_step", "last_overflow_iterator_step"}
)


def is_mindspore_training_entry(name: str) -> bool:
    """True for optimizer state or bookkeeping (``moment1.*``, ``beta1_power``, ``global_step``,
    ``adam_m.*``, ``accum.*``, ``epoch_num``, ...), which the model conversion ignores."""
    return name.startswith(_TRAINING_PREFIXES) or name in _TRAINING_NAMES


def detect_mindspore_network(names: Iterable[str], *, source: str | None = None) -> Network:
    """``"generator"`` or ``"discriminator"`` from a MindSpore checkpoint's tag names.

    Generator files have ``ec_texture_layers.*`` tags, discriminator files ``texture_branch.*``.
    Raises :class:`InputError` when there is neither, or both.
    """
    generator = discriminator = False
    for name in names:
        generator = generator or name.startswith("ec_texture_layers.")
        discriminator = discriminator or name.startswith("texture_branch.")
    where = f"{source}: " if source else ""
    if generator and discriminator:
        raise InputError(
            f"{where}MindSpore checkpoint holds both generator and discriminator parameters"
        )
    if generator:
        return "generator"
    if discriminator:
        return "discriminator"
    raise InputError(
        f"{where}not a CTSDG MindSpore checkpoint: no generator ('ec_texture_layers.*') or "
        "discriminator ('texture_branch.*') parameters"
    )


# --------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------


def preview(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` names, quoted, and how many more: for one-line error messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def mindspore_shape(entry: AuthorsEntry) -> tuple[int, ...]:
    """The shape the port stores an authors' entry with: spectral-norm u and v as columns."""
    return (*entry.shape, 1) if entry.name.endswith((".weight_u", ".weight_v")) else entry.shape


def is_float(array: np.ndarray) -> bool:
    """Floating point, ml_dtypes' bfloat16 included."""
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def mindspore_state_to_authors(
    tensors: Mapping[str, np.ndarray], network: Network, *, source: str | None = None
) -> dict[str, torch.Tensor]:
    """Convert MindSpore port parameters to the authors' ``state_dict`` for ``network``.

    Returns exactly the authors' keys as float32 tensors of the authors' shapes
    (``(n, 1)`` spectral-norm vectors become ``(n,)``; float16/64 and bfloat16 are converted to
    float32), plus what the port does not store: ``num_batches_tracked`` as int64 zero scalars
    and, for the discriminator, ``*_branch.features.0.*`` as copies of ``*_branch.conv1.0.*``.
    Optimizer and bookkeeping entries (see :func:`is_mindspore_training_entry`) are skipped and
    logged at INFO level. Unknown or missing names, wrong shapes and non-float arrays raise
    :class:`InputError` naming the entries (prefixed by ``source``, e.g. the file name).
    """
    check_network(network)
    where = f"{source}: " if source else ""
    entries = authors_entries(network)
    stored = {e.name: e for e in entries if e.kind == "tensor"}
    found: dict[str, tuple[str, np.ndarray]] = {}
    unknown: list[str] = []
    ignored: list[str] = []
    for ms_name, value in tensors.items():
        if is_mindspore_training_entry(ms_name):
            ignored.append(ms_name)
            continue
        authors_name = mindspore_to_authors(ms_name, network)
        if authors_name not in stored:
            unknown.append(ms_name)
        elif authors_name in found:
            raise InputError(
                f"{where}MindSpore entries {found[authors_name][0]!r} and {ms_name!r} both map "
                f"to {authors_name!r}"
            )
        else:
            found[authors_name] = (ms_name, np.asarray(value))
    if unknown:
        hint = ""
        try:
            detected = detect_mindspore_network(tensors)
        except InputError:
            detected = None
        if detected is not None and detected != network:
            hint = f" (this looks like a {detected} checkpoint)"
        raise InputError(
            f"{where}{len(unknown)} MindSpore entries have no place in the authors' {network}"
            f"{hint}: {preview(unknown)}"
        )
    missing = [str(authors_to_mindspore(name, network)) for name in stored if name not in found]
    if missing:
        raise InputError(
            f"{where}{len(missing)} MindSpore {network} entries are missing: {preview(missing)}"
        )

    state: dict[str, torch.Tensor] = {}
    for entry in entries:
        if entry.kind == "counter":
            state[entry.name] = torch.zeros((), dtype=torch.int64)
            continue
        if entry.kind == "alias":
            state[entry.name] = state[str(entry.source)].clone()
            continue
        ms_name, array = found[entry.name]
        expected = mindspore_shape(entry)
        if array.shape != expected:
            raise InputError(
                f"{where}MindSpore entry {ms_name!r} has shape {tuple(array.shape)}, expected "
                f"{expected} (authors' {entry.name!r})"
            )
        if not is_float(array):
            raise InputError(
                f"{where}MindSpore entry {ms_name!r} holds {array.dtype} values, expected floats"
            )
        converted = np.array(array, dtype=np.float32, order="C", copy=True)
        state[entry.name] = torch.from_numpy(converted.reshape(entry.shape))
    if ignored:
        logger.info(
            "%sskipped %d optimizer/bookkeeping entries: %s", where, len(ignored), preview(ignored)
        )
    return state
