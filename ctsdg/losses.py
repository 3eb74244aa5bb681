"""CTSDG losses. Each returns ``(total, terms)``: the weighted sum and its unweighted parts.

Conventions: images in [-1, 1]; masks 1 on known pixels, 0 on holes; edges and predictions in
[0, 1]. All L1 and BCE terms are plain means. BCE terms run in float32 even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctsdg.models.generator import GeneratorOutput


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss terms (the paper's and the MindSpore port's values)."""

    hole: float = 60.0
    valid: float = 10.0
    perceptual: float = 0.1
    style: float = 250.0
    adversarial: float = 0.1
    intermediate: float = 1.0


def _bce(pred: Tensor, target: Tensor) -> Tensor:
    with torch.autocast(pred.device.type, enabled=False):
        return F.binary_cross_entropy(pred.float(), target.float())


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return F.l1_loss(a.float(), b.float())


def gram_matrix(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C): ``F F^T / (C H W)``, in float32."""
    b, c, h, w = features.shape
    f = features.float().reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def generator_loss_terms(
    out: GeneratorOutput,
    ground_truth: Tensor,
    mask: Tensor,
    edge: Tensor,
    fake_pred: Tensor,
    fake_edge_pred: Tensor,
    features_output: Sequence[Tensor],
    features_comp: Sequence[Tensor],
    features_truth: Sequence[Tensor],
) -> dict[str, Tensor]:
    """The six unweighted generator terms, given the loss network's features.

    out: the generator's output for the batch; ground_truth (B, 3, H, W); mask, edge (B, 1, H, W);
    fake_pred (B, 2, h, w) and fake_edge_pred (B, 1, H, W): the discriminator on ``out.output``;
    features_*: the VGG features of the output, the composite and the ground truth.
    """
    hole = 1 - mask
    perceptual = sum(
        _l1(fo, ft) + _l1(fc, ft)
        for fo, fc, ft in zip(features_output, features_comp, features_truth, strict=True)
    )
    style = sum(
        _l1(gram_matrix(fo), gram_matrix(ft)) + _l1(gram_matrix(fc), gram_matrix(ft))
        for fo, fc, ft in zip(features_output, features_comp, features_truth, strict=True)
    )
    return {
        "hole": _l1(hole * out.output, hole * ground_truth),
        "valid": _l1(mask * out.output, mask * ground_truth),
        "perceptual": perceptual,
        "style": style,
        "adversarial": _bce(fake_pred, torch.ones_like(fake_pred)) + _bce(fake_edge_pred, edge),
        "intermediate": _bce(out.projected_edge, edge) + _l1(out.projected_image, ground_truth),
    }


def weighted_total(terms: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """``sum(weight * term)`` over the generator terms."""
    return sum(getattr(weights, name) * value for name, value in terms.items())


def discriminator_loss(
    real_pred: Tensor,
    fake_pred: Tensor,
    real_edge_pred: Tensor,
    fake_edge_pred: Tensor,
    edge: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``BCE(real, 1) + BCE(fake, 0) + BCE(edge_pred(real), edge) + BCE(edge_pred(fake), edge)``.

    The fake predictions come from the discriminator on the detached generator output.
    """
    terms = {
        "real": _bce(real_pred, torch.ones_like(real_pred)),
        "fake": _bce(fake_pred, torch.zeros_like(fake_pred)),
        "real_edge": _bce(real_edge_pred, edge),
        "fake_edge": _bce(fake_edge_pred, edge),
    }
    return sum(terms.values()), terms


class GeneratorLoss(nn.Module):
    """The weighted generator loss, owning the frozen VGG16 loss network.

    Args:
        vgg: the feature extractor (`ctsdg.models.vgg.VGG16Features`).
        weights: the term weights.

    Forward: as `generator_loss_terms` without the features; returns ``(total, terms)``.
    """

    def __init__(self, vgg: nn.Module, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.vgg = vgg
        self.weights = weights or LossWeights()

    def forward(
        self,
        out: GeneratorOutput,
        ground_truth: Tensor,
        mask: Tensor,
        edge: Tensor,
        fake_pred: Tensor,
        fake_edge_pred: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        comp = ground_truth * mask + out.output * (1 - mask)
        with torch.no_grad():
            features_truth = self.vgg(ground_truth)
        # One pass for the two images that need gradients.
        features = self.vgg(torch.cat((out.output, comp), dim=0))
        features_output, features_comp = zip(*(f.chunk(2, dim=0) for f in features), strict=True)
        terms = generator_loss_terms(
            out,
            ground_truth,
            mask,
            edge,
            fake_pred,
            fake_edge_pred,
            features_output,
            features_comp,
            features_truth,
        )
        return weighted_total(terms, self.weights), terms
