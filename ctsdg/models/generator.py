"""The CTSDG generator: two coupled partial-convolution U-Nets, Bi-GFF, CFA and the output layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsdg.errors import InputError, shown
from ctsdg.models.bigff import BiGFF
from ctsdg.models.cfa import CFA
from ctsdg.models.init import init_weights
from ctsdg.models.pconv import PConvBlock

ENCODER_KERNELS = (7, 5, 5, 3, 3, 3, 3)
ENCODER_WIDTHS = (1, 2, 4, 8, 8, 8, 8)  # multiples of the base width, shallow to deep
DECODER_WIDTHS = (8, 8, 8, 4, 2, 1, 1)  # deep to shallow
SIZE_MULTIPLE = 128  # seven stride-2 levels and the attention's halving: input sides divide by it
#: The widest generator a checkpoint may ask for (the published one is 64): twice that is about
#: 200 M parameters, so a file's metadata cannot make ctsdg allocate without bound.
MAX_WIDTH = 128


@dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild a `Generator` (and its discriminator) from a file.

    Attributes:
        width: base channel count (64 for the published model).
        align_corners: the generator's upsampling variant (True for MindSpore-trained weights).
    """

    width: int = 64
    align_corners: bool = False

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> ModelConfig:
        """From a checkpoint's ``model`` entry, which comes from a file and is untrusted: each
        value is checked for its type and bounded (`MAX_WIDTH`) before anything is built.
        InputError naming ``source`` and the key otherwise."""
        if not isinstance(data, Mapping):
            raise InputError(
                f"{source}: model config must be a mapping with width and align_corners, got "
                f"{shown(data)}"
            )
        missing = [k for k in ("width", "align_corners") if k not in data]
        if missing:
            raise InputError(f"{source}: model config lacks {', '.join(missing)}")
        width, align_corners = data["width"], data["align_corners"]
        if type(width) is not int or not 1 <= width <= MAX_WIDTH:
            raise InputError(
                f"{source}: model config width must be an integer from 1 to {MAX_WIDTH}, got "
                f"{shown(width)}"
            )
        if type(align_corners) is not bool:
            raise InputError(
                f"{source}: model config align_corners must be true or false, got "
                f"{shown(align_corners)}"
            )
        return cls(width=width, align_corners=align_corners)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GeneratorOutput(NamedTuple):
    """What the generator returns, all (B, C, H, W) at input resolution."""

    output: Tensor  # (B, 3, H, W) in [-1, 1]: the inpainted image
    projected_image: Tensor  # (B, 3, H, W) in [-1, 1]: texture-stream deep supervision
    projected_edge: Tensor  # (B, 1, H, W) in [0, 1]: structure-stream edge prediction


class ResidualBlock(nn.Module):
    """conv3x3 (C -> C/4) BN ReLU conv3x3 (C/4 -> C) BN, plus the input, ReLU. No conv bias."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class Projection(nn.Module):
    """Deep supervision head: residual block, then 1x1 conv to an image (tanh) or edge (sigmoid)."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = ResidualBlock(channels, max(channels // 4, 1))
        self.out = nn.Conv2d(channels, out_channels, 1)
        self.squash = torch.tanh if out_channels == 3 else torch.sigmoid

    def forward(self, x: Tensor) -> Tensor:
        return self.squash(self.out(self.block(x)))


def _stream_encoder(in_channels: int, width: int) -> nn.ModuleList:
    levels, channels = [], in_channels
    for i, (kernel, mult) in enumerate(zip(ENCODER_KERNELS, ENCODER_WIDTHS, strict=True)):
        levels.append(PConvBlock(channels, width * mult, kernel, stride=2, batch_norm=i > 0))
        channels = width * mult
    return nn.ModuleList(levels)


def _stream_decoder(in_channels: int, width: int) -> nn.ModuleList:
    # Skip connections deep to shallow: encoder levels 6..1, then the stream input (level 0).
    skips = [width * m for m in reversed(ENCODER_WIDTHS[:-1])] + [in_channels]
    levels, channels = [], width * ENCODER_WIDTHS[-1]
    for skip, mult in zip(skips, DECODER_WIDTHS, strict=True):
        levels.append(
            PConvBlock(
                channels + skip,
                width * mult,
                3,
                source_channels=(channels, skip),
                activation="leaky",
            )
        )
        channels = width * mult
    return nn.ModuleList(levels)


class Generator(nn.Module):
    """CTSDG generator (52.1 M parameters at width 64).

    Args:
        width: base channel count (64 in the published model); tests use small widths.
        align_corners: the x2 bilinear upsamplings' ``align_corners``. False is the authors'
            model; True is the MindSpore model-zoo port's variant, which its checkpoints need.

    Forward:
        image: (B, 3, H, W) in [-1, 1], the image with holes (values under holes are ignored).
        structure: (B, 2, H, W), ``cat(edge * mask, gray * mask)``; edge in {0, 1}, gray in [0, 1].
        mask: (B, 1, H, W), 1 on known pixels and 0 on holes.
        H and W must be multiples of 128. Returns a `GeneratorOutput`.
    """

    def __init__(self, width: int = 64, align_corners: bool = False) -> None:
        super().__init__()
        self.width = width
        self.align_corners = align_corners
        self.texture_encoder = _stream_encoder(3, width)
        self.structure_encoder = _stream_encoder(2, width)
        self.texture_decoder = _stream_decoder(3, width)
        self.structure_decoder = _stream_decoder(2, width)
        self.texture_projection = Projection(width, 3)
        self.structure_projection = Projection(width, 1)
        self.bigff = BiGFF(width)
        self.fusion_down = nn.Conv2d(2 * width, width, 3, stride=2, padding=1)
        self.cfa = CFA(width)
        self.fusion_attention = nn.Conv2d(2 * width, width, 3, padding=1)
        self.out_conv = nn.Conv2d(3 * width, 3, 1)
        init_weights(self)

    def forward(self, image: Tensor, structure: Tensor, mask: Tensor) -> GeneratorOutput:
        height, width = image.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(
                f"generator input is {height}x{width}; height and width must be multiples of "
                f"{SIZE_MULTIPLE}"
            )
        texture_skips = self._encode(self.texture_encoder, image, mask)
        structure_skips = self._encode(self.structure_encoder, structure, mask)
        # Each decoder starts from the other stream's bottleneck.
        texture = self._decode(self.texture_decoder, structure_skips[-1], texture_skips[:-1])
        structure = self._decode(self.structure_decoder, texture_skips[-1], structure_skips[:-1])
        projected_image = self.texture_projection(texture)  # (B, 3, H, W)
        projected_edge = self.structure_projection(structure)  # (B, 1, H, W)

        fused = self.bigff(texture, structure)  # (B, 2w, H, W)
        x = F.leaky_relu(self.fusion_down(fused), 0.2)  # (B, w, H/2, W/2)
        x = F.leaky_relu(self.fusion_attention(torch.cat((x, self.cfa(x)), dim=1)), 0.2)
        x = self._upsample(x)  # (B, w, H, W)
        output = torch.tanh(self.out_conv(torch.cat((x, fused), dim=1)))
        return GeneratorOutput(output, projected_image, projected_edge)

    @staticmethod
    def _encode(encoder: nn.ModuleList, x: Tensor, mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        skips = [(x, mask)]
        for level in encoder:
            x, mask = level([x], [mask])
            skips.append((x, mask))
        return skips

    def _decode(
        self,
        decoder: nn.ModuleList,
        bottleneck: tuple[Tensor, Tensor],
        skips: list[tuple[Tensor, Tensor]],
    ) -> Tensor:
        x, mask = bottleneck
        for (skip, skip_mask), level in zip(reversed(skips), decoder, strict=True):
            x = self._upsample(x)
            mask = F.interpolate(mask, scale_factor=2.0, mode="nearest")
            x, mask = level([x, skip], [mask, skip_mask])
        return x

    def _upsample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=self.align_corners)


def generator_inputs(
    image: Tensor, edge: Tensor, gray: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The generator's three inputs from an image, its structure maps and a mask (1 = known).

    image (B, 3, H, W) in [-1, 1]; edge, gray, mask (B, 1, H, W). Returns
    ``(image * mask, cat(edge * mask, gray * mask), mask)``.
    """
    structure = torch.cat((edge * mask, gray * mask), dim=1)
    return image * mask, structure, mask


def example_batch(
    batch: int, size: int, device: str | torch.device = "cpu", seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Deterministic plausible ``(image, edge, gray, mask)`` for checks and benchmarks.

    Random image in [-1, 1], sparse edges, gray in [0, 1]; the mask (1 = known) has a
    rectangular hole and scattered hole pixels.
    """
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    edge = (torch.rand(batch, 1, size, size, generator=g) > 0.9).float()
    gray = torch.rand(batch, 1, size, size, generator=g)
    mask = (torch.rand(batch, 1, size, size, generator=g) > 0.1).float()
    mask[..., size // 4 : size // 2, size // 3 : 3 * size // 4] = 0
    return image.to(device), edge.to(device), gray.to(device), mask.to(device)
