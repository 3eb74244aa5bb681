"""The run configuration: defaults, then a YAML file, then ``key=value`` overrides.

Key names follow the MindSpore model-zoo port's ``default_config.yaml`` (the seed) wherever it has
one, so its config files keep working; keys that only mattered to MindSpore's launcher are
accepted and ignored with a warning. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from ctsdg.errors import InputError

log = logging.getLogger(__name__)

# Seed keys that only configured MindSpore's launcher or model export; torchrun, `device` and
# the architecture decide these here.
SEED_ONLY_KEYS = frozenset(
    {
        "device_target", "device_num", "rank_id", "device_id", "is_distributed",
        "torch_pretrained_vgg", "file_format", "image_in_channels", "edge_in_channels",
        "out_channels", "enable_modelarts", "data_url", "train_url", "checkpoint_url",
        "data_path", "load_path", "enable_profiling", "start_iter", "verbose_step",
    }
)  # fmt: skip


@dataclass
class Config:
    """Every option of training, evaluation and the demo. See the README for each key.

    Paths may be empty where the chosen dataset does not need them.
    """

    # --- data
    dataset: Literal["celeba", "folder", "demo"] = "celeba"
    data_root: str = ""  # CelebA: img_align_celeba/; folder: the training images
    eval_data_root: str = ""  # folder datasets: held-out images (default: data_root)
    anno_path: str = ""  # CelebA list_eval_partition.txt
    anno_train_index: int = 0
    anno_eval_index: int = 2
    train_masks_root: str = ""  # NVIDIA training masks; empty: free-form masks on the fly
    eval_masks_root: str = ""  # NVIDIA testing masks or `ctsdg masks` output; empty: free-form
    mask_ratio_range: tuple[float, float] = (0.05, 0.6)  # free-form training masks
    image_load_size: tuple[int, int] = (256, 256)
    sigma: float = 2.0  # Canny sigma
    structure: Literal["correct", "authors"] = "correct"  # structure-input convention
    num_parallel_workers: int = 4

    # --- model
    width: int = 64
    align_corners: bool = False  # True only for the MindSpore port's variant

    # --- training
    seed: int = 42
    stage: Literal["all", "train", "finetune"] = "all"
    gen_lr_train: float = 2e-4
    gen_lr_finetune: float = 5e-5
    dis_lr_multiplier: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 6
    train_iter: int = 350_000
    finetune_iter: int = 150_000
    finetune_freeze_bn: Literal["encoder", "all"] = "encoder"
    pretrained_vgg: str = ""  # torchvision vgg16-397923af.pth, or "random" (tests, demo)
    pretrained: str = ""  # initial weights (any checkpoint load_generator accepts)
    resume: str = ""  # "", "auto" (newest in save_path) or a checkpoint path
    save_path: str = "runs/ctsdg"
    log_frequency_step: int = 1000
    save_checkpoint_steps: int = 10_000
    keep_checkpoint_max: int = 3
    sample_every: int = 5000  # PNG grid every N iterations (0: never)
    val_every: int = 0  # validation PSNR/SSIM every N iterations (0: never)
    val_samples: int = 200
    tensorboard: bool = True
    progress: bool = True

    hole_loss_w: float = 60.0
    valid_loss_w: float = 10.0
    perceptual_loss_w: float = 0.1
    style_loss_w: float = 250.0
    adversarial_loss_w: float = 0.1
    intermediate_loss_w: float = 1.0

    # --- speed
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile the generator

    # --- evaluation
    checkpoint_path: str = ""
    output_path: str = ""  # save composites here when set
    test_batch_size: int = 1
    method: Literal["ctsdg", "telea", "ns"] = "ctsdg"
    eval_limit: int = 0  # evaluate only the first N images (0: all)
    lpips_weights: str = ""  # LPIPS VGG linear layers (lpips' vgg.pth, v0.1); with pretrained_vgg
    inpaint_radius: int = 5  # neighbourhood radius of the OpenCV baselines (method telea / ns)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError naming the key for any value out of range."""
        positive = [
            "batch_size", "test_batch_size", "width", "log_frequency_step",
            "save_checkpoint_steps", "keep_checkpoint_max", "val_samples",
        ]  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise InputError(f"config key {key}: must be at least 1, got {getattr(self, key)}")
        for key in (
            "train_iter",
            "finetune_iter",
            "sample_every",
            "val_every",
            "eval_limit",
            "num_parallel_workers",
            "anno_train_index",
            "anno_eval_index",
        ):
            if getattr(self, key) < 0:
                raise InputError(f"config key {key}: must be >= 0, got {getattr(self, key)}")
        for key in ("gen_lr_train", "gen_lr_finetune", "dis_lr_multiplier", "sigma"):
            if not getattr(self, key) > 0:
                raise InputError(f"config key {key}: must be > 0, got {getattr(self, key)}")
        if self.inpaint_radius < 1:
            raise InputError(
                f"config key inpaint_radius: must be at least 1, got {self.inpaint_radius}"
            )
        height, width = self.image_load_size
        if height % 128 or width % 128 or height < 128 or width < 128:
            raise InputError(
                f"config key image_load_size: {list(self.image_load_size)} must be multiples of "
                "128 (seven stride-2 levels), e.g. [256, 256]"
            )
        if self.batch_size * (height // 128) * (width // 128) < 2:
            raise InputError(
                f"config key batch_size: 1 at {height}x{width} leaves the generator's 1x1 "
                "bottleneck a single value per channel; BatchNorm training needs batch_size >= 2"
            )
        low, high = self.mask_ratio_range
        if not 0 <= low < high <= 1:
            raise InputError(
                f"config key mask_ratio_range: expected 0 <= low < high <= 1, got {[low, high]}"
            )
        if not all(0 <= b < 1 for b in self.adam_betas):
            raise InputError(
                f"config key adam_betas: expected two values in [0, 1), got {list(self.adam_betas)}"
            )
        if self.device != "auto" and not (
            self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")
        ):
            raise InputError(
                f"config key device: expected auto, cpu, cuda or cuda:N, got {self.device!r}"
            )

    @property
    def loss_weights(self):
        from ctsdg.losses import LossWeights

        return LossWeights(
            hole=self.hole_loss_w, valid=self.valid_loss_w, perceptual=self.perceptual_loss_w,
            style=self.style_loss_w, adversarial=self.adversarial_loss_w,
            intermediate=self.intermediate_loss_w,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from ctsdg.fileio import atomic_write

        text = self.to_yaml()
        return atomic_write(path, lambda tmp: tmp.write_text(text))


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check and convert one value to the field's declared type, or raise InputError."""
    hint = typing.get_type_hints(Config)[key] if isinstance(annotation, str) else annotation
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise InputError(
                f"config key {key}: expected one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin is tuple:
        item_types = get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise InputError(
                f"config key {key}: expected a list of {len(item_types)} values, got {value!r}"
            )
        return tuple(_scalar(key, v, t) for v, t in zip(value, item_types, strict=True))
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"unsupported annotation for {key}")
    return _scalar(key, value, hint)


def _scalar(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"config key {key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InputError(f"config key {key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InputError(f"config key {key}: expected a number, got {value!r}")
    if kind is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"config key {key}: expected a string, got {value!r}")
    raise AssertionError(f"unsupported type {kind} for {key}")


def _apply(values: dict[str, Any], updates: dict[str, Any], source: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in updates.items():
        if key in SEED_ONLY_KEYS:
            log.warning("%s: ignoring seed key %r (not used by ctsdg)", source, key)
            continue
        if key not in fields:
            raise InputError(
                f"{source}: unknown config key {key!r}; valid keys: {', '.join(fields)}"
            )
        values[key] = _coerce(key, value, fields[key].type)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["batch_size=8", "image_load_size=[512,512]"]`` -> values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise InputError(f"override {item!r}: value is not valid YAML") from None
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults, then ``base`` (e.g. a command's own defaults), the YAML file, the overrides."""
    values: dict[str, Any] = {}
    if base:
        _apply(values, base, "defaults")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(
                f"{path}: expected a mapping of config keys, got {type(data).__name__}"
            )
        _apply(values, data, str(path))
    if overrides:
        items = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        _apply(values, items, "command line")
    return Config(**values)


def shipped_config(name: str) -> Path:
    """Path of a config that ships with the package (``celeba``, ``places2``, ...)."""
    path = Path(__file__).parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise InputError(f"no shipped config {name!r}; available: {', '.join(available)}")
    return path


def resolve_config_path(value: str) -> Path:
    """A config file path, or the name of a shipped config."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists() or os.sep in value:
        return path
    return shipped_config(value)


__all__ = [
    "SEED_ONLY_KEYS",
    "Config",
    "load_config",
    "parse_overrides",
    "resolve_config_path",
    "shipped_config",
]
