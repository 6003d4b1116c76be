"""Shared fixtures: seeded RNGs and the default operators (no dependence on the current directory)."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

import rrim


def pytest_configure(config):
    """The batch-size measurements of the CLI (rrim.inversion.tuning) go to a folder of this run, shared by the
    subprocesses the tests start, never to the user's cache; likewise the user model folder."""
    os.environ.setdefault("RRIM_CACHE_DIR", tempfile.mkdtemp(prefix="rrim-test-cache-"))
    # no model or calibration of the user's own is found: the user model folders are empty ones of this run
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="rrim-test-data-")
    os.environ.pop("RRIM_MODEL_PATH", None)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test."""
    return np.random.default_rng(20241123)


@pytest.fixture(scope="session")
def default_operator() -> rrim.ForwardOperator:
    """The shipped model's operator: Shulga kernel, 100 K, 2…400 meV × 200 on both grids."""
    return rrim.ForwardOperator()


@pytest.fixture(scope="session")
def small_operator() -> rrim.ForwardOperator:
    """A small operator (60 × 50 points) for fast tests."""
    return rrim.ForwardOperator(np.linspace(2, 400, 60), np.linspace(2, 400, 50), temperature=100.0)
