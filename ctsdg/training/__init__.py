"""CTSDG training: the two-stage schedule, one device or many, exact resume."""

from ctsdg.training.trainer import NonFiniteLossError, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainResult", "train"]
