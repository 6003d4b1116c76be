"""Model files and sessions: verified loading, refusals, golden parity, providers, pickling."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import rrim
from rrim.models.golden import check_golden
from rrim.models.loading import installed_models, load_model
from rrim.models.modelfile import ModelFileError
from rrim.models.onnx_bytes import onnx_opsets
from rrim.models.sessions import ProviderUnavailable, available_cpus, available_providers, make_session
from runtime_helpers import fixture_info, sha256_file, tikhonov_model_bytes, write_model


@pytest.fixture(scope="module")
def models(tmp_path_factory, default_operator):
    d = tmp_path_factory.mktemp("models")
    return {form: write_model(d, default_operator, form) for form in ("baked", "input")}


@pytest.mark.parametrize("form", ["baked", "input"])
def test_load_model_reads_metadata_and_contract(models, form):
    m = load_model(models[form])
    assert m.form == form and m.opset == 18 and m.sha256 == sha256_file(models[form])
    assert m.info.omega == rrim.default_omega_grid() and m.info.scale == rrim.DEFAULT_SCALE
    assert m.name == f"fixture-tikhonov-{form}"


def test_sha256_pin_refuses_tampered_bytes(models, tmp_path):
    good = load_model(models["baked"], sha256=sha256_file(models["baked"]))
    assert good.sha256 == sha256_file(models["baked"])
    data = bytearray(models["baked"].read_bytes())
    data[-20] ^= 0xFF  # inside the metadata strings at the end of the file
    bad = tmp_path / "tampered.onnx"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 .* does not match"):
        load_model(bad, sha256=good.sha256)


def test_not_onnx_is_refused(tmp_path):
    for name, data in (("text.onnx", b"this is not a model\n" * 10), ("empty.onnx", b""), ("netcdf.onnx", b"CDF\x01" + bytes(100))):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelFileError, match=f"{name}: not an ONNX model"):
            load_model(p)


def test_incomplete_metadata_is_refused(tmp_path, default_operator):
    meta = fixture_info(default_operator, "baked").to_metadata()
    del meta["operator"], meta["h"]
    p = tmp_path / "incomplete.onnx"
    p.write_bytes(tikhonov_model_bytes(default_operator, "baked", n_steps=2, metadata=meta))
    with pytest.raises(ModelFileError, match=r"incomplete.onnx: model metadata incomplete, missing \['operator', 'h'\]"):
        load_model(p)


def test_wrong_inputs_and_old_opset_are_refused(tmp_path, default_operator):
    # metadata says 'input' but the graph is the baked one: inputs differ from the contract
    meta = fixture_info(default_operator, "input").to_metadata()
    p = tmp_path / "liar.onnx"
    p.write_bytes(tikhonov_model_bytes(default_operator, "baked", n_steps=2, metadata=meta))
    with pytest.raises(ModelFileError, match="inputs \\['y'\\] do not match the 'input' form"):
        load_model(p)
    old = tmp_path / "old.onnx"
    old.write_bytes(tikhonov_model_bytes(default_operator, "baked", n_steps=2, opset=17))
    assert onnx_opsets(old.read_bytes(), "old") == {"": 17}
    with pytest.raises(ModelFileError, match="opset 17 is older than the required 18"):
        load_model(old)


def test_unknown_model_name(tmp_path):
    with pytest.raises(ModelFileError, match="no-such-model.*no such installed model"):
        load_model("no-such-model")


def test_index_and_golden_parity(tmp_path, models, default_operator):
    """An installed-model folder (index.json + golden npz) verifies; a wrong golden fails parity."""
    from rrim.models import loading as registry

    path = tmp_path / "tikhonov-input.onnx"
    path.write_bytes(models["input"].read_bytes())
    (tmp_path / "index.json").write_text(json.dumps({"fixture": {"file": path.name, "sha256": sha256_file(path), "form": "input"}}))
    entries = installed_models(tmp_path)
    assert list(entries) == ["fixture"] and entries["fixture"].form == "input"
    m = load_model(path)
    y = (default_operator.forward(np.full((3, 200), 0.2)) / rrim.DEFAULT_SCALE).astype(np.float32)
    x = m.session("cpu").run({"y": y, "A": default_operator.scaled_matrix.astype(np.float32),
                              "P": default_operator.preconditioner().astype(np.float32)})
    np.savez(m.golden, y=y, x=x)
    check = check_golden(m)
    assert check.passed and check.max_rel_error < 1e-6
    np.savez(m.golden, y=y, x=x * 1.01)
    assert not check_golden(m).passed
    assert registry.installed_models(tmp_path / "missing") == {}


def test_session_cache_pickle_and_providers(models):
    s1 = make_session(models["baked"], "cpu")
    s2 = make_session(models["baked"], "auto")
    assert s1.provider == "cpu" and s1.ort_session is make_session(models["baked"], "cpu").ort_session
    assert s2.provider in ("cpu", "cuda") and s1.threads == available_cpus()
    clone = pickle.loads(pickle.dumps(s1))
    assert clone == s1 and len(pickle.dumps(s1)) < 1000  # the description, never the session
    y = np.zeros((2, 200), np.float32)
    np.testing.assert_array_equal(clone.run({"y": y}), s1.run({"y": y}))
    if "CUDAExecutionProvider" not in available_providers():
        with pytest.raises(ProviderUnavailable, match="cuda"):
            make_session(models["baked"], "cuda")
    with pytest.raises(ValueError, match="provider"):
        make_session(models["baked"], "tpu")


SHIPPED = sorted(installed_models())


@pytest.mark.skipif(not SHIPPED, reason="no model shipped in rrim/data/models yet")
@pytest.mark.parametrize("name", SHIPPED or ["none"])
def test_shipped_models_verify_and_reproduce_their_golden_output(name):
    m = load_model(name)  # sha256 against index.json, metadata, contract
    check = check_golden(m, provider="cpu")
    assert check.passed, check


_FORK_SCRIPT = """
import multiprocessing as mp, os, sys
import numpy as np
from rrim.models import sessions
from rrim.models.sessions import make_session

def run_in_child(session):
    assert not any(k[0] == os.getpid() for k in sessions._CACHE)  # nothing cached for this pid yet
    return session.run({"y": np.full((2, 200), 0.5, np.float32)})

s = make_session(sys.argv[1], "cpu")
s.run({"y": np.zeros((1, 200), np.float32)})
with mp.get_context("fork").Pool(1) as pool:
    out = pool.apply_async(run_in_child, (s,)).get(timeout=120)
np.testing.assert_allclose(out, s.run({"y": np.full((2, 200), 0.5, np.float32)}))
print("forked child ok")
"""


def test_forked_child_builds_its_own_session(models):
    """Sessions are cached per process: a forked child reopens from the description and runs. In a
    fresh interpreter: onnxruntime is not fork-safe once other threads of the suite have run sessions."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, str(models["baked"])], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "forked child ok" in done.stdout, done.stderr[-2000:]
