"""The micro-batch chosen by measurement: the fastest candidate wins, the choice is remembered per
model and machine in a cache file that is written atomically and survives corruption."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rrim.inversion import tuning
from rrim.inversion.engine import Engine
from rrim.models.loading import load_model
from runtime_helpers import write_model


class FakeClock:
    """Time advances only inside the fake model call, by a cost per spectrum that depends on the batch."""

    def __init__(self, cost_per_spectrum):
        self.now, self.cost = 0.0, cost_per_spectrum

    def __call__(self):
        return self.now

    def run(self, y32, batch_size):
        assert y32.dtype == np.float32 and y32.ndim == 2 and len(y32) % batch_size == 0
        self.now += self.cost(batch_size) * len(y32)


def test_measure_prefers_the_batch_with_the_lowest_cost_per_spectrum():
    clock = FakeClock(lambda b: {16: 3.0, 32: 2.0, 64: 1.5, 128: 1.0, 256: 4.0}[b] * 1e-4)
    rates = tuning.measure(clock.run, 50, seconds=0.05, clock=clock, calls_per_block=2)
    assert max(rates, key=rates.get) == 128
    assert rates[128] == pytest.approx(1e4) and rates[256] == pytest.approx(2500)


@pytest.fixture
def engine(tmp_path, monkeypatch, default_operator):
    monkeypatch.setenv("RRIM_CACHE_DIR", str(tmp_path / "cache"))
    with Engine(load_model(write_model(tmp_path, default_operator, "input")), "cpu", batch_size=None) as e:
        yield e


def test_choice_is_measured_once_and_remembered(engine, monkeypatch):
    monkeypatch.setattr(tuning, "measure", lambda run, n, *a, **kw: (run(np.zeros((2, n), np.float32), 2),
                                                                 {16: 1.0, 64: 3.0, 256: 2.0})[1])
    assert engine.batch_size == 64
    cached = json.loads(tuning.cache_file().read_text())
    assert list(cached.values()) == [64] and engine.model.sha256 in next(iter(cached))
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert tuning.choose_batch_size(engine) == 64  # from the file
    assert not [p for p in tuning.cache_file().parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_cache_is_ignored_and_rewritten(engine, monkeypatch):
    tuning.cache_file().parent.mkdir(parents=True)
    tuning.cache_file().write_text("{not json")
    monkeypatch.setattr(tuning, "measure", lambda run, n, *a, **kw: {32: 5.0, 128: 1.0})
    assert tuning.choose_batch_size(engine) == 32
    assert list(json.loads(tuning.cache_file().read_text()).values()) == [32]


def test_a_failing_measurement_falls_back_to_the_default(engine, monkeypatch):

    def broken(*a, **k):
        raise RuntimeError("no")

    monkeypatch.setattr(tuning, "measure", broken)
    assert tuning.choose_batch_size(engine) == tuning.DEFAULT_BATCH_SIZE
    assert not tuning.cache_file().exists()


def test_real_measurement_times_what_the_engine_runs(engine, monkeypatch):
    """A real measurement (no fallback: the choice is written to the cache) of the engine's own calls:
    blocks of ``threads`` calls of each candidate's rows."""
    real, sizes = Engine.run, []
    monkeypatch.setattr(Engine, "run", lambda self, feeds, batch_size=None: sizes.append((len(feeds["y"]), batch_size))
                        or real(self, feeds, batch_size))
    best = tuning.choose_batch_size(engine)
    assert best in tuning.CANDIDATES and list(json.loads(tuning.cache_file().read_text()).values()) == [best]
    calls = engine.session.threads
    assert {b for _, b in sizes} == set(tuning.CANDIDATES) and all(rows == b * calls for rows, b in sizes)
