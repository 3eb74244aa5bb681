"""Checkpoints in every format a user has: detection, loading, conversion, and refusals."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

import ctsdg
from ctsdg.checkpoints import (
    ModelConfig,
    checkpoint_path,
    latest_checkpoint,
    load_weights,
    save_training_checkpoint,
    save_weights,
)
from ctsdg.checkpoints.authors import (
    authors_name_to_ours,
    authors_state_to_ours,
    our_name_to_authors,
    ours_state_to_authors,
)
from ctsdg.cli import main
from ctsdg.errors import InputError
from ctsdg.models import Discriminator, Generator
from tests.golden import DATA, authors_state_dict, manifest
from tests.mindspore_writer import authors_state_to_mindspore, write_mindspore_checkpoint

NETWORKS = {"generator": Generator, "discriminator": Discriminator}


def _small(width: int = 8, seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    return Generator(width=width), Discriminator(width=width)


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


# --------------------------------------------------------------------------- authors' names


@pytest.mark.parametrize("network", NETWORKS)
def test_authors_names_map_both_ways_and_cover_the_model(network: str) -> None:
    with torch.device("meta"):
        ours = NETWORKS[network]().state_dict()
    covered = set()
    for name, shape in manifest()[network].items():
        mapped = authors_name_to_ours(name, network)
        if ".features.0." in name:  # the discriminator's alias of conv1
            assert mapped is None
            continue
        assert mapped in ours, name
        assert list(ours[mapped].shape) == shape, name
        assert our_name_to_authors(mapped, network) == name
        covered.add(mapped)
    assert covered == set(ours)


def test_authors_round_trip_keeps_aliases() -> None:
    _, discriminator = _small()
    theirs = ours_state_to_authors(discriminator.state_dict(), "discriminator")
    assert "texture_branch.features.0.weight_orig" in theirs
    assert "texture_branch.conv1.0.weight_orig" in theirs
    back = authors_state_to_ours({f"module.{k}": v for k, v in theirs.items()}, "discriminator")
    _same_state(back, discriminator.state_dict())


# --------------------------------------------------------------------------- the four kinds


def _authors_file(path: Path, generator: Generator, discriminator: Discriminator) -> Path:
    torch.save(
        {
            "n_iter": 1234,
            "generator": ours_state_to_authors(generator.state_dict(), "generator"),
            "discriminator": ours_state_to_authors(discriminator.state_dict(), "discriminator"),
        },
        path,
    )
    return path


def test_authors_checkpoint(tmp_path: Path) -> None:
    generator, discriminator = _small()
    path = _authors_file(tmp_path / "authors.pth", generator, discriminator)
    weights = load_weights(path)
    assert (weights.format, weights.structure, weights.model) == (
        "authors",
        "authors",
        ModelConfig(width=8, align_corners=False),
    )
    assert weights.extra["iteration"] == 1234
    _same_state(ctsdg.load_generator(path).state_dict(), generator.state_dict())
    _same_state(ctsdg.load_discriminator(path).state_dict(), discriminator.state_dict())
    assert not ctsdg.load_generator(path).training


def test_authors_bare_generator_state_dict(tmp_path: Path) -> None:
    generator, _ = _small()
    path = tmp_path / "g.pth"
    torch.save(ours_state_to_authors(generator.state_dict(), "generator"), path)
    _same_state(ctsdg.load_generator(path).state_dict(), generator.state_dict())
    with pytest.raises(InputError, match="holds no discriminator"):
        ctsdg.load_discriminator(path)


def test_training_checkpoint_and_run_folder(tmp_path: Path) -> None:
    generator, discriminator = _small()
    run = tmp_path / "run"
    for iteration in (10, 200, 30):
        torch.manual_seed(iteration)
        g = Generator(width=8)
        save_training_checkpoint(
            checkpoint_path(run, iteration),
            {
                "model": {"width": 8, "align_corners": False},
                "structure": "correct",
                "iteration": iteration,
                "generator": (generator if iteration == 200 else g).state_dict(),
                "discriminator": discriminator.state_dict(),
                "optimizer_g": torch.optim.Adam(g.parameters()).state_dict(),
            },
        )
    assert latest_checkpoint(run).name == "checkpoint_0000200.pt"
    weights = load_weights(run)
    assert weights.format == "ctsdg-checkpoint" and weights.extra["iteration"] == 200
    _same_state(ctsdg.load_generator(run).state_dict(), generator.state_dict())
    _same_state(ctsdg.load_discriminator(run).state_dict(), discriminator.state_dict())
    assert not list(run.rglob("*.tmp"))  # atomic writes leave nothing behind


def test_weights_file_via_convert_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    generator, discriminator = _small()
    source = _authors_file(tmp_path / "authors.pth", generator, discriminator)
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(source), str(out)]) == 0
    assert "structure inputs 'authors'" in capsys.readouterr().out
    weights = load_weights(out)
    assert weights.format == "ctsdg-weights" and weights.structure == "authors"
    assert weights.model == ModelConfig(8, False)
    _same_state(weights.build_generator().state_dict(), generator.state_dict())
    _same_state(weights.build_discriminator().state_dict(), discriminator.state_dict())
    # The recorded convention can be overridden.
    assert main(["convert", str(source), str(out), "--structure", "correct", "--overwrite"]) == 0
    assert load_weights(out).structure == "correct"
    assert main(["convert", str(source), str(tmp_path / "model.pt")]) == 2


def test_mindspore_generator_with_sibling_discriminator(tmp_path: Path) -> None:
    state = authors_state_dict("discriminator")
    write_mindspore_checkpoint(
        tmp_path / "discriminator_000100.ckpt",
        authors_state_to_mindspore(state, "discriminator"),
    )
    weights = load_weights(tmp_path / "discriminator_000100.ckpt")
    assert weights.format == "mindspore" and weights.generator is None
    _same_state(
        weights.build_discriminator().state_dict(), authors_state_to_ours(state, "discriminator")
    )
    with pytest.raises(InputError, match="holds no generator"):
        ctsdg.load_generator(tmp_path / "discriminator_000100.ckpt")


def test_shipped_tiny_mindspore_file_is_read_but_is_not_ctsdg() -> None:
    with pytest.raises(InputError, match=r"tiny\.ckpt"):
        load_weights(DATA / "mindspore" / "tiny.ckpt")


# --------------------------------------------------------------------------- refusals


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize(
    "name,content",
    [
        ("empty.pth", b""),
        ("text.ckpt", b"hello, this is not a checkpoint\n"),
        ("random.bin", bytes(range(256)) * 4),
    ],
)
def test_garbage_files_get_one_line_errors(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        ctsdg.load_generator(path)
    message = str(err.value)
    assert name in message and "\n" not in message and "expected" in message


def test_pickled_code_is_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"generator": _Payload()}, path)
    with pytest.raises(InputError, match="refusing to unpickle"):
        ctsdg.load_generator(path)
    assert "unpickled!" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(InputError, match=r"raw\.pkl"):
        ctsdg.load_generator(raw)
    assert "unpickled!" not in capsys.readouterr().out


def test_other_torch_and_zip_files(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="not a CTSDG checkpoint"):
        ctsdg.load_generator(other)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(InputError, match=r"data\.zip"):
        ctsdg.load_generator(archive)


def test_safetensors_without_metadata_and_wrong_shapes(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(bare))
    with pytest.raises(InputError, match="without ctsdg metadata"):
        ctsdg.load_generator(bare)
    generator, _ = _small(width=8)
    wrong = tmp_path / "wrong.safetensors"
    save_weights(
        wrong, model=ModelConfig(width=16), structure="correct", generator=generator.state_dict()
    )
    with pytest.raises(InputError, match="do not fit the model: wrong shape"):
        ctsdg.load_generator(wrong)


def test_missing_paths_and_empty_run_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        ctsdg.load_generator(tmp_path / "nope.pth")
    with pytest.raises(InputError, match="no training checkpoint"):
        ctsdg.load_generator(tmp_path)
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "x.safetensors")]) == 2


# --------------------------------------------------------------------------- untrusted contents


def _weights_with(tmp_path: Path, name: str, **metadata: str) -> Path:
    """A width-8 weights file whose metadata entries are replaced by ``metadata``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = save_weights(
        tmp_path / "source.safetensors",
        model=ModelConfig(8),
        structure="correct",
        generator=_small()[0].state_dict(),
    )
    with safe_open(str(source), "pt") as f:
        original = f.metadata()
    path = tmp_path / name
    save_file(load_file(source), path, metadata={**original, **metadata})
    return path


@pytest.mark.parametrize(
    "metadata,expected",
    [
        ({"model": "[8, false]"}, "model config must be a mapping with width and align_corners"),
        ({"model": "null"}, "model config must be a mapping"),
        ({"model": '"abc"'}, "model config must be a mapping"),
        ({"model": '{"width": -16, "align_corners": false}'}, "width must be an integer from 1"),
        ({"model": '{"width": 4096, "align_corners": false}'}, "to 128, got 4096"),
        ({"model": '{"width": true, "align_corners": false}'}, "width must be an integer"),
        ({"model": '{"width": 8, "align_corners": "no"}'}, "align_corners must be true or false"),
        ({"model": '{"width": 8}'}, "model config lacks align_corners"),
        ({"image_size": "[1280000, 1280000]"}, "image_size must be two multiples of 128 up to"),
        ({"image_size": "[-128, -128]"}, "image_size must be two multiples of 128"),
        ({"image_size": '"big"'}, "image_size must be two multiples of 128"),
    ],
)
def test_metadata_is_checked_and_bounded_before_building(
    tmp_path: Path, metadata: dict, expected: str
) -> None:
    path = _weights_with(tmp_path, "bad.safetensors", **metadata)
    with pytest.raises(InputError) as info:
        load_weights(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_weights_that_are_not_finite_tensors_are_refused(tmp_path: Path, capsys) -> None:
    state = _small()[0].state_dict()
    first = next(iter(state))
    bad = {**state, first: "not a tensor"}
    path = save_training_checkpoint(
        tmp_path / "checkpoint_0000001.pt", {"model": ModelConfig(8).to_dict(), "generator": bad}
    )
    for command in (["convert", str(path), str(tmp_path / "x.safetensors")],):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"generator weight '{first}' is str" in err
    torch.save({"generator": {"ec_texture_1.conv.weight": [1, 2]}}, tmp_path / "authors.pth")
    with pytest.raises(InputError, match=r"'ec_texture_1\.conv\.weight' is list"):
        load_weights(tmp_path / "authors.pth")
    nan = {k: v.clone() for k, v in state.items()}
    name = next(k for k, v in nan.items() if v.is_floating_point() and v.numel() > 1)
    nan[name].view(-1)[1] = float("nan")
    path = save_weights(
        tmp_path / "nan.safetensors", model=ModelConfig(8), structure="correct", generator=nan
    )
    with pytest.raises(InputError, match=f"weight {name} holds NaN or infinite values"):
        load_weights(path)
    nan[name].view(-1)[1] = float("inf")
    torch.save({"generator": nan}, tmp_path / "inf.pt")
    with pytest.raises(InputError, match="NaN or infinite"):
        ctsdg.load_generator(
            save_training_checkpoint(
                tmp_path / "checkpoint_0000002.pt",
                {"model": ModelConfig(8).to_dict(), "generator": nan},
            )
        )


def test_a_truncated_mindspore_file_keeps_the_readers_reason(tmp_path: Path) -> None:
    whole = (DATA / "mindspore" / "tiny.ckpt").read_bytes()
    cut = tmp_path / "generator_2.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError) as info:
        load_weights(cut)
    message = str(info.value)
    assert "not a checkpoint format ctsdg reads (not a MindSpore checkpoint (" in message
    assert message.count(str(cut)) == 1 and "\n" not in message


def test_checkpoint_paths_that_break_lookups_are_named(tmp_path: Path, capsys) -> None:
    import os

    long = tmp_path / ("c" * 300 + ".pt")
    with pytest.raises(InputError, match=r"cannot read checkpoint .*: file name too long"):
        load_weights(long)
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(InputError, match=r"fifo\.pt: not a regular file \(a named pipe\)"):
        load_weights(tmp_path / "fifo.pt")
    with pytest.raises(InputError, match=r"missing\.pt: checkpoint not found; expected"):
        load_weights(tmp_path / "missing.pt")


def test_the_cli_prints_a_stray_os_error_as_one_line(monkeypatch, capsys) -> None:
    import errno

    import ctsdg.checkpoints as checkpoints

    def stray(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/somewhere/file.pt")

    monkeypatch.setattr(checkpoints, "convert", stray)
    assert main(["convert", "a.pt", "b.safetensors"]) == 2
    assert capsys.readouterr().err == "ctsdg: error: /somewhere/file.pt: Input/output error\n"
