"""Shared fixtures. Test problems and helpers: problems.py; the transforms: registry.py."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
