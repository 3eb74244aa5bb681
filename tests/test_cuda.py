"""The GPU path: training iterations at every precision, compile, channels-last, inference at every
precision against fp32, and a one-process NCCL DDP step. Skipped without CUDA (``make gpu-check``
runs this module and the CUDA benchmarks on a GPU machine)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from ctsdg.backends import build_runner
from ctsdg.config import load_config
from ctsdg.data import Batch
from ctsdg.models import Generator
from ctsdg.models.generator import example_batch
from ctsdg.training.distributed import Context
from ctsdg.training.steps import data_parallel
from ctsdg.training.trainer import build_state, discriminator_step, generator_step, set_stage

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (run `make gpu-check` on a GPU)"
)

SIZE, WIDTH, BATCH = 128, 16, 2


def _state(**overrides):  # type: ignore[no-untyped-def]
    config = load_config(
        overrides=dict(
            width=WIDTH, image_load_size=[SIZE, SIZE], batch_size=BATCH, pretrained_vgg="random",
            device="cuda", **overrides,
        )
    )  # fmt: skip
    logging.getLogger("ctsdg.models.vgg").setLevel(logging.ERROR)  # random VGG on purpose
    state = build_state(config, Context(0, 1, 0, torch.device("cuda", 0)))
    set_stage(state, "train")
    return state


def _batch(channels_last: bool = False) -> Batch:
    image, edge, gray, mask = example_batch(BATCH, SIZE, "cuda")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tensors = (t.contiguous(memory_format=fmt) for t in (image, mask, edge, gray))
    return Batch(*tensors, torch.arange(BATCH, device="cuda"))


def _iteration(state, batch: Batch) -> dict[str, float]:  # type: ignore[no-untyped-def]
    out, g_terms = generator_step(state, batch)
    d_terms = discriminator_step(state, batch, out.output)
    torch.cuda.synchronize()
    return {k: float(v) for k, v in {**g_terms, **d_terms}.items()}


@pytest.mark.parametrize(
    "overrides",
    [
        {"precision": "fp32"},
        {"precision": "bf16"},
        {"precision": "fp16"},
        {"precision": "fp32", "channels_last": True},
        {"precision": "bf16", "compile": True},
    ],
    ids=["fp32", "bf16", "fp16", "channels_last", "compile"],
)
def test_training_iteration(overrides: dict) -> None:
    state = _state(**overrides)
    before = [p.detach().clone() for p in state.raw_generator.parameters()]
    batch = _batch(overrides.get("channels_last", False))
    for _ in range(3):  # fp16: the scaler may skip the first steps while it finds its scale
        terms = _iteration(state, batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values()), terms
    after = state.raw_generator.parameters()
    moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    assert sum(moved) > 0.9 * len(moved)  # the optimiser stepped (the scaler did not skip)
    if overrides["precision"] == "fp16":
        assert state.scaler.is_enabled() and 0 < state.scaler.get_scale() < float("inf")


@pytest.mark.parametrize("backend", ["eager", "compiled"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_inference_precisions_stay_close_to_fp32(backend: str, precision: str) -> None:
    torch.manual_seed(0)
    generator = Generator(width=WIDTH).cuda().eval()
    image, edge, gray, mask = example_batch(BATCH, SIZE, "cuda")
    expected = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    out = build_runner(generator, backend, precision)(image, mask, gray, edge)
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    tolerance = {"fp32": 1e-3, "bf16": 0.1, "fp16": 0.02}[precision]
    assert (out - expected).abs().max() < tolerance
    assert (out - expected).abs().mean() < tolerance / 10


def test_compiled_runner_outputs_survive_the_next_call() -> None:
    """The compiled runner replays a CUDA graph: each output must be the caller's own copy."""
    torch.manual_seed(0)
    generator = Generator(width=WIDTH).cuda().eval()
    eager = build_runner(generator, "eager", "fp32")
    compiled = build_runner(generator, "compiled", "fp32")
    first, second = example_batch(BATCH, SIZE, "cuda", 0), example_batch(BATCH, SIZE, "cuda", 1)
    outputs = [compiled(image, mask, gray, edge) for image, edge, gray, mask in (first, second)]
    for out, (image, edge, gray, mask) in zip(outputs, (first, second), strict=True):
        torch.testing.assert_close(out, eager(image, mask, gray, edge), atol=1e-3, rtol=0)


def test_onnxruntime_cuda_matches_or_says_why(tmp_path: Path) -> None:
    import onnxruntime as ort

    from ctsdg.backends import UnsupportedError

    torch.manual_seed(0)
    generator = Generator(width=8).cuda().eval()
    image, edge, gray, mask = example_batch(BATCH, SIZE, "cuda")
    expected = build_runner(generator, "eager", "fp32")(image, mask, gray, edge)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(UnsupportedError, match="CUDAExecutionProvider"):
            build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=tmp_path)
        pytest.skip("this onnxruntime build has no CUDAExecutionProvider")
    runner = build_runner(generator, "onnxruntime", "fp32", size=SIZE, cache=tmp_path)
    torch.testing.assert_close(runner(image, mask, gray, edge), expected, atol=1e-3, rtol=0)


def test_one_process_nccl_ddp_step(tmp_path: Path) -> None:
    import torch.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("this PyTorch build has no NCCL")
    dist.init_process_group(
        "nccl", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1,
        device_id=torch.device("cuda", 0),
    )  # fmt: skip
    try:
        state = _state(precision="bf16")
        state.generator = data_parallel(state.raw_generator, torch.device("cuda", 0))
        state.discriminator = data_parallel(state.raw_discriminator, torch.device("cuda", 0))
        state.ctx = Context(0, 1, 0, torch.device("cuda", 0))
        before = [p.detach().clone() for p in state.raw_generator.parameters()]
        terms = _iteration(state, _batch())
        assert all(torch.isfinite(torch.tensor(v)) for v in terms.values()), terms
        after = state.raw_generator.parameters()
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        total = torch.ones(1, device="cuda")
        dist.all_reduce(total)
        assert total.item() == 1.0
    finally:
        dist.destroy_process_group()
