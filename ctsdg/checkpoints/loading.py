"""Load CTSDG weights from any file a user has, detecting the format from the file itself.

Accepted:

- a run folder of this project (its newest training checkpoint is taken);
- this project's training checkpoint (``.pt``) or weights file (``.safetensors``);
- the authors' PyTorch checkpoint: ``torch.save`` of ``{"n_iter", "generator",
  "discriminator"}`` with their parameter names (a bare generator state dict also works);
- the MindSpore model-zoo port's ``generator_XXXXXX.ckpt`` / ``discriminator_XXXXXX.ckpt``,
  read without MindSpore. A generator file picks up its ``discriminator_XXXXXX.ckpt`` sibling.

Nothing is unpickled beyond tensors and plain containers (``torch.load(weights_only=True)``).
Weights from the authors' code and from the port were trained on the authors' corrupted
structure inputs, so they report the ``authors`` convention; the port's generator also needs
``align_corners=True`` upsampling, which `ModelConfig` records.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ctsdg.checkpoints import mindspore, mindspore_names
from ctsdg.checkpoints.authors import authors_state_to_ours
from ctsdg.checkpoints.native import (
    CHECKPOINT_FORMAT,
    STRUCTURE_CONVENTIONS,
    WEIGHTS_FORMAT,
    ModelConfig,
    latest_checkpoint,
    save_weights,
)
from ctsdg.checkpoints.training_format import (
    is_training_checkpoint,
    parse_training_checkpoint,
)
from ctsdg.errors import InputError, shown
from ctsdg.fileio import check_tensors, input_kind, remove_stale_temporaries, writing
from ctsdg.models import Discriminator, Generator
from ctsdg.models.generator import SIZE_MULTIPLE

ACCEPTED = (
    "a ctsdg run folder, training checkpoint (.pt) or weights file (.safetensors), "
    "the authors' PyTorch checkpoint (.pth), or a MindSpore model-zoo checkpoint (.ckpt)"
)
_AUTHORS_GENERATOR_KEY = "ec_texture_1.conv.weight"
_AUTHORS_DISCRIMINATOR_KEY = "texture_branch.conv1.0.weight_orig"
#: The largest training size a file may record (the published models: 256).
MAX_TRAINED_SIZE = 2048
_TORCH_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # torch's legacy (pre-1.6) serialisation starts with a pickle


@dataclass
class LoadedWeights:
    """Weights read from a file, in this project's parameter names.

    Attributes:
        path: the file actually read (a run folder resolves to its newest checkpoint).
        format: "ctsdg-checkpoint", "ctsdg-weights", "authors" or "mindspore".
        model: how to rebuild the networks.
        structure: the structure-input convention the weights were trained with.
        generator, discriminator: state dicts, or None when the file holds no such network.
        extra: other entries of a training checkpoint (iteration, config, ...).
    """

    path: Path
    format: str
    model: ModelConfig
    structure: str
    generator: dict[str, torch.Tensor] | None
    discriminator: dict[str, torch.Tensor] | None
    extra: dict = field(default_factory=dict)

    @property
    def trained_size(self) -> int:
        """The square side the weights were trained at: recorded by a ctsdg training checkpoint
        (``image_load_size``) or weights file (``image_size``), else 256 (the published models).
        """
        config = self.extra.get("config")
        hw = config.get("image_load_size") if isinstance(config, dict) else None
        key = "config image_load_size"
        if "image_size" in self.extra:
            hw, key = self.extra["image_size"], "image_size"
        if hw is None:
            return 256
        # From the file, so untrusted: bounded before any tensor of that size is allocated.
        ok = isinstance(hw, (list, tuple)) and len(hw) == 2
        ok = ok and all(type(v) is int and 0 < v <= MAX_TRAINED_SIZE for v in hw)
        if not ok or hw[0] % SIZE_MULTIPLE or hw[1] % SIZE_MULTIPLE:
            raise InputError(
                f"{self.path}: {key} must be two multiples of {SIZE_MULTIPLE} up to "
                f"{MAX_TRAINED_SIZE}, got {shown(hw)}"
            )
        return hw[0] if hw[0] == hw[1] else 256

    def build_generator(self, device: str | torch.device = "cpu") -> Generator:
        """The generator with these weights, in eval mode, on ``device``."""
        if self.generator is None:
            raise InputError(f"{self.path}: holds no generator weights")
        net = Generator(width=self.model.width, align_corners=self.model.align_corners)
        _load_into(net, self.generator, self.path, "generator")
        return net.to(device).eval()

    def build_discriminator(self, device: str | torch.device = "cpu") -> Discriminator:
        """The discriminator with these weights, in eval mode, on ``device``."""
        if self.discriminator is None:
            hint = ""
            if self.format == "mindspore":
                hint = " (pass the port's discriminator_XXXXXX.ckpt)"
            raise InputError(f"{self.path}: holds no discriminator weights{hint}")
        net = Discriminator(width=_discriminator_width(self.discriminator, self.model))
        _load_into(net, self.discriminator, self.path, "discriminator")
        return net.to(device).eval()


def _discriminator_width(state: dict[str, torch.Tensor], model: ModelConfig) -> int:
    weight = state.get("texture_branch.convs.0.weight_orig")
    return int(weight.shape[0]) if weight is not None else model.width


def _load_into(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    # ``state`` came through `_checked` (`load_weights`): tensors, all finite.
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"wrong shape {len(wrong)} ({', '.join(wrong[:2])})")
    if problems:
        raise InputError(f"{path}: {what} weights do not fit the model: " + "; ".join(problems))
    net.load_state_dict(state)


def load_weights(path: str | os.PathLike[str]) -> LoadedWeights:
    """Read weights from any accepted file or run folder (see the module docstring)."""
    path = Path(path)
    try:
        kind = input_kind(path, "checkpoint")  # a name too long, a FIFO: refused by name
    except InputError:
        if not isinstance(_lstat_error(path), FileNotFoundError):
            raise
        raise InputError(f"{path}: checkpoint not found; expected {ACCEPTED}") from None
    if kind == "folder":
        path = latest_checkpoint(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith((_TORCH_ZIP_MAGIC, _PICKLE_PROTOCOL_2)):
        return _checked(_from_torch_file(path))
    if _looks_like_safetensors(head):
        return _checked(_from_safetensors(path))
    try:  # the last format: a file is a MindSpore checkpoint if it parses as one
        arrays = mindspore.read_mindspore_checkpoint(path)
    except mindspore.NotAMindSporeCheckpoint as err:
        detail = str(err).removeprefix(f"{path}: ")  # the reader's reason, once
        reason = f" ({detail})" if detail else ""
        raise InputError(
            f"{path}: not a checkpoint format ctsdg reads{reason}; expected {ACCEPTED}"
        ) from None
    return _checked(_from_mindspore(path, arrays))


def _checked(weights: LoadedWeights) -> LoadedWeights:
    """Every value a file gives checked before it is used: the tensors (`check_tensors`) and
    the training size (bounded, `LoadedWeights.trained_size`)."""
    for what in ("generator", "discriminator"):
        state = getattr(weights, what)
        if state is not None:
            check_tensors(state, weights.path, what)
    _ = weights.trained_size
    return weights


def _lstat_error(path: Path) -> OSError | None:
    try:
        os.lstat(path)
    except OSError as err:
        return err
    return None


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Generator:
    """The generator of any accepted checkpoint, in eval mode on ``device``."""
    return load_weights(path).build_generator(device)


def load_discriminator(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> Discriminator:
    """The discriminator of any accepted checkpoint, in eval mode on ``device``."""
    return load_weights(path).build_discriminator(device)


def convert(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    structure: str | None = None,
) -> LoadedWeights:
    """Write this project's weights file from any accepted source.

    The file records the training size (`LoadedWeights.trained_size`), so a model trained at
    128 x 128 inpaints at 128 after conversion. ``structure`` overrides the recorded
    structure-input convention (default: the source's).
    """
    weights = load_weights(source)
    if structure is not None:
        if structure not in STRUCTURE_CONVENTIONS:
            raise InputError(f"structure must be one of {STRUCTURE_CONVENTIONS}, got {structure!r}")
        weights.structure = structure
    # Building the networks validates every name and shape before anything is written.
    if weights.generator is not None:
        weights.build_generator()
    if weights.discriminator is not None:
        weights.build_discriminator()
    if weights.generator is None:
        raise InputError(f"{weights.path}: holds no generator; nothing to convert")
    with writing(destination):  # atomic (save_weights); a full disk or read-only place: one line
        remove_stale_temporaries(destination)  # what a killed earlier convert left
        save_weights(
            destination,
            model=weights.model,
            structure=weights.structure,
            generator=weights.generator,
            discriminator=weights.discriminator,
            source=f"{weights.format}:{weights.path.name}",
            image_size=weights.trained_size,
        )
    return weights


# --------------------------------------------------------------------------- formats


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    header_size = int.from_bytes(head[:8], "little")
    return 0 < header_size < 100_000_000 and head[8:9] == b"{"


def _from_torch_file(path: Path) -> LoadedWeights:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False, i.e. running the file's code: name only
        # what the file asked for.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"it asks for {found[1]}" if found else "it holds more than tensors"
        raise InputError(
            f"{path}: refusing to unpickle Python objects beyond tensors ({what}); "
            f"expected {ACCEPTED}"
        ) from None
    except Exception as err:
        raise InputError(f"{path}: unreadable PyTorch file ({err}); expected {ACCEPTED}") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: holds a {type(data).__name__}, not a checkpoint; expected {ACCEPTED}"
        )
    if is_training_checkpoint(data):
        return _from_training_checkpoint(path, data)
    generator = data.get("generator") if isinstance(data.get("generator"), dict) else None
    discriminator = data.get("discriminator")
    discriminator = discriminator if isinstance(discriminator, dict) else None
    if generator is None and _AUTHORS_GENERATOR_KEY in data:
        generator = data  # a bare state dict of the authors' generator
    if _has_key(generator, _AUTHORS_GENERATOR_KEY) or _has_key(
        discriminator, _AUTHORS_DISCRIMINATOR_KEY
    ):
        for what, state in (("generator", generator), ("discriminator", discriminator)):
            if state is not None:
                check_tensors(state, path, what)
        return _authors(path, generator, discriminator, data.get("n_iter"))
    keys = ", ".join(list(map(str, data))[:5])
    raise InputError(
        f"{path}: a PyTorch file but not a CTSDG checkpoint (keys: {keys}); expected {ACCEPTED}"
    )


def _has_key(state: dict | None, key: str) -> bool:
    return state is not None and any(k.removeprefix("module.") == key for k in state)


def _authors(
    path: Path, generator: dict | None, discriminator: dict | None, n_iter
) -> LoadedWeights:
    ours_g = authors_state_to_ours(generator, "generator") if generator else None
    ours_d = authors_state_to_ours(discriminator, "discriminator") if discriminator else None
    width = 64
    if ours_g is not None and "texture_encoder.0.conv.weight" in ours_g:
        width = int(ours_g["texture_encoder.0.conv.weight"].shape[0])
    extra = {"iteration": int(n_iter)} if isinstance(n_iter, int) else {}
    return LoadedWeights(
        path, "authors", ModelConfig(width, align_corners=False), "authors", ours_g, ours_d, extra
    )


def _from_training_checkpoint(path: Path, data: dict) -> LoadedWeights:
    checkpoint = parse_training_checkpoint(path, data)
    return LoadedWeights(  # the tensors are checked by `_checked`, as every format's
        path,
        CHECKPOINT_FORMAT,
        checkpoint.model,
        checkpoint.structure,
        data.get("generator"),
        data.get("discriminator"),
        checkpoint.extra,
    )


def _from_safetensors(path: Path) -> LoadedWeights:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError) as err:
        raise InputError(f"{path}: unreadable safetensors file ({err})") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise InputError(
            f"{path}: a safetensors file without ctsdg metadata "
            f"(format={metadata.get('format')!r}); write one with 'ctsdg convert'"
        )
    try:
        model_entry = json.loads(metadata["model"])
    except (KeyError, json.JSONDecodeError, RecursionError):
        raise InputError(f"{path}: weights file metadata has no readable model config") from None
    model = ModelConfig.from_dict(model_entry, path)
    structure = metadata.get("structure", "correct")
    if structure not in STRUCTURE_CONVENTIONS:
        raise InputError(f"{path}: unknown structure convention {structure!r}")
    generator = {
        k.removeprefix("generator."): v for k, v in tensors.items() if k.startswith("generator.")
    }
    discriminator = {
        k.removeprefix("discriminator."): v
        for k, v in tensors.items()
        if k.startswith("discriminator.")
    }
    return LoadedWeights(
        path,
        WEIGHTS_FORMAT,
        model,
        structure,
        generator or None,
        discriminator or None,
        {"source": metadata.get("source", ""), **_image_size(metadata, path)},
    )


def _image_size(metadata: dict[str, str], path: Path) -> dict[str, list[int]]:
    """``{"image_size": [H, W]}`` from a weights file's metadata, if it records one."""
    if "image_size" not in metadata:
        return {}
    try:
        hw = json.loads(metadata["image_size"])
    except (ValueError, RecursionError):
        raise InputError(f"{path}: weights file metadata has an unreadable image_size") from None
    return {"image_size": hw}  # checked by `LoadedWeights.trained_size`


_MINDSPORE_NAME = re.compile(r"(generator|discriminator)(.*)\.ckpt")


def _from_mindspore(path: Path, arrays: dict[str, np.ndarray]) -> LoadedWeights:
    states: dict[str, dict[str, torch.Tensor]] = {}
    network = mindspore_names.detect_mindspore_network(arrays, source=str(path))
    states[network] = mindspore_names.mindspore_state_to_authors(arrays, network, source=str(path))
    # generator_XXXXXX.ckpt and discriminator_XXXXXX.ckpt are saved side by side.
    m = _MINDSPORE_NAME.fullmatch(path.name)
    if m:
        other = "discriminator" if network == "generator" else "generator"
        sibling = path.with_name(f"{other}{m[2]}.ckpt")
        if sibling.is_file():
            arrays = mindspore.read_mindspore_checkpoint(sibling)
            if mindspore_names.detect_mindspore_network(arrays, source=str(sibling)) == other:
                states[other] = mindspore_names.mindspore_state_to_authors(
                    arrays, other, source=str(sibling)
                )
    loaded = _authors(path, states.get("generator"), states.get("discriminator"), None)
    loaded.format = "mindspore"
    loaded.model = ModelConfig(loaded.model.width, align_corners=True)
    return loaded
