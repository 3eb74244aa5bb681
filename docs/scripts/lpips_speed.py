"""LPIPS's forward as it was (the textbook distance, the layout of its input) against
`ctsdg.metrics.LPIPS` now (channels-last, the lean distance), interleaved in one process (CPU).

Run from the repository root: ``python docs/scripts/lpips_speed.py``. Prints the minimum
seconds per evaluated image over 3 rounds (8 pairs at 256 x 256, random weights, both images of
a pair in one pass as eval runs it) of: the earlier forward on NCHW input, the earlier forward
on channels-last input (what ``ctsdg eval`` gave it: the generator's output is channels-last on
CPU), and the forward now; and the largest relative difference between the distances.
"""

import torch
from timing import interleaved

from ctsdg.metrics import _LPIPS_SLICES, LPIPS

torch.set_grad_enabled(False)
torch.manual_seed(0)
now = LPIPS().to(memory_format=torch.channels_last)
for lin in now.lins:
    lin.uniform_()
before = LPIPS()
before.load_state_dict(now.state_dict())


def textbook(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The earlier forward: NCHW, the distance written as the lpips package writes it."""
    x = (torch.cat((pred, target)) * 2 - 1 - before.shift) / before.scale
    total = x.new_zeros(pred.shape[0])
    for (start, stop), lin in zip(_LPIPS_SLICES, before.lins, strict=True):
        x = before.features[start:stop](x)
        unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
        a, b = unit.chunk(2)
        total = total + (lin * (a - b).square()).sum(dim=1).mean(dim=(1, 2))
    return total


pred = torch.rand(8, 3, 256, 256)
target = (pred + 0.1 * torch.randn_like(pred)).clamp(0, 1)
last = {"memory_format": torch.channels_last}
runs = {
    "earlier_nchw_input": lambda: textbook(pred, target),
    "earlier_channels_last_input": lambda: textbook(
        pred.contiguous(**last), target.contiguous(**last)
    ),
    "now": lambda: now(pred, target),
}
seconds, results = interleaved(runs)
print({k: round(v / len(pred), 4) for k, v in seconds.items()}, "s per image")
reference = results["earlier_nchw_input"]
for name in ("earlier_channels_last_input", "now"):
    difference = float(((results[name] - reference).abs() / reference).max())
    print(f"largest relative difference, {name} against earlier_nchw_input: {difference:.2g}")
