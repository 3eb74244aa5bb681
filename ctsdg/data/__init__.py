"""The data pipeline: datasets, masks, structure inputs (gray, edges) and loaders.

Conventions: images (3, H, W) float RGB in [-1, 1]; masks (1, H, W) float, **1 on known pixels,
0 on holes** (mask files on disk are white on holes); gray (1, H, W) in [0, 1]; edges (1, H, W)
in {0, 1}, computed from the full unmasked image.

Modules: ``structure`` (gray and Canny edges, both conventions), ``images`` (reading files as
RGB, crop / resize / flip), ``masks`` (mask files, the free-form generator, mask sets),
``datasets`` (CelebA, folders, ``build_dataset``), ``demo`` (the shipped photographs),
``loader`` (``Batch``, samplers, worker seeding, ``build_loader``), ``skipping`` (unreadable
training files).

Importing this package is instant: names are loaded from their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # datasets
    "build_dataset": "datasets",
    "dataset_from_config": "datasets",
    "InpaintingDataset": "datasets",
    "FileImages": "datasets",
    "read_partition": "celeba",
    "celeba_files": "celeba",
    # demo
    "DemoImages": "demo",
    "TRAIN_PHOTOS": "demo",
    "HELD_OUT_PHOTOS": "demo",
    "demo_photo": "demo",
    # images
    "IMAGE_EXTENSIONS": "images",
    "list_images": "images",
    "read_rgb": "images",
    "to_rgb": "images",
    # loader
    "Batch": "loader",
    "collate": "loader",
    "SampleKey": "loader",
    "InfiniteSampler": "loader",
    "ShardedSequentialSampler": "loader",
    "WorkerSeeder": "loader",
    "build_loader": "loader",
    # masks
    "ALL_BUCKETS": "freeform",
    "MaskFiles": "masks",
    "FreeFormMasks": "freeform",
    "free_form_holes": "freeform",
    "gray_to_holes": "masks",
    "hole_ratio": "masks",
    "parse_buckets": "masks",
    "read_holes": "masks",
    "write_mask_set": "masks",
    # skipping
    "SkippedFileWarning": "skipping",
    # structure
    "authors_corruption": "structure",
    "structure_inputs": "structure",
}

__all__ = [
    "ALL_BUCKETS",
    "HELD_OUT_PHOTOS",
    "IMAGE_EXTENSIONS",
    "TRAIN_PHOTOS",
    "Batch",
    "DemoImages",
    "FileImages",
    "FreeFormMasks",
    "InfiniteSampler",
    "InpaintingDataset",
    "MaskFiles",
    "SampleKey",
    "ShardedSequentialSampler",
    "SkippedFileWarning",
    "WorkerSeeder",
    "authors_corruption",
    "build_dataset",
    "build_loader",
    "celeba_files",
    "collate",
    "dataset_from_config",
    "demo_photo",
    "free_form_holes",
    "gray_to_holes",
    "hole_ratio",
    "list_images",
    "parse_buckets",
    "read_holes",
    "read_partition",
    "read_rgb",
    "structure_inputs",
    "to_rgb",
    "write_mask_set",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from ctsdg.data.celeba import celeba_files, read_partition
    from ctsdg.data.datasets import (
        FileImages,
        InpaintingDataset,
        build_dataset,
        dataset_from_config,
    )
    from ctsdg.data.demo import HELD_OUT_PHOTOS, TRAIN_PHOTOS, DemoImages, demo_photo
    from ctsdg.data.freeform import ALL_BUCKETS, FreeFormMasks, free_form_holes
    from ctsdg.data.images import IMAGE_EXTENSIONS, list_images, read_rgb, to_rgb
    from ctsdg.data.loader import (
        Batch,
        InfiniteSampler,
        SampleKey,
        ShardedSequentialSampler,
        WorkerSeeder,
        build_loader,
        collate,
    )
    from ctsdg.data.masks import (
        MaskFiles,
        gray_to_holes,
        hole_ratio,
        parse_buckets,
        read_holes,
        write_mask_set,
    )
    from ctsdg.data.skipping import SkippedFileWarning
    from ctsdg.data.structure import authors_corruption, structure_inputs
