"""The lean-model sweep on a tiny setup: every network trained, counted, measured; the choice follows the rule."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from rrim.export import lean_models  # noqa: E402
from rrim.models import load_model  # noqa: E402


def test_sweep_counts_flops_and_chooses_by_the_rule(tmp_path, monkeypatch):
    full = lean_models.training_config

    def tiny(hidden, n_steps, runs):
        return full(hidden, n_steps, runs).replace(
            data={"n": 150}, training={"max_epochs": 2, "patience": 2},
            operator={"omega": {"start": 2.0, "stop": 400.0, "n": 40}, "Omega": {"start": 2.0, "stop": 400.0, "n": 30}})

    monkeypatch.setattr(lean_models, "training_config", tiny)
    monkeypatch.setattr(lean_models, "REFERENCE", (6, 4))
    monkeypatch.setattr(lean_models, "CANDIDATES", ((4, 4), (2, 3)))
    monkeypatch.setattr(lean_models, "TOLERANCE", 100.0)  # a loose rule and a weak Tikhonov (x̂ = 0), so that
    monkeypatch.setattr(lean_models, "tune_tikhonov_weight", lambda *a: 1.0)  # a model is chosen and shipped
    monkeypatch.setattr(lean_models, "Tikhonov", _ZeroSolver)
    monkeypatch.setattr(lean_models, "REPORT", tmp_path / "LEAN.md")
    out = lean_models.build(tmp_path / "runs", tmp_path / "models", command="test")
    res = out["results"]
    assert list(res) == ["hidden 6, N_t 4", "hidden 4, N_t 4", "hidden 2, N_t 3"]
    mflop = [r["mflop"] for r in res.values()]
    assert mflop[0] > mflop[1] > mflop[2] > 0
    assert all(r["spectra_per_s"] > 0 and set(r["mse"]) == {"0.001", "0.01"} for r in res.values())
    eligible = [k for k, r in list(res.items())[1:] if r["keeps_accuracy"] and r["beats_tikhonov"]]
    assert out["chosen"] == (min(eligible, key=lambda k: res[k]["mflop"]) if eligible else None)
    report = (tmp_path / "LEAN.md").read_text()
    assert all(k in report for k in res)
    assert out["chosen"] == "hidden 2, N_t 3" and "Shipped" in report
    model = load_model(tmp_path / "models" / "rrim-lean.onnx", sha256=out["summary"]["sha256"])
    assert model.info.n_steps == 3
    assert json.loads((tmp_path / "models" / "index.json").read_text())["rrim-lean"]["card"] == "rrim-lean.md"
    assert "hidden 2, N_t 3" in (tmp_path / "models" / "rrim-lean.md").read_text()


class _ZeroSolver:
    def __init__(self, *args, **kwargs):
        pass

    def fit(self, y):
        import numpy as np

        self.x_ = np.zeros((len(y), 30))
        return self
