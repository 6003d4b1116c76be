"""Training of the rRIM and baselines: physics parity, learning, checkpoints, configuration errors (CPU, seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rrim.cli import main as cli_main  # noqa: E402
from rrim.export.config import Config, GridConfig, config_from_dict, load_config  # noqa: E402
from rrim.export.data.fixed import make_data, physics_tensors  # noqa: E402
from rrim.export.nets.checkpoints import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from rrim.export.nets.recurrent import RRIM, IdentityUpdate, RRIMSettings, preconditioned_gradient  # noqa: E402
from rrim.export.training.loop import evaluate, predict, step_loss, train  # noqa: E402

H = 0.01


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(tmp_path, **training) -> Config:
    """A 60 × 50 operator, 200 spectra, hidden 8, 5 steps: trains in a few seconds."""
    return config_from_dict({
        "model": {"kind": "rrim", "hidden": 8, "n_steps": 5},
        "data": {"n": 200, "sigma": 1e-3, "seed": 3},
        "operator": {"omega": {"start": 2.0, "stop": 400.0, "n": 60}, "Omega": {"start": 2.0, "stop": 400.0, "n": 50}},
        "training": {"lr": 3e-3, "batch_size": 16, "max_epochs": 6, "patience": 6, "seed": 1,
                     "output_dir": str(tmp_path / "run"), **training},
    })


def test_gradient_matches_operator(small_operator, rng):
    y = rng.uniform(0, 2, size=(4, small_operator.shape[0]))
    x = rng.uniform(0, 1, size=(4, small_operator.shape[1]))
    A, P = physics_tensors(small_operator, H)
    got = preconditioned_gradient(torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32), A, P)
    want = small_operator.preconditioned_residual(y, x, H)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_identity_update_is_iterated_tikhonov(small_operator, rng):
    """g_φ = identity, x_0 = 0, no clipping: x_{k+1} = x_k + P(y − A x_k), the classical recurrence."""
    model = RRIM(RRIMSettings(hidden=1, n_steps=15, x0="zeros", nonnegative=False))
    model.update = IdentityUpdate()
    x_true = rng.uniform(0, 1, size=(3, small_operator.shape[1]))
    y_s = small_operator.forward(x_true) / small_operator.scale
    A, P = physics_tensors(small_operator, H)
    with torch.no_grad():
        got = [x.numpy() for x in model(torch.as_tensor(y_s, dtype=torch.float32), A, P)]
    x = np.zeros_like(x_true)
    for k in range(15):
        x = x + small_operator.preconditioned_residual(y_s, x, H)
        np.testing.assert_allclose(got[k], x, rtol=0, atol=2e-5 * np.abs(x).max(), err_msg=f"iterate {k + 1}")
    assert not np.allclose(got[0], got[-1])  # the recurrence really moved


def test_identity_update_matches_solvers_iterated_tikhonov(small_operator, rng):
    solvers = pytest.importorskip("rrim.solvers")
    if not hasattr(solvers, "IteratedTikhonov"):
        pytest.skip("rrim.solvers.IteratedTikhonov not available")
    model = RRIM(RRIMSettings(hidden=1, n_steps=15, x0="zeros", nonnegative=False))
    model.update = IdentityUpdate()
    y = small_operator.forward(rng.uniform(0, 1, size=(3, small_operator.shape[1])))
    want = solvers.IteratedTikhonov(small_operator, n_steps=15, h=H).fit(y).iterates_
    A, P = physics_tensors(small_operator, H)
    with torch.no_grad():
        got = np.stack([x.numpy() for x in model(torch.as_tensor(y / small_operator.scale, dtype=torch.float32), A, P)])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_one_step_lowers_loss_on_fixed_batch(tmp_path):
    config = tiny_config(tmp_path)
    operator = config.operator.build()
    data = make_data(config, operator)
    A, P = physics_tensors(operator, H)
    x, y = data.subset("train")
    yb, xb = (torch.as_tensor(y[:16] / operator.scale, dtype=torch.float32), torch.as_tensor(x[:16], dtype=torch.float32))
    torch.manual_seed(0)
    model = build_model(config.model, operator)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = step_loss(model(yb, A, P), xb)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = step_loss(model(yb, A, P), xb)
    assert after.item() < before.item()


def test_tiny_training_beats_untrained_start_and_is_reproducible(tmp_path):
    config = tiny_config(tmp_path)
    operator = config.operator.build()
    data = make_data(config, operator)
    A, P = physics_tensors(operator, H)
    x, y = data.subset("test")
    yt, xt = torch.as_tensor(y / operator.scale, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)
    torch.manual_seed(config.training.seed)
    untrained = evaluate(build_model(config.model, operator), yt, xt, A, P)[-1]

    result = train(config, operator, data)
    assert result.test_metrics["test_mse"] < 0.7 * untrained
    assert len(result.test_metrics["step_mse"]) == config.model.n_steps
    assert result.best_val_loss == min(r["val_mse"] for r in result.history)
    assert result.checkpoint_path.exists()
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == len(result.history)

    again = train(config.replace(training={"max_epochs": 2, "output_dir": str(tmp_path / "again")}), operator, data)
    first_two = train(config.replace(training={"max_epochs": 2}), operator, data, checkpoint=False)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, first_two.model.state_dict()[k]), k


@pytest.mark.parametrize("kind", ["rrim", "fcn", "cnn"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, kind, rng):
    config = tiny_config(tmp_path).replace(model={"kind": kind, "width": 32, "channels": 4, "depth": 2})
    operator = config.operator.build()
    torch.manual_seed(0)
    model = build_model(config.model, operator)
    path = save_checkpoint(tmp_path / "m.pt", model, config, {"note": "test"})
    loaded, config2, extra = load_checkpoint(path)
    assert config2 == config and extra == {"note": "test"}
    y = operator.forward(rng.uniform(0, 1, size=(3, operator.shape[1])))
    out = predict(loaded, y, operator, H)
    assert out.dtype == np.float64 and out.shape == (3, operator.shape[1])
    np.testing.assert_array_equal(out, predict(model, y, operator, H))
    assert predict(model, y[0], operator, H).shape == (operator.shape[1],)


def test_load_checkpoint_refuses_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an rrim checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_predict_refuses_wrong_length(small_operator):
    model = RRIM(RRIMSettings(hidden=2, n_steps=2))
    with pytest.raises(ValueError, match="y_meV"):
        predict(model, np.ones(7), small_operator, H)


@pytest.mark.parametrize("text, message", [
    ("[model]\nhiden = 8\n", r"model\.hiden: unknown configuration key"),
    ("[model]\nhidden = \"big\"\n", r"model\.hidden: expected int, got str"),
    ("[training]\nlr = true\n", r"training\.lr: expected float, got bool"),
    ("[data]\nsigma = [0.0, \"x\"]\n", r"data\.sigma"),
    ("[operator.omega]\nstart = 2.0\nstop = 400.0\nn = 20\npoints = 3\n", r"operator\.omega\.points"),
    ("[modle]\n", r"modle: unknown configuration key"),
    ("[model]\nkind = \"mlp\"\n", r"model\.kind"),
    ("[model]\nn_steps = 3\n[training]\nstep_weights = [1.0]\n", r"training\.step_weights"),
    ("[model]\ncontext = 4\n", r"model\.context: .* 0 unless regularization = 'adaptive'"),
])
def test_bad_config_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_shipped_configs_load():
    from pathlib import Path

    import rrim.export

    folder = Path(rrim.export.__file__).parent / "configs"
    configs = {p.stem: load_config(p) for p in folder.glob("*.toml")}
    assert configs["rrim_experiment"].model.regularization == "fixed"  # the paper's rRIM (its tables stay reproducible)
    from rrim.export.recipes.shipped_models import RECIPES

    for recipe in RECIPES.values():  # the shipped models
        c = configs[Path(recipe.config).stem]
        assert c.model.regularization == "adaptive" and c.model.correction_steps > 0
        assert (c.data.prior, c.data.coverage, c.data.fine_factor) == ("realistic", "partial", 2)
        assert c.operator.omega == GridConfig(2.0, 400.0, 200) and c.data.sigmas[-1] == 0.1
    assert configs["rrim_any_temperature"].operator.temperature_range == (10.0, 300.0)
    assert {c.model.kind for c in configs.values()} == {"rrim", "fcn", "cnn"}


def test_cli_train(tmp_path):
    config = tiny_config(tmp_path, max_epochs=1)
    path = tmp_path / "c.toml"
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if isinstance(v, dict):
                lines.append(f"{k} = {{ " + ", ".join(f"{a} = {b}" for a, b in v.items()) + " }")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    assert load_config(path) == config
    result = CliRunner().invoke(cli_main, ["train", str(path), "-o", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and (tmp_path / "cli" / "model.pt").exists()

    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nbatch = 3\n")
    result = CliRunner().invoke(cli_main, ["train", str(bad)])
    assert result.exit_code != 0 and "training.batch" in result.output


def test_temperature_range_trains_one_model_over_drawn_temperatures(tmp_path):
    """A physics-as-input model over 10–300 K: A(T)/s and P(T) per drawn temperature (exactly the shared
    operator's), spectra made per batch, and it learns at temperatures at both ends of the range."""
    from rrim.export.data.fixed import physics_bank, temperature_groups

    config = tiny_config(tmp_path).replace(operator={"temperature_range": [10.0, 300.0], "n_temperatures": 4})
    temps = config.operator.training_temperatures()
    np.testing.assert_allclose(temps, [10.0, 10.0 * 30 ** (1 / 3), 10.0 * 30 ** (2 / 3), 300.0])
    operator = config.operator.build()
    bank = physics_bank(config, operator)
    for T, (A, P) in zip(temps, bank):
        exact = operator.at_temperature(T).scaled_matrix
        np.testing.assert_allclose(A.numpy(), exact, rtol=1e-6, atol=1e-6 * np.abs(exact).max())
    assert not torch.allclose(bank[0][0], bank[-1][0])

    data = make_data(config, operator)
    x_test = torch.as_tensor(data.subset("test")[0], dtype=torch.float32)
    groups = temperature_groups(x_test, bank, (1e-3,), np.random.default_rng(5))
    assert len(groups) > 1 and sum(len(g[0]) for g in groups) == len(x_test)
    torch.manual_seed(config.training.seed)
    untrained = build_model(config.model, operator)
    before = [evaluate(untrained, *g)[-1] for g in groups]
    result = train(config, operator, data)
    after = [evaluate(result.model, *g)[-1] for g in groups]
    assert all(a < 0.8 * b for a, b in zip(after, before)), (before, after)


@pytest.mark.parametrize("operator, message", [
    ({"temperature_range": [300.0, 10.0]}, "temperature_range"),
    ({"temperature_range": [10.0]}, "temperature_range"),
    ({"temperature_range": [10.0, 300.0], "n_temperatures": 1}, "n_temperatures"),
])
def test_bad_temperature_range_is_refused(operator, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"operator": operator})


@pytest.mark.parametrize("added", [{"context": 4}, {"global_width": 6}, {"context": 4, "global_width": 6}])
def test_warm_start_adds_a_coarse_or_global_path_that_starts_as_nothing(tmp_path, rng, added):
    """A checkpoint without the coarse or global path starts a model with it (context > 0, global_width > 0)
    at the same outputs; a checkpoint of another shape is refused by name."""
    import dataclasses

    from rrim.export.data.adaptive import adaptive_physics
    from rrim.export.nets.checkpoints import warm_start
    from rrim.export.training.loop import estimates

    config = config_from_dict({**tiny_config(tmp_path).to_dict(),
                               "model": {"kind": "rrim", "hidden": 3, "n_steps": 2, "regularization": "adaptive",
                                         "correction_steps": 1}})
    op = config.operator.build()
    source = build_model(config.model, op)
    path = save_checkpoint(tmp_path / "source.pt", source, config)
    with_context = build_model(dataclasses.replace(config.model, **added), op)
    assert any(k.startswith(("update.coarse.", "update.glob.")) for k in with_context.state_dict())
    warm_start(with_context, path)
    first, *physics = adaptive_physics(op, op.forward(np.abs(rng.normal(size=(4, op.shape[1])))) / op.scale)
    with torch.no_grad():
        a, b = estimates(source.eval(), first, *physics)[-1], estimates(with_context.eval(), first, *physics)[-1]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="training.init_from: .*source.pt does not fit the model"):
        warm_start(build_model(dataclasses.replace(config.model, hidden=4), op), path)


@pytest.mark.parametrize("fresh", [False, True])
def test_fresh_noise_redraws_the_training_noise_per_batch(tmp_path, fresh):
    """With data.fresh_noise the same rows get new noise at the dataset's σ each batch; without, the one draw."""
    from rrim.export.data.fixed import training_data

    config = tiny_config(tmp_path).replace(data={"fresh_noise": fresh, "sigma": 1e-2})
    operator = config.operator.build()
    data = training_data(config, operator)
    rows = data.splits["train"][:64]
    (y1, x1, _), (y2, x2, _) = (data.batch(rows, np.random.default_rng(k)) for k in (1, 2))
    assert torch.equal(x1, x2)
    if not fresh:
        assert torch.equal(y1, y2) and torch.equal(y1, data.y[torch.as_tensor(rows)])
        return
    clean = data.y_clean[torch.as_tensor(rows)]
    for y in (y1, y2):
        level = ((y - clean).std(dim=1) / clean.abs().amax(dim=1)).mean().item()
        assert level == pytest.approx(1e-2, rel=0.05)
    assert not torch.equal(y1, y2)


@pytest.mark.parametrize("min_steps", [0, 30])
def test_min_epoch_steps_goes_through_a_short_training_split_more_than_once(tmp_path, monkeypatch, min_steps):
    """training.min_epoch_steps: an epoch of a small training split (160 spectra, 10 batches of 16)
    has at least that many optimizer steps, fewer than one more pass; 0 keeps one pass per epoch."""
    steps = []
    original = torch.optim.Adam.step

    def counted(self, *a, **k):
        steps.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    config = tiny_config(tmp_path, max_epochs=1, min_epoch_steps=min_steps)
    result = train(config, checkpoint=False)
    n_train = 160  # 0.8 of data.n = 200
    per_pass = -(-n_train // config.training.batch_size)
    assert len(result.history) == 1
    if min_steps:
        assert min_steps <= len(steps) < min_steps + per_pass
    else:
        assert len(steps) == per_pass
