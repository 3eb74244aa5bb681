"""IOPaint's inpainting request as ``POST /api/v1/inpaint`` reads it, so that clients written for
IOPaint (its web app, scripts, editor plugins) work unchanged.

`IOPAINT_FIELDS` is the one table: every field of IOPaint's ``InpaintRequest``
(``iopaint/schema.py``, the fields of its 1.x releases), plus the two misspelt names its web app's
``inpaint()`` (``web_app/src/lib/api.ts``) sends, each with what ctsdg does with it.
docs/serving.md shows the same mapping for people. A field outside this table and ctsdg's own
four is still refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

from ctsdg.errors import InputError
from ctsdg.inference import IOPaintStrategy

Meaning = Literal[
    "image", "mask", "hd_strategy", "crop_margin", "crop_trigger_size", "resize_limit", "seed",
    "ignored",
]  # fmt: skip

#: IOPaint's field name -> what ctsdg does with it (the keys of `IOPaintStrategy` or ``seed``,
#: or ``ignored``: a field of another model family, or one with no meaning for CTSDG).
IOPAINT_FIELDS: dict[str, Meaning] = {
    "image": "image",
    "mask": "mask",
    "hd_strategy": "hd_strategy",
    "hd_strategy_crop_margin": "crop_margin",
    "hd_strategy_crop_trigger_size": "crop_trigger_size",
    "hd_strategy_crop_triger_size": "crop_trigger_size",  # the web app's spelling
    "hd_strategy_resize_limit": "resize_limit",
    "hd_trategy_resize_imit": "resize_limit",  # the web app's spelling
    "sd_seed": "seed",  # echoed as X-Seed; CTSDG draws no random numbers
    # LDM, ZITS, OpenCV
    "ldm_steps": "ignored",
    "ldm_sampler": "ignored",
    "zits_wireframe": "ignored",
    "cv2_flag": "ignored",
    "cv2_radius": "ignored",
    # diffusion models: prompts, the cropper and the extender (outpainting), sampling
    "prompt": "ignored",
    "negative_prompt": "ignored",
    "use_croper": "ignored",
    "croper_x": "ignored",
    "croper_y": "ignored",
    "croper_height": "ignored",
    "croper_width": "ignored",
    "use_extender": "ignored",
    "extender_x": "ignored",
    "extender_y": "ignored",
    "extender_height": "ignored",
    "extender_width": "ignored",
    "sd_scale": "ignored",
    "sd_mask_blur": "ignored",
    "sd_strength": "ignored",
    "sd_steps": "ignored",
    "sd_guidance_scale": "ignored",
    "sd_sampler": "ignored",
    "sd_match_histograms": "ignored",
    "sd_outpainting_softness": "ignored",
    "sd_outpainting_space": "ignored",
    "sd_lcm_lora": "ignored",
    "sd_freeu": "ignored",
    "sd_freeu_config": "ignored",
    # True in IOPaint's default; ctsdg always returns the pixels outside the holes unchanged
    "sd_keep_unmasked_area": "ignored",
    # Paint by Example, InstructPix2Pix, ControlNet, BrushNet, PowerPaint
    "paint_by_example_example_image": "ignored",
    "p2p_image_guidance_scale": "ignored",
    "enable_controlnet": "ignored",
    "controlnet_conditioning_scale": "ignored",
    "controlnet_method": "ignored",
    "enable_brushnet": "ignored",
    "brushnet_method": "ignored",
    "brushnet_conditioning_scale": "ignored",
    "enable_powerpaint_v2": "ignored",
    "powerpaint_task": "ignored",
    "fitting_degree": "ignored",
}

#: ``hd_strategy`` values (IOPaint's ``HDStrategy``), matched without regard to case.
HD_STRATEGIES = ("Original", "Resize", "Crop")
#: What ``X-Seed`` says when ``sd_seed`` is absent or -1 (IOPaint's default seed).
DEFAULT_SEED = 42
_INTEGER = re.compile(r"[+-]?\d+")


def is_iopaint_field(name: str) -> bool:
    """Whether ``name`` is IOPaint's (not one of ctsdg's own fields)."""
    return name in IOPAINT_FIELDS and IOPAINT_FIELDS[name] not in ("image", "mask")


def read_strategy(values: Mapping[str, object]) -> IOPaintStrategy:
    """IOPaint's strategy from a request's IOPaint fields (JSON values or multipart text).

    Absent fields take IOPaint's defaults (``Crop``, margin 128, trigger 800, limit 1280); a
    correctly spelt name wins over the web app's misspelling. Raises `InputError` (one line,
    naming the field) for values IOPaint's meaning cannot take.
    """
    chosen: dict[str, tuple[str, object]] = {}
    for name, value in values.items():
        meaning = IOPAINT_FIELDS.get(name)
        if meaning in ("hd_strategy", "crop_margin", "crop_trigger_size", "resize_limit"):
            spelt_right = name in ("hd_strategy_crop_trigger_size", "hd_strategy_resize_limit")
            if meaning not in chosen or spelt_right:
                chosen[meaning] = (name, value)
    defaults = IOPaintStrategy()
    name = defaults.name
    if "hd_strategy" in chosen:
        field, value = chosen["hd_strategy"]
        matches = [
            s for s in HD_STRATEGIES if isinstance(value, str) and value.lower() == s.lower()
        ]
        if not matches:
            raise InputError(f"{field}: expected one of {', '.join(HD_STRATEGIES)}, got {value!r}")
        name = matches[0]

    def integer(meaning: str, default: int, minimum: int) -> int:
        if meaning not in chosen:
            return default
        return _integer(*chosen[meaning], minimum=minimum)

    return IOPaintStrategy(
        name,  # type: ignore[arg-type]
        crop_margin=integer("crop_margin", defaults.crop_margin, 0),
        crop_trigger_size=integer("crop_trigger_size", defaults.crop_trigger_size, 1),
        resize_limit=integer("resize_limit", defaults.resize_limit, 1),
    )


def read_seed(values: Mapping[str, object]) -> int:
    """The seed ``X-Seed`` reports: ``sd_seed`` if it is a seed, else IOPaint's default (42).

    IOPaint draws a random seed for -1 and reports it; CTSDG's result does not depend on any
    seed, so every value reproduces it and the client's seed box keeps a valid number.
    """
    value = values.get("sd_seed")
    if value is None:
        return DEFAULT_SEED
    seed = _integer("sd_seed", value, minimum=-1)
    return DEFAULT_SEED if seed == -1 else seed


def _integer(field: str, value: object, *, minimum: int) -> int:
    """A JSON integer (an integral number, or decimal text from a form), at least ``minimum``."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 40 and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise InputError(f"{field}: expected an integer, got {value!r}"[:200])
    if number < minimum:
        raise InputError(f"{field}: expected at least {minimum}, got {number}")
    return number


__all__ = ["DEFAULT_SEED", "HD_STRATEGIES", "IOPAINT_FIELDS", "is_iopaint_field", "read_seed",
           "read_strategy"]  # fmt: skip
