"""The Gaussian prior of the glue and the rRIM that starts from its estimate: the whitened-basis formula
equals the Wiener solution, the prior beats plain Tikhonov on glue like its own, and a model with
``x0 = "prior"`` trains, checkpoints, exports and runs in the runtime with PyTorch parity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rrim.inversion.prior import GaussianPrior
from rrim.inversion.regularization import choose_weights
from rrim.physics.glue_families import realistic_prior
from rrim.physics.synthetic import add_noise


@pytest.fixture(scope="module")
def prior(default_operator):
    return GaussianPrior.fit(realistic_prior(default_operator.Omega, 1500, np.random.default_rng(11)))


@pytest.mark.parametrize("partial", [False, True])
def test_estimate_is_the_wiener_solution(default_operator, prior, partial):
    """μ + L V diag(S/(S² + h)) Uᵀ(y − Aμ) = μ + C Aₘᵀ(Aₘ C Aₘᵀ + h I)⁻¹(yₘ − Aₘ μ) on the measured rows."""
    op = default_operator
    x = realistic_prior(op.Omega, 5, np.random.default_rng(12))
    y = add_noise(op.forward(x), 1e-3, np.random.default_rng(13)) / op.scale
    mask = np.ones(op.shape[0], bool)
    if partial:
        mask[:12] = mask[90:96] = mask[170:] = False
    got = prior.estimate(op, y, mask)
    a = op.scaled_matrix[mask]
    r = y[:, mask] - prior.mean @ a.T
    h = choose_weights((y - prior.mean @ op.scaled_matrix.T) * mask, prior.bases.basis(op, mask), mask, clip=False)
    c = prior.factor @ prior.factor.T
    for k in range(len(y)):
        want = prior.mean + c @ a.T @ np.linalg.solve(a @ c @ a.T + h[k] * np.eye(mask.sum()), r[k])
        np.testing.assert_allclose(got[k], want, atol=1e-8 * np.abs(want).max())


def test_prior_beats_tikhonov_on_glue_like_its_own(default_operator, prior):
    from rrim.solvers import Tikhonov

    op = default_operator
    x = realistic_prior(op.Omega, 100, np.random.default_rng(14))
    y = add_noise(op.forward(x), 1e-2, np.random.default_rng(15))
    est = prior.estimate(op, y / op.scale, np.ones(op.shape[0], bool))
    tik = Tikhonov(op, rule="gcv").fit(y).x_
    assert np.mean((est - x) ** 2) < 0.9 * np.mean((tik - x) ** 2)


def test_description_round_trip_is_exact(prior):
    back = GaussianPrior.from_description(json.loads(json.dumps(prior.describe())))
    assert np.array_equal(back.mean, prior.mean) and np.array_equal(back.factor, prior.factor)


def test_too_few_glue_functions_are_refused():
    with pytest.raises(ValueError, match="prior: expected at least 2 glue functions"):
        GaussianPrior.fit(np.ones((1, 10)))


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny x0 = 'prior' rRIM trained for two epochs (the training path sets and saves its prior)."""
    from rrim.export.config import config_from_dict
    from rrim.export.training.loop import trained as run

    out = tmp_path_factory.mktemp("prior-run")
    config = config_from_dict({
        "model": {"kind": "rrim", "hidden": 4, "n_steps": 2, "regularization": "adaptive", "correction_steps": 1,
                  "x0": "prior"},
        "data": {"n": 120, "sigma": [1e-3, 1e-2], "seed": 3, "prior": "realistic"},
        "operator": {"omega": {"start": 2.0, "stop": 400.0, "n": 60}, "Omega": {"start": 2.0, "stop": 400.0, "n": 50}},
        "training": {"lr": 3e-3, "batch_size": 16, "max_epochs": 2, "patience": 4, "seed": 1,
                     "output_dir": str(out / "run")},
    })
    model, config, extra, path = run(config)
    return model, config, path


@pytest.mark.torch
def test_a_prior_model_trains_and_its_checkpoint_keeps_the_prior(trained):
    from rrim.export.data.adaptive import AdaptiveData

    model, config, _ = trained
    data = AdaptiveData(config, config.operator.build())
    assert np.array_equal(model.prior.mean, data.prior.mean) and np.array_equal(model.prior.factor, data.prior.factor)


@pytest.mark.torch
def test_a_model_without_its_prior_estimate_is_refused(trained):
    from rrim.export.data.adaptive import adaptive_physics

    model, config, _ = trained
    op = config.operator.build()
    y = op.forward(realistic_prior(op.Omega, 2, np.random.default_rng(1))) / op.scale
    with pytest.raises(ValueError, match="x0: a model with x0 = 'prior' needs the prior's estimate"):
        model(*adaptive_physics(op, y))


@pytest.mark.torch
def test_exported_prior_model_matches_pytorch_in_the_runtime(trained, tmp_path):
    """Both forms: golden parity, x0 among the inputs, and rrim.invert (prior estimate, graph, float64
    steps) equal to PyTorch's final estimate, on fully and partly measured spectra."""
    from rrim.export.data.adaptive import adaptive_physics
    from rrim.export.onnx.export import export_onnx
    from rrim.export.training.loop import estimates
    from rrim.inversion.engine import invert
    from rrim.models.golden import check_golden
    from rrim.models.loading import load_model
    from rrim.models.modelfile import INPUT_X0, input_shapes

    model, config, _ = trained
    op = config.operator.build()
    x = realistic_prior(op.Omega, 6, np.random.default_rng(2))
    y = add_noise(op.forward(x), 1e-3, np.random.default_rng(5))
    mask = (op.omega.values > 12.0) & (op.omega.values < 300.0)
    for form in ("baked", "input"):
        path = export_onnx(model, op, tmp_path / f"prior-{form}.onnx", form=form, model_name=f"prior-{form}",
                           model_version="0", temperature_range_K=(100.0, 100.0), training={"data": "tiny"},
                           metrics={"none": 0.0}, provenance={"made_by": "tests/inversion/test_prior.py"},
                           measured_range=(15.0, 200.0) if form == "input" else None, polish_max_iterations=0)
        m = load_model(path)
        assert input_shapes(m.info)[INPUT_X0] == ("batch", len(op.Omega)) and check_golden(m, provider="cpu").passed
        for valid in (None, mask) if form == "input" else (None,):
            with torch.no_grad():
                ref = estimates(model, *adaptive_physics(op, y / op.scale, valid, model.prior))[-1].double().numpy()
            got = invert(y, m, provider="cpu", valid_omega=valid).glue
            assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


@pytest.mark.torch
def test_a_prior_off_the_model_grid_is_refused(trained):
    from rrim.export.onnx.export import model_info
    from rrim.models.modelfile import ModelFileError, ModelInfo

    model, config, _ = trained
    info = model_info(model, config.operator.build(), "baked", 0.01, model_name="m", model_version="0",
                      temperature_range_K=(100.0, 100.0), training={"a": 1}, metrics={"a": 1}, provenance={"a": 1})
    meta = info.to_metadata()
    assert GaussianPrior.of_model(ModelInfo.from_metadata(meta, "m.onnx")).factor.shape == model.prior.factor.shape
    short = GaussianPrior(model.prior.mean[:-1], model.prior.factor[:-1])
    with pytest.raises(ModelFileError, match="m.onnx: metadata 'prior' is not on the model's Ω grid of 50 points"):
        ModelInfo.from_metadata({**meta, "prior": json.dumps(short.describe())}, "m.onnx")
    with pytest.raises(ModelFileError, match="m.onnx: metadata does not describe a usable model"):
        ModelInfo.from_metadata({**meta, "prior": json.dumps({"shape": [50, 3], "mean": "xx", "factor": ""})}, "m.onnx")


@pytest.mark.torch
def test_an_untrained_prior_model_is_its_start(default_operator, prior):
    """The update's last layer starts at zero: every iterate of a fresh x0 = 'prior' model is max(0, x0),
    so training starts from the prior and its data-consistency steps and can only improve on them."""
    from rrim.export.data.adaptive import adaptive_physics
    from rrim.export.nets.recurrent import AdaptiveRRIM, RRIMSettings

    op = default_operator
    net = AdaptiveRRIM(RRIMSettings(hidden=4, n_steps=3, regularization="adaptive", x0="prior", context=4)).eval()
    y = add_noise(op.forward(realistic_prior(op.Omega, 3, np.random.default_rng(3))), 1e-2, np.random.default_rng(4))
    beta, *physics = adaptive_physics(op, y / op.scale, prior=prior)
    with torch.no_grad():
        iterates = net(beta, *physics)
    for x in iterates:
        assert torch.equal(x, torch.relu(physics[-1]))
