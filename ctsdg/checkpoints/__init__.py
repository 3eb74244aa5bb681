"""Reading, writing and converting CTSDG checkpoints in the formats the project supports.

`load_weights` detects the format of a file or run folder; `load_generator` and
`load_discriminator` build the networks from it; `convert` writes this project's weights file.
"""

from ctsdg.checkpoints.loading import (
    ACCEPTED,
    LoadedWeights,
    convert,
    load_discriminator,
    load_generator,
    load_weights,
)
from ctsdg.checkpoints.native import (
    ModelConfig,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    save_training_checkpoint,
    save_weights,
)

__all__ = [
    "ACCEPTED",
    "LoadedWeights",
    "ModelConfig",
    "checkpoint_path",
    "convert",
    "latest_checkpoint",
    "list_checkpoints",
    "load_discriminator",
    "load_generator",
    "load_weights",
    "save_training_checkpoint",
    "save_weights",
]
