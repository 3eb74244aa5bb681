"""Properties of the networks that hold at any width: mask semantics, hole invariance, gradients,
and the equivalence of the fast layers with the reference formulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctsdg.benchmarks.reference import ReferenceRAL, reference_copy
from ctsdg.losses import GeneratorLoss, LossWeights, discriminator_loss, gram_matrix
from ctsdg.models import Discriminator, Generator, VGG16Features, generator_inputs
from ctsdg.models.cfa import RegionAffinityLearning
from ctsdg.models.pconv import PartialConv2d

SIZE = 128


def _batch(batch: int = 2, size: int = SIZE, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    edge = (torch.rand(batch, 1, size, size, generator=g) > 0.8).float()
    gray = torch.rand(batch, 1, size, size, generator=g)
    mask = (torch.rand(batch, 1, size // 8, size // 8, generator=g) > 0.4).float()
    mask = F.interpolate(mask, size=(size, size), mode="nearest")  # blocky holes
    return image, edge, gray, mask


def _generator(width: int = 8, seed: int = 0, **kwargs) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(width=width, **kwargs)
    with torch.no_grad():  # non-zero gammas so that every Bi-GFF path carries signal
        generator.bigff.texture_gamma.fill_(0.7)
        generator.bigff.structure_gamma.fill_(-0.4)
    return generator


# --------------------------------------------------------------------------- partial convolution


def test_pconv_hand_made_example() -> None:
    # One input channel, a 3x3 all-ones kernel, stride 1: known pixels are re-weighted by
    # 9 / count; a window with no known pixel gives 0 and a hole in the new mask.
    conv = PartialConv2d(1, 1, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5)
    mask = torch.ones(1, 1, 5, 5)
    mask[..., 2:, 2:] = 0  # bottom-right 3x3 block is a hole
    out, new_mask = conv([x], [mask])
    # Centre pixel (2, 2): window rows/cols 1..3, known = (1,1),(1,2),(1,3),(2,1),(3,1).
    known = [6, 7, 8, 11, 16]
    assert out[0, 0, 2, 2].item() == pytest.approx(sum(known) * 9 / 5)
    # Corner (0, 0): padded window sees 4 known pixels.
    assert out[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 5 + 6) * 9 / 4)
    # Pixel (4, 4): window rows/cols 3..5 holds only holes and padding.
    assert out[0, 0, 4, 4].item() == 0.0
    assert new_mask[0, 0, 3, 3].item() == 0.0 and new_mask[0, 0, 2, 2].item() == 1.0
    assert new_mask.shape == (1, 1, 5, 5)


def test_pconv_counts_like_the_full_width_formula() -> None:
    # Two sources (5 and 3 channels) with their own masks, stride 2, kernel 5.
    torch.manual_seed(0)
    conv = PartialConv2d(8, 4, 5, stride=2, source_channels=(5, 3))
    a, b = torch.randn(2, 5, 16, 16), torch.randn(2, 3, 16, 16)
    ma = (torch.rand(2, 1, 16, 16) > 0.5).float()
    mb = (torch.rand(2, 1, 16, 16) > 0.5).float()
    ma[..., :8, :8] = 0  # a hole wider than the window, so that some counts are 0
    mb[..., :8, :8] = 0
    out, new_mask = conv([a, b], [ma, mb])

    full = torch.cat((ma.expand(-1, 5, -1, -1), mb.expand(-1, 3, -1, -1)), dim=1)
    x = torch.cat((a, b), dim=1)
    count = F.conv2d(full, torch.ones(4, 8, 5, 5), stride=2, padding=2)
    raw = F.conv2d(x * full, conv.weight, stride=2, padding=2)
    expected = torch.where(count > 0, raw * (8 * 25) / count, torch.zeros_like(raw))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_mask, (count[:, :1] > 0).float())
    assert (count == 0).any() and (count > 0).any()  # both cases exercised


def test_pconv_ignores_values_under_holes_and_keeps_no_state() -> None:
    conv = PartialConv2d(3, 6, 3)
    x = torch.randn(1, 3, 12, 12)
    mask = (torch.rand(1, 1, 12, 12) > 0.5).float()
    first, _ = conv([x], [mask])
    noisy = x + 100 * torch.randn_like(x) * (1 - mask)
    second, _ = conv([noisy], [mask])
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    # Another mask on the next call gives that mask's result: nothing cached between calls.
    # (Away from the border, where zero padding counts as holes, no holes = a plain conv.)
    other = torch.ones_like(mask)
    plain = F.conv2d(x, conv.weight, padding=1)
    torch.testing.assert_close(conv([x], [other])[0][..., 1:-1, 1:-1], plain[..., 1:-1, 1:-1])
    assert set(conv.state_dict()) == {"weight"}


# --------------------------------------------------------------------------- attention


def test_batched_attention_matches_per_image_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 32, 32, requires_grad=True)
    fast, slow = RegionAffinityLearning(), ReferenceRAL()
    out_fast, out_slow = fast(x, x), slow(x, x)
    torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=1e-5)
    (grad_fast,) = torch.autograd.grad(out_fast.square().sum(), x)
    (grad_slow,) = torch.autograd.grad(out_slow.square().sum(), x)
    torch.testing.assert_close(grad_fast, grad_slow, atol=1e-4, rtol=1e-4)
    # Each image attends only to its own patches.
    torch.testing.assert_close(fast(x[1:2], x[1:2]), out_fast[1:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_elements", [1, 7 * 2 * 64, 1 << 30])
def test_blocked_attention_matches_the_authors_formulation(block_elements: int) -> None:
    # 1: one query row per block; 7 rows (64 positions, batch 2): a short last block; 1 << 30:
    # the whole (L, L) map at once. Values and gradients as the per-image loop's.
    torch.manual_seed(1)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    ral = RegionAffinityLearning(block_elements=block_elements)
    out, expected = ral(x, x), ReferenceRAL()(x, x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad, grad_expected, atol=1e-4, rtol=1e-4)
    with torch.inference_mode():  # the in-place clamp of inference gives the same values
        torch.testing.assert_close(ral(x, x), expected.detach(), atol=1e-5, rtol=1e-5)


def test_attention_block_size_bounds_memory() -> None:
    # A block of at most block_elements scores: 4 images x 64 positions, 1024 elements ->
    # 4 query rows per block, so the largest score tensor holds 4 x 4 x 64 = 1024 elements.
    seen: list[int] = []
    ral = RegionAffinityLearning(block_elements=1024)
    original = ral._attention

    def spy(queries, keys, *workspace):  # type: ignore[no-untyped-def]
        attention = original(queries, keys, *workspace)
        seen.append(attention.numel())
        return attention

    ral._attention = spy  # type: ignore[method-assign]
    ral(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    assert max(seen) == 1024 and sum(seen) == 4 * 64 * 64


def test_attention_inference_reuses_one_score_buffer_with_the_same_values() -> None:
    # Without gradients the full blocks share one score buffer and the softmax runs in place;
    # the values are those of the fresh buffers (same kernels), the last, shorter block included.
    torch.manual_seed(0)
    ral = RegionAffinityLearning(block_elements=3 * 64 * 10)
    background, foreground = torch.randn(3, 4, 16, 16), torch.randn(3, 4, 16, 16)
    expected = ral(background, foreground)  # gradients on: fresh buffers
    kept: list[torch.Tensor] = []  # held, so that fresh buffers cannot share an address
    original = ral._attention

    def spy(queries, keys, workspace=None):  # type: ignore[no-untyped-def]
        kept.append(original(queries, keys, workspace))
        return kept[-1]

    ral._attention = spy  # type: ignore[method-assign]
    with torch.no_grad():
        reused = ral(background, foreground)
    assert torch.equal(reused, expected)
    # 6 full blocks of 10 rows in one buffer, the last block of 4 rows on its own.
    assert len(kept) == 7 and len({a.data_ptr() for a in kept}) == 2


def test_autocast_keeps_pconv_counts_and_attention_scores_in_float32() -> None:
    # 300 channels x 3 x 3 = 2 700 inputs per window: counts above 256, which bf16 cannot hold.
    torch.manual_seed(0)
    conv = PartialConv2d(300, 8, 3)
    x = torch.randn(1, 300, 12, 12)
    mask = (torch.rand(1, 1, 12, 12) > 0.3).float()
    ratio, new_mask = conv.window_ratio([mask])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ratio_bf16, new_mask_bf16 = conv.window_ratio([mask])
        out_bf16, _ = conv([x], [mask])
    assert ratio_bf16.dtype == torch.float32
    torch.testing.assert_close(ratio_bf16, ratio, atol=0, rtol=0)
    torch.testing.assert_close(new_mask_bf16, new_mask, atol=0, rtol=0)
    assert {round(9 * 300 / r) for r in ratio[ratio > 0].tolist()} - set(range(257)), (
        "no count >256"
    )
    out, _ = conv([x], [mask])
    torch.testing.assert_close(out_bf16.float(), out, atol=0.1, rtol=0.02)  # bf16 rounding only

    ral = RegionAffinityLearning(float32_scores=True)
    q, k = torch.randn(1, 5, 36), torch.randn(1, 36, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ral._attention(q, k).dtype == torch.float32
        ral.float32_scores = False  # the default
        assert ral._attention(q, k).dtype == torch.bfloat16


# --------------------------------------------------------------------------- generator


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_generator_matches_reference_formulation(mode: str) -> None:
    generator = getattr(_generator(), mode)()
    reference = reference_copy(generator)
    inputs = generator_inputs(*_batch())
    fast_out, ref_out = generator(*inputs), reference(*inputs)
    for ours, theirs in zip(fast_out, ref_out, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    fast_loss = sum(o.square().mean() for o in fast_out)
    ref_loss = sum(o.square().mean() for o in ref_out)
    fast_grads = torch.autograd.grad(fast_loss, list(generator.parameters()))
    ref_grads = torch.autograd.grad(ref_loss, list(reference.parameters()))
    for (name, _), a, b in zip(generator.named_parameters(), fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3, msg=name)


def test_generator_shapes_and_ranges() -> None:
    out = _generator().eval()(*generator_inputs(*_batch(2)))
    assert out.output.shape == (2, 3, SIZE, SIZE)
    assert out.projected_image.shape == (2, 3, SIZE, SIZE)
    assert out.projected_edge.shape == (2, 1, SIZE, SIZE)
    assert out.output.abs().max() <= 1 and out.projected_image.abs().max() <= 1
    assert out.projected_edge.min() >= 0 and out.projected_edge.max() <= 1
    assert all(torch.isfinite(t).all() for t in out)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_output_ignores_pixels_under_holes(mode: str) -> None:
    generator = getattr(_generator(), mode)()
    image, edge, gray, mask = _batch()
    before = generator(image * mask, torch.cat((edge, gray), 1) * mask, mask)
    scrambled = image + 5 * torch.randn_like(image) * (1 - mask)
    structure = torch.cat((edge, gray), 1) + torch.rand(2, 2, SIZE, SIZE) * (1 - mask)
    after = generator(scrambled, structure, mask)  # not pre-masked: the network masks itself
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_every_generator_and_discriminator_parameter_gets_a_gradient() -> None:
    generator, discriminator = _generator().train(), Discriminator(width=8).train()
    image, edge, gray, mask = _batch()
    out = generator(*generator_inputs(image, edge, gray, mask))
    fake_pred, fake_edge = discriminator(out.output, gray, edge, real=False)
    loss_fn = GeneratorLoss(VGG16Features.random(), LossWeights())
    total, terms = loss_fn(out, image, mask, edge, fake_pred, fake_edge)
    total.backward()
    real_pred, real_edge = discriminator(image, gray, edge, real=True)
    fake_pred, fake_edge = discriminator(out.output.detach(), gray, edge, real=False)
    d_total, _ = discriminator_loss(real_pred, fake_pred, real_edge, fake_edge, edge)
    d_total.backward()
    for net in (generator, discriminator):
        for name, p in net.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    assert set(terms) == {"hole", "valid", "perceptual", "style", "adversarial", "intermediate"}
    assert all(p.grad is None for p in loss_fn.vgg.parameters())


def test_align_corners_variant_changes_only_upsampling() -> None:
    plain = _generator().eval()
    variant = Generator(width=8, align_corners=True).eval()
    variant.load_state_dict(plain.state_dict())
    inputs = generator_inputs(*_batch(1))
    a, b = plain(*inputs), variant(*inputs)
    assert (a.output - b.output).abs().max() > 1e-4
    assert set(plain.state_dict()) == set(variant.state_dict())


def test_input_size_must_be_a_multiple_of_128() -> None:
    image, edge, gray, mask = _batch(1, size=SIZE)
    crop = [t[..., :96, :] for t in generator_inputs(image, edge, gray, mask)]
    with pytest.raises(ValueError, match="multiples of 128"):
        _generator()(*crop)


def test_published_sizes() -> None:
    with torch.device("meta"):
        generator, discriminator = Generator(), Discriminator()
    assert round(sum(p.numel() for p in generator.parameters()) / 1e6, 1) == 52.1
    assert round(sum(p.numel() for p in discriminator.parameters()) / 1e6, 1) == 5.5


# --------------------------------------------------------------------------- discriminator, VGG


def test_discriminator_structure_input_depends_on_realness() -> None:
    torch.manual_seed(0)
    discriminator = Discriminator(width=8).eval()
    image, edge, gray, _ = _batch(1, size=256)
    real_pred, real_edge = discriminator(image, gray, edge, real=True)
    fake_pred, fake_edge = discriminator(image, gray, edge, real=False)
    assert real_pred.shape == (1, 2, 30, 30) and real_edge.shape == (1, 1, 256, 256)
    torch.testing.assert_close(real_edge, fake_edge)
    torch.testing.assert_close(real_pred[:, :1], fake_pred[:, :1])  # texture branch: same image
    assert (real_pred[:, 1:] - fake_pred[:, 1:]).abs().max() > 0  # structure branch differs


def test_vgg_loads_torchvision_layout(tmp_path) -> None:
    # torchvision's vgg16 state dict: features.{0,2,5,...,28}, classifier.{0,3,6}.
    source = VGG16Features.random(seed=3)
    state = {k: v.clone() for k, v in source.features.state_dict().items()}
    state = {f"features.{k}": v for k, v in state.items()}
    for i, c_in in ((17, 256), (19, 512), (21, 512), (24, 512), (26, 512), (28, 512)):
        state[f"features.{i}.weight"] = torch.zeros(512, c_in, 3, 3)
        state[f"features.{i}.bias"] = torch.zeros(512)
    state["classifier.0.weight"] = torch.zeros(4096, 25088)
    path = tmp_path / "vgg16.pth"  # a name with torchvision's hash prefix is checked (below)
    torch.save(state, path)
    loaded = VGG16Features.from_file(path)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    for a, b in zip(loaded(x), source(x), strict=True):
        torch.testing.assert_close(a, b)
    assert [f.shape[1] for f in loaded(x)] == [64, 128, 256]
    assert not any(p.requires_grad for p in loaded.parameters())
    assert not loaded.train().training


def test_vgg_bad_files(tmp_path) -> None:
    from ctsdg.errors import InputError

    with pytest.raises(InputError, match=r"vgg16-397923af\.pth"):
        VGG16Features.from_file(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputError, match=r"wrong\.pth"):
        VGG16Features.from_file(wrong)


def test_vgg_file_named_like_torchvision_must_match_its_hash_prefix(tmp_path) -> None:
    import hashlib

    from ctsdg.errors import InputError

    source = VGG16Features.random(seed=3)
    state = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    good = tmp_path / f"vgg16-{digest[:8]}.pth"  # the name carries the file's own checksum
    plain.rename(good)
    assert VGG16Features.from_file(good).features[0].weight.shape == (64, 3, 3, 3)
    bad = tmp_path / "vgg16-397923af.pth"  # torchvision's name, another file's bytes
    good.rename(bad)
    with pytest.raises(InputError, match=r"vgg16-397923af\.pth: SHA-256 .* 397923af"):
        VGG16Features.from_file(bad)


def test_gram_matrix_values() -> None:
    f = torch.arange(8, dtype=torch.float32).view(1, 2, 2, 2)
    expected = torch.tensor(
        [[0 + 1 + 4 + 9, 0 + 5 + 12 + 21], [0 + 5 + 12 + 21, 16 + 25 + 36 + 49]]
    )
    torch.testing.assert_close(gram_matrix(f)[0], expected.float() / 8)
