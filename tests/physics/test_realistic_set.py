"""The realistic benchmark set and the training prior: seeded, physical (glue ≥ 0 vanishing at Ω → 0),
measured-style coverage, spectra from a finer grid than the model's."""
from __future__ import annotations

import numpy as np

from rrim.physics.glue_families import (COVERAGE_END_MIN, COVERAGE_START_MAX, PRIOR_FAMILIES, coverage_masks,
                                        realistic_prior, refined_grid)
from rrim.physics.realistic_set import FAMILIES, SIGMAS, benchmark_files, draw_family


def test_benchmark_files_are_seeded_and_measured_like_ftir(default_operator):
    a = benchmark_files(default_operator, n_per_file=3)
    b = benchmark_files(default_operator, n_per_file=3)
    assert len(a) == len(FAMILIES) * len(SIGMAS)
    w = default_operator.omega.values
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.y, fb.y)
        assert np.all(fa.x >= 0) and np.all(fa.y[:, ~fa.mask] == 0)
        measured = w[fa.mask]
        assert 5.0 <= measured[0] <= 12.5 and 249.0 <= measured[-1] <= 390.0
        assert not fa.mask[(w >= 288.0) & (w <= 296.0)].any() or measured[-1] < 288.0


def test_spectra_come_from_a_finer_grid_than_the_model(default_operator):
    """No inverse crime: the model's own A applied to the coarse glue misses the set's noiseless-ish data
    by more than rounding (the finer quadrature differs)."""
    f = benchmark_files(default_operator, n_per_file=4)[0]  # σ = 1e-4
    coarse = default_operator.forward(f.x) * f.mask
    rel = np.linalg.norm(coarse - f.y, axis=1) / np.linalg.norm(f.y, axis=1)
    assert np.all(rel > 1e-6)


def test_prior_families_are_physical(default_operator):
    fine = refined_grid(default_operator.Omega, 2)
    np.testing.assert_array_equal(fine.values[::2], default_operator.Omega.values)
    x = realistic_prior(fine, 400, np.random.default_rng(0))
    assert len(PRIOR_FAMILIES) == 4 and np.all(x >= 0)
    peaks = x.max(axis=1)
    assert peaks.min() >= 0.1 - 1e-12 and peaks.max() <= 1.0 + 1e-12
    W = fine.values
    at_zero = x[:, 0] - W[0] * (x[:, 1] - x[:, 0]) / (W[1] - W[0])  # linear extrapolation to Ω = 0
    assert np.all(at_zero < 0.05 * peaks)  # glue vanishes as Ω → 0 (linearly or faster)
    for family in FAMILIES:
        g = draw_family(family, fine, 20, np.random.default_rng(1))
        assert np.all(g >= 0) and np.all(g.max(axis=1) > 0)


def test_coverage_masks_stay_in_the_trained_range(default_operator):
    w = default_operator.omega.values
    masks = coverage_masks(default_operator.omega, 300, np.random.default_rng(2))
    assert 0.15 < masks.all(axis=1).mean() < 0.35  # about a quarter fully measured
    for m in masks:
        step = w[1] - w[0]  # a draw falls between grid points; a dead channel may take an end point
        assert w[m][0] <= COVERAGE_START_MAX + 2 * step and w[m][-1] >= COVERAGE_END_MIN - 2 * step
