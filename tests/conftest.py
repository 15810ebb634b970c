"""Shared fixtures (the factories themselves live in tests/factories.py)."""

from __future__ import annotations

import pytest

from tests.factories import small_config as _small_config


@pytest.fixture
def small():
    return _small_config


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true",
        help="rewrite the golden files (benchmarks/baselines/*.json) from this checkout's results",
    )
