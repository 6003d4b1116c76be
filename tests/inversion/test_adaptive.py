"""The noise-adaptive rRIM end to end: the weight h chosen per spectrum, the measured-ω mask in the
basis, export in both forms, golden parity through onnxruntime alone, and the runtime's float64
data-consistency steps equal to PyTorch's. Needs the train extra (torch, onnx)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rrim.inversion.engine import Engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def adaptive_net():
    from rrim.export.nets.recurrent import AdaptiveRRIM, RRIMSettings

    torch.manual_seed(0)  # untrained: the contract and the physics, not the accuracy, are tested
    net = AdaptiveRRIM(RRIMSettings(hidden=4, n_steps=3, regularization="adaptive", correction_steps=2, context=3,
                                    global_width=5), n_points=200)
    torch.nn.init.normal_(net.update.coarse[-1].weight, std=0.3)  # the coarse path (pool by 3: 67 of 200) in use
    torch.nn.init.normal_(net.update.glob[-1].weight, std=0.3)  # and the global path
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, default_operator, adaptive_net):
    from rrim.export.onnx.export import export_onnx

    d = tmp_path_factory.mktemp("adaptive")
    return {form: export_onnx(adaptive_net, default_operator, d / f"tiny-adaptive-{form}.onnx", form=form,
                              model_name=f"tiny-adaptive-{form}", model_version="0",
                              temperature_range_K=(100.0, 100.0) if form == "baked" else (10.0, 300.0),
                              training={"data": "none (untrained)"}, metrics={"none": 0.0}, measured_range=(15.0, 200.0),
                              provenance={"made_by": "tests/inversion/test_adaptive.py"},
                              polish_max_iterations=0)  # exactly PyTorch's fixed iterations: parity
            for form in ("baked", "input")}


def test_masked_basis_is_the_svd_of_the_measured_rows(default_operator):
    from rrim.inversion.regularization import masked_svd

    mask = np.ones(default_operator.shape[0], bool)
    mask[:10] = mask[120:126] = False
    svd = masked_svd(default_operator.scaled_matrix, mask)
    assert svd.U.shape == (200, 200) and svd.s.shape == (200,) and svd.Vt.shape == (200, 200)
    assert np.all(svd.U[~mask] == 0) and np.count_nonzero(svd.s) == mask.sum()
    a = default_operator.scaled_matrix
    np.testing.assert_allclose((svd.U * svd.s) @ svd.Vt, a * mask[:, None], atol=1e-12 * np.abs(a).max())


def test_weights_follow_the_noise(default_operator):
    """GCV's h grows with the noise and is clipped to [H_MIN, H_MAX]."""
    from rrim.inversion.regularization import H_MAX, H_MIN, choose_weights
    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.synthetic import add_noise

    x = realistic_glue(default_operator.Omega, 20, np.random.default_rng(0))
    y = default_operator.forward(x) / default_operator.scale
    mask = np.ones(y.shape[1], bool)
    medians = [np.median(choose_weights(add_noise(y, s, np.random.default_rng(1)), default_operator.svd, mask))
               for s in (0.0, 1e-4, 1e-2)]
    assert medians[0] == H_MIN and medians[0] < medians[1] < medians[2] <= H_MAX


def test_correction_steps_lower_the_misfit_on_measured_points_only(default_operator):
    from rrim.inversion.regularization import choose_weights, correct, masked_svd
    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.synthetic import add_noise

    op = default_operator
    x = realistic_glue(op.Omega, 8, np.random.default_rng(3))
    y = add_noise(op.forward(x), 1e-3, np.random.default_rng(4)) / op.scale
    mask = op.omega.values < 250.0
    y[:, ~mask] = 1e3  # never read: unmeasured
    svd = masked_svd(op.scaled_matrix, mask)
    ym = y * mask
    h = choose_weights(ym, svd, mask)
    start = np.zeros_like(x)
    misfit = [np.linalg.norm(((correct(start, ym @ svd.U, svd, h, k) @ op.scaled_matrix.T) - y)[:, mask])
              for k in (1, 2, 4)]
    assert misfit[0] > misfit[1] > misfit[2]


def test_polish_brings_the_clipped_steps_misfit_down_to_the_noise(default_operator):
    """Where the glue touches 0, the clipped Tikhonov steps leave the misfit above the noise;
    projected gradient lowers it to about the noise and keeps x ≥ 0."""
    from rrim.inversion.regularization import POLISH_ITERATIONS, choose_weights, correct, masked_svd
    from rrim.physics.glue_families import realistic_glue

    op = default_operator
    x = realistic_glue(op.Omega, 16, np.random.default_rng(7))
    clean = op.forward(x) / op.scale
    noise = 1e-4 * np.abs(clean).max(axis=1, keepdims=True)
    y = clean + noise * np.random.default_rng(8).standard_normal(clean.shape)
    mask = np.ones(y.shape[1], bool)
    svd = masked_svd(op.scaled_matrix, mask)
    h = choose_weights(y, svd, mask, clip=False)
    start = np.zeros_like(x)

    def misfit(k, polish):
        est = correct(start, y @ svd.U, svd, h, k, polish)
        assert est.min() >= 0
        return np.median(np.sqrt(np.mean((est @ op.scaled_matrix.T - y) ** 2, axis=1)) / noise[:, 0])

    clipped, polished = misfit(4, 0), misfit(4, POLISH_ITERATIONS)
    assert polished < clipped and polished < 1.5


def test_polish_goes_on_where_the_misfit_is_above_the_noise(default_operator):
    """Sharp glue unlike the training prior (phonon-like lines) at σ = 1e-4: rows already within 1.1×
    the noise after the correction steps are not polished; the rows still above 1.5× the noise after
    the fixed iterations go on, lowering their misfit; the others get the fixed iterations only."""
    from rrim.inversion.feeds import AdaptiveInputs
    from rrim.inversion.regularization import POLISH_ITERATIONS, POLISH_MAX_ITERATIONS, correct
    from rrim.physics.realistic_set import draw_family

    op = default_operator
    x = np.concatenate([draw_family("phonon_lines", op.Omega, 6, np.random.default_rng(3)),
                        draw_family("mmp_mode", op.Omega, 6, np.random.default_rng(4))])
    clean = op.forward(x) / op.scale
    noise = 1e-4 * np.abs(clean).max(axis=1)
    y = clean + noise[:, None] * np.random.default_rng(5).standard_normal(clean.shape)
    a = AdaptiveInputs.of(op, y)
    outside = np.sum(y ** 2, axis=1) - np.sum(a.beta ** 2, axis=1)  # the targets are given inside the basis
    start2, stop2 = (t + outside for t in a.polish_targets(noise))
    start = np.maximum(x + 0.02 * x.max() * np.random.default_rng(6).standard_normal(x.shape), 0.0)

    def misfit2(est, rows=slice(None)):
        return np.sum((est @ op.scaled_matrix.T - y[rows]) ** 2, axis=1)

    steps_only = correct(start, a.beta, a.svd, a.h, 4)
    fixed = correct(start, a.beta, a.svd, a.h, 4, POLISH_ITERATIONS)
    more = correct(start, a.beta, a.svd, a.h, 4, POLISH_ITERATIONS, max_iterations=POLISH_MAX_ITERATIONS,
                   targets=a.polish_targets(noise))
    within = misfit2(steps_only) <= stop2
    went_on = ~within & (misfit2(fixed) > start2)
    assert 1 <= within.sum() and 3 <= went_on.sum() and (within | went_on).sum() < len(x) and more.min() >= 0
    assert np.array_equal(more[within], steps_only[within])
    rest = ~within & ~went_on  # the same iterations on a subset of the rows: equal up to rounding
    assert np.abs(more[rest] - fixed[rest]).max() <= 1e-12 * np.abs(fixed).max()
    before, after = (np.sqrt(misfit2(e[went_on], went_on) / stop2[went_on]) for e in (fixed, more))
    assert np.all(after < before) and np.median(after) < 0.5 * np.median(before)


def test_polish_with_the_truncated_gram_matrix_matches_the_full_one(default_operator, monkeypatch):
    """The polish keeps only the Gram directions with s² > GRAM_FLOOR·s_max² (~40 of 200): on a partial
    ω range, the fixed iterations and the continuation give the glue of the full matrix to 1e-7 of max x̂."""
    import rrim.inversion.regularization as reg
    from rrim.inversion.feeds import AdaptiveInputs
    from rrim.physics.realistic_set import draw_family

    op = default_operator
    x = np.concatenate([draw_family(f, op.Omega, 4, np.random.default_rng(9)) for f in ("phonon_lines", "mmp_mode")])
    clean = op.forward(x) / op.scale
    noise = 1e-4 * np.abs(clean).max(axis=1)
    y = clean + noise[:, None] * np.random.default_rng(10).standard_normal(clean.shape)
    mask = (op.omega.values > 8.0) & (op.omega.values < 300.0)
    a = AdaptiveInputs.of(op, y, mask)
    start = np.maximum(reg.tikhonov_step(y * mask, a.svd, a.h), 0.0)

    def polished():
        return reg.polish(start, a.beta, a.svd, a.h, reg.POLISH_ITERATIONS, max_iterations=reg.POLISH_MAX_ITERATIONS,
                          targets=a.polish_targets(noise))

    kept = int(np.sum(a.svd.s ** 2 > reg.GRAM_FLOOR * a.svd.s[0] ** 2))
    truncated = polished()
    monkeypatch.setattr(reg, "GRAM_FLOOR", 0.0)
    full = polished()
    assert kept < 0.3 * np.count_nonzero(a.svd.s)
    assert np.abs(truncated - full).max() < 1e-7 * np.abs(full).max() and truncated.min() >= 0


@pytest.mark.parametrize("n, k", [(200, 8), (200, 3), (17, 5), (8, 8)])
def test_coarse_path_matrices_equal_pooling_and_linear_interpolation(n, k):
    """The coarse path's constant matrices reproduce AvgPool1d(ceil_mode) and linear interpolation,
    including a short last block and the clamped ends."""
    from rrim.export.nets.recurrent import pool_matrix, upsample_matrix

    h = torch.randn(2, 3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n + k))
    pooled = torch.nn.AvgPool1d(k, ceil_mode=True)(h)
    assert torch.allclose(h @ torch.from_numpy(pool_matrix(n, k)), pooled, atol=1e-12)
    back = torch.nn.functional.interpolate(pooled, size=n, mode="linear")
    assert torch.allclose(pooled @ torch.from_numpy(upsample_matrix(pooled.shape[-1], n)), back, atol=1e-12)


def test_coarse_path_is_exported_as_products(exported):
    """No AveragePool or Resize node in the graph (onnxruntime runs MatMul faster)."""
    import onnx

    ops = {node.op_type for path in exported.values() for node in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and not ops & {"AveragePool", "Resize"}


def test_exported_adaptive_models_match_pytorch_and_runtime(exported, default_operator, adaptive_net):
    """Golden parity through onnxruntime; rrim.invert (graph + float64 correction) equals PyTorch's
    final estimate; the input form fed the full-grid basis equals the baked form."""
    from rrim.export.data.adaptive import adaptive_physics
    from rrim.export.training.loop import estimates
    from rrim.inversion.engine import invert
    from rrim.models.golden import check_golden
    from rrim.models.loading import load_model
    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.synthetic import add_noise

    models = {form: load_model(path) for form, path in exported.items()}
    for form, m in models.items():
        assert m.info.adaptive and m.info.regularization["correction_steps"] == 2
        assert check_golden(m, provider="cpu").passed
    op = default_operator
    x = realistic_glue(op.Omega, 6, np.random.default_rng(2))
    y = add_noise(op.forward(x), 1e-3, np.random.default_rng(5))
    with torch.no_grad():
        ref = estimates(adaptive_net, *adaptive_physics(op, y / op.scale))[-1].double().numpy()
    a = invert(y, models["baked"], provider="cpu").glue
    b = invert(y, models["input"], provider="cpu", temperature=100.0).glue
    tol = 1e-4 * np.max(np.abs(ref))
    assert np.max(np.abs(a - ref)) <= tol and np.max(np.abs(b - ref)) <= tol


def test_mask_aware_model_ignores_unmeasured_points(exported, default_operator):
    """With valid_omega, the input-form model never reads the unmeasured values."""
    from rrim.inversion.engine import invert
    from rrim.models.loading import load_model
    from rrim.physics.glue_families import realistic_glue

    m = load_model(exported["input"])
    op = default_operator
    y = op.forward(realistic_glue(op.Omega, 4, np.random.default_rng(6)))
    valid = (op.omega.values > 12.0) & (op.omega.values < 300.0)
    other = y.copy()
    other[:, ~valid] *= 3.0
    a = invert(y, m, provider="cpu", valid_omega=valid).glue
    b = invert(other, m, provider="cpu", valid_omega=valid).glue
    np.testing.assert_array_equal(a, b)


def test_a_partial_archive_inverts_with_no_option_on_a_mask_aware_model(exported, default_operator, tmp_path):
    """An FTIR-like range (60–3000 cm⁻¹ ≈ 7.4–372 meV) needs no --crop with a mask-aware model: nothing
    is flagged, the unmeasured points are never read, and a range the model was not trained for is
    still refused."""
    import xarray as xr

    from rrim.io.paths import ArchiveError
    from rrim.io.schema import ArchiveOptions
    from rrim.jobs.invert import invert_archive
    from rrim.models.loading import load_model
    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.units import CM1_PER_MEV

    m = load_model(exported["input"])
    op = default_operator
    y = op.forward(realistic_glue(op.Omega, 3, np.random.default_rng(8)))
    w_cm = np.linspace(60.0, 3000.0, 300)
    rows = np.stack([np.interp(w_cm / CM1_PER_MEV, op.omega.values, r) for r in y]) * CM1_PER_MEV
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), rows, {"units": "cm-1"})},
                    coords={"omega": ("omega", w_cm, {"units": "cm-1"})}, attrs={"temperature_K": 100.0})
    ds.to_netcdf(tmp_path / "ftir.nc")
    invert_archive(tmp_path / "ftir.nc", tmp_path / "out.nc", Engine(m), ArchiveOptions())
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert (out["flags"].values == 0).all() and np.isfinite(out["glue"].values).all()
    ds.sel(omega=slice(None, 1200.0)).to_netcdf(tmp_path / "short.nc")  # ends at 149 meV < 200 meV
    with pytest.raises(ArchiveError, match="--crop"):
        invert_archive(tmp_path / "short.nc", tmp_path / "out2.nc", Engine(m), ArchiveOptions())


@pytest.mark.parametrize("bad", [-1, 1001, 2.5, True, "10"])
def test_regularization_metadata_with_a_bad_polish_count_is_refused(bad):
    from rrim.models.modelfile import ModelFileError, ModelInfo
    from rrim.models.loading import load_model

    meta = load_model("rrim-default").info.to_metadata()
    reg = json.loads(meta["regularization"])
    assert ModelInfo.from_metadata(meta, "m.onnx").regularization == reg
    meta["regularization"] = json.dumps({**reg, "polish_iterations": bad})
    with pytest.raises(ModelFileError, match="m.onnx: metadata 'regularization' .* 0–1000 polish_iterations"):
        ModelInfo.from_metadata(meta, "m.onnx")


@pytest.mark.parametrize("bounds", [{"h_min": 0}, {"h_min": 1e-3, "h_max": 1e-4}, {"h_max": "1"}, {"h_max": float("inf")}])
def test_regularization_metadata_with_bad_weight_bounds_is_refused(bounds):
    from rrim.models.loading import load_model
    from rrim.models.modelfile import ModelFileError, ModelInfo

    meta = load_model("rrim-default").info.to_metadata()
    meta["regularization"] = json.dumps({**json.loads(meta["regularization"]), **bounds})
    with pytest.raises(ModelFileError, match="m.onnx: metadata 'regularization' .* 0 < h_min ≤ h_max"):
        ModelInfo.from_metadata(meta, "m.onnx")


def test_the_weight_fed_is_clipped_to_the_model_s_own_bounds(default_operator):
    """A model trained with h in [1e-3, 1e-2] is fed h clipped there, whatever GCV chose."""
    import copy

    from rrim.inversion.feeds import AdaptiveInputs, model_feeds
    from rrim.models.loading import load_model
    from rrim.models.modelfile import INPUT_H
    from rrim.physics.glue_families import realistic_glue

    model = copy.deepcopy(load_model("rrim-default"))
    model.info.regularization.update(h_min=1e-3, h_max=1e-2)
    y = default_operator.forward(realistic_glue(default_operator.Omega, 3, np.random.default_rng(0))) / default_operator.scale
    a = AdaptiveInputs.of(default_operator, y)
    assert (a.h < 1e-3).any()  # noiseless spectra: GCV picks a tiny weight
    h = model_feeds(model, default_operator, None, None, y, adaptive=a)[INPUT_H]
    assert np.allclose(h[:, 0], np.clip(a.h, 1e-3, 1e-2).astype(np.float32))
