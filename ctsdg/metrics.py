"""Image-quality metrics as inpainting papers report them, batched in torch (CPU or GPU).

Conventions (the MindSpore port's, see docs/evaluation.md): metrics compare the *composite*
``comp = gt * mask + out * (1 - mask)`` with the ground truth, both mapped from [-1, 1] to [0, 1]
by ``(x + 1) / 2`` and clipped (`to_unit`). Every function takes (B, C, H, W) tensors in [0, 1]
and returns one value per image, shape (B,), so that results can be grouped per image.

- `psnr`: peak signal-to-noise ratio with peak 1, over all pixels and channels; an exact match
  is capped at `PSNR_CAP` dB (an infinite value would make every mean infinite).
- `ssim`: structural similarity with an 11 x 11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
  population (not sample) covariances, computed per channel over the *valid* region (only
  window positions fully inside the image; no padding) and averaged over positions and
  channels. This is MindSpore's ``nn.SSIM`` used by the MindSpore port, and equals
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)``: skimage filters the whole
  image and then drops the 5-pixel border whose windows reach outside it.
- `l1`: mean absolute error over all pixels and channels.
- `LPIPS`: learned perceptual distance (VGG variant, version 0.1), when its weights are given.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsdg.errors import InputError
from ctsdg.fileio import read_state_dict
from ctsdg.models.vgg import load_vgg16_features, vgg16_features
from ctsdg.weights import resolve

log = logging.getLogger(__name__)

PSNR_CAP = 100.0  # dB; what an exact reproduction scores (MSE floored at 1e-10)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] images to [0, 1], clipped (the MindSpore port's mapping before every metric)."""
    return ((x + 1) / 2).clamp(0.0, 1.0)


def composite(ground_truth: Tensor, output: Tensor, mask: Tensor) -> Tensor:
    """``ground_truth * mask + output * (1 - mask)``; mask (B, 1, H, W), 1 = known, 0 = hole."""
    return ground_truth * mask + output * (1 - mask)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB per image: (B, C, H, W) x2 in [0, data_range] -> (B,) float32."""
    _check_pair(pred, target)
    # float64: MSEs of good inpaintings are ~1e-4, summed over 200k values
    diff = pred.double() - target.double()
    mse = diff.square().flatten(1).mean(dim=1).clamp_min(data_range**2 * 10 ** (-PSNR_CAP / 10))
    return (10 * torch.log10(data_range**2 / mse)).float()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per image: (B, C, H, W) x2 -> (B,) float32."""
    _check_pair(pred, target)
    return (pred.double() - target.double()).abs().flatten(1).mean(dim=1).float()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """(size,) float64 normalised 1-D Gaussian; the 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian filter of every channel, valid positions only: (N, C, H, W) ->
    (N, C, H - k + 1, W - k + 1)."""
    channels = x.shape[1]
    k = window.numel()
    horizontal = window.view(1, 1, 1, k).expand(channels, 1, 1, k)
    vertical = window.view(1, 1, k, 1).expand(channels, 1, k, 1)
    x = F.conv2d(x, horizontal.to(x.dtype), groups=channels)
    return F.conv2d(x, vertical.to(x.dtype), groups=channels)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    *,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Tensor:
    """SSIM per image (see the module docstring): (B, C, H, W) x2 in [0, 1] -> (B,) float32.

    Computed in float32 (float64 inputs stay float64): the variances are differences of close
    means (``E[x^2] - E[x]^2``), but on [0, 1] images the image means agree with float64 to
    ~1e-7 relative, and float64 convolutions are ten times slower on CPU.
    """
    _check_pair(pred, target)
    height, width = pred.shape[-2:]
    if min(height, width) < window_size:
        raise ValueError(
            f"SSIM needs images of at least {window_size} pixels, got {height}x{width}"
        )
    dtype = torch.promote_types(pred.dtype, torch.float32)
    x, y = pred.to(dtype), target.to(dtype)
    window = gaussian_window(window_size, sigma).to(x.device)
    channels = x.shape[1]
    # One filter call for the five moments: (B, 5C, H, W).
    moments = _filter_valid(torch.cat((x, y, x * x, y * y, x * y), dim=1), window)
    mu_x, mu_y, xx, yy, xy = moments.split(channels, dim=1)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    # Every channel has the same number of valid positions: the mean over all of them is the
    # mean of the per-channel means.
    return s.flatten(1).mean(dim=1).float()


# --------------------------------------------------------------------------- LPIPS

# LPIPS taps the ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: features[:4], [4:9],
# [9:16], [16:23], [23:30].
_LPIPS_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS's input scaling (its "ScalingLayer"), for [-1, 1] inputs.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance, VGG variant (version 0.1 linear layers). Frozen, eval mode.

    Two weight files are needed, both loaded with ``weights_only=True``:

    - torchvision's ``vgg16-397923af.pth`` (``features.N.weight`` / ``.bias``): the trunk;
    - the LPIPS linear layers for VGG (``vgg.pth`` of the ``lpips`` package, version 0.1):
      five (1, C, 1, 1) weights named ``lin0.model.1.weight`` ... ``lin4.model.1.weight``
      (``linN.weight`` is accepted too).

    Forward: two (B, 3, H, W) images in [0, 1] -> (B,) distances (lower is closer). Each tapped
    feature map is unit-normalised over channels, the squared difference is weighted per channel
    by the linear layer, averaged over positions and summed over the five taps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features(_LPIPS_SLICES[-1][1])
        self.lins = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in _LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, linear_path: str | Path, vgg_path: str | Path) -> LPIPS:
        """Load the LPIPS linear layers and torchvision's VGG16 weights (InputError if unfit).

        Either path may be ``auto``: the standard file, fetched on first use (`ctsdg.weights`).
        """
        model = cls()
        load_vgg16_features(model.features, vgg_path)
        linear_path = resolve("lpips_vgg", str(linear_path))
        lin = read_state_dict(
            linear_path, "LPIPS linear-layer weights (the lpips package's vgg.pth)"
        )
        for i, channels in enumerate(_LPIPS_CHANNELS):
            weight = lin.get(f"lin{i}.model.1.weight", lin.get(f"lin{i}.weight"))
            if weight is None or tuple(weight.shape) != (1, channels, 1, 1):
                raise InputError(
                    f"{linear_path}: not LPIPS VGG linear layers (expected lin{i}.model.1.weight "
                    f"of shape (1, {channels}, 1, 1))"
                )
            model.lins[i].copy_(weight)
        return model.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # a frozen metric network

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_pair(pred, target)
        # [0, 1] -> [-1, 1] (LPIPS's input range), then LPIPS's scaling; both images in one pass,
        # channels-last (oneDNN's blocked convolutions: with the lean distance below, 1.37x the
        # NCHW forward's speed on the project's CPU; docs/benchmarks.md). Same values to float
        # rounding.
        x = ((torch.cat((pred, target)) * 2 - 1 - self.shift) / self.scale).contiguous(
            memory_format=torch.channels_last
        )
        count = pred.shape[0]
        total = x.new_zeros(count)
        for (start, stop), lin in zip(_LPIPS_SLICES, self.lins, strict=True):
            x = self.features[start:stop](x)
            total = total + _tap_distance(x[:count], x[count:], lin)
        return total


def _tap_distance(a: Tensor, b: Tensor, lin: Tensor, eps: float = 1e-10) -> Tensor:
    """LPIPS at one tap: both feature maps unit-normalised over channels, the squared difference
    weighted per channel by ``lin`` and summed over channels, averaged over positions; (B,).

    Fewer passes over the maps than the textbook expression: the norms, one quotient, one fused
    quotient-difference, an in-place square, and the channel sum as a matrix-vector product
    over the channels-last layout."""
    norm_a = torch.linalg.vector_norm(a, dim=1, keepdim=True).add_(eps)
    norm_b = torch.linalg.vector_norm(b, dim=1, keepdim=True).add_(eps)
    squared = torch.addcdiv(a / norm_a, b, norm_b, value=-1).square_()
    return torch.matmul(squared.permute(0, 2, 3, 1), lin.view(-1)).mean(dim=(1, 2))


def finite_mean(values: list[float]) -> float:
    """Mean of a list of floats; NaN for an empty list (an empty bucket)."""
    return math.fsum(values) / len(values) if values else math.nan


def score_composites(
    output: Tensor, ground_truth: Tensor, mask: Tensor, lpips: LPIPS | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Score a batch the MindSpore port's way; ``ctsdg eval`` and validation both call this.

    output, ground_truth (B, 3, H, W) in [-1, 1]; mask (B, 1, H, W), 1 = known. Returns the
    composite in [0, 1] and per-image (B,) ``psnr``, ``ssim``, ``l1`` (and ``lpips`` when given).
    """
    truth = to_unit(ground_truth)
    comp = to_unit(composite(ground_truth, output.float(), mask))
    scores = {"psnr": psnr(comp, truth), "ssim": ssim(comp, truth), "l1": l1(comp, truth)}
    if lpips is not None:
        scores["lpips"] = lpips(comp, truth)
    return comp, scores


__all__ = [
    "LPIPS",
    "PSNR_CAP",
    "composite",
    "finite_mean",
    "gaussian_window",
    "l1",
    "psnr",
    "score_composites",
    "ssim",
    "to_unit",
]
