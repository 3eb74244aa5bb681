"""The suite itself: golden data complete in the repository, and the skip policy enforced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import skip_policy
from tests.golden import COPIED, DATA, STORED, golden

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", STORED)
def test_golden_data_loads_with_every_reference_array(name: str) -> None:
    # golden() checks every rebuilt input against the authors' array (SHA-256).
    arrays = golden(name)
    assert arrays and all(isinstance(a, np.ndarray) and a.size for a in arrays.values())
    inputs = {"generator_eval": {"image", "edge", "gray", "mask"}, "losses": {"feat_comp_0"}}
    assert inputs.get(name, set()) <= set(arrays)


def test_a_rule_that_stops_reproducing_an_input_fails_loudly(monkeypatch) -> None:
    import tests.golden

    wrong_seed = lambda: tests.golden._random_inputs(6, 1)  # noqa: E731
    monkeypatch.setitem(tests.golden._RULES, "generator_eval", wrong_seed)
    golden.cache_clear()
    try:
        with pytest.raises(AssertionError, match=r"generator_eval\.npz: the rebuilt 'image'"):
            golden("generator_eval")
    finally:
        golden.cache_clear()


def test_golden_data_is_in_the_repository_and_small() -> None:
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert {f"{n}.npz" for n in STORED} | set(COPIED) <= {
        p.relative_to(DATA).as_posix() for p in files
    }
    assert sum(p.stat().st_size for p in files) < 15_000_000
    # No test reads data from beside the repository any more.
    outside = re.compile(r"shared/reference|CTSDG_REFERENCE")
    readers = [p for p in (ROOT / "tests").glob("*.py") if outside.search(p.read_text())]
    assert readers == [Path(__file__)]  # this test's own pattern


@pytest.mark.parametrize(
    "nodeid,reason,strict,refused",
    [
        ("tests/test_golden.py::test_losses", "needs CUDA", False, True),
        ("tests/test_golden.py::test_losses", "needs CUDA", True, True),
        ("tests/test_models.py::test_x", "golden data not found", False, False),
        ("tests/test_models.py::test_x", "golden data not found", True, True),
        ("tests/test_models.py::test_x", "could not import 'onnx'", True, True),
        ("tests/test_models.py::test_x", "CUDA is not available", True, False),
        ("tests/test_models.py::test_x", "needs a GPU", True, False),
        ("tests/test_x.py::test_y[a]", "optional tool chromium is not installed", True, False),
        ("tests/test_x.py::test_y", "no chromium (apt-get install chromium)", True, False),
        ("tests/test_x.py::test_y", "no chromium", True, True),
    ],
)
def test_skip_refusal_rules(nodeid: str, reason: str, strict: bool, refused: bool) -> None:
    assert (skip_policy.refusal(nodeid, reason, strict=strict) is not None) == refused


_INNER = """
import pytest

def test_passes():
    pass

def test_gpu():
    pytest.skip("needs CUDA")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_no_data():
    pytest.skip("reference data not found")
"""


def _inner_run(tmp_path: Path, strict: bool, module: str = "test_inner.py") -> tuple[int, str]:
    (tmp_path / module).write_text(_INNER)
    env = {**os.environ, skip_policy.STRICT_ENV: "1" if strict else "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.skip_policy"]
    result = subprocess.run(
        [*command, "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / module)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return result.returncode, result.stdout


@pytest.mark.slow
def test_strict_run_fails_on_a_skip_without_an_allowed_reason(tmp_path: Path) -> None:
    code, out = _inner_run(tmp_path, strict=False)
    assert code == 0, out
    code, out = _inner_run(tmp_path, strict=True)
    assert code == 1, out
    assert "test_no_data: skipped (reference data not found)" in out
    assert "test_gpu" not in out.split("skips that fail this run")[1]
    # A golden test may not skip at all, strict or not.
    code, out = _inner_run(tmp_path, strict=False, module="test_golden.py")
    assert code == 1 and "test_golden.py::test_gpu" in out, out
