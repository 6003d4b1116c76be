"""Noise estimate, calibrated bands, the OOD score and the impurity term, on small fixture models
(projected iterated Tikhonov with the rRIM's contract) and the shared physics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim
from rrim.cli import main
from rrim.inversion.calibration import COVERAGE_TOLERANCE, calibrate, report_markdown
from rrim.inversion.engine import invert
from rrim.inversion.flags import FLAG_OOD
from rrim.inversion.uncertainty import calibration_path, estimate_noise, load_calibration
from rrim.models.loading import load_model
from rrim.models.modelfile import ModelFileError
from rrim.physics.glue_families import realistic_glue
from rrim.physics.impurity import estimate_impurity
from rrim.physics.synthetic import add_noise, gaussian_mixture
from runtime_helpers import write_archive, write_model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, default_operator):
    """A baked fixture model with its calibration written beside it (60 spectra per noise level)."""
    folder = tmp_path_factory.mktemp("calibrated")
    model = load_model(write_model(folder, default_operator, "baked"))
    cal = calibrate(model, n=60, resamples=8, command="test")
    calibration_path(model.path).write_text(cal.to_json())
    return model, cal


def test_noise_estimate_recovers_the_added_noise(default_operator, rng):
    x = gaussian_mixture(default_operator.Omega, 50, rng)
    clean = default_operator.forward(x)
    for sigma in (1e-3, 1e-2):
        y = add_noise(clean, sigma, rng)
        ratio = estimate_noise(y) / (sigma * np.abs(clean).max(axis=1))
        assert abs(np.median(ratio) - 1) < 0.05, (sigma, np.median(ratio))
    assert np.median(estimate_noise(clean) / np.abs(clean).max(axis=1)) < 1e-4  # curvature alone: far below 1e-3


def test_calibration_meets_its_stated_coverage_on_held_out_spectra(calibrated):
    model, cal = calibrated
    coverage = cal.report["coverage"]
    for q, table in coverage.items():
        observed = np.mean([c["observed"] for per_T in table.values() for c in per_T.values()])
        assert abs(observed - float(q)) <= COVERAGE_TOLERANCE, (q, observed)
    assert np.all(np.array(cal.band_scale["0.9"]) > np.array(cal.band_scale["0.68"]))  # wider for more coverage
    md = report_markdown(cal, model)
    assert "Observed coverage" in md and "false-flag rate" in md and "spin_fluctuation" in md


def test_input_form_calibration_has_temperature_bins(tmp_path, default_operator):
    model = load_model(write_model(tmp_path, default_operator, "input"))  # valid over 5–300 K
    cal = calibrate(model, n=40, resamples=4)
    temps = cal.provenance["temperatures_K"]
    assert len(temps) == 4 and temps[0] == 5.0 and temps[-1] == 300.0 and len(cal.temperature_bin_edges) == 3
    assert np.array(cal.band_scale["0.9"]).shape == (4, len(cal.noise_bin_edges) + 1)
    assert list(cal.report["coverage"]["0.9"]["0"]) == [f"{t:g}" for t in temps]
    rel = np.full(3, 1e-3)
    for k, T in enumerate(temps):  # each temperature gets its own row of scales
        np.testing.assert_array_equal(cal.scale(0.9, rel, T), np.array(cal.band_scale["0.9"])[k][cal.noise_bin(rel)])


def test_band_contains_the_estimate_is_nonnegative_and_independent_of_batching(calibrated, default_operator, rng):
    model, _ = calibrated
    x = gaussian_mixture(default_operator.Omega, 6, rng)
    y = add_noise(default_operator.forward(x), 1e-3, rng)
    r = invert(y, model, provider="cpu", coverage=0.9)
    assert (r.glue_lower <= r.glue).all() and (r.glue <= r.glue_upper).all() and (r.glue_lower >= 0).all()
    assert (r.glue_upper - r.glue_lower).mean() > 0
    narrow = invert(y, model, provider="cpu", coverage=0.68)
    assert (narrow.glue_upper - narrow.glue_lower).mean() < (r.glue_upper - r.glue_lower).mean()
    one = invert(y[2:3], model, provider="cpu", coverage=0.9, batch_size=1)
    np.testing.assert_allclose(one.glue_upper[0], r.glue_upper[2], rtol=1e-6, atol=1e-9)


def test_band_needs_a_calibration_of_this_model(tmp_path, calibrated, default_operator):
    model, cal = calibrated
    bare = load_model(write_model(tmp_path, default_operator, "input"))
    y = default_operator.forward(np.full((1, len(default_operator.Omega)), 0.2))
    with pytest.raises(ValueError, match="no calibration.*rrim calibrate"):
        invert(y, bare, provider="cpu", coverage=0.9)
    assert np.isnan(invert(y, bare, provider="cpu").ood_score).all()
    calibration_path(bare.path).write_text(cal.to_json())  # another model's calibration
    with pytest.raises(ModelFileError, match="calibration made for model sha256"):
        load_calibration(bare)
    with pytest.raises(ModelFileError):
        invert(y, bare, provider="cpu", coverage=0.9)
    assert invert(y, bare, provider="cpu").glue.shape == (1, len(default_operator.Omega))  # warns, still inverts
    with pytest.raises(ValueError, match="coverage"):
        invert(y, model, provider="cpu", coverage=0.5)


def test_ood_score_flags_spectra_no_glue_explains(calibrated, default_operator, rng):
    model, cal = calibrated
    x = gaussian_mixture(default_operator.Omega, 40, rng)
    y = add_noise(default_operator.forward(x), 1e-3, rng)
    ok = invert(y, model, provider="cpu")
    assert np.mean(ok.flags & FLAG_OOD > 0) <= 0.1
    w = default_operator.omega.values
    bad = y * (1 + 0.3 * np.sin(2 * np.pi * w / 80.0))  # ±30 % wiggles: 1/τ from any glue ≥ 0 rises monotonically
    flagged = invert(bad, model, provider="cpu")
    assert np.all(flagged.flags & FLAG_OOD) and np.all(flagged.ood_score > 3 * np.nanmedian(ok.ood_score))


@pytest.mark.parametrize("temperature, tolerance", [(10.0, 5.0), (30.0, 12.0)])
def test_impurity_rate_is_recovered_at_low_temperature(default_operator, rng, temperature, tolerance):
    op = default_operator.at_temperature(temperature)
    x = realistic_glue(op.Omega, 40, rng)
    y = add_noise(op.forward(x), 1e-3, rng)
    c = estimate_impurity(y + 40.0, op)
    assert abs(np.median(c) - 40.0) < tolerance and (estimate_impurity(y, op) >= 0).all()
    np.testing.assert_allclose(estimate_impurity(y + 40.0, op) - estimate_impurity(y + 20.0, op), 20.0,
                               atol=1e-6)  # linear in the offset where not clipped


def test_impurity_option_removes_the_offset_before_inverting(tmp_path, default_operator, rng):
    model = load_model(write_model(tmp_path, default_operator, "input"))
    op = default_operator.at_temperature(10.0)
    x = realistic_glue(op.Omega, 20, rng)
    y = add_noise(op.forward(x), 1e-3, rng) + 60.0
    plain = invert(y, model, provider="cpu", temperature=10.0)
    fixed = invert(y, model, provider="cpu", temperature=10.0, impurity=True)
    err = [np.median(np.linalg.norm(r.glue - x, axis=1) / np.linalg.norm(x, axis=1)) for r in (plain, fixed)]
    assert err[1] < 0.7 * err[0], err
    assert np.median(fixed.residual) <= np.median(plain.residual)
    assert np.all(np.abs(fixed.impurity_rate - 60.0) < 10.0)


def test_cli_writes_band_impurity_and_redoes_outputs_after_recalibration(tmp_path, calibrated, default_operator, rng):
    model, cal = calibrated
    x = gaussian_mixture(default_operator.Omega, 5, rng)
    y = add_noise(default_operator.forward(x), 1e-3, rng)
    src = tmp_path / "in"
    src.mkdir()
    write_archive(src / "a.nc", rrim.from_mev(y, "cm-1"), rrim.from_mev(default_operator.omega.values, "cm-1"))
    out = tmp_path / "out"
    args = ["-q", "reprocess", str(src), "-o", str(out), "--model", str(model.path), "--provider", "cpu",
            "--uncertainty", "0.9", "--impurity"]
    done = CliRunner().invoke(main, args, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    with xr.open_dataset(out / "a.glue.nc") as o:
        for name in ("glue_lower", "glue_upper", "impurity_rate", "noise_estimate", "ood_score"):
            assert name in o and o[name].attrs["long_name"], name
        assert (o.glue_lower <= o.glue).all() and (o.glue <= o.glue_upper).all()
        assert o.attrs["calibration_sha256"] != "none"
    again = json.loads(CliRunner().invoke(main, args, catch_exceptions=False).stdout)
    assert again["skipped"] and not again["processed"]
    recal = json.loads(cal.to_json())
    recal["ood_threshold"] = [2 * t for t in recal["ood_threshold"]]
    calibration_path(model.path).write_text(json.dumps(recal))
    try:
        redo = json.loads(CliRunner().invoke(main, args, catch_exceptions=False).stdout)
        assert redo["processed"] and not redo["skipped"]
    finally:
        calibration_path(model.path).write_text(cal.to_json())
