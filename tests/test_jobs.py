"""``ctsdg inpaint`` file jobs: pairing, output paths, overwrites, formats and modes, failures."""

from __future__ import annotations

import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctsdg.cli import main
from tests import inpainting
from tests.inpainting import box_mask, run_ctsdg, tiny_weights


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-8 generator that records a 128 x 128 training size (fast inference)."""
    return tiny_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", image_size=128)


def photo(width: int = 200, height: int = 150) -> Image.Image:
    return inpainting.photo(width, height)


def cli(*args: str | Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return main(["inpaint", *map(str, args)])


def single(tmp_path: Path, image: Image.Image, name: str = "in.png") -> tuple[Path, Path]:
    """``image`` saved as ``name`` and a box mask beside it."""
    image.save(tmp_path / name)
    box_mask(*image.size, (30, 30, 80, 80)).save(tmp_path / "mask.png")
    return tmp_path / name, tmp_path / "mask.png"


def known(image: Image.Image) -> np.ndarray:
    """The pixels outside the box of `single`'s mask."""
    array = np.asarray(image).copy()
    array[30:80, 30:80] = 0
    return array


def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as loading the model."""
    from ctsdg.inference import Inpainter

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(Inpainter, "from_checkpoint", refuse)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")]


# --------------------------------------------------------------------------- files and folders


def test_single_file_keeps_format_size_and_alpha(tmp_path: Path, weights_file: Path, capsys):
    image = photo(260, 180).convert("RGBA")
    image.putalpha(Image.fromarray(np.tile(np.arange(260, dtype=np.uint8), (180, 1))))
    src, mask = single(tmp_path, image)
    out = tmp_path / "out.webp"
    assert cli(src, mask, "-o", out, "--checkpoint", weights_file) == 0
    result = Image.open(out)
    assert result.format == "WEBP" and result.mode == "RGBA" and result.size == (260, 180)
    # WebP is written lossless: known pixels and alpha exactly as they were
    np.testing.assert_array_equal(known(result), known(image))
    # JPEG cannot keep the alpha channel: one line naming the file, before the model runs
    assert cli(src, mask, "-o", tmp_path / "out.jpg", "--checkpoint", weights_file) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in.png" in err and "alpha" in err
    assert not (tmp_path / "out.jpg").exists()


def test_a_likely_swapped_pair_warns_and_still_runs(tmp_path: Path, weights_file, capsys):
    src, mask = single(tmp_path, photo(160, 128), "photo.png")
    assert cli(src, mask, "-o", tmp_path / "right.png", "--checkpoint", weights_file) == 0
    assert "swapped" not in capsys.readouterr().err  # photo first, two-valued mask second
    assert cli(mask, src, "-o", tmp_path / "swapped.png", "--checkpoint", weights_file) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "swapped" in x]
    assert line.startswith("ctsdg: warning: ") and "mask.png has only two values" in line
    assert (tmp_path / "swapped.png").is_file()  # a warning, not a refusal


def test_a_folder_job_off_a_terminal_says_how_far_it_is(
    tmp_path: Path, weights_file: Path, capsys, monkeypatch
) -> None:
    import time

    from ctsdg import heartbeat, jobs

    monkeypatch.setattr(heartbeat, "QUIET_LIMIT_S", 0.05)
    monkeypatch.setattr(heartbeat, "POLL_S", 0.01)
    slow_job = jobs.run_job

    def run_job(*args, **kwargs):  # a slow image: the line must not wait for it to end
        time.sleep(0.3)
        return slow_job(*args, **kwargs)

    monkeypatch.setattr(jobs, "run_job", run_job)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b", "c"):
        photo(64, 64).save(images / f"{name}.png")
        box_mask(64, 64, (10, 10, 30, 30)).save(masks / f"{name}.png")
    assert cli(images, masks, "-o", tmp_path / "out", "--checkpoint", weights_file) == 0
    beats = [x for x in capsys.readouterr().out.splitlines() if " inpainting: " in x]
    assert beats and all(" of 3 (" in line for line in beats)
    assert any("minutes left" in line for line in beats)  # once one image is done


def test_folders_pair_by_name_and_unpaired_files_fail_alike(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    photo(200, 150).save(images / "a.jpg")
    photo(150, 200).convert("L").save(images / "sub" / "b.png")
    photo(150, 200).save(images / "lonely.png")  # an image without a mask
    box_mask(200, 150, (20, 20, 60, 60)).save(masks / "a.png")
    box_mask(150, 200).save(masks / "sub" / "b.png")  # empty: copied unchanged
    box_mask(10, 10).save(masks / "extra.png")  # a mask without an image
    code = cli(images, masks, "-o", out, "--checkpoint", weights_file, "--strategy", "resize")
    captured = capsys.readouterr()
    assert code == 1  # the pairs were done, the two unpaired files are failures
    assert "2 item(s) failed" in captured.err
    assert "lonely.png: no mask" in captured.err and "extra.png: no image" in captured.err
    assert "b.png (empty mask: copied unchanged)" in captured.out
    assert "wrote 2 of 2 images" in captured.out
    a = Image.open(out / "a.jpg")
    assert a.format == "JPEG" and a.size == (200, 150)
    b = Image.open(out / "sub" / "b.png")
    assert b.mode == "L"
    assert np.array_equal(np.asarray(b), np.asarray(Image.open(images / "sub" / "b.png")))
    assert sorted(p.name for p in out.rglob("*.*")) == ["a.jpg", "b.png"]


def test_a_corrupt_image_halfway_does_not_stop_the_others(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    photo().save(images / "1.png")
    (images / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    photo().save(images / "3.png")
    box_mask(200, 150, (50, 50, 90, 90)).save(tmp_path / "one.png")
    assert cli(images, tmp_path / "one.png", "-o", out, "--checkpoint", weights_file) == 1
    err = capsys.readouterr().err
    assert "1 item(s) failed" in err and "2.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "3.png"]


def test_no_pair_at_all_is_an_error_before_the_model(tmp_path: Path, monkeypatch, capsys):
    no_model(monkeypatch)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    photo().save(tmp_path / "images" / "x.png")
    box_mask(10, 10).save(tmp_path / "masks" / "y.png")
    code = cli(
        tmp_path / "images", tmp_path / "masks", "-o", tmp_path / "out", "--checkpoint", "unused"
    )
    assert code == 2 and "no image" in capsys.readouterr().err


def test_unreadable_and_multi_frame_inputs_are_named(tmp_path: Path, weights_file, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    box_mask(20, 20, (5, 5, 10, 10)).save(tmp_path / "m.png")
    frames = [photo(64, 48), photo(64, 48).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    box_mask(64, 48, (5, 5, 10, 10)).save(tmp_path / "m64.png")
    cases = [("broken.png", "m.png", "broken.png"), ("m.png", "missing.png", "missing.png")]
    for image, mask, named in cases:
        out = tmp_path / "o.png"
        assert cli(tmp_path / image, tmp_path / mask, "-o", out, "--checkpoint", weights_file) == 2
        assert named in capsys.readouterr().err
    out = tmp_path / "anim.png"
    assert (
        cli(tmp_path / "anim.gif", tmp_path / "m64.png", "-o", out, "--checkpoint", weights_file)
        == 2
    )
    err = capsys.readouterr().err
    assert "anim.gif has 2 frames" in err
    assert not (tmp_path / "anim.png").exists()


# --------------------------------------------------------------------------- output paths


def test_inpaint_refuses_to_overwrite_its_input_unless_asked(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    src, mask = single(tmp_path, photo(), "same.png")
    before = src.read_bytes()
    assert cli(src, mask, "-o", src, "--checkpoint", weights_file) == 2
    assert "would overwrite the input image" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert cli(src, mask, "-o", tmp_path, "--checkpoint", weights_file) == 2  # folder: same name
    assert cli(src, mask, "-o", mask, "--checkpoint", weights_file) == 2  # the mask
    assert "input mask" in capsys.readouterr().err
    assert cli(src, mask, "-o", src, "--checkpoint", weights_file, "--overwrite") == 0
    assert src.read_bytes() != before
    assert np.array_equal(known(Image.open(src)), known(Image.open(io.BytesIO(before))))


def test_folder_onto_itself_and_existing_outputs_are_refused(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    photo().save(images / "x.png")
    box_mask(200, 150, (50, 50, 90, 90)).save(tmp_path / "one.png")
    no_model(monkeypatch)
    assert cli(images, tmp_path / "one.png", "-o", images, "--checkpoint", weights_file) == 2
    assert "would overwrite the input image" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"the user's file")
    assert cli(images, tmp_path / "one.png", "-o", out, "--checkpoint", weights_file) == 2
    assert "1 output file(s) already exist" in capsys.readouterr().err
    assert (out / "x.png").read_bytes() == b"the user's file"


def test_output_paths_that_cannot_work_fail_before_the_model(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    no_model(monkeypatch)
    images = tmp_path / "images"
    images.mkdir()
    photo().save(images / "x.png")
    box_mask(200, 150).save(tmp_path / "m.png")
    # a folder input with a file-like output name: an error, not a folder named single.png
    assert (
        cli(
            images,
            tmp_path / "m.png",
            "-o",
            tmp_path / "out" / "single.png",
            "--checkpoint",
            "unused",
        )
        == 2
    )
    assert "needs an output folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # an extension no writer has
    assert (
        cli(
            images / "x.png", tmp_path / "m.png", "-o", tmp_path / "x.gif", "--checkpoint", "unused"
        )
        == 2
    )
    assert "cannot write .gif" in capsys.readouterr().err
    # under a file: the parent is not a directory
    assert (
        cli(
            images / "x.png",
            tmp_path / "m.png",
            "-o",
            tmp_path / "m.png" / "x.png",
            "--checkpoint",
            "unused",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err and "m.png" in err


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.ENOSPC, "no space left"),
    ],
)
def test_unwritable_output_place_is_one_line(
    tmp_path: Path, monkeypatch, capsys, code: int, reason: str
) -> None:
    """The probe write before inference fails as the file system would (root ignores chmod)."""
    import ctsdg.fileio as fileio

    no_model(monkeypatch)

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", fail)
    src, mask = single(tmp_path, photo())
    assert cli(src, mask, "-o", tmp_path / "out" / "r.png", "--checkpoint", "unused") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and "out" in err


def test_full_disk_while_writing_leaves_no_partial_file(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys
) -> None:
    def full(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[:10])  # what a full disk lets through
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    src, mask = single(tmp_path, photo())
    monkeypatch.setattr(Path, "write_bytes", full)
    assert cli(src, mask, "-o", tmp_path / "out.png", "--checkpoint", weights_file) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and "out.png" in err
    assert not (tmp_path / "out.png").exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- modes and formats


def test_sixteen_bit_gray_stays_sixteen_bit(tmp_path: Path, weights_file: Path) -> None:
    gray = np.asarray(photo().convert("L")).astype(np.uint16) * 257 + 3  # not 8-bit values
    src, mask = single(tmp_path, Image.fromarray(gray))
    assert Image.open(src).mode == "I;16"
    assert cli(src, mask, "-o", tmp_path / "out.png", "--checkpoint", weights_file) == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "I;16"
    result = np.asarray(out)
    np.testing.assert_array_equal(known(out), known(Image.fromarray(gray)))
    assert not np.array_equal(result[30:80, 30:80], gray[30:80, 30:80])


def test_sixteen_bit_to_jpeg_says_it_is_written_in_8_bits(tmp_path, weights_file, capsys):
    gray = np.asarray(photo().convert("L")).astype(np.uint16) * 257
    src, mask = single(tmp_path, Image.fromarray(gray))
    assert cli(src, mask, "-o", tmp_path / "out.jpg", "--checkpoint", weights_file) == 0
    assert "JPEG cannot store mode I;16: written as L (8 bits)" in capsys.readouterr().err
    assert Image.open(tmp_path / "out.jpg").mode == "L"


def test_palette_image_keeps_its_palette_and_known_indices(tmp_path, weights_file) -> None:
    image = photo().quantize(64)
    src, mask = single(tmp_path, image)
    assert cli(src, mask, "-o", tmp_path / "out.png", "--checkpoint", weights_file) == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "P" and out.getpalette() == image.getpalette()
    np.testing.assert_array_equal(known(out), known(image))


def test_cmyk_jpeg_stays_cmyk(tmp_path: Path, weights_file: Path) -> None:
    src, mask = single(tmp_path, photo().convert("CMYK"), "in.jpg")
    assert cli(src, mask, "-o", tmp_path / "out.tif", "--checkpoint", weights_file) == 0
    out = Image.open(tmp_path / "out.tif")
    assert out.mode == "CMYK"
    np.testing.assert_array_equal(known(out), known(Image.open(src)))


def test_jpeg_to_jpeg_reuses_the_source_quantisation(tmp_path: Path, weights_file: Path) -> None:
    src, mask = single(tmp_path, photo(256, 192), "in.jpg")
    Image.open(src)  # quality 75 by default, 4:2:0
    assert cli(src, mask, "-o", tmp_path / "out.jpg", "--checkpoint", weights_file) == 0
    before, after = Image.open(src), Image.open(tmp_path / "out.jpg")
    assert after.quantization == before.quantization  # type: ignore[attr-defined]
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(after) == JpegImagePlugin.get_sampling(before)
    # away from the hole's 8x8 / 16x16 blocks only the re-encoding changes known pixels
    a = np.asarray(before).astype(int)[96:, 96:]
    b = np.asarray(after).astype(int)[96:, 96:]
    assert np.abs(a - b).mean() < 0.5
    quality_95 = io.BytesIO()
    before.save(quality_95, format="JPEG", quality=95)
    c = np.asarray(Image.open(quality_95)).astype(int)[96:, 96:]
    assert np.abs(a - b).mean() < np.abs(a - c).mean()  # closer than the old quality-95 output


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_torchrun_two_processes_write_the_same_files(tmp_path: Path, weights_file: Path) -> None:
    """2 gloo processes share a folder job out; the files equal one process's, byte for byte."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(5):
        photo(160 + 8 * i, 120).save(images / f"{i}.png")
        box_mask(160 + 8 * i, 120, (10 + 5 * i, 20, 60, 70)).save(masks / f"{i}.png")
    photo().save(images / "unpaired.png")
    common = ["inpaint", images, masks, "--checkpoint", weights_file, "--device", "cpu"]
    one = run_ctsdg(*common, "-o", tmp_path / "one")
    two = run_ctsdg(*common, "-o", tmp_path / "two", processes=2, port=29733)
    assert one.returncode == 1 and two.returncode == 1, two.stderr  # the unpaired image
    assert "wrote 5 of 5 images" in two.stdout and two.stdout.count("inpainting 5") == 1
    assert two.stderr.count("1 item(s) failed") == 1 and "unpaired.png: no mask" in two.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == [f"{i}.png" for i in range(5)]
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_sixteen_bit_colour_says_it_comes_back_8_bit(tmp_path: Path, weights_file, capsys):
    import cv2

    colour = np.asarray(photo()).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "in.png"), colour[..., ::-1])  # Pillow cannot write 48-bit PNG
    box_mask(200, 150, (30, 30, 80, 80)).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code = cli(tmp_path / "in.png", tmp_path / "mask.png", "-o", out, "--checkpoint", weights_file)
    assert code == 0
    assert "16 bits per colour channel" in capsys.readouterr().err
    assert Image.open(out).mode == "RGB"


def test_strategy_original_and_its_pixel_limit_on_the_command_line(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    image, mask = single(tmp_path, photo(200, 150))
    out = tmp_path / "out.png"
    args = (image, mask, "-o", out, "--checkpoint", weights_file, "--strategy", "original")
    assert cli(*args, "--max-original-pixels", 256 * 128) == 2  # an input error
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert "200x150 image runs padded to 256x256 = 65536 pixels" in err, err
    assert "--max-original-pixels" in err
    assert cli(*args) == 0  # within the default limit
    assert "strategy original" in capsys.readouterr().out
    assert np.array_equal(known(Image.open(out)), known(photo(200, 150)))


def test_an_image_wider_than_the_format_stores_is_refused_before_the_model_runs(
    tmp_path: Path, weights_file: Path, capsys, monkeypatch
) -> None:
    import ctsdg.inference

    monkeypatch.setattr(ctsdg.inference.Inpainter, "inpaint_rgb", lambda *a, **k: pytest.fail())
    src, mask = single(tmp_path, Image.new("RGB", (16_384, 100), (90, 90, 90)))
    assert cli(src, mask, "-o", tmp_path / "out.webp", "--checkpoint", weights_file) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WEBP stores at most 16383 x 16383" in err, err
    assert "16384 x 100" in err and not (tmp_path / "out.webp").exists()


# --------------------------------------------------------------------------- hostile paths


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ctsdg: error: "), err
    return err


def test_paths_that_break_lookups_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    no_model(monkeypatch)
    src, mask = single(tmp_path, photo())
    long = tmp_path / ("a" * 300 + ".png")
    ck = ("--checkpoint", "unused.safetensors")
    assert cli(long, mask, "-o", tmp_path / "o.png", *ck) == 2
    assert "cannot read image" in (err := one_error(capsys)) and "file name too long" in err
    assert cli(src, long, "-o", tmp_path / "o.png", *ck) == 2
    assert "cannot read mask" in (err := one_error(capsys)) and "file name too long" in err
    assert cli(src, mask, "-o", long, *ck) == 2
    assert "cannot write" in (err := one_error(capsys)) and "file name too long" in err
    os.mkfifo(tmp_path / "fifo")
    for special in (tmp_path / "fifo", Path("/dev/zero")):
        assert cli(special, mask, "-o", tmp_path / "out", *ck) == 2
        assert "not a regular file" in one_error(capsys)
    # symbolic links at the output: a loop and a dangling one are not replaced unasked
    os.symlink(tmp_path / "loop-b.png", tmp_path / "loop-a.png")
    os.symlink(tmp_path / "loop-a.png", tmp_path / "loop-b.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    for link in ("loop-a.png", "dangling.png"):
        assert cli(src, mask, "-o", tmp_path / link, *ck) == 2
        assert "already exist" in one_error(capsys) and (tmp_path / link).is_symlink()
    assert not (tmp_path / "nowhere.png").exists()


def test_trailing_slash_names_a_new_folder(tmp_path: Path, weights_file: Path) -> None:
    src, mask = single(tmp_path, photo())
    assert cli(src, mask, "-o", f"{tmp_path / 'new'}/", "--checkpoint", weights_file) == 0
    assert (tmp_path / "new" / "in.png").is_file() and not (tmp_path / "new.png").exists()


def test_overwrite_refuses_read_only_files_and_warns_about_hard_links(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    src, mask = single(tmp_path, photo())
    out = tmp_path / "out.png"
    out.write_bytes(b"the user's")
    out.chmod(0o444)
    assert cli(src, mask, "-o", out, "--overwrite", "--checkpoint", weights_file) == 2
    assert "is read-only; --overwrite does not replace" in one_error(capsys)
    assert out.read_bytes() == b"the user's"
    out.chmod(0o644)
    os.link(out, tmp_path / "other-name.png")
    assert cli(src, mask, "-o", out, "--overwrite", "--checkpoint", weights_file) == 0
    err = capsys.readouterr().err
    assert "has 1 other hard link(s); --overwrite writes a new file" in err
    assert (tmp_path / "other-name.png").read_bytes() == b"the user's"
    assert Image.open(out).size == (200, 150)


def test_images_sharing_a_name_stay_apart(tmp_path: Path, weights_file: Path, capsys) -> None:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    photo().save(images / "a.png")
    photo().save(images / "a.jpg")
    box_mask(200, 150, (50, 50, 90, 90)).save(masks / "a.png")
    assert cli(images, masks, "-o", out, "--checkpoint", weights_file) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a.png"]
    box_mask(200, 150, (10, 10, 40, 40)).save(masks / "a.bmp")
    assert cli(images, masks, "-o", tmp_path / "out2", "--checkpoint", weights_file) == 2
    assert "two masks for the images named 'a'" in one_error(capsys)


def test_skip_existing_resumes_a_folder_job(tmp_path: Path, weights_file: Path, capsys) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    out.mkdir()
    for name in ("1.png", "2.png", "3.png"):
        photo().save(images / name)
    box_mask(200, 150, (50, 50, 90, 90)).save(tmp_path / "one.png")
    (out / "2.png").write_bytes(b"done before the interruption")
    stale = out / ".3.png.k2j4h5g6.tmp"  # what a SIGKILL mid-write left
    stale.write_bytes(b"half")
    args = (images, tmp_path / "one.png", "-o", out, "--checkpoint", weights_file)
    assert cli(*args) == 2
    assert "--skip-existing to keep them" in one_error(capsys)
    assert cli(*args, "--skip-existing") == 0
    assert "skipping 1 image(s) whose output exists" in capsys.readouterr().out
    assert (out / "2.png").read_bytes() == b"done before the interruption"
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "2.png", "3.png"]
    assert cli(*args, "--skip-existing") == 0  # nothing left to do: no model loaded either
    assert "nothing to do" in capsys.readouterr().out


def test_skip_existing_with_nothing_left_still_lists_what_failed(
    tmp_path: Path, weights_file: Path, capsys
) -> None:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    for folder in (images, masks, out):
        folder.mkdir()
    for name in ("1.png", "2.png"):
        photo().save(images / name)
    box_mask(200, 150, (50, 50, 90, 90)).save(masks / "1.png")  # 2.png has no mask
    (out / "1.png").write_bytes(b"done before")
    assert cli(images, masks, "-o", out, "--checkpoint", weights_file, "--skip-existing") == 1
    captured = capsys.readouterr()
    assert "nothing to do" in captured.out
    assert "1 item(s) failed" in captured.err and "2.png" in captured.err


def test_sigterm_during_a_write_leaves_no_temporary_file(
    tmp_path: Path, weights_file: Path, monkeypatch, capsys
) -> None:
    import signal

    real = Path.write_bytes

    def killed(self: Path, data: bytes) -> int:
        real(self, data[:10])
        os.kill(os.getpid(), signal.SIGTERM)  # `kill` arrives mid-write
        raise AssertionError("SIGTERM did not stop the write")

    src, mask = single(tmp_path, photo())
    monkeypatch.setattr(Path, "write_bytes", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert cli(src, mask, "-o", tmp_path / "out.png", "--checkpoint", weights_file) == 143
    assert capsys.readouterr().err.endswith("ctsdg: terminated\n")
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.png").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # put back


@pytest.mark.parametrize("name", ["out.jpg", "out.png", "out.webp", "out.tif"])
def test_exif_is_kept_with_its_orientation_reset(tmp_path: Path, weights_file: Path, name) -> None:
    exif = Image.Exif()
    exif[0x010F] = "ctsdg test camera"  # Make
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo().save(tmp_path / "in.jpg", exif=exif.tobytes(), quality=95)
    box_mask(150, 200, (30, 30, 80, 80)).save(tmp_path / "mask.png")  # upright: 150 x 200
    out = tmp_path / name
    assert (
        cli(tmp_path / "in.jpg", tmp_path / "mask.png", "-o", out, "--checkpoint", weights_file)
        == 0
    )
    with Image.open(out) as written:
        assert written.size == (150, 200)
        kept = written.getexif()
        assert kept[0x010F] == "ctsdg test camera" and kept.get(0x0112, 1) == 1
