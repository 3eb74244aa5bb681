"""The least that LPIPS + FID can add to ``ctsdg eval`` in fp32 on this machine (CPU).

Run from the repository root: ``python docs/scripts/eval_metrics_floor.py``. It

1. counts the multiply-adds (MACs) the two metric networks spend per evaluated image, with
   forward hooks on their convolutions: VGG16 up to relu5_3 at 256 x 256 for LPIPS and the FID
   InceptionV3 at 299 x 299, each on the composite and on the ground truth;
2. measures the best fp32 convolution throughput reached here: each distinct 3 x 3 layer of
   that VGG16 trunk alone (batch 16, channels-last, the layout eval uses), minimum of 5;
3. measures the generator's forward per image (width 64, 256 x 256, batch 8, eager fp32 as
   ``ctsdg eval`` runs it), minimum of 5;
4. for scale, the rate of a 4096 x 4096 matrix product in float32 and in bfloat16;

and prints ``1 + (MACs / best throughput) / generator seconds``: a lower bound on the ratio of
eval with the metrics to eval without them, since it runs every metric convolution at the best
layer's rate and charges the metrics nothing else, while eval without them costs at least its
generator.
"""

import torch
from torch import nn

from ctsdg.backends import build_runner
from ctsdg.fid import InceptionFeatures
from ctsdg.metrics import LPIPS
from ctsdg.models import Generator
from ctsdg.models.inception import INPUT_SIZE, FIDInception
from ctsdg.runtime import time_min

torch.set_grad_enabled(False)
torch.manual_seed(0)
CPU = torch.device("cpu")


def fastest(run) -> float:
    return time_min(run, CPU, repeats=5) / 1000  # seconds, minimum of 5 after a warm-up


def conv_macs(network: nn.Module, *inputs: torch.Tensor) -> int:
    total = 0

    def count(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_channels // module.groups * module.kernel_size[0]
        total += output.numel() * per_output * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, nn.Conv2d)]
    network(*inputs)
    for hook in hooks:
        hook.remove()
    return total


one = torch.rand(1, 3, 256, 256)
lpips = LPIPS().to(memory_format=torch.channels_last)
inception = InceptionFeatures(FIDInception(), torch.device("cpu")).network
macs = {
    "lpips_vgg16": conv_macs(lpips, one, one),  # both images of the pair in one pass
    "fid_inception": 2 * conv_macs(inception, torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE)),
}

layers: dict[str, float] = {}  # GFLOP/s of each distinct 3 x 3 layer of the trunk
side = 256
for layer in lpips.features:
    if isinstance(layer, nn.MaxPool2d):
        side //= 2
        continue
    if not isinstance(layer, nn.Conv2d) or layer.in_channels == 3:
        continue  # ReLUs; the first layer (3 input channels) is not a fair rate
    key = f"{layer.in_channels}->{layer.out_channels} at {side}x{side}"
    if key not in layers:
        x = torch.rand(16, layer.in_channels, side, side)
        x = x.contiguous(memory_format=torch.channels_last)
        seconds = fastest(lambda layer=layer, x=x: layer(x))
        layers[key] = 2 * conv_macs(layer, x) / seconds / 1e9
best_gflops = max(layers.values())

runner = build_runner(Generator().eval(), "eager", "fp32")
image = torch.rand(8, 3, 256, 256) * 2 - 1
mask = (torch.rand(8, 1, 256, 256) > 0.3).float()
structure = torch.rand(8, 1, 256, 256)
generator_s = fastest(lambda: runner(image * mask, mask, structure, structure)) / 8

matmul_gflops = {}
for dtype in (torch.float32, torch.bfloat16):
    a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
    matmul_gflops[str(dtype).removeprefix("torch.")] = round(
        2 * 4096**3 / fastest(lambda a=a, b=b: a @ b) / 1e9
    )

metric_gmacs = sum(macs.values()) / 1e9
floor_s = 2 * metric_gmacs / best_gflops
print({k: round(v / 1e9, 2) for k, v in macs.items()}, "GMACs per evaluated image")
print({k: round(g) for k, g in layers.items()}, "GFLOP/s (fp32, channels-last, batch 16)")
print(matmul_gflops, "GFLOP/s, 4096 x 4096 matrix product")
print(f"metrics at the best rate: {floor_s:.3f} s per image; generator: {generator_s:.3f} s")
print(f"lower bound on eval with / without LPIPS + FID: {1 + floor_s / generator_s:.2f}x")
needed = 2 * metric_gmacs / (0.3 * generator_s)
print(f"1.3x would need the metrics at {needed:.0f} GFLOP/s")
