"""Batch inversion: the fixture model equals projected iterated Tikhonov computed here in float64,
both forms agree, batching does not matter, non-finite spectra are flagged and skipped."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import rrim
from rrim.inversion.engine import InversionResult, invert
from rrim.inversion.feeds import smooth
from rrim.inversion.flags import (FLAG_NONFINITE, FLAG_POOR_FIT, FLAG_TEMPERATURE, POOR_FIT_FLOOR, flag_names,
                                  poor_fit_threshold)
from rrim.io.schema import BAND_VARIABLES, IMPURITY_VARIABLES, OUTPUT_VARIABLES
from rrim.models.loading import load_model
from runtime_helpers import N_STEPS, noisy_spectra, write_model


@pytest.fixture(scope="module")
def models(tmp_path_factory, default_operator):
    d = tmp_path_factory.mktemp("models")
    return {form: load_model(write_model(d, default_operator, form)) for form in ("baked", "input")}


def projected_tikhonov(op, y_meV, steps=N_STEPS):
    a, p = op.scaled_matrix, op.preconditioner(rrim.DEFAULT_H)
    y = y_meV / op.scale
    x = np.zeros((y.shape[0], a.shape[1]))
    for _ in range(steps):
        x = np.maximum(x + (y - x @ a.T) @ p.T, 0.0)
    return x


def test_invert_matches_float64_reference_and_refits(models, default_operator):
    x_true, y = noisy_spectra(default_operator, 40)
    r = invert(y, models["baked"], provider="cpu", batch_size=7)
    ref = projected_tikhonov(default_operator, y)
    # float32 model vs float64 reference: error relative to the output scale
    assert np.max(np.abs(r.glue - ref)) <= 1e-3 * np.max(np.abs(ref))
    np.testing.assert_allclose(r.scattering_rate_fit, r.glue @ default_operator.matrix.T)
    expected = np.sqrt(np.mean((r.scattering_rate_fit - y) ** 2, 1)) / np.sqrt(np.mean(y ** 2, 1))
    np.testing.assert_allclose(r.residual, expected)
    assert r.provider == "cpu" and r.glue.dtype == np.float64 and set(np.unique(r.flags)) <= {0, FLAG_POOR_FIT}
    # the fixture's h = 0.01 is strong: the spectra it cannot fit to within the noise are flagged
    limit = poor_fit_threshold(r.noise_estimate / np.sqrt(np.mean(y ** 2, 1)))
    np.testing.assert_array_equal(r.flags & FLAG_POOR_FIT > 0, r.residual > limit)
    # recovery of the known glue (bar for the 15-step Tikhonov fixture, noise 1e-3)
    err = np.linalg.norm(r.glue - x_true, axis=1) / np.linalg.norm(x_true, axis=1)
    assert np.median(err) < 0.2


def test_forms_agree_and_batch_size_does_not_matter(models, default_operator):
    _, y = noisy_spectra(default_operator, 33, seed=3)
    a = invert(y, models["baked"], provider="cpu", batch_size=64).glue
    b = invert(y, models["input"], provider="cpu", batch_size=5).glue
    c = invert(y, models["baked"], provider="cpu", batch_size=1).glue
    scale = np.max(np.abs(a))
    assert np.max(np.abs(a - b)) <= 1e-5 * scale and np.max(np.abs(a - c)) <= 1e-6 * scale


def test_input_form_uses_the_given_temperature(models):
    op20 = rrim.ForwardOperator(temperature=20.0)
    x_true, y = noisy_spectra(op20, 8, seed=5)
    r = invert(y, models["input"], provider="cpu", temperature=20.0)
    np.testing.assert_allclose(r.glue, projected_tikhonov(op20, y), atol=1e-3 * np.abs(r.glue).max())
    assert not (r.flags & FLAG_TEMPERATURE).any()
    baked = invert(y, models["baked"], provider="cpu", temperature=20.0)  # outside the baked model's range
    assert (baked.flags & FLAG_TEMPERATURE).all()


def test_nonfinite_spectra_are_flagged_and_skipped(models, default_operator):
    _, y = noisy_spectra(default_operator, 6, seed=9)
    y[1, 10], y[4, -1] = np.nan, np.inf
    r = invert(y, models["baked"], provider="cpu")
    bad = np.array([0, 1, 0, 0, 1, 0], bool)
    assert np.array_equal((r.flags & FLAG_NONFINITE) > 0, bad)
    assert np.isnan(r.glue[bad]).all() and np.isnan(r.residual[bad]).all()
    assert np.isfinite(r.glue[~bad]).all()
    np.testing.assert_allclose(r.glue[~bad], invert(y[~bad], models["baked"], provider="cpu").glue)
    assert flag_names(int(r.flags[1])) == ["nonfinite_input"]


def test_poor_fit_is_flagged(models, default_operator):
    _, y = noisy_spectra(default_operator, 4, seed=11)
    y[2] = y[2] * (1 + 0.5 * np.sin(default_operator.omega.values / 5.0))  # no glue fits this
    r = invert(y, models["baked"], provider="cpu")
    assert r.residual[2] > 10 * POOR_FIT_FLOOR and r.flags[2] & FLAG_POOR_FIT
    assert not (np.delete(r.flags, 2) & FLAG_POOR_FIT).any()


def test_smoothing_keeps_constants_and_narrows_nothing(default_operator):
    Omega = default_operator.Omega
    ones = np.ones((2, len(Omega)))
    np.testing.assert_allclose(smooth(ones, Omega, 5.0), ones)
    spike = np.zeros(len(Omega))
    spike[100] = 1.0
    s = smooth(spike, Omega, 6.0)
    width = np.sqrt(np.sum(s * (Omega.values - Omega.values[100]) ** 2) / np.sum(s))
    assert 5.0 < width < 7.0  # the σ asked for, in meV
    with pytest.raises(ValueError, match="smoothing_meV"):
        smooth(spike, Omega, -1.0)


def test_bad_shapes_are_refused(models):
    with pytest.raises(ValueError, match="y_meV: expected shape \\(n, 200\\)"):
        invert(np.zeros((3, 150)), models["baked"])
    with pytest.raises(ValueError, match="batch_size"):
        invert(np.zeros((3, 200)), models["baked"], batch_size=0)


def test_result_fields_are_named_like_the_output_variables():
    """The archive job copies the engine's per-spectrum results into the output variables by name."""
    derived = {"lambda", "omega_log", "temperature", "scattering_rate_fit_input"}  # computed by the job from the glue
    fields = {f.name for f in dataclasses.fields(InversionResult)}
    written = (set(OUTPUT_VARIABLES) - derived) | set(BAND_VARIABLES) | set(IMPURITY_VARIABLES)
    assert written <= fields, sorted(written - fields)
