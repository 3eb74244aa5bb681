"""The standard weight files: fetched from a local HTTP server (never the internet), cached,
verified, mirrored, and the messages when they cannot be had."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ctsdg import weights
from ctsdg.cli import main
from ctsdg.errors import CommandError, InputError

LPIPS_WIDTHS = (64, 128, 256, 512, 512)
PAYLOAD = b"weights of a network, as bytes\n" * 1000


class _Server:
    """An http.server on 127.0.0.1 in a thread: ``files`` maps a URL path to bytes, a path in
    ``short`` announces more bytes than it sends; ``requests`` lists what was asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.short: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                extra = 1000 if self.path in server.short else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(weights.MIRROR_VARIABLE, raising=False)
    return home


def _closed_port_url() -> str:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _register(
    monkeypatch: pytest.MonkeyPatch, url: str, *, data: bytes = PAYLOAD, prefix_only: bool = False
) -> weights.StandardWeights:
    digest = hashlib.sha256(data).hexdigest()
    fake = weights.StandardWeights(
        name="fake",
        file=f"fake-{digest[:8]}.pth",
        url=f"{url}/models/fake-{digest[:8]}.pth",
        sha256=digest[:8] if prefix_only else digest,
        what="fake weights (for tests)",
        keys=("fake_weights",),
    )
    monkeypatch.setitem(weights.REGISTRY, "fake", fake)
    return fake


def _cache_files(home: Path) -> list[str]:
    folder = home / "hub" / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_cache_is_torch_hubs_and_honours_torch_home(torch_home: Path) -> None:
    assert weights.cache_dir() == torch_home / "hub" / "checkpoints"
    assert Path(torch.hub.get_dir()) / "checkpoints" == weights.cache_dir()
    assert weights.cache_path("vgg16") == torch_home / "hub/checkpoints/vgg16-397923af.pth"


@pytest.mark.parametrize("prefix_only", [False, True])
def test_fetch_then_cache_hit(server, torch_home, monkeypatch, prefix_only: bool) -> None:
    fake = _register(monkeypatch, server.url, prefix_only=prefix_only)
    server.files[f"/models/{fake.file}"] = PAYLOAD
    path = weights.resolve("fake", "auto")
    assert path == torch_home / "hub" / "checkpoints" / fake.file
    assert path.read_bytes() == PAYLOAD
    assert _cache_files(torch_home) == [fake.file]  # no temporary file left beside it
    assert server.requests == [f"/models/{fake.file}"]
    # second time: from the cache, verified, no request
    assert weights.resolve("fake", "auto") == path
    assert len(server.requests) == 1
    assert weights.status("fake", check=True).state == "verified"


def test_checksum_mismatch_leaves_nothing(server, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, server.url)
    server.files[f"/models/{fake.file}"] = PAYLOAD[:-1] + b"?"  # one byte off
    with pytest.raises(CommandError, match="checksum does not match") as err:
        weights.resolve("fake", "auto")
    assert "\n" not in str(err.value) and fake.file in str(err.value)
    assert str(err.value).endswith("not the published file, not kept")
    assert _cache_files(torch_home) == []


def test_cached_file_that_does_not_match_is_refused(torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, _closed_port_url())
    path = weights.cache_path("fake")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"corrupt")
    with pytest.raises(CommandError, match=r"checksum does not match") as err:
        weights.resolve("fake", "auto")
    assert str(err.value).endswith("remove it and run: ctsdg weights fetch fake")
    assert weights.status("fake", check=True).state == "checksum mismatch"
    assert fake.file in _cache_files(torch_home)  # the user's file is not deleted


def test_mirror_serves_the_same_file_names(server, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, _closed_port_url())  # the original is unreachable
    server.files[f"/mirror/{fake.file}"] = PAYLOAD
    monkeypatch.setenv(weights.MIRROR_VARIABLE, f"{server.url}/mirror/")
    assert weights.source_url("fake") == f"{server.url}/mirror/{fake.file}"
    assert weights.resolve("fake", "auto").read_bytes() == PAYLOAD
    assert server.requests == [f"/mirror/{fake.file}"]


def test_file_url_mirror(tmp_path, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, _closed_port_url())
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / fake.file).write_bytes(PAYLOAD)
    monkeypatch.setenv(weights.MIRROR_VARIABLE, (tmp_path / "share").as_uri())
    assert weights.resolve("fake", "auto").read_bytes() == PAYLOAD


def test_offline_names_file_source_and_place(torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, _closed_port_url())
    with pytest.raises(CommandError) as err:
        weights.resolve("fake", "auto")
    message = str(err.value)
    assert "\n" not in message
    assert fake.file in message and fake.url in message
    assert str(torch_home / "hub" / "checkpoints" / fake.file) in message
    assert weights.MIRROR_VARIABLE in message
    assert _cache_files(torch_home) == []


def test_http_error_and_cut_connection(server, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, server.url)
    with pytest.raises(CommandError, match="HTTP 404"):
        weights.resolve("fake", "auto")
    server.files[f"/models/{fake.file}"] = PAYLOAD
    server.short.add(f"/models/{fake.file}")
    with pytest.raises(CommandError, match="connection closed with 1000 bytes still to come"):
        weights.resolve("fake", "auto")
    assert _cache_files(torch_home) == []


def test_interrupt_leaves_nothing(server, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, server.url)
    server.files[f"/models/{fake.file}"] = PAYLOAD

    def interrupted(*_args):
        yield PAYLOAD[:10]
        raise KeyboardInterrupt

    monkeypatch.setattr(weights, "_chunks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weights.resolve("fake", "auto")
    assert _cache_files(torch_home) == []


def test_a_path_spec_must_exist(tmp_path, torch_home) -> None:
    given = tmp_path / "mine.pth"
    given.write_bytes(b"x")
    assert weights.resolve("vgg16", str(given)) == given  # a user's own file is not hashed
    missing = r"nope\.pth: VGG16 weights .* not found \(pretrained_vgg=auto"
    with pytest.raises(InputError, match=missing):
        weights.resolve("vgg16", str(tmp_path / "nope.pth"))
    with pytest.raises(InputError, match=r"is a directory; expected FID Inception"):
        weights.resolve("fid_inception", str(tmp_path))
    with pytest.raises(InputError, match=r"unknown standard weights 'x'; known: vgg16"):
        weights.resolve("x", "auto")


def test_installed_copy_is_taken_first(tmp_path, server, torch_home, monkeypatch) -> None:
    fake = _register(monkeypatch, server.url)
    local = tmp_path / "installed.pth"
    local.write_bytes(PAYLOAD)
    monkeypatch.setitem(
        weights.REGISTRY, "fake", dataclasses.replace(fake, installed=lambda: local)
    )
    assert weights.resolve("fake", "auto").read_bytes() == PAYLOAD
    assert server.requests == []
    assert weights.status("fake").source == f"installed lpips ({local})"


def test_installed_lpips_found_without_importing_it() -> None:
    sys.modules.pop("lpips", None)
    found = weights._installed_lpips_vgg()
    if found is None:
        pytest.skip("optional: pip install --no-deps lpips")
    assert "lpips" not in sys.modules
    assert found.as_posix().endswith("lpips/weights/v0.1/vgg.pth")
    assert hashlib.sha256(found.read_bytes()).hexdigest() == weights.REGISTRY["lpips_vgg"].sha256


def _vgg_state() -> dict[str, torch.Tensor]:
    from ctsdg.models import VGG16Features

    source = VGG16Features.random(seed=3)
    return {f"features.{k}": v for k, v in source.features.state_dict().items()}


def test_pretrained_vgg_auto_loads_the_cached_file(server, torch_home, monkeypatch) -> None:
    """``auto`` resolves where the file is opened: here the training losses' VGG."""
    import io

    from ctsdg.config import Config
    from ctsdg.training.steps import vgg_from_config

    buffer = io.BytesIO()
    state = _vgg_state()
    torch.save(state, buffer)
    data = buffer.getvalue()
    vgg = dataclasses.replace(
        weights.REGISTRY["vgg16"],
        url=f"{server.url}/models/vgg16-397923af.pth",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(weights.REGISTRY, "vgg16", vgg)
    server.files["/models/vgg16-397923af.pth"] = data
    loaded = vgg_from_config(Config(pretrained_vgg="auto"))
    for key, tensor in loaded.features.state_dict().items():
        torch.testing.assert_close(tensor, state[f"features.{key}"])
    assert server.requests == ["/models/vgg16-397923af.pth"]


def test_lpips_weights_auto_loads_the_cached_file(tmp_path, torch_home, monkeypatch) -> None:
    from ctsdg.metrics import LPIPS

    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPS_WIDTHS)}
    local = tmp_path / "vgg.pth"
    torch.save(lin, local)
    entry = dataclasses.replace(
        weights.REGISTRY["lpips_vgg"],
        url=_closed_port_url(),
        sha256=hashlib.sha256(local.read_bytes()).hexdigest(),
        installed=lambda: local,
    )
    monkeypatch.setitem(weights.REGISTRY, "lpips_vgg", entry)
    trunk = tmp_path / "vgg16.pth"
    state = {f"features.{k}": v for k, v in LPIPS().features.state_dict().items()}
    torch.save(state, trunk)
    metric = LPIPS.from_files("auto", trunk)
    assert weights.cache_path("lpips_vgg").read_bytes() == local.read_bytes()
    for i, weight in enumerate(metric.lins):
        torch.testing.assert_close(weight, lin[f"lin{i}.model.1.weight"])


def test_shipped_configs_use_auto() -> None:
    from ctsdg.config import load_config, shipped_config

    for name in ("celeba", "places2", "paris_streetview"):
        assert load_config(shipped_config(name)).pretrained_vgg == "auto"


def test_weights_command(server, torch_home, monkeypatch, capsys) -> None:
    fake = _register(monkeypatch, server.url)
    server.files[f"/models/{fake.file}"] = PAYLOAD
    assert main(["weights", "list"]) == 0
    listed = capsys.readouterr().out
    line = next(row for row in listed.splitlines() if row.startswith("| fake "))
    assert "missing" in line and fake.url in line
    assert str(torch_home / "hub" / "checkpoints" / fake.file) in line

    assert main(["weights", "fetch", "fake", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"fake: {weights.cache_path('fake')} (verified)"
    assert main(["weights", "fetch", "fake"]) == 0
    assert "already there" in capsys.readouterr().out
    assert main(["weights", "verify"]) == 0
    line = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("| fake "))
    assert "| verified " in line

    weights.cache_path("fake").write_bytes(b"tampered")
    assert main(["weights", "verify"]) == 1
    assert "checksum mismatch" in capsys.readouterr().out
    assert main(["weights", "fetch", "nonesuch"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_weights_command_offline_is_one_line(torch_home, monkeypatch, capsys) -> None:
    fake = _register(monkeypatch, _closed_port_url())
    assert main(["weights", "fetch", "fake"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctsdg: error: ") and "\n" not in err and fake.file in err


def test_an_installed_copy_of_another_digest_is_passed_over(
    tmp_path, server, torch_home, monkeypatch
) -> None:
    fake = _register(monkeypatch, server.url)
    server.files[f"/models/{fake.file}"] = PAYLOAD
    other = tmp_path / "other.pth"
    other.write_bytes(b"another version")
    monkeypatch.setitem(
        weights.REGISTRY, "fake", dataclasses.replace(fake, installed=lambda: other)
    )
    assert weights.status("fake").source == fake.url
    assert weights.resolve("fake", "auto").read_bytes() == PAYLOAD
    assert server.requests == [f"/models/{fake.file}"]
