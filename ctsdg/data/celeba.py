"""CelebA as the MindSpore port lays it out: the aligned images and the partition file that
splits them into train (0), val (1) and test (2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ctsdg.data.images import require_folder
from ctsdg.errors import InputError

Split = Literal["train", "val", "test"]
#: CelebA's partition numbers (``list_eval_partition.txt``).
CELEBA_PARTITIONS: dict[Split, int] = {"train": 0, "val": 1, "test": 2}
#: CelebA's aligned images are 178 x 218; the authors centre-crop a 178 x 178 square.
CELEBA_CROP = 178
PARTITION_FILE_NAMES = ("list_eval_partition.txt", "list_eval_partitions.txt")


def read_partition(anno_path: Path) -> list[tuple[str, int]]:
    """Parse CelebA's ``list_eval_partition.txt``: ``(file name, partition)`` per line.

    Blank lines are ignored; anything else must be ``<file name> <integer>``.
    """
    if not anno_path.is_file():
        raise InputError(
            f"partition file not found: {anno_path} (expected CelebA's list_eval_partition.txt, "
            "lines like '000001.jpg 0')"
        )
    entries = []
    with open(anno_path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise InputError(
                    f"line {number} of partition file {anno_path} is malformed: expected "
                    f"'<image file> <partition number>' (like '000001.jpg 0'), got {line.strip()!r}"
                )
            entries.append((fields[0], int(fields[1])))
    if not entries:
        raise InputError(f"partition file {anno_path} lists no image")
    return entries


def celeba_files(image_dir: Path, anno_path: Path, partitions: Sequence[int]) -> list[Path]:
    """The images of the given partitions, in partition-file order; all must exist."""
    wanted = set(partitions)
    names = [name for name, part in read_partition(anno_path) if part in wanted]
    if not names:
        raise InputError(
            f"partition file {anno_path} lists no image in partition(s) {sorted(wanted)}"
        )
    present = set(os.listdir(image_dir))  # one listing instead of 200 000 stat calls
    missing = [name for name in names if name not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} of the {len(names)} images that {anno_path} lists for partition(s) "
            f"{sorted(wanted)} are missing from {image_dir}: {shown}"
        )
    return [image_dir / name for name in names]


def celeba_paths(data_root: Path, anno_path: Path | None) -> tuple[Path, Path]:
    """(image folder, partition file) from the MindSpore port's layout."""
    require_folder(data_root, "CelebA folder")
    nested = data_root / "img_align_celeba"
    image_dir = nested if nested.is_dir() else data_root
    if anno_path is not None:
        return image_dir, anno_path
    searched = [d / name for d in (data_root, image_dir.parent) for name in PARTITION_FILE_NAMES]
    for candidate in searched:
        if candidate.is_file():
            return image_dir, candidate
    raise InputError(
        f"no CelebA partition file next to {data_root}: pass anno_path (looked for "
        f"{', '.join(str(c) for c in dict.fromkeys(searched))})"
    )
