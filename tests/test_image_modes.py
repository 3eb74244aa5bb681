"""Reading masks and images once: the alpha rule of masks, the modes `split_image` keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctsdg.data.images import split_image
from ctsdg.data.masks import mask_holes, read_holes
from ctsdg.errors import InpaintWarning

# A 2 x 2 mask: white opaque, white transparent, black opaque, white half-opaque (alpha 128)
WHITE, BLACK = 255, 0
ALPHA = np.array([[255, 0], [255, 128]], np.uint8)
GRAY = np.array([[WHITE, WHITE], [BLACK, WHITE]], np.uint8)
EXPECTED = np.array([[True, False], [False, True]])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_mask_hole_is_white_and_opaque(tmp_path: Path, mode: str) -> None:
    la = Image.fromarray(np.dstack([GRAY, ALPHA]), "LA")
    mask = la.convert(mode)
    np.testing.assert_array_equal(mask_holes(mask, (2, 2)), EXPECTED)
    mask.save(tmp_path / "m.png")
    np.testing.assert_array_equal(np.asarray(read_holes(tmp_path / "m.png")) == 255, EXPECTED)


def test_a_transparent_palette_colour_is_not_a_hole(tmp_path: Path) -> None:
    indices = np.array([[1, 2], [0, 1]], np.uint8)  # 0 black, 1 white, 2 white but transparent
    mask = Image.frombytes("P", (2, 2), indices.tobytes())
    mask.putpalette([0, 0, 0, 255, 255, 255, 255, 255, 255])
    mask.info["transparency"] = 2
    mask.save(tmp_path / "p.png", transparency=2)
    expected = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(mask_holes(mask, (2, 2)), expected)
    np.testing.assert_array_equal(np.asarray(read_holes(tmp_path / "p.png")) == 255, expected)


def test_opaque_masks_keep_the_half_scale_threshold() -> None:
    gray = np.array([[127, 128], [0, 255]], np.uint8)
    expected = gray >= 128
    np.testing.assert_array_equal(mask_holes(Image.fromarray(gray), (2, 2)), expected)
    rgba = Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA")
    np.testing.assert_array_equal(mask_holes(rgba, (2, 2)), expected)
    sixteen = Image.fromarray(np.array([[32767, 32768], [0, 65535]], np.uint16))
    np.testing.assert_array_equal(mask_holes(sixteen, (2, 2)), expected)


def _filled(rgb: np.ndarray) -> np.ndarray:
    return np.full_like(rgb, 200)


def test_split_keeps_bilevel_and_32_bit_modes() -> None:
    holes = np.zeros((4, 6), bool)
    holes[1:3, 2:4] = True
    bits = Image.fromarray(np.indices((4, 6)).sum(0) % 2 == 0)
    rgb, rebuild = split_image(bits)
    out = rebuild(_filled(rgb), holes)
    assert out.mode == "1"
    np.testing.assert_array_equal(np.asarray(out)[~holes], np.asarray(bits)[~holes])
    assert np.asarray(out)[holes].all()  # 200 >= 128: white
    wide = Image.fromarray(np.arange(24, dtype=np.int32).reshape(4, 6) * 2000)
    rgb, rebuild = split_image(wide)
    out = rebuild(_filled(rgb), holes)
    assert out.mode == "I"
    np.testing.assert_array_equal(np.asarray(out)[~holes], np.asarray(wide)[~holes])
    assert (np.asarray(out)[holes] == 200 * 257).all()


@pytest.mark.parametrize(
    ("mode", "expected"), [("PA", "RGBA"), ("YCbCr", "RGB"), ("HSV", "RGB"), ("LAB", "RGB")]
)
def test_other_modes_say_what_they_are_written_as(mode: str, expected: str) -> None:
    image = Image.new("RGB", (4, 4), (10, 120, 240)).convert(mode)
    with pytest.warns(
        InpaintWarning, match=f"{mode} images are inpainted and written as {expected}"
    ):
        rgb, rebuild = split_image(image)
    assert rebuild(rgb, np.zeros((4, 4), bool)).mode == expected
