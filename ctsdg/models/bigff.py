"""Bi-directional Gated Feature Fusion (Bi-GFF): texture and structure features exchange detail."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BiGFF(nn.Module):
    """Gated exchange between texture features t and structure features s.

    ``g_st = sigmoid(structure_gate([t, s]))``, ``t' = t + texture_gamma * g_st * s``;
    ``g_ts = sigmoid(texture_gate([t, s]))``, ``s' = s + structure_gamma * g_ts * t'`` (the
    updated t'). Both gammas start at 0, so the block starts as the identity.

    Args:
        channels: channels of each input (64 in the published model).

    Forward: t, s (B, C, H, W) -> cat(t', s') (B, 2C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.structure_gate = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.texture_gate = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.structure_gamma = nn.Parameter(torch.zeros(1))
        self.texture_gamma = nn.Parameter(torch.zeros(1))

    def forward(self, texture: Tensor, structure: Tensor) -> Tensor:
        energy = torch.cat((texture, structure), dim=1)
        gate_st = torch.sigmoid(self.structure_gate(energy))
        gate_ts = torch.sigmoid(self.texture_gate(energy))
        texture = texture + self.texture_gamma * (gate_st * structure)
        structure = structure + self.structure_gamma * (gate_ts * texture)
        return torch.cat((texture, structure), dim=1)
