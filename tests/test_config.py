"""The config: declared types, ranges and choices, one-line errors, where values came from."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ctsdg.cli import main
from ctsdg.config import KEYS, Config, load_config, parse_overrides, shipped_config
from ctsdg.data.datasets import FREE_FORM_TRAIN_RANGE
from ctsdg.errors import InputError
from ctsdg.losses import LossWeights

# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "override,key,expected",
    [
        ("seed=-5", "seed", "greater than or equal to 0"),
        (f"seed={2**64}", "seed", "less than or equal to"),
        ("batch_size=0", "batch_size", "greater than or equal to 1"),
        ("train_iter=-1", "train_iter", "greater than or equal to 0"),
        ("sigma=0", "sigma", "greater than 0"),
        ("style_loss_w=-1", "style_loss_w", "greater than or equal to 0"),
        ("gen_lr_train=.nan", "gen_lr_train", "finite number"),
        ("stage=pretrain", "stage", "expected 'all', 'train' or 'finetune'"),
        ("width=wide", "width", "valid integer"),
        ("width=8.5", "width", "valid integer"),
        ("tensorboard=maybe", "tensorboard", "expected true or false"),
        ("image_load_size=[100,128]", "image_load_size", "multiples of 128"),
        ("image_load_size=[128]", "image_load_size[1]", "required"),
        ("adam_betas=[0.9,1.0]", "adam_betas[1]", "less than 1"),
        ("mask_ratio_range=[0.5,0.2]", "mask_ratio_range", "low < high"),
        ("mask_ratio_range=[0.1,1.5]", "mask_ratio_range[1]", "less than or equal to 1"),
        ("device=gpu", "device", "expected auto, cpu, cuda or cuda:N"),
        ('save_path=""', "save_path", "expected a run folder"),
        ("batch_size=1", "batch_size", "BatchNorm training needs batch_size >= 2"),
        ("structure=wrapped", "structure", "expected 'correct' or 'authors'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, key, expected) -> None:
    overrides = [override] + (["image_load_size=[128,128]"] if key == "batch_size" else [])
    with pytest.raises(InputError) as info:
        load_config(overrides=overrides)
    message = str(info.value)
    assert message.startswith(f"config key {key}:"), message
    assert expected in message and "\n" not in message


def test_values_are_coerced_to_the_declared_types() -> None:
    config = load_config(
        overrides=[
            "gen_lr_train=1e-4",  # YAML reads this as a string
            "width=8.0",
            "save_path=2024",
            "data_root=",
            "image_load_size=[128, 256]",
            "tensorboard=false",
            "adam_betas=[0, 0.99]",
        ]
    )
    assert config.gen_lr_train == 1e-4 and isinstance(config.gen_lr_train, float)
    assert config.width == 8 and isinstance(config.width, int)
    assert config.save_path == "2024"
    assert config.data_root == ""
    assert config.image_load_size == (128, 256)
    assert config.tensorboard is False
    assert config.adam_betas == (0.0, 0.99)
    assert load_config(overrides={"anno_path": None}).anno_path == ""  # empty YAML value


def test_defaults_are_defined_once() -> None:
    config = Config()
    assert config.loss_weights == LossWeights()
    assert config.mask_ratio_range == FREE_FORM_TRAIN_RANGE


def test_config_is_immutable_and_replace_validates() -> None:
    config = Config()
    with pytest.raises(Exception, match="frozen"):
        config.width = 8  # type: ignore[misc]
    assert config.replace(width=8).width == 8
    with pytest.raises(InputError, match="config key width"):
        config.replace(width=0)
    with pytest.raises(InputError, match="unknown config key 'bogus'; valid keys: dataset"):
        Config(bogus=1)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    config = load_config(overrides=["width=16", "image_load_size=[128,128]"])
    config.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config and again.to_dict() == config.to_dict()


# --------------------------------------------------------------------------- origins


def test_each_value_records_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("width: 16\nstructure: authors\nseed: 1\n")
    config = load_config(path, ["seed=7"], base={"batch_size": 4, "width": 32})
    assert config.origin("width") == "file"  # the file comes after a command's defaults
    assert config.origin("structure") == "file"
    assert config.origin("seed") == "override" and config.seed == 7
    assert config.origin("batch_size") == "base"
    assert config.origin("sigma") == "default"
    assert config.sources == {
        "width": "file",
        "structure": "file",
        "seed": "override",
        "batch_size": "base",
    }
    assert config.file == path
    changed = config.replace(method="telea")
    assert changed.origin("method") == "override" and changed.origin("width") == "file"
    assert changed.file == path
    with pytest.raises(KeyError):
        config.origin("bogus")
    assert load_config().file is None and load_config().sources == {}


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"width: 16\nwidth: 32\n", "duplicate key 'width'"),
        (b"data_root: caf\xe9\n", "not UTF-8 text"),
        (b"- width\n- 16\n", "expected a mapping of config keys, got list"),
        (b"width: [16\n", "not valid YAML"),
        (b"widht: 16\n", "unknown config key 'widht'; did you mean 'width'?"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, content: bytes, expected) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_config_path_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory; expected a YAML config file"):
        load_config(tmp_path)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    assert load_config(_empty(tmp_path)) == Config()


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    return path


def test_seed_launcher_keys_are_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("device_target: Ascend\nis_distributed: false\nwidth: 16\n")
    with caplog.at_level(logging.WARNING, logger="ctsdg.config"):
        config = load_config(path)
    assert config.width == 16
    assert "ignoring seed key 'device_target'" in caplog.text


def test_overrides_need_key_and_value() -> None:
    assert parse_overrides(["a=1", "b=[1, 2]", "c="]) == {"a": 1, "b": [1, 2], "c": ""}
    for bad in ("width", "=3", "width=[1,"):
        with pytest.raises(InputError, match="override"):
            parse_overrides([bad])


def test_shipped_configs_use_known_keys() -> None:
    for name in ("celeba", "places2", "paris_streetview", "demo"):
        assert set(load_config(shipped_config(name)).sources) <= set(KEYS)


# --------------------------------------------------------------------------- command line


def test_cli_accepts_overrides_anywhere_and_reports_config_errors(tmp_path: Path, capsys) -> None:
    save = f"save_path={tmp_path / 'run'}"
    # Overrides before, between and after the flags (argparse alone takes one positional run).
    line = ["train", "finetune_iter=0", "--config", "demo", "--dry-run", save, "width=8"]
    assert main(line) == 0
    out = capsys.readouterr().out
    assert "finetune_iter: 0" in out and "width: 8" in out and "stages [('train', 320)]" in out
    assert main(["train", "--config", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"ctsdg: error: {tmp_path}: is a directory; expected a YAML config file\n"
    assert main(["train", "--config", "demo", "--dry-run", "seed=-5"]) == 2
    assert capsys.readouterr().err.startswith("ctsdg: error: config key seed:")
    assert main(["train", "--config", "demo", "--dry-run", "stray"]) == 2
    assert "override 'stray': expected key=value" in capsys.readouterr().err
    # an unknown flag is still a usage error: one line, status 2
    assert main(["train", "--config", "demo", "a=1", "--bogus", "b=2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --------------------------------------------------------------------------- hostile files


def _laughs(levels: int, fan: int) -> str:
    """The "billion laughs": each level a list of ``fan`` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


_BOMB = _laughs(9, 9)  # 9 ** 9 strings if expanded


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"? [a, b]\n: 1\n", "a key must be a name, not a list"),
        (b"? {a: 1}\n: 1\n", "a key must be a name, not a mapping"),
        (_BOMB.encode(), "more than 20 aliases"),
        (b"sigma: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than 20 deep"),
    ],
)
def test_hostile_yaml_is_a_short_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message and "\n" not in message and len(message) < 600, message[:600]


def test_an_alias_bomb_under_a_valid_key_is_bounded(tmp_path: Path) -> None:
    """Under ``sigma``: 4 ** 5 values through 16 aliases are parsed, and refused in a short
    line; 9 ** 9 through 72 aliases are refused by the parser before anything expands."""
    levels = ["&l0 [lol, lol, lol, lol]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 4)}]" for i in range(1, 5)]
    small = tmp_path / "small.yaml"
    small.write_text(f"sigma: [{', '.join(levels)}]\n")
    big = tmp_path / "big.yaml"
    big.write_text(
        "sigma:\n" + "".join(f"  - {line.split(': ', 1)[1]}\n" for line in _BOMB.splitlines())
    )
    for path, expected in ((small, "config key sigma: "), (big, "more than 20 aliases")):
        with pytest.raises(InputError) as info:
            load_config(path)
        message = str(info.value)
        assert expected in message and "\n" not in message and len(message) < 600, message[:600]


def test_special_files_and_huge_files_are_refused_by_their_reason(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"/dev/zero: not a regular file \(a character device\)"):
        load_config("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(InputError, match="over 1 MB; not a config file"):
        load_config(big)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("batch_size=true", "config key batch_size: true/false is not a value of this key"),
        ("image_load_size=[true, true]", "config key image_load_size: true/false"),
        ("sigma=false", "config key sigma: true/false"),
        ("align_corners='no'", "config key align_corners: expected true or false, got 'no'"),
        ("tensorboard=1", "config key tensorboard: expected true or false, got 1"),
        ("width=4096", "config key width: input should be less than or equal to 128"),
    ],
)
def test_values_of_the_wrong_type_are_refused(override: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        load_config(overrides=[override])
    assert str(info.value).startswith(expected), str(info.value)
