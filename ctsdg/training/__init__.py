"""CTSDG training: the two-stage schedule, one device or many, exact resume.

`train` lives in `ctsdg.training.trainer`; it is imported on first use so that the package's
small modules can be imported without the whole training stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NonFiniteLossError", "TrainResult", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ctsdg.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
