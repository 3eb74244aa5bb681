"""Serving under load: ``ctsdg bench serve``.

Starts ``ctsdg serve`` as a subprocess on a free port of 127.0.0.1 (random weights of the given
width unless ``--checkpoint``), then, for ``--rounds`` rounds, interleaved so that both sides
see the same machine:

1. the generator's forward pass in this process, batch 1, as ``ctsdg bench infer`` times it
   (``batch1_ms``: the minimum of ``--repeats`` runs after a warm-up; the server is idle);
2. for each count in ``--clients``: that many client threads, each sending ``--requests``
   ``POST /api/v1/inpaint`` requests one after the other (a ``size`` x ``size`` photograph with
   a rectangular hole, PNG), on a kept-alive connection (this process is idle meanwhile).

Reported per client count (all rounds pooled): requests, errors, requests/s (successful
requests over the wall time of the load), p50 / p95 / mean / min latency; and the server's
resident memory (``VmRSS``) after two warm-up requests and at the end. ``--json`` prints one
JSON object per line: ``kind`` ``infer`` (``batch1_ms``), ``load`` (one per client count) and
``summary`` (the ratios the targets in docs/benchmarks.md are stated in).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ctsdg.backends import build_runner
from ctsdg.errors import InputError
from ctsdg.models import Generator
from ctsdg.models.generator import example_batch
from ctsdg.runtime import time_min, tune_cpu_allocator

_BOUNDARY = "ctsdg-bench-boundary"


def request_body(size: int) -> bytes:
    """A multipart body: a size x size photograph and a mask with a hole of ~1/6 of the area."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BILINEAR)
    holes = np.zeros((size, size), np.uint8)
    holes[size // 4 : size // 4 + size * 2 // 5, size // 3 : size // 3 + size * 2 // 5] = 255
    parts = []
    for name, image in (("image", photo), ("mask", Image.fromarray(holes))):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        parts.append(
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + buffer.getvalue()
            + b"\r\n"
        )
    return b"".join(parts) + f"--{_BOUNDARY}--\r\n".encode()


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation), None for no values."""
    return float(np.percentile(values, q)) if values else None


class ServerProcess:
    """``ctsdg serve`` in a subprocess on 127.0.0.1 and a free port; its log goes to a file."""

    def __init__(self, checkpoint: Path, size: int, max_queue: int, log: Path) -> None:
        command = [sys.executable, "-m", "ctsdg", "serve", "--checkpoint", str(checkpoint),
                   "--port", "0", "--size", str(size), "--device", "cpu",
                   "--max-queue", str(max_queue)]  # fmt: skip
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.port = 0
        for line in self.proc.stdout:  # type: ignore[union-attr]
            match = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match[1])
                break
        if not self.port:
            self.stop()
            raise InputError(f"ctsdg serve did not start: {log.read_text().strip()[-500:]}")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def load(port: int, body: bytes, clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` threads x ``per_client`` sequential requests; latencies and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for _ in range(per_client):
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/v1/inpaint", body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
                ok = response.status == 200 and content.startswith(b"\x89PNG")
                error = None if ok else f"{response.status}: {content[:200]!r}"
            except (OSError, http.client.HTTPException) as err:
                error = f"{type(err).__name__}: {err}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            with lock:
                if error is None:
                    latencies.append((time.perf_counter() - start) * 1000)
                else:
                    errors.append(error)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "wall_s": time.perf_counter() - start}


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench serve``; print one line (or JSON object) per measurement."""
    if args.size % 128 or args.size < 128:
        raise InputError(f"--size {args.size}: must be a multiple of 128")
    if min(args.requests, args.rounds, args.repeats, args.width) < 1:
        raise InputError("--requests, --rounds, --repeats and --width must be at least 1")
    try:
        client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        client_counts = []
    if not client_counts or min(client_counts) < 1:
        raise InputError(f"--clients {args.clients!r}: expected a comma list of counts, e.g. 1,4")
    if not sys.platform.startswith("linux"):
        raise InputError("ctsdg bench serve reads the server's memory from /proc (Linux only)")
    tune_cpu_allocator()
    device = torch.device("cpu")
    torch.manual_seed(0)
    generator = Generator(width=args.width).eval()
    image, edge, gray, mask = example_batch(1, args.size)
    # timed as `ctsdg bench infer` times batch1_ms: the runner the server uses (eager fp32)
    runner = build_runner(generator, "eager", "fp32", device)
    body = request_body(args.size)
    pooled: dict[int, dict[str, Any]] = {
        c: {"latencies": [], "errors": [], "wall_s": 0.0} for c in client_counts
    }
    batch1: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ctsdg-bench-serve-") as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else _random_weights(generator, tmp)
        server = ServerProcess(checkpoint, args.size, max(8, max(client_counts)), Path(tmp, "log"))
        try:
            rss_start = server.rss_mb()
            warm = load(server.port, body, 1, 2)  # first requests allocate the model's buffers
            if warm["errors"]:
                raise InputError(f"the server refused the benchmark's request: {warm['errors'][0]}")
            rss_before = server.rss_mb()
            for _ in range(args.rounds):
                batch1.append(
                    time_min(
                        lambda: runner(image, mask, gray, edge), device, args.repeats, warmup=1
                    )
                )
                for clients in client_counts:
                    result = load(server.port, body, clients, args.requests)
                    for key in ("latencies", "errors"):
                        pooled[clients][key] += result[key]
                    pooled[clients]["wall_s"] += result["wall_s"]
            rss_after = server.rss_mb()
        finally:
            server.stop()
    rows = _rows(args, client_counts, pooled, min(batch1), rss_start, rss_before, rss_after)
    for row in rows:
        print(json.dumps(row) if args.json else _line(row), flush=True)
    return 0


def _random_weights(generator: Generator, folder: str) -> Path:
    from ctsdg.checkpoints import ModelConfig, save_weights

    path = Path(folder, "random.safetensors")
    return save_weights(
        path, model=ModelConfig(generator.width), structure="correct",
        generator=generator.state_dict(),
    )  # fmt: skip


def _rows(
    args: argparse.Namespace,
    client_counts: list[int],
    pooled: dict[int, dict[str, Any]],
    batch1_ms: float,
    rss_start: float,
    rss_before: float,
    rss_after: float,
) -> list[dict[str, Any]]:
    common = {
        "target": "serve", "size": args.size, "width": args.width, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }  # fmt: skip
    rows: list[dict[str, Any]] = [
        {**common, "kind": "infer", "batch1_ms": round(batch1_ms, 1), "repeats": args.repeats}
    ]
    for clients in client_counts:
        p = pooled[clients]
        ok = len(p["latencies"])
        rows.append({
            **common, "kind": "load", "clients": clients, "requests": ok + len(p["errors"]),
            "errors": len(p["errors"]), "first_error": (p["errors"] or [None])[0],
            "requests_per_s": round(ok / p["wall_s"], 3) if p["wall_s"] else None,
            "p50_ms": _round(percentile(p["latencies"], 50)),
            "p95_ms": _round(percentile(p["latencies"], 95)),
            "mean_ms": _round(statistics.fmean(p["latencies"]) if ok else None),
            "min_ms": _round(min(p["latencies"]) if ok else None),
        })  # fmt: skip
    single = rows[1]
    many = rows[-1]
    rows.append({
        **common, "kind": "summary",
        "p50_over_batch1": _round(single["p50_ms"] / batch1_ms if single["p50_ms"] else None, 3),
        "throughput_ratio": _round(
            many["requests_per_s"] / single["requests_per_s"]
            if single["requests_per_s"] and many["requests_per_s"] else None, 3),
        "errors": sum(r["errors"] for r in rows[1:]),
        "rss_mb_start": round(rss_start, 1), "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1), "rss_growth_mb": round(rss_after - rss_before, 1),
    })  # fmt: skip
    return rows


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _line(row: dict[str, Any]) -> str:
    if row["kind"] == "infer":
        return f"generator forward, batch 1, {row['size']}x{row['size']}: {row['batch1_ms']} ms"
    if row["kind"] == "load":
        return (
            f"{row['clients']} client(s): {row['requests']} requests, {row['errors']} errors, "
            f"{row['requests_per_s']} requests/s, p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms"
        )
    return (
        f"p50 / batch1_ms = {row['p50_over_batch1']}, throughput most clients / 1 client = "
        f"{row['throughput_ratio']}, errors {row['errors']}, server RSS "
        f"{row['rss_mb_before']} -> {row['rss_mb_after']} MB (growth {row['rss_growth_mb']} MB)"
    )
