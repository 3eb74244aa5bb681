"""Contextual Feature Aggregation (CFA): region affinity learning, then multi-scale aggregation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Largest attention-score block, in elements (B x query rows x L); see `RegionAffinityLearning`.
#: 2**23 (32 MiB in float32) is the largest that keeps a 512 x 512 forward pass under 1.5 GB of
#: peak RSS (2**24: 1.59 GB, 2**23 and 2**22: 1.40 GB); smaller blocks make the matrix products
#: less efficient (2**22: 1.6x the attention time of 2**24 at 512 x 512). docs/benchmarks.md.
BLOCK_ELEMENTS = 1 << 23


class RegionAffinityLearning(nn.Module):
    """Patch attention of every position over the image's own patches (RAL, rate 2).

    The foreground is downsampled by ``rate``; its 3x3 patches (zero padded) are L2-normalised and
    scored against every position; the softmax of ``softmax_scale * score`` weights the
    background's ``2*rate`` x ``2*rate`` patches (stride ``rate``), which are folded back to full
    resolution. Written as batched matrix products instead of per-image convolutions, so each
    image attends only to its own patches without a Python loop over the batch.

    The (L, L) attention map (L = (H/rate)(W/rate) positions) is never held whole: query
    positions are taken ``block_elements // (B * L)`` at a time, so memory grows linearly with
    the image area (a 512 x 512 input has L = 16 384: a whole map would be 1 GiB per image).
    Every query row sees all L keys, so the result is the unblocked one up to float rounding.

    Args:
        rate: downsampling of the foreground (2 in CTSDG).
        softmax_scale: multiplies the scores before the softmax (10 in CTSDG).
        block_elements: largest score block, in elements, (B, rows, L) (default `BLOCK_ELEMENTS`).
        float32_scores: under autocast, compute the scores and the softmax in float32 (the
            weighted sum of the background patches still runs in the autocast dtype). Off by
            default: on eight scikit-image photographs it moved the mean bf16-vs-fp32 output
            agreement from 40.0 to 40.2 dB and PSNR against the ground truth by < 0.004 dB,
            and cost ~20 % of the attention's time.

    Forward: background, foreground (B, C, H, W), H and W even -> (B, C, H, W).
    """

    def __init__(
        self,
        rate: int = 2,
        softmax_scale: float = 10.0,
        block_elements: int | None = None,
        float32_scores: bool = False,
    ) -> None:
        super().__init__()
        self.rate = rate
        self.softmax_scale = softmax_scale
        self.block_elements = BLOCK_ELEMENTS if block_elements is None else block_elements
        self.float32_scores = float32_scores

    def forward(self, background: Tensor, foreground: Tensor) -> Tensor:
        batch, _, height, width = background.shape
        small = (height // self.rate, width // self.rate)
        foreground = F.interpolate(foreground, size=small, mode="bilinear", align_corners=True)
        # Foreground patches as columns: (B, C*3*3, L), L = (H/rate)*(W/rate).
        patches = F.unfold(foreground, 3, padding=1)
        norms = torch.linalg.vector_norm(patches, dim=1, keepdim=True).clamp_min(1e-4)
        # Keys: normalised patches times the softmax scale (folded into the (C*9, L) operand
        # instead of an extra pass over the scores). Queries: the raw patches, rows (B, L, C*9).
        keys = patches * (self.softmax_scale / norms)
        queries = patches.transpose(1, 2)
        # Background patches as columns: (B, C*k*k, L) with k = 2*rate, stride rate, padding 1.
        kernel = 2 * self.rate
        values = F.unfold(background, kernel, padding=1, stride=self.rate)
        length = queries.shape[1]
        # A traced graph (ONNX export) keeps the batch dynamic but the loop below unrolled: the
        # block bounds must not follow the batch, so they are those of batch 1 there.
        per_row = length if torch.jit.is_tracing() else batch * length
        rows = max(1, self.block_elements // per_row)
        # Transposed convolution of the attention with the patches = fold(values @ attention^T),
        # one block of query positions (columns of the result) at a time.
        blocks = []
        workspace = None
        if length > rows and _plain_inference(queries):
            workspace = queries.new_empty((batch, rows, length))  # every full block's scores
        for start in range(0, length, rows):
            attention = self._attention(queries[:, start : start + rows], keys, workspace)
            blocks.append(torch.bmm(values, attention.transpose(1, 2)))  # (B, C*k*k, rows)
        columns = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
        out = F.fold(columns, (height, width), kernel, padding=1, stride=self.rate)
        return out / 4.0

    def _attention(self, queries: Tensor, keys: Tensor, workspace: Tensor | None = None) -> Tensor:
        """Softmax over patches of the scores: (B, rows, D) x (B, D, L) -> (B, rows, L).

        With a ``workspace`` of this block's shape the scores are written into it and the softmax
        runs in place: the same kernels and values, and one score buffer for all the blocks
        instead of two fresh ones per block (on CPU, fresh buffers of this size are page faults).
        """
        if workspace is not None and workspace.shape == (*queries.shape[:2], keys.shape[2]):
            scores = torch.bmm(queries, keys, out=workspace)
            torch.ops.aten._softmax.out(scores, -1, False, out=scores)
            return scores.clamp_min_(1e-8)
        if self.float32_scores and torch.is_autocast_enabled(queries.device.type):
            # bf16 keeps 8 significant bits: a score near 10 is rounded by up to 0.03, which
            # moves its softmax weight by up to 3 %.
            with torch.autocast(queries.device.type, enabled=False):
                return _clamped_softmax(torch.bmm(queries.float(), keys.float()))
        return _clamped_softmax(torch.bmm(queries, keys))


def _plain_inference(x: Tensor) -> bool:
    """Eager, without gradients or autocast: where the attention may reuse one score buffer."""
    return not (
        torch.is_grad_enabled()
        or torch.is_autocast_enabled(x.device.type)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    )


def _clamped_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last axis, clamped below at 1e-8 (the authors' form)."""
    attention = torch.softmax(scores, dim=-1)
    if torch.is_grad_enabled() and attention.requires_grad:
        return attention.clamp_min(1e-8)  # softmax's backward needs its output intact
    return attention.clamp_min_(1e-8)  # inference: one block buffer fewer


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
