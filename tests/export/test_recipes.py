"""The recipes of the shipped models on a tiny setup: train, export (input form), evaluate through the
runtime, card and index; a comparison model; a resumed training. Needs the train extra."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from rrim.export.recipes import shipped_models as sm  # noqa: E402
from rrim.export.config import X0_KINDS, load_config  # noqa: E402
from rrim.inversion.engine import invert  # noqa: E402
from rrim.inversion.flags import FLAG_TEMPERATURE
from rrim.models.loading import load_model  # noqa: E402


def _tiny_configs(tmp_path):
    d = tmp_path / "configs"
    d.mkdir()
    for name, recipe in sm.RECIPES.items():
        cfg = load_config(sm.CONFIGS / recipe.config).replace(
            model={"hidden": 3, "n_steps": 2, "correction_steps": 2}, data={"n": 80},
            operator={"omega": {"start": 2.0, "stop": 400.0, "n": 40}, "Omega": {"start": 2.0, "stop": 400.0, "n": 30},
                      "n_temperatures": 3},
            training={"max_epochs": 2, "patience": 2, "step_weights": [], "init_from": "",
                      "output_dir": str(tmp_path / "runs" / name)})
        text = json.dumps(cfg.to_dict())
        (d / recipe.config).write_text(_toml(json.loads(text)))
    return d


def _toml(d: dict) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return "\n".join(f"[{section}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in table.items()) for section, table in d.items())


def test_recipes_build_evaluate_and_compare(tmp_path, monkeypatch):
    monkeypatch.setattr(sm, "CONFIGS", _tiny_configs(tmp_path))
    monkeypatch.setattr(sm, "EVAL_SIGMAS", (0.0, 1e-2))
    monkeypatch.setattr(sm, "N_EVAL", 8)
    monkeypatch.setattr(sm, "N_RIDGE", 30)
    models = tmp_path / "models"
    models.mkdir()
    (models / "index.json").write_text(json.dumps({"other": {"file": "other.onnx", "sha256": "0" * 64, "form": "input"}}))
    default = sm.build("rrim-default", models, command="test")
    lean = sm.build("rrim-lean", models, command="test", checkpoints_dir=tmp_path / "checkpoints")
    held = lean["metrics"]["held_out"]
    assert list(held) == ["100 K, σ=0", "100 K, σ=0.01"]
    for cell in held.values():
        assert {"rrim", "rrim_network_only", "tikhonov_tuned", "tikhonov_gcv", "ridge", "rrim-default"} <= set(cell)
        assert all(np.isfinite(v["mse"]) and v["mse"] > 0 for v in cell.values())
    assert "misfit_over_noise" in held["100 K, σ=0.01"]["rrim"]
    index = json.loads((models / "index.json").read_text())
    assert set(index) == {"other", "rrim-default", "rrim-lean"} and index["rrim-lean"]["form"] == "input"
    assert index["rrim-default"]["sha256"] == default["sha256"]
    card = (models / "rrim-lean.md").read_text()
    assert lean["sha256"] in card and "data-consistency" in card
    for name in ("rrim-default", "rrim-lean"):  # each card names the paths its network has, and its start
        net, text = load_config(sm.CONFIGS / sm.RECIPES[name].config).model, (models / f"{name}.md").read_text()
        assert ("coarse path" in text) == bool(net.context) and ("global path" in text) == bool(net.global_width)
        assert f"x₀ = {sm.X0_TEXT[net.x0]};" in text
    assert set(sm.X0_TEXT) == set(X0_KINDS)
    model = load_model(models / "rrim-lean.onnx", sha256=lean["sha256"])
    assert model.info.adaptive and model.info.regularization["mask"]
    assert (tmp_path / "checkpoints" / "rrim-lean.pt").exists()  # kept for reruns without training
    assert not (tmp_path / "checkpoints" / "rrim-default.pt").exists()  # kept only where asked


def test_any_temperature_recipe_flags_other_temperatures(tmp_path, monkeypatch):
    monkeypatch.setattr(sm, "CONFIGS", _tiny_configs(tmp_path))
    monkeypatch.setattr(sm, "N_EVAL", 6)
    summary = sm.build("rrim-any-temperature", tmp_path / "models", command="test")
    assert {k.split(",")[0] for k in summary["metrics"]["held_out"]} == {f"{T:g} K" for T in sm.RECIPES["rrim-any-temperature"].temperatures}
    model = load_model(tmp_path / "models" / "rrim-any-temperature.onnx")
    assert model.info.temperature_range_K == (10.0, 300.0)
    y = model.info.base_operator(50.0).forward(np.full((2, 30), 0.3))
    assert not (invert(y, model, provider="cpu", temperature=50.0).flags & FLAG_TEMPERATURE).any()
    assert (invert(y, model, provider="cpu", temperature=400.0).flags & FLAG_TEMPERATURE).all()


def test_training_resumes_from_its_state(tmp_path, caplog):
    """Two epochs at once equal one epoch, a stop, and a resumed second epoch; a state saved before a
    setting existed (here training.min_epoch_steps) resumes with that setting at its default."""
    from rrim.export.training.loop import train

    cfg = load_config(_tiny_configs(tmp_path) / sm.RECIPES["rrim-default"].config)
    whole = train(cfg.replace(training={"output_dir": str(tmp_path / "whole")}))
    first = train(cfg.replace(training={"output_dir": str(tmp_path / "cut"), "max_epochs": 1}))
    assert first.finished and (tmp_path / "cut" / "state.pt").exists()
    shutil.copy(tmp_path / "cut" / "state.pt", tmp_path / "state.pt")
    resumed_cfg = cfg.replace(training={"output_dir": str(tmp_path / "cut")})
    # the stored state names its configuration: a different max_epochs is another run, so rewrite it
    import torch

    state = torch.load(tmp_path / "state.pt", weights_only=True)
    older = resumed_cfg.to_dict()
    del older["training"]["min_epoch_steps"]
    state["config"] = json.dumps(older)
    torch.save(state, tmp_path / "cut" / "state.pt")
    with caplog.at_level("INFO", logger="rrim.export.training.loop"):
        again = train(resumed_cfg)
    assert "resuming" in caplog.text and again.history[0] == first.history[0]
    assert [h["val_mse"] for h in again.history] == pytest.approx([h["val_mse"] for h in whole.history], rel=1e-5)
