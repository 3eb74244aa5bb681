"""Test-session settings shared by every test module."""

from __future__ import annotations

from tests.golden import REFERENCE


def pytest_report_header(config) -> str:
    # The golden-vector tests skip (with a reason) when ../shared/reference is absent; say at
    # the top of every run whether the faithfulness proof is part of it.
    if REFERENCE.is_dir():
        return f"golden vectors: {REFERENCE}"
    return (
        f"golden vectors: NOT FOUND at {REFERENCE}; faithfulness tests will be skipped "
        "(clone beside ../shared or set CTSDG_REFERENCE)"
    )
