"""The CTSDG discriminator: spectral-norm texture and structure branches and an edge detector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from ctsdg.models.init import init_weights

BRANCH_WIDTHS = (1, 2, 4, 8)  # multiples of the base width
BRANCH_STRIDES = (2, 2, 2, 1, 1)


class PatchBranch(nn.Module):
    """Five 4x4 spectral-norm convolutions (no bias), LeakyReLU 0.2 between, sigmoid at the end.

    Forward: (B, C_in, H, W) -> (B, 1, H/8 - 2, W/8 - 2) in (0, 1); 256 x 256 gives 30 x 30.
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        channels = [in_channels] + [width * m for m in BRANCH_WIDTHS] + [1]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=s, padding=1, bias=False))
            for c_in, c_out, s in zip(channels[:-1], channels[1:], BRANCH_STRIDES, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs[:-1]:
            x = F.leaky_relu(conv(x), 0.2)
        return torch.sigmoid(self.convs[-1](x))


class EdgeDetector(nn.Module):
    """Predicts an edge map from an RGB image: conv-BN-ReLU, a residual block, 1x1 conv, sigmoid.

    Forward: (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) in (0, 1).
    """

    def __init__(self, in_channels: int = 3, channels: int = 16) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.bn_in = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv_out = nn.Conv2d(channels, 1, 1)

    def forward(self, image: Tensor) -> Tensor:
        x = F.relu(self.bn_in(self.conv_in(image)))
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return torch.sigmoid(self.conv_out(F.relu(x + y)))


class Discriminator(nn.Module):
    """CTSDG discriminator (5.5 M parameters at width 64).

    Args:
        width: base channel count of the two patch branches (64 in the published model).

    Forward:
        image: (B, 3, H, W) in [-1, 1], real or generated.
        gray: (B, 1, H, W) in [0, 1]; edge: (B, 1, H, W) in {0, 1} (the ground truth's).
        real: the structure branch judges ``cat(edge, gray)`` when True, and
            ``cat(edge_detector(image), gray)`` when False.
        Returns ``(predictions (B, 2, h, w): texture then structure, edge_pred (B, 1, H, W))``.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.texture_branch = PatchBranch(3, width)
        self.structure_branch = PatchBranch(2, width)
        self.edge_detector = EdgeDetector(3)
        init_weights(self)

    def forward(
        self, image: Tensor, gray: Tensor, edge: Tensor, real: bool
    ) -> tuple[Tensor, Tensor]:
        texture_pred = self.texture_branch(image)
        edge_pred = self.edge_detector(image)
        structure_in = torch.cat((edge if real else edge_pred, gray), dim=1)
        structure_pred = self.structure_branch(structure_in)
        return torch.cat((texture_pred, structure_pred), dim=1), edge_pred
