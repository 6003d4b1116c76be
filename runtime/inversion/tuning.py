"""The micro-batch chosen by measurement: each candidate batch size is timed on this machine, with this
model, provider and thread count, and the fastest wins.

The timing (:data:`CANDIDATES`, a warm-up call then ≥ :data:`SECONDS` per candidate, two rounds in
alternating order, best of the two) times :meth:`rrim.inversion.engine.Engine.run` itself on
blocks of ``threads`` calls, as an archive's slabs run, once per (model sha256, provider, threads,
CPU, onnxruntime version) and is remembered in ``$XDG_CACHE_HOME/rrim/batch-sizes.json`` (``~/.cache``
by default; ``RRIM_CACHE_DIR`` overrides the folder), written atomically. The cache never fails a
job: one that is unreadable, not a regular file, too large or nonsensical is ignored (and rewritten
where possible). ``rrim invert``/``reprocess`` use it unless ``--batch-size`` is given.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from rrim.files import atomic_write_text, read_regular
from rrim.inversion.engine import DEFAULT_BATCH_SIZE
from rrim.inversion.feeds import AdaptiveInputs, model_feeds
from rrim.models.sessions import cpu_name, onnxruntime

log = logging.getLogger(__name__)

CANDIDATES = (16, 32, 64, 128, 256)
#: On CUDA large batches keep the device busy.
CUDA_CANDIDATES = (256, 1024, 4096)
SECONDS = 0.1
#: Largest cache file read (a few hundred bytes per model and machine).
MAX_CACHE_BYTES = 1 << 20

def cache_file() -> Path:
    folder = os.environ.get("RRIM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rrim"
    return Path(folder) / "batch-sizes.json"


def _machine_key(model, session) -> str:
    return f"{model.sha256}|{session.provider}|{session.threads}|{cpu_name()}|{onnxruntime().__version__}"


def measure(run, n_omega: int, candidates=CANDIDATES, seconds: float = SECONDS, clock=time.perf_counter,
            calls_per_block: int = 1) -> dict:
    """Spectra/s per candidate batch size b for ``run(y32, b)`` on blocks of ``calls_per_block``·b spectra
    (float32, (rows, n_ω)): best of two rounds."""
    y = np.linspace(0.1, 1.0, n_omega, dtype=np.float32)[None, :]
    rates: dict[int, float] = {}
    for order in (list(candidates), list(candidates)[::-1]):
        for b in order:
            block = np.repeat(y, b * calls_per_block, axis=0)
            run(block, b)  # warm-up: allocations for this shape
            blocks, t0 = 0, clock()
            while (elapsed := clock() - t0) < seconds or blocks == 0:
                run(block, b)
                blocks += 1
            rates[b] = max(rates.get(b, 0.0), blocks * len(block) / max(elapsed, 1e-12))
    return rates


def _feeds(engine, physics, y_scaled: np.ndarray) -> dict:
    """The model's inputs for scaled spectra as the engine makes them (its basis cache and prior)."""
    op = physics[0]
    adaptive = AdaptiveInputs.of(op, y_scaled, None, engine.bases, engine.prior) if engine.model.info.adaptive else None
    return model_feeds(engine.model, *physics, y_scaled, None, adaptive)


def choose_batch_size(engine) -> int:
    """The fastest of :data:`CANDIDATES` (:data:`CUDA_CANDIDATES` on CUDA) for ``engine`` (an
    :class:`~rrim.inversion.engine.Engine`: its model, provider and threads), measured once per
    machine and remembered in :func:`cache_file` (the engine keeps its choice)."""
    model, session = engine.model, engine.session
    key = _machine_key(model, session)
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
        return value
    physics = engine.physics(model.info.temperature)
    calls = session.threads if session.provider == "cpu" else 1
    try:
        rates = measure(lambda y32, b: engine.run(_feeds(engine, physics, y32.astype(np.float64)), b),
                        len(model.info.omega), candidates, calls_per_block=calls)
    except Exception as e:  # never fail a job over tuning
        log.warning("batch-size measurement failed (%s); using %d", e, DEFAULT_BATCH_SIZE)
        return DEFAULT_BATCH_SIZE
    best = max(rates, key=rates.get)
    log.info("batch size %d chosen by measurement (%s spectra/s)", best,
             ", ".join(f"{b}: {r:,.0f}" for b, r in sorted(rates.items())))
    known[key] = best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1))
    except Exception as e:  # never fail a job over the cache
        log.info("batch-size cache not written (%s)", e)
    return best
