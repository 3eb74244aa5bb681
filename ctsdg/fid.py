"""FID as pytorch-fid computes it: Inception features of images, their statistics, the Fréchet
distance, and pytorch-fid's ``.npz`` statistics files.

- **Images** are 8-bit RGB. Each is mapped to [0, 1], resized to 299 x 299 by bilinear
  interpolation (``align_corners=False``, no antialiasing) and scaled to [-1, 1] (``2x - 1``),
  then `ctsdg.models.inception.FIDInception` gives its 2048 pool features. Images are resized
  one by one, so a folder may mix sizes; the forwards are batched.
- **Statistics** are float64: the mean and the sample covariance (``np.cov``, N - 1) of the
  features. A covariance needs at least 2 images.
- **The distance** ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))``, with the trace of
  the square root as pytorch-fid takes it: ``scipy.linalg.sqrtm(S1 @ S2)``; if that is not
  finite, again with ``eps = 1e-6`` added to both diagonals; the real part, refused when the
  imaginary part of its diagonal exceeds 1e-3. When both sides' features are at hand and one
  side has fewer images than features (2048), the same trace is the sum of the singular values
  of ``A1 A2^T`` (``Ai`` the centred features over ``sqrt(Ni - 1)``, so ``Si = Ai^T Ai``): the
  nonzero eigenvalues of ``S1 S2`` are those of ``(A1 A2^T)(A1 A2^T)^T``. That is exact, agrees
  with sqrtm to ~1e-7 relative (tests), and costs milliseconds where one 2048 x 2048 sqrtm took
  54 to 126 s on a loaded two-core CPU; ``ctsdg eval`` computes up to 16 distances.
- **Statistics files**: ``mu`` (2048,) and ``sigma`` (2048, 2048), as pytorch-fid's
  ``--save-stats`` writes them; ctsdg adds ``images`` (the count), which pytorch-fid ignores.

`docs/evaluation.md` compares this with torch-fidelity's and clean-fid's conventions.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ctsdg.data.images import DECODE_ERRORS, IMAGE_EXTENSIONS, list_images
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write_bytes
from ctsdg.models.inception import (
    FEATURES,
    INPUT_SIZE,
    FIDInception,
    fold_batch_norm,
    load_fid_inception,
)

#: What ``ctsdg fid`` reads from a folder (pytorch-fid's list: bmp jpg jpeg pgm png ppm tif tiff
#: webp), found recursively, hidden files skipped.
FID_EXTENSIONS: tuple[str, ...] = (*IMAGE_EXTENSIONS, ".pgm", ".ppm", ".tif", ".tiff")
#: Below this many images the covariance (2048 x 2048) is rank-deficient and the FID is biased
#: upwards by much more than differences between methods (pytorch-fid recommends at least 2048);
#: such figures are reported but marked, and are not comparable with published ones.
FID_MIN_IMAGES = FEATURES
SQRTM_EPS = 1e-6
IMAGINARY_TOLERANCE = 1e-3


def unit_input(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, 299, 299) in [0, 1]: ``x / 255``, then bilinear
    (``align_corners=False``) to 299 x 299, pytorch-fid's order."""
    x = images.float() / 255
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


class InceptionFeatures:
    """Batched 2048-d features of uint8 RGB images: ``features(images) -> (B, 2048) float64``.

    The network is taken over: its BatchNorms are folded into the convolutions in place
    (`fold_batch_norm`), and on CPU it runs channels-last (oneDNN's blocked kernels;
    docs/benchmarks.md has the gains). The features are the same to float rounding (the tests
    compare them with a plain NCHW forward written apart).
    """

    def __init__(self, network: FIDInception, device: torch.device, batch_size: int = 50):
        self.format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.network = fold_batch_norm(network).to(device, memory_format=self.format)
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def from_file(
        cls, path: str | Path, device: torch.device, batch_size: int = 50
    ) -> InceptionFeatures:
        return cls(load_fid_inception(path), device, batch_size)

    @torch.inference_mode()
    def __call__(self, images: Tensor | np.ndarray) -> np.ndarray:
        """uint8 images, a (B, 3, H, W) tensor or (B, H, W, 3) array of one size, in chunks of
        ``batch_size``."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        parts = [self.of_unit(unit_input(c.to(self.device))) for c in images.split(self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, FEATURES))

    @torch.inference_mode()
    def of_unit(self, x: Tensor) -> np.ndarray:
        """Features of (B, 3, 299, 299) inputs in [0, 1] (`unit_input`'s output), one forward."""
        x = (x.to(self.device) * 2 - 1).contiguous(memory_format=self.format)
        return self.network(x).double().cpu().numpy()


class Statistics:
    """Mean and covariance of Inception features (float64).

    Built from a file (``sigma`` given) or from features (``centered``: the (N, 2048) features
    minus the mean), in which case the covariance is computed on first use: the Fréchet
    distance of a small set needs only its trace (see `frechet_distance`), and an evaluation
    has a set per hole-ratio bucket.
    """

    def __init__(
        self,
        mu: np.ndarray,
        sigma: np.ndarray | None,
        images: int | None,
        source: str,
        centered: np.ndarray | None = None,
    ) -> None:
        if sigma is None and centered is None:
            raise ValueError("Statistics needs sigma or the centred features")
        self.mu, self._sigma, self.images, self.source = mu, sigma, images, source
        self.centered = centered

    @property
    def sigma(self) -> np.ndarray:
        if self._sigma is None:
            a = self.centered
            self._sigma = a.T @ a / (a.shape[0] - 1)  # = np.cov(features, rowvar=False)
        return self._sigma

    def trace(self) -> float:
        """tr(sigma), without forming sigma when the features are at hand."""
        if self._sigma is None:
            a = self.centered
            return float(np.einsum("ij,ij->", a, a) / (a.shape[0] - 1))
        return float(np.trace(self._sigma))


def statistics(features: np.ndarray, source: str) -> Statistics:
    """`Statistics` of (N, 2048) features; InputError naming ``source`` for fewer than 2."""
    features = np.asarray(features, dtype=np.float64)
    count = features.shape[0]
    if count < 2:
        raise InputError(
            f"{source}: {count} image{'' if count == 1 else 's'}; FID needs at least 2 for a "
            "covariance"
        )
    mu = features.mean(axis=0)
    return Statistics(mu, None, count, source, features - mu)


def _trace_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrtm(S1 S2)), pytorch-fid's steps (see the module docstring)."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_TOLERANCE):
            largest = float(np.max(np.abs(covmean.imag)))
            raise InputError(
                f"FID: the square root of the covariance product has an imaginary component "
                f"of {largest:.3g} (too few or degenerate images?)"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def _trace_sqrt_low_rank(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> float:
    """tr(sqrtm(S1 S2)) from centred features: the nuclear norm of A1 A2^T."""
    cross = (a / math.sqrt(n_a - 1)) @ (b / math.sqrt(n_b - 1)).T
    return float(np.linalg.svd(cross, compute_uv=False).sum())


def frechet_distance(a: Statistics, b: Statistics) -> float:
    """The Fréchet distance between two feature Gaussians (see the module docstring)."""
    if a.mu.shape != b.mu.shape:
        raise InputError(
            f"FID: {a.source} and {b.source} hold statistics of different sizes "
            f"({a.mu.shape[0]} and {b.mu.shape[0]} features)"
        )
    diff = a.mu - b.mu
    dim = a.mu.shape[0]
    if a.centered is not None and b.centered is not None and min(a.images, b.images) < dim:
        trace = _trace_sqrt_low_rank(a.centered, b.centered, a.images, b.images)
    else:
        trace = _trace_sqrtm(a.sigma, b.sigma)
    return float(diff @ diff + a.trace() + b.trace() - 2 * trace)


# --------------------------------------------------------------------------- files


def read_stats(path: Path) -> Statistics:
    """pytorch-fid's statistics file: ``mu`` (D,), ``sigma`` (D, D); InputError otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not {"mu", "sigma"} <= keys:
                raise InputError(
                    f"{path}: not FID statistics (expected arrays mu and sigma, found "
                    f"{', '.join(sorted(keys)) or 'none'})"
                )
            mu = np.asarray(data["mu"], dtype=np.float64)
            sigma = np.asarray(data["sigma"], dtype=np.float64)
            images = int(data["images"]) if "images" in keys else None
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: unreadable FID statistics ({err})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(
            f"{path}: not FID statistics (mu {mu.shape} and sigma {sigma.shape}; expected (D,) "
            "and (D, D))"
        )
    return Statistics(mu, sigma, images, str(path))


def write_stats(path: Path, stats: Statistics, *, overwrite: bool = False) -> Path:
    """Write ``mu``, ``sigma`` (and ``images``) as an .npz, atomically; an existing file is
    refused unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    buffer = io.BytesIO()
    count = {} if stats.images is None else {"images": np.int64(stats.images)}
    np.savez(buffer, mu=stats.mu, sigma=stats.sigma, **count)
    return atomic_write_bytes(path, buffer.getvalue())


def folder_images(root: Path) -> list[Path]:
    """The images under ``root`` (recursive, `FID_EXTENSIONS`); InputError when none."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of images or an .npz of FID statistics")
    files = list_images(root, FID_EXTENSIONS)
    if not files:
        names = ", ".join(e[1:] for e in FID_EXTENSIONS)
        raise InputError(f"{root}: no images ({names}) found")
    return files


def read_fid_image(path: Path) -> Tensor:
    """One file as a uint8 (3, H, W) tensor, as pytorch-fid reads it (PIL, ``convert('RGB')``)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except DECODE_ERRORS as err:
        raise InputError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _input_batches(files: Sequence[Path], size: int) -> Iterator[Tensor]:
    """`unit_input` batches of ``size`` files, each image resized on its own."""
    for start in range(0, len(files), size):
        chunk = [read_fid_image(p) for p in files[start : start + size]]
        yield torch.cat([unit_input(image[None]) for image in chunk])


def folder_statistics(
    root: Path, extractor: InceptionFeatures, *, progress: bool = True
) -> Statistics:
    """`Statistics` of every image under ``root`` (a bar on a terminal when ``progress``)."""
    from tqdm import tqdm

    files = folder_images(root)
    shown = progress and sys.stderr.isatty()
    bar = tqdm(total=len(files), unit="img", desc=str(root), disable=not shown, file=sys.stderr)
    parts = []
    with bar:
        for batch in _input_batches(files, extractor.batch_size):
            parts.append(extractor.of_unit(batch))
            bar.update(len(batch))
    return statistics(np.concatenate(parts), str(root))


def path_statistics(
    path: Path, extractor: Callable[[], InceptionFeatures], *, progress: bool = True
) -> Statistics:
    """A folder's statistics (the network built on first need) or an .npz file's; ``path`` as
    `check_path` accepts it."""
    if _is_stats_file(path):
        return read_stats(path)
    return folder_statistics(path, extractor(), progress=progress)


def _is_stats_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def check_path(path: Path) -> None:
    """InputError unless ``path`` is an .npz file or a folder holding images (checked before
    any network is loaded or any weights are fetched)."""
    if _is_stats_file(path):
        return
    if not path.exists():
        raise InputError(f"{path}: not found (expected a folder of images or an .npz)")
    folder_images(path)


def fid_of(
    paths: Iterable[Path], extractor: Callable[[], InceptionFeatures], *, progress: bool = True
) -> tuple[float, list[Statistics]]:
    """FID between two paths (folders or .npz), and both sides' statistics."""
    paths = list(paths)
    for path in paths:  # both sides' inputs before either side's work
        check_path(path)
    stats = [path_statistics(p, extractor, progress=progress) for p in paths]
    return frechet_distance(stats[0], stats[1]), stats
