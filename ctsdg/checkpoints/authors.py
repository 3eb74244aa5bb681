"""Parameter names of the authors' PyTorch code (xiefan-guo/ctsdg) and this project's, both ways.

The authors number their layers by hand (``ec_texture_3``, ``dc_structure_7``) and wrap
convolutions in ``nn.Sequential``; this project builds the streams as ``ModuleList``s. The
mapping is a short list of rules; `tests/test_checkpoints.py` checks it against the manifest of
every key the authors' model has.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Literal

from torch import Tensor

Network = Literal["generator", "discriminator"]

# Encoders count from 1 (shallow) to 7 (deep); this project's index is level - 1. Decoders run
# deep to shallow, so authors' level 7 is this project's decoder[0].
_STREAM = r"(?P<kind>ec|dc)_(?P<stream>texture|structure)_(?P<level>[1-7])\.(?P<rest>.+)"


def _stream_to_ours(m: re.Match[str]) -> str:
    level = int(m["level"])
    if m["kind"] == "ec":
        return f"{m['stream']}_encoder.{level - 1}.{m['rest']}"
    return f"{m['stream']}_decoder.{7 - level}.{m['rest']}"


def _stream_to_authors(m: re.Match[str]) -> str:
    index = int(m["index"])
    if m["part"] == "encoder":
        return f"ec_{m['stream']}_{index + 1}.{m['rest']}"
    return f"dc_{m['stream']}_{7 - index}.{m['rest']}"


_Rule = tuple[str, str | Callable[[re.Match[str]], str]]

_GENERATOR_RULES: list[_Rule] = [
    (_STREAM, _stream_to_ours),
    (r"(texture|structure)_feature_projection\.\1_resolver\.(.+)", r"\1_projection.block.\2"),
    (r"(texture|structure)_feature_projection\.out_layer\.0\.(.+)", r"\1_projection.out.\2"),
    (r"bigff\.(structure|texture)_gate\.0\.(.+)", r"bigff.\1_gate.\2"),
    (r"bigff\.(structure|texture)_gamma", r"bigff.\1_gamma"),
    (r"fusion_layer1\.0\.(.+)", r"fusion_down.\1"),
    (r"cfa\.msfa\.dilated_conv_([0-3])\.0\.(.+)", r"cfa.msfa.branches.\1.\2"),
    (r"cfa\.msfa\.weight_calc\.0\.(.+)", r"cfa.msfa.weight_conv.\1"),
    (r"cfa\.msfa\.weight_calc\.2\.(.+)", r"cfa.msfa.weight_out.\1"),
    (r"fusion_layer2\.0\.(.+)", r"fusion_attention.\1"),
    (r"out_layer\.0\.(.+)", r"out_conv.\1"),
]

_GENERATOR_RULES_BACK: list[_Rule] = [
    (
        r"(?P<stream>texture|structure)_(?P<part>encoder|decoder)\.(?P<index>\d)\.(?P<rest>.+)",
        _stream_to_authors,
    ),
    (r"(texture|structure)_projection\.block\.(.+)", r"\1_feature_projection.\1_resolver.\2"),
    (r"(texture|structure)_projection\.out\.(.+)", r"\1_feature_projection.out_layer.0.\2"),
    (r"bigff\.(structure|texture)_gate\.(.+)", r"bigff.\1_gate.0.\2"),
    (r"bigff\.(structure|texture)_gamma", r"bigff.\1_gamma"),
    (r"fusion_down\.(.+)", r"fusion_layer1.0.\1"),
    (r"cfa\.msfa\.branches\.([0-3])\.(.+)", r"cfa.msfa.dilated_conv_\1.0.\2"),
    (r"cfa\.msfa\.weight_conv\.(.+)", r"cfa.msfa.weight_calc.0.\1"),
    (r"cfa\.msfa\.weight_out\.(.+)", r"cfa.msfa.weight_calc.2.\1"),
    (r"fusion_attention\.(.+)", r"fusion_layer2.0.\1"),
    (r"out_conv\.(.+)", r"out_layer.0.\1"),
]

_EDGE_LAYERS = {
    "projection.0": "conv_in",
    "projection.1": "bn_in",
    "res_layer.0": "conv1",
    "res_layer.1": "bn1",
    "res_layer.3": "conv2",
    "res_layer.4": "bn2",
    "out_layer.0": "conv_out",
}

_DISCRIMINATOR_RULES: list[_Rule] = [
    (
        r"(texture|structure)_branch\.conv([1-5])\.0\.(.+)",
        lambda m: f"{m[1]}_branch.convs.{int(m[2]) - 1}.{m[3]}",
    ),
    (
        r"edge_detector\.(projection\.[01]|res_layer\.[0134]|out_layer\.0)\.(.+)",
        lambda m: f"edge_detector.{_EDGE_LAYERS[m[1]]}.{m[2]}",
    ),
]

_DISCRIMINATOR_RULES_BACK: list[_Rule] = [
    (
        r"(texture|structure)_branch\.convs\.([0-4])\.(.+)",
        lambda m: f"{m[1]}_branch.conv{int(m[2]) + 1}.0.{m[3]}",
    ),
    (
        r"edge_detector\.(\w+)\.(.+)",
        lambda m: f"edge_detector.{ {v: k for k, v in _EDGE_LAYERS.items()}[m[1]] }.{m[2]}",
    ),
]

# The authors' discriminator registers each branch's first layer a second time under
# `features.0`; the alias holds the same tensors and is dropped on the way in.
_ALIAS = re.compile(r"(texture|structure)_branch\.features\.0\.(.+)")


def _rename(name: str, rules: list[_Rule]) -> str | None:
    for pattern, replacement in rules:
        m = re.fullmatch(pattern, name)
        if m:
            return replacement(m) if callable(replacement) else m.expand(replacement)
    return None


def authors_name_to_ours(name: str, network: Network) -> str | None:
    """This project's name for an authors' parameter name; None for an alias or unknown name."""
    rules = _GENERATOR_RULES if network == "generator" else _DISCRIMINATOR_RULES
    return _rename(name, rules)


def our_name_to_authors(name: str, network: Network) -> str | None:
    """The authors' name for one of this project's parameter names (None if it has none)."""
    rules = _GENERATOR_RULES_BACK if network == "generator" else _DISCRIMINATOR_RULES_BACK
    return _rename(name, rules)


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
        alias = re.fullmatch(r"(texture|structure)_branch\.conv1\.0\.(.+)", theirs)
        if network == "discriminator" and alias:
            out[f"{alias[1]}_branch.features.0.{alias[2]}"] = tensor
    return out
