"""Inpainting real images: strategies, modes, alpha, untouched known pixels, files and folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ctsdg
from ctsdg.errors import InputError
from ctsdg.inference import Inpainter, InpaintWarning
from ctsdg.models import Generator
from tests.inpainting import box_mask, photo, tiny_weights

SIZE = 128  # the model's square in these tests (a width-8 generator)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture()
def inpainter(weights_file: Path) -> Inpainter:
    return Inpainter.from_checkpoint(weights_file, size=SIZE)


def count_forward_calls(inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the generator's forward; the returned list grows by the batch size of each call."""
    calls: list[int] = []
    forward = inpainter.generator.forward

    def counted(*args, **kwargs):
        calls.append(args[0].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(inpainter.generator, "forward", counted)
    return calls


def assert_only_holes_changed(before: np.ndarray, after: np.ndarray, holes: np.ndarray) -> None:
    assert before.shape == after.shape and before.dtype == after.dtype
    np.testing.assert_array_equal(after[~holes], before[~holes])  # bit-identical
    changed = np.any(after != before, axis=-1) if after.ndim == 3 else after != before
    assert changed[holes].mean() > 0.5  # the holes were really filled


@pytest.mark.parametrize("strategy", ["resize", "crop", "auto"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_strategies_keep_size_mode_alpha_and_known_pixels(
    inpainter: Inpainter, strategy: str, mode: str
) -> None:
    inpainter.strategy = strategy  # type: ignore[assignment]
    image = photo(300, 200).convert(mode)
    if "A" in mode:  # a real alpha channel, not all opaque
        alpha = np.tile(np.linspace(0, 255, 300).astype(np.uint8), (200, 1))
        image.putalpha(Image.fromarray(alpha))
    mask = box_mask(300, 200, (40, 30, 90, 70), (200, 150, 230, 190))
    out = inpainter.inpaint(image, mask)
    assert isinstance(out, Image.Image)
    assert out.size == image.size and out.mode == image.mode
    holes = np.asarray(mask) >= 128
    before, after = np.asarray(image), np.asarray(out)
    if "A" in mode:
        np.testing.assert_array_equal(after[..., -1], before[..., -1])  # alpha untouched
        before, after = before[..., :-1], after[..., :-1]
        if mode == "LA":
            before, after = before[..., 0], after[..., 0]
    assert_only_holes_changed(before, after, holes)


@pytest.mark.parametrize("shape", [(150, 170), (150, 170, 1), (150, 170, 3), (150, 170, 4)])
def test_numpy_arrays_come_back_as_arrays_of_the_same_shape(
    inpainter: Inpainter, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    holes = np.zeros(shape[:2], bool)
    holes[50:90, 60:100] = True
    out = inpainter.inpaint(image, holes)
    assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.uint8
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[..., 3], image[..., 3])
    np.testing.assert_array_equal(out[~holes], image[~holes])
    assert not np.array_equal(out[holes], image[holes])


def test_empty_mask_returns_the_input_without_running_the_model(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_forward_calls(inpainter, monkeypatch)
    image = photo()
    out = inpainter.inpaint(image, Image.new("L", image.size, 0))
    assert np.array_equal(np.asarray(out), np.asarray(image))
    assert out is not image and calls == []
    array = np.asarray(image)
    assert np.array_equal(inpainter.inpaint(array, np.zeros(array.shape[:2], bool)), array)
    assert calls == []


def test_mask_of_another_size_is_resized_with_a_warning(inpainter: Inpainter) -> None:
    image = photo(300, 200)
    small_mask = box_mask(150, 100, (20, 15, 45, 35))  # half size: the same region
    with pytest.warns(InpaintWarning, match="mask is 150x100 but the image is 300x200"):
        out = inpainter.inpaint(image, small_mask)
    holes = np.asarray(small_mask.resize((300, 200), Image.Resampling.NEAREST)) >= 128
    assert_only_holes_changed(np.asarray(image), np.asarray(out), holes)


def test_any_mask_mode_is_thresholded_at_half(inpainter: Inpainter) -> None:
    image = photo(200, 150)
    gray = np.zeros((150, 200), np.uint8)
    gray[20:60, 20:60] = 128  # >= 50 %: hole
    gray[80:120, 80:120] = 127  # below: known
    rgba = Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA")
    out = inpainter.inpaint(image, rgba)
    holes = gray >= 128
    assert_only_holes_changed(np.asarray(image), np.asarray(out), holes)


def test_auto_rule_and_crop_regions(inpainter: Inpainter) -> None:
    small = np.zeros((200, 250), bool)
    small[10:30, 10:30] = True
    assert inpainter.choose_strategy(small) == "resize"  # not over twice the model's size
    big = np.zeros((600, 800), bool)
    big[100:130, 100:140] = True
    big[100:130, 150:170] = True  # 10 px away: merged with the first
    big[500:520, 700:720] = True
    regions = inpainter.regions(big)
    assert len(regions) == 2
    assert inpainter.choose_strategy(big) == "crop"
    # twice the merged region's longer side (70 px), and at least the model's size
    assert [(r.box[2] - r.box[0], r.box[3] - r.box[1]) for r in regions] == [(140, 140), (128, 128)]
    for region in regions:
        left, top, right, bottom = region.box
        ys, xs = np.nonzero(region.own)
        assert left <= xs.min() and xs.max() < right and top <= ys.min() and ys.max() < bottom
    assert regions[0].own.sum() == 30 * 40 + 30 * 20
    large_hole = np.zeros((600, 800), bool)
    large_hole[50:550, 100:700] = True
    assert inpainter.choose_strategy(large_hole) == "resize"


def test_crop_strategy_runs_one_batch_for_all_regions(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_forward_calls(inpainter, monkeypatch)
    inpainter.strategy = "crop"
    image = photo(640, 480)
    mask = box_mask(640, 480, (10, 10, 40, 40), (600, 440, 630, 470), (300, 200, 330, 230))
    out = inpainter.inpaint(image, mask)
    assert calls == [3]  # one forward pass, the three regions as one batch
    assert_only_holes_changed(np.asarray(image), np.asarray(out), np.asarray(mask) >= 128)


def test_crop_with_thousands_of_scattered_holes_falls_back_to_one_resize_pass(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 000 x 2 000 with 2 500 one-pixel holes 40 px apart: one forward pass, not 625."""
    from ctsdg.inference import MAX_CROPS

    calls = count_forward_calls(inpainter, monkeypatch)
    inpainter.strategy = "crop"
    holes = np.zeros((2000, 2000), bool)
    holes[20::40, 20::40] = True
    assert holes.sum() == 2500
    with pytest.warns(InpaintWarning, match=f"2500 separate hole regions .* crop's {MAX_CROPS}"):
        regions = inpainter.regions(holes)
    assert [r.box for r in regions] == [(0, 0, 2000, 2000)]
    rgb = np.asarray(photo(2000, 2000))
    with pytest.warns(InpaintWarning, match="inpainted with resize instead"):
        out = inpainter.inpaint_rgb(rgb, holes)
    assert calls == [1]
    assert_only_holes_changed(rgb, out, holes)
    assert inpainter.choose_strategy(holes) == "resize"  # auto: no warning, no crop


def test_structure_inputs_come_from_the_square_in_the_checkpoints_convention(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctsdg.inference as inference

    seen = []
    original = inference.structure_inputs

    def spy(image, sigma, structure):
        seen.append((image.shape, image.dtype, sigma, structure))
        return original(image, sigma, structure)

    monkeypatch.setattr(inference, "structure_inputs", spy)
    inpainter.strategy = "resize"
    inpainter.inpaint(photo(300, 200), box_mask(300, 200, (10, 10, 50, 50)))
    assert seen == [((SIZE, SIZE, 3), np.uint8, 2.0, "authors")]


def test_lazy_export_and_bad_arguments(weights_file: Path) -> None:
    assert ctsdg.Inpainter is Inpainter and "Inpainter" in ctsdg.__all__
    with pytest.raises(InputError, match="strategy"):
        Inpainter.from_checkpoint(weights_file, strategy="tile")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="multiple of 128"):
        Inpainter.from_checkpoint(weights_file, size=200)
    inpainter = Inpainter.from_checkpoint(weights_file, size=SIZE)
    with pytest.raises(InputError, match="uint8"):
        inpainter.inpaint(np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), bool))


def test_model_size_defaults_to_the_recorded_training_size(tmp_path: Path, weights_file) -> None:
    from ctsdg.checkpoints import save_training_checkpoint

    state = {
        "model": {"width": 8, "align_corners": False},
        "structure": "correct",
        "generator": Generator(width=8).state_dict(),
        "config": {"image_load_size": [128, 128]},
    }
    path = save_training_checkpoint(tmp_path / "checkpoint_0000001.pt", state)
    inpainter = Inpainter.from_checkpoint(path)
    assert inpainter.size == 128 and inpainter.structure == "correct"
    assert Inpainter.from_checkpoint(weights_file).size == 256  # no record: the paper's size
