"""Training-step speed: ``ctsdg bench train``.

One full iteration as ``ctsdg train`` runs it: the generator step (generator, discriminator on the
output, VGG16 perceptual and style losses, backward, Adam) and the discriminator step. Synthetic
data, a randomly initialised VGG16 (same cost as the real one), minimum of several iterations.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from ctsdg.benchmarks.reference import use_reference_layers
from ctsdg.config import load_config
from ctsdg.data import Batch
from ctsdg.errors import InputError
from ctsdg.models.generator import example_batch
from ctsdg.runtime import resolve_device, time_min, tune_cpu_allocator
from ctsdg.training.distributed import Context
from ctsdg.training.trainer import build_state, discriminator_step, generator_step, set_stage


def measure(
    device: torch.device,
    *,
    batch_size: int = 6,
    size: int = 256,
    width: int = 64,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    reference: bool = False,
    repeats: int = 3,
) -> dict:
    """``step_ms``: the fastest of ``repeats`` full training iterations after a warm-up."""
    config = load_config(
        overrides=dict(
            width=width, image_load_size=[size, size], batch_size=batch_size,
            precision=precision, channels_last=channels_last, compile=compile,
            pretrained_vgg="random", device=str(device),
        )
    )  # fmt: skip
    vgg_log = logging.getLogger("ctsdg.models.vgg")
    level = vgg_log.level
    vgg_log.setLevel(logging.ERROR)  # random VGG weights are the point here, not a mistake
    try:
        state = build_state(config, Context(0, 1, 0, device))
    finally:
        vgg_log.setLevel(level)
    if reference:
        use_reference_layers(state.raw_generator)
    set_stage(state, "train")
    image, edge, gray, mask = example_batch(batch_size, size, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batch = Batch(
        *(t.contiguous(memory_format=fmt) for t in (image, mask, edge, gray)),
        torch.arange(batch_size, device=device),
    )

    def step() -> None:
        out, _ = generator_step(state, batch)
        discriminator_step(state, batch, out.output)

    step_ms = time_min(step, device, repeats=repeats, warmup=2 if compile else 1)
    return {
        "device": str(device),
        "batch_size": batch_size,
        "size": size,
        "width": width,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile,
        "reference_layers": reference,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "step_ms": round(step_ms, 1),
        "images_per_s": round(batch_size / (step_ms / 1000), 2),
    }


def run(args: argparse.Namespace) -> int:
    """Run ``ctsdg bench train`` and print the result."""
    if args.size % 128 or args.size < 128:
        raise InputError(f"--size {args.size}: must be a multiple of 128")
    if min(args.batch_size, args.repeats, args.width) < 1:
        raise InputError("--batch-size, --repeats and --width must be at least 1")
    device = resolve_device(args.device)
    tuned = tune_cpu_allocator() if device.type == "cpu" else False
    result = measure(
        device, batch_size=args.batch_size, size=args.size, width=args.width,
        precision=args.precision, channels_last=args.channels_last, compile=args.compile,
        reference=args.reference, repeats=args.repeats,
    )  # fmt: skip
    result["allocator_tuned"] = tuned
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"training step, batch {args.batch_size} at {args.size}x{args.size}, width "
            f"{args.width}, {args.precision} on {device}: {result['step_ms']:.1f} ms "
            f"({result['images_per_s']:.2f} images/s)"
        )
    return 0
