"""Inpainting real images: strategies, modes, alpha, untouched known pixels, files and folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ctsdg
from ctsdg.errors import InputError
from ctsdg.inference import Inpainter, InpaintWarning, IOPaintStrategy
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


# --------------------------------------------------------------------------- original


def capture_forward(inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch) -> list:
    """Wrap the generator's forward; the list gets (image, structure, mask, output) per call."""
    calls: list = []
    forward = inpainter.generator.forward

    def captured(image, structure, mask):
        out = forward(image, structure, mask)
        calls.append((image.clone(), structure.clone(), mask.clone(), out.output.clone()))
        return out

    monkeypatch.setattr(inpainter.generator, "forward", captured)
    return calls


def test_original_keeps_the_size_and_the_known_pixels(inpainter: Inpainter, monkeypatch) -> None:
    calls = capture_forward(inpainter, monkeypatch)
    inpainter.strategy = "original"
    image, mask = photo(300, 200), box_mask(300, 200, (40, 30, 90, 70))
    out = inpainter.inpaint(image, mask)
    assert out.size == (300, 200)
    assert_only_holes_changed(np.asarray(image), np.asarray(out), np.asarray(mask) >= 128)
    assert [c[0].shape for c in calls] == [(1, 3, 256, 384)]  # one pass, padded to 128's


def test_original_equals_the_generator_run_directly_on_a_multiple_of_128() -> None:
    from ctsdg.data.structure import structure_inputs
    from ctsdg.data.tensors import image_to_tensor, tensor_to_image
    from ctsdg.models import generator_inputs

    torch.manual_seed(0)
    generator = Generator(width=8).eval()
    inpainter = Inpainter(generator, size=SIZE, strategy="original")
    rgb = np.asarray(photo(384, 256))
    holes = np.zeros((256, 384), bool)
    holes[100:160, 200:300] = True
    out = inpainter.inpaint(rgb, holes)

    gray, edge = structure_inputs(rgb, 2.0, "correct")
    image = image_to_tensor(rgb)[None]
    mask = torch.from_numpy((~holes).astype(np.float32))[None, None]
    edge, gray = (torch.from_numpy(a)[None, None] for a in (edge, gray))
    with torch.no_grad():
        output = generator(*generator_inputs(image, edge, gray, mask))
    expected = rgb.copy()
    expected[holes] = tensor_to_image(output.output[0])[holes]
    np.testing.assert_array_equal(out, expected)


def test_original_padding_mirrors_the_holes_and_never_reaches_the_result(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hole on the right and bottom edges: its mirror image in the padding is a hole too, so
    what is to be removed never reaches the model, and the padding is cut off the result."""
    calls = capture_forward(inpainter, monkeypatch)
    inpainter.strategy = "original"
    rgb = np.asarray(photo(300, 200)).copy()
    holes = np.zeros((200, 300), bool)
    holes[150:, 260:] = True  # the bottom-right corner
    holes[20:60, 290:] = True  # on the right edge
    rgb[holes] = (255, 0, 255)  # the object to remove: a colour the photo does not have
    out = inpainter.inpaint(rgb, holes)
    assert out.shape == rgb.shape
    (image, _, mask, output) = calls[0]
    assert image.shape == (1, 3, 256, 384)
    known = mask[0, 0].numpy() > 0.5
    # the padding mirrors the mask (numpy "reflect": column 300 + k is column 298 - k)
    np.testing.assert_array_equal(~known[:200, 300:], holes[:, 298 - np.arange(84)])
    np.testing.assert_array_equal(~known[200:, :300], holes[198 - np.arange(56)])
    magenta = torch.tensor([1.0, -1.0, 1.0])[:, None, None]
    assert not (image[0] == magenta).all(0).any()  # no hole pixel anywhere in the model's input
    # the result's hole pixels are the output's top-left 200 x 300: nothing shifted in
    from ctsdg.data.tensors import tensor_to_image

    np.testing.assert_array_equal(out[holes], tensor_to_image(output[0])[:200, :300][holes])
    np.testing.assert_array_equal(out[~holes], rgb[~holes])


def test_original_over_the_pixel_limit_is_refused(weights_file: Path) -> None:
    inpainter = Inpainter.from_checkpoint(
        weights_file, size=SIZE, strategy="original", max_original_pixels=128 * 256
    )
    with pytest.raises(InputError) as caught:
        inpainter.inpaint(photo(300, 200), box_mask(300, 200, (40, 30, 90, 70)))
    message = str(caught.value)
    assert "\n" not in message
    for words in ("300x200", "384x256", "98304", "32768", "--max-original-pixels", "resize"):
        assert words in message, message
    # exactly at the limit it runs: 250 x 120 pads to 256 x 128
    out = inpainter.inpaint(photo(250, 120), box_mask(250, 120, (40, 30, 90, 70)))
    assert out.size == (250, 120)
    inpainter.backend = "onnxruntime"  # a fixed-size graph cannot run it
    with pytest.raises(InputError, match="onnxruntime runs the model at 128x128 only"):
        inpainter.check_original(250, 120)
    with pytest.raises(InputError, match=r"--max-original-pixels\): at least 128x128 = 16384"):
        Inpainter.from_checkpoint(weights_file, size=SIZE, max_original_pixels=1000)
    with pytest.raises(InputError, match="got 16383"):  # as the server sets it on its copies
        inpainter.max_original_pixels = 16383


# --------------------------------------------------------------------------- IOPaint's strategies


def test_iopaint_crop_runs_each_region_at_its_own_resolution_with_the_margin(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = capture_forward(inpainter, monkeypatch)
    image = photo(900, 300)
    mask = box_mask(900, 300, (100, 50, 180, 110), (700, 200, 740, 240))
    holes = np.asarray(mask) >= 128
    crop = IOPaintStrategy("Crop", crop_margin=32, crop_trigger_size=640)
    out = inpainter.inpaint(image, mask, iopaint=crop)
    assert_only_holes_changed(np.asarray(image), np.asarray(out), holes)
    # 80 x 60 + 2 x 32 = 144 x 124, padded to 256 x 128; 40 x 40 + 64 = 104 x 104, to 128 x 128
    assert [c[0].shape[-2:] for c in calls] == [(128, 256), (128, 128)]
    calls.clear()
    inpainter.max_original_pixels = 128 * 128  # a crop over the limit is shrunk to fit it
    inpainter.inpaint(image, mask, iopaint=crop)
    assert [c[0].shape[-2:] for c in calls] == [(128, 128), (128, 128)]
    calls.clear()
    inpainter.max_original_pixels = 1024 * 1024
    small = box_mask(300, 200, (100, 50, 180, 110))  # up to the trigger size (800): Original
    inpainter.inpaint(photo(300, 200), small, iopaint=IOPaintStrategy("Crop"))
    assert [c[0].shape[-2:] for c in calls] == [(256, 384)]


def test_iopaint_resize_runs_the_longer_side_at_the_limit(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = capture_forward(inpainter, monkeypatch)
    image, mask = photo(900, 300), box_mask(900, 300, (100, 50, 180, 110))
    resize = IOPaintStrategy("Resize", resize_limit=450)
    out = inpainter.inpaint(image, mask, iopaint=resize)
    assert_only_holes_changed(np.asarray(image), np.asarray(out), np.asarray(mask) >= 128)
    assert [c[0].shape[-2:] for c in calls] == [(256, 512)]  # 450 x 150, padded
    calls.clear()
    inpainter.max_original_pixels = 128 * 256  # shrunk further to fit: 256 x 85
    inpainter.inpaint(image, mask, iopaint=resize)
    assert [c[0].shape[-2:] for c in calls] == [(128, 256)]
    with pytest.raises(InputError, match="strategy original: a 900x300 image"):
        inpainter.inpaint(image, mask, iopaint=IOPaintStrategy("Original"))  # refused, not shrunk
