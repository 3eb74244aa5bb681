"""File jobs of ``ctsdg inpaint``: pairing images with masks, output paths, saving results.

`Inpainter` works on images in memory; this module is what the command line puts around it.

Rules (checked by `plan_jobs` before the model is loaded, so a mistake costs no inference):

- ``IMAGE MASK -o OUT`` with files: OUT is a file (its extension picks the format) or an
  existing folder (the image's name is kept).
- A folder IMAGE takes a folder MASK, paired by relative path without extension (``a/1.jpg``
  with ``a/1.png``), or one mask file for every image. OUT is a folder (created) and keeps
  relative paths and extensions; an OUT that names a file (``out/single.png``) is an error.
- Output extensions: `SAVE_EXTENSIONS`; anything else is refused before inference.
- Nothing is overwritten unless asked (``overwrite=True``, ``--overwrite``): an output that is
  the input image or mask, or an existing file (a dangling symbolic link too), stops the
  command with a line naming it. ``--overwrite`` still refuses a read-only file and warns that
  a file's other hard links keep the old content (`fileio.check_overwrite`).
  ``--skip-existing`` keeps the outputs that exist and does the rest: an interrupted folder job
  resumes where it stopped. ``-o new/`` (trailing slash) is a folder, created if need be.
- Images that share a name (``a.png``, ``a.jpg``) each pair with the mask of that name and keep
  their own extension in OUT; two masks of one name are an error.
- Inputs must be regular files or folders: a FIFO or device is refused, never read as a folder.

Folder jobs never stop halfway: every pair is attempted. An image without a mask, a mask without
an image, and a file that cannot be read or written in its format are each reported as a failed
item, and the command ends with a summary and exit status 1. Only a problem with the output
place itself (read-only, full disk) stops the run at once.

Saving (`save_image`) keeps the input's mode and depth where the output format can store them
(`FORMAT_MODES`), and says so (an `InpaintWarning`) where it cannot; EXIF is kept where the
format holds it (`EXIF_FORMATS`), its orientation set to 1 (the pixels are stored upright).
Every file is written atomically. PNG, BMP, TIFF and WebP (written lossless) outputs hold the
known pixels exactly as decoded from the input. A JPEG output is re-encoded as a whole (JPEG is
lossy), so its known pixels are not bit-identical: when the input was a JPEG too, its
quantisation tables and chroma subsampling are reused, which changes them about half as much as
a quality-95 encoding (see
``tests/test_jobs.py::test_jpeg_to_jpeg_reuses_the_source_quantisation``); otherwise quality 95.
"""

from __future__ import annotations

import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ctsdg.data.images import IMAGE_EXTENSIONS, list_images, open_image, split_image
from ctsdg.data.masks import mask_holes
from ctsdg.errors import InpaintWarning, InputError
from ctsdg.fileio import (
    atomic_write_bytes,
    check_output_dir,
    check_overwrite,
    existing_output,
    input_kind,
    output_is_folder,
    remove_stale_temporaries_of,
)
from ctsdg.heartbeat import Heartbeat, eta
from ctsdg.inference import ORIGINAL_MAX_PIXELS, Inpainter, Strategy

#: Output extensions and the PIL format each writes.
SAVE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: The PIL modes each format stores as they are (the others are converted, with a warning).
FORMAT_MODES: dict[str, tuple[str, ...]] = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "BMP": ("1", "L", "P", "RGB"),
    "WEBP": ("RGB", "RGBA"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I"),
}
#: The largest width and height each format can store (PNG, BMP and TIFF: beyond any image
#: that --max-pixels or memory allows).
FORMAT_MAX_SIDE: dict[str, int] = {"JPEG": 65_535, "WEBP": 16_383}
_ALPHA_MODES = ("RGBA", "LA", "PA")
#: The formats whose files hold EXIF (BMP has no place for it).
EXIF_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Job:
    """One image to inpaint: its file, its mask file and where the result goes."""

    image: Path
    mask: Path
    output: Path


@dataclass
class Plan:
    """What ``ctsdg inpaint`` will do: the jobs, and the files that found no partner."""

    jobs: list[Job]
    unpaired: list[str] = field(default_factory=list)  # "PATH: no mask" / "PATH: no image"
    output_root: Path | None = None  # the output folder of a folder job
    skipped: list[Job] = field(default_factory=list)  # outputs kept (``skip_existing``)


@dataclass
class Outcome:
    """What happened to one job: ``written``, ``copied`` (empty mask) or ``failed``."""

    job: Job
    status: Literal["written", "copied", "failed"]
    message: str = ""
    notes: list[str] = field(default_factory=list)


def _save_format(path: Path) -> str:
    fmt = SAVE_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot write {path.suffix or 'files without an extension'}; use one of "
            f"{', '.join(SAVE_EXTENSIONS)}"
        )
    return fmt


def plan_jobs(
    image: Path,
    mask: Path,
    output: Path,
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    output_folder: bool = False,
) -> Plan:
    """The jobs of ``ctsdg inpaint IMAGE MASK -o OUT`` (see the module docstring).

    ``output_folder``: OUT names a folder even if it does not exist yet (``-o new/``, with
    its trailing slash). ``skip_existing``: outputs that exist already are left as they are
    and their jobs dropped (`Plan.skipped`), which resumes an interrupted folder job.

    Raises InputError for a missing or unusable input (a FIFO or device is not a folder), an
    output path or extension that cannot work, no pair at all, images whose masks share a name,
    or outputs that exist (unless ``overwrite`` or ``skip_existing``).
    """
    image_kind = input_kind(image, "image")
    mask_kind = input_kind(mask, "mask")
    if image_kind == "file":
        if mask_kind == "folder":
            raise InputError(f"{mask}: a folder of masks needs a folder of images, not {image}")
        into_folder = output_folder or output_is_folder(output)
        target = output / image.name if into_folder else output
        if not target.suffix:
            target = target.with_suffix(image.suffix)
        plan = Plan([Job(image, mask, target)], output_root=output if output_folder else None)
    else:
        plan = _plan_folder(image, mask, mask_kind, output)
    for job in plan.jobs:
        _save_format(job.output)
    if skip_existing:
        plan.skipped = [j for j in plan.jobs if existing_output(j.output) is not None]
        kept = set(plan.skipped)
        plan.jobs = [j for j in plan.jobs if j not in kept]
    _check_overwrites(plan.jobs, overwrite)
    return plan


def _plan_folder(image: Path, mask: Path, mask_kind: str, output: Path) -> Plan:
    if existing_output(output) is not None and not output_is_folder(output):
        raise InputError(f"{output}: a folder of images needs an output folder, not a file")
    if existing_output(output) is None and output.suffix.lower() in SAVE_EXTENSIONS:
        raise InputError(
            f"{output}: a folder of images needs an output folder, and this names a "
            f"{output.suffix} file (drop the extension to use it as a folder name)"
        )
    images = list_images(image)
    if not images:
        raise InputError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) found under {image}")
    if mask_kind == "file":
        jobs = [Job(p, mask, output / p.relative_to(image)) for p in images]
        return Plan(jobs, output_root=output)
    masks: dict[str, Path] = {}
    for p in list_images(mask):
        other = masks.setdefault(_key(p, mask), p)
        if other != p:  # which one is meant cannot be guessed
            raise InputError(
                f"{other} and {p}: two masks for the images named {_key(p, mask)!r}; keep one"
            )
    # Images that share a name (a.png, a.jpg) each get the mask of that name; their outputs
    # keep their extensions, so they stay apart.
    keyed = [(_key(p, image), p) for p in images]
    jobs = [Job(p, masks[k], output / p.relative_to(image)) for k, p in keyed if k in masks]
    unpaired = [f"{p}: no mask of the same name in {mask}" for k, p in keyed if k not in masks]
    names = {k for k, _ in keyed}
    unpaired += [
        f"{p}: no image of the same name in {image}" for k, p in masks.items() if k not in names
    ]
    if not jobs:
        raise InputError(f"no image in {image} has a mask of the same name in {mask}")
    return Plan(jobs, unpaired, output)


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_overwrites(jobs: list[Job], overwrite: bool) -> None:
    if overwrite:  # what --overwrite still refuses or warns about: `fileio.check_overwrite`
        for job in jobs:
            check_overwrite(job.output, overwrite=True)
        return
    for job in jobs:
        for what, source in (("image", job.image), ("mask", job.mask)):
            same_name = os.path.realpath(job.output) == os.path.realpath(source)
            if same_name or _same_file(job.output, source):
                raise InputError(
                    f"{job.output}: would overwrite the input {what}; write elsewhere (-o) or "
                    "pass --overwrite to replace it"
                )
    # A dangling or looping symbolic link is something there too: not replaced unasked.
    existing = [str(j.output) for j in jobs if existing_output(j.output) is not None]
    if existing:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise InputError(
            f"{len(existing)} output file(s) already exist ({shown}); pass --overwrite to "
            "replace them, or --skip-existing to keep them and do the rest"
        )


def check_outputs(plan: Plan) -> None:
    """Create the output folders and prove they are writable, before any inference; remove
    what an interrupted run left of the outputs' temporary files."""
    folders = {plan.output_root} if plan.output_root else set()
    folders |= {job.output.parent for job in plan.jobs}
    for folder in sorted(folders, key=str):
        check_output_dir(folder)
    # What a killed run left of these outputs (``--skip-existing`` resumes such a run): one
    # listing per folder here, before any rank writes, instead of one per image.
    names: dict[Path, set[str]] = {}
    for job in plan.jobs:
        names.setdefault(job.output.parent, set()).add(job.output.name)
    for folder, wanted in names.items():
        remove_stale_temporaries_of(folder, wanted)


# --------------------------------------------------------------------------- saving


def check_size(size: tuple[int, int], fmt: str) -> None:
    """InputError when a (width, height) image is wider or taller than ``fmt`` stores."""
    limit = FORMAT_MAX_SIDE.get(fmt)
    if limit is not None and max(size) > limit:
        raise InputError(
            f"{fmt} stores at most {limit} x {limit} pixels, and this image is "
            f"{size[0]} x {size[1]}; use PNG or TIFF"
        )


def fit_mode(image: Image.Image, fmt: str) -> tuple[Image.Image, str | None]:
    """``image`` in a mode ``fmt`` stores, and a note when it had to change (else None).

    The one place where a result is fitted to its format, for ``ctsdg inpaint`` and
    ``ctsdg serve`` alike. Raises InputError when the format cannot keep an alpha channel the
    image has, or when the image is wider or taller than the format allows
    (`FORMAT_MAX_SIDE`).
    """
    check_size(image.size, fmt)
    mode = image.mode
    if mode in FORMAT_MODES[fmt]:
        return image, None
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        if "RGBA" not in FORMAT_MODES[fmt]:
            raise InputError(
                f"{fmt} cannot store the alpha channel of this {mode} image; use PNG, WebP or TIFF"
            )
        converted = image.convert("RGBA")
    elif mode.startswith("I"):
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        if "I;16" in FORMAT_MODES[fmt]:
            converted = Image.fromarray(values.astype(np.uint16))
        else:
            converted = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
            if "L" not in FORMAT_MODES[fmt]:
                converted = converted.convert("RGB")
    elif mode in ("1", "L") and "L" in FORMAT_MODES[fmt]:
        converted = image.convert("L")
    else:
        converted = image.convert("RGB")
    converted.info.update(image.info)
    depth = " (8 bits)" if mode.startswith("I") and converted.mode in ("L", "RGB") else ""
    return converted, f"{fmt} cannot store mode {mode}: written as {converted.mode}{depth}"


def encode_image(image: Image.Image, fmt: str) -> tuple[bytes, str | None]:
    """The file bytes of ``image`` in ``fmt`` and the note of `fit_mode` (see the module
    docstring for what each format keeps)."""
    image, note = fit_mode(image, fmt)
    options: dict[str, Any] = {}
    for key in ("icc_profile", "dpi"):
        if key in image.info:
            options[key] = image.info[key]
    if image.info.get("exif") and fmt in EXIF_FORMATS:
        # the pixels are stored upright (decoding applied the orientation): say so
        exif = image.getexif()
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        options["exif"] = exif.tobytes()
    if fmt == "PNG" and image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        options["transparency"] = image.info["transparency"]
    if fmt == "JPEG":
        if "jpeg_qtables" in image.info:
            options["qtables"] = image.info["jpeg_qtables"]
            if image.mode != "L" and image.info.get("jpeg_subsampling", -1) >= 0:
                options["subsampling"] = image.info["jpeg_subsampling"]
        else:
            options["quality"] = 95
    if fmt == "WEBP":
        options.update(lossless=True, exact=True)  # known pixels stay, transparent ones too
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue(), note


def save_image(image: Image.Image, path: Path) -> str | None:
    """Write ``image`` to ``path`` atomically in the format of its extension; returns the note
    of `fit_mode` (None when the mode was kept). InputError for what cannot be written."""
    data, note = encode_image(image, _save_format(path))
    atomic_write_bytes(path, data)
    return note


# --------------------------------------------------------------------------- running


def run_job(inpainter: Inpainter, job: Job) -> Outcome:
    """Read, inpaint and save one job; bad inputs give a ``failed`` outcome, not an error.

    Everything that can be checked without the model (decoding, the mask, whether the output
    format can hold the result) is checked before inference. Write errors (the output place)
    are raised as InputError: they would fail every job.
    """
    fmt = _save_format(job.output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InpaintWarning)
        try:
            image = open_image(job.image)
            mask = open_image(job.mask, "mask")
            pixels, rebuild = split_image(image)
            _warn_if_swapped(job, pixels, mask)
            holes = mask_holes(mask, pixels.shape[:2])
            fit_mode(rebuild(pixels, np.zeros_like(holes)), fmt)  # before the model runs
            if holes.any():
                result = rebuild(inpainter.inpaint_rgb(pixels, holes), holes)
            else:
                result = rebuild(pixels, holes)
            data, note = encode_image(result, fmt)
        except InputError as err:
            message = str(err) if str(job.image) in str(err) else f"{job.image}: {err}"
            return Outcome(job, "failed", message, _messages(caught))
    atomic_write_bytes(job.output, data)
    notes = _messages(caught) + ([note] if note else [])
    return Outcome(job, "written" if holes.any() else "copied", notes=notes)


def _two_valued(array: np.ndarray) -> bool:
    """Whether ``array`` holds at most two distinct values (one pass, no sort)."""
    flat = array.reshape(-1)
    if flat.size == 0:
        return True
    low, high = flat.min(), flat.max()
    return not bool(np.any((flat != low) & (flat != high)))


def _warn_if_swapped(job: Job, pixels: np.ndarray, mask: Image.Image) -> None:
    """A black-and-white "image" with a many-valued "mask" is most likely the pair swapped
    (``ctsdg inpaint mask.png photo.jpg``): say so, and go on as asked."""
    if not _two_valued(np.asarray(mask)) and _two_valued(pixels):  # the mask first: smaller
        warnings.warn(
            f"{job.image} has only two values, like a mask, and {job.mask} has many, like a "
            "photograph: are they swapped? (ctsdg inpaint IMAGE MASK: the image comes first)",
            InpaintWarning,
            stacklevel=2,
        )


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return list(dict.fromkeys(str(w.message) for w in caught))  # each once, in order


def run_jobs(
    inpainter: Inpainter,
    jobs: list[Job],
    *,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[Outcome]:
    """`run_job` for every job of this shard: ``(rank, world_size)`` takes jobs ``rank::world``."""
    from tqdm import tqdm

    rank, world = shard
    mine = jobs[rank::world]
    show = progress and len(mine) > 1 and sys.stderr.isatty()
    start, done = time.perf_counter(), 0
    beat = Heartbeat(  # off a terminal: a line when a while passed without one
        lambda: f"inpainting: {eta(done, len(mine), time.perf_counter() - start)}",
        enabled=len(mine) > 1 and not show,
    )
    with beat:
        for job in tqdm(mine, unit="img", disable=not show, file=sys.stderr):
            yield run_job(inpainter, job)
            done += 1


# --------------------------------------------------------------------------- the command


def inpaint_command(
    image: str,
    mask: str,
    output: str,
    checkpoint: str,
    *,
    device: str = "auto",
    strategy: Strategy = "auto",
    size: int | None = None,
    structure: str | None = None,
    precision: str = "fp32",
    backend: str = "eager",
    overwrite: bool = False,
    max_original_pixels: int = ORIGINAL_MAX_PIXELS,
    skip_existing: bool = False,
) -> int:
    """``ctsdg inpaint``: plan, check, inpaint, report; returns the exit status (1 when any item
    failed). Under torchrun every rank plans the same jobs and inpaints every world_size-th one;
    rank 0 alone prints the summary."""
    from ctsdg.runtime import tune_cpu_allocator
    from ctsdg.training import distributed

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
        print(f"ctsdg: warning: {message}", file=sys.stderr)

    tune_cpu_allocator()
    ctx = distributed.setup(device)
    say = print if ctx.is_main else distributed.quiet
    with warnings.catch_warnings():
        warnings.showwarning = show
        plan = plan_jobs(
            Path(image),
            Path(mask),
            Path(output),
            overwrite=overwrite,
            skip_existing=skip_existing,
            output_folder=output.endswith(("/", os.sep)),
        )
        if plan.skipped:
            say(f"skipping {len(plan.skipped)} image(s) whose output exists (--skip-existing)")
        if not plan.jobs:
            say(f"nothing to do: every output under {output} exists")
            distributed.teardown()
            return _report_failures(plan.unpaired, say)
        check_outputs(plan)
        distributed.barrier(ctx)  # no rank writes before every rank has checked for overwrites
        inpainter = Inpainter.from_checkpoint(
            checkpoint,
            ctx.device,
            strategy,
            size=size,
            structure=structure,
            precision=precision,
            backend=backend,
            max_original_pixels=max_original_pixels,
        )
        jobs = plan.jobs
        processes = f", {ctx.world_size} processes" if ctx.distributed else ""
        say(
            f"inpainting {len(jobs)} image(s) with {checkpoint} on {inpainter.device} "
            f"({inpainter.size}x{inpainter.size} model input, '{inpainter.structure}' structure "
            f"inputs, strategy {strategy}, {backend} {precision}{processes})"
        )
        failed: list[str] = []  # this rank's
        done = 0
        for outcome in run_jobs(inpainter, jobs, shard=(ctx.rank, ctx.world_size)):
            for note in outcome.notes:
                print(f"ctsdg: warning: {outcome.job.image}: {note}", file=sys.stderr)
            if outcome.status == "failed" and len(jobs) == 1 and not plan.unpaired:
                raise InputError(outcome.message)  # a single image: a plain input error
            if outcome.status == "failed":
                failed.append(outcome.message)
                print(f"ctsdg: failed: {outcome.message}", file=sys.stderr)
                continue
            done += 1
            if len(jobs) == 1 or outcome.status == "copied":
                note = "" if outcome.status == "written" else " (empty mask: copied unchanged)"
                print(f"wrote {outcome.job.output}{note}")
    gathered = distributed.gather_objects((done, failed), ctx)
    distributed.teardown()
    failures = plan.unpaired + [m for _, ms in gathered for m in ms]
    if len(jobs) > 1:
        say(f"wrote {sum(n for n, _ in gathered)} of {len(jobs)} images under {output}")
    return _report_failures(failures, say)


def _report_failures(failures: list[str], say: Callable[..., None]) -> int:
    """List what failed on stderr; the command's exit status (1 if anything did)."""
    if not failures:
        return 0
    say(f"ctsdg: {len(failures)} item(s) failed:", file=sys.stderr)
    for message in failures:
        say(f"  {message}", file=sys.stderr)
    return 1


__all__ = [
    "FORMAT_MAX_SIDE",
    "FORMAT_MODES",
    "SAVE_EXTENSIONS",
    "Job",
    "Outcome",
    "Plan",
    "check_outputs",
    "check_size",
    "encode_image",
    "fit_mode",
    "inpaint_command",
    "plan_jobs",
    "run_job",
    "run_jobs",
    "save_image",
]
