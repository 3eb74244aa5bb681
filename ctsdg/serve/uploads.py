"""Reading an inpainting request within the server's limits, before anything is decoded.

Every limit is checked here, in one place, in the order that costs least:

1. the body's size: ``Content-Length`` first, then the bytes as they arrive (a client may lie or
   send chunked data), so at most ``max_upload_mb`` is ever held; and its time: the whole body
   must arrive within ``timeout_s`` of the request's first byte (408 otherwise), and a server
   that starts shutting down stops waiting for it (503);
2. the fields: ``multipart/form-data`` (files ``image`` and ``mask``, fields ``strategy`` and
   ``format``) or a JSON object with the same keys, the images as base64 strings; the fields of
   IOPaint's request are read as IOPaint means them (`ctsdg.serve.iopaint`), any other is
   refused;
3. each image's pixel count from its header (PIL's ``Image.open`` reads only the header), so a
   PNG that claims 40000 x 40000 is refused without allocating its pixels.

Uploads stay in memory: nothing is written to disk (Starlette's own form parser spools files
over 1 MB to temporary files, which is why the multipart body is parsed here with
python-multipart's streaming parser). Problems raise `RequestError` with the HTTP status and a
one-line message that names the field and what was expected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from ctsdg.choices import ORIGINAL_MAX_PIXELS
from ctsdg.data.images import DECODE_ERRORS, decode_reason, require_one_frame
from ctsdg.errors import InputError
from ctsdg.inference import STRATEGIES, IOPaintStrategy
from ctsdg.jobs import check_size, encode_image
from ctsdg.serve.iopaint import is_iopaint_field, read_seed, read_strategy

#: Output formats of ``POST /api/v1/inpaint`` -> (PIL format name, media type).
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
FIELDS = ("image", "mask", "strategy", "format")
#: PIL's name of an input's format -> the output format a request without ``format`` gets back
#: when it is IOPaint's (the input's own; any other input format comes back as PNG).
INPUT_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
#: The longest multipart boundary RFC 2046 allows.
MAX_BOUNDARY = 70


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a one-line ``message``, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Limits:
    """What one server accepts (the ``ctsdg serve`` flags of the same names).

    Attributes:
        max_upload_mb: largest request body, in MiB (``--max-upload-mb``).
        max_pixels: largest image or mask, width x height (``--max-pixels``).
        max_queue: requests being received, queued or running at once; more get 503
            (``--max-queue``).
        timeout_s: seconds a request may take to arrive (408 after), and seconds it may then
            wait and run (503 after; the work stops at its next forward pass) (``--timeout``).
        max_original_pixels: largest image strategy ``original`` runs, width x height after
            padding to multiples of 128 (``--max-original-pixels``; more: 400).
        token: when set, every ``/api/`` call needs ``Authorization: Bearer <token>``.

    Values that would break every request (NaN, infinity, zero or less, an empty token) raise
    InputError naming the flag.
    """

    max_upload_mb: float = 25.0
    max_pixels: int = 40_000_000
    max_queue: int = 8
    timeout_s: float = 120.0
    max_original_pixels: int = ORIGINAL_MAX_PIXELS
    token: str | None = None

    def __post_init__(self) -> None:
        for flag, value in (
            ("--max-upload-mb", self.max_upload_mb),
            ("--max-pixels", self.max_pixels),
            ("--max-queue", self.max_queue),
            ("--timeout", self.timeout_s),
            ("--max-original-pixels", self.max_original_pixels),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"{flag}: expected a finite positive number, got {value!r}")
        if self.token is not None and not self.token.strip():
            raise InputError(
                "--token: empty (was it given a variable that is not set?); pass a non-empty "
                "token, or leave --token and CTSDG_TOKEN out to serve without one"
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@dataclass
class InpaintRequest:
    """The fields of one request: encoded image and mask bytes, strategy, output format.

    A request with IOPaint's fields (`from_iopaint`) has ``iopaint`` (its strategy, unless it
    sent ctsdg's own ``strategy``), a ``seed`` for ``X-Seed``, and ``format`` None unless it sent
    one: the input's format, which the app sets from the image's header (`output_format`).
    """

    image: bytes
    mask: bytes
    strategy: str = "auto"
    format: str | None = "png"
    iopaint: IOPaintStrategy | None = None
    seed: int | None = None

    @property
    def from_iopaint(self) -> bool:
        """Whether a client written for IOPaint sent it (it has IOPaint's fields)."""
        return self.seed is not None


# --------------------------------------------------------------------------- the body


#: The ASGI scope extension in which ``ctsdg serve``'s protocol records the `time.monotonic`
#: of a request's first byte, so that headers and body share one ``--timeout``.
REQUEST_START = "ctsdg.request_start"
#: How often a body being received looks at the server's draining flag, in seconds.
DRAIN_POLL_S = 0.2
#: A refusal sent before the body has arrived closes the connection: the rest is not read.
CLOSE = {"Connection": "close"}


async def read_body(
    headers: dict[str, str],
    receive: Receive,
    limits: Limits,
    *,
    deadline: float,
    draining: Callable[[], bool],
) -> bytes:
    """The whole body, refusing as soon as it is known to exceed the upload limit (413), is
    not complete at ``deadline`` (`time.monotonic`, 408), or the server is ``draining`` (503).
    """
    too_large = RequestError(
        413, f"body: larger than the server's --max-upload-mb {limits.max_upload_mb:g}", CLOSE
    )
    declared = headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            shown = declared if len(declared) <= 40 else declared[:40] + "..."
            raise RequestError(
                400, f"Content-Length: expected a number of bytes, got {shown!r}", CLOSE
            )
        digits = declared.lstrip("0")  # 5000 digits are too many for int() and any body
        if len(digits) > 18 or int(digits or "0") > limits.max_upload_bytes:
            raise too_large
    chunks, size = [], 0
    pending: asyncio.Future | None = None
    try:
        while True:  # checked before every chunk: a steady trickle is cut off too
            if draining():
                raise RequestError(503, "server shutting down", {"Retry-After": "5", **CLOSE})
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestError(
                    408,
                    f"body: not received within the server's --timeout {limits.timeout_s:g} s "
                    f"({size} bytes arrived)",
                    CLOSE,
                )
            if pending is None:
                pending = asyncio.ensure_future(receive())
            await asyncio.wait({pending}, timeout=min(left, DRAIN_POLL_S))
            if not pending.done():
                continue
            message, pending = pending.result(), None
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        if pending is not None:
            pending.cancel()


def parse_request(content_type: str, body: bytes) -> InpaintRequest:
    """The request's fields from a multipart or JSON body, values checked (400 otherwise)."""
    media, params = parse_options_header(content_type)
    if media == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise RequestError(400, "Content-Type: multipart/form-data without a boundary")
        if len(boundary) > MAX_BOUNDARY:
            raise RequestError(
                400,
                f"Content-Type: a multipart boundary of {len(boundary)} characters; at most "
                f"{MAX_BOUNDARY} (RFC 2046)",
            )
        fields = _parse_multipart(body, boundary)
    elif media == b"application/json":
        fields = _parse_json(body)
    else:
        shown = media.decode("latin-1") or "(none)"
        raise RequestError(
            415, f"Content-Type: expected multipart/form-data or application/json, got {shown}"
        )
    unknown = sorted(k for k in fields if k not in FIELDS and not is_iopaint_field(k))
    if unknown:
        raise RequestError(
            400,
            f"unknown field {unknown[0]!r}; expected {', '.join(FIELDS)} (or a field of "
            "IOPaint's InpaintRequest, docs/serving.md)",
        )
    for name in ("image", "mask"):
        if not fields.get(name):
            raise RequestError(400, f"{name}: missing; send the {name} as a file field")
    strategy = _text(fields, "strategy", "auto")
    if strategy not in STRATEGIES:
        raise RequestError(
            400, f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )
    fmt = _text(fields, "format", "")
    fmt = "jpeg" if fmt.lower() == "jpg" else fmt.lower()
    if fmt and fmt not in FORMATS:
        raise RequestError(400, f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    request = InpaintRequest(bytes(fields["image"]), bytes(fields["mask"]), strategy, fmt or "png")
    iopaint = {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        for k, v in fields.items()
        if is_iopaint_field(k)
    }
    if iopaint:  # a client written for IOPaint
        own = [k for k in iopaint if k.startswith("hd_")]
        if own and fields.get("strategy"):
            raise RequestError(
                400, f"strategy and {own[0]}: send ctsdg's strategy or IOPaint's, not both"
            )
        try:
            request.seed = read_seed(iopaint)
            if not fields.get("strategy"):
                request.iopaint = read_strategy(iopaint)
        except InputError as err:
            raise RequestError(400, str(err)) from None
        request.format = fmt or None
    return request


def output_format(request: InpaintRequest, image: Image.Image) -> str:
    """The request's ``format``, or for IOPaint's requests without one the input's own."""
    return request.format or INPUT_FORMATS.get(image.format or "", "png")


def _text(fields: dict[str, Any], name: str, default: str) -> str:
    raw = fields.get(name)
    if raw is None or raw == b"":
        return default
    if not isinstance(raw, bytes):  # a JSON value that is not a string
        raise RequestError(400, f"{name}: expected a string, got {type(raw).__name__}")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RequestError(400, f"{name}: expected UTF-8 text") from None


def _parse_multipart(body: bytes, boundary: bytes) -> dict[str, bytes]:
    """Fields of a multipart body, all in memory (the body is already within its limit)."""
    parts: dict[str, bytearray] = {}
    current: list[bytearray] = []  # the part being read, if it has a name
    header = {"field": bytearray(), "value": bytearray()}
    headers: dict[bytes, bytes] = {}
    ended = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        headers[bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"], header["value"] = bytearray(), bytearray()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        headers.clear()
        if not name:
            raise RequestError(400, "body: a multipart part without a name")
        if name in parts:
            raise RequestError(400, f"{name}: sent more than once")
        parts[name] = bytearray()
        current[:] = [parts[name]]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current[0] += data[start:end]

    callbacks: Any = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_end": lambda: ended.append(True),
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as err:
        first = (str(err).splitlines() or ["parse error"])[0]
        raise RequestError(400, f"body: malformed multipart/form-data ({first})") from None
    if not ended:
        raise RequestError(400, "body: multipart/form-data ends before its closing boundary")
    return {k: bytes(v) for k, v in parts.items()}


def _parse_json(body: bytes) -> dict[str, Any]:
    """Fields of a JSON body: ``image`` / ``mask`` base64 (a ``data:`` URL prefix is allowed);
    IOPaint's other fields keep their JSON values (`ctsdg.serve.iopaint` reads them)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestError(400, "body: JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, the int digits limit
        first = (str(err).splitlines() or [""])[0][:200]
        raise RequestError(400, f"body: not valid JSON ({first})") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"body: expected a JSON object, got {type(data).__name__}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if is_iopaint_field(key) or key not in FIELDS:  # unknown ones: refused by name below
            fields[key] = value
            continue
        if key in ("image", "mask") and value is None:  # IOPaint's schema allows null: missing
            continue
        if not isinstance(value, str):
            raise RequestError(400, f"{key}: expected a string, got {type(value).__name__}")
        if key in ("image", "mask"):
            if value.startswith("data:"):
                value = value.partition(",")[2]
            try:  # line breaks (GNU base64 wraps at 76 columns) and spaces are not data
                fields[key] = base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, f"{key}: not valid base64") from None
        else:
            try:
                fields[key] = value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800")
                raise RequestError(400, f"{key}: expected text, got a lone surrogate") from None
    return fields


# --------------------------------------------------------------------------- the images


def open_header(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """The image's header only (no pixels decoded); 413 over ``max_pixels``, 400 unreadable."""
    too_large = f"over the server's --max-pixels {max_pixels} ({max_pixels / 1e6:g} megapixels)"
    try:
        with warnings.catch_warnings():
            # PIL warns between MAX_IMAGE_PIXELS and twice that; the check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise RequestError(413, f"{what}: {too_large}") from None
    except Image.UnidentifiedImageError:
        raise RequestError(400, f"{what}: not an image format the server reads") from None
    except DECODE_ERRORS as err:  # any exception from untrusted bytes (ctsdg.data.images)
        raise RequestError(400, f"{what}: unreadable image ({decode_reason(err)})") from None
    width, height = opened.size
    if width * height > max_pixels:
        raise RequestError(413, f"{what}: {width}x{height} pixels is {too_large}")
    return opened


def decode(opened: Image.Image, what: str) -> Image.Image:
    """Decode the pixels of an image from `open_header`, EXIF orientation applied (400 if bad,
    or if it has several frames, as ``ctsdg inpaint`` refuses them)."""
    try:
        require_one_frame(opened, what)
        opened.load()  # truncation and corrupt data surface here
        return ImageOps.exif_transpose(opened)
    except InputError as err:
        raise RequestError(400, str(err)) from None
    except DECODE_ERRORS as err:  # any exception from untrusted bytes (ctsdg.data.images)
        raise RequestError(400, f"{what}: unreadable image ({decode_reason(err)})") from None
    finally:
        opened.close()


def check_format_size(size: tuple[int, int], fmt: str) -> None:
    """400 before any work when the result could not be stored as ``fmt`` (`jobs.check_size`)."""
    try:
        check_size(size, FORMATS[fmt][0])
    except InputError as err:
        raise RequestError(400, f"format={fmt}: {err}") from None


def encode(image: Image.Image, fmt: str) -> tuple[bytes, str | None]:
    """The result as ``fmt`` bytes, encoded as ``ctsdg inpaint`` writes that format
    (`ctsdg.jobs.encode_image`: the mode fitted to the format, with a note saying so); 400 for
    what the format cannot hold (transparency in JPEG, a side over its limit)."""
    try:
        return encode_image(image, FORMATS[fmt][0])
    except InputError as err:
        raise RequestError(400, f"format={fmt}: {err}") from None
