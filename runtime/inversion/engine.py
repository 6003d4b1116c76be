"""Batch inversion of scattering rates on a model's ω grid with an ONNX model (numpy in, numpy out).

y (n, n_ω) in meV → scaled once by the model's s and cast once to float32 → the model in
batches → glue x̂ (n, n_Ω) (float64 copy of the float32 output), the refit A·x̂ (n, n_ω) in meV
with A from the shared physics at the spectra's temperature, the relative RMS residual per
spectrum and quality flags.

Quality flags: :mod:`rrim.inversion.flags`.

Per spectrum also: the noise estimate σ̂ (meV) and the OOD score (:mod:`rrim.inversion.uncertainty`); on
request a calibrated band ``glue_lower``/``glue_upper`` (``coverage``) and the impurity rate c
(meV, ``impurity=True``, :mod:`rrim.physics.impurity`), removed before the inversion and added to the refit.

An :class:`Engine` is one model on one execution provider for the life of a job: it owns the
onnxruntime session (provider, threads, TF32), the rows per model call (``batch_size``, measured
once per model and machine when not given: :mod:`rrim.inversion.tuning` times the very calls
:meth:`Engine.run` makes), the physics per temperature and the thread pool of concurrent CPU calls;
``close()`` (or ``with``) releases them. The CLI, the archive job, the accessor and each Dask task
hold one and pass it down; engines are never pickled. :func:`invert` is the one-shot form for one
array. Smoothing: :func:`rrim.inversion.feeds.smooth`.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from rrim.inversion.feeds import AdaptiveInputs, finish, mask_aware, model_feeds, physics_at, smooth
from rrim.inversion.flags import FLAG_NONFINITE, FLAG_OOD, FLAG_POOR_FIT, FLAG_TEMPERATURE, poor_fit_threshold
from rrim.inversion.prior import GaussianPrior
from rrim.inversion.regularization import MaskedBases
from rrim.inversion.uncertainty import (DEFAULT_RESAMPLES, consistency_fit, estimate_noise, load_calibration, ood_score,
                                        relative_noise, resample_noise)
from rrim.models.loading import LoadedModel
from rrim.models.modelfile import PER_ROW, ModelFileError
from rrim.physics.impurity import estimate_impurity

log = logging.getLogger(__name__)

#: Default spectra per model call: onnxruntime on this CPU was fastest at 16–64 (docs/ARCHITECTURE.md §8);
#: see benchmarks/runtime_throughput.md for the measurement with the shipped model.
DEFAULT_BATCH_SIZE = 64


@dataclass
class InversionResult:
    """Glue (n, n_Ω) and the refit A·x̂ (n, n_ω, meV) as float64, residual (n,), flags (n,) uint8, provider
    that ran, temperature of the physics (K), the seconds spent inside the model's session calls, and the
    per-spectrum extras. The per-spectrum fields are named like the output variables they become
    (:data:`rrim.io.schema.OUTPUT_VARIABLES`)."""

    glue: np.ndarray
    scattering_rate_fit: np.ndarray
    residual: np.ndarray
    flags: np.ndarray
    provider: str
    temperature: float
    model_seconds: float = 0.0
    noise_estimate: np.ndarray | None = None  # σ̂ (n,) meV
    ood_score: np.ndarray | None = None  # (n,), NaN without a calibration
    glue_lower: np.ndarray | None = None  # (n, n_Ω) with ``coverage``
    glue_upper: np.ndarray | None = None
    spread: np.ndarray | None = None  # resample standard deviation (n, n_Ω) with ``resamples``
    impurity_rate: np.ndarray | None = None  # c (n,) meV with ``impurity``


class Engine:
    """``model`` running on ``provider`` ('auto', 'cpu' or 'cuda') with ``threads`` CPUs (default: those
    available), TF32 on CUDA only if ``tf32``, and ``batch_size`` rows per model call (None: measured,
    :func:`rrim.inversion.tuning.choose_batch_size`). Safe to call from one thread at a time per job;
    the physics cache is shared under a lock."""

    def __init__(self, model: LoadedModel, provider: str = "auto", *, threads: int | None = None, tf32: bool = False,
                 batch_size: int | None = DEFAULT_BATCH_SIZE):
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ValueError(f"batch_size: expected an integer ≥ 1, got {batch_size!r}")
        self.model = model
        self.session = model.session(provider, threads=threads, tf32=tf32)
        self.bases = MaskedBases(maxsize=64)  # singular bases of measured-ω masks, per temperature
        self.prior = GaussianPrior.of_model(model.info)  # a model that starts from its Gaussian prior
        self._batch_size = None if batch_size is None else int(batch_size)
        self._physics: dict[float, tuple] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def provider(self) -> str:
        """The execution provider that runs ('cpu' or 'cuda')."""
        return self.session.provider

    @property
    def batch_size(self) -> int:
        """Rows per model call (measured on first use when not given)."""
        if self._batch_size is None:
            from rrim.inversion.tuning import choose_batch_size

            self._batch_size = choose_batch_size(self)
        return self._batch_size

    def physics(self, temperature: float):
        """(operator, A/s float32, P float32 or None) at ``temperature`` K, computed once per temperature
        (~0.6 MB each on the default grids)."""
        T = float(temperature)
        with self._lock:
            if T not in self._physics:
                self._physics[T] = physics_at(self.model, T)
            return self._physics[T]

    def run(self, feeds: dict[str, np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """The model's output for ``feeds`` (float32; per-spectrum inputs with m rows): calls of
        ``batch_size`` rows (default :attr:`batch_size`), on the CPU up to ``threads`` of them at once
        (onnxruntime releases the GIL), on CUDA one after another; (m, n_Ω) float32."""
        size = self.batch_size if batch_size is None else int(batch_size)
        per_row = [k for k in PER_ROW if k in feeds]
        rows = len(feeds[per_row[0]])
        calls = [{**feeds, **{k: feeds[k][start:start + size] for k in per_row}} for start in range(0, rows, size)]
        if self.provider != "cpu" or self.session.threads == 1 or len(calls) < 2:
            outs = [self.session.run(c) for c in calls]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.session.threads, thread_name_prefix="rrim-call")
            outs = list(self._pool.map(self.session.run, calls))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def close(self) -> None:
        """Stop the thread pool and drop the physics (the onnxruntime session stays in the process's
        session cache, :mod:`rrim.models.sessions`, for the next engine of this model)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._physics.clear()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError("an Engine is not pickled: build one in each process (Engine(model, provider))")

    def invert(self, y_meV, *, temperature: float | None = None, smoothing_meV: float | None = None,
               valid_omega: np.ndarray | None = None, coverage: float | None = None, resamples: int | None = None,
               impurity: bool = False) -> InversionResult:
        """Invert scattering rates ``y_meV`` (n, n_ω) in meV, already on the model's ω grid.

        ``temperature`` (K): the spectra's temperature (default: the model's). 'input'-form models
        get A/s and P at that temperature; a baked model outside its temperature range still runs
        and the spectra are flagged. ``valid_omega`` (n_ω,) bool: model ω points backed by data
        (the residual uses only those). Non-finite spectra are flagged and skipped (NaN outputs).
        ``coverage`` (0.68 or 0.9): also the calibrated band (needs the model's calibration;
        ``ValueError`` otherwise); ``resamples``: copies per spectrum for the band (default 16; given
        without ``coverage``, only the raw spread is returned). ``impurity``: estimate and remove c.
        """
        model = self.model
        info = model.info
        n_w, n_W = len(info.omega), len(info.Omega)
        y = np.asarray(y_meV, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != n_w:
            raise ValueError(f"y_meV: expected shape (n, {n_w}) on the model's ω grid, got {y.shape}")
        try:
            calibration = load_calibration(model)
        except ModelFileError as e:
            if coverage is not None:
                raise
            log.warning("%s; no OOD scores", e)
            calibration = None
        if coverage is not None:
            if calibration is None:
                raise ValueError(f"coverage: model {model.name!r} has no calibration ({model.path.stem}.calibration.json); "
                                 "make one with `rrim calibrate`")
            calibration.scale(coverage, np.zeros(0), 0.0)  # refuses a coverage the calibration lacks
        K = (calibration.resamples if calibration else DEFAULT_RESAMPLES) if resamples is None else int(resamples)
        if (coverage is not None or resamples is not None) and K < 2:
            raise ValueError(f"resamples: expected an integer ≥ 2, got {resamples!r}")
        T = info.temperature if temperature is None else float(temperature)
        op, a32, p32 = self.physics(T)

        n = y.shape[0]
        flags = np.zeros(n, dtype=np.uint8)
        with np.errstate(invalid="ignore"):  # values that overflow float32 once scaled cannot reach the model either
            finite = np.isfinite(y).all(axis=1) & (np.abs(y) <= float(np.finfo(np.float32).max) * info.scale).all(axis=1)
        flags[~finite] |= FLAG_NONFINITE
        lo, hi = info.temperature_range_K
        if not lo - 1e-9 <= T <= hi + 1e-9:
            flags |= FLAG_TEMPERATURE

        rows = np.flatnonzero(finite)
        mask = np.ones(n_w, bool) if valid_omega is None else np.asarray(valid_omega, bool)
        noise = np.full(n, np.nan)
        noise[rows] = estimate_noise(y[np.ix_(rows, mask)])  # on the measured points only
        c = np.zeros(n)
        if impurity:
            c = np.full(n, np.nan)
            c[rows] = estimate_impurity(y[rows], op)
        y_model = y - c[:, None]
        run = _ModelRunner(self, op, a32, p32, smoothing_meV, mask)
        glue = np.full((n, n_W), np.nan)
        glue[rows] = run(y_model[rows], noise[rows])

        fit = glue @ op.matrix.T + c[:, None]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            num = np.sqrt(np.mean((fit[:, mask] - y[:, mask]) ** 2, axis=1))
            den = np.sqrt(np.mean(y[:, mask] ** 2, axis=1))
            residual = np.where(finite, num / np.where(den > 0, den, np.inf), np.nan)
            limit = poor_fit_threshold(noise / np.where(den > 0, den, np.inf))
        flags[finite & ~(residual <= limit)] |= FLAG_POOR_FIT
        score = np.full(n, np.nan)
        if calibration is not None:
            threshold = calibration.threshold(relative_noise(noise, y))
            score = ood_score(y, (fit,), noise, calibration.beta, mask)
            # the consistency fit can only lower a score: it is needed only where the rRIM's is above the threshold
            high = np.flatnonzero(finite & ~(score <= threshold))
            if high.size:
                data_fit = consistency_fit(y_model[high], op) + c[high, None]
                score[high] = ood_score(y[high], (fit[high], data_fit), noise[high], calibration.beta, mask)
            flags[finite & ~(score <= threshold)] |= FLAG_OOD

        result = InversionResult(glue, fit, residual, flags, self.provider, T, 0.0, noise_estimate=noise,
                                 ood_score=score, impurity_rate=c if impurity else None)
        if coverage is not None or resamples is not None:
            eps = resample_noise(n_w, K)
            spread = np.full((n, n_W), np.nan)
            for start in range(0, rows.size, max(1, self.batch_size // K) * 8):  # bounded memory: ≤ 8 batches of copies
                r = rows[start:start + max(1, self.batch_size // K) * 8]
                copies = (y_model[r, None, :] + noise[r, None, None] * eps[None]).reshape(-1, n_w)
                spread[r] = run(copies).reshape(r.size, K, n_W).std(axis=1, ddof=1)
            result.spread = spread
            if coverage is not None:
                result.glue_lower, result.glue_upper = calibration.band(glue, spread, relative_noise(noise, y), coverage, T)
        result.model_seconds = run.seconds
        return result


def invert(y_meV, model: LoadedModel, *, provider: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
           **options) -> InversionResult:
    """One array at once: :meth:`Engine.invert` of a short-lived engine (``options``: its keywords)."""
    with Engine(model, provider, batch_size=batch_size) as engine:
        return engine.invert(y_meV, **options)


class _ModelRunner:
    """Spectra in meV (m, n_ω) → glue (m, n_Ω) float64 through the engine, smoothed if asked; counts the seconds spent in session calls. A mask-aware model sees only the ω points of
    ``mask`` (n_ω,) bool; other models see every point."""

    def __init__(self, engine: "Engine", op, a32, p32, smoothing_meV, mask=None):
        self.engine, self.model, self.smoothing = engine, engine.model, smoothing_meV
        self.physics = (op, a32, p32)
        self.mask = mask if mask_aware(engine.model) else None
        self.seconds = 0.0

    def __call__(self, y: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Glue for spectra ``y`` (m, n_ω) meV; ``noise`` (m,) meV: their estimated noise, which the
        polish of a noise-adaptive model aims at (:func:`rrim.inversion.feeds.finish`)."""
        info = self.model.info
        op = self.physics[0]
        e = self.engine
        adaptive = AdaptiveInputs.of(op, y / info.scale, self.mask, e.bases, e.prior) if info.adaptive else None
        feeds = model_feeds(self.model, *self.physics, y / info.scale, self.mask, adaptive)
        t0 = time.perf_counter()
        x = self.engine.run(feeds).astype(np.float64) if len(y) else np.empty((0, len(info.Omega)))
        self.seconds += time.perf_counter() - t0
        x = finish(self.model, op, x, adaptive, None if noise is None else noise / info.scale)
        return smooth(x, info.Omega, self.smoothing) if self.smoothing else x
