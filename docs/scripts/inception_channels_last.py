"""The FID Inception forward, NCHW against channels-last, and channels-last with the
BatchNorms folded into the convolutions (what `ctsdg.fid.InceptionFeatures` runs), interleaved
in one process (CPU).

Run from the repository root: ``python docs/scripts/inception_channels_last.py``. Prints the
minimum seconds per image of each over 3 rounds (16 random images at 299 x 299, random weights,
BatchNorm statistics randomised) and the largest difference of each from the NCHW features.
"""

import torch
from timing import interleaved

from ctsdg.models.inception import FIDInception, fold_batch_norm

torch.set_grad_enabled(False)
nchw = FIDInception()
for bn in (m for m in nchw.modules() if isinstance(m, torch.nn.BatchNorm2d)):
    bn.running_mean.uniform_(-0.1, 0.1)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.uniform_(0.5, 1.5)
    bn.bias.uniform_(-0.1, 0.1)
nhwc = FIDInception()
nhwc.load_state_dict(nchw.state_dict())
nhwc = nhwc.to(memory_format=torch.channels_last)
folded = FIDInception()
folded.load_state_dict(nchw.state_dict())
folded = fold_batch_norm(folded).to(memory_format=torch.channels_last)
x = torch.rand(16, 3, 299, 299) * 2 - 1
last = x.contiguous(memory_format=torch.channels_last)
runs = {
    "nchw": lambda: nchw(x),
    "channels_last": lambda: nhwc(last),
    "folded": lambda: folded(last),
}
seconds, features = interleaved(runs)
print({k: round(v / len(x), 4) for k, v in seconds.items()}, "s per image")
print(
    {k: float((v - features["nchw"]).abs().max()) for k, v in features.items()},
    "largest difference",
)
