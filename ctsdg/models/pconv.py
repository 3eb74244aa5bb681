"""Partial convolution (Liu et al., 2018) in the multi-channel form CTSDG uses, computed cheaply.

The authors' layer convolves a mask as wide as the features with an all-ones kernel to count the
known inputs under each window. Every mask that flows through CTSDG is constant across the
channels of each *source* (the stream input, or one side of a decoder concatenation), so the same
count is ``sum_s C_s * boxsum_kxk(m_s)`` over one-channel masks ``m_s``. That is exact (the counts
are small integers in float32) and skips a convolution as large as the layer itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PartialConv2d(nn.Module):
    """Partial convolution without bias over the concatenation of one or more sources.

    Each source is a feature map with a one-channel mask that holds for all of its channels.

    Args:
        in_channels: total input channels (the sum of ``source_channels``).
        out_channels: channels produced.
        kernel_size: square kernel size; padding is ``kernel_size // 2``.
        stride: convolution stride.
        source_channels: channel count of each source, in concatenation order. Defaults to one
            source with all the input channels.

    Forward:
        inputs: one (B, C_s, H, W) tensor per source.
        masks: one (B, 1, H, W) mask per source; 1 on known pixels, 0 on holes.
        Returns the features (B, C_out, H', W') and the updated mask (B, 1, H', W'), 1 wherever
        the window saw at least one known input.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        source_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        groups = tuple(source_channels) if source_channels is not None else (in_channels,)
        if sum(groups) != in_channels:
            raise ValueError(f"source_channels {groups} do not add up to in_channels={in_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.source_channels = groups
        self.window_size = float(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        # Counting kernel: one output channel, one input channel per source, weighted by the
        # source's channel count. Constant, so not part of the state dict.
        counter = torch.tensor(groups, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer(
            "mask_counter",
            counter.expand(1, -1, kernel_size, kernel_size).clone(),
            persistent=False,
        )

    def forward(self, inputs: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        ratio, new_mask = self.window_ratio(masks)
        # Masking each source before concatenating touches every feature once.
        parts = [x * m.to(x.dtype) for x, m in zip(inputs, masks, strict=True)]
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = F.conv2d(x, self.weight, None, self.stride, self.padding)
        # In place: the convolution's backward does not need its output, and a second
        # activation-sized buffer per layer is what made large inputs expensive.
        return out.mul_(ratio.to(out.dtype)), new_mask.to(masks[0].dtype)

    def window_ratio(self, masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``window / count`` (0 where count = 0) and the new mask, both float32 (B, 1, H', W').

        Counts are integers up to C_in*k*k (~9 000 here): float32 holds them exactly, bf16 only
        up to 256 and fp16 up to 2 048. So they are counted in float32 with autocast off, and
        the caller rounds only the finished ratio to the features' dtype.
        """
        mask = masks[0] if len(masks) == 1 else torch.cat(masks, dim=1)
        with torch.no_grad(), torch.autocast(mask.device.type, enabled=False):
            count = F.conv2d(
                mask.float(), self.mask_counter.float(), stride=self.stride, padding=self.padding
            )
            new_mask = count.clamp(0.0, 1.0)
            # window / count where the window saw known pixels, 0 elsewhere (the authors' clamp
            # form, which also covers fractional masks).
            ratio = (self.window_size / (count + 1e-8)) * new_mask
        return ratio, new_mask

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, source_channels={self.source_channels}"
        )


class PConvBlock(nn.Module):
    """Partial convolution, optional BatchNorm, activation: one level of a CTSDG stream.

    Args:
        in_channels, out_channels, kernel_size, stride, source_channels: as for `PartialConv2d`.
        batch_norm: follow the convolution with BatchNorm2d.
        activation: "relu" (encoder) or "leaky" (LeakyReLU 0.2, decoder).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        source_channels: Sequence[int] | None = None,
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = PartialConv2d(in_channels, out_channels, kernel_size, stride, source_channels)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        if activation == "relu":
            self.act: nn.Module = nn.ReLU()
        elif activation == "leaky":
            self.act = nn.LeakyReLU(0.2)
        else:
            raise ValueError(f"activation must be 'relu' or 'leaky', got {activation!r}")

    def forward(self, inputs: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        x, mask = self.conv(inputs, masks)
        return self.act(self.bn(x)), mask
