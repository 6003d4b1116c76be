"""The runtime through its CLI on real NetCDF files: example recovery, provenance, units,
reprocessing (idempotent, --force, failures, lock) and bad input with clear messages."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim
from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE
from rrim.inversion.engine import Engine
from rrim.inversion.flags import FLAG_CROPPED, FLAG_EXTRAPOLATED, FLAG_NONFINITE, FLAGS
from rrim.io.provenance import PROVENANCE_ATTRIBUTES
from rrim.models.loading import installed_models
from runtime_helpers import noisy_spectra, sha256_file, write_archive, write_model


@pytest.fixture(scope="module")
def models(tmp_path_factory, default_operator):
    d = tmp_path_factory.mktemp("models")
    return {form: write_model(d, default_operator, form) for form in ("baked", "input")}


@pytest.fixture(scope="module")
def spectra(default_operator):
    """12 noisy spectra on a 300-point measurement grid spanning 2…400 meV (meV)."""
    w = np.linspace(2.0, 400.0, 300)
    op = rrim.ForwardOperator(w, default_operator.Omega)
    x, y = noisy_spectra(op, 12, seed=21)
    return w, x, y


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    summary = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, summary


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".rrim-tmp" in p.name)


def test_example_archive_inverts_close_to_truth_with_provenance(tmp_path, models):
    before = sha256_file(EXAMPLE_ARCHIVE)
    out = tmp_path / "example_glue.nc"
    res, s = run("invert", "--example", "-o", out, "--model", models["baked"], "--provider", "cpu",
                 "--plot", tmp_path / "example.png")
    assert res.exit_code == 0, res.stderr
    assert s["status"] == "ok" and s["n_spectra"] == 24 and s["provider"] == "cpu"
    # bar for the 15-step projected-Tikhonov fixture model at noise 1e-3 (measured 0.10 / 0.27)
    assert s["example_glue_error"]["median_relative_l2"] < 0.15
    assert s["example_glue_error"]["p90_relative_l2"] < 0.40
    assert (tmp_path / "example.png").stat().st_size > 10_000
    with xr.open_dataset(out) as o, xr.open_dataset(EXAMPLE_ARCHIVE) as a:
        assert o["glue"].dims == ("sample", "time", "Omega") and o["Omega"].attrs["units"] == "meV"
        assert o["scattering_rate_fit"].dims == ("sample", "time", "omega")
        assert "model's ω grid" in o["scattering_rate_fit"].attrs["comment"]
        assert list(o["sample"].values) == list(a["sample"].values)
        missing = [k for k in PROVENANCE_ATTRIBUTES if k not in o.attrs]
        assert not missing
        assert o.attrs["Conventions"] == "CF-1.12, ACDD-1.3" and o.attrs["execution_provider"] == "cpu"
        assert o.attrs["input_sha256"] == before and o.attrs["model_sha256"] == sha256_file(models["baked"])
        assert o.attrs["rrim_version"] == rrim.__version__ and o.attrs["temperature_K"] == 100.0
        assert o.attrs["history"].splitlines()[-1] == a.attrs["history"]
        assert list(o["flags"].attrs["flag_meanings"].split()) == list(FLAGS)
        assert np.all(o["flags"].values == 0) and np.all(o["residual"].values < 0.01)
        assert np.all(o["lambda"].values > 0)
        assert o["glue"].encoding["zlib"] and o["glue"].encoding["chunksizes"][-1] == 200
    assert sha256_file(EXAMPLE_ARCHIVE) == before
    assert leftovers(tmp_path) == []


def test_cm1_and_mev_archives_give_the_same_glue(tmp_path, models, spectra):
    w, _, y = spectra
    mev = write_archive(tmp_path / "mev.nc", y, w, omega_units="meV", y_units="meV")
    cm1 = write_archive(tmp_path / "cm1.nc", rrim.from_mev(y, "cm-1"), rrim.from_mev(w, "cm-1"),
                        omega_units="cm-1", y_units="cm-1")
    for f in (mev, cm1):
        res, _ = run("invert", f, "-o", f.with_suffix(".out.nc"), "--model", models["input"], "--provider", "cpu")
        assert res.exit_code == 0, res.stderr
    with xr.open_dataset(mev.with_suffix(".out.nc")) as a, xr.open_dataset(cm1.with_suffix(".out.nc")) as b:
        scale = float(np.abs(a["glue"]).max())
        assert float(np.abs(a["glue"] - b["glue"]).max()) <= 1e-5 * scale
        np.testing.assert_allclose(a["scattering_rate_fit"], b["scattering_rate_fit"], rtol=1e-5)


def test_decreasing_omega_and_temperature_per_spectrum(tmp_path, models, spectra):
    """A decreasing ω axis is read in reverse; a temperature coordinate
    along a leading dimension gives each spectrum its own A and P (input form)."""
    w, _, y = spectra
    ref = write_archive(tmp_path / "ref.nc", y, w, omega_units="meV", y_units="meV")
    rev = write_archive(tmp_path / "rev.nc", y[:, ::-1], w[::-1], omega_units="meV", y_units="meV")
    for f in (ref, rev):
        assert run("invert", f, "-o", f.with_suffix(".out.nc"), "--model", models["baked"])[0].exit_code == 0
    with xr.open_dataset(ref.with_suffix(".out.nc")) as a, xr.open_dataset(rev.with_suffix(".out.nc")) as b:
        np.testing.assert_allclose(a["glue"], b["glue"], atol=1e-6 * float(a["glue"].max()))
    temps = np.array([20.0, 100.0, 200.0])
    ys = np.stack([rrim.ForwardOperator(w, temperature=t).forward(np.full(200, 0.3)) for t in temps])
    ds = xr.Dataset({"scattering_rate": (("T", "omega"), ys, {"units": "meV"})},
                    coords={"omega": ("omega", w, {"units": "meV"}), "temperature": ("T", temps, {"units": "K"})})
    ds.to_netcdf(tmp_path / "sweep.nc")
    res, s = run("invert", tmp_path / "sweep.nc", "-o", tmp_path / "sweep.out.nc", "--model", models["input"])
    assert res.exit_code == 0, res.stderr
    with xr.open_dataset(tmp_path / "sweep.out.nc") as o:
        np.testing.assert_array_equal(o["temperature"].values, temps)
        assert np.all(o["residual"].values < 0.01)  # each refit at its own temperature


def test_physics_is_computed_once_per_temperature_across_slabs(tmp_path, models, monkeypatch):
    """Spectra at 3 interleaved temperatures, read in slabs of 2: A(T) and P(T) are built 3 times."""
    from rrim.inversion import engine
    from rrim.inversion.feeds import physics_at
    from rrim.io.schema import ArchiveOptions
    from rrim.jobs.invert import invert_archive
    from rrim.models.loading import load_model

    w = np.linspace(2.0, 400.0, 200)
    temps = np.tile([15.0, 60.0, 250.0], 4)
    ys = np.stack([rrim.ForwardOperator(w, temperature=t).forward(np.full(200, 0.3)) for t in temps])
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), ys, {"units": "meV"})},
                    coords={"omega": ("omega", w, {"units": "meV"}), "temperature": ("sample", temps, {"units": "K"})})
    ds.to_netcdf(tmp_path / "mixed.nc")
    computed = []
    monkeypatch.setattr(engine, "physics_at", lambda model, T: computed.append(T) or physics_at(model, T))
    invert_archive(tmp_path / "mixed.nc", tmp_path / "mixed.out.nc", Engine(load_model(models["input"]), "cpu"),
                   ArchiveOptions(), chunk_spectra=2)
    assert sorted(computed) == sorted(set(computed)) and len(computed) == 3
    with xr.open_dataset(tmp_path / "mixed.out.nc") as o:
        np.testing.assert_array_equal(o["temperature"].values, temps)
        assert np.all(o["residual"].values < 0.01)


def test_nonfinite_spectra_are_flagged_and_others_processed(tmp_path, models, spectra):
    w, _, y = spectra
    y = y.copy()
    y[2, 5], y[7, 100] = np.nan, -np.inf
    f = write_archive(tmp_path / "nan.nc", y, w, omega_units="meV", y_units="meV")
    res, s = run("invert", f, "-o", tmp_path / "nan.out.nc", "--model", models["baked"])
    assert res.exit_code == 0 and s["flag_counts"]["nonfinite_input"] == 2
    with xr.open_dataset(tmp_path / "nan.out.nc") as o:
        bad = (o["flags"].values & FLAG_NONFINITE) > 0
        assert list(np.flatnonzero(bad)) == [2, 7]
        assert np.isnan(o["glue"].values[bad]).all() and np.isfinite(o["glue"].values[~bad]).all()


def test_omega_outside_the_model_range_is_refused_or_cropped(tmp_path, models, spectra):
    w, _, y = spectra
    keep = (w >= 10) & (w <= 300)
    f = write_archive(tmp_path / "narrow.nc", y[:, keep], w[keep], omega_units="meV", y_units="meV")
    out = tmp_path / "narrow.out.nc"
    res, s = run("invert", f, "-o", out, "--model", models["baked"])
    assert res.exit_code == 2 and not out.exists()
    assert "narrow.nc" in s["error"] and "'omega'" in s["error"] and "model's ω grid is 2–400 meV" in s["error"]
    assert "--crop" in s["error"]
    wide = np.concatenate([w, [450.0, 500.0]])
    g = write_archive(tmp_path / "wide.nc", np.concatenate([y, y[:, -2:]], axis=1), wide, omega_units="meV", y_units="meV")
    assert run("invert", g, "-o", tmp_path / "wide.out.nc", "--model", models["baked"])[0].exit_code == 2
    res, s = run("invert", f, "-o", out, "--model", models["baked"], "--crop")
    assert res.exit_code == 0 and s["flag_counts"]["omega_extrapolated"] == 12
    res, s = run("invert", g, "-o", tmp_path / "wide.out.nc", "--model", models["baked"], "--crop")
    assert res.exit_code == 0 and s["flag_counts"]["omega_cropped"] == 12 and s["flag_counts"]["omega_extrapolated"] == 0
    with xr.open_dataset(out) as o:
        assert np.all(o["flags"].values & FLAG_EXTRAPOLATED) and not np.any(o["flags"].values & FLAG_CROPPED)


def _bad_archives(tmp, w, y):
    """(file, expected exit code, fragments the message must contain) for each malformed input."""
    cases = []

    def add(name, code, fragments, **kw):
        kw = {"omega_units": "meV", "y_units": "meV", **kw}
        cases.append((write_archive(tmp / name, kw.pop("y", y), kw.pop("w", w), **kw), code, [name] + fragments))

    add("no_units.nc", 2, ["coordinate 'omega'", "no 'units'"], omega_units=None)
    add("bad_units.nc", 2, ["coordinate 'omega'", "unknown units 'K'"], omega_units="K")
    add("no_y_units.nc", 2, ["variable 'scattering_rate'", "no 'units'"], y_units=None)
    add("no_temperature.nc", 2, ["variable 'scattering_rate'", "no temperature"], temperature_as=None)
    add("bad_temperature.nc", 2, ["temperature", "finite"], temperature=-5.0)
    w2 = w.copy()
    w2[[10, 11]] = w2[[11, 10]]
    add("unordered.nc", 2, ["coordinate 'omega'", "not monotonic"], w=w2)
    w3 = w.copy()
    w3[20] = w3[21]
    add("duplicate.nc", 2, ["coordinate 'omega'", "repeated values"], w=w3)
    w4 = w.copy()
    w4[50] = np.nan
    add("nan_omega.nc", 2, ["coordinate 'omega'", "NaN or inf"], w=w4)
    add("unitless_temperature.nc", 2, ["variable 'temperature'", "no units", "--temperature-units"],
        extra={"temperature": ((), 20.0, {})}, temperature_as=None)
    add("wrong_dim.nc", 2, ["variable 'scattering_rate'", "none named 'omega'"], dims=("sample", "energy"))
    add("wrong_var.nc", 2, ["no variable 'scattering_rate'", "reflectivity"], var="reflectivity")
    add("zero_spectra.nc", 2, ["variable 'scattering_rate'", "no spectra"], y=y[:0])
    empty = tmp / "empty.nc"
    empty.write_bytes(b"")
    cases.append((empty, 2, ["empty.nc", "empty"]))
    text = tmp / "text.nc"
    text.write_text("omega,rate\n1,2\n")
    cases.append((text, 2, ["text.nc", "not a readable NetCDF"]))
    good = write_archive(tmp / "good.nc", y, w, omega_units="meV", y_units="meV")
    trunc = tmp / "truncated.nc"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases.append((trunc, 2, ["truncated.nc"]))
    return cases


def test_bad_input_is_refused_clearly_without_output(tmp_path, models, spectra):
    w, _, y = spectra
    inputs = tmp_path / "in"
    inputs.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for f, code, fragments in _bad_archives(inputs, w, y):
        before = sha256_file(f)
        out = out_dir / (f.stem + ".out.nc")
        res, s = run("invert", f, "-o", out, "--model", models["baked"])
        assert res.exit_code == code, (f.name, res.stderr)
        assert s["status"] == "error" and "Traceback" not in res.stderr
        for frag in fragments:
            assert frag in s["error"], (f.name, frag, s["error"])
        assert s["error"] in res.stderr  # logged on stderr too
        assert not out.exists() and leftovers(out_dir) == []
        assert sha256_file(f) == before


def test_bad_model_and_output_paths(tmp_path, models, spectra, default_operator):
    from runtime_helpers import fixture_info, tikhonov_model_bytes

    w, _, y = spectra
    f = write_archive(tmp_path / "a.nc", y, w, omega_units="meV", y_units="meV")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not onnx at all")
    meta = fixture_info(default_operator, "baked").to_metadata()
    del meta["n_steps"]
    partial = tmp_path / "partial.onnx"
    partial.write_bytes(tikhonov_model_bytes(default_operator, "baked", n_steps=2, metadata=meta))
    for model, fragment in ((junk, "not an ONNX model"), (partial, "metadata incomplete, missing ['n_steps']")):
        res, s = run("invert", f, "-o", tmp_path / "x.nc", "--model", model)
        assert res.exit_code == 4 and model.name in s["error"] and fragment in s["error"]
    res, s = run("invert", f, "-o", tmp_path / "x.nc", "--model", models["baked"], "--sha256", "0" * 64)
    assert res.exit_code == 4 and "does not match" in s["error"]
    res, s = run("invert", f, "-o", tmp_path / "missing" / "x.nc", "--model", models["baked"])
    assert res.exit_code == 2 and "does not exist" in s["error"] and not (tmp_path / "missing").exists()
    res, s = run("invert", f, "-o", f, "--model", models["baked"])
    assert res.exit_code == 2 and "overwrite the input" in s["error"]
    assert not (tmp_path / "x.nc").exists()


def test_unwritable_output_folder_as_root_too(tmp_path, models, spectra, monkeypatch):
    """Where the folder refuses new files (a read-only mount refuses root too), simulated by making
    the temporary-file creation fail as the kernel would: exit 2, clear message, nothing left."""
    from rrim.files import TMP_SUFFIX

    w, _, y = spectra
    f = write_archive(tmp_path / "a.nc", y, w, omega_units="meV", y_units="meV")
    out = tmp_path / "ro"
    out.mkdir()

    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(TMP_SUFFIX):
            raise PermissionError(30, "Read-only file system")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    res, s = run("invert", f, "-o", out / "x.nc", "--model", models["baked"])
    assert res.exit_code == 2 and "cannot create a file in output folder" in s["error"]
    assert "Read-only file system" in s["error"] and list(out.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, models, spectra):
    w, _, y = spectra
    f = write_archive(tmp_path / "a.nc", y, w, omega_units="meV", y_units="meV")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res, s = run("invert", f, "-o", ro / "x.nc", "--model", models["baked"])
        assert res.exit_code == 2 and "not writable" in s["error"] and list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_reprocess_is_idempotent_forced_locked_and_goes_on_after_failures(tmp_path, models, spectra):
    import filelock

    w, _, y = spectra
    src, out = tmp_path / "archive", tmp_path / "processed"
    src.mkdir()
    for i in range(2):
        write_archive(src / f"run{i}.nc", y[4 * i: 4 * i + 4], w, omega_units="meV", y_units="meV")
    hashes = {p.name: sha256_file(p) for p in src.iterdir()}
    args = ("reprocess", src, "-o", out, "--model", models["baked"])
    res, s = run(*args, "--dry-run")
    assert res.exit_code == 0 and s["would_process"] == ["run0.nc", "run1.nc"] and not out.exists()
    res, s = run(*args)
    assert res.exit_code == 0 and [d["input"] for d in s["processed"]] == ["run0.nc", "run1.nc"]
    outputs = sorted(out.glob("*.glue.nc"))
    assert [p.name for p in outputs] == ["run0.glue.nc", "run1.glue.nc"]
    stamps = [(p.stat().st_mtime_ns, sha256_file(p)) for p in outputs]
    res, s = run(*args)
    assert res.exit_code == 0 and s["processed"] == [] and s["skipped"] == ["run0.nc", "run1.nc"]
    assert [(p.stat().st_mtime_ns, sha256_file(p)) for p in outputs] == stamps
    res, s = run(*args, "--force")
    assert res.exit_code == 0 and len(s["processed"]) == 2
    res, s = run(*args, "--smoothing", "4")  # other options: not current any more
    assert len(s["processed"]) == 2
    (src / "broken.nc").write_text("not netcdf")
    res, s = run(*args, "--smoothing", "4")
    assert res.exit_code == 1 and s["skipped"] == ["run0.nc", "run1.nc"]
    assert [f["input"] for f in s["failed"]] == ["broken.nc"] and "not a readable NetCDF" in s["failed"][0]["error"]
    with filelock.FileLock(str(out / ".rrim-reprocess.lock")):
        res, s = run(*args)
    assert res.exit_code == 5 and s["status"] == "busy"
    assert {p.name: sha256_file(p) for p in src.iterdir() if p.name != "broken.nc"} == hashes
    assert leftovers(out) == []


def test_inspect_models_and_selfcheck(tmp_path, models):
    res, s = run("inspect", EXAMPLE_ARCHIVE)
    assert res.exit_code == 0 and s["kind"] == "archive" and s["variables"]["scattering_rate"]["units"] == "cm-1"
    res, s = run("inspect", models["input"])
    assert res.exit_code == 0 and s["kind"] == "model" and s["form"] == "input" and s["omega_meV"] == [2.0, 400.0, 200]
    res, s = run("models", "--json")
    assert res.exit_code == 0 and "models" in s
    res, _ = run("models")
    assert res.exit_code == 0 and res.stdout.splitlines()[0].split()[:3] == ["NAME", "VERSION", "FORM"]
    assert all(m["name"] in res.stdout for m in s["models"])
    res, s = run("inspect", "rrim-default")
    assert res.exit_code == 0 and s["kind"] == "model" and s["name"] == "rrim-default" and s["size_bytes"] > 0
    res, s = run("inspect", "no-such-model")
    assert res.exit_code == 2 and "no installed model of that name" in s["error"]
    bad = tmp_path / "broken.nc"
    bad.write_bytes(b"not netcdf at all")
    res, s = run("inspect", bad)
    assert res.exit_code == 2 and "not a readable NetCDF file" in s["error"]
    res, s = run("selfcheck")
    assert res.exit_code in (0, 1) and s["onnxruntime_providers"] and all("passed" in m for m in s["models"])


def test_cli_entry_point_runs_as_a_process(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "rrim", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "reprocess" in out.stdout and "Exit codes" in out.stdout


def test_streaming_slabs_match_one_pass_and_single_spectrum_files(tmp_path, models, spectra):
    """Slabs of 5 spectra over two leading dimensions give the same file contents as one slab;
    a file holding one spectrum (no leading dimension) works; --provider cuda without CUDA exits 3."""
    from rrim.jobs.invert import invert_archive
    from rrim.models.loading import load_model
    from rrim.models.sessions import available_providers

    m = load_model(models["baked"])
    a = invert_archive(EXAMPLE_ARCHIVE, tmp_path / "one.nc", Engine(m, "cpu"))
    b = invert_archive(EXAMPLE_ARCHIVE, tmp_path / "slabs.nc", Engine(m, "cpu"), chunk_spectra=5)
    assert a.n_spectra == b.n_spectra == 24
    with xr.open_dataset(tmp_path / "one.nc") as x, xr.open_dataset(tmp_path / "slabs.nc") as y:
        for v in ("glue", "flags", "temperature"):
            np.testing.assert_array_equal(x[v].values, y[v].values)
        for v in ("scattering_rate_fit", "residual", "lambda", "omega_log"):  # float64 sums: BLAS order only
            np.testing.assert_allclose(x[v].values, y[v].values, rtol=1e-6)
    w, _, ys = spectra
    single = write_archive(tmp_path / "single.nc", ys[0], w, omega_units="meV", y_units="meV", dims=("omega",))
    res, s = run("invert", single, "-o", tmp_path / "single.out.nc", "--model", models["baked"])
    assert res.exit_code == 0 and s["n_spectra"] == 1
    with xr.open_dataset(tmp_path / "single.out.nc") as o:
        assert o["glue"].dims == ("Omega",) and np.isfinite(float(o["residual"]))
    if "CUDAExecutionProvider" not in available_providers():
        res, s = run("invert", single, "-o", tmp_path / "cuda.nc", "--model", models["baked"], "--provider", "cuda")
        assert res.exit_code == 3 and "cuda" in s["error"] and not (tmp_path / "cuda.nc").exists()


def test_archive_job_never_imports_torch_or_onnx(tmp_path, models):
    """The runtime is torch-free: a whole `rrim invert` in a fresh process imports neither torch nor onnx
    (nor matplotlib without --plot; xarray itself may load dask when it is installed)."""
    import subprocess

    code = ("import sys, json\nfrom rrim.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(json.dumps({'exit': e.code, 'heavy': sorted(m for m in ('torch', 'onnx', 'matplotlib') "
            "if m in sys.modules)}), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, "invert", "--example", "-o", str(tmp_path / "o.nc"),
                        "--model", str(models["input"])], capture_output=True, text=True, timeout=300)
    tail = json.loads(p.stderr.strip().splitlines()[-1])
    assert tail == {"exit": 0, "heavy": []}, p.stderr


@pytest.mark.skipif("rrim-default" not in installed_models(),
                    reason="the default model is not shipped yet")
def test_main_job_with_the_default_model(tmp_path):
    """`rrim invert --example` with the shipped default model: the main job of the README.
    Bars: median relative L2 error of the recovered glue < 0.10 and 90th percentile < 0.30 (measured
    0.043 and 0.18 with rrim-default 2.1.0, 0.065 and 0.24 with 2.0.0, 0.077 and 0.26 with 1.0.0); the refit explains the
    data to within the noise (σ = 1e-3 of each maximum: relative RMS residual ≈ 1.2e-3 measured; the
    1.0.0 model missed by 2–6 % and flagged 3 of 24 spectra): no spectrum has the poor-fit flag."""
    res, s = run("invert", "--example", "-o", tmp_path / "example_glue.nc", "--plot", tmp_path / "example_glue.png")
    assert res.exit_code == 0, res.stderr
    assert s["model"] == "rrim-default" and s["example_glue_error"]["median_relative_l2"] < 0.10
    assert s["example_glue_error"]["p90_relative_l2"] < 0.30
    assert (tmp_path / "example_glue.png").is_file()
    with xr.open_dataset(tmp_path / "example_glue.nc") as o:
        assert float(np.median(o["residual"])) < 0.003 and o.attrs["model_name"] == "rrim-default"
        assert s["flag_counts"]["poor_fit"] == 0 == int(np.sum(o["residual"].values > 0.05))