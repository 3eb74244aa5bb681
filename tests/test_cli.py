"""The command line's own rules: defaults in the help, one-line usage errors, exit statuses
carried by the error, log lines on the current stderr."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from ctsdg import cli
from ctsdg.cli import main
from ctsdg.errors import CommandError, InputError


def test_help_shows_defaults_from_the_formatter(capsys) -> None:
    assert main(["inpaint", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: auto)" in text and "(default: fp32)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8080)" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["inpaint", "a.png", "m.png"],  # -o and --checkpoint missing
        ["serve", "--port", "70000"],
        ["serve", "--max-queue", "0"],
        ["serve", "--timeout", "soon"],
        ["inpaint", "a.png", "m.png", "-o", "o.png", "--checkpoint", "c", "--precision", "fp8"],
    ],
)
def test_usage_errors_are_one_line_with_status_2(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "error:" in captured.err and "--help" in captured.err


@pytest.mark.parametrize(("error", "status"), [(InputError, 2), (CommandError, 1)])
def test_errors_carry_their_exit_status(monkeypatch, capsys, error, status) -> None:
    def fail(args) -> int:
        raise error("masks: something named went wrong")

    monkeypatch.setattr(cli.training, "_run_masks", fail)
    assert main(["masks", "out"]) == status
    assert capsys.readouterr().err == "ctsdg: error: masks: something named went wrong\n"


def test_log_lines_follow_the_current_stderr(monkeypatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    cli._configure_logging()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("ctsdg.test").warning("hello")
    assert first.getvalue() == "" and second.getvalue() == "ctsdg: WARNING: hello\n"


def test_unknown_flags_and_keys_get_a_did_you_mean(capsys) -> None:
    assert main(["eval", "--precison", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean '--precision'?" in err
    assert main(["eval", "checkpoint=run/"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'checkpoint'; did you mean 'checkpoint_path'?" in err


def test_eval_takes_the_inpaint_runtime_flags(monkeypatch, capsys) -> None:
    import ctsdg.evaluation

    seen = {}

    def fake_evaluate(config, **kwargs):
        seen.update(device=config.device, precision=config.precision, **kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(ctsdg.evaluation, "evaluate", fake_evaluate)
    argv = ["eval", "dataset=demo", "precision=fp16", "--precision", "bf16", "--device", "cpu"]
    assert main([*argv, "--backend", "compiled"]) == 2
    assert seen["precision"] == "bf16" and seen["device"] == "cpu"  # the flag wins
    assert seen["backend"] == "compiled"
    assert main(["eval", "dataset=demo", "precision=fp16"]) == 2
    assert seen["precision"] == "fp16" and seen["device"] == "auto"  # no flag: the keys
    assert main(["eval", "--help"]) == 0
    assert "10% buckets" in capsys.readouterr().out
