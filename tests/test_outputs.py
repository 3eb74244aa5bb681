"""Writing outputs: one-line errors by errno, atomic files, no silent overwrites, for ``convert``,
``export`` and ``masks``; ``convert`` keeps the training size; the pickle refusal."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from ctsdg.checkpoints import load_weights, save_training_checkpoint
from ctsdg.cli import main
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write, write_error
from ctsdg.models import Generator
from tests.inpainting import tiny_weights


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")]


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Path.write_bytes writes a little, then fails as a full disk does."""

    def full(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)


# --------------------------------------------------------------------------- fileio


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EROFS, "read-only file system"),
        (errno.ENOTDIR, "not a directory (a parent in the path is a file)"),
        (errno.ENOSPC, "no space left on the device"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EEXIST, "exists and is not a directory"),
        (errno.EIO, os.strerror(errno.EIO)),  # anything else: the system's words
    ],
)
def test_write_error_names_the_path_and_the_reason(code: int, reason: str) -> None:
    err = write_error("out/x.png", OSError(code, os.strerror(code)))
    assert isinstance(err, InputError)
    assert str(err) == f"cannot write out/x.png: {reason}"


def test_atomic_write_follows_the_umask_and_cleans_up(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "a.txt", fail)
    assert (tmp_path / "a.txt").read_text() == "x" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- convert


def test_convert_keeps_the_training_size(tmp_path: Path, capsys) -> None:
    from ctsdg.inference import Inpainter

    state = {
        "model": {"width": 8, "align_corners": False},
        "structure": "correct",
        "generator": Generator(width=8).state_dict(),
        "config": {"image_load_size": [128, 128]},
    }
    source = save_training_checkpoint(tmp_path / "checkpoint_0000001.pt", state)
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(source), str(out)]) == 0
    assert "trained at 128x128" in capsys.readouterr().out
    assert load_weights(out).trained_size == 128
    assert Inpainter.from_checkpoint(out).size == 128


def test_convert_write_faults_are_one_line(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys
) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["convert", str(weights_file), str(tmp_path / "file" / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err
    existing = tmp_path / "mine.safetensors"
    existing.write_bytes(b"the user's")
    assert main(["convert", str(weights_file), str(existing)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"the user's"
    full_disk(monkeypatch)
    assert main(["convert", str(weights_file), str(tmp_path / "new.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "new.safetensors" in err
    assert not (tmp_path / "new.safetensors").exists() and leftovers(tmp_path) == []


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickle_refusal_does_not_point_at_the_unsafe_path(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"generator": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(InputError) as info:
        load_weights(path)
    message = str(info.value)
    assert "refusing to unpickle" in message and "(it asks for print)" in message
    assert "weights_only" not in message and "\n" not in message
    assert "unpickled!" not in capsys.readouterr().out


# --------------------------------------------------------------------------- masks


def test_masks_out_faults_and_overwrites(tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["--per-bucket", "1", "--size", "32", "--buckets", "0-10"]
    (tmp_path / "file").write_text("x")
    assert main(["masks", str(tmp_path / "file"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists and is not a directory" in err
    assert main(["masks", str(tmp_path / "file" / "sub"), *args]) == 2
    assert "not a directory" in capsys.readouterr().err
    out = tmp_path / "set"
    assert main(["masks", str(out), *args]) == 0
    before = (out / "masks.json").read_bytes()
    assert main(["masks", str(out), *args, "--seed", "9"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "masks.json").read_bytes() == before
    assert main(["masks", str(out), *args, "--seed", "9", "--overwrite"]) == 0
    assert (out / "masks.json").read_bytes() != before and leftovers(out) == []
    full_disk(monkeypatch)
    assert main(["masks", str(tmp_path / "new"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err
    assert leftovers(tmp_path / "new") == [] and not list((tmp_path / "new").rglob("*.png"))


# --------------------------------------------------------------------------- export


def test_export_output_faults_fail_before_exporting(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys
) -> None:
    import ctsdg.checkpoints as checkpoints

    def no_load(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the output was checked")

    monkeypatch.setattr(checkpoints, "load_weights", no_load)
    (tmp_path / "file").write_text("x")
    base = ["export", "--checkpoint", str(weights_file), "--size", "128", "-o"]
    assert main([*base, str(tmp_path / "file" / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err
    (tmp_path / "g.onnx").write_bytes(b"the user's")
    assert main([*base, str(tmp_path / "g.onnx")]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*base, str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    for opset, expected in (
        ("99", "this PyTorch exports opsets 18 to"),
        ("9", "needs opset >= 18"),
    ):
        assert main([*base, str(tmp_path / "new.onnx"), "--opset", opset]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--opset {opset}: " in err and expected in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["g.onnx", "g.pt"])
def test_export_on_a_full_disk_leaves_nothing_behind(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys, name: str
) -> None:
    """Serialised in memory first: a full disk is one line (TorchScript's writer once aborted
    the process), with no truncated file and no temporary file left."""
    full_disk(monkeypatch)
    args = ["export", "--checkpoint", str(weights_file), "--size", "128", "-o"]
    assert main([*args, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ctsdg: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n")  # the export's INFO line before
    assert "no space left" in errors[0] and name in errors[0]
    assert not (tmp_path / name).exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- hostile paths


def test_names_too_long_and_links_are_one_line(tmp_path: Path, weights_file: Path, capsys) -> None:
    long = "a" * 300
    cases = [
        ["convert", str(weights_file), str(tmp_path / f"{long}.safetensors")],
        ["export", "--checkpoint", str(weights_file), "-o", str(tmp_path / f"{long}.onnx")],
        ["masks", str(tmp_path / long), "--per-bucket", "1", "--size", "32", "--buckets", "0-10"],
    ]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "file name too long" in err and long in err
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.safetensors")
    assert main(["convert", str(weights_file), str(tmp_path / "dangling.safetensors")]) == 2
    assert "(a symbolic link) already exists" in capsys.readouterr().err
    assert (tmp_path / "dangling.safetensors").is_symlink()
    os.symlink(tmp_path / "loop2.onnx", tmp_path / "loop1.onnx")
    os.symlink(tmp_path / "loop1.onnx", tmp_path / "loop2.onnx")
    assert main([*cases[1][:-1], str(tmp_path / "loop1.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    readonly = tmp_path / "ro.safetensors"
    readonly.write_bytes(b"mine")
    readonly.chmod(0o444)
    assert main(["convert", str(weights_file), str(readonly), "--overwrite"]) == 2
    assert "is read-only" in capsys.readouterr().err and readonly.read_bytes() == b"mine"


def test_masks_overwrite_refuses_read_only_files(tmp_path: Path, capsys) -> None:
    args = ["--per-bucket", "1", "--size", "32", "--buckets", "0-10"]
    out = tmp_path / "set"
    assert main(["masks", str(out), *args]) == 0
    (out / "masks.json").chmod(0o444)
    before = (out / "masks.json").read_bytes()
    assert main(["masks", str(out), *args, "--seed", "9", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "masks.json: is read-only" in err
    assert (out / "masks.json").read_bytes() == before


def test_stale_temporaries_of_an_output_are_removed_before_it_is_written(
    tmp_path: Path, weights_file: Path
) -> None:
    out = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.safetensors.ab12cd34.tmp"  # a SIGKILL mid-write left it
    other = tmp_path / ".other.safetensors.ab12cd34.tmp"  # another output's: not ours
    mine = tmp_path / ".m.safetensors.notes.tmp"  # not the atomic writer's pattern
    for path in (stale, other, mine):
        path.write_bytes(b"half")
    assert main(["convert", str(weights_file), str(out)]) == 0
    assert not stale.exists() and other.exists() and mine.exists()
    assert load_weights(out).model.width == 8
