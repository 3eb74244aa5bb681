"""The run configuration: defaults, then a YAML file, then ``key=value`` overrides.

Key names follow the MindSpore model-zoo port's ``default_config.yaml`` wherever it has
one, so its config files keep working; keys that only mattered to MindSpore's launcher are
accepted and ignored with a warning. Unknown keys are errors that list the valid ones.

Types, ranges and choices are declared on the fields (pydantic) and checked by one validator;
every failure becomes an `InputError` of one line naming the key. A `Config` remembers where each
value came from (`Config.origin`), so a command can tell a value typed on its command line from
one in a config file or a default without reading the file again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ctsdg.choices import Precision, Structure
from ctsdg.data.freeform import FREE_FORM_TRAIN_RANGE
from ctsdg.errors import InputError, did_you_mean, shown
from ctsdg.losses import LossWeights
from ctsdg.models.generator import MAX_WIDTH, SIZE_MULTIPLE

log = logging.getLogger(__name__)

# Seed keys that only configured MindSpore's launcher or model export; torchrun, `device` and
# the architecture decide these here.
SEED_ONLY_KEYS = frozenset(
    {
        "device_target",
        "device_num",
        "rank_id",
        "device_id",
        "is_distributed",
        "torch_pretrained_vgg",
        "file_format",
        "image_in_channels",
        "edge_in_channels",
        "out_channels",
        "enable_modelarts",
        "data_url",
        "train_url",
        "checkpoint_url",
        "data_path",
        "load_path",
        "enable_profiling",
        "start_iter",
        "verbose_step",
    }
)

#: Where a value came from, lowest precedence first (see `Config.origin`).
ORIGINS = ("default", "base", "file", "override")


def _none_is_empty(value: Any) -> Any:
    # An empty YAML value (``data_root:``) is None; for a path it means "not set".
    return "" if value is None else value


Text = Annotated[str, BeforeValidator(_none_is_empty)]
AtLeastOne = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Unit = Annotated[float, Field(ge=0, le=1)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Weight = Annotated[float, Field(ge=0)]  # a loss weight (0 switches its term off)
Device = Annotated[
    str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
]
# torch.manual_seed takes 64-bit integers; numpy's SeedSequence needs them non-negative.
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]

_WEIGHTS = LossWeights()


class Config(BaseModel):
    """Every option of training, evaluation and the demo. See the README for each key.

    Paths may be empty where the chosen dataset does not need them. Instances are immutable;
    `replace` returns a changed copy, validated again.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, coerce_numbers_to_str=True
    )

    # --- data
    dataset: Literal["celeba", "folder", "demo"] = "celeba"
    data_root: Text = ""  # CelebA: img_align_celeba/; folder: the training images
    eval_data_root: Text = ""  # folder datasets: held-out images (default: data_root)
    anno_path: Text = ""  # CelebA list_eval_partition.txt
    anno_train_index: Count = 0
    anno_eval_index: Count = 2
    train_masks_root: Text = ""  # NVIDIA training masks; empty: free-form masks on the fly
    eval_masks_root: Text = ""  # NVIDIA testing masks or `ctsdg masks` output; empty: free-form
    mask_ratio_range: tuple[Unit, Unit] = FREE_FORM_TRAIN_RANGE  # free-form training masks
    image_load_size: tuple[AtLeastOne, AtLeastOne] = (256, 256)
    sigma: Positive = 2.0  # Canny sigma
    structure: Structure = "correct"  # structure-input convention of new training
    num_parallel_workers: Count = 4

    # --- model
    width: Annotated[int, Field(ge=1, le=MAX_WIDTH)] = 64
    align_corners: bool = False  # True only for the MindSpore port's variant

    # --- training
    seed: Seed = 42
    stage: Literal["all", "train", "finetune"] = "all"
    gen_lr_train: Positive = 2e-4
    gen_lr_finetune: Positive = 5e-5
    dis_lr_multiplier: Positive = 0.1
    adam_betas: tuple[Beta, Beta] = (0.9, 0.999)
    batch_size: AtLeastOne = 6
    train_iter: Count = 350_000
    finetune_iter: Count = 150_000
    finetune_freeze_bn: Literal["encoder", "all"] = "encoder"
    pretrained_vgg: Text = ""  # torchvision vgg16-397923af.pth, "auto" (ctsdg.weights), "random"
    pretrained: Text = ""  # initial weights (any checkpoint load_generator accepts)
    resume: Text = ""  # "", "auto" (newest in save_path) or a checkpoint path
    save_path: Annotated[
        Text, Field(min_length=1, description="a run folder (empty would mean the current one)")
    ] = "runs/ctsdg"
    log_frequency_step: AtLeastOne = 1000
    save_checkpoint_steps: AtLeastOne = 10_000
    keep_checkpoint_max: AtLeastOne = 3
    sample_every: Count = 5000  # PNG grid every N iterations (0: never)
    val_every: Count = 0  # validation PSNR/SSIM every N iterations (0: never)
    val_samples: AtLeastOne = 200
    tensorboard: bool = True
    progress: bool = True

    hole_loss_w: Weight = _WEIGHTS.hole
    valid_loss_w: Weight = _WEIGHTS.valid
    perceptual_loss_w: Weight = _WEIGHTS.perceptual
    style_loss_w: Weight = _WEIGHTS.style
    adversarial_loss_w: Weight = _WEIGHTS.adversarial
    intermediate_loss_w: Weight = _WEIGHTS.intermediate

    # --- speed
    device: Device = "auto"  # auto, cpu, cuda, cuda:N
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile the generator

    # --- evaluation
    checkpoint_path: Text = ""
    output_path: Text = ""  # reports, composites/, ground_truth/, masks/ here when set
    test_batch_size: AtLeastOne = 1
    method: Literal["ctsdg", "telea", "ns", "folder"] = "ctsdg"
    predictions: Text = ""  # method=folder: another method's results, named as composites/
    eval_limit: Count = 0  # evaluate only the first N images (0: all)
    lpips_weights: Text = ""  # LPIPS VGG linear layers (lpips' vgg.pth, v0.1); with pretrained_vgg
    fid_weights: Text = ""  # FID Inception (pytorch-fid's pt_inception-...pth) or auto
    inpaint_radius: AtLeastOne = 5  # neighbourhood radius of the OpenCV baselines

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise InputError(_one_line(err)) from None

    @model_validator(mode="before")
    @classmethod
    def _strict_types(cls, values: Any) -> Any:
        """true/false only for the switches, and never for a number or a name: pydantic would
        read ``batch_size=true`` as 1 and ``align_corners: "no"`` as False."""
        if not isinstance(values, dict):
            return values
        for key, value in values.items():
            field = cls.model_fields.get(key)
            if field is None:
                continue
            if field.annotation is bool and not isinstance(value, bool):
                raise ValueError(f"config key {key}: expected true or false, got {shown(value)}")
            items = value if isinstance(value, (list, tuple)) else [value]
            if field.annotation is not bool and any(isinstance(v, bool) for v in items):
                raise ValueError(
                    f"config key {key}: true/false is not a value of this key, got {shown(value)}"
                )
        return values

    @model_validator(mode="after")
    def _check_together(self) -> Config:
        """The rules that involve more than one key."""
        height, width = self.image_load_size
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(
                f"config key image_load_size: {list(self.image_load_size)} must be multiples of "
                f"{SIZE_MULTIPLE} (seven stride-2 levels), e.g. [256, 256]"
            )
        if self.batch_size * (height // SIZE_MULTIPLE) * (width // SIZE_MULTIPLE) < 2:
            raise ValueError(
                f"config key batch_size: 1 at {height}x{width} leaves the generator's 1x1 "
                "bottleneck a single value per channel; BatchNorm training needs batch_size >= 2"
            )
        low, high = self.mask_ratio_range
        if not low < high:
            raise ValueError(
                f"config key mask_ratio_range: expected 0 <= low < high <= 1, got {[low, high]}"
            )
        return self

    def __eq__(self, other: object) -> bool:
        # The values, not where they came from (pydantic would compare the origins too).
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(tuple(self.model_dump().items()))

    # --- where values came from

    def origin(self, key: str) -> str:
        """Where ``key``'s value came from: ``default``, ``base`` (a command's own defaults),
        ``file`` (the YAML file, see `file`) or ``override`` (``key=value``)."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return self._origins.get(key, "default")

    @property
    def sources(self) -> dict[str, str]:
        """``{key: origin}`` for every key not left at its default."""
        return dict(self._origins)

    @property
    def file(self) -> Path | None:
        """The YAML file this config was read from, if any."""
        return self._file

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied; they count as overrides."""
        new = type(self)(**{**self.model_dump(), **changes})
        new._origins = {**self._origins, **dict.fromkeys(changes, "override")}
        new._file = self._file
        return new

    # --- output

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(
            hole=self.hole_loss_w,
            valid=self.valid_loss_w,
            perceptual=self.perceptual_loss_w,
            style=self.style_loss_w,
            adversarial=self.adversarial_loss_w,
            intermediate=self.intermediate_loss_w,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from ctsdg.fileio import atomic_write

        text = self.to_yaml()
        return atomic_write(path, lambda tmp: tmp.write_text(text))


KEYS: tuple[str, ...] = tuple(Config.model_fields)


def _one_line(err: ValidationError) -> str:
    """The first problem of a pydantic error as ``config key KEY: what was expected, got X``."""
    first = err.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        return _unknown_key(loc[0])
    if first["type"] == "value_error":  # the cross-key rules above word their own message
        return str(first["ctx"]["error"])
    if not loc:
        return f"config: {first['msg']}"
    where = loc[0] + (f"[{loc[1]}]" if len(loc) > 1 else "")
    message = first["msg"]
    message = message[0].lower() + message[1:]
    description = Config.model_fields[loc[0]].description if loc[0] in KEYS else None
    if description:  # the field words what it expects better than the generic rule
        message = f"expected {description}"
    elif first["type"] == "literal_error":
        message = "expected " + message.removeprefix("input should be ")
    return f"config key {where}: {message}, got {shown(first['input'])}"


def _unknown_key(key: str) -> str:
    hint = did_you_mean(key, KEYS)
    return f"unknown config key {key!r}" + (hint or f"; valid keys: {', '.join(KEYS)}")


def _collect(updates: dict[str, Any], source: str) -> dict[str, Any]:
    """``updates`` without the MindSpore port's launcher keys (warned about); unknown keys are
    errors."""
    kept = {}
    for key, value in updates.items():
        if key in SEED_ONLY_KEYS:
            log.warning("%s: ignoring seed key %r (not used by ctsdg)", source, key)
        elif key not in KEYS:
            raise InputError(f"{source}: {_unknown_key(key)}")
        else:
            kept[key] = value
    return kept


#: A config file is a few kilobytes; these bound what a hostile one can make the parser build.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_ALIASES = 20  # each alias (*name) repeats a node: a few keep "billion laughs" small
MAX_YAML_DEPTH = 20  # deeper nesting would end in a RecursionError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice (PyYAML keeps the last silently), keys
    that are not plain names (``? [a, b]``), and more than `MAX_YAML_ALIASES` aliases."""

    _aliases = 0
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        problem = None
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                problem = f"more than {MAX_YAML_ALIASES} aliases (*name); a config file needs none"
        if self._depth >= MAX_YAML_DEPTH:
            problem = f"nested more than {MAX_YAML_DEPTH} deep; a config value is flat"
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # ``? [a, b]``: unhashable in Python
                kind = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not {kind}", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a YAML config file; InputError for anything that is not one."""
    from ctsdg.fileio import input_kind

    path = Path(path)
    try:
        kind = input_kind(path, "a config file")
    except InputError:
        if not os.path.lexists(path):
            raise InputError(f"{path}: config file not found") from None
        raise  # a FIFO or device (/dev/zero), a name too long, a link loop: the real reason
    if kind == "folder":
        raise InputError(f"{path}: is a directory; expected a YAML config file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise InputError(f"{path}: over {MAX_CONFIG_BYTES >> 20} MB; not a config file")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}); expected YAML") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        raise InputError(f"{path}: not valid YAML ({detail})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["batch_size=8", "image_load_size=[512,512]"]`` -> values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
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
    layers: list[tuple[str, dict[str, Any]]] = []
    if base:
        layers.append(("base", _collect(base, "defaults")))
    if path is not None:
        layers.append(("file", _collect(read_config_file(path), str(path))))
    if overrides:
        items = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        layers.append(("override", _collect(items, "command line")))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        values.update(layer)
        origins.update(dict.fromkeys(layer, origin))
    config = Config(**values)
    config._origins = origins
    config._file = Path(path) if path is not None else None
    return config


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
    "KEYS",
    "ORIGINS",
    "SEED_ONLY_KEYS",
    "Config",
    "load_config",
    "parse_overrides",
    "read_config_file",
    "resolve_config_path",
    "shipped_config",
]
