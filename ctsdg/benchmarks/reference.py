"""The spec's reference formulation of the two layers this project computes differently.

`ReferencePartialConv2d` counts known inputs the authors' way, convolving a mask as wide as the
features with an all-ones kernel and handing a full-width mask to the next layer;
`ReferenceRAL` runs region affinity learning one image at a time with a convolution and a
transposed convolution. Both compute the same values as the fast layers. They serve as the
baseline of ``ctsdg bench model --reference`` (the speed-up, measured in one run) and as oracles
in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ctsdg.models.cfa import RegionAffinityLearning
from ctsdg.models.generator import Generator
from ctsdg.models.pconv import PartialConv2d


class ReferencePartialConv2d(PartialConv2d):
    """`PartialConv2d` with the authors' full-width mask convolution (same weights, same values).

    Masks may be one-channel (expanded to their source's width) or already full width; the
    returned mask is full width (B, C_out, H', W'), as in the authors' code.
    """

    @classmethod
    def from_layer(cls, layer: PartialConv2d) -> ReferencePartialConv2d:
        ref = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                  layer.source_channels)  # fmt: skip
        ref.weight = layer.weight
        return ref.to(layer.weight.device)

    def forward(self, inputs: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        full = torch.cat(
            [m.expand(-1, c, -1, -1) if m.shape[1] == 1 else m
             for m, c in zip(masks, self.source_channels, strict=True)],
            dim=1,
        )  # fmt: skip
        x = torch.cat(list(inputs), dim=1)
        ones = torch.ones_like(self.weight)
        with torch.no_grad():
            count = F.conv2d(full, ones, stride=self.stride, padding=self.padding)
            new_mask = count.clamp(0.0, 1.0)
            ratio = (self.window_size / (count + 1e-8)) * new_mask
        out = F.conv2d(x * full, self.weight, None, self.stride, self.padding)
        return out * ratio, new_mask


class ReferenceRAL(RegionAffinityLearning):
    """Region affinity learning with a Python loop over the batch (the authors' formulation)."""

    def forward(self, background: Tensor, foreground: Tensor) -> Tensor:
        _, channels, height, width = background.shape
        small = (height // self.rate, width // self.rate)
        foreground = F.interpolate(foreground, size=small, mode="bilinear", align_corners=True)
        kernel = 2 * self.rate
        outputs = []
        for fg, bg in zip(foreground.split(1), background.split(1), strict=True):
            # Patches as convolution kernels: (L, C, 3, 3) and (L, C, k, k).
            patches = F.unfold(fg, 3, padding=1)[0].t().reshape(-1, channels, 3, 3)
            norms = patches.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
            scores = F.conv2d(fg, patches / norms, padding=1)  # (1, L, h, w)
            attention = torch.softmax(scores * self.softmax_scale, dim=1).clamp_min(1e-8)
            values = F.unfold(bg, kernel, padding=1, stride=self.rate)[0].t()
            values = values.reshape(-1, channels, kernel, kernel)
            out = F.conv_transpose2d(attention, values, stride=self.rate, padding=1)
            outputs.append(out / 4.0)
        return torch.cat(outputs, dim=0)


def use_reference_layers(generator: Generator) -> Generator:
    """Swap every partial convolution and the RAL of ``generator`` for the reference ones.

    The weights are shared, not copied. Returns the same generator.
    """
    for module in list(generator.modules()):
        for name, child in module.named_children():
            if type(child) is PartialConv2d:
                setattr(module, name, ReferencePartialConv2d.from_layer(child))
            elif type(child) is RegionAffinityLearning:
                setattr(module, name, ReferenceRAL(child.rate, child.softmax_scale))
    return generator


def reference_copy(generator: Generator) -> Generator:
    """An independent copy of ``generator`` running the reference layers."""
    copy = Generator(width=generator.width, align_corners=generator.align_corners)
    copy.load_state_dict(generator.state_dict())
    copy.train(generator.training)
    return use_reference_layers(copy.to(next(generator.parameters()).device))


__all__ = ["ReferencePartialConv2d", "ReferenceRAL", "reference_copy", "use_reference_layers"]
