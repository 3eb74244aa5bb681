"""The named choices a user types (on the command line, in a config, over HTTP), each defined once.

Importing this module costs nothing (no torch), so the command line offers the same tuples as
argparse choices that the library checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Structure-input convention: gray/edge from the true uint8 image, or the authors' wrapped cast.
Structure = Literal["correct", "authors"]
#: How an image of any size reaches the model's square input (see `ctsdg.inference`).
Strategy = Literal["auto", "resize", "crop"]
#: Arithmetic of a forward pass: float32, or autocast to bfloat16 / float16.
Precision = Literal["fp32", "bf16", "fp16"]
#: How the generator runs for inference: PyTorch eager, torch.compile, ONNX Runtime.
Backend = Literal["eager", "compiled", "onnxruntime"]

STRUCTURES: tuple[Structure, ...] = get_args(Structure)
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
