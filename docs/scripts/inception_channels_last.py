"""The FID Inception forward, NCHW against channels-last, interleaved in one process (CPU).

Run from the repository root: ``python docs/scripts/inception_channels_last.py``. Prints the
minimum seconds per image of each layout over 3 rounds (16 random images at 299 x 299, random
weights) and the largest difference between the two layouts' features.
"""

import time

import torch

from ctsdg.models.inception import FIDInception

torch.set_grad_enabled(False)
nchw = FIDInception()
nhwc = FIDInception()
nhwc.load_state_dict(nchw.state_dict())
nhwc = nhwc.to(memory_format=torch.channels_last)
x = torch.rand(16, 3, 299, 299) * 2 - 1
seconds = {"nchw": [], "channels_last": []}
for _ in range(3):
    start = time.perf_counter()
    a = nchw(x)
    seconds["nchw"].append(time.perf_counter() - start)
    start = time.perf_counter()
    b = nhwc(x.contiguous(memory_format=torch.channels_last))
    seconds["channels_last"].append(time.perf_counter() - start)
print({k: min(v) / len(x) for k, v in seconds.items()}, float((a - b).abs().max()))
