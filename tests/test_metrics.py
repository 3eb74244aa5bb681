"""Metrics: PSNR / SSIM / L1 against scikit-image on photographs; LPIPS against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ctsdg.errors import InputError
from ctsdg.metrics import LPIPS, PSNR_CAP, composite, l1, psnr, ssim, to_unit


def photographs(size: int = 160) -> np.ndarray:
    """(N, size, size, 3) float64 in [0, 1]: crops of real photographs."""
    crops = [
        data.astronaut()[40 : 40 + size, 180 : 180 + size],
        data.coffee()[100 : 100 + size, 200 : 200 + size],
        data.chelsea()[50 : 50 + size, 100 : 100 + size],
        data.rocket()[100 : 100 + size, 200 : 200 + size],
    ]
    return np.stack(crops).astype(np.float64) / 255


def corrupted(clean: np.ndarray, seed: int = 0) -> np.ndarray:
    """Inpainting-like results: a hole filled with a blurred, noisy, colour-shifted guess."""
    rng = np.random.default_rng(seed)
    n, h, w, _ = clean.shape
    out = clean.copy()
    for i in range(n):
        top, left = rng.integers(10, h // 2, size=2)
        hole = np.zeros((h, w), bool)
        hole[top : top + h // 3, left : left + w // 3] = True
        blurred = F.avg_pool2d(
            torch.from_numpy(clean[i]).permute(2, 0, 1)[None], 9, stride=1, padding=4
        )[0].permute(1, 2, 0)
        guess = blurred.numpy() + rng.normal(0, 0.03, clean[i].shape) + [0.02, -0.01, 0.03]
        out[i][hole] = guess[hole]
        out[i] += rng.normal(0, 0.004, clean[i].shape)  # a little everywhere (JPEG-like)
    # through float32, as the evaluation feeds them
    return np.clip(out, 0, 1).astype(np.float32).astype(np.float64)


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float()


def test_psnr_and_ssim_match_skimage_on_photographs() -> None:
    clean = photographs().astype(np.float32).astype(np.float64)
    noisy = corrupted(clean)
    ours_psnr = psnr(nchw(noisy), nchw(clean))  # one batched call
    ours_ssim = ssim(nchw(noisy), nchw(clean))
    assert ours_psnr.shape == ours_ssim.shape == (4,)
    for i in range(4):
        ref_psnr = peak_signal_noise_ratio(clean[i], noisy[i], data_range=1)
        ref_ssim = structural_similarity(
            noisy[i],
            clean[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
            channel_axis=-1,
        )
        assert ours_psnr[i].item() == pytest.approx(ref_psnr, rel=1e-5)
        assert ours_ssim[i].item() == pytest.approx(ref_ssim, rel=1e-4)
        assert 0.5 < ref_ssim < 0.999  # a realistic, not a degenerate, case


def test_metrics_are_per_image_and_batch_independent() -> None:
    clean = nchw(photographs(96))
    noisy = nchw(corrupted(photographs(96), seed=3))
    batched = torch.stack((psnr(noisy, clean), ssim(noisy, clean), l1(noisy, clean)))
    single = torch.stack(
        [
            torch.cat((psnr(n, c), ssim(n, c), l1(n, c)))
            for n, c in zip(noisy.split(1), clean.split(1), strict=True)
        ],
        dim=1,
    )
    torch.testing.assert_close(batched, single, rtol=1e-6, atol=1e-7)


def test_exact_match_scores_and_l1() -> None:
    clean = nchw(photographs(64))
    assert torch.all(psnr(clean, clean) == PSNR_CAP)
    torch.testing.assert_close(ssim(clean, clean), torch.ones(4))
    shifted = (clean + 0.1).clamp(0, 1)
    expected = (shifted - clean).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(l1(shifted, clean), expected)


def test_to_unit_and_composite() -> None:
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.2])
    torch.testing.assert_close(to_unit(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    gt, out = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2, :] = 0  # half hole
    comp = composite(gt, out, mask)
    assert comp[..., :2, :].eq(1).all() and comp[..., 2:, :].eq(0).all()


def test_ssim_rejects_images_smaller_than_the_window() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------- LPIPS

VGG_LAYERS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # conv indices in torchvision
VGG_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory: pytest.TempPathFactory):
    """Random weights saved under torchvision's and LPIPS's key names."""
    g = torch.Generator().manual_seed(0)
    vgg, channels = {}, 3
    for index, width in zip(VGG_LAYERS, VGG_WIDTHS, strict=True):
        vgg[f"features.{index}.weight"] = torch.randn(width, channels, 3, 3, generator=g) * 0.05
        vgg[f"features.{index}.bias"] = torch.randn(width, generator=g) * 0.01
        channels = width
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # present in the real file, ignored
    lin = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
        for i, c in enumerate((64, 128, 256, 512, 512))
    }
    folder = tmp_path_factory.mktemp("lpips")
    torch.save(vgg, folder / "vgg16.pth")
    torch.save(lin, folder / "lin.pth")
    return folder / "lin.pth", folder / "vgg16.pth", vgg, lin


def reference_lpips(x: torch.Tensor, y: torch.Tensor, vgg: dict, lin: dict) -> torch.Tensor:
    """LPIPS written out layer by layer from the published description."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    taps = {3: 0, 8: 1, 15: 2, 22: 3, 29: 4}  # ReLU indices of relu1_2 ... relu5_3
    pools = {4, 9, 16, 23}
    total = torch.zeros(x.shape[0])
    a, b = (x * 2 - 1 - shift) / scale, (y * 2 - 1 - shift) / scale
    for i in range(30):
        if i in pools:
            a, b = F.max_pool2d(a, 2), F.max_pool2d(b, 2)
        elif f"features.{i}.weight" in vgg:
            w, bias = vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"]
            a, b = F.conv2d(a, w, bias, padding=1), F.conv2d(b, w, bias, padding=1)
        else:
            a, b = F.relu(a), F.relu(b)
        if i in taps:
            na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            weight = lin[f"lin{taps[i]}.model.1.weight"]
            total += F.conv2d((na - nb) ** 2, weight).mean(dim=(1, 2, 3))
    return total


def test_lpips_matches_a_layer_by_layer_reference(lpips_files) -> None:
    lin_path, vgg_path, vgg, lin = lpips_files
    metric = LPIPS.from_files(lin_path, vgg_path)
    clean = nchw(photographs(64))
    noisy = nchw(corrupted(photographs(64), seed=1))
    with torch.no_grad():
        ours = metric(noisy, clean)
        expected = reference_lpips(noisy, clean, vgg, lin)
        same = metric(clean, clean)
        last = {"memory_format": torch.channels_last}  # as eval passes them on CPU
        from_channels_last = metric(noisy.contiguous(**last), clean.contiguous(**last))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(from_channels_last, ours, rtol=1e-5, atol=1e-7)
    assert torch.all(ours > 0)
    torch.testing.assert_close(same, torch.zeros(4))


def test_lpips_refuses_wrong_files(lpips_files, tmp_path) -> None:
    lin_path, vgg_path, _, _ = lpips_files
    with pytest.raises(InputError, match=r"missing\.pth: LPIPS"):
        LPIPS.from_files(tmp_path / "missing.pth", vgg_path)
    with pytest.raises(InputError, match=r"lin\.pth: not a VGG16 state dict"):
        LPIPS.from_files(lin_path, lin_path)
    with pytest.raises(InputError, match=r"vgg16\.pth: not LPIPS VGG linear layers"):
        LPIPS.from_files(vgg_path, vgg_path)
