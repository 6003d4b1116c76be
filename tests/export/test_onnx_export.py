"""ONNX export: checker, parity with PyTorch in both forms, metadata round trip, golden file, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rrim.cli import main as cli_main  # noqa: E402
from rrim.export.config import Config, GridConfig, ModelConfig, OperatorConfig  # noqa: E402
from rrim.export.data.fixed import physics_tensors  # noqa: E402
from rrim.export.nets.checkpoints import save_checkpoint  # noqa: E402
from rrim.export.nets.recurrent import RRIM, RRIMSettings  # noqa: E402
from rrim.export.onnx.export import (INFO_FIELDS, PARITY_RTOL, export_onnx, golden_path,  # noqa: E402
                                     representative_spectra, verify_onnx)
from rrim.models.modelfile import MIN_OPSET, ModelInfo  # noqa: E402

H = 0.01
OPERATOR_CONFIG = OperatorConfig(omega=GridConfig(2.0, 400.0, 40), Omega=GridConfig(2.0, 400.0, 30))
INFO = dict(model_name="tiny", model_version="0.0.1", temperature_range_K=[100.0, 100.0],
            training={"data": "none (freshly initialized)"}, metrics={"test_mse": 0.5},
            provenance={"command": "tests/export/test_onnx_export.py"})


@pytest.fixture(scope="module")
def operator():
    return OPERATOR_CONFIG.build()


@pytest.fixture(scope="module")
def model():
    """A freshly initialized small rRIM (seeded), with its output layer nudged off zero-ish values."""
    torch.manual_seed(7)
    return RRIM(RRIMSettings(hidden=6, n_steps=4)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model, operator):
    """{form: path} of both forms exported into their own folders."""
    out = {}
    for form in ("baked", "input"):
        folder = tmp_path_factory.mktemp(form)
        out[form] = export_onnx(model, operator, folder / "model.onnx", form=form, h=H, **INFO)
    return out


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_x(model, operator, y):
    A, P = physics_tensors(operator, H)
    with torch.no_grad():
        return model(torch.as_tensor(y), A, P)[-1].numpy()


@pytest.mark.parametrize("form", ["baked", "input"])
def test_export_writes_one_checked_file_and_its_golden(exported, form):
    path = exported[form]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.golden.npz", "model.onnx"]
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert min(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    assert not any(n.op_type == "Loop" for n in proto.graph.node)
    names = [i.name for i in proto.graph.input]
    assert names == (["y"] if form == "baked" else ["y", "A", "P"])
    assert [o.name for o in proto.graph.output] == ["x"]
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis


@pytest.mark.parametrize("form", ["baked", "input"])
def test_onnxruntime_matches_pytorch_for_batch_1_and_7(exported, model, operator, form):
    report = verify_onnx(exported[form], model, operator, H)
    assert report.max_rel <= PARITY_RTOL and 1 in report.batches and 7 in report.batches
    # independently: an odd batch of fresh seeded spectra through onnxruntime directly
    y = representative_spectra(operator, n=7, seed=99)[:7]
    A, P = (t.numpy() for t in physics_tensors(operator, H))
    feeds = {"y": y} if form == "baked" else {"y": y, "A": A, "P": P}
    (x,) = _session(exported[form]).run(["x"], feeds)
    ref = _torch_x(model, operator, y)
    assert x.shape == (7, 30) and x.dtype == np.float32 and (x >= 0).all()
    assert np.abs(x - ref).max() <= PARITY_RTOL * np.abs(ref).max()


def test_parity_check_catches_a_different_model(exported, operator):
    torch.manual_seed(8)
    other = RRIM(RRIMSettings(hidden=6, n_steps=4)).eval()
    with pytest.raises(ValueError, match="differs from PyTorch"):
        verify_onnx(exported["baked"], other, operator, H)


@pytest.mark.parametrize("form", ["baked", "input"])
def test_metadata_round_trips_through_onnxruntime(exported, model, operator, form):
    meta = _session(exported[form]).get_modelmeta().custom_metadata_map
    info = ModelInfo.from_metadata(meta, source=str(exported[form]))
    assert info.form == form and info.model_name == "tiny" and info.model_version == "0.0.1"
    assert info.operator == operator.describe() and info.temperature == 100.0
    assert info.h == H and info.n_steps == 4 and info.architecture["hidden"] == 6
    assert info.temperature_range_K == (100.0, 100.0)
    assert info.metrics == INFO["metrics"] and info.training == INFO["training"]
    assert info.provenance == INFO["provenance"] and info.torch_version == torch.__version__
    assert info.base_operator().describe() == operator.describe()


def test_input_form_fed_100K_physics_equals_baked_form(exported, operator):
    y = representative_spectra(operator)
    A, P = (t.numpy() for t in physics_tensors(operator.at_temperature(100.0), H))
    (x_baked,) = _session(exported["baked"]).run(["x"], {"y": y})
    (x_input,) = _session(exported["input"]).run(["x"], {"y": y, "A": A, "P": P})
    eps = np.finfo(np.float32).eps
    assert np.abs(x_input - x_baked).max() <= 64 * eps * np.abs(x_baked).max()


@pytest.mark.parametrize("form", ["baked", "input"])
def test_golden_file_reproduces_through_onnxruntime(exported, form):
    golden = np.load(golden_path(exported[form]))
    assert golden["y"].dtype == np.float32 and golden["x"].dtype == np.float32
    feeds = {"y": golden["y"]}
    if form == "input":
        feeds.update(A=golden["A"], P=golden["P"])
    else:
        assert "A" not in golden
    (x,) = _session(exported[form]).run(["x"], feeds)
    assert np.abs(x - golden["x"]).max() <= PARITY_RTOL * np.abs(golden["x"]).max()


@pytest.mark.parametrize("key", INFO_FIELDS)
def test_export_refuses_incomplete_metadata(tmp_path, model, operator, key):
    info = {k: v for k, v in INFO.items() if k != key}
    with pytest.raises(ValueError, match=key):
        export_onnx(model, operator, tmp_path / "m.onnx", **info)
    with pytest.raises(ValueError, match=key):
        export_onnx(model, operator, tmp_path / "m.onnx", **{**INFO, key: {} if key != "model_name" else ""})
    assert not list(tmp_path.iterdir())


def test_export_refuses_bad_form_and_path(tmp_path, model, operator):
    with pytest.raises(ValueError, match="form"):
        export_onnx(model, operator, tmp_path / "m.onnx", form="loop", **INFO)
    with pytest.raises(ValueError, match="path"):
        export_onnx(model, operator, tmp_path / "m.pt", **INFO)
    with pytest.raises(ValueError, match="temperature_range_K"):
        export_onnx(model, operator, tmp_path / "m.onnx", **{**INFO, "temperature_range_K": [10.0, 50.0]})


def test_cli_export_from_checkpoint(tmp_path, model):
    config = Config(model=ModelConfig(hidden=6, n_steps=4), operator=OPERATOR_CONFIG)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, config, {"test_metrics": {"test_mse": 0.25}, "best_epoch": 1})
    out = tmp_path / "out" / "cli.onnx"
    result = CliRunner().invoke(cli_main, ["export", str(ckpt), "-o", str(out), "--form", "input"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["form"] == "input" and summary["parity_max_rel"] <= PARITY_RTOL
    assert sorted(p.name for p in out.parent.iterdir()) == ["cli.golden.npz", "cli.onnx"]
    info = ModelInfo.from_metadata(_session(out).get_modelmeta().custom_metadata_map)
    assert info.metrics == {"test_mse": 0.25} and info.model_name == "cli" and info.form == "input"
    assert info.training["config"]["model"]["hidden"] == 6
    assert info.provenance["checkpoint_sha256"] and "rrim export" in info.provenance["command"]


def test_cli_export_refuses_a_checkpoint_without_metrics(tmp_path, model):
    config = Config(model=ModelConfig(hidden=6, n_steps=4), operator=OPERATOR_CONFIG)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, config, {})
    result = CliRunner().invoke(cli_main, ["export", str(ckpt), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "metrics" in result.output


