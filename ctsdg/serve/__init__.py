"""``ctsdg serve``: an inpainting web page and HTTP API around one `ctsdg.Inpainter`.

``app.py`` builds the Starlette app (``create_app(inpainter, limits)``), ``uploads.py`` reads
requests within their limits, ``iopaint.py`` reads IOPaint's request fields, ``server.py`` loads
a checkpoint and runs uvicorn, ``static/`` holds the page (plain HTML, CSS and JavaScript; no
build step, nothing fetched from elsewhere).
"""

from ctsdg.serve.app import create_app, model_info
from ctsdg.serve.uploads import Limits, RequestError

__all__ = ["Limits", "RequestError", "create_app", "model_info"]
