"""Contextual Feature Aggregation (CFA): region affinity learning, then multi-scale aggregation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RegionAffinityLearning(nn.Module):
    """Patch attention of every position over the image's own patches (RAL, rate 2).

    The foreground is downsampled by ``rate``; its 3x3 patches (zero padded) are L2-normalised and
    scored against every position; the softmax of ``softmax_scale * score`` weights the
    background's ``2*rate`` x ``2*rate`` patches (stride ``rate``), which are folded back to full
    resolution. Written as two batched matrix products instead of per-image convolutions, so
    each image attends only to its own patches without a Python loop over the batch.

    Forward: background, foreground (B, C, H, W), H and W even -> (B, C, H, W).
    """

    def __init__(self, rate: int = 2, softmax_scale: float = 10.0) -> None:
        super().__init__()
        self.rate = rate
        self.softmax_scale = softmax_scale

    def forward(self, background: Tensor, foreground: Tensor) -> Tensor:
        _, _, height, width = background.shape
        small = (height // self.rate, width // self.rate)
        foreground = F.interpolate(foreground, size=small, mode="bilinear", align_corners=True)
        # Foreground patches as columns: (B, C*3*3, L), L = (H/rate)*(W/rate).
        patches = F.unfold(foreground, 3, padding=1)
        norms = torch.linalg.vector_norm(patches, dim=1, keepdim=True).clamp_min(1e-4)
        # scores[b, p, q]: position p against normalised patch q, times the softmax scale (folded
        # into the (C*9, L) operand instead of an extra pass over the (L, L) scores).
        scores = torch.bmm(patches.transpose(1, 2), patches * (self.softmax_scale / norms))
        attention = torch.softmax(scores, dim=-1).clamp_min(1e-8)  # over patches q
        # Background patches as columns: (B, C*k*k, L) with k = 2*rate, stride rate, padding 1.
        kernel = 2 * self.rate
        values = F.unfold(background, kernel, padding=1, stride=self.rate)
        # Transposed convolution of the attention with the patches = fold(values @ attention^T).
        columns = torch.bmm(values, attention.transpose(1, 2))
        out = F.fold(columns, (height, width), kernel, padding=1, stride=self.rate)
        return out / 4.0


class MultiScaleAggregation(nn.Module):
    """MSFA: dilated 3x3 branches (dilation 1, 2, 4, 8) mixed by per-pixel softmax weights.

    Forward: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.weight_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.weight_out = nn.Conv2d(channels, len(dilations), 1)

    def forward(self, x: Tensor) -> Tensor:
        weights = F.relu(self.weight_out(F.relu(self.weight_conv(x))))
        weights = torch.softmax(weights, dim=1)  # (B, n_branches, H, W)
        out = 0
        for i, branch in enumerate(self.branches):
            out = out + weights[:, i : i + 1] * F.relu(branch(x))
        return out


class CFA(nn.Module):
    """RAL on the features (background = foreground), then MSFA.

    Forward: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ral = RegionAffinityLearning(rate=2, softmax_scale=10.0)
        self.msfa = MultiScaleAggregation(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.msfa(self.ral(x, x))
