"""The xarray accessor: same outputs as the CLI, lazy on dask, multi-file datasets, forward model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim.plugins  # noqa: F401  (registers .rrim)
from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE
from rrim.jobs import dataset

pytest.importorskip("dask")


@pytest.fixture(scope="module")
def example():
    with xr.open_dataset(EXAMPLE_ARCHIVE) as ds:
        return ds.load()


def test_accessor_equals_cli_output(tmp_path, example):
    out = tmp_path / "cli.nc"
    result = CliRunner().invoke(main, ["invert", "--example", "-o", str(out), "--provider", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = example.rrim.invert(provider="cpu")
    with xr.open_dataset(out) as cli:
        for name in ("glue", "scattering_rate_fit", "residual", "flags", "lambda", "omega_log"):
            assert name in got and got[name].dims == cli[name].dims, name
            np.testing.assert_allclose(got[name].values, cli[name].values, rtol=1e-6, atol=1e-6, err_msg=name)
            assert got[name].attrs.get("long_name") == cli[name].attrs.get("long_name")
        for key in ("Conventions", "model_sha256", "model_name", "rrim_version", "execution_provider", "options"):
            assert got.attrs[key] == cli.attrs[key], key
    assert json.loads(got.attrs["options"])["var"] == "scattering_rate"


def test_dask_input_stays_lazy_and_batches_whole_chunks(monkeypatch, example):
    calls = []
    real = dataset.invert_rows

    def counting(rows, *args, **kwargs):
        calls.append(rows.shape[0])
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(dataset, "invert_rows", counting)
    lazy = example.chunk({"sample": 2}).rrim.invert(provider="cpu")
    assert calls == [] and hasattr(lazy.glue.data, "dask")  # nothing ran yet
    eager = example.rrim.invert(provider="cpu")
    calls.clear()
    # equal to float32 precision: onnxruntime's kernels may round differently with the rows of a call
    np.testing.assert_allclose(lazy.glue.values, eager.glue.values, rtol=1e-5, atol=1e-6)
    assert sorted(calls) == [12, 12]  # one call per chunk of 2 × 6 spectra, never per spectrum


def test_open_mfdataset_over_several_files(tmp_path, example):
    paths = []
    for i in range(2):
        part = example.isel(sample=slice(2 * i, 2 * i + 2))
        part.to_netcdf(tmp_path / f"part{i}.nc")
        paths.append(tmp_path / f"part{i}.nc")
    with xr.open_mfdataset(paths, combine="nested", concat_dim="sample", data_vars="minimal", coords="minimal",
                           compat="override") as multi:
        got = multi.rrim.invert(provider="cpu")
        assert hasattr(got.glue.data, "dask")
        np.testing.assert_allclose(got.glue.values, example.rrim.invert(provider="cpu").glue.values, rtol=1e-6, atol=1e-7)
        assert got.attrs["input_file"] == "part0.nc, part1.nc" and "from 2 files" in got.attrs["title"]
        assert "invert 2 files (part0.nc, part1.nc)" in got.attrs["history"].splitlines()[0]


def test_errors_name_keywords_not_command_line_options(example):
    from rrim.io.paths import ArchiveError

    with pytest.raises(ArchiveError, match=r"\(use var=\)") as e:
        example.rrim.invert(var="rate", provider="cpu")
    assert "--" not in str(e.value)
    with pytest.raises(ArchiveError, match="pass temperature=<kelvin>") as e:
        example.drop_vars("temperature").rrim.invert(provider="cpu")
    assert "--" not in str(e.value)


def test_chunks_never_load_or_hash_the_model_again(monkeypatch, example):
    from rrim.models import loading, sessions

    lazy = example.chunk({"sample": 1}).rrim.invert(provider="cpu")  # 4 chunks
    hashed = []
    for module in (loading, sessions):
        monkeypatch.setattr(module, "sha256_bytes", lambda data, f=module.sha256_bytes: hashed.append(len(data)) or f(data))
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a chunk loaded the model"))
    glue = lazy.glue.compute(scheduler="synchronous")
    model_bytes = (loading.MODELS_DIR / "rrim-default.onnx").stat().st_size
    assert glue.shape == (4, 6, 200) and model_bytes not in hashed  # (the calibration, a few kB, is read per chunk)


def test_plot_of_outputs_reuses_the_recorded_model_and_crop(monkeypatch, tmp_path, example):
    from rrim.io import plotting
    from rrim.plugins import accessor

    calls, loaded, crops = [], [], []
    monkeypatch.setattr(plotting, "plot_inversions", lambda path, *args, **kw: calls.append(args) or path)
    cropped = example.isel(omega=slice(0, 200))  # up to 320 meV of the model's 400
    out = cropped.rrim.invert(provider="cpu", crop=True, model="rrim-lean")
    real_load, real_read = accessor.load_model, accessor.read_source
    monkeypatch.setattr(accessor, "load_model", lambda *a, **k: loaded.append((a, k)) or real_load(*a, **k))
    monkeypatch.setattr(accessor, "read_source", lambda ds, p, m, opts: crops.append(opts.crop) or real_read(ds, p, m, opts))
    out.rrim.plot(tmp_path / "p.png", spectra=[0], data=cropped)
    assert loaded == [(("rrim-lean",), {"sha256": out.attrs["model_sha256"]})] and crops == [True]
    assert np.isfinite(calls[0][2]).any()  # the measured spectrum
    out.rrim.plot(tmp_path / "p.png", spectra=[0], data=cropped, model="rrim-default", crop=False)
    assert loaded[-1] == (("rrim-default",), {}) and crops[-1] is False


def test_forward_reproduces_noiseless_spectra(example):
    glue = example["glue_true"].rename({d: "Omega" for d in example["glue_true"].dims if d.lower() == "omega"})
    rate = glue.to_dataset(name="glue").rrim.forward()
    assert rate.dims[-1] == "omega" and rate.attrs["units"] == "meV"
    measured = example.rrim.invert(provider="cpu")  # refit grid = model grid; compare against the input interpolated
    y = example["scattering_rate"].interp(omega=rate.omega * 8.0655439).values / 8.0655439  # cm⁻¹ → meV
    rel = np.linalg.norm(rate.values - y, axis=-1) / np.linalg.norm(y, axis=-1)
    assert np.median(rel) < 5e-3  # noise 1e-3 of max and linear interpolation
    assert measured.glue.shape[-1] == rate.shape[-1]


def test_band_and_impurity_through_the_accessor_equal_the_cli(tmp_path, example):
    out = tmp_path / "cli.nc"
    args = ["invert", "--example", "-o", str(out), "--provider", "cpu", "--uncertainty", "0.9", "--impurity"]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    got = example.chunk({"sample": 2}).rrim.invert(provider="cpu", uncertainty=0.9, impurity=True)
    with xr.open_dataset(out) as cli:
        for name in ("glue_lower", "glue_upper", "impurity_rate", "noise_estimate", "ood_score"):
            np.testing.assert_allclose(got[name].values, cli[name].values, rtol=1e-6, atol=1e-6, err_msg=name)
            assert got[name].attrs["long_name"] == cli[name].attrs["long_name"]


def test_plot_inverts_selected_input_spectra_or_draws_outputs(tmp_path, example):
    pytest.importorskip("matplotlib")
    png = example.rrim.plot(tmp_path / "in.png", spectra=[0, 5], provider="cpu", truth="glue_true", uncertainty=0.68)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    result = example.rrim.invert(provider="cpu")
    assert result.rrim.plot(tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="lacks 'scattering_rate_fit'"):
        result[["glue"]].rrim.plot(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="spectra: expected indices"):
        example.rrim.plot(tmp_path / "bad.png", spectra=[99], provider="cpu")
    assert not (tmp_path / "bad.png").exists()


def test_plot_without_the_glue_output_names_it(tmp_path, example):
    result = example.rrim.invert(provider="cpu")
    with pytest.raises(ValueError, match="nor a 'glue' output"):
        result.drop_vars("glue").rrim.plot(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="input variable 'rate'"):
        example.rrim.plot(tmp_path / "bad.png", var="rate")
    assert not (tmp_path / "bad.png").exists()


def test_plot_of_outputs_draws_the_measured_spectra_from_the_input(monkeypatch, tmp_path, example):
    from rrim.io import plotting

    calls = []
    monkeypatch.setattr(plotting, "plot_inversions", lambda path, *args, **kw: calls.append((args, kw)) or path)
    result = example.rrim.invert(provider="cpu")
    example.rrim.plot(tmp_path / "a.png", spectra=[1, 7], provider="cpu")  # inverts: y is the measured data
    result.rrim.plot(tmp_path / "b.png", spectra=[1, 7], data=example)
    result.rrim.plot(tmp_path / "c.png", spectra=[1, 7])  # no input: no measured curve
    (omega, Omega, y, glue, fit, residual), kw = calls[0]
    for args, kw_out in calls[1:]:
        np.testing.assert_array_equal(args[0], omega)
        np.testing.assert_allclose(args[3], glue, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(args[5], residual, rtol=1e-6)
        t1 = np.datetime_as_string(example.time.values[1], unit="s")  # spectra 1 and 7 of 4 samples × 6 times
        assert kw_out["labels"] == kw["labels"] == [f"sample=S1, time={t1}", f"sample=S2, time={t1}"]
    np.testing.assert_allclose(calls[1][0][2], y, rtol=1e-12)
    assert np.isnan(calls[2][0][2]).all()
    with pytest.raises(ValueError, match="leading dimensions"):
        result.rrim.plot(tmp_path / "d.png", data=example.isel(sample=slice(0, 2)))


def test_accessor_on_a_distributed_client_equals_in_process(tmp_path, example):
    distributed = pytest.importorskip("dask.distributed")
    paths = []
    for i in range(2):  # a chunked dataset over two files, read by the workers themselves
        example.isel(sample=slice(2 * i, 2 * i + 2)).to_netcdf(tmp_path / f"part{i}.nc")
        paths.append(tmp_path / f"part{i}.nc")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, \
            xr.open_mfdataset(paths, combine="nested", concat_dim="sample", data_vars="minimal", coords="minimal",
                              compat="override", chunks={}) as multi:  # one chunk per file
        lazy = multi.rrim.invert(provider="cpu")
        assert hasattr(lazy.glue.data, "dask") and lazy.glue.data.npartitions == 2
        on_cluster = lazy.compute()  # the default scheduler is now the client's
        sessions = client.run(_sessions_in_this_process)
        assert len(sessions) == 2 and sum(sessions.values()) >= 1  # the work ran in the worker processes
    eager = example.rrim.invert(provider="cpu")
    np.testing.assert_allclose(on_cluster.glue.values, eager.glue.values, rtol=1e-5, atol=1e-6)  # float32 rounding
    np.testing.assert_array_equal(on_cluster.flags.values, eager.flags.values)


def _sessions_in_this_process() -> int:
    from rrim.models import sessions

    return len(sessions._CACHE)


def test_invert_dataset_is_the_accessors_core_without_the_plugin(example):
    """The in-memory core needs no accessor: an engine and the options give what ds.rrim.invert() gives."""
    from rrim.inversion.engine import Engine
    from rrim.io.schema import ArchiveOptions
    from rrim.models.loading import load_model

    with Engine(load_model("rrim-default"), "cpu") as engine:
        core = dataset.invert_dataset(example, engine, ArchiveOptions(impurity=True))
    xr.testing.assert_equal(core, example.rrim.invert(provider="cpu", impurity=True))
    assert core.attrs["execution_provider"] == "cpu" and "impurity_rate" in core



def test_a_model_without_calibration_warns_that_ood_and_bands_are_off(tmp_path, example):
    import shutil

    from rrim.models.loading import MODELS_DIR

    own = tmp_path / "own.onnx"
    shutil.copy(MODELS_DIR / "rrim-lean.onnx", own)
    with pytest.warns(UserWarning, match="no usable calibration"):
        out = example.isel(sample=[0]).rrim.invert(model=own, provider="cpu")
    assert np.isnan(out.ood_score.values).all()
