"""The golden vectors in tests/data/golden and the rules that rebuild what is not stored.

The figures come from the authors' implementation (and the MindSpore port for one file); see
tests/data/golden/README.md. Only outputs and inputs that no rule rebuilds are stored; the rest
is rebuilt here, checked against the SHA-256 of the authors' own arrays recorded at build time:

- the weights, by the reference rule (seeded ``torch.randn`` per manifest entry);
- the random network inputs: ``image = 2 * rand - 1``, ``edge = rand > 0.8``, ``gray = rand``
  drawn in that order from ``torch.Generator().manual_seed(seed)`` (seed 7 for generator_eval,
  8 for generator_train_batch2);
- the stand-in VGG features of losses.npz: ``randn`` from seed 9, in file order;
- the structure photograph: scikit-image's astronaut, resized to 256 x 256 by Pillow (bilinear);
- discriminator_eval's inputs: generator_eval's ``image`` (real), ``output`` (fake), ``gray``,
  ``edge``.

``python -m tests.golden REFERENCE_DIR`` rewrites tests/data/golden from the reference folder
(its layout: README.md, official_pytorch_state_dict.json, golden/*.npz, mindspore/*), after
checking that every rebuilt input equals the reference array bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ctsdg.fileio import atomic_write

DATA = Path(__file__).resolve().parent / "data" / "golden"
INPUT_DIGESTS = DATA / "input_sha256.json"

# Reference file -> the arrays kept (everything else in it is rebuilt by a rule below).
STORED: dict[str, tuple[str, ...]] = {
    "generator_eval": ("mask", "output", "projected_image", "projected_edge"),
    "generator_train_batch2": ("mask", "output", "projected_image", "projected_edge"),
    "discriminator_eval": ("real_pred", "fake_pred", "real_edge_pred", "fake_edge_pred"),
    "generator_eval_mindspore": ("output", "projected_image", "projected_edge"),
    "losses": (),  # plus every g_loss_* / d_loss_* scalar
    "structure_inputs": ("authors_gray", "authors_edge", "correct_gray", "correct_edge"),
}
COPIED = (
    "official_pytorch_state_dict.json",
    "mindspore/mindspore_names.json",
    "mindspore/tiny.ckpt",
    "mindspore/tiny_expected.json",
)
_SIZE = 256
_FEATURE_SHAPES = ((1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8))


def _keep(name: str, key: str) -> bool:
    if name == "discriminator_eval" and key.endswith(("weight_u", "weight_v")):
        return True  # converged by power iteration: no rule rebuilds them
    if name == "losses":
        return key.startswith(("g_loss_", "d_loss_"))
    return key in STORED[name]


def _random_inputs(seed: int, batch: int) -> dict[str, np.ndarray]:
    """image (B,3,256,256) in [-1,1], edge (B,1,256,256) in {0,1}, gray (B,1,256,256) in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, _SIZE, _SIZE, generator=g) * 2 - 1
    edge = (torch.rand(batch, 1, _SIZE, _SIZE, generator=g) > 0.8).float()
    gray = torch.rand(batch, 1, _SIZE, _SIZE, generator=g)
    return {"image": image.numpy(), "edge": edge.numpy(), "gray": gray.numpy()}


def _features() -> dict[str, np.ndarray]:
    """The stand-in VGG features: (1,64,32,32), (1,128,16,16), (1,256,8,8) per source."""
    g = torch.Generator().manual_seed(9)
    return {
        f"feat_{source}_{i}": torch.randn(shape, generator=g).numpy()
        for source in ("comp", "output", "ground_truth")
        for i, shape in enumerate(_FEATURE_SHAPES)
    }


def _photograph() -> dict[str, np.ndarray]:
    """image_uint8 (256,256,3): the astronaut photograph that ships with scikit-image."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((_SIZE, _SIZE), Image.Resampling.BILINEAR)
    return {"image_uint8": np.array(image)}  # writable, like an array read from a file


# Reference file -> the rule that rebuilds its random or photographic inputs.
_RULES: dict[str, Callable[[], dict[str, np.ndarray]]] = {
    "generator_eval": lambda: _random_inputs(7, 1),
    "generator_train_batch2": lambda: _random_inputs(8, 2),
    "losses": _features,
    "structure_inputs": _photograph,
}
# discriminator_eval's inputs are generator_eval's arrays: its key -> generator_eval's key.
_DISCRIMINATOR_INPUTS = {
    "real_image": "image",
    "fake_image": "output",
    "gray": "gray",
    "edge": "edge",
}


def _digest(array: np.ndarray) -> str:
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


@cache
def manifest() -> dict[str, dict[str, list[int]]]:
    """Every key and shape of the authors' generator and discriminator state dicts, in order."""
    return json.loads((DATA / "official_pytorch_state_dict.json").read_text())


@cache
def golden(name: str) -> dict[str, np.ndarray]:
    """Every array of reference file ``golden/{name}.npz``, stored or rebuilt.

    Raises AssertionError when a rebuilt input differs from the authors' array (a changed
    random stream or image library would otherwise fail the golden tests for the wrong reason).
    """
    with np.load(DATA / f"{name}.npz") as stored:
        arrays = {k: stored[k] for k in stored.files}
    if name == "discriminator_eval":
        source = golden("generator_eval")
        return {**{k: source[v] for k, v in _DISCRIMINATOR_INPUTS.items()}, **arrays}
    expected = json.loads(INPUT_DIGESTS.read_text()).get(name, {})
    rebuilt = _RULES[name]() if name in _RULES else {}
    assert set(rebuilt) == set(expected), f"{name}: rebuilt {sorted(rebuilt)} vs {sorted(expected)}"
    for key, array in rebuilt.items():
        assert _digest(array) == expected[key], (
            f"{name}.npz: the rebuilt {key!r} differs from the reference array (SHA-256 "
            "mismatch): the rule in tests/golden.py no longer reproduces it on this setup"
        )
    return {**rebuilt, **arrays}


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


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:  # a file object: savez would append .npz to a name
            np.savez_compressed(file, **arrays)

    atomic_write(path, write)


def build(reference: Path, out: Path = DATA) -> None:
    """Write the compact golden data under ``out`` from the reference folder.

    Stops with a message when a rule does not reproduce a dropped array bit for bit.
    """
    digests: dict[str, dict[str, str]] = {}
    for name in STORED:
        with np.load(reference / "golden" / f"{name}.npz") as data:
            arrays = {k: data[k] for k in data.files}
        dropped = {k: v for k, v in arrays.items() if not _keep(name, k)}
        if name == "discriminator_eval":
            with np.load(reference / "golden" / "generator_eval.npz") as gen:
                mine = {k: gen[v] for k, v in _DISCRIMINATOR_INPUTS.items()}
        else:
            mine = _RULES[name]() if name in _RULES else {}
            digests[name] = {k: _digest(v) for k, v in dropped.items()}
        if set(mine) != set(dropped):
            raise SystemExit(f"{name}.npz: rules for {sorted(mine)}, dropped {sorted(dropped)}")
        for key, array in dropped.items():
            if array.dtype != mine[key].dtype or not np.array_equal(array, mine[key]):
                raise SystemExit(f"{name}.npz: the rule does not reproduce {key!r}")
        _save_npz(out / f"{name}.npz", {k: v for k, v in arrays.items() if _keep(name, k)})
    for relative in COPIED:
        data = (reference / relative).read_bytes()
        atomic_write(out / relative, lambda tmp, data=data: tmp.write_bytes(data))
    text = json.dumps(digests, indent=1, sort_keys=True) + "\n"
    atomic_write(out / INPUT_DIGESTS.name, lambda tmp: tmp.write_text(text))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.golden REFERENCE_DIR")
    build(Path(sys.argv[1]))
