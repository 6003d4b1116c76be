"""Glue-function families beyond the Gaussian mixtures of :mod:`rrim.physics.synthetic`: named
out-of-distribution shapes, realistic spin-fluctuation, phonon and power-law glue, the mixed prior
the noise-adaptive models train on, a finer Ω grid to generate spectra on (no "inverse crime"), and
random partial ω coverage. Glue functions are rows on the Ω grid (n, n_Ω), dimensionless, ≥ 0.
"""
from __future__ import annotations

import numpy as np

from rrim.physics.grids import Grid
from rrim.physics.synthetic import gaussian_mixture, low_energy_factor


def _box(w, lo, hi):
    return ((w >= lo) & (w <= hi)).astype(np.float64)


def _trapezoid(w, a, b, c, d, height):
    rise = np.clip((w - a) / (b - a), 0, 1)
    fall = np.clip((d - w) / (d - c), 0, 1)
    return height * np.minimum(rise, fall)


def spin_fluctuation(Omega: Grid, amplitude: float = 1.0, omega_sf: float = 30.0, cutoff: float = 300.0,
                     mode_amplitude: float = 0.0, mode_centre: float = 40.0, mode_width: float = 4.0) -> np.ndarray:
    """a·Ω/(Ω² + Ω_sf²) with a smooth cutoff (Fermi edge of width 10 meV at ``cutoff``), optionally
    plus a sharp Gaussian mode (the ~40 meV resonance); meV; shape (n_Ω,).

    ``amplitude`` is the peak height of the MMP term (reached at Ω = Ω_sf). The parameters
    broadcast against the Ω axis: (n, 1) arrays give n glue functions, shape (n, n_Ω).
    """
    w = Omega.values
    mmp = 2 * omega_sf * amplitude * w / (w ** 2 + omega_sf ** 2)
    edge = 0.5 * (1 - np.tanh((w - cutoff) / 10.0))
    mode = mode_amplitude * np.exp(-0.5 * ((w - mode_centre) / mode_width) ** 2)
    return mmp * edge + mode


def ood_shapes(Omega: Grid) -> dict[str, np.ndarray]:
    """Named out-of-distribution glue functions on the Ω grid (docs/ARCHITECTURE.md §2), each (n_Ω,)."""
    w = Omega.values
    return {
        "wide_gaussian": 0.6 * np.exp(-0.5 * ((w - 200.0) / 150.0) ** 2) * low_energy_factor(Omega, 5.0),
        "square_low_wide": 0.3 * _box(w, 50.0, 250.0),
        "square_high_narrow": 0.9 * _box(w, 80.0, 140.0),
        "square_mid": 0.6 * _box(w, 150.0, 300.0),
        "trapezoid": _trapezoid(w, 30.0, 80.0, 200.0, 300.0, 0.5),
        "trapezoid_steep": _trapezoid(w, 60.0, 70.0, 160.0, 180.0, 0.8),
        "triangle": _trapezoid(w, 40.0, 150.0, 150.0, 260.0, 0.7),
        "triangle_narrow": _trapezoid(w, 20.0, 60.0, 60.0, 100.0, 0.9),
        "spin_fluctuation": spin_fluctuation(Omega, 0.5, 30.0, 300.0),
        "spin_fluctuation_mode": spin_fluctuation(Omega, 0.4, 30.0, 300.0, mode_amplitude=0.8),
    }


def realistic_glue(Omega: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random spin-fluctuation glue functions (random Ω_sf 15–60 meV, cutoff 200–380 meV,
    amplitude 0.2–0.8), half with a sharp mode at 35–45 meV; shape (n, n_Ω)."""
    def draw(low, high):
        return rng.uniform(low, high, size=(n, 1))

    amplitude, omega_sf, cutoff = draw(0.2, 0.8), draw(15.0, 60.0), draw(200.0, 380.0)
    mode = draw(0.3, 1.0) * (rng.random((n, 1)) < 0.5)
    return spin_fluctuation(Omega, amplitude, omega_sf, cutoff, mode_amplitude=mode,
                            mode_centre=draw(35.0, 45.0), mode_width=draw(3.0, 6.0))


# --- the realistic prior: physically motivated families, spectra from a finer Ω grid ----------

#: Families of :func:`realistic_prior`, drawn with equal probability.
PRIOR_FAMILIES = ("gaussian_mixture", "spin_fluctuation", "phonon_peaks", "power_law_onset")


def refined_grid(Omega: Grid, factor: int) -> Grid:
    """A uniform grid ``factor`` times finer than the uniform ``Omega`` with the same ends; its every
    ``factor``-th point is a point of ``Omega`` (``fine.values[::factor] == Omega.values``)."""
    v = Omega.values
    fine = np.linspace(v[0], v[-1], (v.size - 1) * int(factor) + 1)
    if not np.allclose(fine[::factor], v, rtol=0, atol=1e-9 * abs(v[-1])):
        raise ValueError(f"{Omega.name}: refined_grid needs a uniform grid")
    return Grid(fine, name=Omega.name)


def phonon_peaks(Omega: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` multi-peak phonon-like glue functions: 2–6 narrow Gaussians (widths 3–12 meV, centres
    8–120 meV) on a weak broad background, vanishing as Ω² below ~5 meV; shape (n, n_Ω)."""
    w = Omega.values
    k = rng.integers(2, 7, size=n)
    centre = rng.uniform(8.0, 120.0, size=(n, 6))
    width = rng.uniform(3.0, 12.0, size=(n, 6))
    amp = rng.uniform(0.2, 1.0, size=(n, 6)) * (np.arange(6)[None, :] < k[:, None])
    peaks = np.einsum("nk,nkj->nj", amp, np.exp(-0.5 * ((w - centre[..., None]) / width[..., None]) ** 2))
    background = rng.uniform(0.0, 0.15, size=(n, 1)) * np.exp(-0.5 * ((w - rng.uniform(60, 200, (n, 1))) / 80.0) ** 2)
    return (peaks + background) * low_energy_factor(Omega, 5.0)[None, :]


def power_law_onset(Omega: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` broad glue functions rising as Ω^p (p 1–3: spin fluctuations ~Ω, acoustic phonons ~Ω²)
    up to a scale Ω_c (10–150 meV), then falling off to a cutoff (150–390 meV); shape (n, n_Ω)."""
    w = Omega.values
    p = rng.uniform(1.0, 3.0, size=(n, 1))
    wc = rng.uniform(10.0, 150.0, size=(n, 1))
    rise = (w / wc) ** p / (1 + (w / wc) ** (p + 1))
    edge = 0.5 * (1 - np.tanh((w - rng.uniform(150.0, 390.0, (n, 1))) / rng.uniform(5.0, 30.0, (n, 1))))
    return rise * edge


def realistic_prior(Omega: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` glue functions, each from one of :data:`PRIOR_FAMILIES` (drawn uniformly): the paper's
    Gaussian mixtures, spin-fluctuation spectra with a cutoff ± a sharp mode (:func:`realistic_glue`),
    :func:`phonon_peaks` and :func:`power_law_onset`; each scaled to a peak height drawn in 0.1–1.
    Shape (n, n_Ω), ≥ 0."""
    family = rng.integers(len(PRIOR_FAMILIES), size=n)
    x = np.zeros((n, len(Omega)))
    makers = (lambda m: gaussian_mixture(Omega, m, rng), lambda m: realistic_glue(Omega, m, rng),
              lambda m: phonon_peaks(Omega, m, rng), lambda m: power_law_onset(Omega, m, rng))
    for f, make in enumerate(makers):
        rows = np.flatnonzero(family == f)
        if rows.size:
            x[rows] = make(rows.size)
    peak = np.max(x, axis=1, keepdims=True)
    return x / np.where(peak > 0, peak, 1.0) * rng.uniform(0.1, 1.0, size=(n, 1))


#: Measured ranges of :func:`coverage_masks`: spectra start at or below COVERAGE_START_MAX meV and
#: end at or above COVERAGE_END_MIN meV (a model trained on them is recorded as serving that).
COVERAGE_START_MAX, COVERAGE_END_MIN = 15.0, 200.0


def coverage_masks(omega: Grid, n: int, rng: np.random.Generator, full_fraction: float = 0.25) -> np.ndarray:
    """``n`` measured-ω masks (n, n_ω) bool like real optical data: a fraction ``full_fraction`` covers
    the whole grid; the others start at 2–15 meV and end at 200–400 meV (uniform draws), half of
    them with a band lost to absorption (2–5 % of the points, like the CO₂ band near 290 meV), and
    a third with 1–4 dead channels."""
    w = omega.values
    masks = np.ones((n, w.size), bool)
    for i in range(n):
        if rng.random() < full_fraction:
            continue
        masks[i] &= ((w >= rng.uniform(w[0], max(w[0], COVERAGE_START_MAX)))
                     & (w <= rng.uniform(min(w[-1], COVERAGE_END_MIN), w[-1])))
        if rng.random() < 0.5:
            width = max(1, int(rng.uniform(0.02, 0.05) * w.size))
            start = rng.integers(0, w.size - width)
            masks[i, start:start + width] = False
        if rng.random() < 1 / 3:
            masks[i, rng.integers(0, w.size, size=rng.integers(1, 5))] = False
    return masks
