"""FID: the Inception network and its weights file, the statistics, the distance, ``ctsdg fid``.

The reference here is written apart from ``ctsdg/fid.py`` and ``ctsdg/models/inception.py``: a
numpy bilinear resize, a functional forward that reads the state dict by name with BatchNorm
folded into the convolutions, ``np.cov`` and an eigendecomposition instead of ``sqrtm``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg

from ctsdg.cli import main
from ctsdg.errors import InputError
from ctsdg.fid import (
    InceptionFeatures,
    Statistics,
    frechet_distance,
    read_stats,
    statistics,
    write_stats,
)
from ctsdg.ids import inception_discriminative_scores
from ctsdg.models.inception import fold_batch_norm, load_fid_inception
from tests.fid_weights import calibrated_weights, crops, write_folder

# --------------------------------------------------------------------------- the reference


def numpy_bilinear(image: np.ndarray, size: int = 299) -> np.ndarray:
    """(H, W, C) float -> (size, size, C): half-pixel centres, edges clamped, no antialiasing."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(size) + 0.5) * (n_in / size) - 0.5, 0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, wy = axis(image.shape[0])
    x0, x1, wx = axis(image.shape[1])
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


_STRIDE_2 = {
    "Conv2d_1a_3x3",
    "Mixed_6a.branch3x3",
    "Mixed_6a.branch3x3dbl_3",
    "Mixed_7a.branch3x3_2",
    "Mixed_7a.branch7x7x3_4",
}
_UNPADDED = _STRIDE_2 | {"Conv2d_2a_3x3", "Conv2d_4a_3x3"}


def reference_features(state: dict[str, torch.Tensor], images: list[np.ndarray]) -> np.ndarray:
    """The TF graph's pool3 features, written from its description (float32 convolutions)."""
    sd = {k: v.float() for k, v in state.items()}

    def conv(name: str, x: torch.Tensor) -> torch.Tensor:
        w = sd[f"{name}.conv.weight"]
        scale = sd[f"{name}.bn.weight"] / torch.sqrt(sd[f"{name}.bn.running_var"] + 1e-3)
        shift = sd[f"{name}.bn.bias"] - sd[f"{name}.bn.running_mean"] * scale
        kh, kw = w.shape[-2:]
        pad = (0, 0) if name in _UNPADDED else (kh // 2, kw // 2)
        stride = 2 if name in _STRIDE_2 else 1
        return torch.relu(F.conv2d(x, w * scale[:, None, None, None], shift, stride, pad))

    def avg(x):  # windows averaged over their pixels inside the image
        ones = torch.ones_like(x[:, :1])
        return F.avg_pool2d(x, 3, 1, 1) / F.avg_pool2d(ones, 3, 1, 1)

    def seq(block: str, names: list[str], x):
        for n in names:
            x = conv(f"{block}.{n}", x)
        return x

    def block_a(b, x):
        return torch.cat(
            [
                conv(f"{b}.branch1x1", x),
                seq(b, ["branch5x5_1", "branch5x5_2"], x),
                seq(b, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x),
                conv(f"{b}.branch_pool", avg(x)),
            ],
            1,
        )

    def block_c(b, x):
        dbl = [f"branch7x7dbl_{i}" for i in range(1, 6)]
        return torch.cat(
            [
                conv(f"{b}.branch1x1", x),
                seq(b, ["branch7x7_1", "branch7x7_2", "branch7x7_3"], x),
                seq(b, dbl, x),
                conv(f"{b}.branch_pool", avg(x)),
            ],
            1,
        )

    def block_e(b, x, pool):
        t = conv(f"{b}.branch3x3_1", x)
        d = seq(b, ["branch3x3dbl_1", "branch3x3dbl_2"], x)
        return torch.cat(
            [
                conv(f"{b}.branch1x1", x),
                conv(f"{b}.branch3x3_2a", t),
                conv(f"{b}.branch3x3_2b", t),
                conv(f"{b}.branch3x3dbl_3a", d),
                conv(f"{b}.branch3x3dbl_3b", d),
                conv(f"{b}.branch_pool", pool(x)),
            ],
            1,
        )

    batch = np.stack([numpy_bilinear(im.astype(np.float64) / 255) for im in images])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() * 2 - 1
    for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
        x = conv(n, x)
    x = F.max_pool2d(x, 3, 2)
    x = conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x))
    x = F.max_pool2d(x, 3, 2)
    for b in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = block_a(b, x)
    b = "Mixed_6a"
    x = torch.cat(
        [
            conv(f"{b}.branch3x3", x),
            seq(b, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x),
            F.max_pool2d(x, 3, 2),
        ],
        1,
    )
    for b in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = block_c(b, x)
    b = "Mixed_7a"
    x = torch.cat(
        [
            seq(b, ["branch3x3_1", "branch3x3_2"], x),
            seq(b, [f"branch7x7x3_{i}" for i in range(1, 5)], x),
            F.max_pool2d(x, 3, 2),
        ],
        1,
    )
    x = block_e("Mixed_7b", x, avg)
    x = block_e("Mixed_7c", x, lambda t: F.max_pool2d(t, 3, 1, 1))
    return x.mean(dim=(2, 3)).double().numpy()


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula with np.cov and tr sqrt(S1 S2) from eigenvalues of the symmetric
    S1^1/2 S2 S1^1/2."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = linalg.eigvalsh(root @ s2 @ root)
    return float(
        ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig.clip(0)).sum()
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return calibrated_weights(tmp_path_factory.mktemp("fid") / "pt_inception-test.pth")


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file layout without the calibration pass: for tests that only load it."""
    path = tmp_path_factory.mktemp("fid") / "uncalibrated.pth"
    return calibrated_weights(path, calibrate=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    a = write_folder(root / "a", crops(8, seed=1, size=(96, 80)))
    b = write_folder(root / "b" / "nested", crops(8, seed=2, size=(64, 64)))
    return a, b.parent


def stats_of(features: np.ndarray, with_features: bool) -> Statistics:
    s = statistics(features, "x")
    return s if with_features else Statistics(s.mu, s.sigma, s.images, "x")


# --------------------------------------------------------------------------- the distance


@pytest.mark.parametrize("n", [12, 150])  # fewer than the dimension (singular), and more
def test_distance_paths_agree_with_the_eigen_reference(n: int) -> None:
    rng = np.random.default_rng(n)
    mix = rng.standard_normal((64, 64))
    a = rng.standard_normal((n, 64)) @ mix
    b = rng.standard_normal((n + 5, 64)) @ mix * 1.3 + 0.4
    expected = reference_fid(a, b)
    sqrtm_path = frechet_distance(stats_of(a, False), stats_of(b, False))
    low_rank = frechet_distance(stats_of(a, True), stats_of(b, True))
    assert sqrtm_path == pytest.approx(expected, rel=1e-6)
    assert low_rank == pytest.approx(expected, rel=1e-6)
    lazy = stats_of(a, True)
    assert lazy.trace() == pytest.approx(np.trace(np.cov(a, rowvar=False)), rel=1e-12)
    np.testing.assert_allclose(lazy.sigma, np.cov(a, rowvar=False), rtol=1e-10)
    assert lazy.trace() == pytest.approx(np.trace(lazy.sigma), rel=1e-12)
    assert frechet_distance(stats_of(a, True), stats_of(a, True)) == pytest.approx(0, abs=1e-8)


def test_statistics_need_two_images() -> None:
    with pytest.raises(InputError, match=r"^photos: 1 image; FID needs at least 2"):
        statistics(np.zeros((1, 2048)), "photos")


def test_stats_files_round_trip_and_bad_files(tmp_path: Path) -> None:
    stats = statistics(np.random.default_rng(0).standard_normal((5, 8)), "x")
    path = write_stats(tmp_path / "s.npz", stats)
    back = read_stats(path)
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert back.images == 5
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_stats(path, stats)
    np.savez(tmp_path / "other.npz", mean=stats.mu)
    with pytest.raises(InputError, match=r"other.npz: not FID statistics \(expected arrays mu"):
        read_stats(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"junk\.npz: unreadable FID statistics"):
        read_stats(tmp_path / "junk.npz")


def test_ids_of_separable_and_identical_sets() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 16))
    far = real + 10.0  # a linear classifier separates them perfectly
    assert inception_discriminative_scores(real, far) == {"p_ids": 0.0, "u_ids": 0.0}
    same = inception_discriminative_scores(real, real.copy())
    assert same["u_ids"] == pytest.approx(0.5)  # one point, both labels: half wrong
    assert same["p_ids"] == 0.0  # equal decision values never exceed


# --------------------------------------------------------------------------- the network


def test_weights_of_another_network_are_refused(tmp_path: Path, plain_weights: Path) -> None:
    state = torch.load(plain_weights, weights_only=True)
    no_tracking = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(no_tracking, tmp_path / "plain.pth")
    loaded = load_fid_inception(tmp_path / "plain.pth").state_dict()  # no counters: fine
    assert loaded.keys() == state.keys()  # every tensor from the file
    for key, value in state.items():
        expected = torch.zeros_like(value) if key.endswith("num_batches_tracked") else value
        torch.testing.assert_close(loaded[key], expected, rtol=0, atol=0, msg=key)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "vgg.pth")
    with pytest.raises(InputError, match=r"vgg.pth: not the FID Inception network .*missing"):
        load_fid_inception(tmp_path / "vgg.pth")
    wrong = dict(no_tracking, **{"fc.weight": torch.zeros(1000, 2048)})
    torch.save(wrong, tmp_path / "imagenet.pth")
    with pytest.raises(InputError, match=r"imagenet.pth: .*fc.weight has shape \(1000, 2048\)"):
        load_fid_inception(tmp_path / "imagenet.pth")


def test_folding_batch_norm_keeps_the_features(weights: Path) -> None:
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        expected = load_fid_inception(weights)(x)
        folded = fold_batch_norm(load_fid_inception(weights))
        got = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert expected.std() > 0.05
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_features_match_the_independent_forward(weights: Path) -> None:
    images = crops(3, seed=5, size=(120, 90))
    ours = InceptionFeatures.from_file(weights, torch.device("cpu"), batch_size=2)
    got = np.concatenate([ours(np.stack([im])) for im in images])
    expected = reference_features(torch.load(weights, weights_only=True), images)
    assert expected.std() > 0.05  # calibrated: features that vary, not zeros
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


@pytest.mark.slow
def test_ctsdg_fid_agrees_with_the_reference_on_photographs(
    weights: Path, folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = folders
    assert main(["fid", str(a), str(b), "--weights", str(weights), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == [8, 8]
    state = torch.load(weights, weights_only=True)
    from PIL import Image

    def read(folder: Path) -> list[np.ndarray]:
        return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.rglob("*.png"))]

    expected = reference_fid(reference_features(state, read(a)), reference_features(state, read(b)))
    assert report["fid"] == pytest.approx(expected, rel=1e-3)
    assert expected > 1.0  # two different sets: far from 0
    assert main(["fid", str(a), str(a), "--weights", str(weights)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("FID: ") and abs(float(line[5:])) < 1e-6 * expected


@pytest.mark.slow
def test_save_stats_then_score_against_the_file(
    tmp_path: Path, weights: Path, folders: tuple[Path, Path], capsys
) -> None:
    a = folders[0]
    out = tmp_path / "a.npz"
    argv = ["fid", "--save-stats", str(a), str(out), "--weights", str(weights)]
    assert main(argv) == 0
    assert read_stats(out).images == 8 and read_stats(out).mu.shape == (2048,)
    assert main(argv) == 2
    assert "a.npz exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_cli_one_line_errors(tmp_path: Path, plain_weights: Path, capsys) -> None:
    weights = plain_weights
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    stats = write_stats(tmp_path / "s.npz", statistics(np.eye(3), "x"))
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    cases = {
        (str(empty), str(stats)): f"{empty}: no images (",
        (str(tmp_path / "bad.npz"), str(stats)): "bad.npz: not FID statistics",
        (str(tmp_path / "missing"), str(stats)): "missing: not found",
    }
    for paths, message in cases.items():
        assert main(["fid", *paths, "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    one = tmp_path / "one"
    write_folder(one, crops(1, seed=3, size=(32, 32)))
    assert main(["fid", str(one), str(stats), "--weights", str(weights)]) == 2
    assert "one: 1 image; FID needs at least 2" in capsys.readouterr().err
    vgg = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, vgg)
    assert main(["fid", str(one), str(stats), "--weights", str(vgg)]) == 2
    assert "vgg.pth: not the FID Inception network" in capsys.readouterr().err


def test_both_paths_are_checked_before_weights_are_fetched(tmp_path: Path, monkeypatch, capsys):
    import ctsdg.weights

    monkeypatch.setattr(ctsdg.weights, "fetch", lambda *a, **k: pytest.fail("fetched weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: auto would fetch
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    write_folder(photos, crops(2, seed=4, size=(32, 32)))
    empty.mkdir()
    for argv in (["fid", str(photos), str(empty)], ["fid", "--save-stats", str(empty), "o.npz"]):
        assert main([*argv, "--weights", "auto"]) == 2
        err = capsys.readouterr().err
        assert f"{empty}: no images (" in err and err.count("\n") == 1, err
