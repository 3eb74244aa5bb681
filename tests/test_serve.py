"""``ctsdg serve``: the HTTP API in-process (Starlette's TestClient), its limits and failures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from starlette.testclient import TestClient

from ctsdg.cli import main
from ctsdg.errors import InputError
from ctsdg.inference import Inpainter
from ctsdg.serve import Limits, create_app
from tests.inpainting import tiny_weights

SIZE = 128  # the model's square (a width-8 generator): fast, and the API does not care
INPAINT = "/api/v1/inpaint"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", structure="correct")


@pytest.fixture(scope="module")
def inpainter(weights_file: Path) -> Inpainter:
    return Inpainter.from_checkpoint(weights_file, size=SIZE)


@pytest.fixture(scope="module")
def client(inpainter: Inpainter):
    app = create_app(inpainter, Limits(max_upload_mb=1, max_pixels=200_000))
    with TestClient(app) as c:
        yield c


def photo(width: int = 300, height: int = 200, mode: str = "RGB") -> Image.Image:
    return Image.fromarray(data.chelsea()).resize((width, height)).convert(mode)


def box_mask(width: int = 300, height: int = 200, box=(100, 50, 180, 110)) -> Image.Image:
    m = np.zeros((height, width), np.uint8)
    left, top, right, bottom = box
    m[top:bottom, left:right] = 255
    return Image.fromarray(m)


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def files(image: bytes | None = None, mask: bytes | None = None) -> dict:
    return {
        "image": ("photo.png", png(photo()) if image is None else image, "image/png"),
        "mask": ("mask.png", png(box_mask()) if mask is None else mask, "image/png"),
    }


def decoded(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, followed by a few bytes of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- success


def test_inpaint_at_a_size_that_is_not_a_multiple_of_128(client, inpainter) -> None:
    response = client.post(INPAINT, files=files())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    result = np.asarray(decoded(response))
    before = np.asarray(photo())
    holes = np.asarray(box_mask()) > 0
    assert result.shape == before.shape == (200, 300, 3)
    np.testing.assert_array_equal(result[~holes], before[~holes])  # known pixels bit-identical
    assert np.any(result != before, axis=-1)[holes].mean() > 0.5
    # the same pixels as the Python API (and so `ctsdg inpaint`) gives
    np.testing.assert_array_equal(result, np.asarray(inpainter.inpaint(photo(), box_mask())))


@pytest.mark.parametrize(("fmt", "media"), [("jpeg", "image/jpeg"), ("webp", "image/webp")])
def test_output_formats_and_strategies(client, fmt: str, media: str) -> None:
    for strategy in ("resize", "crop"):
        response = client.post(INPAINT, files=files(), data={"format": fmt, "strategy": strategy})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media
        assert decoded(response).size == (300, 200)


def test_rgba_and_gray_images_keep_their_mode(client) -> None:
    for mode in ("RGBA", "L"):
        response = client.post(INPAINT, files=files(image=png(photo(mode=mode))))
        assert response.status_code == 200, response.text
        assert decoded(response).mode == mode


def test_json_body_with_base64_gives_the_same_result(client) -> None:
    multipart = client.post(INPAINT, files=files())
    body = {
        "image": base64.b64encode(png(photo())).decode(),
        "mask": "data:image/png;base64," + base64.b64encode(png(box_mask())).decode(),
        "strategy": "auto",
    }
    response = client.post(INPAINT, json=body)
    assert response.status_code == 200, response.text
    assert response.content == multipart.content


def test_health_model_and_page(client) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    info = client.get("/api/v1/model").json()
    assert {k: info[k] for k in ("structure", "size", "width", "device", "precision")} == {
        "structure": "correct", "size": SIZE, "width": 8, "device": "cpu", "precision": "fp32",
    }  # fmt: skip
    assert {"checkpoint", "format"} <= set(info)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for testid in ("image-input", "mask-canvas", "inpaint-button", "result-image"):
        assert f'data-testid="{testid}"' in page.text
    for path in ("/static/app.js", "/static/style.css"):
        text = client.get(path).text
        # offline machines: nothing may be fetched from another host
        assert not re.search(r"https?://", text), path
        assert "http" not in page.text.replace("http-equiv", "")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"files": files(image=b"not an image")}, 400, ["image:", "not an image"]),
        ({"files": files(mask=b"GIF89a nonsense")}, 400, ["mask:"]),
        ({"files": files(image=png(photo())[:400])}, 400, ["image: unreadable"]),
        ({"files": files(mask=png(box_mask(150, 100, (0, 0, 9, 9))))}, 400, ["150x100", "300x200"]),
        ({"files": files(), "data": {"strategy": "tile"}}, 400, ["strategy", "tile"]),
        ({"files": files(), "data": {"format": "gif"}}, 400, ["format", "gif"]),
        ({"files": files(), "data": {"colour": "red"}}, 400, ["unknown field 'colour'"]),
        ({"files": {"image": ("a.png", png(photo()), "image/png")}}, 400, ["mask: missing"]),
        ({"files": files(image=png(photo(mode="RGBA"))), "data": {"format": "jpeg"}}, 400,
         ["format=jpeg", "alpha channel", "PNG"]),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
         ["not valid JSON"]),
        ({"json": {"image": "@@@", "mask": "AAAA"}}, 400, ["image: not valid base64"]),
        ({"json": [1, 2]}, 400, ["JSON object"]),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, ["text/plain"]),
        ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
         400, ["multipart"]),
        ({"files": files(image=png(photo(600, 400)))}, 413, ["image: 600x400", "--max-pixels"]),
    ],
)  # fmt: skip
def test_bad_requests_get_one_line_json_errors(client, kwargs, status, words) -> None:
    assert_error(client.post(INPAINT, **kwargs), status, *words)
    assert client.get("/api/v1/health").status_code == 200  # the server stays healthy


def test_not_found_and_wrong_method_are_json(client) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "/api/v1/nothing")
    response = client.get(INPAINT)
    assert_error(response, 405, "use POST")
    assert response.headers["allow"] == "POST"
    # no route reads server files from request data
    assert_error(client.get("/static/../../README.md"), 404)
    assert_error(client.get("/static/index.html"), 404)


def test_body_over_the_limit_is_refused_before_it_is_read(client) -> None:
    big = os.urandom(1024 * 1024 + 1)
    assert_error(client.post(INPAINT, files=files(image=big)), 413, "--max-upload-mb 1")

    def chunks():  # no Content-Length (chunked): counted as it arrives
        for _ in range(64):
            yield b"\0" * 65536

    response = client.post(
        INPAINT, content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert_error(response, 413, "body")
    assert client.post(INPAINT, files=files()).status_code == 200


def test_decompression_bomb_header_is_refused_without_decoding(client, inpainter) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    response = client.post(INPAINT, files=files(image=bomb_png(40000, 40000)))
    assert_error(response, 413, "image:", "--max-pixels")
    assert time.perf_counter() - start < 5
    # 40000 x 40000 RGB would be 4.8 GB; the process's peak memory did not move by a fraction
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 200
    # under the server's own limit but over PIL's bomb guard (2 x 89 M pixels): also 413
    app = create_app(inpainter, Limits(max_pixels=10**10))
    with TestClient(app) as big:
        assert_error(big.post(INPAINT, files=files(image=bomb_png(20000, 20000))), 413)


def test_token_is_required_on_the_api_only(inpainter) -> None:
    app = create_app(inpainter, Limits(token="s3cret"))
    with TestClient(app) as c:
        response = c.get("/api/v1/health")
        assert_error(response, 401, "token missing", "Bearer")
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error(c.post(INPAINT, files=files()), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_error(c.get("/api/v1/model", headers=wrong), 401, "token wrong")
        good = {"Authorization": "Bearer s3cret"}
        assert c.get("/api/v1/health", headers=good).json() == {"status": "ok"}
        assert c.get("/api/v1/model", headers=good).json()["limits"]["token_required"] is True
        assert c.post(INPAINT, files=files(), headers=good).status_code == 200
        assert c.get("/").status_code == 200  # the page itself asks for the token


# --------------------------------------------------------------------------- concurrency


class GatedInpainter(Inpainter):
    """Holds every inpainting until ``gate`` opens; ``entered`` counts the calls that began."""

    def inpaint(self, image, mask, **kwargs):
        self.entered.release()
        assert self.gate.wait(30), "test gate never opened"
        return super().inpaint(image, mask, **kwargs)


@pytest.fixture()
def gated(weights_file: Path) -> GatedInpainter:
    base = Inpainter.from_checkpoint(weights_file, size=SIZE)
    gated = GatedInpainter(base.generator, structure=base.structure, size=SIZE)
    gated.gate = threading.Event()
    gated.entered = threading.Semaphore(0)
    return gated


def post_in_thread(c: TestClient, results: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(c.post(INPAINT, files=files())))
    thread.start()
    return thread


def test_queue_limit_503_with_retry_after_and_health_stays_prompt(gated) -> None:
    app = create_app(gated, Limits(max_queue=2))
    with TestClient(app) as c:
        results: list = []
        threads = [post_in_thread(c, results) for _ in range(2)]
        assert gated.entered.acquire(timeout=30)  # one runs, one waits in the queue
        deadline = time.monotonic() + 30
        while app.state.worker.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        assert c.get("/api/v1/health").json() == {"status": "ok"}  # while inference runs
        assert time.perf_counter() - start < 1.0
        full = c.post(INPAINT, files=files())
        assert_error(full, 503, "--max-queue 2")
        assert int(full.headers["retry-after"]) >= 1
        gated.gate.set()
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in results] == [200, 200]
        assert app.state.worker.pending == 0
        assert c.post(INPAINT, files=files()).status_code == 200


def test_timeout_gives_503_and_the_slot_comes_back(gated) -> None:
    app = create_app(gated, Limits(timeout_s=0.5, max_queue=1))
    with TestClient(app) as c:
        response = c.post(INPAINT, files=files())
        assert_error(response, 503, "--timeout 0.5")
        assert "retry-after" in response.headers
        gated.gate.set()  # the started job runs to its end and frees its slot
        deadline = time.monotonic() + 30
        while app.state.worker.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.post(INPAINT, files=files()).status_code == 200


def test_draining_server_answers_503(inpainter) -> None:
    app = create_app(inpainter)
    with TestClient(app) as c:
        app.state.draining = True
        assert_error(c.get("/api/v1/health"), 503, "shutting down")
        assert_error(c.post(INPAINT, files=files()), 503)


def test_unexpected_failure_is_a_500_without_traceback(inpainter, caplog) -> None:
    class Broken(Inpainter):
        def inpaint(self, image, mask, **kwargs):
            raise RuntimeError("boom inside the model")

    broken = Broken(inpainter.generator, size=SIZE)
    with TestClient(create_app(broken)) as c:
        response = c.post(INPAINT, files=files())
        assert_error(response, 500, "internal error")
        assert "boom" not in response.text
        assert c.get("/api/v1/health").status_code == 200
    assert "boom inside the model" in caplog.text  # the server's log keeps the cause


def test_one_log_line_per_request(client, caplog) -> None:
    with caplog.at_level("INFO", logger="ctsdg.serve"):
        client.get("/api/v1/health")
        client.post(INPAINT, files=files(), data={"format": "gif"})
    lines = [r.getMessage() for r in caplog.records if r.name == "ctsdg.serve"]
    assert len(lines) == 2
    assert re.fullmatch(r"GET /api/v1/health 200 \d+ ms", lines[0])
    assert re.fullmatch(r"POST /api/v1/inpaint 400 \d+ ms", lines[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_does_not_grow_with_requests(client) -> None:
    def rss_mb() -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    body = files()
    for _ in range(5):  # warm-up: allocator pools, first-call caches
        assert client.post(INPAINT, files=body).status_code == 200
    before = rss_mb()
    for _ in range(30):
        assert client.post(INPAINT, files=body).status_code == 200
    assert rss_mb() - before < 25


# --------------------------------------------------------------------------- the command


def test_cli_without_checkpoint_or_demo_run_exits_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--checkpoint" in err and "make demo" in err


def test_cli_flags_and_ctsdg_token(monkeypatch, tmp_path) -> None:
    seen = {}

    def fake_serve(checkpoint, **kwargs):
        seen.update(kwargs, checkpoint=checkpoint)
        return 0

    monkeypatch.setattr("ctsdg.serve.server.serve", fake_serve)
    monkeypatch.setenv("CTSDG_TOKEN", "from-env")
    assert main(["serve", "--checkpoint", "x.pt", "--max-queue", "3", "--timeout", "9"]) == 0
    limits = seen["limits"]
    assert (limits.token, limits.max_queue, limits.timeout_s) == ("from-env", 3, 9.0)
    assert (limits.max_upload_mb, limits.max_pixels) == (25.0, 40_000_000)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8080
    assert main(["serve", "--max-queue", "0"]) == 2


@pytest.mark.slow
def test_real_server_prints_url_warns_on_all_interfaces_and_stops_on_sigterm(weights_file):
    """The command as a user runs it: uvicorn, a port, the log, SIGTERM."""
    import urllib.request

    with real_server(weights_file, "--host", "0.0.0.0") as (proc, url, _):
        with urllib.request.urlopen(url + "api/v1/health", timeout=30) as response:
            assert response.read() == b'{"status":"ok"}'
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        err = proc.stderr.read()
        assert "warning: --host 0.0.0.0" in err and "--token" in err
        assert re.search(r"GET /api/v1/health 200 \d+ ms", err)
        assert "stopping" in err and "Traceback" not in err


@pytest.mark.slow
def test_bench_serve_reports_load_rows(capsys) -> None:
    args = ["bench", "serve", "--size", "128", "--width", "8", "--clients", "1,2",
            "--requests", "2", "--rounds", "1", "--repeats", "1", "--json"]  # fmt: skip
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in rows] == ["infer", "load", "load", "summary"]
    assert rows[0]["batch1_ms"] > 0
    assert [(r["clients"], r["requests"], r["errors"]) for r in rows[1:3]] == [(1, 2, 0), (2, 4, 0)]
    assert all(r["p50_ms"] <= r["p95_ms"] and r["requests_per_s"] > 0 for r in rows[1:3])
    summary = rows[3]
    assert summary["errors"] == 0 and summary["rss_mb_after"] > 100  # the server's, with torch
    assert main([*args[:-1], "--clients", "0"]) == 2


# --------------------------------------------------------------------------- hostile inputs


def dds_with_unknown_pixel_format() -> bytes:
    """A DDS file with one mutated byte (its pixel-format flags): Pillow raises
    NotImplementedError, outside the errors its other decoders raise."""
    data = bytearray(png(Image.new("RGB", (300, 200), (10, 20, 30)), "DDS"))
    data[80] = 0
    return bytes(data)


def animated_gif() -> bytes:
    frames = [photo(mode="P"), photo(mode="L").convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def raw_post(content: bytes, content_type: str) -> dict:
    return {"content": content, "headers": {"content-type": content_type}}


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        (raw_post(b"[" * 100_000, "application/json"), 400, ["nested too deeply"]),
        (raw_post(b'{"image": 1' + b"0" * 5000 + b"}", "application/json"), 400,
         ["not valid JSON", "digits"]),
        (raw_post(b'{"strategy": "\\ud800", "image": "", "mask": ""}', "application/json"), 400,
         ["strategy", "lone surrogate"]),
        (raw_post(b"--x\r\n", "multipart/form-data; boundary=" + "b" * 300), 400,
         ["boundary of 300 characters", "at most 70"]),
        ({"files": files(image=dds_with_unknown_pixel_format())}, 400,
         ["image: unreadable image (NotImplementedError"]),
        ({"files": files(mask=dds_with_unknown_pixel_format())}, 400, ["mask: unreadable"]),
        ({"files": files(image=animated_gif())}, 400, ["image has 2 frames (GIF)"]),
        ({"content": b"x", "headers": {"content-type": "multipart/form-data; boundary=x",
                                       "content-length": "1" * 10_000}}, 413, ["body"]),
    ],
)  # fmt: skip
def test_hostile_requests_get_400_not_500(client, kwargs, status, words) -> None:
    assert_error(client.post(INPAINT, **kwargs), status, *words)
    assert client.get("/api/v1/health").status_code == 200


def test_results_are_fitted_to_the_output_format(client) -> None:
    """CMYK, palette and 16-bit gray inputs into PNG / JPEG: converted as ctsdg inpaint does,
    and the conversion said in a header; a side over the format's limit is a 400."""
    cases = [("CMYK", "JPEG", "png", "RGB"), ("P", "PNG", "jpeg", "RGB"),
             ("I;16", "PNG", "jpeg", "L"), ("CMYK", "JPEG", "webp", "RGB")]  # fmt: skip
    for mode, source, fmt, expected in cases:
        sixteen = np.asarray(photo(mode="L")).astype(np.uint16) * 257
        image = Image.fromarray(sixteen) if mode == "I;16" else photo(mode=mode)
        response = client.post(INPAINT, files=files(image=png(image, source)), data={"format": fmt})
        assert response.status_code == 200, (mode, fmt, response.text)
        assert decoded(response).mode == expected and decoded(response).size == (300, 200)
        assert "cannot store mode" in response.headers["x-ctsdg-warning"], (mode, fmt)
    wide = Image.new("RGB", (16_384, 4), (90, 90, 90))
    mask = box_mask(16_384, 4, (0, 0, 9, 4))
    response = client.post(
        INPAINT, files=files(image=png(wide), mask=png(mask)), data={"format": "webp"}
    )
    assert_error(response, 400, "format=webp", "at most 16383 x 16383", "16384 x 4", "PNG")


def test_line_wrapped_base64_and_the_model_path(client, inpainter, weights_file) -> None:
    wrapped = base64.encodebytes(png(photo())).decode()  # 76 columns, like GNU base64
    assert "\n" in wrapped
    body = {"image": wrapped, "mask": base64.b64encode(png(box_mask())).decode()}
    assert client.post(INPAINT, json=body).status_code == 200
    app = create_app(inpainter, checkpoint=str(weights_file))
    with TestClient(app) as c:
        info = c.get("/api/v1/model").json()
    assert info["checkpoint"] == info["name"] == "tiny.safetensors"
    assert str(weights_file.parent) not in json.dumps(info)


def test_a_long_url_gets_a_short_404(client, caplog) -> None:
    with caplog.at_level("INFO", logger="ctsdg.serve"):
        response = client.get("/" + "a" * 60_000)  # httpx refuses longer; h11: 16 KiB
    assert_error(response, 404, "not found: /aaa", "...")
    assert len(response.content) < 600  # the line twice: under "error" and "errors"
    assert all(len(r.getMessage()) < 400 for r in caplog.records if r.name == "ctsdg.serve")


def test_flags_that_break_every_request_are_refused_at_start(monkeypatch, capsys) -> None:
    monkeypatch.setattr("ctsdg.serve.server.serve", lambda *a, **k: pytest.fail("served"))
    monkeypatch.delenv("CTSDG_TOKEN", raising=False)
    for flags in (["--timeout", "nan"], ["--timeout", "inf"], ["--max-upload-mb", "nan"],
                  ["--max-upload-mb", "inf"], ["--token", ""], ["--token", "  "]):  # fmt: skip
        assert main(["serve", "--checkpoint", "x.pt", *flags]) == 2, flags
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and flags[0] in err, err
    monkeypatch.setenv("CTSDG_TOKEN", "")
    assert main(["serve", "--checkpoint", "x.pt"]) == 2
    assert "CTSDG_TOKEN is set but empty" in capsys.readouterr().err
    with pytest.raises(InputError, match="--timeout"):
        Limits(timeout_s=float("nan"))


# --------------------------------------------------------------------------- slow clients


async def call_app(app, body_chunks: list[bytes], *, then_wait: bool, trickle=False) -> list:
    """POST to the ASGI app directly: ``body_chunks``, then (``then_wait``) no more bytes ever,
    or (``trickle``) one byte every 20 ms for 3 s. Returns the messages the app sent."""
    sent: list = []
    queue = [{"type": "http.request", "body": c, "more_body": True} for c in body_chunks]
    if not then_wait:
        queue.append({"type": "http.request", "body": b"", "more_body": False})
    trickled = []

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(0.02 if trickle else 3600)
        trickled.append(1)
        return {"type": "http.request", "body": b"\0", "more_body": len(trickled) < 150}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": INPAINT, "raw_path": INPAINT.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80),
             "client": ("c", 1), "http_version": "1.1", "asgi": {"version": "3.0"},
             "headers": [(b"content-type", b"multipart/form-data; boundary=x")]}  # fmt: skip
    await app(scope, receive, send)
    return sent


def answer(sent: list) -> tuple[int, dict, str]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body.decode()


def test_slow_bodies_hold_queue_slots_get_408_in_time_and_503_on_shutdown(inpainter) -> None:
    async def scenario() -> None:
        app = create_app(inpainter, Limits(max_queue=2, timeout_s=0.6))
        slow = asyncio.create_task(call_app(app, [b"--x\r\n"], then_wait=True))
        stuck = asyncio.create_task(call_app(app, [b"--x\r\n"], then_wait=True))
        await asyncio.sleep(0.1)
        assert app.state.worker.pending == 2  # bodies being received hold their slots
        status, headers, text = answer(await call_app(app, [b"x"], then_wait=False))
        assert status == 503 and "--max-queue 2" in text and headers["connection"] == "close"
        start = time.monotonic()
        status, headers, text = answer(await slow)
        assert status == 408 and "--timeout 0.6" in text and headers["connection"] == "close"
        assert time.monotonic() - start < 0.6 + 0.5
        assert answer(await stuck)[0] == 408
        assert app.state.worker.pending == 0
        # a steady trickle (a byte every 20 ms) is cut off at the deadline too
        start = time.monotonic()
        status, _, text = answer(await call_app(app, [b"--x"], then_wait=True, trickle=True))
        assert status == 408 and time.monotonic() - start < 0.6 + 0.5, text
        # shutdown: a body being received gets 503 at once, not after the deadline
        app = create_app(inpainter, Limits(timeout_s=60))
        upload = asyncio.create_task(call_app(app, [b"--x\r\n"], then_wait=True))
        await asyncio.sleep(0.1)
        app.state.draining = True
        start = time.monotonic()
        status, _, text = answer(await upload)
        assert status == 503 and "shutting down" in text and time.monotonic() - start < 1

    asyncio.run(scenario())


def test_a_timed_out_job_stops_at_its_next_forward_pass(inpainter, recwarn) -> None:
    """crop with 20 regions is 5 forward passes of 0.3 s; --timeout 0.4 stops it after 2."""
    calls = []

    class Slow(Inpainter):
        def _fill(self, crops, holes):
            calls.append(len(crops))
            time.sleep(0.3)
            return super()._fill(crops, holes)

    slow = Slow(inpainter.generator, size=SIZE)
    holes = np.zeros((200, 300), np.uint8)
    holes[10:190:40, 10:290:60] = 255  # 5 x 5 = 25 isolated pixels, 25 regions
    assert len(slow.regions(holes > 0)) == 25
    app = create_app(slow, Limits(timeout_s=0.4, max_queue=1))
    with TestClient(app) as c:
        mask = png(Image.fromarray(holes))
        response = c.post(INPAINT, files=files(mask=mask), data={"strategy": "crop"})
        assert_error(response, 503, "--timeout 0.4")
        deadline = time.monotonic() + 5
        while app.state.worker.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.worker.pending == 0
        assert len(calls) <= 3 < 7  # 25 regions / 4 per pass = 7 passes if it had run on


def rss_mb_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def slow_client(address, kind: str, timeout_s: float, results: list) -> None:
    """One hostile client: ``body`` declares 4.9 MB, sends 4.5 MB, then a byte every 0.5 s;
    ``headers`` trickles its headers a byte every 0.5 s; ``silent`` sends nothing. Records
    (kind, seconds until the server cut it off, the status line it got or '')."""
    import socket

    sock = socket.create_connection(address, timeout=timeout_s * 3)
    start = time.monotonic()
    head = (
        b"POST /api/v1/inpaint HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; "
        b"boundary=x\r\nContent-Length: 4900000\r\n\r\n"
    )
    answer = b""
    try:
        if kind == "body":
            sock.sendall(head + b"\0" * 4_500_000)
        trickle = head if kind == "headers" else b"\0" * 400_000
        for i in range(int(timeout_s * 3 / 0.5)):  # bounded: three times the timeout
            if kind != "silent":
                sock.send(trickle[i : i + 1])
            readable = select.select([sock], [], [], 0.5)[0]
            if readable:
                answer = sock.recv(65536)
                break
    except OSError:  # reset by the server: cut off too
        pass
    finally:
        sock.close()
    results.append((kind, time.monotonic() - start, answer.split(b"\r\n", 1)[0].decode()))


@contextlib.contextmanager
def real_server(weights_file: Path, *flags: str):
    """``ctsdg serve`` on 127.0.0.1 and a free port: yields (process, base URL, address) once
    health answers; killed at the end if it is still running."""
    import urllib.request

    command = [sys.executable, "-m", "ctsdg", "serve", "--checkpoint", str(weights_file),
               "--port", "0", "--size", str(SIZE), "--device", "cpu", *flags]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            match = re.search(r"open (http://\S+) in a browser", line)
            url = match[1] if match else None
        assert url is not None
        with urllib.request.urlopen(url + "api/v1/health", timeout=60) as response:
            assert response.status == 200  # started: uvicorn accepts and answers
        host, port = url.split("//")[1].rstrip("/").split(":")
        yield proc, url, (host, int(port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
def test_real_server_bounds_slow_clients(weights_file):
    """uvicorn on 127.0.0.1: 30 slow uploads, 4 trickled headers and a silent connection at
    once. Each is cut off within --timeout, health answers throughout, and the server's memory
    stays within --max-queue bodies (figures in docs/serving.md)."""
    import urllib.request

    timeout_s, queue, upload_mb = 6, 2, 5
    flags = ("--timeout", str(timeout_s), "--max-queue", str(queue),
             "--max-upload-mb", str(upload_mb))  # fmt: skip
    with real_server(weights_file, *flags) as (proc, url, address):
        health = url + "api/v1/health"
        rss_before = rss_mb_of(proc.pid)
        results: list = []
        kinds = ["body"] * 30 + ["headers"] * 4 + ["silent"]
        threads = [threading.Thread(target=slow_client, args=(address, k, timeout_s, results))
                   for k in kinds]  # fmt: skip
        for thread in threads:
            thread.start()
        latencies, rss_peak = [], rss_before
        while any(t.is_alive() for t in threads) and len(latencies) < 200:  # bounded
            start = time.monotonic()
            with urllib.request.urlopen(health, timeout=5) as response:
                assert response.status == 200
            latencies.append(time.monotonic() - start)
            rss_peak = max(rss_peak, rss_mb_of(proc.pid))
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout_s * 4)
        assert len(results) == len(kinds)
        cut = {kind: round(max(s for k, s, _ in results if k == kind), 2) for kind in set(kinds)}
        statuses = sorted({status for _, _, status in results})
        grown = rss_peak - rss_before
        print(json.dumps({"timeout_s": timeout_s, "max_queue": queue, "max_upload_mb": upload_mb,
                          "clients": len(kinds), "cut_off_within_s": cut, "statuses": statuses,
                          "health_requests": len(latencies),
                          "health_max_ms": round(max(latencies) * 1000),
                          "rss_before_mb": round(rss_before),
                          "rss_peak_growth_mb": round(grown)}))  # fmt: skip
        assert all(seconds < timeout_s + 1.5 for seconds in cut.values()), cut
        assert max(latencies) < 1.5 and len(latencies) >= timeout_s  # health all along
        # the documented bound: --max-queue bodies, briefly twice one while it is parsed
        assert grown < queue * upload_mb * 2 + upload_mb + 25, grown
        refusals = {"HTTP/1.1 408 Request Timeout", "HTTP/1.1 503 Service Unavailable", ""}
        assert set(statuses) <= refusals, statuses


@pytest.mark.slow
def test_real_server_stops_promptly_on_sigterm_with_an_upload_half_sent(weights_file):
    """SIGTERM with an idle keep-alive connection and an upload half sent: the upload gets
    503 at once, the idle connection is closed (not answered), the process ends."""
    import socket

    timeout_s = 20
    with real_server(weights_file, "--timeout", str(timeout_s)) as (proc, _, address):
        idle = socket.create_connection(address, timeout=10)
        idle.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        seen = b""
        while b'{"status":"ok"}' not in seen and len(seen) < 65536:  # headers, then the body
            data = idle.recv(65536)
            assert data, seen
            seen += data
        assert seen.startswith(b"HTTP/1.1 200")
        upload = socket.create_connection(address, timeout=10)
        upload.sendall(
            b"POST /api/v1/inpaint HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; "
            b"boundary=x\r\nContent-Length: 2000000\r\n\r\n" + b"\0" * 1_000_000
        )
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        answer = b""
        try:
            while not answer.endswith(b"}") and len(answer) < 65536:  # headers, then the body
                data = upload.recv(65536)
                if not data:
                    break
                answer += data
        except TimeoutError:
            answer += b"(no answer within 10 s)"
        answered = time.monotonic() - start
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
        ended = round(time.monotonic() - start, 2) if proc.poll() is not None else None
        first = answer.split(b"\r\n")[0].decode()
        print(json.dumps({"timeout_s": timeout_s, "upload_answer": first,
                          "upload_answered_s": round(answered, 2), "exit_s": ended}))  # fmt: skip
        assert answer.startswith(b"HTTP/1.1 503") and b"server shutting down" in answer, answer
        assert idle.recv(65536) == b""  # closed, not answered
        assert answered < 1.5 and ended is not None and ended < 5, (answered, ended)
        assert (
            proc.returncode == 128 + signal.SIGTERM
        )  # the CLI's Terminated: 143, as a shell shows it
        assert "Traceback" not in proc.stderr.read()
