"""Weight initialisation of the authors' code: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm."""

from __future__ import annotations

from torch import nn

from ctsdg.models.pconv import PartialConv2d


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise every convolution and BatchNorm inside ``module`` in place.

    Convolution weights (``weight``, or ``weight_orig`` under spectral norm) ~ N(0, std), biases 0;
    BatchNorm weights ~ N(1, std), biases 0. Other parameters (the Bi-GFF gammas) are left alone.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, PartialConv2d)):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
