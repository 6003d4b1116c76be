"""Provider choice of the session factory when CUDA is built in but cannot run (simulated)."""
from __future__ import annotations

import logging

import pytest

from rrim.models import sessions
from runtime_helpers import write_model, sha256_file


@pytest.fixture
def cuda_built_but_broken(monkeypatch):
    """onnxruntime claims CUDA; building a CUDA session fails as on a machine without a driver."""
    real_build = sessions._build
    tried = []

    def build(data, provider, tf32, threads, source):
        tried.append(provider)
        if provider == "cuda":
            raise sessions.ProviderUnavailable(f"{source}: CUDAExecutionProvider did not load")
        return real_build(data, provider, tf32, threads, source)

    monkeypatch.setattr(sessions, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(sessions, "_build", build)
    sessions.clear_cache()
    yield tried
    sessions.clear_cache()


def test_auto_tries_cuda_even_when_a_cpu_session_is_cached(tmp_path, small_operator, cuda_built_but_broken, caplog):
    path = write_model(tmp_path, small_operator)
    digest = sha256_file(path)
    assert sessions.make_session(path, "cpu", sha256=digest).provider == "cpu"
    with caplog.at_level(logging.WARNING):
        s = sessions.make_session(path, "auto", sha256=digest)
    assert s.provider == "cpu"
    assert cuda_built_but_broken == ["cpu", "cuda"]  # CUDA was really tried, not skipped via the cache
    assert any("CUDA did not load" in r.getMessage() and "CPU" in r.getMessage() for r in caplog.records)
    sessions.make_session(path, "auto", sha256=digest)  # the failure is remembered: no second attempt
    assert cuda_built_but_broken == ["cpu", "cuda"]


def test_cuda_refused_clearly_when_it_cannot_run(tmp_path, small_operator, cuda_built_but_broken):
    path = write_model(tmp_path, small_operator)
    with pytest.raises(sessions.ProviderUnavailable, match="CUDAExecutionProvider did not load"):
        sessions.make_session(path, "cuda")


def test_run_batches_runs_cpu_calls_concurrently_and_keeps_their_order(tmp_path, default_operator, monkeypatch):
    import threading
    import time

    import numpy as np

    from rrim.models.loading import load_model
    from rrim.models.sessions import Session
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "baked"))
    two, one = model.session("cpu", threads=2), model.session("cpu", threads=1)
    feeds = [{"y": np.full((3, 200), 0.1 * (k + 1), np.float32)} for k in range(6)]
    expected = [one.run(f) for f in feeds]
    seen, real = set(), Session.run

    def recording(self, f):
        seen.add(threading.get_ident())
        time.sleep(0.02)  # long enough for the other pool thread to take the next call
        return real(self, f)

    monkeypatch.setattr(Session, "run", recording)
    got = two.run_batches(feeds)
    assert len(seen) == 2  # two pool threads ran calls
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    seen.clear()
    assert all(np.array_equal(a, b) for a, b in zip(one.run_batches(feeds), expected)) and len(seen) == 1


def test_io_binding_path_equals_plain_run(tmp_path, default_operator):
    """The CUDA path's I/O binding, exercised on the CPU device (no GPU here): same output as run()."""
    import numpy as np

    from rrim.models.loading import load_model
    from rrim.models.sessions import run_bound
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "input"))
    session = model.session("cpu")
    from rrim.inversion.engine import physics_at

    _, a32, p32 = physics_at(model, 50.0)
    feeds = {"y": np.linspace(0.1, 1, 3 * 200, dtype=np.float32).reshape(3, 200), "A": a32, "P": p32}
    np.testing.assert_array_equal(run_bound(session.ort_session, feeds, "cpu"), session.run(feeds))


def test_run_batches_cuts_large_batches_into_cpu_calls(tmp_path, default_operator, monkeypatch):
    import numpy as np

    from rrim.models import sessions
    from rrim.models.loading import load_model
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "baked"))
    session = model.session("cpu", threads=2)
    y = np.linspace(0.05, 1.0, 150 * 200, dtype=np.float32).reshape(150, 200)
    whole = session.run({"y": y})
    sizes, real = [], sessions.Session.run
    monkeypatch.setattr(sessions.Session, "run", lambda self, f: sizes.append(len(f["y"])) or real(self, f))
    out = session.run_batches([{"y": y}, {"y": y[:10]}])
    assert sorted(sizes) == [10, 22, 64, 64]
    np.testing.assert_allclose(out[0], whole, rtol=1e-6, atol=1e-7 * float(np.abs(whole).max()))
    np.testing.assert_allclose(out[1], whole[:10], rtol=1e-6, atol=1e-7 * float(np.abs(whole).max()))
