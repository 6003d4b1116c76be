"""The micro-batch chosen by measurement: each candidate batch size is timed on this machine, with this
model, provider and thread count, and the fastest wins.

The timing (:data:`CANDIDATES`, a warm-up call then ≥ :data:`SECONDS` per candidate, two rounds in
alternating order, best of the two) runs once per (model sha256, provider, threads, CPU,
onnxruntime version) and is remembered in ``$XDG_CACHE_HOME/rrim/batch-sizes.json`` (``~/.cache``
by default; ``RRIM_CACHE_DIR`` overrides the folder), written atomically. The cache never fails a
job: one that is unreadable, not a regular file, too large or nonsensical is ignored (and rewritten
where possible). ``rrim invert``/``reprocess`` use it unless ``--batch-size`` is given.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from rrim.files import atomic_write_text, read_regular
from rrim.inversion.engine import DEFAULT_BATCH_SIZE, model_feeds, physics_at
from rrim.models.sessions import onnxruntime

log = logging.getLogger(__name__)

CANDIDATES = (16, 32, 64, 128, 256)
#: On CUDA large batches keep the device busy.
CUDA_CANDIDATES = (256, 1024, 4096)
SECONDS = 0.1
#: Largest cache file read (a few hundred bytes per model and machine).
MAX_CACHE_BYTES = 1 << 20
_MEMO: dict[str, int] = {}


def cache_file() -> Path:
    folder = os.environ.get("RRIM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rrim"
    return Path(folder) / "batch-sizes.json"


def _machine_key(model, session) -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model.sha256}|{session.provider}|{session.threads}|{cpu}|{onnxruntime().__version__}"


def measure(run, n_omega: int, candidates=CANDIDATES, seconds: float = SECONDS, clock=time.perf_counter) -> dict:
    """Spectra/s per candidate batch for ``run(y32)`` on (batch, n_ω) float32 inputs: best of two rounds."""
    y = np.linspace(0.1, 1.0, n_omega, dtype=np.float32)[None, :]
    rates: dict[int, float] = {}
    for order in (list(candidates), list(candidates)[::-1]):
        for b in order:
            batch = np.repeat(y, b, axis=0)
            run(batch)  # warm-up: allocations for this shape
            calls, t0 = 0, clock()
            while (elapsed := clock() - t0) < seconds or calls == 0:
                run(batch)
                calls += 1
            rates[b] = max(rates.get(b, 0.0), calls * b / max(elapsed, 1e-12))
    return rates


def choose_batch_size(model, session) -> int:
    """The fastest of :data:`CANDIDATES` (:data:`CUDA_CANDIDATES` on CUDA) for ``model`` on ``session``
    (measured once, then remembered)."""
    key = _machine_key(model, session)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_file()
    try:
        known = json.loads(read_regular(path, MAX_CACHE_BYTES))
        if not isinstance(known, dict):
            known = {}
    except FileNotFoundError:
        known = {}
    except Exception as e:  # never fail a job over the cache: a folder, a FIFO, deep or huge JSON…
        log.info("batch-size cache %s ignored (%s)", path, type(e).__name__)
        known = {}
    value = known.get(key)
    candidates = CUDA_CANDIDATES if session.provider == "cuda" else CANDIDATES
    if type(value) is int and value in candidates:
        _MEMO[key] = value
        return value
    physics = physics_at(model, model.info.temperature)
    try:
        rates = measure(lambda y32: session.run(model_feeds(model, *physics, y32.astype(np.float64))),
                        len(model.info.omega), candidates)
    except Exception as e:  # never fail a job over tuning
        log.warning("batch-size measurement failed (%s); using %d", e, DEFAULT_BATCH_SIZE)
        return DEFAULT_BATCH_SIZE
    best = max(rates, key=rates.get)
    log.info("batch size %d chosen by measurement (%s spectra/s)", best,
             ", ".join(f"{b}: {r:,.0f}" for b, r in sorted(rates.items())))
    _MEMO[key] = best
    known[key] = best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1))
    except Exception as e:  # never fail a job over the cache
        log.info("batch-size cache not written (%s)", e)
    return best
