"""Provider choice of the session factory when CUDA is built in but cannot run (simulated)."""
from __future__ import annotations

import logging

import pytest

from rrim import sessions
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
