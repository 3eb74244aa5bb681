"""The demo data set that ships: colour photographs installed with scikit-image.

Nothing is downloaded: every photograph below is a file inside the scikit-image package. Five
photographs are for training and three are held out for evaluation; no photograph is in both
(the motorcycle stereo pair would be near-duplicates, so only its left view is used). Training
takes random crops at a random scale with random flips, so a few photographs give many different
samples; evaluation takes a fixed set of crops per held-out photograph.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ctsdg.data.images import to_rgb

#: Training photographs (names of ``skimage.data`` functions; "motorcycle" is the left view of
#: ``stereo_motorcycle``).
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "hubble_deep_field",
    "motorcycle",
    "retina",
)
#: Held-out photographs, for evaluation only.
HELD_OUT_PHOTOS: tuple[str, ...] = ("chelsea", "rocket", "immunohistochemistry")

#: Evaluation crops per held-out photograph: 3 x 14 = 42 samples, 6 per 10 % bucket over the
#: 7 default evaluation buckets (0-10 % ... 60-70 %).
CROPS_PER_PHOTO = 14
#: Nominal length of the training set (it is endless in effect: every draw is a new crop).
TRAIN_LENGTH = 500
#: Photographs are stored with their shorter side at most this long: crops are resized to about
#: 256 anyway, and resizing a 1411-pixel crop every sample would dominate the loading time.
MAX_SHORT_SIDE = 512
#: Smallest crop, as a fraction of the largest crop of the target's shape that fits.
MIN_CROP_SCALE = 0.35

_EVAL_CROP_SEED = 20210819


@functools.cache
def demo_photo(name: str) -> Image.Image:
    """One demo photograph as an RGB PIL image, shorter side at most ``MAX_SHORT_SIDE``."""
    from skimage import data  # imported here: scikit-image's data module is slow to import

    if name not in TRAIN_PHOTOS + HELD_OUT_PHOTOS:
        raise ValueError(f"unknown demo photograph {name!r}")
    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = to_rgb(Image.fromarray(array))
    scale = MAX_SHORT_SIDE / min(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def random_box(
    photo_size: tuple[int, int], target_hw: tuple[int, int], rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """A random crop box (left, top, right, bottom) of the target's aspect ratio.

    Its side is a uniform fraction in [MIN_CROP_SCALE, 1] of the largest such box that fits in
    the photograph (``photo_size`` is PIL's (width, height)); its position is uniform.
    """
    width, height = photo_size
    aspect = target_hw[1] / target_hw[0]  # width / height
    box_w = min(width, height * aspect)
    scale = rng.uniform(MIN_CROP_SCALE, 1.0)
    box_w *= scale
    box_h = box_w / aspect
    left = rng.uniform(0, width - box_w)
    top = rng.uniform(0, height - box_h)
    # min() keeps rounding from pushing the box a hair outside the photograph (PIL refuses it)
    return left, top, min(left + box_w, width), min(top + box_h, height)


class DemoImages:
    """Crops of the demo photographs, as an image source of ``InpaintingDataset``.

    Args:
        size: output (H, W).
        train: True: index ``i`` is a random crop of ``TRAIN_PHOTOS[i mod 5]`` (random scale,
            position and horizontal flip, from the sample's generator); False: index ``i`` is
            fixed crop ``i mod CROPS_PER_PHOTO`` of ``HELD_OUT_PHOTOS[i // CROPS_PER_PHOTO]``.
        hflip: training flips.
        crops_per_photo: evaluation crops per held-out photograph.
    """

    def __init__(
        self,
        size: tuple[int, int],
        *,
        train: bool,
        hflip: bool = True,
        crops_per_photo: int = CROPS_PER_PHOTO,
    ) -> None:
        self.size = size
        self.train = train
        self.hflip = hflip
        self.photos = TRAIN_PHOTOS if train else HELD_OUT_PHOTOS
        self.crops_per_photo = crops_per_photo

    def __len__(self) -> int:
        return TRAIN_LENGTH if self.train else len(self.photos) * self.crops_per_photo

    def photo_of(self, index: int) -> str:
        """Name of the photograph sample ``index`` is cropped from."""
        if self.train:
            return self.photos[index % len(self.photos)]
        return self.photos[index // self.crops_per_photo]

    def describe(self, index: int) -> str:
        """A name for messages."""
        return f"skimage.data.{self.photo_of(index)} (demo sample {index})"

    def load(self, index: int, rng: np.random.Generator | None) -> Image.Image:
        """RGB crop of size (H, W) for sample ``index``; ``rng`` None gives the fixed crop."""
        photo = demo_photo(self.photo_of(index))
        crop_rng = rng if rng is not None else np.random.default_rng([_EVAL_CROP_SEED, index])
        left, top, right, bottom = random_box(photo.size, self.size, crop_rng)
        h, w = self.size
        # resize's box reads the crop's border neighbourhood from the photograph itself, which
        # is what a crop of a larger image should see (no edge clamping at the crop border)
        image = photo.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, right, bottom))
        if rng is not None and self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image
