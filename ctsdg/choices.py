"""The named choices a user types (on the command line, in a config, over HTTP), each defined once.

Importing this module costs nothing (no torch), so the command line offers the same tuples as
argparse choices that the library checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Structure-input convention: gray/edge from the true uint8 image, or the authors' wrapped cast.
Structure = Literal["correct", "authors"]
#: How an image of any size reaches the model (see `ctsdg.inference`): resized or cropped to its
#: square, or ``original``: the whole image at its own size, padded to the model's multiple.
Strategy = Literal["auto", "resize", "crop", "original"]
#: Arithmetic of a forward pass: float32, or autocast to bfloat16 / float16.
Precision = Literal["fp32", "bf16", "fp16"]
#: How the generator runs for inference: PyTorch eager, torch.compile, ONNX Runtime.
Backend = Literal["eager", "compiled", "onnxruntime"]

#: Default largest model input of strategy ``original`` (width x height after padding; here so the
#: command line states it without importing torch): 1024 x 1024 took 63 s and 3.8 GB in fp32
#: (bf16: 24-39 s) on the project's 2-core CPU (docs/benchmarks.md, ``ctsdg bench infer --size
#: 1024``), within ``ctsdg serve``'s default 120 s timeout.
ORIGINAL_MAX_PIXELS = 1024 * 1024

STRUCTURES: tuple[Structure, ...] = get_args(Structure)
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
