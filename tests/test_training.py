"""Training: schedule, logs and files, exact resume, stopping, and two-process DDP on CPU."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ctsdg.checkpoints import list_checkpoints, load_weights
from ctsdg.cli import main
from ctsdg.config import load_config, shipped_config
from ctsdg.errors import InputError
from ctsdg.models import Generator
from ctsdg.training import NonFiniteLossError, train
from ctsdg.training.schedule import learning_rates, set_train_mode, stage_at, stage_plan

ROOT = Path(__file__).resolve().parents[1]

# A few seconds of CPU per run: width 8, 128 x 128, batch 2, no worker processes.
TINY = {
    "dataset": "demo",
    "width": 8,
    "image_load_size": [128, 128],
    "batch_size": 2,
    "pretrained_vgg": "random",
    "num_parallel_workers": 0,
    "log_frequency_step": 1,
    "save_checkpoint_steps": 2,
    "sample_every": 0,
    "tensorboard": False,
    "progress": False,
}


def _config(tmp_path: Path, **overrides):
    return load_config(overrides={**TINY, "save_path": str(tmp_path / "run"), **overrides})


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same(a, b, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=path)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


# --------------------------------------------------------------------------- schedule


def test_stage_plan_and_learning_rates() -> None:
    config = load_config(overrides={"train_iter": 3, "finetune_iter": 2})
    plan = stage_plan(config)
    assert plan == [("train", 3), ("finetune", 2)]
    assert [stage_at(i, plan) for i in range(5)] == ["train"] * 3 + ["finetune"] * 2
    assert learning_rates(config, "train") == (2e-4, pytest.approx(2e-5))
    # The finetune rate is gen_lr_finetune (the MindSpore port kept 2e-4).
    assert learning_rates(config, "finetune") == (5e-5, pytest.approx(5e-6))
    assert stage_plan(load_config(overrides={"stage": "finetune", "finetune_iter": 2})) == [
        ("finetune", 2)
    ]


@pytest.mark.parametrize("scope", ["encoder", "all"])
def test_finetune_freezes_the_chosen_batchnorm(scope: str) -> None:
    from ctsdg.models import Generator

    generator = Generator(width=8)
    set_train_mode(generator, "finetune", scope)
    encoder_bn = [m for m in generator.texture_encoder.modules() if "BatchNorm" in type(m).__name__]
    decoder_bn = [m for m in generator.texture_decoder.modules() if "BatchNorm" in type(m).__name__]
    assert encoder_bn and not any(m.training for m in encoder_bn)
    assert all(m.training for m in decoder_bn) == (scope == "encoder")
    assert generator.training
    set_train_mode(generator, "train", scope)
    assert all(m.training for m in generator.modules())


# --------------------------------------------------------------------------- a short run


def test_run_writes_logs_checkpoints_and_samples(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        train_iter=3,
        finetune_iter=2,
        sample_every=2,
        keep_checkpoint_max=2,
        tensorboard=True,
        finetune_freeze_bn="encoder",
        val_every=4,
        val_samples=3,
        test_batch_size=2,
    )
    result = train(config)
    run = Path(config.save_path)
    assert result.status == "finished" and result.iteration == 5
    lines = (run / "log.txt").read_text().splitlines()
    pattern = re.compile(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d iter: (\d+), loss_g: [\d.]+, loss_d: [\d.]+, "
        r"step time: \d+\.\d\d ms"
    )
    assert [int(m[1]) for line in lines if (m := pattern.fullmatch(line))] == [1, 2, 3, 4, 5]
    assert any("stage finetune" in line for line in lines)
    validation = [line for line in lines if "validation on 3 images: PSNR" in line]
    assert len(validation) == 1 and validation[0].startswith("iter: 4,")
    # keep_checkpoint_max=2: iterations 4 and 5 remain (2 was pruned).
    assert [i for i, _ in list_checkpoints(run)] == [4, 5]
    final = _state(result.checkpoint)
    assert final["iteration"] == 5 and final["stage"] == "finetune"
    assert final["config"] == config.to_dict()
    assert load_config(run / "config.yaml").to_dict() == config.to_dict()
    assert final["optimizer_g"]["param_groups"][0]["lr"] == pytest.approx(config.gen_lr_finetune)
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "iter_0000002.png",
        "iter_0000004.png",
    ]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # The checkpoint is a user-facing file too.
    weights = load_weights(run)
    assert weights.structure == "correct" and weights.extra["iteration"] == 5


def test_finetune_keeps_encoder_statistics(tmp_path: Path) -> None:
    config = _config(tmp_path, train_iter=1, finetune_iter=2, save_checkpoint_steps=1)
    train(config)
    run = Path(config.save_path)
    after_train, after_finetune = (
        _state(run / "checkpoints" / f"checkpoint_000000{i}.pt")["generator"] for i in (1, 3)
    )
    enc = "texture_encoder.1.bn.running_mean"
    dec = "texture_decoder.0.bn.running_mean"
    torch.testing.assert_close(after_train[enc], after_finetune[enc], atol=0, rtol=0)
    assert not torch.equal(after_train[dec], after_finetune[dec])


def test_resume_is_exact(tmp_path: Path) -> None:
    straight = train(_config(tmp_path / "a", train_iter=3, finetune_iter=1))
    first = _config(tmp_path / "b", train_iter=2, finetune_iter=0)
    train(first)
    resumed = train(_config(tmp_path / "b", train_iter=3, finetune_iter=1, resume="auto"))
    assert resumed.iteration == 4
    a, b = _state(straight.checkpoint), _state(resumed.checkpoint)
    for key in ("generator", "discriminator", "optimizer_g", "optimizer_d", "scaler", "rng"):
        _assert_same(a[key], b[key], key)


def test_resume_auto_with_nothing_starts_fresh_and_bad_paths_fail(tmp_path: Path) -> None:
    result = train(_config(tmp_path, train_iter=1, finetune_iter=0, resume="auto"))
    assert result.iteration == 1
    with pytest.raises(InputError, match="not found"):
        train(_config(tmp_path, train_iter=2, finetune_iter=0, resume=str(tmp_path / "x.pt")))


def test_non_finite_loss_stops_without_saving(tmp_path: Path, monkeypatch) -> None:
    from ctsdg import losses

    real = losses.generator_loss_terms
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["style"] = terms["style"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "generator_loss_terms", poisoned)
    config = _config(tmp_path, train_iter=5, finetune_iter=0, save_checkpoint_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: .*g_style"):
        train(config)
    saved = list_checkpoints(config.save_path)
    assert [i for i, _ in saved] == [1, 2]
    state = _state(saved[-1][1])
    assert all(
        torch.isfinite(t).all() for t in state["generator"].values() if t.is_floating_point()
    )
    assert "loss term(s) g_style not finite" in (Path(config.save_path) / "log.txt").read_text()


def test_pretrained_weights_must_fit(tmp_path: Path) -> None:
    first = train(_config(tmp_path / "a", train_iter=1, finetune_iter=0))
    with pytest.raises(InputError, match="width=8"):
        train(_config(tmp_path / "b", width=16, train_iter=1, pretrained=str(first.checkpoint)))
    result = train(
        _config(tmp_path / "c", stage="finetune", finetune_iter=1, pretrained=str(first.checkpoint))
    )
    assert result.iteration == 1


# --------------------------------------------------------------------------- command line


def test_cli_train_and_errors(tmp_path: Path, capsys) -> None:
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in TINY.items()]
    save = f"save_path={tmp_path / 'run'}"
    assert main(["train", "--config", "demo", *args, save, "train_iter=1", "finetune_iter=0"]) == 0
    assert main(["train", "--config", "demo", *args, save, "resume=auto", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "training images" in out and "checkpoint_0000001.pt" in out
    assert main(["train", "--config", "demo", "bogus_key=1"]) == 2
    assert "unknown config key 'bogus_key'" in capsys.readouterr().err
    assert main(["train", "--config", "celeba", "data_root=/nonexistent/celeba", "--dry-run"]) == 2
    assert "/nonexistent/celeba" in capsys.readouterr().err


def _dry_run_cases(tmp_path: Path) -> dict[str, list[str]]:
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "file").write_text("not a folder")
    return {
        "pretrained": ["pretrained=" + str(tmp_path / "missing.pth")],
        "resume": ["resume=" + str(tmp_path / "missing.pt")],
        "data": ["dataset=folder", "data_root=" + str(tmp_path / "no_images")],
        "masks": ["train_masks_root=" + str(tmp_path / "no_masks")],
        "vgg": ["pretrained_vgg=" + str(tmp_path / "vgg16-397923af.pth")],
        "used run folder": ["save_path=" + str(used)],
        "unusable run folder": ["save_path=" + str(tmp_path / "file" / "run")],
        "device": ["device=cuda:7"],
    }


@pytest.mark.parametrize(
    "case",
    [
        "pretrained",
        "resume",
        "data",
        "masks",
        "vgg",
        "used run folder",
        "unusable run folder",
        "device",
    ],
)
def test_dry_run_refuses_what_the_run_refuses(tmp_path: Path, capsys, case: str) -> None:
    args = [
        *_tiny_args(tmp_path),
        "train_iter=1",
        "finetune_iter=0",
        *_dry_run_cases(tmp_path)[case],
    ]
    assert main(["train", "--config", "demo", *args, "--dry-run"]) == 2
    dry = capsys.readouterr().err.strip().splitlines()
    assert main(["train", "--config", "demo", *args]) == 2
    real = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in dry if line.startswith("ctsdg: error:")]
    assert len(errors) == 1 and errors == [
        line for line in real if line.startswith("ctsdg: error:")
    ]
    # The refused run left no folder behind (not even one holding only .lock).
    assert not (tmp_path / "run").exists()


def test_dry_run_passes_where_the_run_starts(tmp_path: Path, capsys) -> None:
    args = [*_tiny_args(tmp_path), "train_iter=1", "finetune_iter=0"]
    assert main(["train", "--config", "demo", *args, "--dry-run"]) == 0
    assert "device cpu" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()  # a dry run creates nothing
    assert main(["train", "--config", "demo", *args]) == 0
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_0000001.pt").is_file()


def test_a_refused_run_removes_only_what_it_created(tmp_path: Path) -> None:
    from ctsdg.training.run_folder import RunFolder

    with RunFolder(tmp_path / "a" / "b", fresh=True, overwrite=False):
        assert (tmp_path / "a" / "b" / ".lock").exists()
    assert not (tmp_path / "a").exists()  # nothing but the lock: gone, with the parent it made
    (tmp_path / "kept").mkdir()
    with RunFolder(tmp_path / "kept", fresh=True, overwrite=False):
        pass
    assert (tmp_path / "kept").is_dir()  # the user's folder stays


def test_shipped_configs_load() -> None:
    for name in ("celeba", "places2", "paris_streetview", "demo"):
        config = load_config(shipped_config(name))
        assert config.batch_size >= 1
    celeba = load_config(shipped_config("celeba"))
    assert (celeba.gen_lr_train, celeba.gen_lr_finetune, celeba.batch_size) == (2e-4, 5e-5, 6)
    assert (celeba.train_iter, celeba.finetune_iter, celeba.seed) == (350_000, 150_000, 42)


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _tiny_args(tmp_path: Path, **extra) -> list[str]:
    values = {**TINY, "save_path": str(tmp_path / "run"), **extra}
    return [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,workers",
    [(signal.SIGTERM, 0), (signal.SIGINT, 1)],  # SIGINT to the whole group, as Ctrl-C does
)
@pytest.mark.slow
def test_signal_saves_a_checkpoint_and_resume_continues(tmp_path: Path, sig, workers) -> None:
    cmd = [
        sys.executable,
        "-m",
        "ctsdg",
        "train",
        "--config",
        "demo",
        *_tiny_args(
            tmp_path,
            train_iter=10_000,
            finetune_iter=0,
            save_checkpoint_steps=10_000,
            num_parallel_workers=workers,
        ),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_cli_env(),
        cwd=tmp_path,
        start_new_session=True,
    )
    for line in proc.stdout:
        if "iter: 2," in line:
            os.killpg(proc.pid, sig)  # the DataLoader's worker gets it too
            break
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    saved = list_checkpoints(tmp_path / "run")
    assert len(saved) == 1 and 2 <= saved[0][0] < 10_000
    assert "resume=auto" in output and "Traceback" not in output
    result = train(_config(tmp_path, train_iter=saved[0][0] + 1, finetune_iter=0, resume="auto"))
    assert result.iteration == saved[0][0] + 1


# --------------------------------------------------------------------------- DDP on CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, tmp: str, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from ctsdg.training import distributed, trainer

    # Observe from outside: the replica digests of the last consistency check and the samples
    # this rank trained on.
    digests: list[str] = []
    seen: list[int] = []
    check, step = distributed.check_consistency, trainer.generator_step

    def recording_check(module, ctx, what):
        digests.append(check(module, ctx, what))
        return digests[-1]

    def recording_step(state, batch):
        seen.extend(batch.index.tolist())
        return step(state, batch)

    distributed.check_consistency = recording_check
    trainer.generator_step = recording_step
    result = train(_config(Path(tmp), train_iter=3, finetune_iter=1, device="cpu"))
    queue.put((rank, digests[-2:], seen, result.iteration))


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [
        ctx.Process(target=_ddp_worker, args=(rank, 2, port, str(tmp_path), queue))
        for rank in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    results = sorted(queue.get(timeout=10) for _ in procs)
    (_, digest0, seen0, it0), (_, digest1, seen1, it1) = results
    assert it0 == it1 == 4
    assert len(digest0) == 2 and digest0 == digest1  # identical replicas after 4 steps
    assert len(seen0) == len(seen1) == 8 and not set(seen0) & set(seen1)  # disjoint shards
    # Only rank 0 wrote files.
    assert [i for i, _ in list_checkpoints(tmp_path / "run")] == [2, 4]


@pytest.mark.slow
def test_torchrun_launch(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ctsdg",
        "train",
        "--config",
        "demo",
        *_tiny_args(tmp_path, train_iter=2, finetune_iter=0),
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=_cli_env(), cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on 2 x cpu" in done.stdout
    assert done.stdout.count("iter: 2, loss_g") == 1  # rank 0 alone logs
    assert [i for i, _ in list_checkpoints(tmp_path / "run")] == [2]
    assert "FutureWarning" not in done.stderr and "broadcast_buffers" not in done.stderr


# --------------------------------------------------------------------------- steps, directly


def _one_batch(config):
    from ctsdg.data import collate, dataset_from_config

    dataset = dataset_from_config(config, "train")
    return collate([dataset[i] for i in range(config.batch_size)])


def _step_terms(config) -> tuple[dict[str, float], object]:
    """Loss terms of one generator and one discriminator step from the seed's weights."""
    from ctsdg.training.distributed import Context
    from ctsdg.training.schedule import set_stage
    from ctsdg.training.steps import build_state, discriminator_step, generator_step, to_device

    ctx = Context(0, 1, 0, torch.device("cpu"))
    state = build_state(config, ctx)
    set_stage(state, "train")
    batch = to_device(_one_batch(config), ctx, config.channels_last)
    out, g_terms = generator_step(state, batch)
    d_terms = discriminator_step(state, batch, out.output)
    return {k: v.item() for k, v in {**g_terms, **d_terms}.items()}, state


def test_channels_last_training_step_matches_the_default(tmp_path: Path) -> None:
    plain, _ = _step_terms(_config(tmp_path))
    nhwc, state = _step_terms(_config(tmp_path, channels_last=True))
    weight = state.raw_generator.texture_encoder[1].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.keys() == plain.keys()
    for name, value in plain.items():
        assert nhwc[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


@pytest.mark.slow
def test_compiled_training_step_matches_eager(tmp_path: Path, monkeypatch) -> None:
    import functools

    # compile=true wraps the generator in torch.compile; traced and differentiated through
    # AOT autograd like inductor, but without its C++ build (minutes on 2 cores).
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    eager, _ = _step_terms(_config(tmp_path))
    compiled, state = _step_terms(_config(tmp_path, compile=True))
    assert hasattr(state.generator, "_orig_mod")  # torch.compile's wrapper, around the generator
    assert state.discriminator is state.raw_discriminator  # stays eager (spectral norm)
    for name, value in eager.items():
        assert compiled[name] == pytest.approx(value, rel=1e-3, abs=1e-5), name


def test_validation_in_finetune_keeps_modes_and_learning_rates(tmp_path: Path) -> None:
    from ctsdg.training.distributed import Context
    from ctsdg.training.monitor import Monitor
    from ctsdg.training.schedule import set_stage
    from ctsdg.training.steps import build_state
    from ctsdg.training.validation import validate

    config = _config(tmp_path, val_samples=2, test_batch_size=2)
    state = build_state(config, Context(0, 1, 0, torch.device("cpu")))
    set_stage(state, "finetune")
    for group in state.optimizer_g.param_groups:
        group["lr"] = 1.2345e-6  # whatever the schedule did, validation must not touch it
    before = {name: m.training for name, m in state.raw_generator.named_modules()}
    encoder_bn = [
        m
        for m in state.raw_generator.texture_encoder.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert encoder_bn and not any(m.training for m in encoder_bn)
    monitor = Monitor(tmp_path / "run", 1, 0, progress=False, tensorboard=False)
    psnr, ssim = validate(state, 1, monitor)
    monitor.close()
    assert psnr > 0 and 0 < ssim <= 1
    assert {name: m.training for name, m in state.raw_generator.named_modules()} == before
    assert state.optimizer_g.param_groups[0]["lr"] == 1.2345e-6


def test_monitor_averages_the_window_over_iterations(tmp_path: Path, capsys) -> None:
    from ctsdg.training.distributed import Context
    from ctsdg.training.monitor import Monitor

    monitor = Monitor(tmp_path, 4, 0, progress=True, tensorboard=False)
    ctx = Context(0, 1, 0, torch.device("cpu"))
    for g, d in ((1.0, 4.0), (3.0, 2.0)):
        monitor.record({"g_total": torch.tensor(g), "d_total": torch.tensor(d)})
    values = monitor.report(2, ctx, (1e-4, 1e-5), 2)
    assert values == {"g_total": 2.0, "d_total": 3.0}
    monitor.record({"g_total": torch.tensor(5.0), "d_total": torch.tensor(1.0)})
    assert monitor.report(3, ctx, (1e-4, 1e-5), 2) == {"g_total": 5.0, "d_total": 1.0}
    monitor.close()
    captured = capsys.readouterr()
    assert "iter: 2, loss_g: 2.0, loss_d: 3.0" in captured.out
    assert captured.err == ""  # not a terminal: no progress bar written into the log


# --------------------------------------------------------------------------- run folders, faults


def _error_lines(err: str) -> list[str]:
    """The CLI's error lines (stderr also carries warnings, one line each)."""
    return [line for line in err.splitlines() if line.startswith("ctsdg: error:")]


def test_unwritable_save_path_is_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match=r"file/run: not a directory \(a parent in the path"):
        train(_config(tmp_path, save_path=str(blocker / "run"), train_iter=1, finetune_iter=0))
    args = _tiny_args(tmp_path, save_path=str(blocker / "run"), train_iter=1, finetune_iter=0)
    assert main(["train", "--config", "demo", *args]) == 2
    (err,) = _error_lines(capsys.readouterr().err)
    assert "not a directory (a parent in the path is a file)" in err and str(blocker) in err


def test_full_disk_names_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    import errno

    real_save, calls = torch.save, {"n": 0}

    def filling_disk(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", getattr(f, "name", None))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_disk)
    config = _config(tmp_path, train_iter=3, finetune_iter=0, save_checkpoint_steps=1)
    with pytest.raises(InputError) as info:
        train(config)
    message = str(info.value)
    first = Path(config.save_path) / "checkpoints" / "checkpoint_0000001.pt"
    assert "no space left on the device" in message and str(first) in message
    assert "\n" not in message
    folder = Path(config.save_path) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_0000001.pt"]  # no .tmp


def test_stale_temporary_files_are_removed_on_start(tmp_path: Path) -> None:
    config = _config(tmp_path, train_iter=1, finetune_iter=0)
    train(config)
    folder = Path(config.save_path) / "checkpoints"
    stale = [folder / ".checkpoint_0000002.pt.x1y2z3.tmp", Path(config.save_path) / ".cfg.a.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    train(_config(tmp_path, train_iter=2, finetune_iter=0, resume="auto"))
    assert not any(path.exists() for path in stale)


def test_fresh_run_refuses_a_folder_holding_a_run(tmp_path: Path, capsys) -> None:
    first = train(_config(tmp_path, train_iter=2, finetune_iter=0))
    with pytest.raises(InputError, match=r"holds a run already .*resume=auto.*--overwrite"):
        train(_config(tmp_path, train_iter=1, finetune_iter=0, seed=1))
    assert first.checkpoint.is_file()
    args = _tiny_args(tmp_path, train_iter=1, finetune_iter=0)
    assert main(["train", "--config", "demo", *args]) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1
    # --overwrite deletes the old run's checkpoints first: iteration 2 no longer shadows 1.
    assert main(["train", "--config", "demo", *args, "--overwrite"]) == 0
    assert [i for i, _ in list_checkpoints(tmp_path / "run")] == [1]


def test_run_folder_is_locked_while_training(tmp_path: Path) -> None:
    import fcntl

    config = _config(tmp_path, train_iter=1, finetune_iter=0)
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "w") as held:  # another process's training
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another ctsdg train is using this run folder"):
            train(config)
    # Released by its holder (or by the kernel when a process dies): the folder is free again,
    # and train releases it on return.
    train(config)
    with open(tmp_path / "run" / ".lock", "w") as again:
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_resume_auto_falls_back_past_a_corrupt_checkpoint(tmp_path: Path, caplog) -> None:
    config = _config(tmp_path, train_iter=2, finetune_iter=0, save_checkpoint_steps=1)
    train(config)
    (_, older), (_, newest) = list_checkpoints(config.save_path)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated: a damaged disk, a bad copy
    with caplog.at_level("WARNING", logger="ctsdg"):
        result = train(_config(tmp_path, train_iter=3, finetune_iter=0, resume="auto"))
    assert result.iteration == 3
    assert f"falls back to the previous one, {older}" in caplog.text and str(newest) in caplog.text
    for _, path in list_checkpoints(config.save_path):
        path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="no intact training checkpoint"):
        train(_config(tmp_path, train_iter=4, finetune_iter=0, resume="auto"))


def test_resume_auto_passes_over_a_checkpoint_with_nan_weights(tmp_path: Path, caplog) -> None:
    config = _config(tmp_path, train_iter=2, finetune_iter=0, save_checkpoint_steps=1)
    train(config)
    (_, older), (_, newest) = list_checkpoints(config.save_path)
    data = torch.load(newest, weights_only=True)
    next(iter(data["generator"].values())).view(-1)[0] = float("nan")  # a diverged run
    torch.save(data, newest)
    diverged = tmp_path / "diverged.pt"
    torch.save(data, diverged)  # newest is written again by the resumed run
    with caplog.at_level("WARNING", logger="ctsdg"):
        result = train(_config(tmp_path, train_iter=3, finetune_iter=0, resume="auto"))
    assert result.iteration == 3
    assert "NaN or infinite" in caplog.text and f"previous one, {older}" in caplog.text
    from ctsdg.training.trainer import prepare

    named = _config(tmp_path, train_iter=4, finetune_iter=0, resume=str(diverged))
    with pytest.raises(InputError, match="holds NaN or infinite values"):
        prepare(named, overwrite=False, fetch=False)  # what --dry-run runs


def test_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        result = train(_config(tmp_path, train_iter=1, finetune_iter=0))
    finally:
        os.umask(previous)
    for path in (result.checkpoint, tmp_path / "run" / "config.yaml"):
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_interrupted_demo_stops_with_130(tmp_path: Path, monkeypatch, capsys) -> None:
    from ctsdg.training import trainer

    step = trainer.generator_step

    def signalled(state, batch):  # SIGTERM arrives during the first step, as from `kill`
        os.kill(os.getpid(), signal.SIGTERM)
        return step(state, batch)

    monkeypatch.setattr(trainer, "generator_step", signalled)
    run = tmp_path / "demo"
    args = [
        "demo",
        f"save_path={run}",
        "width=8",
        "train_iter=50",
        "finetune_iter=0",
        "batch_size=2",
        "--no-progress",
    ]
    assert main(args) == 130
    out = capsys.readouterr()
    assert "training stopped at iteration 1" in out.out and "ctsdg: interrupted" in out.err
    assert [i for i, _ in list_checkpoints(run)] == [1]
    assert not (run / "report.md").exists() and not (run / "eval").exists()


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"format": "something-else"}, "not a ctsdg training checkpoint"),
        ({"format": "ctsdg-checkpoint", "version": 99, "model": {}}, "version 99"),
        ({"format": "ctsdg-checkpoint", "version": 1}, "lacks model"),
        ({"format": "ctsdg-checkpoint", "model": {"width": 8}}, "model config"),
        (
            {"format": "ctsdg-checkpoint", "structure": "wrapped", "model": {}},
            "unknown structure convention 'wrapped'",
        ),
    ],
)
def test_bad_training_checkpoints_are_named(tmp_path: Path, data, expected) -> None:
    from ctsdg.training.checkpoint import read_training_checkpoint

    path = tmp_path / "checkpoint_0000001.pt"
    torch.save(data, path)
    with pytest.raises(InputError, match=expected) as info:
        read_training_checkpoint(path)
    assert str(info.value).startswith(str(path))


def test_weights_only_checkpoint_cannot_be_resumed(tmp_path: Path) -> None:
    from ctsdg.checkpoints import save_training_checkpoint
    from ctsdg.models import Generator

    path = tmp_path / "weights.pt"
    generator = Generator(width=8).state_dict()
    save_training_checkpoint(
        path, {"model": {"width": 8, "align_corners": False}, "generator": generator}
    )
    assert load_weights(path).generator is not None  # fine for inference
    with pytest.raises(InputError, match="cannot resume exactly, checkpoint lacks iteration"):
        train(_config(tmp_path, train_iter=1, finetune_iter=0, resume=str(path)))


def test_resuming_from_damaged_state_is_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, train_iter=1, finetune_iter=0)
    saved = train(config).checkpoint
    data = _state(saved)
    data["generator"] = {**data["generator"], "texture_encoder.0.conv.weight": "oops"}
    torch.save(data, saved)
    again = _config(tmp_path, train_iter=2, finetune_iter=0, resume="auto")
    with pytest.raises(InputError) as info:
        train(again)
    assert "generator weight 'texture_encoder.0.conv.weight' is str" in str(info.value)
    data.update(generator=Generator(width=8).state_dict(), optimizer_g={"x": 1})
    torch.save(data, saved)
    with pytest.raises(InputError, match=r"cannot resume from this checkpoint \("):
        train(again)


@pytest.mark.parametrize(
    "code,reason",
    [
        ("ENOSPC", "no space left on the device"),
        ("EROFS", "read-only file system"),
        ("EACCES", "permission denied"),
        ("ENOTDIR", "not a directory (a parent in the path is a file)"),
        ("ECONNRESET", "Connection reset by peer"),  # no wording of ours: the system's
    ],
)
def test_os_errors_in_words(code: str, reason: str) -> None:
    import errno

    from ctsdg.errors import describe_os_error

    number = getattr(errno, code)
    err = OSError(number, os.strerror(number), "/x/y")
    assert describe_os_error("/out", err) == f"/out: {reason}"
    assert describe_os_error(None, err) == f"/x/y: {reason}"


def test_monitor_without_a_bar_prints_progress_lines(tmp_path: Path, capsys, monkeypatch) -> None:
    import time

    from ctsdg import heartbeat
    from ctsdg.training import monitor

    monkeypatch.setattr(heartbeat, "QUIET_LIMIT_S", 0.2)
    monkeypatch.setattr(heartbeat, "POLL_S", 0.02)
    watch = monitor.Monitor(tmp_path, total=5, start=1, progress=True, tensorboard=False)
    watch.record({"g_total": torch.tensor(1.0)})
    watch.record({"g_total": torch.tensor(1.0)})
    time.sleep(0.5)  # a slow step: the thread speaks without waiting for the step's end
    watch.print("a line of the run's own")
    watch.close()
    lines = capsys.readouterr().out.splitlines()
    beats = [line for line in lines if "training: iter" in line]
    assert beats and lines[-1] == "a line of the run's own"
    assert all(" training: iter 3 of 5; 2 of 4 (50 %), " in line for line in beats)
    assert all(line.endswith("minutes left of this run") for line in beats)
    assert (tmp_path / "log.txt").read_text() == "a line of the run's own\n"  # not the log
    time.sleep(0.3)
    assert capsys.readouterr().out == ""  # closed: the thread is gone


def test_heartbeat_eta_wording() -> None:
    from ctsdg.heartbeat import eta

    assert eta(0, 400, 5.0) == "0 of 400 (0 %)"
    assert eta(100, 400, 50.0) == "100 of 400 (25 %), 0.50 s each, about 2.5 minutes left"


def test_nested_heartbeats_speak_one_at_a_time(capsys, monkeypatch) -> None:
    import time

    from ctsdg import heartbeat

    monkeypatch.setattr(heartbeat, "QUIET_LIMIT_S", 0.15)
    monkeypatch.setattr(heartbeat, "POLL_S", 0.01)
    with heartbeat.Heartbeat(lambda: "outer"):
        time.sleep(0.4)
        with heartbeat.Heartbeat(lambda: "inner"):
            time.sleep(0.4)
        time.sleep(0.4)
    words = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    first_inner, last_inner = words.index("inner"), len(words) - 1 - words[::-1].index("inner")
    assert words[0] == "outer" and words[-1] == "outer"  # the outer one before and after
    assert set(words[first_inner : last_inner + 1]) == {"inner"}  # never both at once
    assert 3 <= len(words) <= 10  # at most one line per quiet spell of 0.15 s in 1.2 s


# --------------------------------------------------------------------------- a disk that fills


class _FillingDisk:
    """Every write point of a run, counted: the first write to each file opened for writing,
    every write to a file opened for appending (log lines), every fsync. From point
    ``fail_at`` on, each one fails with ``code``: a full disk stays full."""

    def __init__(self, fail_at: int | None = None, code: int = errno.ENOSPC) -> None:
        self.fail_at, self.code = fail_at, code
        self.points: list[tuple[str, int]] = []  # (file, checkpoints complete before it)
        self.completed: list[Path] = []

    def hit(self, name: str) -> None:
        self.points.append((name, len(self.completed)))
        if self.fail_at is not None and len(self.points) >= self.fail_at:
            raise OSError(self.code, os.strerror(self.code))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import builtins
        import io

        real_open, real_fsync, real_replace = builtins.open, os.fsync, os.replace
        disk = self

        class Faulty:
            """A file opened for writing, without fileno (so PIL writes through ``write``)."""

            def __init__(self, f, append: bool) -> None:
                self._f, self._append, self._first = f, append, True

            def write(self, data):
                if self._first or self._append:
                    self._first = False
                    disk.hit(str(self._f.name))
                return self._f.write(data)

            def fileno(self):
                raise io.UnsupportedOperation("fileno")

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

        def faulty_open(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if isinstance(file, int) or not any(c in mode for c in "wax+"):
                return f
            return Faulty(f, "a" in mode)

        def fsync(fd):
            disk.hit(f"fsync {fd}")
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            real_replace(src, dst, *args, **kwargs)
            if str(dst).endswith(".pt"):
                disk.completed.append(Path(dst))

        monkeypatch.setattr(builtins, "open", faulty_open)
        monkeypatch.setattr(io, "open", faulty_open)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)


_FILLING = {
    "train_iter": 2,
    "finetune_iter": 0,
    "save_checkpoint_steps": 1,
    "sample_every": 1,
    "keep_checkpoint_max": 5,
}


def _fill_at(tmp_path: Path, monkeypatch, n: int | None, code: int = errno.ENOSPC):
    """The tiny run with the disk filling at write point ``n``. The networks' steps are
    replaced by no-ops (the write points are what is tested, and the real steps would make
    this minutes): the loop, logs, grids and checkpoints are the real ones."""
    from ctsdg.models import GeneratorOutput
    from ctsdg.training import trainer

    def generator_step(state, batch):
        out = GeneratorOutput(batch.image.clone(), batch.image, batch.edge)
        return out, {"g_total": torch.tensor(1.0)}

    disk = _FillingDisk(n, code)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "generator_step", generator_step)
        patch.setattr(trainer, "discriminator_step", lambda *a: {"d_total": torch.tensor(0.5)})
        disk.install(patch)
        try:
            train(_config(tmp_path, **_FILLING))
            error = None
        except InputError as err:
            error = str(err)
    return disk, error


def _check_filled_run(run: Path, message: str, completed: int, reason: str) -> None:
    assert "\n" not in message and message.startswith("cannot write ")
    named = message.removeprefix("cannot write ").split(": ")[0]
    assert named != "?" and not Path(named).name.startswith(".") and str(run) in named
    assert f": {reason}; the last good checkpoint is " in message
    found = list_checkpoints(run)
    # Every checkpoint that was complete before the disk filled is there and intact.
    assert [i for i, _ in found] == list(range(1, completed + 1))
    for _, path in found:
        assert _state(path)["iteration"] >= 1
    last = found[-1][1] if found else "none"
    assert f"the last good checkpoint is {last}" in message
    assert not list(run.rglob("*.tmp")), list(run.rglob("*.tmp"))  # nothing half-written
    if (run / "config.yaml").exists():
        assert load_config(run / "config.yaml").train_iter == 2


@pytest.mark.slow  # about 20 short runs: 10-30 s on 2 cores
def test_a_disk_that_fills_at_every_write_point(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC at each write point of a two-iteration run (config.yaml, log lines, sample
    grids, checkpoints, fsyncs; the disk stays full from there on): one line naming the real
    file, no temporary file left, every checkpoint written before it intact and named."""
    clean, error = _fill_at(tmp_path / "clean", monkeypatch, None)
    assert error is None and len(clean.completed) == 2
    assert len(clean.points) >= 12  # config, 5 log lines, 2 grids, 2 checkpoints, fsyncs
    for n, (_, completed) in enumerate(clean.points, start=1):
        folder = tmp_path / str(n)
        _, message = _fill_at(folder, monkeypatch, n)
        assert message is not None, f"point {n} did not fail the run"
        _check_filled_run(folder / "run", message, completed, "no space left on the device")
        if completed:
            assert message.endswith("(continue with resume=auto once there is room)")


def test_a_read_only_disk_mid_run_names_the_file_and_the_remedy(tmp_path: Path, monkeypatch):
    clean, _ = _fill_at(tmp_path / "clean", monkeypatch, None)
    # the second checkpoint's first write: the first checkpoint is complete
    n = next(i for i, (name, done) in enumerate(clean.points, 1) if done == 1 and ".pt" in name)
    _, message = _fill_at(tmp_path / "ro", monkeypatch, n, errno.EROFS)
    _check_filled_run(tmp_path / "ro" / "run", message, 1, "read-only file system")
    assert "checkpoint_0000002.pt: read-only" in message
    assert message.endswith("(continue with resume=auto once the file system is writable again)")
    assert "room" not in message
    assert clean.points[n][0].startswith("fsync")  # the same file's fsync, next
    _, message = _fill_at(tmp_path / "eio", monkeypatch, n + 1, errno.EIO)
    _check_filled_run(tmp_path / "eio" / "run", message, 1, os.strerror(errno.EIO))
    assert "checkpoint_0000002.pt: " in message and message.endswith("once the cause is fixed)")


# --------------------------------------------------------------------------- outside torchrun


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc': expected a whole number >= 1"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': expected a whole number >= 1"),
        ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK='-1': expected a whole number >= 0"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 but WORLD_SIZE=2"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not"),
        ({"WORLD_SIZE": "2", "CTSDG_DIST_TIMEOUT": "nan"}, "CTSDG_DIST_TIMEOUT='nan'"),
    ],
)
def test_distributed_variables_are_checked(monkeypatch, env: dict, expected: str) -> None:
    from ctsdg.training import distributed

    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError) as info:
        distributed.setup("cpu")
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_a_missing_second_process_is_waited_for_then_named(monkeypatch, caplog) -> None:
    import time

    from ctsdg.training import distributed

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    port = _free_port()
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(port), "CTSDG_DIST_TIMEOUT": "1"}.items():
        monkeypatch.setenv(key, value)
    start = time.perf_counter()
    with caplog.at_level("WARNING", "ctsdg"), pytest.raises(InputError) as info:
        distributed.setup("cpu")
    assert time.perf_counter() - start < 30
    assert f"waiting up to 1s at 127.0.0.1:{port} for the other 1 process(es)" in caplog.text
    message = str(info.value)
    assert message.startswith(f"rank 0 of 2 could not join the others at 127.0.0.1:{port}")
    assert "within 1s" in message and "\n" not in message
    assert not torch.distributed.is_initialized()


def test_monitor_names_the_file_a_failed_write_was_for(tmp_path: Path, monkeypatch) -> None:
    from ctsdg.training.monitor import Monitor

    monitor = Monitor(tmp_path, 10, 0, progress=False, tensorboard=True)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_room(*args, **kwargs):
        raise full

    monkeypatch.setattr(monitor._writer, "add_scalar", no_room)
    with pytest.raises(OSError) as info:
        monitor.scalars(1, {"loss/x": 1.0})
    assert info.value.filename == str(tmp_path / "tensorboard")
    monkeypatch.setattr(monitor._writer, "close", no_room)
    log_file = monitor._file
    with pytest.raises(OSError):
        monitor.close()  # the event files fail to close: log.txt is closed all the same
    assert log_file.closed
    monitor.close()  # once closed, nothing left to fail
