"""Batch-1 forward of the generator on CUDA in each layout, precision and compile mode,
interleaved in one process against the authors' formulation (eager fp32, NCHW), 256 x 256,
width 64; minimum over rounds. Also the largest difference of each output from eager fp32 NCHW.

Run from the repository root on a CUDA machine: ``PYTHONPATH=. python docs/scripts/gpu_variants.py
[BATCH]`` (docs/benchmarks.md, "On a GPU", quotes its figures)."""

import json
import sys

import torch

from ctsdg.benchmarks.reference import reference_copy
from ctsdg.models import Generator, generator_inputs
from ctsdg.models.generator import example_batch
from ctsdg.runtime import autocast, time_min

device = torch.device("cuda")
torch.manual_seed(0)
generator = Generator().to(device).eval()
reference = reference_copy(generator).eval()
batch = int(sys.argv[1]) if len(sys.argv) > 1 else 1
image, edge, gray, mask = example_batch(batch, 256, device)
inputs = generator_inputs(image, edge, gray, mask)


def variant(precision, layout, mode):
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    model = Generator().to(device).eval()
    model.load_state_dict(generator.state_dict())
    model = model.to(memory_format=fmt)
    module = model if mode == "eager" else torch.compile(model, dynamic=False, mode=mode)
    xs = [t.contiguous(memory_format=fmt) for t in inputs]

    def run():
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.inference_mode(), autocast(device, precision):
            return module(*xs).output.float().clone()

    return run


def reference_forward():
    with torch.inference_mode():
        return reference(*inputs).output.float()


calls = {"reference eager fp32 nchw": reference_forward}
VARIANTS = [
    ("fp32", "nchw", "eager"), ("fp32", "nhwc", "eager"), ("fp32", "nchw", "default"),
    ("fp32", "nchw", "reduce-overhead"), ("bf16", "nchw", "eager"), ("bf16", "nhwc", "eager"),
    ("bf16", "nchw", "default"), ("bf16", "nhwc", "default"), ("bf16", "nchw", "reduce-overhead"),
    ("bf16", "nhwc", "reduce-overhead"),
]
for precision, layout, mode in VARIANTS:
    calls[f"{mode} {precision} {layout}"] = variant(precision, layout, mode)
expected = calls["eager fp32 nchw"]()
diff = {}
for name, call in calls.items():
    for _ in range(3):
        out = call()
    print(name, "ready", file=sys.stderr, flush=True)
    diff[name] = float((out - expected).abs().max())
best = dict.fromkeys(calls, float("inf"))
for _ in range(10):
    for name, call in calls.items():
        best[name] = min(best[name], time_min(call, device, repeats=1, warmup=0))
ref = best["reference eager fp32 nchw"]
for name in calls:
    print(json.dumps({"path": name, "batch": batch, "ms": round(best[name], 2),
                      "x_reference": round(ref / best[name], 2),
                      "max_abs_diff": round(diff[name], 5)}))
