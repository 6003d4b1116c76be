"""The runtime reads models made by the export engineer's ``export_onnx`` (both forms): verified
loading, golden parity through onnxruntime alone, and the input form fed A, P at 100 K equals the
baked form. Needs the train extra (torch, onnx)."""
from __future__ import annotations

import numpy as np
import pytest

import rrim

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def exported(tmp_path_factory, default_operator):
    from rrim.export.nets.recurrent import RRIM, RRIMSettings
    from rrim.export.onnx.export import export_onnx

    torch.manual_seed(0)
    net = RRIM(RRIMSettings(hidden=4, n_steps=3))  # untrained: the contract, not the accuracy, is tested
    d = tmp_path_factory.mktemp("exported")
    return {form: export_onnx(net, default_operator, d / f"tiny-{form}.onnx", form=form, model_name=f"tiny-{form}",
                              model_version="0", temperature_range_K=(100.0, 100.0) if form == "baked" else (10.0, 300.0),
                              training={"data": "none (untrained)"}, metrics={"none": 0.0},
                              provenance={"made_by": "tests/export/test_exported_models.py"})
            for form in ("baked", "input")}


def test_exported_models_load_reproduce_golden_and_agree(exported, default_operator):
    from rrim.inversion.engine import invert
    from rrim.models.golden import check_golden
    from rrim.models.loading import load_model
    from rrim.physics.glue_families import realistic_glue

    models = {form: load_model(path) for form, path in exported.items()}
    for form, m in models.items():
        assert m.form == form and m.opset >= 18 and m.info.n_steps == 3
        assert check_golden(m, provider="cpu").passed
    x = realistic_glue(default_operator.Omega, 6, np.random.default_rng(2))
    y = default_operator.forward(x)
    a = invert(y, models["baked"], provider="cpu").glue
    b = invert(y, models["input"], provider="cpu", temperature=100.0).glue
    assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(a))
