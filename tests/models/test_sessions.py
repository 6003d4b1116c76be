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


def test_engine_runs_cpu_calls_concurrently_and_keeps_their_order(tmp_path, default_operator, monkeypatch):
    import threading

    import numpy as np

    from rrim.inversion.engine import Engine
    from rrim.models.loading import load_model
    from rrim.models.sessions import Session
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "baked"))
    y = np.repeat(np.linspace(0.1, 0.6, 6, dtype=np.float32)[:, None], 200, axis=1)
    expected = Engine(model, "cpu", threads=1).session.run({"y": y})
    both_inside = threading.Barrier(2)  # passes only when two calls are running at the same time
    seen, real = set(), Session.run

    def recording(self, f):
        seen.add(threading.get_ident())
        both_inside.wait(timeout=30)
        return real(self, f)

    monkeypatch.setattr(Session, "run", recording)
    with Engine(model, "cpu", threads=2, batch_size=3) as two:
        got = two.run({"y": y})
    assert len(seen) == 2  # two pool threads ran the two calls of 3 rows, at once
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7 * float(np.abs(expected).max()))
    monkeypatch.setattr(Session, "run", lambda self, f: seen.add(threading.get_ident()) or real(self, f))
    seen.clear()
    with Engine(model, "cpu", threads=1, batch_size=3) as one:
        np.testing.assert_array_equal(one.run({"y": y}), np.concatenate([real(one.session, {"y": y[:3]}),
                                                                         real(one.session, {"y": y[3:]})]))
    assert seen == {threading.get_ident()}  # one thread: the calls run here, one after another


def test_io_binding_path_equals_plain_run(tmp_path, default_operator):
    """The CUDA path's I/O binding, exercised on the CPU device (no GPU here): same output as run()."""
    import numpy as np

    from rrim.models.loading import load_model
    from rrim.models.sessions import run_bound
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "input"))
    session = model.session("cpu")
    from rrim.inversion.feeds import physics_at

    _, a32, p32 = physics_at(model, 50.0)
    feeds = {"y": np.linspace(0.1, 1, 3 * 200, dtype=np.float32).reshape(3, 200), "A": a32, "P": p32}
    np.testing.assert_array_equal(run_bound(session.ort_session, feeds, "cpu"), session.run(feeds))


def test_engine_calls_have_batch_size_rows(tmp_path, default_operator, monkeypatch):
    """One notion of rows per call: the engine cuts the spectra into calls of ``batch_size`` rows, the
    last one shorter, and nothing cuts them again."""
    import numpy as np

    from rrim.inversion.engine import Engine
    from rrim.models import sessions
    from rrim.models.loading import load_model
    from runtime_helpers import write_model

    model = load_model(write_model(tmp_path, default_operator, "baked"))
    y = np.linspace(0.05, 1.0, 150 * 200, dtype=np.float32).reshape(150, 200)
    whole = model.session("cpu").run({"y": y})
    sizes, real = [], sessions.Session.run
    monkeypatch.setattr(sessions.Session, "run", lambda self, f: sizes.append(len(f["y"])) or real(self, f))
    with Engine(model, "cpu", threads=2, batch_size=128) as engine:
        out = engine.run({"y": y})
        assert sorted(sizes) == [22, 128]
        sizes.clear()
        engine.run({"y": y}, batch_size=64)
        assert sorted(sizes) == [22, 64, 64]
    np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-7 * float(np.abs(whole).max()))
