"""The rRIM as an estimator, called like the classical solvers (``fit(y).x_``)."""
from __future__ import annotations

import numpy as np
import pytest
from rrim.inversion.engine import invert
from rrim.inversion.estimator import RRIM
from rrim.models.loading import load_model
from rrim.physics.glue_families import realistic_glue
from rrim.physics.synthetic import add_noise
from rrim.solvers import Tikhonov


@pytest.fixture(scope="module")
def spectra(default_operator):
    x = realistic_glue(default_operator.Omega, 4, np.random.default_rng(3))
    return x, add_noise(default_operator.forward(x), 1e-3, np.random.default_rng(4))


def test_fit_matches_invert_and_a_classical_solver_is_called_alike(spectra):
    x, y = spectra
    model = load_model("rrim-default")
    est = RRIM(model, provider="cpu").fit(y)
    assert np.array_equal(est.x_, invert(y, model, provider="cpu").glue)
    assert np.allclose(est.fit_, est.operator_.forward(est.x_))
    tik = Tikhonov(est.operator_).fit(y)  # the same call on the same operator
    assert est.x_.shape == tik.x_.shape == x.shape
    assert np.mean((est.x_ - x) ** 2) < np.mean((tik.x_ - x) ** 2)


def test_one_spectrum_gives_one_row_and_bad_shapes_are_refused(spectra):
    _, y = spectra
    est = RRIM("rrim-default", provider="cpu").fit(y[0])
    assert est.x_.ndim == 1 and est.fit_.shape == y[0].shape and np.ndim(est.flags_) == 0
    assert np.allclose(est.x_, RRIM("rrim-default", provider="cpu").fit(y).x_[0], atol=1e-6)
    with pytest.raises(ValueError, match="y: expected spectra"):
        RRIM(provider="cpu").fit(np.zeros((2, 2, 200)))
