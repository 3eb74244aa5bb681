"""Frozen VGG16 feature extractor for the perceptual and style losses (pool1, pool2, pool3)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ctsdg.errors import InputError

log = logging.getLogger(__name__)

# torchvision's VGG16 "D" configuration up to pool3; numbers are conv widths, "M" is max-pool.
# Building `features` with the same indices lets vgg16-397923af.pth load under its own keys.
_VGG16_TO_POOL3 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
_SLICES = ((0, 5), (5, 10), (10, 17))  # features[:5] -> pool1, [5:10] -> pool2, [10:17] -> pool3


class VGG16Features(nn.Module):
    """VGG16 layers up to pool3, returning the three pooled feature maps. Frozen, eval mode.

    Both reference codes feed [-1, 1] images without ImageNet normalisation; so does this.

    Forward: (B, 3, H, W) -> [(B, 64, H/2, W/2), (B, 128, H/4, W/4), (B, 256, H/8, W/8)].
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_TO_POOL3:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        # Always frozen: the loss network never uses training behaviour.
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for start, stop in _SLICES:
            for layer in self.features[start:stop]:
                x = layer(x)
            out.append(x)
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> VGG16Features:
        """Load torchvision's ``vgg16-397923af.pth`` (or any VGG16 state dict) as it is.

        Keys past pool3 (``features.17`` on, ``classifier.*``) are ignored. Raises InputError for
        a missing file or a file without the VGG16 convolution weights.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"{path}: VGG16 weights not found; pass torchvision's vgg16-397923af.pth "
                "(pretrained_vgg=PATH), or pretrained_vgg=random for tests and the demo"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(f"{path}: not a readable PyTorch VGG16 state dict ({err})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model = cls()
        wanted = model.state_dict()
        if not isinstance(state, dict) or not all(k in state for k in wanted):
            missing = [k for k in wanted if not isinstance(state, dict) or k not in state]
            raise InputError(
                f"{path}: not a VGG16 state dict; missing {', '.join(missing[:4])}"
                + (" ..." if len(missing) > 4 else "")
            )
        for key, tensor in wanted.items():
            if tuple(state[key].shape) != tuple(tensor.shape):
                raise InputError(
                    f"{path}: {key} has shape {tuple(state[key].shape)}, "
                    f"expected {tuple(tensor.shape)} (VGG16)"
                )
        model.load_state_dict({k: state[k] for k in wanted})
        return model

    @classmethod
    def random(cls, seed: int = 0) -> VGG16Features:
        """Randomly initialised extractor, for tests and the demo only (logged as such)."""
        log.warning(
            "VGG16 loss network has RANDOM weights (pretrained_vgg=random): "
            "perceptual and style losses are not the paper's"
        )
        model = cls()
        generator = torch.Generator().manual_seed(seed)
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                with torch.no_grad():
                    m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                    m.bias.zero_()
        return model
