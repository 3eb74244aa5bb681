"""Data pipeline: images, structure inputs, masks, datasets, demo data, bad input.

Small CelebA-like and NVIDIA-like trees are built in ``tmp_path``; the structure inputs are
checked against the authors' golden arrays (``tests/data/golden``).
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctsdg.data import (
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    SampleKey,
    SkippedFileWarning,
    build_dataset,
    free_form_holes,
    hole_ratio,
    list_images,
    read_rgb,
    structure_inputs,
    write_mask_set,
)
from ctsdg.data.structure import AUTHORS_LUT, authors_corruption
from ctsdg.errors import InputError
from tests.golden import golden

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --------------------------------------------------------------------------- tree builders


def celeba_pattern() -> Image.Image:
    """178 x 218 (W x H): red top 20 rows, blue bottom 20 rows, green / white halves between.

    The centre 178 x 178 crop keeps rows 20..197: only green (left) and white (right).
    """
    a = np.zeros((218, 178, 3), np.uint8)
    a[:20] = RED
    a[198:] = BLUE
    a[20:198, :89] = GREEN
    a[20:198, 89:] = WHITE
    return Image.fromarray(a)


def make_celeba(root: Path, partitions: dict[str, int]) -> tuple[Path, Path]:
    """``root/img_align_celeba/<name>`` JPEGs and ``root/list_eval_partition.txt``."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    for name in partitions:
        # 4:4:4 and high quality: the colour bands stay sharp enough to check the geometry
        celeba_pattern().save(images / name, quality=100, subsampling=0)
    anno = root / "list_eval_partition.txt"
    anno.write_text("".join(f"{name} {part}\n" for name, part in partitions.items()))
    return images, anno


CELEBA_SPLITS = {
    "000001.jpg": 0,
    "000002.jpg": 0,
    "000003.jpg": 0,
    "000004.jpg": 1,
    "000005.jpg": 2,
    "000006.jpg": 2,
}


def write_mask(path: Path, holes: np.ndarray, mode: str = "L") -> None:
    """A mask file, white on ``holes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gray = Image.fromarray(holes.astype(np.uint8) * 255, mode="L")
    (gray if mode == "L" else gray.convert(mode)).save(path)


def band_holes(size: int, ratio: float, axis: int = 1) -> np.ndarray:
    """Holes covering the first ``ratio`` of columns (axis 1) or rows (axis 0)."""
    holes = np.zeros((size, size), bool)
    k = round(size * ratio)
    if axis == 1:
        holes[:, :k] = True
    else:
        holes[:k] = True
    return holes


MASK_RATIOS = (0.125, 0.25, 0.5, 0.75)


def make_masks(root: Path, ratios: tuple[float, ...] = MASK_RATIOS) -> Path:
    """NVIDIA-like 512 x 512 PNG masks, file i with hole ratio ratios[i].

    Even files are white on their left columns, odd files on their top rows.
    """
    for i, ratio in enumerate(ratios):
        write_mask(root / f"{i:05d}.png", band_holes(512, ratio, axis=1 - i % 2))
    return root


def make_folder(root: Path, n: int, size: tuple[int, int] = (96, 80)) -> list[Path]:
    """``n`` PNG photographs-like images (random colours) of PIL size (W, H)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = root / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- structure


def test_authors_lut_matches_torch_byte_cast() -> None:
    levels = torch.arange(256, dtype=torch.uint8)
    normalised = (levels.float() / 255 - 0.5) / 0.5  # ToTensor + Normalize(0.5, 0.5)
    expected = (normalised * 255).byte().numpy()
    np.testing.assert_array_equal(AUTHORS_LUT, expected)
    # -1.0 -> 1 (the wrap modulo 256); float32 rounding decides the rest: level 127 gives
    # -0.99999994 * ... = -0.9999999 -> 0 (not 255), level 64 gives -126.99999 -> 130 (not 129)
    assert AUTHORS_LUT[0] == 1 and AUTHORS_LUT[127] == 0 and AUTHORS_LUT[64] == 130
    assert AUTHORS_LUT[128] == 1 and AUTHORS_LUT[255] == 255


@pytest.mark.parametrize("convention", ["correct", "authors"])
def test_structure_inputs_match_golden_exactly(convention: str) -> None:
    gold = golden("structure_inputs")
    gray, edge = structure_inputs(gold["image_uint8"], sigma=2.0, structure=convention)
    assert gray.dtype == np.float32 and edge.dtype == np.float32
    np.testing.assert_array_equal(gray, gold[f"{convention}_gray"])
    np.testing.assert_array_equal(edge, gold[f"{convention}_edge"])
    assert set(np.unique(edge)) <= {0.0, 1.0}


@pytest.mark.parametrize("convention", ["correct", "authors"])
def test_dataset_structure_inputs_match_golden(tmp_path: Path, convention: str) -> None:
    """End to end: a 256 x 256 file through an evaluation dataset gives the golden arrays."""
    gold = golden("structure_inputs")
    Image.fromarray(gold["image_uint8"]).save(tmp_path / "photo.png")
    ds = build_dataset("folder", "test", data_root=tmp_path, structure=convention)
    sample = ds[0]
    np.testing.assert_array_equal(sample.gray[0].numpy(), gold[f"{convention}_gray"])
    np.testing.assert_array_equal(sample.edge[0].numpy(), gold[f"{convention}_edge"])
    expected = torch.from_numpy(gold["image_uint8"]).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(sample.image, expected, rtol=0, atol=0)


def test_authors_structure_differs_from_correct_on_dark_pixels() -> None:
    image = np.full((8, 8, 3), 40, np.uint8)  # dark: wraps to a bright value
    assert authors_corruption(image)[0, 0, 0] == AUTHORS_LUT[40] != 40
    g_correct, _ = structure_inputs(image, structure="correct")
    g_authors, _ = structure_inputs(image, structure="authors")
    assert g_correct[0, 0] == pytest.approx(40 / 255, abs=1e-6)
    assert g_authors[0, 0] == pytest.approx(AUTHORS_LUT[40] / 255, abs=1e-6)


# --------------------------------------------------------------------------- reading images


def test_mode_conversions(tmp_path: Path) -> None:
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(
        np.asarray(read_rgb(tmp_path / "l.png")), np.stack([gray] * 3, -1)
    )

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: the white background
    rgba[1, :] = (200, 100, 0, 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(read_rgb(tmp_path / "rgba.png"))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[0, 1]) == WHITE
    assert tuple(out[1, 1]) == (200, 100, 0)

    palette = Image.new("P", (2, 1))
    palette.putpalette([*RED, *GREEN] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png")
    out = np.asarray(read_rgb(tmp_path / "p.png"))
    assert tuple(out[0, 0]) == RED and tuple(out[0, 1]) == GREEN

    sixteen = np.array([[0, 1000, 32768, 65535]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode in ("I;16", "I")
    out = np.asarray(read_rgb(tmp_path / "i16.png"))
    # scaled, not clipped (PIL's own convert would give 0, 255, 255, 255)
    np.testing.assert_array_equal(out[0, :, 0], [0, 4, 128, 255])
    assert out.shape == (1, 4, 3)

    as_i = Image.fromarray(sixteen.astype(np.int32), mode="I")
    as_i.save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(
        np.asarray(read_rgb(tmp_path / "i32.tif"))[0, :, 1], [0, 4, 128, 255]
    )


def test_list_images_recursive_case_insensitive(tmp_path: Path) -> None:
    for name in ["a.JPG", "sub/b.png", "sub/deeper/c.WebP", "d.bmp", "e.jpeg"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(path, format="PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._a.jpg").write_text("macOS metadata")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.JPG", "d.bmp", "e.jpeg", "sub/b.png", "sub/deeper/c.WebP"]


# --------------------------------------------------------------------------- CelebA


@pytest.mark.parametrize(
    ("split", "partition", "expected"),
    [
        ("train", None, ["000001.jpg", "000002.jpg", "000003.jpg"]),
        ("val", None, ["000004.jpg"]),
        ("test", None, ["000005.jpg", "000006.jpg"]),
        ("test", [1, 2], ["000004.jpg", "000005.jpg", "000006.jpg"]),  # anno_eval_index
        ("train", 2, ["000005.jpg", "000006.jpg"]),  # anno_train_index
    ],
)
def test_celeba_splits(tmp_path: Path, split: str, partition, expected: list[str]) -> None:
    make_celeba(tmp_path, CELEBA_SPLITS)
    ds = build_dataset("celeba", split, data_root=tmp_path, partition=partition, image_size=64)
    assert [p.name for p in ds.images.files] == expected
    assert len(ds) == len(expected)


def test_celeba_centre_crop_then_resize(tmp_path: Path) -> None:
    images, anno = make_celeba(tmp_path, CELEBA_SPLITS)
    # data_root may be the image folder itself, with anno_path given
    ds = build_dataset("celeba", "test", data_root=images, anno_path=anno)
    sample = ds[0]
    assert sample.image.shape == (3, 256, 256)
    rgb = ((sample.image + 1) / 2 * 255).round().permute(1, 2, 0).numpy()
    # exact: the decoded JPEG, rows 20..197 cropped, then PIL bilinear to 256 x 256
    with Image.open(images / "000005.jpg") as jpeg:
        expected = jpeg.convert("RGB").crop((0, 20, 178, 198)).resize((256, 256), Image.BILINEAR)
    np.testing.assert_array_equal(rgb, np.asarray(expected))
    # the pattern: no red top band, no blue bottom band; green left half, white right half
    left, right = rgb[:, :120], rgb[:, 136:]
    assert np.all(left[..., 1] > 200) and np.all(left[..., 0] < 60) and np.all(left[..., 2] < 60)
    assert np.all(right > 200)


def test_celeba_partition_file_errors(tmp_path: Path) -> None:
    images, anno = make_celeba(tmp_path, CELEBA_SPLITS)
    with pytest.raises(InputError, match=r"partition file not found: .*nope\.txt"):
        build_dataset("celeba", "train", data_root=images, anno_path=tmp_path / "nope.txt")

    bad = tmp_path / "bad.txt"
    bad.write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg zero\n")
    with pytest.raises(InputError, match=r"line 3 of partition file .*bad.txt.*000003.jpg zero"):
        build_dataset("celeba", "train", data_root=images, anno_path=bad)

    listed = tmp_path / "listed.txt"
    listed.write_text(
        "".join(f"{i:06d}.jpg 0\n" for i in range(1, 4))
        + "".join(f"{i:06d}.jpg 0\n" for i in range(100, 108))
    )
    with pytest.raises(InputError) as err:
        build_dataset("celeba", "train", data_root=images, anno_path=listed)
    message = str(err.value)
    assert "8 of the 11 images" in message and str(images) in message
    assert "000100.jpg, 000101.jpg" in message and "..." in message

    with pytest.raises(InputError, match="lists no image in partition"):
        build_dataset("celeba", "train", data_root=images, anno_path=anno, partition=7)


# --------------------------------------------------------------------------- folders, masks


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"image folder not found: .*missing"):
        build_dataset("folder", "train", data_root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"no image .* found under .*empty"):
        build_dataset("folder", "train", data_root=tmp_path / "empty")
    make_folder(tmp_path / "photos", 2)
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match=r"no mask image .* found under .*masks"):
        build_dataset(
            "folder", "test", data_root=tmp_path / "photos", masks_root=tmp_path / "masks"
        )
    with pytest.raises(InputError, match=r"mask folder not found: .*nomasks"):
        build_dataset(
            "folder", "test", data_root=tmp_path / "photos", masks_root=tmp_path / "nomasks"
        )


def test_eval_pairs_image_i_with_mask_i_mod_n(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 7)
    make_masks(tmp_path / "masks")
    ds = build_dataset(
        "folder", "test", data_root=tmp_path / "photos", masks_root=tmp_path / "masks"
    )
    assert len(ds) == 7
    for i in range(7):
        sample = ds[i]
        assert sample.mask.shape == (1, 256, 256) and sample.mask.dtype == torch.float32
        assert int(sample.index) == i
        assert hole_ratio(sample.mask.numpy()) == pytest.approx(MASK_RATIOS[i % 4], abs=1e-9)
    # polarity: file 0 is white on its left 12.5 % of columns -> 0 there, 1 elsewhere
    mask = ds[0].mask[0]
    assert torch.all(mask[:, :32] == 0) and torch.all(mask[:, 32:] == 1)
    # deterministic
    assert torch.equal(ds[5].mask, ds[5].mask) and torch.equal(ds[5].image, ds[5].image)


def test_mask_ratio_range_selection(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 4)
    make_masks(tmp_path / "masks")
    ds = build_dataset(
        "folder",
        "test",
        data_root=tmp_path / "photos",
        masks_root=tmp_path / "masks",
        mask_ratio_range=(0.25, 0.5),  # (0.25, 0.5]: excludes 0.25, includes 0.5
    )
    assert [p.name for p in ds.masks.files] == ["00002.png"]
    ds = build_dataset(
        "folder",
        "test",
        data_root=tmp_path / "photos",
        masks_root=tmp_path / "masks",
        mask_ratio_range=(0.2, 0.8),
    )
    assert ds.masks.ratios == pytest.approx([0.25, 0.5, 0.75])
    ratios = [hole_ratio(ds[i].mask.numpy()) for i in range(4)]
    assert ratios == pytest.approx([0.25, 0.5, 0.75, 0.25])
    with pytest.raises(InputError, match=r"no mask under .*masks has a hole ratio in \(0.8, 0.9\]"):
        build_dataset(
            "folder",
            "test",
            data_root=tmp_path / "photos",
            masks_root=tmp_path / "masks",
            mask_ratio_range=(0.8, 0.9),
        )


def test_masks_threshold_resize_and_modes(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 5)
    masks = tmp_path / "masks"
    masks.mkdir()
    # gray 127 is known, 128 is a hole (>= 50 % of full scale)
    Image.fromarray(np.array([[127, 128]] * 2, np.uint8)).save(masks / "a_threshold.png")
    # RGB, 100 x 60 (W x H), white on its left half: resized nearest to 64 x 64
    rgb = np.zeros((60, 100, 3), np.uint8)
    rgb[:, :50] = WHITE
    Image.fromarray(rgb).save(masks / "b_rgb.png")
    # RGBA and palette masks, white on the top quarter
    write_mask(masks / "c_rgba.png", band_holes(40, 0.25, axis=0), mode="RGBA")
    write_mask(masks / "d_palette.png", band_holes(40, 0.25, axis=0), mode="P")
    # 16-bit: 32768 is a hole, 32767 is not
    Image.fromarray(np.array([[32767, 32768]] * 2, np.uint16)).save(masks / "e_16bit.png")
    ds = build_dataset(
        "folder", "test", data_root=tmp_path / "photos", masks_root=masks, image_size=64
    )
    got = [ds[i].mask[0] for i in range(5)]
    for threshold in (got[0], got[4]):
        assert torch.all(threshold[:, :32] == 1) and torch.all(threshold[:, 32:] == 0)
    assert torch.all(got[1][:, :32] == 0) and torch.all(got[1][:, 32:] == 1)
    for quarter in got[2:4]:
        assert torch.all(quarter[:16] == 0) and torch.all(quarter[16:] == 1)


def test_training_masks_random_and_augmented(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 3)
    make_masks(tmp_path / "masks")
    ds = build_dataset(
        "folder", "train", data_root=tmp_path / "photos", masks_root=tmp_path / "masks"
    )
    samples = [ds[SampleKey(0, 1, draw)] for draw in range(24)]
    ratios = {round(hole_ratio(s.mask.numpy()), 6) for s in samples}
    assert ratios == set(MASK_RATIOS)  # flips / rotations keep a square mask's ratio
    # the 0.125 mask (left columns) also appears as right columns or top / bottom rows
    placements = {
        tuple(int(s.mask[0, r, c]) for r, c in ((0, 0), (0, 255), (255, 0), (255, 255)))
        for s in samples
        if hole_ratio(s.mask.numpy()) == 0.125
    }
    assert len(placements) > 1
    # same key, same sample
    again = ds[SampleKey(0, 1, 5)]
    assert torch.equal(again.mask, samples[5].mask) and torch.equal(again.image, samples[5].image)


def test_folder_geometry(tmp_path: Path) -> None:
    (path,) = make_folder(tmp_path / "photos", 1, size=(120, 80))  # W x H
    photo = Image.open(path).convert("RGB")

    def as_uint8(t: torch.Tensor) -> np.ndarray:
        return ((t + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy()

    # evaluation: shorter side to 64 (96 x 64), centre crop 64 x 64 (columns 16..79)
    ds = build_dataset("folder", "test", data_root=tmp_path / "photos", image_size=64)
    expected = photo.resize((96, 64), Image.BILINEAR).crop((16, 0, 80, 64))
    np.testing.assert_array_equal(as_uint8(ds[0].image), np.asarray(expected))
    # "resize": the whole image stretched
    ds = build_dataset("folder", "test", data_root=tmp_path / "photos", image_size=64, fit="resize")
    np.testing.assert_array_equal(
        as_uint8(ds[0].image), np.asarray(photo.resize((64, 64), Image.BILINEAR))
    )
    # training: random crops of the resized image, some flipped; none when hflip is off
    resized = np.asarray(photo.resize((96, 64), Image.BILINEAR))
    crops = {(0, 0)}
    flips = set()
    for hflip in (True, False):
        ds = build_dataset(
            "folder", "train", data_root=tmp_path / "photos", image_size=64, hflip=hflip
        )
        for draw in range(16):
            got = as_uint8(ds[SampleKey(0, 0, draw)].image)
            for left in range(33):
                window = resized[:, left : left + 64]
                if np.array_equal(got, window):
                    crops.add((left, 0))
                    break
                if np.array_equal(got, window[:, ::-1]):
                    flips.add(hflip)
                    break
            else:
                pytest.fail("training sample is not a crop of the resized image")
    assert len(crops) > 3 and flips == {True}


def test_free_form_masks_when_no_mask_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 14)
    ds = build_dataset("folder", "test", data_root=tmp_path / "photos", image_size=64)
    ratios = [hole_ratio(ds[i].mask.numpy()) for i in range(14)]
    for i, r in enumerate(ratios):
        lo = (i % 7) / 10
        assert lo < r <= lo + 0.1
    # the evaluation masks depend on mask_seed only (not on the training seed)
    same = build_dataset("folder", "test", data_root=tmp_path / "photos", image_size=64, seed=9)
    other = build_dataset(
        "folder", "test", data_root=tmp_path / "photos", image_size=64, mask_seed=1
    )
    assert torch.equal(same[3].mask, ds[3].mask) and not torch.equal(other[3].mask, ds[3].mask)
    ds = build_dataset(
        "folder",
        "train",
        data_root=tmp_path / "photos",
        image_size=64,
        mask_ratio_range=(0.3, 0.4),
    )
    for draw in range(5):
        assert 0.3 < hole_ratio(ds[SampleKey(0, 0, draw)].mask.numpy()) <= 0.4


# --------------------------------------------------------------------------- bad files


def make_corrupt_folder(root: Path) -> list[Path]:
    paths = make_folder(root, 5, size=(40, 40))
    good = paths[1].read_bytes()
    paths[1].write_bytes(good[: len(good) // 3])  # truncated PNG
    paths[3].write_text("this is not an image")  # a text file named .png
    return paths


def test_training_skips_unreadable_files(tmp_path: Path) -> None:
    paths = make_corrupt_folder(tmp_path / "photos")
    ds = build_dataset("folder", "train", data_root=tmp_path / "photos", image_size=32)
    with pytest.warns(SkippedFileWarning, match=r"img01.png") as record:
        sample = ds[SampleKey(1, 0, 0)]
    assert int(sample.index) == 2  # replaced by the next readable image
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second failure of the same file does not warn again
        again = ds[SampleKey(1, 0, 0)]
    assert torch.equal(again.image, sample.image) and int(again.index) == 2
    with pytest.warns(SkippedFileWarning, match=r"img03.png"):
        assert int(ds[SampleKey(3, 0, 1)].index) == 4
    assert ds.skipped_files == [str(paths[1]), str(paths[3])]


def test_evaluation_stops_on_unreadable_file(tmp_path: Path) -> None:
    make_corrupt_folder(tmp_path / "photos")
    ds = build_dataset("folder", "test", data_root=tmp_path / "photos", image_size=32)
    assert ds[0].image.shape == (3, 32, 32)
    with pytest.raises(InputError, match=r"cannot read evaluation image .*img01.png"):
        ds[1]
    with pytest.raises(InputError, match=r"img03.png"):
        ds[3]


def test_evaluation_stops_on_unreadable_mask(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", 2)
    masks = make_masks(tmp_path / "masks", (0.25, 0.5))
    (masks / "00001.png").write_bytes(b"\x89PNG broken")
    ds = build_dataset(
        "folder", "test", data_root=tmp_path / "photos", masks_root=masks, image_size=32
    )
    with pytest.raises(InputError, match=r"cannot read mask .*00001.png"):
        ds[1]


# --------------------------------------------------------------------------- free-form masks


def test_free_form_reproducible_and_independent_of_global_rng() -> None:
    np.random.seed(1)
    random.seed(1)
    torch.manual_seed(1)
    a = free_form_holes(128, (0.2, 0.3), seed=7)
    np.random.seed(2)
    random.seed(2)
    torch.manual_seed(2)
    np.random.random(100)
    b = free_form_holes(128, (0.2, 0.3), seed=7)
    c = free_form_holes(128, (0.2, 0.3), seed=8)
    assert a.dtype == bool and a.shape == (128, 128)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "ratio_range", [(0.0, 0.1), (0.1, 0.2), (0.45, 0.46), (0.6, 0.7), (0.9, 1.0), (0.3, 0.3001)]
)
def test_free_form_hits_ratio_range(ratio_range: tuple[float, float]) -> None:
    lo, hi = ratio_range
    for seed in range(3):
        holes = free_form_holes((96, 128), ratio_range, seed=seed)
        assert holes.shape == (96, 128)
        assert lo < holes.mean() <= hi


def test_free_form_impossible_range_fails_clearly() -> None:
    with pytest.raises(InputError, match="narrower than one pixel"):
        free_form_holes(8, (0.5, 0.51), seed=0)
    with pytest.raises(InputError, match="0 <= lo < hi <= 1"):
        free_form_holes(8, (0.5, 0.4), seed=0)


def test_write_mask_set_reproducible(tmp_path: Path) -> None:
    buckets = [(0, 10), (20, 30), (90, 100)]
    write_mask_set(tmp_path / "a", per_bucket=3, size=64, buckets=buckets, seed=5)
    write_mask_set(tmp_path / "b", per_bucket=3, size=64, buckets=buckets, seed=5)
    write_mask_set(tmp_path / "c", per_bucket=3, size=64, buckets=[(20, 30)], seed=5)
    write_mask_set(tmp_path / "d", per_bucket=3, size=64, buckets=[(20, 30)], seed=6)
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*"))
    assert files == [
        "masks.json",
        "ratio_0-10",
        *[f"ratio_0-10/{n:05d}.png" for n in range(3)],
        "ratio_20-30",
        *[f"ratio_20-30/{n:05d}.png" for n in range(3)],
        "ratio_90-100",
        *[f"ratio_90-100/{n:05d}.png" for n in range(3)],
    ]
    for name in files:
        if name.endswith((".png", ".json")):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a bucket's masks do not depend on the other buckets; another seed gives other masks
    for n in range(3):
        name = f"ratio_20-30/{n:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "d" / name).read_bytes()
    index = json.loads((tmp_path / "a" / "masks.json").read_text())
    assert index["size"] == [64, 64] and len(index["masks"]) == 9
    for entry in index["masks"]:
        lo, hi = (int(v) / 100 for v in entry["bucket"].split("-"))
        assert entry["file"].startswith(f"ratio_{entry['bucket']}/")
        gray = np.asarray(Image.open(tmp_path / "a" / entry["file"]))
        assert gray.dtype == np.uint8 and set(np.unique(gray)) <= {0, 255}
        ratio = float(np.mean(gray == 255))
        assert ratio == entry["hole_ratio"] and lo < ratio <= hi


def test_mask_set_as_evaluation_masks(tmp_path: Path) -> None:
    """A written set loads back with white = hole, ratios matching the index (used directly)."""
    write_mask_set(tmp_path / "set", per_bucket=2, size=64, buckets=[(10, 20), (40, 50)])
    make_folder(tmp_path / "photos", 4)
    ds = build_dataset(
        "folder",
        "test",
        data_root=tmp_path / "photos",
        masks_root=tmp_path / "set",
        image_size=64,
        mask_ratio_range=(0.4, 0.5),
    )
    index = json.loads((tmp_path / "set" / "masks.json").read_text())
    expected = [m["hole_ratio"] for m in index["masks"] if m["bucket"] == "40-50"]
    assert ds.masks.ratios == expected
    assert hole_ratio(ds[1].mask.numpy()) == pytest.approx(expected[1], abs=1e-12)


def test_cli_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ctsdg.cli import main

    out = tmp_path / "set"
    args = ["masks", str(out), "--per-bucket", "2", "--size", "32", "--buckets", "0-10,50-60"]
    assert main([*args, "--seed", "3"]) == 0
    assert "wrote 4 masks" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["masks.json", "ratio_0-10", "ratio_50-60"]
    assert main(["masks", str(out), "--buckets", "10-5"]) == 2
    assert "bucket" in capsys.readouterr().err


# --------------------------------------------------------------------------- demo data


def test_demo_photographs_disjoint_and_offline() -> None:
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    assert len(TRAIN_PHOTOS) >= 4 and len(HELD_OUT_PHOTOS) >= 3


def test_demo_evaluation_set() -> None:
    ds = build_dataset("demo", "test", image_size=64)
    assert 24 <= len(ds) <= 48
    assert {ds.images.photo_of(i) for i in range(len(ds))} == set(HELD_OUT_PHOTOS)
    again = build_dataset("demo", "val", image_size=64)
    for i in (0, 17, len(ds) - 1):
        a, b = ds[i], again[i]
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    ratios = [hole_ratio(ds[i].mask.numpy()) for i in range(len(ds))]
    buckets = [int(r * 10 - 1e-9) for r in ratios]  # (0, 0.1] -> 0, ..., (0.6, 0.7] -> 6
    assert buckets == [i % 7 for i in range(len(ds))]
    # each held-out photograph meets every bucket
    for p in range(len(HELD_OUT_PHOTOS)):
        assert {
            b for i, b in enumerate(buckets) if ds.images.photo_of(i) == HELD_OUT_PHOTOS[p]
        } == set(range(7))


def test_demo_training_samples() -> None:
    ds = build_dataset("demo", "train", image_size=64)
    assert {ds.images.photo_of(i) for i in range(len(ds))} == set(TRAIN_PHOTOS)
    samples = [ds[SampleKey(0, 0, draw)] for draw in range(6)]
    for s in samples:
        assert s.image.shape == (3, 64, 64) and s.mask.shape == (1, 64, 64)
        assert s.edge.shape == s.gray.shape == (1, 64, 64)
        assert s.image.min() >= -1 and s.image.max() <= 1 and s.image.dtype == torch.float32
        assert s.gray.min() >= 0 and s.gray.max() <= 1
        assert set(s.edge.unique().tolist()) <= {0.0, 1.0}
        assert set(s.mask.unique().tolist()) == {0.0, 1.0}
        assert 0.05 < hole_ratio(s.mask.numpy()) <= 0.6
        assert s.index.dtype == torch.int64 and int(s.index) == 0
    # the same photograph gives different crops and masks per draw
    images = {s.image.sum().item() for s in samples}
    masks = {s.mask.sum().item() for s in samples}
    assert len(images) == 6 and len(masks) >= 5


@pytest.mark.slow
def test_package_import_is_light_and_exports_resolve() -> None:
    import subprocess
    import sys

    import ctsdg.data

    code = "import sys, ctsdg.data; print(sorted({'torch', 'skimage', 'cv2'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ctsdg.data.__all__:
        assert getattr(ctsdg.data, name) is not None
    assert set(ctsdg.data.__all__) == set(ctsdg.data._EXPORTS)


def test_folder_listing_survives_a_symlink_loop(tmp_path: Path) -> None:
    from ctsdg.data import list_images

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert [p.name for p in list_images(tmp_path)] == ["x.png"]
