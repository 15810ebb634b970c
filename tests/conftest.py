"""Shared fixtures (the factories themselves live in tests/factories.py)."""

from __future__ import annotations

import pytest

from tests.factories import small_config as _small_config


@pytest.fixture
def small():
    return _small_config
