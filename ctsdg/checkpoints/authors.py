"""The authors' PyTorch checkpoints (xiefan-guo/ctsdg): their parameter names and keys.

The authors number their layers by hand (``ec_texture_3``, ``dc_structure_7``) and wrap
convolutions in ``nn.Sequential``; this project builds the streams as ``ModuleList``s. One table
of prefix pairs per network renames both ways; `tests/test_checkpoints.py` checks it against the
manifest of every key the authors' model has. Every key and shape of the authors' state dict
(:func:`authors_entries`) is derived from this project's networks through the same table, so the
architecture is written down once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ctsdg.checkpoints.renames import Network, PrefixRenames, check_network


def _generator_pairs() -> Iterator[tuple[str, str]]:
    """(authors' prefix, ours) for the generator."""
    for stream in ("texture", "structure"):
        # Encoders count from 1 (shallow) to 7 (deep); decoders run deep to shallow, so the
        # authors' level 7 is this project's decoder[0].
        for level in range(1, 8):
            yield f"ec_{stream}_{level}.", f"{stream}_encoder.{level - 1}."
            yield f"dc_{stream}_{level}.", f"{stream}_decoder.{7 - level}."
        yield f"{stream}_feature_projection.{stream}_resolver.", f"{stream}_projection.block."
        yield f"{stream}_feature_projection.out_layer.0.", f"{stream}_projection.out."
        yield f"bigff.{stream}_gate.0.", f"bigff.{stream}_gate."
        yield f"bigff.{stream}_gamma", f"bigff.{stream}_gamma"
    yield "fusion_layer1.0.", "fusion_down."
    for i in range(4):
        yield f"cfa.msfa.dilated_conv_{i}.0.", f"cfa.msfa.branches.{i}."
    yield "cfa.msfa.weight_calc.0.", "cfa.msfa.weight_conv."
    yield "cfa.msfa.weight_calc.2.", "cfa.msfa.weight_out."
    yield "fusion_layer2.0.", "fusion_attention."
    yield "out_layer.0.", "out_conv."


def _discriminator_pairs() -> Iterator[tuple[str, str]]:
    """(authors' prefix, ours) for the discriminator."""
    for branch in ("texture", "structure"):
        for k in range(1, 6):
            yield f"{branch}_branch.conv{k}.0.", f"{branch}_branch.convs.{k - 1}."
    edge_layers = {
        "projection.0": "conv_in",
        "projection.1": "bn_in",
        "res_layer.0": "conv1",
        "res_layer.1": "bn1",
        "res_layer.3": "conv2",
        "res_layer.4": "bn2",
        "out_layer.0": "conv_out",
    }
    for theirs, ours in edge_layers.items():
        yield f"edge_detector.{theirs}.", f"edge_detector.{ours}."


_RENAMES = {
    "generator": PrefixRenames(_generator_pairs()),
    "discriminator": PrefixRenames(_discriminator_pairs()),
}

# The authors' discriminator registers each branch's first layer a second time under
# `features.0`; the alias holds the same tensors and is dropped on the way in.
_ALIAS = re.compile(r"(texture|structure)_branch\.features\.0\.(.+)")
_ALIASED = re.compile(r"(texture|structure)_branch\.conv1\.0\.(.+)")


def authors_name_to_ours(name: str, network: Network) -> str | None:
    """This project's name for an authors' parameter name; None for an alias or unknown name."""
    return _RENAMES[network].forward(name)


def our_name_to_authors(name: str, network: Network) -> str | None:
    """The authors' name for one of this project's parameter names (None if it has none)."""
    return _RENAMES[network].backward(name)


def authors_state_to_ours(state: Mapping[str, Tensor], network: Network) -> dict[str, Tensor]:
    """Rename an authors' state dict to this project's names (aliases dropped).

    A ``module.`` prefix left by DataParallel/DDP is removed first. Names that match no rule
    are kept as they are, so that loading reports them as unexpected.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        if network == "discriminator" and _ALIAS.fullmatch(name):
            continue
        out[authors_name_to_ours(name, network) or name] = tensor
    return out


def ours_state_to_authors(state: Mapping[str, Tensor], network: Network) -> dict[str, Tensor]:
    """Rename one of this project's state dicts to the authors' names, aliases included."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        theirs = our_name_to_authors(name, network)
        if theirs is None:
            raise KeyError(f"no authors' name for {name}")
        out[theirs] = tensor
        if network == "discriminator" and (aliased := _ALIASED.fullmatch(theirs)):
            out[f"{aliased[1]}_branch.features.0.{aliased[2]}"] = tensor
    return out


@dataclass(frozen=True)
class AuthorsEntry:
    """One key of the authors' state dict.

    ``kind``: "tensor" (a parameter or buffer of its own), "counter" (a BatchNorm
    ``num_batches_tracked``, shape ``()``) or "alias" (a copy of the key ``source``).
    """

    name: str
    shape: tuple[int, ...]
    kind: Literal["tensor", "counter", "alias"] = "tensor"
    source: str | None = None


@functools.cache
def authors_entries(network: Network) -> tuple[AuthorsEntry, ...]:
    """Every key of the authors' state dict with its shape, in this project's module order.

    Derived from this project's networks (built on the meta device, so nothing is allocated)
    renamed by the table above.
    """
    check_network(network)
    from ctsdg.models import Discriminator, Generator

    with torch.device("meta"):
        model = Generator() if network == "generator" else Discriminator()
    entries = []
    for name, tensor in ours_state_to_authors(model.state_dict(), network).items():
        if _ALIAS.fullmatch(name):
            source = name.replace(".features.0.", ".conv1.0.")
            entries.append(AuthorsEntry(name, tuple(tensor.shape), "alias", source))
        elif name.endswith(".num_batches_tracked"):
            entries.append(AuthorsEntry(name, (), "counter"))
        else:
            entries.append(AuthorsEntry(name, tuple(tensor.shape)))
    return tuple(entries)


def authors_state_shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """Every key of the authors' ``state_dict()`` for ``network`` with its shape.

    Includes ``num_batches_tracked`` (shape ``()``) and the discriminator's ``features.0``
    aliases.
    """
    return {e.name: e.shape for e in authors_entries(network)}
