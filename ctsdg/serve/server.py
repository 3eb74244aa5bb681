"""Running the app: ``ctsdg serve`` loads a checkpoint and serves it with uvicorn.

Slow clients: a request's headers and body must arrive within ``--timeout`` of its first byte
(`_deadline_protocol` for the headers, which the app cannot see; ``read_body`` for the body).

Shutdown (SIGTERM, or Ctrl-C): the listening socket and idle keep-alive connections are closed,
bodies still being received get 503, jobs in flight finish (each stops at its ``--timeout``),
then the inference thread stops. uvicorn cancels what is left after ``--timeout`` + 5 s.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from ctsdg.errors import InputError
from ctsdg.serve.uploads import REQUEST_START, Limits

log = logging.getLogger("ctsdg.serve")

#: What ``ctsdg serve`` without ``--checkpoint`` serves (``make demo`` writes it).
DEMO_RUN = Path("runs/demo")


def load_inpainter(
    checkpoint: str | Path,
    device: str = "auto",
    *,
    precision: str = "fp32",
    backend: str = "eager",
    size: int | None = None,
    structure: str | None = None,
):
    """(Inpainter, checkpoint format) from any checkpoint `ctsdg.load_weights` reads."""
    from ctsdg.checkpoints import load_weights
    from ctsdg.inference import Inpainter

    weights = load_weights(checkpoint)
    inpainter = Inpainter.from_weights(
        weights, device, size=size, structure=structure, precision=precision, backend=backend
    )
    return inpainter, weights.format


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (InputError naming the address when that fails)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InputError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        hint = (
            " (pass another --port, or 0 for any free port)"
            if err.errno == errno.EADDRINUSE
            else ""
        )
        raise InputError(f"cannot listen on {host}:{port}: {err.strerror}{hint}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve(
    checkpoint: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "eager",
    size: int | None = None,
    structure: str | None = None,
    limits: Limits | None = None,
) -> int:
    """Load the model, print the URL, serve until SIGTERM / Ctrl-C. Returns the exit status."""
    import uvicorn
    from PIL import Image

    from ctsdg.runtime import tune_cpu_allocator
    from ctsdg.serve.app import create_app

    limits = limits or Limits()
    if checkpoint is None:
        if not DEMO_RUN.is_dir():
            raise InputError(
                "no model to serve: pass --checkpoint PATH (any checkpoint ctsdg reads), "
                f"or run 'make demo' first to create {DEMO_RUN}"
            )
        checkpoint = str(DEMO_RUN)
    if host in ("0.0.0.0", "::", ""):
        print(
            f"ctsdg: warning: --host {host or '(all)'} makes the server reachable from other "
            "machines; anyone who can reach it can use it"
            + ("" if limits.token else " (set --token or CTSDG_TOKEN)"),
            file=sys.stderr,
        )
    # PIL's own bomb guard must not refuse what --max-pixels allows (our check runs first).
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, limits.max_pixels)
    tune_cpu_allocator()
    sock = listen(host, port)
    inpainter, fmt = load_inpainter(
        checkpoint, device, precision=precision, backend=backend, size=size, structure=structure
    )
    app = create_app(inpainter, limits, checkpoint=checkpoint, checkpoint_format=fmt)
    _log_to_stderr()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=_deadline_protocol(limits.timeout_s),
        timeout_graceful_shutdown=math.ceil(limits.timeout_s) + 5,
    )
    server = _draining_server(config, app)
    print(
        f"serving {checkpoint} ({fmt}, {inpainter.size}x{inpainter.size} model input, "
        f"'{inpainter.structure}' structure inputs, {inpainter.device}, {backend} {precision})"
    )
    print(f"open {url_for(sock, host)} in a browser (Ctrl-C to stop)", flush=True)
    # uvicorn re-raises the signal once it has shut down: SIGTERM ends the process with its
    # usual status, Ctrl-C becomes KeyboardInterrupt (exit 130) in the CLI.
    server.run(sockets=[sock])
    return 0


#: What a client whose headers did not arrive in time gets before its connection is closed.
_HEADERS_LATE = b'{"error":"headers: not received within the server\'s --timeout"}'


def _deadline_protocol(timeout_s: float):
    """uvicorn's h11 protocol with a deadline on each request's headers.

    The clock starts at the first byte of a request (on a new connection, or after the previous
    response on a keep-alive one); headers still incomplete ``timeout_s`` later get 408 and the
    connection is closed. The start is handed to the app (scope extension `REQUEST_START`),
    whose body deadline counts from it.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    response = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_HEADERS_LATE), _HEADERS_LATE)
    )

    class Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _started = 0.0

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self._started = time.monotonic()  # a connection that sends nothing is cut too
            self._timer = self.loop.call_later(timeout_s, self._headers_late)

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self._timer is None:
                self._started = time.monotonic()
                self._timer = self.loop.call_later(timeout_s, self._headers_late)
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # the headers are complete: a request began
                self._cancel()
                self.cycle.scope.setdefault("extensions", {})[REQUEST_START] = self._started

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                log.info("- (headers) 408 %.0f ms", (time.monotonic() - self._started) * 1000)
                self.transport.write(response)
                self.transport.close()

    return Protocol


def _draining_server(config, app):
    """uvicorn's server, which first marks the app as draining (new requests: 503) on a signal."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not app.state.draining:
                busy = app.state.worker.pending
                print(f"ctsdg serve: stopping after {busy} request(s) in flight", file=sys.stderr)
            app.state.draining = True
            super().handle_exit(sig, frame)

    return Server(config)


def _log_to_stderr() -> None:
    """One timestamped line per request on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
