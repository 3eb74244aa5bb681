"""Test-session settings shared by every test module."""

from __future__ import annotations

import pytest

from tests import skip_policy
from tests.golden import DATA


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.pytest_configure(config)


def pytest_report_header(config: pytest.Config) -> str:
    strict = "on" if config.pluginmanager.get_plugin(skip_policy.PLUGIN_NAME).strict else "off"
    return f"golden vectors: {DATA}; strict skips ({skip_policy.STRICT_ENV}): {strict}"
