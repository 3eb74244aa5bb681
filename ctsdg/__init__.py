"""CTSDG image inpainting (Guo, Yang, Huang, ICCV 2021) in PyTorch.

Conventions used throughout: images are float NCHW RGB in [-1, 1]; inside the networks a mask is
1 on known pixels and 0 on holes (mask files on disk are white on holes); gray images are in
[0, 1] and edges in {0, 1}.

The public API is imported lazily so that ``import ctsdg`` (and ``ctsdg --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Generator": "ctsdg.models",
    "Discriminator": "ctsdg.models",
    "GeneratorOutput": "ctsdg.models",
    "VGG16Features": "ctsdg.models",
    "load_generator": "ctsdg.checkpoints",
    "load_discriminator": "ctsdg.checkpoints",
    "load_weights": "ctsdg.checkpoints",
    "convert": "ctsdg.checkpoints",
    "Inpainter": "ctsdg.inference",
}

__all__ = [
    "Discriminator",
    "Generator",
    "GeneratorOutput",
    "Inpainter",
    "VGG16Features",
    "__version__",
    "convert",
    "load_discriminator",
    "load_generator",
    "load_weights",
]

if TYPE_CHECKING:
    from ctsdg.checkpoints import convert, load_discriminator, load_generator, load_weights
    from ctsdg.inference import Inpainter
    from ctsdg.models import Discriminator, Generator, GeneratorOutput, VGG16Features


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ctsdg' has no attribute {name!r}")
