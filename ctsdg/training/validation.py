"""Validation during training: PSNR / SSIM of the composites on the ``val`` split.

Scored by `ctsdg.metrics.score_composites`, the function ``ctsdg eval`` uses, and sharded over
ranks. The networks' train/eval modes are put back exactly as they were (the finetune stage's
frozen BatchNorm layers stay frozen); learning rates are not touched.
"""

from __future__ import annotations

import torch

from ctsdg.data import build_loader, dataset_from_config
from ctsdg.data.loader import worker_count
from ctsdg.metrics import score_composites
from ctsdg.models import generator_inputs
from ctsdg.runtime import autocast
from ctsdg.training import distributed
from ctsdg.training.monitor import Monitor
from ctsdg.training.steps import TrainState


def validate(state: TrainState, iteration: int, monitor: Monitor) -> tuple[float, float]:
    """Mean PSNR and SSIM over ``val_samples`` images of the ``val`` split; logged and returned."""
    config, ctx, generator = state.config, state.ctx, state.raw_generator
    dataset = dataset_from_config(config, "val", limit=config.val_samples)
    loader = build_loader(
        dataset,
        config.test_batch_size,
        train=False,
        num_workers=worker_count(config),
        distributed=(ctx.rank, ctx.world_size),
    )
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # psnr, ssim, images
    modes = [(module, module.training) for module in generator.modules()]
    generator.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(ctx.device, non_blocking=True)
                with autocast(ctx.device, config.precision):
                    inputs = generator_inputs(batch.image, batch.edge, batch.gray, batch.mask)
                    out = generator(*inputs)
                _, scores = score_composites(out.output, batch.image, batch.mask)
                count = torch.tensor(float(len(batch.index)))
                sums += torch.stack([scores["psnr"].sum(), scores["ssim"].sum(), count]).to(sums)
    finally:
        for module, training in modes:
            module.training = training
    distributed.sum_over_ranks(sums, ctx)
    psnr_mean, ssim_mean = (sums[:2] / sums[2].clamp_min(1)).tolist()
    monitor.print(
        f"iter: {iteration}, validation on {int(sums[2])} images: "
        f"PSNR {psnr_mean:.2f}, SSIM {ssim_mean:.3f}"
    )
    monitor.scalars(iteration, {"val/psnr": psnr_mean, "val/ssim": ssim_mean})
    return psnr_mean, ssim_mean
