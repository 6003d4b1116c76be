"""The holes a red-team review found (issue 15), one or more tests per item, and their siblings:
files that keep data outside themselves, two inputs or paths that would write one name, files read
without validation, errors that name no file, bytes hashed that are not the bytes read, files that
are not regular files, and outputs that are neither durable nor fully identified.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reliability_support import make_job, outputs, run_rrim, sha256_of, tally, temporaries, tree_hashes
from runtime_helpers import fixture_info, sha256_file, tikhonov_model_bytes
from rrim.inversion.engine import Engine

EXIT_USAGE, EXIT_MODEL = 2, 4
MODELS = Path(__file__).resolve().parents[2] / "runtime" / "data" / "models"


@pytest.fixture(scope="module")
def good(tmp_path_factory, small_operator):
    """A fixture model (2 steps) and a one-file archive folder for it."""
    root = tmp_path_factory.mktemp("redteam")
    model = root / "good.onnx"
    model.write_bytes(tikhonov_model_bytes(small_operator, "baked", n_steps=2))
    archive = make_job(root / "archive", small_operator, 1, 3)[0]
    return {"root": root, "model": model, "sha256": sha256_file(model), "archive": archive}


def _model_args(good):
    return ("--model", good["model"], "--provider", "cpu", "--batch-size", 16)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- 1. the sha256 pin covers every byte the model runs -------------------------------------------

def _with_external(op, where: str) -> bytes:
    """The fixture model with one tensor's bytes moved to 'weights.bin' (relative): an initializer, a
    Constant node's value, or an initializer inside a subgraph (an If branch)."""
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    m = onnx.load_from_string(tikhonov_model_bytes(op, "baked", n_steps=2))

    def externalize(t):
        n = numpy_helper.to_array(t).nbytes
        external_data_helper.set_external_data(t, location="weights.bin", offset=0, length=n)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL

    if where == "initializer":
        externalize(m.graph.initializer[0])
    elif where == "constant":
        t = m.graph.initializer.pop(0)
        node = helper.make_node("Constant", [], [t.name], value=t)
        externalize(node.attribute[0].t)
        m.graph.node.insert(0, node)
    else:  # a subgraph: If(true) whose branches hold the tensor
        t = m.graph.initializer.pop(0)
        branches = []
        for label in ("then", "else"):
            inner = onnx.TensorProto()
            inner.CopyFrom(t)
            inner.name = f"{label}_value"
            externalize(inner)
            branches.append(helper.make_graph([helper.make_node("Identity", [inner.name], [f"{label}_out"])], label, [],
                                              [helper.make_tensor_value_info(f"{label}_out", TensorProto.FLOAT, None)],
                                              [inner]))
        m.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
        m.graph.node.insert(0, helper.make_node("If", ["cond"], [t.name], then_branch=branches[0],
                                                else_branch=branches[1]))
    return m.SerializeToString()


def test_a_model_whose_weights_live_in_another_file_is_refused(good, tmp_path, small_operator):
    """External data beside the model and in the current folder: refused by path and by pin, never loaded."""
    model = tmp_path / "ext.onnx"
    model.write_bytes(_with_external(small_operator, "initializer"))
    weights = np.zeros(small_operator.shape[::-1], np.float32).tobytes()
    for folder in (tmp_path, tmp_path / "cwd"):
        folder.mkdir(exist_ok=True)
        (folder / "weights.bin").write_bytes(weights)
    out = tmp_path / "x.nc"
    for pin in ((), ("--sha256", sha256_file(model))):
        p, s = run_rrim("invert", good["archive"], "-o", out, "--model", model, "--provider", "cpu", *pin,
                        cwd=tmp_path / "cwd")
        assert p.returncode == EXIT_MODEL and str(model) in s["error"] and "'AT'" in s["error"], p.stderr[-800:]
        assert "external files" in s["error"] and not out.exists()
    tally("untrusted files", hole="outside reads", case="model with external initializer (path, pin)", refused=2)


@pytest.mark.parametrize("where", ["constant", "subgraph"])
def test_external_tensors_are_found_in_constants_and_subgraphs(small_operator, tmp_path, where):
    from rrim.models.loading import load_model
    from rrim.models.modelfile import ModelFileError
    from rrim.models.onnx_bytes import check_self_contained

    data = _with_external(small_operator, where)
    with pytest.raises(ModelFileError, match="external files"):
        check_self_contained(data, "m.onnx")
    (tmp_path / "m.onnx").write_bytes(data)
    (tmp_path / "weights.bin").write_bytes(np.zeros(small_operator.shape[::-1], np.float32).tobytes())
    with pytest.raises(ModelFileError, match="external files"):
        load_model(tmp_path / "m.onnx")
    tally("untrusted files", hole="outside reads", case=f"model with external {where} tensor", refused=1)


# ---- 2. an archive holds its own data --------------------------------------------------------------

def _hostile_archive(path: Path, base: Path, kind: str, secret: Path) -> None:
    """A good archive (copied from ``base``) whose 'scattering_rate' is replaced by one that reads ``secret``
    (external raw storage, relative or absolute, or a virtual dataset), or that gains an external link."""
    import h5py

    path.write_bytes(base.read_bytes())
    with h5py.File(path, "a") as f:
        shape, dtype = f["scattering_rate"].shape, f["scattering_rate"].dtype
        if kind == "external link":
            f["elsewhere"] = h5py.ExternalLink(str(secret.with_suffix(".h5")), "/data")
            return
        attrs = dict(f["scattering_rate"].attrs)
        del f["scattering_rate"]
        if kind.startswith("external storage"):
            name = os.path.relpath(secret, path.parent) if kind.endswith("relative") else str(secret)
            d = f.create_dataset("scattering_rate", shape=shape, dtype=dtype, external=[(name, 0, secret.stat().st_size)])
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(secret.with_suffix(".h5")), "data", shape=shape)
            d = f.create_virtual_dataset("scattering_rate", layout)
        for i, dim in enumerate(("sample", "omega")):
            d.dims[i].attach_scale(f[dim])
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "_Netcdf4Dimid"):
                d.attrs[k] = v


HOSTILE = ("external storage, relative", "external storage, absolute", "virtual dataset", "external link")


def test_an_archive_that_keeps_data_outside_itself_is_refused(good, tmp_path, small_operator):
    h5py = pytest.importorskip("h5py")
    archive, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    make_job(archive, small_operator, 1, 3)
    elsewhere.mkdir()
    secret = elsewhere / "secret.bin"
    y = np.full((3, 80), 7.0)
    secret.write_bytes(y.astype("<f8").tobytes())
    with h5py.File(secret.with_suffix(".h5"), "w") as f:
        f["data"] = y
    names = {kind: f"hostile{i}.nc" for i, kind in enumerate(HOSTILE)}
    for kind, name in names.items():
        _hostile_archive(archive / name, archive / "run00.nc", kind, secret)
    hashes = tree_hashes(elsewhere)
    p, s = run_rrim("reprocess", archive, "-o", tmp_path / "out", *_model_args(good), cwd=tmp_path)
    failed = {f["input"]: f for f in s["failed"]}
    assert p.returncode == 1 and [d["input"] for d in s["processed"]] == ["run00.nc"], p.stderr[-2000:]
    assert sorted(failed) == sorted(names.values())
    for kind, name in names.items():
        f = failed[name]
        assert f["exit_code"] == EXIT_USAGE and str(archive / name) in f["error"], f
        assert ("'scattering_rate'" if kind != "external link" else "'elsewhere'") in f["error"], f
        assert "must hold its own data" in f["error"], f
    assert sorted(outputs(tmp_path / "out")) == ["run00.glue.nc"] and tree_hashes(elsewhere) == hashes
    tally("untrusted files", hole="outside reads", case="archives: external storage, virtual dataset, external link",
          refused=len(HOSTILE))


# ---- 3. two inputs, one output -----------------------------------------------------------------------

def test_inputs_that_would_write_one_output_are_refused_not_lost(good, tmp_path, small_operator):
    archive, out = tmp_path / "archive", tmp_path / "out"
    make_job(archive, small_operator, 1, 3)
    src = archive / "run00.nc"
    for name in ("x", "x.nc", "x.nc4", "y.nc4"):
        (archive / name).write_bytes(src.read_bytes())
    src.unlink()
    for run in range(2):  # and the same on a rerun: nothing redone, nothing lost (reported as still failing)
        p, s = run_rrim("reprocess", archive, "-o", out, "--pattern", "[xy]*", *_model_args(good), cwd=tmp_path)
        failed = {f["input"]: f["error"] for f in s["still_failing" if run else "failed"]}
        assert p.returncode == (0 if run else 1) and sorted(failed) == ["x", "x.nc", "x.nc4"], p.stderr[-2000:]
        assert all("x, x.nc, x.nc4 would all write x.glue.nc" in e for e in failed.values()), failed
        assert sorted(outputs(out)) == ["y.glue.nc"]
    # across runs: an output made from another input is not silently replaced
    (archive / "x").unlink()
    (archive / "x.nc").unlink()
    p, s = run_rrim("reprocess", archive, "-o", out, "--pattern", "x.nc4", *_model_args(good), cwd=tmp_path)
    assert p.returncode == 0 and [d["input"] for d in s["processed"]] == ["x.nc4"], p.stderr[-2000:]
    (archive / "x.nc").write_bytes(make_job(tmp_path / "other", small_operator, 1, 3, seed=9)[0].read_bytes())
    p, s = run_rrim("reprocess", archive, "-o", out, "--pattern", "x.nc", *_model_args(good), cwd=tmp_path)
    assert p.returncode == 1 and "holds the inversion of another input (x.nc4)" in s["failed"][0]["error"]
    p, s = run_rrim("reprocess", archive, "-o", out, "--pattern", "x.nc", "--force", *_model_args(good), cwd=tmp_path)
    assert p.returncode == 0 and outputs(out)["x.glue.nc"]["attrs"]["input_file"] == "x.nc"
    tally("untrusted files", hole="one name, two writers", case="inputs mapping to one output (in a run, across runs)",
          refused=4)


# ---- 4. --report and --plot are outputs too ----------------------------------------------------------

def test_report_and_plot_paths_are_checked_before_any_work(good, tmp_path):
    inp = tmp_path / "in.nc"
    inp.write_bytes(good["archive"].read_bytes())
    before = sha256_of(inp)
    out = tmp_path / "out.nc"
    cases = {"--report in.nc": ("--report", inp), "--report out.nc": ("--report", out),
             "--report in a missing folder": ("--report", tmp_path / "missing" / "r.json"),
             "--plot in.nc": ("--plot", inp),
             "--plot = --report": ("--plot", tmp_path / "r.json", "--report", tmp_path / "r.json")}
    for label, extra in cases.items():
        p, s = run_rrim("invert", inp, "-o", out, *_model_args(good), *extra, cwd=tmp_path)
        assert p.returncode == EXIT_USAGE and s is not None and "Traceback" not in p.stderr, (label, p.stderr[-800:])
        assert str(extra[1]) in s["error"], (label, s["error"])
        assert not out.exists() and sha256_of(inp) == before, label
    p, s = run_rrim("invert", inp, "-o", out, *_model_args(good), "--report", tmp_path / "r.json", cwd=tmp_path)
    assert p.returncode == 0 and json.loads((tmp_path / "r.json").read_text())["status"] == "ok"
    # reprocess: never into ARCHIVE_DIR, never over an output; calibrate: never over the model
    archive = good["archive"].parent
    for report in (archive / "r.json", tmp_path / "o" / "run00.glue.nc"):
        p, s = run_rrim("reprocess", archive, "-o", tmp_path / "o", *_model_args(good), "--report", report, cwd=tmp_path)
        assert p.returncode == EXIT_USAGE and str(report) in s["error"] and not (tmp_path / "o").exists(), p.stderr[-800:]
    model = tmp_path / "m.onnx"
    model.write_bytes(good["model"].read_bytes())
    p, s = run_rrim("calibrate", model, "--report", model, cwd=tmp_path)
    assert p.returncode == EXIT_USAGE and "would overwrite the model" in s["error"]
    assert sha256_of(model) == good["sha256"] and not (tmp_path / "m.calibration.json").exists()
    tally("untrusted files", hole="one name, two writers", case="--report/--plot paths", refused=len(cases) + 3)


# ---- 5. reprocess into its own archive folder --------------------------------------------------------

def test_reprocess_into_or_around_its_archive_folder_is_an_error(good, tmp_path, small_operator):
    outer = tmp_path / "outer"
    archive = outer / "archive"
    make_job(archive, small_operator, 1, 3)
    hashes = tree_hashes(outer)
    for out in (archive, outer):
        p, s = run_rrim("reprocess", archive, "-o", out, *_model_args(good), cwd=tmp_path)
        assert p.returncode == EXIT_USAGE and str(out) in s["error"] and "ARCHIVE_DIR" in s["error"], p.stderr[-800:]
        assert tree_hashes(outer) == hashes
    tally("untrusted files", hole="one name, two writers", case="OUT_DIR is or contains ARCHIVE_DIR", refused=2)


# ---- 6. calibration files are validated --------------------------------------------------------------

def _deep(n: int) -> str:
    return "[" * n + "]" * n


CALIBRATIONS = {  # name → (change to the shipped calibration's JSON, fragment of the refusal)
    "negative band scale": (lambda d: d["band_scale"]["0.9"][0].__setitem__(0, -1.0), "finite numbers > 0"),
    "alpha NaN": (lambda d: d.__setitem__("alpha", float("nan")), "alpha"),
    "beta a string": (lambda d: d.__setitem__("beta", "0.1"), "beta"),
    "resamples 2.5": (lambda d: d.__setitem__("resamples", 2.5), "resamples"),
    "resamples 1": (lambda d: d.__setitem__("resamples", 1), "resamples"),
    "resamples 1e9": (lambda d: d.__setitem__("resamples", 10**9), "resamples"),
    "unsorted noise edges": (lambda d: d.__setitem__("noise_bin_edges", d["noise_bin_edges"][::-1]), "increase"),
    "ood threshold infinite": (lambda d: d["ood_threshold"].__setitem__(0, float("inf")), "ood_threshold"),
    "coverage 1.5": (lambda d: d["band_scale"].__setitem__("1.5", d["band_scale"]["0.9"]), "coverage"),
    "not an object": (lambda d: [1, 2], "not a JSON object"),
    "deeply nested": (lambda d: _deep(100_000), "nested too deeply"),
    "larger than 16 MiB": (lambda d: " " * (1 << 24) + json.dumps(d), "larger than 16777216 bytes"),
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """rrim-default copied to a folder of its own (its calibration beside it), loaded by path."""
    from rrim.models.loading import load_model

    folder = tmp_path_factory.mktemp("shipped")
    for suffix in (".onnx", ".calibration.json"):
        (folder / f"rrim-default{suffix}").write_bytes((MODELS / f"rrim-default{suffix}").read_bytes())
    return load_model(folder / "rrim-default.onnx")


@pytest.mark.parametrize("name", sorted(CALIBRATIONS))
def test_a_bad_calibration_is_refused_naming_the_file(shipped, name):
    from rrim.inversion.uncertainty import calibration_path, load_calibration
    from rrim.models.modelfile import ModelFileError

    path = calibration_path(shipped.path)
    original = (MODELS / "rrim-default.calibration.json").read_text()
    change, fragment = CALIBRATIONS[name]
    d = json.loads(original)
    changed = change(d)
    path.write_text(changed if isinstance(changed, str) else json.dumps(d if changed is None else changed))
    try:
        with pytest.raises(ModelFileError) as e:
            load_calibration(shipped)
        assert str(path) in str(e.value) and fragment in str(e.value), str(e.value)
    finally:
        path.write_text(original)
    tally("untrusted files", hole="unvalidated files", case=f"calibration: {name}", refused=1)


def test_a_bad_calibration_fails_a_band_request_with_the_files_name(shipped, tmp_path):
    from rrim.inversion.uncertainty import calibration_path

    path = calibration_path(shipped.path)
    original = path.read_text()
    d = json.loads(original)
    d["band_scale"]["0.9"][0][0] = -1.0
    path.write_text(json.dumps(d))
    try:
        p, s = run_rrim("invert", "--example", "-o", tmp_path / "x.nc", "--model", shipped.path, "--uncertainty", "0.9",
                        "--provider", "cpu", "--batch-size", 64, cwd=tmp_path)
    finally:
        path.write_text(original)
    assert p.returncode == EXIT_MODEL and str(path) in s["error"] and not (tmp_path / "x.nc").exists(), p.stderr[-800:]


# ---- 7. sizes declared by a model are checked before use ---------------------------------------------

def _declaring(op, grid: str, n):
    meta = fixture_info(op, "baked", n_steps=2).to_metadata()
    operator = json.loads(meta["operator"])
    operator[grid] = {"kind": "uniform", "start": 2.0, "stop": 400.0, "n": n, "unit": "meV"}
    meta["operator"] = json.dumps(operator)
    return tikhonov_model_bytes(op, "baked", n_steps=2, metadata=meta)


@pytest.mark.parametrize("grid, n, fragment", [
    ("omega", 10**9, "declares a omega grid of 1e+09 points"),
    ("Omega", 50_000_000, "declares a Omega grid of 5e+07 points"),
    ("omega", 61, "expected ['batch', 61]"),
])
def test_grid_sizes_in_model_metadata_are_checked_before_anything_is_built(small_operator, tmp_path, monkeypatch,
                                                                           grid, n, fragment):
    from rrim.models import loading as models
    from rrim.models.modelfile import ModelFileError, ModelInfo

    path = tmp_path / "declaring.onnx"
    path.write_bytes(_declaring(small_operator, grid, n))
    built = []
    monkeypatch.setattr(ModelInfo, "from_metadata", lambda *a, **k: built.append(1))
    with pytest.raises(ModelFileError) as e:
        models.load_model(path)
    assert str(path) in str(e.value) and fragment in str(e.value) and not built, str(e.value)
    tally("untrusted files", hole="unvalidated files", case=f"model declaring a {n}-point grid", refused=1)


def test_deeply_nested_json_in_a_model_or_index_is_refused_naming_the_file(small_operator, tmp_path, monkeypatch):
    from rrim.models import loading as models
    from rrim.models.modelfile import ModelFileError

    meta = fixture_info(small_operator, "baked", n_steps=2).to_metadata()
    meta["metrics"] = _deep(100_000)
    path = tmp_path / "deep.onnx"
    path.write_bytes(tikhonov_model_bytes(small_operator, "baked", n_steps=2, metadata=meta))
    p, s = run_rrim("inspect", path, cwd=tmp_path)
    assert p.returncode == EXIT_MODEL and str(path) in s["error"] and "Traceback" not in p.stderr, p.stderr[-800:]
    (tmp_path / "index.json").write_text(_deep(100_000))
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="index.json"):
        models.installed_models()
    tally("untrusted files", hole="errors naming no file", case="deeply nested JSON (model metadata, index)", refused=2)


# ---- 8. the digest recorded is that of the bytes read ------------------------------------------------

def test_the_recorded_input_digest_is_of_the_bytes_that_were_read(good, tmp_path, small_operator):
    from rrim.files import identity
    from rrim.io.paths import ArchiveError
    from rrim.jobs.invert import invert_archive
    from rrim.jobs.reprocess import reprocess_one
    from rrim.models.loading import load_model

    model = load_model(good["model"])
    a, b = make_job(tmp_path / "in", small_operator, 2, 3, seed=21)
    ident, digest = identity(a), sha256_of(a)
    os.replace(b, a)  # replaced after it was hashed (reprocess hashes every input first)
    reprocess_one(a, tmp_path / "a.glue.nc", Engine(model, "cpu"), Options(), input_sha256=digest,
                  input_identity=ident)
    assert outputs(tmp_path)["a.glue.nc"]["attrs"]["input_sha256"] == sha256_of(a) != digest

    c = make_job(tmp_path / "in2", small_operator, 1, 3, seed=22)[0]
    d = make_job(tmp_path / "in3", small_operator, 1, 3, seed=23)[0]

    def replace_midway(done, total):
        if done == 1:
            os.replace(d, c)  # replaced while it is read
    with pytest.raises(ArchiveError, match="changed or was replaced while it was read"):
        invert_archive(c, tmp_path / "c.glue.nc", Engine(model, "cpu"), chunk_spectra=1, progress=replace_midway)
    assert not (tmp_path / "c.glue.nc").exists() and temporaries(tmp_path) == []
    tally("untrusted files", hole="hash and read", case="input replaced after hashing / while read", refused=1)


def Options(**kw):
    from rrim.io.schema import ArchiveOptions

    return ArchiveOptions(**kw)


def test_the_calibration_recorded_is_the_one_that_was_used(shipped, tmp_path):
    from rrim.cli.common import EXAMPLE_ARCHIVE
    from rrim.inversion.uncertainty import calibration_path
    from rrim.io.paths import ArchiveError
    from rrim.jobs.invert import invert_archive

    path = calibration_path(shipped.path)
    original = path.read_text()

    def recalibrate(done, total):
        path.write_text(original.replace('"seed"', '"seed_"', 1))
    try:
        with pytest.raises(ArchiveError, match="calibration of model .* changed"):
            invert_archive(EXAMPLE_ARCHIVE, tmp_path / "x.nc", Engine(shipped, "cpu"), chunk_spectra=8,
                           progress=recalibrate)
    finally:
        path.write_text(original)
    assert not (tmp_path / "x.nc").exists()
    tally("untrusted files", hole="hash and read", case="calibration changed during a run", refused=1)


# ---- 9. odd names: errors name the file; names that are not UTF-8 still work --------------------------

def test_a_file_name_that_is_not_utf8_is_refused_by_name_and_the_job_goes_on(good, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / os.fsdecode(b"spectra\xff.nc")).write_bytes(good["archive"].read_bytes())
    (archive / "plain.nc").write_bytes(good["archive"].read_bytes())
    p, s = run_rrim("reprocess", archive, "-o", tmp_path / "out", *_model_args(good), cwd=tmp_path)
    assert p.returncode == 1 and [d["input"] for d in s["processed"]] == ["plain.nc"], p.stderr[-800:]
    [f] = s["failed"]
    assert f["input"] == "spectra\\xff.nc" and f["exit_code"] == EXIT_USAGE and "not valid UTF-8" in f["error"]
    assert str(archive / "spectra\\xff.nc") in f["error"] and "Traceback" not in p.stderr
    p, s = run_rrim("invert", archive / "plain.nc", "-o", tmp_path / os.fsdecode(b"x\xff.nc"), *_model_args(good),
                    cwd=tmp_path)
    assert p.returncode == EXIT_USAGE and "not valid UTF-8" in s["error"]
    tally("untrusted files", hole="errors naming no file", case="file names not UTF-8 (input, output)", refused=2)


# ---- 10. glob characters in names --------------------------------------------------------------------

def test_stale_temporaries_are_matched_by_exact_name(tmp_path):
    from rrim.jobs.reprocess import remove_stale_temporaries

    leftovers = {"run[1].glue.nc": ".run[1].glue.nc.k2j4h5g6.rrim-tmp",  # a killed run's, old form
                 "b?.glue.nc": f".b?.glue.nc.rrim-{_dead_pid()}-00000000-abcd1234.rrim-tmp"}
    live = [".b0.glue.nc.rrim-1-00000000-zz99aa11.rrim-tmp", ".b0.glue.nc.x1y2z3w4.rrim-tmp",
            ".run[1].glue.nc.x.glue.nc.q1w2e3r4.rrim-tmp"]  # another output's, whose name starts alike
    for name in [*leftovers.values(), *live]:
        (tmp_path / name).write_text("")
    for out, left in leftovers.items():
        assert remove_stale_temporaries(tmp_path / out) == [tmp_path / left]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(live)
    tally("untrusted files", hole="one name, two writers", case="glob characters and shared prefixes in cleanup",
          refused=3)


# ---- 11. FIFOs, folders, links; killed writers; the tuning cache; float32 ω ---------------------------

def test_matches_that_are_not_regular_files_are_reported(good, tmp_path, small_operator):
    archive = tmp_path / "archive"
    make_job(archive, small_operator, 1, 3)
    os.mkfifo(archive / "pipe.nc")
    (archive / "folder.nc").mkdir()
    (archive / "dangling.nc").symlink_to(archive / "gone.nc")
    p, s = run_rrim("reprocess", archive, "-o", tmp_path / "out", *_model_args(good), cwd=tmp_path, timeout=120)
    failed = {f["input"]: f["error"] for f in s["failed"]}
    assert p.returncode == 1 and [d["input"] for d in s["processed"]] == ["run00.nc"], p.stderr[-800:]
    assert sorted(failed) == ["dangling.nc", "folder.nc", "pipe.nc"]
    for name, kind in (("dangling.nc", "a dangling link"), ("folder.nc", "a folder"), ("pipe.nc", "a FIFO")):
        assert str(archive / name) in failed[name] and kind in failed[name], failed[name]
    tally("untrusted files", hole="not regular files", case="FIFO, folder, dangling link matching --pattern", refused=3)


def test_inspect_and_model_files_refuse_a_fifo_instead_of_waiting(good, tmp_path):
    from rrim.inversion.uncertainty import calibration_path

    os.mkfifo(tmp_path / "pipe.nc")
    p, s = run_rrim("inspect", tmp_path / "pipe.nc", cwd=tmp_path, timeout=120)
    assert p.returncode == EXIT_USAGE and "a FIFO" in s["error"], p.stderr[-800:]
    model = tmp_path / "m.onnx"
    model.write_bytes(good["model"].read_bytes())
    os.mkfifo(calibration_path(model))
    p, s = run_rrim("invert", good["archive"], "-o", tmp_path / "x.nc", "--model", model, "--uncertainty", "0.9",
                    "--provider", "cpu", cwd=tmp_path, timeout=120)
    assert p.returncode == EXIT_MODEL and str(calibration_path(model)) in s["error"] and "FIFO" in s["error"]
    tally("untrusted files", hole="not regular files", case="FIFO to inspect, FIFO as calibration", refused=2)


def test_a_killed_writers_temporary_is_removed_by_the_next_invert(good, tmp_path):
    """A temporary of a dead process on this host is removed; a live writer's is left alone."""
    from rrim import files

    out = tmp_path / "x.nc"
    dead = tmp_path / f".x.nc.rrim-{_dead_pid()}-{files._HOST}-abcd1234.rrim-tmp"
    live = tmp_path / f".x.nc.rrim-{os.getpid()}-{files._HOST}-efgh5678.rrim-tmp"
    for p in (dead, live):
        p.write_text("partial")
    p, s = run_rrim("invert", good["archive"], "-o", out, *_model_args(good), cwd=tmp_path)
    assert p.returncode == 0 and out.exists() and not dead.exists() and live.exists(), p.stderr[-800:]
    cache = tmp_path / "cache.json"
    dead = tmp_path / f".cache.json.rrim-{_dead_pid()}-{files._HOST}-abcd1234.rrim-tmp"
    dead.write_text("{")
    files.atomic_write_text(cache, "{}")
    assert not dead.exists() and live.exists()
    tally("untrusted files", hole="not regular files", case="temporaries of killed writers", refused=2)


PATHOLOGICAL_CACHES = {
    "a folder": lambda p: p.mkdir(),
    "a FIFO": lambda p: os.mkfifo(p),
    "deeply nested JSON": lambda p: p.write_text(_deep(100_000)),
    "not JSON": lambda p: p.write_bytes(b"\xff\xfe garbage"),
    "a list": lambda p: p.write_text("[1, 2]"),
    "booleans": lambda p: p.write_text(json.dumps({"any": True})),
}


def test_a_pathological_tuning_cache_never_fails_a_job(good, tmp_path):
    for i, (name, make) in enumerate(PATHOLOGICAL_CACHES.items()):
        folder = tmp_path / f"cache{i}"
        folder.mkdir()
        make(folder / "batch-sizes.json")
        out = tmp_path / f"x{i}.nc"
        p, s = run_rrim("invert", good["archive"], "-o", out, "--model", good["model"], "--provider", "cpu",
                        cwd=tmp_path, env={"RRIM_CACHE_DIR": str(folder)}, timeout=120)
        assert p.returncode == 0 and out.exists() and s["batch_size"] >= 1, (name, p.stderr[-800:])
        assert temporaries(folder) == []
    tally("untrusted files", hole="unvalidated files", case="pathological tuning caches", refused=0,
          tolerated=len(PATHOLOGICAL_CACHES))


# ---- 12. durable outputs; the provider and TF32 are part of an output's identity --------------------

def test_outputs_and_their_folder_are_fsynced_around_the_rename(good, tmp_path, monkeypatch):
    from rrim.jobs.invert import invert_archive
    from rrim.models.loading import load_model

    model = load_model(good["model"])
    events, fsync, replace = [], os.fsync, os.replace

    def spy_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def spy_replace(a, b, **kw):
        events.append(("replace", str(a), str(b)))
        return replace(a, b, **kw)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    out = tmp_path / "x.nc"
    invert_archive(good["archive"], out, Engine(model, "cpu"))
    i = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(out))
    tmp = events[i][1]
    assert ("fsync", tmp) in events[:i] and ("fsync", str(tmp_path)) in events[i + 1:], events
    tally("untrusted files", hole="durability and identity", case="fsync of output and folder", refused=0)


def test_provider_and_tf32_are_part_of_an_outputs_identity(good, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rrim.cli import main
    from rrim.io.schema import ArchiveOptions
    from rrim.jobs import invert as job
    from rrim.jobs.reprocess import is_current
    from rrim.models.loading import load_model

    out = tmp_path / "out"
    args = ["reprocess", str(good["archive"].parent), "-o", str(out), "--model", str(good["model"]),
            "--provider", "cpu", "--batch-size", "16"]
    seen = []
    real = job.invert_rows
    monkeypatch.setattr(job, "invert_rows", lambda rows, temps, src, engine, opts: seen.append(engine.session.tf32) or
                        real(rows, temps, src, engine, opts))
    first = CliRunner().invoke(main, args, catch_exceptions=False)
    again = CliRunner().invoke(main, args + ["--tf32"], catch_exceptions=False)
    assert json.loads(first.stdout)["processed"] and json.loads(again.stdout)["processed"], again.stdout
    assert seen == [False, True]  # --tf32 reached the session that inverted
    model, output = load_model(good["model"]), out / "run00.glue.nc"
    digest = sha256_of(good["archive"])
    assert is_current(output, digest, model, ArchiveOptions(tf32=True), provider="cpu")
    assert not is_current(output, digest, model, ArchiveOptions(), provider="cpu")
    assert not is_current(output, digest, model, ArchiveOptions(tf32=True), provider="cuda")
    tally("untrusted files", hole="durability and identity", case="--provider/--tf32 identity, --tf32 reaches the session",
          refused=0)
