"""Seeded fuzzing of image decoding: mutated files of every format Pillow writes, as image and
as mask, through the HTTP API (in process) and ``ctsdg inpaint`` (``ctsdg.cli.main``).

Whatever the bytes, the API answers 200 or a one-line JSON 400 / 413 (never a 500), and the
command line reports one line per failed file (never a traceback). The images are 24 x 16, and
the network is replaced by the smallest model there is, the identity (`identity_model`: what
is fuzzed is decoding, and a real forward pass per case made this take minutes on 2 cores), so
the few hundred cases take seconds. Everything around the network (modes, masks, resizing,
structure inputs, pasting back, encoding) runs as it does for users.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from ctsdg.cli import main
from ctsdg.inference import Inpainter
from ctsdg.serve import Limits, create_app
from tests.inpainting import tiny_weights

SEED = 20
MUTATIONS = 9  # per source file; 26 sources -> 234 mutated files
WIDTH, HEIGHT = 24, 16
INPAINT = "/api/v1/inpaint"


def base() -> Image.Image:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([x * 10, y * 15, (x + y) * 6], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sources() -> dict[str, bytes]:
    """One small file per format Pillow both writes and reads here (and a few modes)."""
    rgb = base()
    gray = rgb.convert("L")
    formats = "PNG JPEG WEBP GIF BMP TIFF DDS ICO TGA PPM PCX SGI IM QOI JPEG2000 AVIF"
    files = {fmt: encoded(rgb, fmt) for fmt in formats.split()}
    files["PNG-RGBA"] = encoded(rgb.convert("RGBA"), "PNG")
    files["PNG-I16"] = encoded(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG")
    files["JPEG-CMYK"] = encoded(rgb.convert("CMYK"), "JPEG")
    files["TIFF-1"] = encoded(rgb.convert("1"), "TIFF", compression="packbits")
    files["MSP"] = encoded(rgb.convert("1"), "MSP")
    files["GIF-anim"] = encoded(rgb, "GIF", save_all=True, append_images=[gray.convert("P")])
    files["PNG-LA"] = encoded(rgb.convert("LA"), "PNG")
    files["PNG-P-transparent"] = encoded(rgb.convert("P"), "PNG", transparency=0)
    files["SPIDER-F"] = encoded(gray.convert("F"), "SPIDER")
    files["TIFF-F"] = encoded(gray.convert("F"), "TIFF")
    for data in files.values():  # every source itself decodes
        Image.open(io.BytesIO(data)).load()
    return files


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded corruption: changed bytes (header-heavy), a cut, a repeated or removed run."""
    out = bytearray(data)
    kind = rng.randrange(5)
    header = min(len(out), 128)
    if kind <= 1:  # 1-3 changed bytes, half of the time in the header
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(header if rng.random() < 0.5 else len(out))
            out[where] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif kind == 2:  # truncated
        del out[rng.randrange(1, len(out)) :]
    elif kind == 3:  # a run repeated
        start = rng.randrange(len(out))
        out[start:start] = out[start : start + rng.randint(1, 64)]
    else:  # four bytes of a size field set to large or zero values
        where = rng.randrange(max(1, header - 4))
        out[where : where + 4] = rng.choice((b"\xff\xff\xff\x7f", b"\0\0\0\0", b"\0\0\x10\0"))
    return bytes(out)


def cases() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    return [
        (f"{name}-{i}", mutate(data, rng))
        for name, data in sources().items()
        for i in range(MUTATIONS)
    ]


@pytest.fixture(autouse=True)
def identity_model(monkeypatch: pytest.MonkeyPatch):
    """Every `Inpainter` built here (the API's and the command's) runs the identity, on one
    thread (a thread pool only costs time on tensors this small)."""

    def build_runner(generator, backend, precision, device, *, size):
        return lambda image, mask, gray, edge: image.clone()

    monkeypatch.setattr("ctsdg.inference.build_runner", build_runner)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(
        tmp_path_factory.mktemp("fuzz-ckpt") / "tiny.safetensors", structure="correct"
    )


def good_pair() -> tuple[bytes, bytes]:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[4:10, 6:14] = 255
    return encoded(base(), "PNG"), encoded(Image.fromarray(mask), "PNG")


def test_mutated_images_and_masks_never_give_a_500(weights_file: Path) -> None:
    image, mask = good_pair()
    inpainter = Inpainter.from_checkpoint(weights_file, size=128)
    app = create_app(inpainter, Limits(max_pixels=100_000))
    statuses: dict[int, int] = {}
    with TestClient(app) as client:
        for name, data in sources().items():  # unmutated, every format and mode is inpainted
            size = Image.open(io.BytesIO(data)).size  # ICO stores 16 x 11
            fitted = encoded(Image.open(io.BytesIO(mask)).resize(size), "PNG")
            response = client.post(INPAINT, files={"image": ("x", data), "mask": ("m", fitted)})
            expected = 400 if name == "GIF-anim" else 200  # several frames: refused
            assert response.status_code == expected, (name, response.text)
        for name, data in cases():
            for field, files in (
                ("image", {"image": ("x", data), "mask": ("m.png", mask)}),
                ("mask", {"image": ("i.png", image), "mask": ("x", data)}),
            ):
                response = client.post(INPAINT, files=files)
                status = response.status_code
                statuses[status] = statuses.get(status, 0) + 1
                assert status in (200, 400, 413), (name, field, status, response.text)
                if status != 200:
                    message = response.json()["error"]
                    assert "\n" not in message and len(message) < 400, (name, message)
        assert client.get("/api/v1/health").json() == {"status": "ok"}
    # the mutations reach both outcomes: some still decode, most are refused
    assert statuses.get(200, 0) > 20 and statuses.get(400, 0) > 200, statuses


def test_mutated_files_through_the_command_line(weights_file: Path, tmp_path: Path, capsys):
    """Folder jobs: every mutated file is one failed line or a written result, never a
    traceback, and the job goes on to the end (all files named .png: Pillow reads the bytes)."""
    image, mask = good_pair()
    images, masks, good = tmp_path / "images", tmp_path / "masks", tmp_path / "good"
    for folder in (images, masks, good):
        folder.mkdir()
    (tmp_path / "mask.png").write_bytes(mask)
    all_cases = cases()
    for i, (_, data) in enumerate(all_cases):
        (images / f"{i:03d}.png").write_bytes(data)
        (masks / f"{i:03d}.png").write_bytes(data)
        (good / f"{i:03d}.png").write_bytes(image)
    runs = [(images, tmp_path / "mask.png", tmp_path / "out1"), (good, masks, tmp_path / "out2")]
    for source, mask_path, out in runs:
        args = ["inpaint", str(source), str(mask_path), "-o", str(out),
                "--checkpoint", str(weights_file), "--size", "128", "--device", "cpu"]  # fmt: skip
        status = main(args)
        captured = capsys.readouterr()
        assert status in (0, 1), captured.err[-2000:]
        assert "Traceback" not in captured.err
        lines = captured.err.splitlines()
        failed = [line for line in lines if line.startswith("ctsdg: failed: ")]
        for line in lines:  # every line is a warning, a failure or the summary's list
            assert line.startswith(("ctsdg: ", "  ")), line
        written = len(list(out.glob("*.png")))
        assert written + len(failed) == len(all_cases), (written, len(failed))
        assert f"wrote {written} of {len(all_cases)} images" in captured.out
        assert len(failed) > 100  # most mutations are refused, one line each


def test_a_dds_with_one_mutated_byte_is_one_line_in_the_cli(weights_file, tmp_path, capsys):
    """NotImplementedError from the DDS plugin: an unreadable image, not a traceback."""
    data = bytearray(encoded(base(), "DDS"))
    data[80] = 0  # pixel-format flags
    (tmp_path / "bad.dds").write_bytes(bytes(data))
    _, mask = good_pair()
    (tmp_path / "mask.png").write_bytes(mask)
    args = ["inpaint", str(tmp_path / "bad.dds"), str(tmp_path / "mask.png"),
            "-o", str(tmp_path / "out.png"), "--checkpoint", str(weights_file),
            "--size", "128"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.dds" in err and "NotImplementedError" in err, err
