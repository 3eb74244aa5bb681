"""Access to the golden vectors in ../shared/reference and the rule that rebuilds the weights.

The reference files are produced by the authors' implementation; see
../shared/reference/README.md. Nothing here is copied from them: the rule is applied to the key
manifest at test time.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

# ../shared/reference beside the repository, or wherever CTSDG_REFERENCE points.
REFERENCE = Path(
    os.environ.get("CTSDG_REFERENCE")
    or Path(__file__).resolve().parents[2] / "shared" / "reference"
)
GOLDEN = REFERENCE / "golden"

requires_reference = pytest.mark.skipif(
    not GOLDEN.is_dir(), reason=f"golden vectors not found at {GOLDEN}"
)


@cache
def manifest() -> dict[str, dict[str, list[int]]]:
    """Every key and shape of the authors' generator and discriminator state dicts, in order."""
    return json.loads((REFERENCE / "official_pytorch_state_dict.json").read_text())


@cache
def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def _rule_tensor(name: str, shape: list[int], seed: int) -> torch.Tensor:
    if not shape:
        return torch.tensor(0, dtype=torch.int64)
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    if name.endswith("running_var"):
        return t.abs() + 0.5
    if len(shape) >= 2:
        return t * math.sqrt(2.0 / math.prod(shape[1:]))
    if name.endswith("gamma"):
        return 0.5 * t
    if name.endswith("weight"):  # a 1-D weight is a BatchNorm scale
        return 1 + 0.1 * t
    return 0.1 * t


def authors_state_dict(network: str) -> dict[str, torch.Tensor]:
    """The authors'-named state dict that the golden vectors were computed with."""
    offset = 0 if network == "generator" else 100000
    state = {
        name: _rule_tensor(name, shape, offset + k)
        for k, (name, shape) in enumerate(manifest()[network].items())
    }
    if network == "discriminator":
        converged = golden("discriminator_eval")
        for name in state:
            if name.endswith(("weight_u", "weight_v")) and ".features." not in name:
                state[name] = torch.from_numpy(converged[name].copy())
        for name in state:
            if ".features.0." in name:
                state[name] = state[name.replace(".features.0.", ".conv1.0.")]
    return state


def authors_checkpoint(path: Path) -> Path:
    """Write the rule weights as the authors' training code saves them."""
    torch.save(
        {
            "n_iter": 450000,
            "generator": authors_state_dict("generator"),
            "discriminator": authors_state_dict("discriminator"),
        },
        path,
    )
    return path
