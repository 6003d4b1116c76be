"""The realistic benchmark set: seeded "archives" of measured-style spectra from glue shapes that no
training draws (other parameter ranges, other families), to judge a model the way a lab would.

Each :class:`BenchmarkFile` holds ``n`` spectra sharing one glue family, one noise level σ (of
max y), one temperature and one measured-ω mask on the model's ω grid (an FTIR-like range: the low
end at 5–12 meV, the high end at 250–390 meV, the CO₂ band at 288–296 meV lost when inside the range,
and 0–3 dead channels). The glue is drawn on a grid :data:`FINE` times finer than the model's Ω
grid and the spectra are computed there (no inverse crime); ``x`` is the glue on the model's grid,
``y`` (n, n_ω) meV is zero at unmeasured points. Families (:data:`FAMILIES`):

- ``mmp_mode``: spin-fluctuation spectrum (Ω_sf 8–90 meV, cutoff 150–400 meV) + one sharp mode
  (25–65 meV, width 1.5–8 meV), wider ranges than the training prior's;
- ``two_modes``: the same with two modes;
- ``phonon_lines``: 4–9 narrow lines (widths 2–5 meV) below 160 meV on an Ω² onset;
- ``plateau``: a flat band with soft edges of random position and width (box-like, out of the prior);
- ``eliashberg``: a Debye-like Ω² rise to 15–40 meV, a transverse and a longitudinal peak, a cutoff.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrim.physics.glue_families import refined_grid
from rrim.physics.grids import Grid
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import add_noise, low_energy_factor

FAMILIES = ("mmp_mode", "two_modes", "phonon_lines", "plateau", "eliashberg")
SIGMAS = (1e-4, 1e-3, 1e-2)
FINE = 4
SEED = 20261201


@dataclass(frozen=True)
class BenchmarkFile:
    """One archive of the set: glue ``x`` (n, n_Ω), spectra ``y`` (n, n_ω) meV (0 where unmeasured),
    ``mask`` (n_ω,) measured points, and how it was made."""

    name: str
    family: str
    sigma: float
    temperature: float
    mask: np.ndarray
    x: np.ndarray
    y: np.ndarray


def _gauss(w, centre, width):
    return np.exp(-0.5 * ((w - centre) / width) ** 2)


def _mmp(w, rng, n):
    sf = rng.uniform(8.0, 90.0, (n, 1))
    edge = 0.5 * (1 - np.tanh((w - rng.uniform(150.0, 400.0, (n, 1))) / rng.uniform(5.0, 25.0, (n, 1))))
    return 2 * sf * w / (w ** 2 + sf ** 2) * edge * rng.uniform(0.2, 0.7, (n, 1))


def draw_family(family: str, Omega: Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` glue functions (n, n_Ω) of ``family`` on ``Omega``, ≥ 0, peak height 0.1–1."""
    w = Omega.values

    def mode():
        return rng.uniform(0.3, 1.0, (n, 1)) * _gauss(w, rng.uniform(25.0, 65.0, (n, 1)), rng.uniform(1.5, 8.0, (n, 1)))

    if family == "mmp_mode":
        x = _mmp(w, rng, n) + mode()
    elif family == "two_modes":
        x = _mmp(w, rng, n) + mode() + 0.6 * mode()
    elif family == "phonon_lines":
        k = rng.integers(4, 10, size=n)
        lines = [(np.arange(9) < k[i]) * rng.uniform(0.2, 1.0, 9) for i in range(n)]
        centres, widths = rng.uniform(6.0, 160.0, (n, 9)), rng.uniform(2.0, 5.0, (n, 9))
        x = np.einsum("nk,nkj->nj", np.array(lines), _gauss(w, centres[..., None], widths[..., None]))
        x *= low_energy_factor(Omega, 4.0)[None, :]
    elif family == "plateau":
        lo, width = rng.uniform(5.0, 150.0, (n, 1)), rng.uniform(30.0, 220.0, (n, 1))
        soft = rng.uniform(2.0, 15.0, (n, 1))
        x = 0.25 * (1 + np.tanh((w - lo) / soft)) * (1 - np.tanh((w - lo - width) / soft))
    elif family == "eliashberg":
        wd = rng.uniform(15.0, 40.0, (n, 1))
        debye = np.minimum((w / wd) ** 2, 1.0) * np.exp(-np.maximum(w - wd, 0) / rng.uniform(20.0, 80.0, (n, 1)))
        peaks = (rng.uniform(0.5, 1.0, (n, 1)) * _gauss(w, wd, rng.uniform(3.0, 8.0, (n, 1)))
                 + rng.uniform(0.3, 0.9, (n, 1)) * _gauss(w, wd * rng.uniform(1.5, 2.5, (n, 1)), rng.uniform(3.0, 8.0, (n, 1))))
        x = (0.3 * debye + peaks) * (w < rng.uniform(60.0, 200.0, (n, 1)))
    else:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    peak = x.max(axis=1, keepdims=True)
    return x / np.where(peak > 0, peak, 1.0) * rng.uniform(0.1, 1.0, (n, 1))


def ftir_mask(omega: Grid, rng: np.random.Generator) -> np.ndarray:
    """A measured-ω mask (n_ω,) bool like an FTIR range (module doc)."""
    w = omega.values
    mask = (w >= rng.uniform(5.0, 12.0)) & (w <= rng.uniform(250.0, 390.0))
    mask &= ~((w >= 288.0) & (w <= 296.0))
    mask[rng.integers(0, w.size, size=rng.integers(0, 4))] = False
    return mask


def benchmark_files(operator: ForwardOperator, n_per_file: int = 16, seed: int = SEED,
                    temperatures=(100.0,)) -> list[BenchmarkFile]:
    """Every (family, σ, temperature) file of the set, seeded; ``operator`` gives the model's grids."""
    fine = refined_grid(operator.Omega, FINE)
    files = []
    for t_index, T in enumerate(temperatures):
        op_fine = ForwardOperator(operator.omega, fine, T, operator.kernel, operator.scale)
        for f_index, family in enumerate(FAMILIES):
            for s_index, sigma in enumerate(SIGMAS):
                rng = np.random.default_rng([seed, t_index, f_index, s_index])
                x_fine = draw_family(family, fine, n_per_file, rng)
                y = op_fine.forward(x_fine)
                y = add_noise(y, sigma, rng)
                mask = ftir_mask(operator.omega, rng)
                files.append(BenchmarkFile(f"{family}-{T:g}K-sigma{sigma:g}", family, sigma, float(T), mask,
                                           x_fine[:, ::FINE], y * mask))
    return files
