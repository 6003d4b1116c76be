"""The any-temperature model build on a tiny setup: trains the models, exports an input-form model
valid over the range, and its table covers every temperature and method."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from rrim.export import any_temperature_model as atm  # noqa: E402
from rrim.inversion import FLAG_TEMPERATURE, invert  # noqa: E402
from rrim.models import load_model  # noqa: E402


def test_build_on_a_tiny_setup(tmp_path, monkeypatch):
    full = atm.training_config

    def tiny(temperature, runs):
        return full(temperature, runs).replace(
            model={"hidden": 4, "n_steps": 3}, data={"n": 120},
            operator={"omega": {"start": 2.0, "stop": 400.0, "n": 40}, "Omega": {"start": 2.0, "stop": 400.0, "n": 30},
                      "n_temperatures": 3},
            training={"max_epochs": 1, "patience": 1})

    monkeypatch.setattr(atm, "training_config", tiny)
    monkeypatch.setattr(atm, "EVAL_SIGMAS", (1e-2,))
    summary = atm.build(tmp_path / "models", tmp_path / "runs", retrain=False, command="test")
    table = summary["table"]["0.01"]
    assert list(table) == [f"{T:g}" for T in atm.EVAL_T]
    for T, row in table.items():
        assert {"any-temperature rRIM", "tuned Tikhonov", "100 K rRIM used at T"} <= set(row)
        assert ("rRIM trained at T" in row) == (float(T) in atm.FIXED_T)
        assert all(np.isfinite(v) and v > 0 for v in row.values())

    model = load_model(tmp_path / "models" / f"{atm.NAME}.onnx", sha256=summary["sha256"])
    assert model.form == "input" and model.info.temperature_range_K == atm.RANGE_K
    index = json.loads((tmp_path / "models" / "index.json").read_text())
    assert index[atm.NAME]["sha256"] == summary["sha256"] and index[atm.NAME]["form"] == "input"
    card = (tmp_path / "models" / f"{atm.NAME}.md").read_text()
    assert summary["sha256"] in card and "| 300 |" in card

    y = model.info.base_operator(50.0).forward(np.full((2, 30), 0.3))
    assert not (invert(y, model, provider="cpu", temperature=50.0).flags & FLAG_TEMPERATURE).any()
    assert (invert(y, model, provider="cpu", temperature=400.0).flags & FLAG_TEMPERATURE).all()
    # a second build reuses the finished trainings
    mtimes = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.pt")}
    atm.build(tmp_path / "models", tmp_path / "runs", retrain=False, command="test")
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.pt")} == mtimes
