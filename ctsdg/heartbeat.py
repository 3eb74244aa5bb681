"""Progress lines for output that is not a terminal: no silent minute in a log file.

A progress bar redraws itself on a terminal; in a log file (``make demo > log``, a batch job)
it would be one line per redraw, so ctsdg shows bars only on terminals. Everywhere else a
`Heartbeat` prints a line saying how far a long step is and roughly how long is left, whenever
`QUIET_LIMIT_S` seconds passed without a line: a background thread does it, so a single slow
step (a loaded machine, a large image) cannot hold the line back.

Heartbeats nest: the quiet time is the process's (any heartbeat's line, or `Heartbeat.said`,
resets it), and only the innermost running heartbeat speaks, so a step's own heartbeat (an
evaluation's) takes over from the one around it (the demo's) and hands back when it ends.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
from collections.abc import Callable

#: Seconds without a line after which a progress line is printed.
QUIET_LIMIT_S = 15.0
#: How often the thread looks at the clock.
POLL_S = 1.0

_lock = threading.Lock()
_running: list[Heartbeat] = []  # innermost last
_last_line = time.monotonic()


def eta(done: int, total: int, elapsed: float) -> str:
    """``12 of 400 (3 %), about 5.4 minutes left`` (no estimate before the first item)."""
    share = f"{done} of {total} ({100 * done // max(total, 1)} %)"
    if done <= 0:
        return share
    left = elapsed / done * (total - done) / 60
    return f"{share}, {elapsed / done:.2f} s each, about {left:.1f} minutes left"


class Heartbeat:
    """Prints ``message()`` (with a time stamp) whenever `QUIET_LIMIT_S` seconds passed since
    the last line; `said` tells it that the caller printed a line itself.

    Use as a context manager; ``enabled=False`` makes it do nothing (a terminal with its bar).
    """

    def __init__(self, message: Callable[[], str], *, enabled: bool = True) -> None:
        self._message = message
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._enabled and self._thread is None:
            self.said()
            with _lock:
                _running.append(self)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ctsdg-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            with _lock:
                _running.remove(self)

    @staticmethod
    def said() -> None:
        """A line was just printed: the quiet time starts again."""
        global _last_line
        _last_line = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with _lock:
                speaks = bool(_running) and _running[-1] is self
                quiet = time.monotonic() - _last_line >= QUIET_LIMIT_S
            if speaks and quiet:
                stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
                print(f"{stamp} {self._message()}", file=sys.stdout, flush=True)
                self.said()
