"""Interleaved timing for the scripts in this folder (imported by name: Python puts a script's
own folder first on its path). One run at a time: `ctsdg.runtime.time_min`."""

import time
from collections.abc import Callable
from typing import Any


def interleaved(runs: dict[str, Callable[[], Any]], rounds: int = 3) -> tuple[dict, dict]:
    """Each run once per round, in turn; the minimum seconds of each and its last result."""
    seconds: dict[str, float] = dict.fromkeys(runs, float("inf"))
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, results
