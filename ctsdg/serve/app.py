"""The ``ctsdg serve`` web application: the page and the HTTP API around one `Inpainter`.

``create_app(inpainter, limits)`` builds a Starlette app; routes only parse, queue and encode.
The model runs in one worker thread behind a bounded queue (`Worker`), so the event loop keeps
answering (``/api/v1/health`` included) while an image is inpainted. A request takes its queue
slot before its body is read, so memory is bounded by ``max_queue`` bodies (being received,
queued or running) of at most ``max_upload_mb`` plus one decoded image at a time.

API (``/api/v1``; see docs/serving.md):

- ``GET /api/v1/health`` -> ``{"status": "ok"}``
- ``GET /api/v1/model`` -> name, format, structure, size, width, device, precision, strategies,
  limits
- ``POST /api/v1/inpaint`` -> the result image bytes (multipart files ``image`` and ``mask``, or a
  JSON object with base64 strings; optional ``strategy`` and ``format``; or the JSON body that
  IOPaint's clients send, `ctsdg.serve.iopaint`)

Every error is JSON ``{"error": "<one line>"}`` (the same line under ``errors`` too, the key
IOPaint's web app shows); tracebacks stay in the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctsdg.errors import InputError
from ctsdg.inference import STRATEGIES, Inpainter
from ctsdg.serve.uploads import (
    FORMATS,
    REQUEST_START,
    InpaintRequest,
    Limits,
    RequestError,
    check_format_size,
    decode,
    encode,
    open_header,
    output_format,
    parse_request,
    read_body,
)

log = logging.getLogger("ctsdg.serve")

# The page's files, read once: no route maps request data to a file on the server.
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page loads nothing from elsewhere (it must work offline); results are blob: URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
        "style-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


#: How much of a request path an error message or a log line shows.
SHOWN_PATH = 200


class QueueFull(RequestError):
    """503: ``max_queue`` requests are already being received, queued or running."""


class JobStopped(Exception):
    """Raised inside a job whose request has given up (its ``--timeout`` passed)."""


class Worker:
    """One inference thread behind at most ``max_queue`` slots (bodies being received, jobs
    queued or running).

    A request `reserve`s its slot before its body is read; the slot is released when the job
    really ends (`submit`), or by `release` when the request fails before it has a job. A job
    whose request timed out stops at its next check (`_Job`), so its slot comes back soon.
    """

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctsdg-inpaint")
        self._lock = threading.Lock()
        self._pending = 0
        self._mean_s = 1.0  # running mean of a job's duration, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    def reserve(self) -> None:
        """Take a slot, or raise QueueFull (503 with ``Retry-After``)."""
        with self._lock:
            if self._pending >= self.max_queue:
                retry = max(1, math.ceil(self._mean_s * self._pending))
                raise QueueFull(
                    503,
                    f"server busy: {self._pending} requests being received, queued or running "
                    f"(--max-queue {self.max_queue}); retry in {retry} s",
                    {"Retry-After": str(retry), "Connection": "close"},
                )
            self._pending += 1

    def release(self) -> None:
        """Give back a slot taken by `reserve` that never got a job."""
        with self._lock:
            self._pending -= 1

    def submit(self, job: Callable[[], Any]) -> Future:
        """Queue ``job`` in a slot already reserved; the slot is released when the job ends."""
        future = self._executor.submit(self._timed, job)
        future.add_done_callback(lambda _: self.release())
        return future

    def retry_after(self) -> int:
        return max(1, math.ceil(self._mean_s * max(1, self._pending)))

    def _timed(self, job: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return job()
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)

    def shutdown(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        self._executor.shutdown(wait=True)


def model_info(inpainter: Inpainter, checkpoint: str, checkpoint_format: str) -> dict[str, Any]:
    """What ``GET /api/v1/model`` reports about the loaded model: the checkpoint's file (or
    folder) name only, never its path on the server."""
    name = checkpoint.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or checkpoint
    return {
        "name": name,
        "checkpoint": name,
        "format": checkpoint_format,
        "structure": inpainter.structure,
        "size": inpainter.size,
        "width": getattr(inpainter.generator, "width", None),
        "device": str(inpainter.device),
        "precision": inpainter.precision,
        "backend": inpainter.backend,
    }


def create_app(
    inpainter: Inpainter,
    limits: Limits | None = None,
    *,
    checkpoint: str = "(in memory)",
    checkpoint_format: str = "unknown",
) -> Starlette:
    """The web app serving ``inpainter`` (page + API) within ``limits``.

    ``checkpoint`` (its name) and ``checkpoint_format`` are only reported by ``/api/v1/model``.
    The app's ``state.draining`` set to True makes every new request get 503, and bodies being
    received stop with 503 (graceful shutdown).
    """
    limits = limits or Limits()
    worker = Worker(limits.max_queue)
    info = model_info(inpainter, checkpoint, checkpoint_format)
    info["limits"] = {
        "max_upload_mb": limits.max_upload_mb,
        "max_pixels": limits.max_pixels,
        "max_queue": limits.max_queue,
        "timeout_s": limits.timeout_s,
        "max_original_pixels": limits.max_original_pixels,
        "token_required": limits.token is not None,
    }
    info["strategies"] = list(STRATEGIES)
    variants = {}  # strategy -> inpainter sharing the one generator
    for strategy in STRATEGIES:
        variant = copy.copy(inpainter)
        variant.strategy = strategy
        variant.max_original_pixels = limits.max_original_pixels
        variants[strategy] = variant
    pages = {
        path: (resources.files("ctsdg.serve").joinpath("static", name).read_bytes(), media)
        for path, (name, media) in _STATIC.items()
    }

    async def page(request: Request) -> Response:
        content, media = pages[request.url.path]
        return Response(content, media_type=media, headers=_PAGE_HEADERS)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(info)

    async def inpaint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        # The request's first byte (ctsdg serve's protocol records it), else now.
        started = request.scope.get("extensions", {}).get(REQUEST_START, time.monotonic())
        worker.reserve()  # before the body is read: bodies in memory count against the queue
        submitted = False
        try:
            body = await read_body(
                headers,
                request.receive,
                limits,
                deadline=started + limits.timeout_s,
                draining=lambda: request.app.state.draining,
            )
            fields = parse_request(headers.get("content-type", ""), body)
            del body
            # Header checks on the event loop (cheap); decoding and the model in the worker.
            image = open_header(fields.image, "image", limits.max_pixels)
            mask = open_header(fields.mask, "mask", limits.max_pixels)
            variant = variants[fields.strategy]
            if (fields.iopaint.name if fields.iopaint else fields.strategy).lower() == "original":
                try:  # refused before it is queued; EXIF rotation keeps the padded area
                    variant.check_original(*image.size)
                except InputError as err:
                    raise RequestError(400, str(err)) from None
            fields.format = output_format(fields, image)
            check_format_size(image.size, fields.format)
            job = _Job(variant, image, mask, fields)
            future = worker.submit(job.run)
            submitted = True
        finally:
            if not submitted:
                worker.release()
        try:
            content, note = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout_s)
        except asyncio.TimeoutError:  # the wrapped future's cancel drops a job not yet started
            job.stopped.set()  # and a started one stops at its next check
            raise RequestError(
                503,
                f"inpainting took longer than the server's --timeout {limits.timeout_s:g} s",
                {"Retry-After": str(worker.retry_after())},
            ) from None
        extra = {"X-Ctsdg-Warning": note} if note else {}
        if fields.from_iopaint:  # IOPaint's web app reads it
            extra["X-Seed"] = str(fields.seed)
        return Response(
            content,
            media_type=FORMATS[fields.format][1],
            headers={
                "Content-Disposition": f'inline; filename="inpainted.{fields.format}"',
                **extra,
            },
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await asyncio.get_running_loop().run_in_executor(None, worker.shutdown)

    routes = [Route(path, page, methods=["GET"]) for path in _STATIC]
    routes += [
        Route("/api/v1/health", _api(health), methods=["GET"]),
        Route("/api/v1/model", _api(model), methods=["GET"]),
        Route("/api/v1/inpaint", _api(inpaint), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.draining = False
    app.state.worker = worker
    app.add_middleware(_Gate, app_ref=app, token=limits.token)
    return app


class _Job:
    """Decode, inpaint and encode one request (runs in the worker thread).

    ``stopped`` set (the request timed out) makes the job end at its next check: between
    decoding, each forward pass and encoding.
    """

    def __init__(
        self, inpainter: Inpainter, image: Image.Image, mask: Image.Image, fields: InpaintRequest
    ) -> None:
        self.inpainter, self.image, self.mask, self.fields = inpainter, image, mask, fields
        self.stopped = threading.Event()

    def check(self) -> None:
        if self.stopped.is_set():
            raise JobStopped("the request's --timeout passed")

    def run(self) -> tuple[bytes, str | None]:
        self.check()
        image = decode(self.image, "image")
        self.check()
        mask = decode(self.mask, "mask")
        if mask.size != image.size:
            raise RequestError(
                400,
                f"mask: {mask.width}x{mask.height} but the image is {image.width}x{image.height}; "
                "send a mask of the image's size",
            )
        if self.fields.from_iopaint:  # as IOPaint reads a mask: its gray only, alpha dropped
            mask = mask.convert("L")
        try:
            result = self.inpainter.inpaint(
                image, mask, iopaint=self.fields.iopaint, check=self.check
            )
        except InputError as err:
            raise RequestError(400, str(err)) from None
        self.check()
        return encode(result, self.fields.format)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "errors": message}, status_code=status, headers=headers)


def _api(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
    """Refused requests become their JSON error; anything unexpected a 500 (logged here)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as err:
            return _error(err.status, err.message, err.headers)
        except ClientDisconnect:  # nobody is left to read an answer; not a server fault
            return _error(400, "client disconnected before the request was complete")
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return _error(500, "internal error while handling the request; see the server log")

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    """404 / 405 from the router, as JSON."""
    assert isinstance(exc, HTTPException)
    path = _shown(request.url.path)
    if exc.status_code == 404:
        message = f"not found: {path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} not allowed on {path}; use {allowed}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, dict(exc.headers or {}))


def _shown(path: str) -> str:
    """A request path cut to `SHOWN_PATH` characters (a 100 KB URL gets a short answer)."""
    return path if len(path) <= SHOWN_PATH else path[:SHOWN_PATH] + "..."


class _Gate:
    """Outermost layer: one log line per request, 503 while draining, the bearer token."""

    def __init__(self, app: ASGIApp, app_ref: Starlette, token: str | None) -> None:
        self.app = app
        self.app_ref = app_ref
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.0f ms", scope["method"], _shown(scope["path"]), status[0], ms)

    def _refusal(self, scope: Scope) -> Response | None:
        if self.app_ref.state.draining:
            return _error(503, "server shutting down", {"Retry-After": "5", "Connection": "close"})
        if self.token is not None and scope["path"].startswith("/api/"):
            sent = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, value = sent.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                what = "missing" if not sent else "wrong"
                return _error(
                    401,
                    f"Authorization: token {what}; send 'Authorization: Bearer <token>' "
                    "(the server's --token or CTSDG_TOKEN)",
                    {"WWW-Authenticate": "Bearer"},
                )
        return None
