"""What FID and LPIPS add to ``ctsdg eval``: ``ctsdg bench eval``.

Runs the whole `ctsdg.evaluation.evaluate` (data, generator, metrics, FID / IDS figures,
reports) on the demo data twice per round, once with only PSNR / SSIM / L1 and once with LPIPS
and FID (P-IDS / U-IDS) added, alternating, and keeps each setting's minimum over the rounds,
so that both see the same machine load. The networks have random weights written to temporary
files (the timing does not depend on the values): a width-64 generator, torchvision's VGG16
layout with LPIPS linear layers, the FID Inception layout.

``run(args)`` runs ``ctsdg bench eval`` (options declared in `ctsdg.benchmarks`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _weight_files(folder: Path, size: int) -> dict[str, str]:
    import torch

    from ctsdg.checkpoints import ModelConfig, save_weights
    from ctsdg.metrics import LPIPS
    from ctsdg.models import Generator
    from ctsdg.models.inception import FIDInception
    from ctsdg.models.vgg import vgg16_features

    torch.manual_seed(0)
    files = {
        "checkpoint_path": folder / "generator.safetensors",
        "pretrained_vgg": folder / "vgg16.pth",
        "lpips_weights": folder / "lpips_vgg.pth",
        "fid_weights": folder / "inception.pth",
    }
    save_weights(
        files["checkpoint_path"],
        model=ModelConfig(64),
        structure="correct",
        generator=Generator().state_dict(),
        image_size=size,
    )
    vgg = {f"features.{k}": v for k, v in vgg16_features(31).state_dict().items()}
    torch.save(vgg, files["pretrained_vgg"])
    lins = {f"lin{i}.model.1.weight": torch.rand_like(p) for i, p in enumerate(LPIPS().lins)}
    torch.save(lins, files["lpips_weights"])
    torch.save(FIDInception().state_dict(), files["fid_weights"])
    return {k: str(v) for k, v in files.items()}


def measure(
    images: int = 16, *, size: int = 256, batch: int = 8, repeats: int = 3, device: str = "cpu"
) -> dict[str, Any]:
    """Seconds of one evaluation without and with LPIPS + FID, minimum of ``repeats`` rounds."""
    from ctsdg.config import load_config
    from ctsdg.evaluation import evaluate

    seconds: dict[str, list[float]] = {"plain": [], "lpips_fid": []}
    with tempfile.TemporaryDirectory(prefix="ctsdg-bench-eval-") as tmp:
        root = Path(tmp)
        files = _weight_files(root, size)
        base = {
            "dataset": "demo",
            "image_load_size": [size, size],
            "eval_limit": images,
            "test_batch_size": batch,
            "num_parallel_workers": 0,
            "device": device,
            "checkpoint_path": files["checkpoint_path"],
        }
        settings = {
            "plain": {},
            "lpips_fid": {k: files[k] for k in ("pretrained_vgg", "lpips_weights", "fid_weights")},
        }
        for round_ in range(repeats):
            for name, extra in settings.items():
                out = root / f"{name}-{round_}"
                cfg = load_config(overrides={**base, **extra, "output_path": str(out)})
                start = time.perf_counter()
                evaluate(cfg, progress=False, echo=lambda _: None)
                seconds[name].append(time.perf_counter() - start)
    plain, full = min(seconds["plain"]), min(seconds["lpips_fid"])
    return {
        "images": images,
        "size": size,
        "batch": batch,
        "repeats": repeats,
        "device": device,
        "plain_s": plain,
        "lpips_fid_s": full,
        "ratio": full / plain,
        "all_s": seconds,
    }


def run(args: argparse.Namespace) -> int:
    result = measure(
        args.images, size=args.size, batch=args.batch, repeats=args.repeats, device=args.device
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"eval of {result['images']} images at {args.size}x{args.size}, batch {args.batch}: "
            f"{result['plain_s']:.1f} s without, {result['lpips_fid_s']:.1f} s with LPIPS + FID "
            f"({result['ratio']:.2f}x; minimum of {args.repeats})"
        )
    return 0
