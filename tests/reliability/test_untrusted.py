"""Untrusted files: models verified by sha256 before use (index or user pin, and again when a
session is built), models with unexpected inputs, outputs, opset, operators, external data or
metadata refused, nothing ever unpickled, no shell, and ``rrim reprocess`` reads nothing that a
link or a pattern leads to outside the archive folder.
"""
from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from reliability_support import make_job, outputs, run_rrim, tally, temporaries, tree_hashes
from runtime_helpers import fixture_info, sha256_file, tikhonov_model_bytes

REPO = Path(__file__).resolve().parents[2]
EXIT_USAGE, EXIT_MODEL = 2, 4


class _Bomb:
    """Unpickling this creates ``marker``: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# ---- static checks over the code that handles user files ----------------------------------------

def _calls(folder: Path):
    """(file, line, dotted name, keyword names→values) of every call in the Python files under ``folder``."""
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path, node.lineno, ast.unparse(node.func), {k.arg: ast.unparse(k.value) for k in node.keywords}


def _imports(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield path, node.lineno, [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield path, node.lineno, [node.module]


UNPICKLERS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "jsonpickle"}
SHELLS = {"os.system", "os.popen", "os.execl", "os.execlp", "os.execv", "os.execvp", "os.spawnl", "os.spawnv",
          "subprocess.getoutput", "subprocess.getstatusoutput", "eval", "exec", "pty.spawn"}


@pytest.mark.parametrize("folder", ["runtime", "plugins"])
def test_the_runtime_never_unpickles_and_never_invokes_a_shell(folder):
    bad = [f"{p.name}:{line} imports {names}" for p, line, names in _imports(REPO / folder)
           if UNPICKLERS & {n.split(".")[0] for n in names}]
    for path, line, name, kw in _calls(REPO / folder):
        where = f"{path.relative_to(REPO)}:{line} {name}"
        if name in SHELLS or name.split(".")[-1] in {"system", "popen"}:
            bad.append(f"{where}: runs a shell")
        if kw.get("shell") not in (None, "False"):
            bad.append(f"{where}: shell={kw['shell']}")
        if name.split(".")[-1] in {"load", "loads"} and name.split(".")[0] in {"np", "numpy"} \
                and kw.get("allow_pickle") != "False":
            bad.append(f"{where}: np.load without allow_pickle=False")
        if name in {"torch.load"}:
            bad.append(f"{where}: torch in the runtime")
    assert not bad, bad


def test_torch_checkpoints_load_with_weights_only():
    loads = [(p, line, kw) for p, line, name, kw in _calls(REPO / "export") if name == "torch.load"]
    assert loads, "export/ loads checkpoints somewhere"
    assert all(kw.get("weights_only") == "True" for _, _, kw in loads), loads


# ---- model files ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory, small_operator):
    """A fixture model (2 steps) and an archive for it."""
    root = tmp_path_factory.mktemp("untrusted")
    model = root / "good.onnx"
    model.write_bytes(tikhonov_model_bytes(small_operator, "baked", n_steps=2))
    archive = make_job(root / "archive", small_operator, 1, 3)[0]
    return {"root": root, "model": model, "sha256": sha256_file(model), "archive": archive}


def _mutated(op, mutate) -> bytes:
    """The fixture model with ``mutate(ModelProto)`` applied (no checker: broken on purpose)."""
    import onnx

    m = onnx.load_from_string(tikhonov_model_bytes(op, "baked", n_steps=2))
    mutate(m)
    return m.SerializeToString()


def _extra_input(m):
    from onnx import TensorProto, helper

    m.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3]))


def _renamed_output(m):
    m.graph.node[-1].output[0] = "glue"
    m.graph.output[0].name = "glue"


def _extra_output(m):
    from onnx import TensorProto, helper

    m.graph.output.append(helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["batch", 50]))


def _double_input(m):
    from onnx import TensorProto, helper

    m.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    m.graph.input[0].name = "y"
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            if name == "y":
                node.input[i] = "y32"
    m.graph.node.insert(0, helper.make_node("Cast", ["y"], ["y32"], to=TensorProto.FLOAT))


def _fixed_batch(m):
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4


def _foreign_operator(m):
    from onnx import helper

    m.graph.node.insert(0, helper.make_node("RunShell", ["y"], ["ignored"], domain="ai.example.evil"))
    m.opset_import.append(helper.make_opsetid("ai.example.evil", 1))


def _external_data_outside(m):
    """The first initializer's bytes moved to ../outside.bin, as an exporter's external data would be."""
    from onnx import external_data_helper, numpy_helper

    t = m.graph.initializer[0]
    arr = numpy_helper.to_array(t)
    external_data_helper.set_external_data(t, location="../outside.bin", offset=0, length=arr.nbytes)
    t.ClearField("raw_data")
    t.data_location = 1  # EXTERNAL


def _metadata(**changes):
    def build(op):
        meta = fixture_info(op, "baked", n_steps=2).to_metadata()
        for k, v in changes.items():
            if v is None:
                del meta[k]
            else:
                meta[k] = v
        return tikhonov_model_bytes(op, "baked", n_steps=2, metadata=meta)
    return build


def _bigger_grid_metadata(op):
    import rrim

    meta = fixture_info(rrim.ForwardOperator(), "baked", n_steps=2).to_metadata()  # 200-point grids
    return tikhonov_model_bytes(op, "baked", n_steps=2, metadata=meta)


def _pickle_bytes(marker):
    return pickle.dumps(_Bomb(marker))


BAD_MODELS = {  # name → (bytes from the operator, fragment of the refusal)
    "extra_input": (lambda op: _mutated(op, _extra_input), "do not match the 'baked' form's ['y']"),
    "renamed_output": (lambda op: _mutated(op, _renamed_output), "outputs ['glue']"),
    "extra_output": (lambda op: _mutated(op, _extra_output), "the contract has exactly ['x']"),
    "float64_input": (lambda op: _mutated(op, _double_input), "'y' has type tensor(double)"),
    "fixed_batch": (lambda op: _mutated(op, _fixed_batch), "dynamic batch axis"),
    "foreign_operator": (lambda op: _mutated(op, _foreign_operator), "onnxruntime cannot load"),
    "external_data_outside": (lambda op: _mutated(op, _external_data_outside), "keep their data in external files"),
    "opset_17": (lambda op: tikhonov_model_bytes(op, "baked", n_steps=2, opset=17), "opset 17 is older"),
    "metadata_missing_key": (_metadata(provenance=None), "missing ['provenance']"),
    "metadata_future_format": (_metadata(rrim_format="2"), "'rrim_format' is '2'"),
    "metadata_bad_json": (_metadata(operator="{not json"), "'operator' is not valid JSON"),
    "metadata_unknown_form": (_metadata(form="pickle"), "'form' must be one of"),
    "metadata_grid_mismatch": (_bigger_grid_metadata, "expected ['batch', 200]"),
    "truncated": (lambda op: tikhonov_model_bytes(op, "baked", n_steps=2)[:3000], "not an ONNX model"),
    "empty": (lambda op: b"", "not an ONNX model"),
    "json_named_onnx": (lambda op: json.dumps({"model": "x"}).encode(), "not an ONNX model"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_unexpected_models_are_refused(good, small_operator, name, tmp_path):
    from click.testing import CliRunner

    from rrim.cli import main

    build, fragment = BAD_MODELS[name]
    path = tmp_path / "models" / f"{name}.onnx"
    path.parent.mkdir()
    path.write_bytes(build(small_operator))
    (tmp_path / "outside.bin").write_bytes(np.zeros(60 * 50, np.float32).tobytes())  # bait for external data
    out = tmp_path / "x.nc"
    res = CliRunner().invoke(main, ["invert", str(good["archive"]), "-o", str(out), "--model", str(path)],
                             catch_exceptions=False)
    s = json.loads(res.stdout)
    assert res.exit_code == EXIT_MODEL and str(path) in s["error"] and fragment in s["error"], s["error"]
    assert not out.exists() and "Traceback" not in res.stderr
    tally("untrusted model", case=name, refused=True)


def test_a_pickle_posing_as_a_model_or_golden_file_is_never_unpickled(good, tmp_path, monkeypatch):
    from rrim.models import loading as models
    from rrim.models.golden import check_golden
    from rrim.models.modelfile import ModelFileError

    marker = tmp_path / "unpickled"
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(_pickle_bytes(marker))
    p, s = run_rrim("invert", good["archive"], "-o", tmp_path / "x.nc", "--model", evil, cwd=tmp_path)
    assert p.returncode == EXIT_MODEL and "not an ONNX model" in s["error"] and not marker.exists()
    p, s = run_rrim("inspect", evil, cwd=tmp_path)
    assert p.returncode == EXIT_MODEL and not marker.exists()

    folder = tmp_path / "installed"  # an installed model whose golden file holds a pickled object array
    folder.mkdir()
    (folder / "m.onnx").write_bytes(good["model"].read_bytes())
    (folder / "index.json").write_text(json.dumps({"m": {"file": "m.onnx", "sha256": good["sha256"], "form": "baked"}}))
    np.savez(folder / "m.golden.npz", y=np.array([_Bomb(marker)], dtype=object), x=np.zeros((1, 50)))
    monkeypatch.setattr(models, "MODELS_DIR", folder)
    with pytest.raises(ModelFileError, match="unreadable golden file"):
        check_golden(models.load_model("m"))
    assert not marker.exists()
    tally("untrusted model", case="pickle as model / golden", refused=True)


def test_installed_models_are_verified_against_the_index_and_pins(good, tmp_path, monkeypatch):
    from rrim.models import loading as models
    from rrim.models import sessions
    from rrim.models.modelfile import ModelFileError

    folder = tmp_path / "installed"
    folder.mkdir()
    (folder / "m.onnx").write_bytes(good["model"].read_bytes())
    index = {"m": {"file": "m.onnx", "sha256": good["sha256"], "form": "baked"},
             "escape": {"file": "../good.onnx", "sha256": good["sha256"]}}
    (folder / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(models, "MODELS_DIR", folder)
    with pytest.raises(ModelFileError, match="inside"):  # an index entry may not point outside its folder
        models.load_model("m")
    del index["escape"]
    (folder / "index.json").write_text(json.dumps(index))
    m = models.load_model("m")
    assert m.sha256 == good["sha256"]
    with pytest.raises(ModelFileError, match="differs from the index"):
        models.load_model("m", sha256="0" * 64)

    data = bytearray((folder / "m.onnx").read_bytes())
    i = data.find(b"fixture-tikhonov-baked")
    data[i:i + 7] = b"FIXTURE"  # still a valid ONNX file, other metadata
    (folder / "m.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the expected"):
        models.load_model("m")
    with pytest.raises(ModelFileError, match="does not match the expected"):
        models.load_model(folder / "m.onnx")  # the installed file by path: checked against the index too
    # swapped after verification: the bytes are checked again when a session is built
    sessions.clear_cache()
    with pytest.raises(ModelFileError, match="changed since the model was verified"):
        m.session("cpu")
    tally("untrusted model", case="tampered installed model (index, pin, swap after load)", refused=True)


def test_a_tampered_model_is_refused_by_the_users_pin(good, tmp_path):
    data = good["model"].read_bytes().replace(b"fixture-tikhonov-baked", b"fixture-tikhonov-BAKED")
    bad = tmp_path / "tampered.onnx"
    bad.write_bytes(data)
    p, s = run_rrim("reprocess", good["archive"].parent, "-o", tmp_path / "out", "--model", bad,
                    "--sha256", good["sha256"], cwd=tmp_path)
    assert p.returncode == EXIT_MODEL and "does not match" in s["error"] and str(bad) in s["error"]
    assert not (tmp_path / "out").exists()
    tally("untrusted model", case="tampered bytes against --sha256", refused=True)


# ---- archive paths -------------------------------------------------------------------------------

def test_reprocess_does_not_follow_links_or_patterns_out_of_the_archive_folder(good, tmp_path, small_operator):
    archive, outside = tmp_path / "archive", tmp_path / "elsewhere"
    make_job(archive, small_operator, 2, 3)
    make_job(outside, small_operator, 1, 3, seed=8)
    (outside / "sub").mkdir()
    (outside / "run00.nc").rename(outside / "sub" / "secret.nc")
    (archive / "inside_link.nc").symlink_to(archive / "run00.nc")
    (archive / "outside_link.nc").symlink_to(outside / "sub" / "secret.nc")
    (archive / "linked_dir").symlink_to(outside / "sub")
    hashes = tree_hashes(outside)
    out = tmp_path / "out"
    args = ("--model", good["model"], "--provider", "cpu")
    p, s = run_rrim("reprocess", archive, "-o", out, "--pattern", "**/*.nc", *args, cwd=tmp_path)
    p2, s2 = run_rrim("reprocess", archive, "-o", out, "--pattern", "*/*.nc", *args, cwd=tmp_path)
    assert p.returncode == 1 and sorted(d["input"] for d in s["processed"]) == ["inside_link.nc", "run00.nc", "run01.nc"]
    refused = {f["input"]: f["error"] for f in s["failed"] + s2["failed"]}
    assert sorted(refused) == ["linked_dir/secret.nc", "outside_link.nc"], refused
    for error in refused.values():
        assert "outside" in error and str(archive) in error and "not followed" in error
    assert sorted(outputs(out)) == ["inside_link.glue.nc", "run00.glue.nc", "run01.glue.nc"]
    for pattern in ("../elsewhere/sub/*.nc", str(outside / "sub" / "*.nc"), "sub/../../elsewhere/*/*.nc"):
        p, s = run_rrim("reprocess", archive, "-o", tmp_path / "out2", "--pattern", pattern, *args, cwd=tmp_path)
        assert p.returncode == EXIT_USAGE and "--pattern" in s["error"] and "Traceback" not in p.stderr, p.stderr
        assert not (tmp_path / "out2").exists()
    assert tree_hashes(outside) == hashes and temporaries(out) == []
    assert sorted(q.name for q in outside.rglob("*")) == ["secret.nc", "sub"]  # nothing written there
    tally("untrusted paths", links_refused=2, patterns_refused=3)


def test_an_output_slot_taken_by_a_link_is_replaced_not_followed(good, tmp_path):
    """A symlink planted where an output will go: the output replaces the link; its target is untouched."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "run00.glue.nc").symlink_to(target)
    p, s = run_rrim("reprocess", good["archive"].parent, "-o", out, "--model", good["model"], cwd=tmp_path)
    assert p.returncode == 0 and len(s["processed"]) == 1, p.stderr
    assert target.read_text() == "keep me" and not (out / "run00.glue.nc").is_symlink()
    tally("untrusted paths", planted_output_links=1)
