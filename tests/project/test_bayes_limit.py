"""The importance sampling of benchmarks/bayes_limit.py against a posterior known by quadrature."""
from __future__ import annotations

import numpy as np

from benchmark_scripts import load_benchmark


def _posterior_class():
    return load_benchmark("bayes_limit").Posterior


def test_posterior_mean_and_variance_match_quadrature():
    """x ~ U(1, 2), y = x + σ·x·ε (the benchmark's noise model, σ·max|A x|): the sampled posterior mean
    and variance equal those on a fine grid, in chunks (the running rescaling) as in one go."""
    Posterior = _posterior_class()
    sigma, rng = 0.05, np.random.default_rng(0)
    truth = rng.uniform(1.0, 2.0, size=(5, 1))
    y = truth + sigma * truth * rng.standard_normal(truth.shape)
    post = Posterior(y, sigma)
    for _ in range(4):
        draws = rng.uniform(1.0, 2.0, size=(50_000, 1))
        post.add(draws, draws)
    grid = np.linspace(1.0, 2.0, 200_001)
    for k in range(len(y)):
        w = np.exp(-0.5 * ((y[k, 0] - grid) / (sigma * grid)) ** 2) / grid
        mean = np.sum(w * grid) / np.sum(w)
        var = np.sum(w * grid ** 2) / np.sum(w) - mean ** 2
        assert abs(post.mean()[k, 0] - mean) < 0.05 * np.sqrt(var)
        assert abs(post.variance()[k] / var - 1) < 0.05
    assert np.all(post.ess() > 1000)
