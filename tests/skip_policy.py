"""Which skipped tests a run may report: a pytest plugin (loaded by conftest.py).

The golden vectors ship with the repository, so a golden test never has a reason to skip: any
such skip fails the run. With ``CTSDG_STRICT_SKIPS=1`` (set by ``.ci/run``) every other skip must
say in its reason that it needs a GPU (``GPU`` / ``CUDA``) or an optional tool: the word
``optional``, or the tool's install command (``apt-get install chromium``, ``pip install x``).
Anything else (missing data, a missing dependency) fails the run too, so a fresh clone's suite
cannot pass by skipping. Use it elsewhere with ``pytest -p tests.skip_policy``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import pytest

STRICT_ENV = "CTSDG_STRICT_SKIPS"
ALLOWED_REASON = re.compile(r"\b(gpu|cuda|optional)\b|\b(apt-get|apt|pip) install\b", re.IGNORECASE)
GOLDEN_MODULES = ("test_golden.py",)
PLUGIN_NAME = "ctsdg-skip-policy"


def refusal(nodeid: str, reason: str, *, strict: bool) -> str | None:
    """Why a skip of ``nodeid`` with ``reason`` fails the run, or None when it is allowed."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    if module in GOLDEN_MODULES:
        return "golden tests must not skip (their data ships in tests/data/golden)"
    if strict and not ALLOWED_REASON.search(reason):
        return f"{STRICT_ENV}=1 allows only skips that name a GPU/CUDA or an optional tool"
    return None


@dataclass
class SkipPolicy:
    strict: bool
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return  # an xfail is reported as skipped too, but is not a skip
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        why = refusal(report.nodeid, reason, strict=self.strict)
        if why:
            self.refused.append((report.nodeid, reason, why))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.refused and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.refused:
            return
        terminalreporter.section("skips that fail this run", sep="=", red=True, bold=True)
        for nodeid, reason, why in self.refused:
            terminalreporter.line(f"{nodeid}: skipped ({reason}); {why}")


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        config.pluginmanager.register(SkipPolicy(strict), PLUGIN_NAME)
