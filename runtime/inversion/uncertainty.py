"""Noise estimate, calibrated uncertainty bands and the out-of-distribution score, per spectrum.

- **Noise** σ̂ (meV): 1.4826·MAD(Δ²y)/√6 over the model's ω grid — the robust standard deviation
  of second differences, which a smooth 1/τ(ω) barely moves (an upper bound where the spectrum
  is curved on the grid's scale).
- **Band**: the spectrum's inversion is repeated on ``resamples`` copies y + σ̂·ε_k (the same
  seeded ε_k (k, n_ω) for every spectrum, so results do not depend on batching) through the same
  session; with s(Ω) their standard deviation, u(Ω) = √(s² + (α·rms x̂)²) adds the model's own
  error floor α, and the band is x̂ ± c·u clipped at 0. c depends on the coverage asked for, on
  the relative noise σ̂/max|y| and on the temperature (bins), and α, c come from the model's calibration: held-out
  synthetic spectra on which the observed pointwise coverage of the true glue matches the
  stated one (see :mod:`rrim.inversion.calibration`, ``rrim calibrate``).
- **OOD score**: min over two refits of RMS(fit − y)/√(σ̂² + (β·RMS y)²): the rRIM's refit A x̂ and
  a model-independent non-negative fit (:func:`consistency_fit`, projected preconditioned Landweber),
  in units of the noise with the noiseless misfit β (95th percentile) as a floor. High means no
  glue ≥ 0 explains the spectrum well; flagged ``out_of_distribution`` above the calibrated
  threshold of its relative-noise bin (the 99th percentile on held-out in-distribution spectra, at least 2).
  The runtime computes the consistency fit only where the rRIM's own score is above the threshold
  (below it, the score reported is the rRIM's: the minimum could only be lower, the flag the same).

A calibration lives beside its model as ``NAME.calibration.json`` and names the model's sha256;
one for another model is refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rrim.files import read_regular
from rrim.models.loading import user_model_folders
from rrim.models.modelfile import ModelFileError

CALIBRATION_FORMAT = "rrim-calibration-1"
#: Coverages a calibration provides (pointwise, of the true glue by [lower, upper]).
COVERAGES = (0.68, 0.9)
#: Noise-resampled copies per spectrum (a calibration may ask for 2 to MAX_RESAMPLES).
DEFAULT_RESAMPLES = 16
MAX_RESAMPLES = 1024
#: Largest calibration file read.
MAX_CALIBRATION_BYTES = 1 << 24
RESAMPLE_SEED = 20241
#: Edges of the relative-noise bins log10(σ̂/max|y|) of the band scales. The first sits between noiseless
#: spectra (σ̂ is then the curvature floor of the second differences: log10 −5.2…−4.4 on the training
#: distribution, 5–95 %) and σ = 1e-4 (−4.05…−3.9), so that the two never share a band scale.
NOISE_BIN_EDGES = (-4.2, -3.5, -2.5, -1.75)


def estimate_noise(y: np.ndarray) -> np.ndarray:
    """σ̂ (n,) in the units of ``y`` (n, n_ω): robust std of second differences / √6; NaN for non-finite rows."""
    d2 = np.diff(np.asarray(y, dtype=np.float64), 2, axis=-1)
    med = np.median(d2, axis=-1, keepdims=True)
    return 1.4826 * np.median(np.abs(d2 - med), axis=-1) / np.sqrt(6.0)


def relative_noise(noise: np.ndarray, y: np.ndarray) -> np.ndarray:
    """σ̂/max|y| per spectrum (the noise level σ of the synthetic data's convention)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return noise / np.max(np.abs(y), axis=-1)


def resample_noise(n_omega: int, resamples: int) -> np.ndarray:
    """The fixed ε (resamples, n_ω), N(0, 1), used for every spectrum."""
    return np.random.default_rng(RESAMPLE_SEED).standard_normal((int(resamples), int(n_omega)))


#: Regularization weight (scaled units) and steps of the model-independent consistency fit.
CONSISTENCY_H = 1e-4
CONSISTENCY_STEPS = 30


def consistency_fit(y_meV: np.ndarray, op) -> np.ndarray:
    """A·x of a non-negative glue x fitted to ``y_meV`` (n, n_ω) by projected preconditioned Landweber
    (x ← max(0, x + P_h(y/s − Aₛx)), h = :data:`CONSISTENCY_H`, :data:`CONSISTENCY_STEPS` steps); meV.
    P_h is cached on ``op`` (the runtime's operators are cached per model and temperature)."""
    ys = np.asarray(y_meV, dtype=np.float64) / op.scale
    x = np.maximum(ys @ op.preconditioner(CONSISTENCY_H).T, 0.0)
    for _ in range(CONSISTENCY_STEPS):
        x = np.maximum(x + op.preconditioned_residual(ys, x, CONSISTENCY_H), 0.0)
    return op.forward(x)


def ood_score(y: np.ndarray, fits, noise: np.ndarray, beta: float, valid=None) -> np.ndarray:
    """min over ``fits`` of RMS(fit − y)/√(σ̂² + (β·RMS y)²) per spectrum over the ``valid`` ω points (n,)."""
    mask = slice(None) if valid is None else np.asarray(valid, bool)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rms_res = np.min([np.sqrt(np.mean((f[:, mask] - y[:, mask]) ** 2, axis=1)) for f in fits], axis=0)
        rms_y = np.sqrt(np.mean(y[:, mask] ** 2, axis=1))
        return rms_res / np.sqrt(noise ** 2 + (beta * rms_y) ** 2)


@dataclass(frozen=True)
class Calibration:
    """A model's calibration: α (error floor relative to rms x̂), β (noiseless misfit floor), the
    band scales c per coverage and relative-noise bin, the OOD threshold, and how it was made."""

    model_sha256: str
    resamples: int
    alpha: float
    beta: float
    band_scale: dict  # {"0.68": [[c per noise bin] per temperature bin], …}
    ood_threshold: list  # per noise bin
    noise_bin_edges: tuple = NOISE_BIN_EDGES
    temperature_bin_edges: tuple = ()  # K; () for one temperature bin
    provenance: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def noise_bin(self, rel_noise: np.ndarray) -> np.ndarray:
        """Bin index (n,) of relative noise levels σ̂/max|y| (n,)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.digitize(np.log10(np.nan_to_num(rel_noise, nan=0.0)), self.noise_bin_edges)

    def scale(self, coverage: float, rel_noise: np.ndarray, temperature: float) -> np.ndarray:
        """c (n,) for ``coverage`` at relative noise levels ``rel_noise`` (n,) and ``temperature`` K."""
        key = _coverage_key(coverage, self.band_scale)
        t_bin = int(np.digitize(float(temperature), self.temperature_bin_edges))
        return np.asarray(self.band_scale[key], dtype=np.float64)[t_bin][self.noise_bin(rel_noise)]

    def threshold(self, rel_noise: np.ndarray) -> np.ndarray:
        """The OOD threshold (n,) at relative noise levels ``rel_noise`` (n,)."""
        return np.asarray(self.ood_threshold, dtype=np.float64)[self.noise_bin(rel_noise)]

    def band(self, glue: np.ndarray, spread: np.ndarray, rel_noise: np.ndarray, coverage: float, temperature: float):
        """(lower, upper) (n, n_Ω) of glue x̂ with resample spread s (n, n_Ω), spectra at ``temperature`` K."""
        u = np.sqrt(spread ** 2 + (self.alpha * np.sqrt(np.mean(glue ** 2, axis=1, keepdims=True))) ** 2)
        half = self.scale(coverage, rel_noise, temperature)[:, None] * u
        return np.maximum(glue - half, 0.0), glue + half

    def to_json(self) -> str:
        return json.dumps({"format": CALIBRATION_FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_file(cls, path: Path, model_sha256: str) -> "Calibration":
        """Read and validate a calibration of the model with ``model_sha256``; :class:`ModelFileError` naming the file."""
        try:
            data = read_regular(path, MAX_CALIBRATION_BYTES)
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{path}: not a usable rrim calibration ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_bytes(data, path, model_sha256)

    @classmethod
    def from_bytes(cls, data: bytes, path, model_sha256: str) -> "Calibration":
        """:meth:`from_file` on the bytes ``data`` of file ``path``."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            if d.pop("format", None) != CALIBRATION_FORMAT:
                raise ValueError(f"format is not {CALIBRATION_FORMAT!r}")
            d["noise_bin_edges"] = tuple(d["noise_bin_edges"])
            d["temperature_bin_edges"] = tuple(d.get("temperature_bin_edges", ()))
            cal = cls(**d)
            cal._validate()
        except RecursionError:
            raise ModelFileError(f"{path}: not a usable rrim calibration (JSON nested too deeply)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: not a usable rrim calibration ({e})") from None
        if cal.model_sha256 != model_sha256:
            raise ModelFileError(f"{path}: calibration made for model sha256 {str(cal.model_sha256)[:12]}…, "
                                 f"not this model ({model_sha256[:12]}…); run `rrim calibrate` for it")
        return cal

    def _validate(self) -> None:
        """ValueError naming the first field that no calibration could hold."""
        def number(v, what, low=-math.inf):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
                raise ValueError(f"{what} must be a finite number ≥ {low:g}, got {v!r}")

        def increasing(edges, what):
            for e in edges:
                number(e, what)
            if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
                raise ValueError(f"{what} must increase strictly, got {list(edges)}")

        if not isinstance(self.model_sha256, str):
            raise ValueError(f"model_sha256 must be a string, got {self.model_sha256!r}")
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or \
                not 2 <= self.resamples <= MAX_RESAMPLES:
            raise ValueError(f"resamples must be an integer from 2 to {MAX_RESAMPLES}, got {self.resamples!r}")
        number(self.alpha, "alpha", 0.0)
        number(self.beta, "beta", 0.0)
        increasing(self.noise_bin_edges, "noise_bin_edges")
        increasing(self.temperature_bin_edges, "temperature_bin_edges")
        if not isinstance(self.band_scale, dict) or not self.band_scale:
            raise ValueError("band_scale must map coverages to scales")
        if not isinstance(self.provenance, dict) or not isinstance(self.report, dict):
            raise ValueError("provenance and report must be JSON objects")
        n_noise, n_T = len(self.noise_bin_edges) + 1, len(self.temperature_bin_edges) + 1
        for k in self.band_scale:
            if not 0 < float(k) < 1:
                raise ValueError(f"band_scale: coverage {k!r} must lie between 0 and 1")
        for key, values, shape in [*((f"band_scale[{k!r}]", v, (n_T, n_noise)) for k, v in self.band_scale.items()),
                                   ("ood_threshold", self.ood_threshold, (n_noise,))]:
            values = np.asarray(values, dtype=np.float64)
            if values.shape != shape or not np.isfinite(values).all() or not (values > 0).all():
                raise ValueError(f"{key} needs {shape} finite numbers > 0")


def _coverage_key(coverage: float, table: dict) -> str:
    for key in table:
        if abs(float(key) - float(coverage)) < 1e-9:
            return key
    raise ValueError(f"coverage: the calibration provides {sorted(float(k) for k in table)}, not {coverage!r}")


def calibration_path(model_path) -> Path:
    """Where the calibration of model file ``NAME.onnx`` is read from: ``NAME.calibration.json`` in the
    first user model folder that has one (:func:`rrim.models.loading.user_model_folders`: a calibration
    made for a shipped model, which ``rrim calibrate`` never writes into the package), else beside
    ``NAME.onnx``."""
    p = Path(model_path)
    name = p.stem + ".calibration.json"
    return next((f / name for f in user_model_folders() if (f / name).exists()), p.with_name(name))


def _read(model) -> tuple[bytes, str] | None:
    """(bytes, sha256) of the model's calibration file, None when it has none."""
    from rrim.models.sessions import sha256_bytes

    path = calibration_path(model.path)
    try:
        data = read_regular(path, MAX_CALIBRATION_BYTES)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a usable rrim calibration ({getattr(e, 'strerror', None) or e})") from None
    return data, sha256_bytes(data)


def calibration_digest(model) -> str:
    """sha256 of the model's calibration file, or "none" (recorded in outputs: a new calibration redoes them)."""
    try:
        found = _read(model)
    except ModelFileError:
        return "unreadable"
    return "none" if found is None else found[1]


def load_calibration(model) -> Calibration | None:
    """The calibration of a :class:`~rrim.models.loading.LoadedModel`, or None when it has none; parsed from the
    same bytes that are hashed (a few kB: read again on each call, so a recalibration is seen at once)."""
    found = _read(model)
    if found is None:
        return None
    return Calibration.from_bytes(found[0], str(calibration_path(model.path)), model.sha256)
