"""The xarray accessor ``.rrim`` (registered on ``import rrim.plugins``), for Datasets and DataArrays.

A thin layer over the runtime: validation (:func:`rrim.io.reading.read_source`) and inversion
(:func:`rrim.jobs.invert.invert_rows`) are the CLI's own, so ``ds.rrim.invert()`` returns the
variables, names and attributes that ``rrim invert`` writes. On dask-backed data it stays lazy:
:func:`xarray.apply_ufunc` with ``dask="parallelized"`` inverts each chunk of spectra in one batch;
eager data run through one :class:`~rrim.inversion.engine.Engine`; for dask chunks only the model's
path and sha256 travel, and each chunk runs with an engine of its own (the onnxruntime session stays
built in the worker process).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import xarray as xr

from rrim.inversion.engine import DEFAULT_BATCH_SIZE, Engine
from rrim.inversion.flags import FLAGS
from rrim.io.provenance import provenance_attrs
from rrim.io.reading import read_source
from rrim.io.schema import ArchiveOptions
from rrim.jobs.invert import invert_rows
from rrim.models.loading import DEFAULT_MODEL, load_model
from rrim.physics.operator import ForwardOperator

_FIT_DIM = "omega_model"  # the refit's ω axis inside apply_ufunc (the input's ω axis has another size)


def _invert_block(rows, temperatures, *, src, opts, engine=None, model_path=None, sha256=None, provider="auto",
                  batch_size=DEFAULT_BATCH_SIZE):
    """One block: rows (..., n_in) in file units, temperatures (...) K → the output arrays, with ``engine``
    or, for a dask chunk, an engine of its own for the model at ``model_path`` (``sha256``)."""
    if engine is None:
        with Engine(load_model(model_path, sha256=sha256), provider, batch_size=batch_size) as own:
            return _invert_block(rows, temperatures, src=src, opts=opts, engine=own)
    lead = rows.shape[:-1]
    out = invert_rows(rows.reshape(-1, rows.shape[-1]).astype(np.float64), temperatures.reshape(-1), src, engine, opts)
    return tuple(np.asarray(out[name]).reshape(*lead, *out[name].shape[1:]).astype(dtype)
                 for name, (dtype, _, _) in opts.output_variables().items())


class _RrimAccessor:
    def __init__(self, obj):
        self._obj = obj

    def _dataset(self, var: str) -> xr.Dataset:
        return self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset(name=var)

    def invert(self, var: str = "scattering_rate", dim: str = "omega", model=DEFAULT_MODEL, provider: str = "auto",
               temperature: float | None = None, temperature_name: str = "temperature", crop: bool = False,
               smoothing_meV: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, sha256: str | None = None,
               uncertainty: float | None = None, impurity: bool = False) -> xr.Dataset:
        """Glue functions of the spectra in ``var`` (core dimension ``dim``), as ``rrim invert`` writes them.

        ``temperature`` (K) overrides the dataset's; ``model`` is an installed name or a path;
        ``uncertainty`` (0.68 or 0.9) adds the calibrated band ``glue_lower``/``glue_upper``;
        ``impurity`` estimates and removes the impurity rate (``impurity_rate``).
        Lazy on dask-backed input. Raises :class:`rrim.io.paths.ArchiveError` for bad input.
        """
        ds = self._dataset(var)
        loaded = load_model(model, sha256=sha256)
        opts = ArchiveOptions(var=var, dim=dim, temperature_name=temperature_name, temperature=temperature,
                              crop=crop, smoothing_meV=smoothing_meV, uncertainty=uncertainty, impurity=impurity)
        variables = opts.output_variables()
        src = read_source(ds, ds.encoding.get("source", "<in-memory dataset>"), loaded, opts)
        data = src.data
        temps = xr.DataArray(src.temperature, dims=src.lead, coords={d: data[d] for d in src.lead if d in data.coords})
        if data.chunks is not None:
            temps = temps.chunk({d: data.chunksizes[d] for d in src.lead})
        n_Omega, n_omega = len(loaded.info.Omega), len(loaded.info.omega)
        cores = {"scattering_rate_fit": [_FIT_DIM]}
        engine = Engine(loaded, provider, batch_size=batch_size)
        block = dict(src=dataclasses.replace(src, data=None), opts=opts)
        block.update(dict(model_path=str(loaded.path), sha256=loaded.sha256, provider=provider, batch_size=batch_size)
                     if data.chunks is not None else dict(engine=engine))
        with engine:
            results = xr.apply_ufunc(
                _invert_block, data, temps, kwargs=block,
                input_core_dims=[[dim], []],
                output_core_dims=[cores.get(name, list(core)) for name, (_, core, _) in variables.items()],
                output_dtypes=[np.dtype(v[0]) for v in variables.values()],
                dask="parallelized", dask_gufunc_kwargs={"output_sizes": {"Omega": n_Omega, _FIT_DIM: n_omega}},
                keep_attrs=False,
            )
        # non-index coordinates are dropped before merging (comparing dask coordinates would compute
        # them; the input's temperature coordinate would clash with the `temperature` output) and re-added
        out = xr.Dataset({name: r.reset_coords(drop=True) for name, r in zip(variables, results)})
        out = out.assign_coords({k: c for k, c in data.coords.items()
                                 if k not in out.coords and k not in out.data_vars and dim not in c.dims})
        out = out.rename({_FIT_DIM: "omega"}).assign_coords(
            Omega=("Omega", loaded.info.Omega.values, {"units": "meV", "long_name": "boson energy Ω"}),
            omega=("omega", loaded.info.omega.values, {"units": "meV", "long_name": "optical energy ω (model grid)"}))
        for name, (_, _, attrs) in variables.items():
            out[name].attrs = dict(attrs)
        out.attrs = provenance_attrs(src, loaded, opts, "n/a (in-memory dataset)", engine.provider,
                                str(ds.attrs.get("history", "")), {})
        out.attrs.pop("flag_counts")
        out.attrs["flag_meanings"] = json.dumps(FLAGS)
        return out

    def forward(self, var: str = "glue", model=DEFAULT_MODEL, temperature: float | None = None) -> xr.DataArray:
        """Scattering rate (meV, on the model's ω grid) of the glue functions in ``var`` (core dim ``Omega``)
        through the shared physics at ``temperature`` (K; default: the model's)."""
        loaded = load_model(model)
        op: ForwardOperator = loaded.info.base_operator(temperature)
        glue = self._dataset(var)[var]
        rate = xr.apply_ufunc(op.forward, glue, input_core_dims=[["Omega"]], output_core_dims=[[_FIT_DIM]],
                              dask="parallelized", output_dtypes=[np.float64],
                              dask_gufunc_kwargs={"output_sizes": {_FIT_DIM: len(op.omega)}}, keep_attrs=False)
        rate = rate.rename({_FIT_DIM: "omega"}).assign_coords(omega=("omega", op.omega.values, {"units": "meV"}))
        rate.attrs = {"long_name": "scattering rate 1/τ = A·I²χ", "units": "meV", "temperature_K": op.temperature}
        return rate.rename("scattering_rate")


    def plot(self, path, spectra=None, var: str = "scattering_rate", dim: str = "omega", model=DEFAULT_MODEL,
             provider: str = "auto", truth: str | None = None, title: str = "", data=None, **options):
        """A PNG (or any matplotlib format) with one row per spectrum: glue (with the band where there is
        one, and ``truth``, a variable of true glue, if given) | measured 1/τ on the model's grid with
        the refit | fit − measured. Returns the path. Drawn by :func:`rrim.io.plotting.plot_inversions`;
        needs ``rrim[plot]``.

        On input data (``var`` on ``dim``) the selected spectra are inverted first, eagerly, with
        ``model``/``provider`` and :meth:`invert`'s ``options`` (e.g. ``uncertainty=0.9``). On what
        :meth:`invert` returned (``glue``, ``scattering_rate_fit``, ``residual``) they are drawn as
        they are; the measured spectra come from ``data`` (the input Dataset, same leading dimensions)
        or from ``var`` on ``dim`` in this dataset if it holds them (``model`` must be the one that
        inverted them), else the measured curve and fit − measured are left empty (the residual
        stays in the title). ``spectra``: flat indices over the leading dimensions (default: the first 4).
        """
        from rrim.io.plotting import plot_inversions

        ds = self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset(name=self._obj.name or var)
        if "glue" in ds:
            lead = [d for d in ds.glue.dims if d != "Omega"]
            flat = ds.stack(_spectrum=lead) if lead else ds.expand_dims("_spectrum")
            idx = _indices(spectra, flat.sizes["_spectrum"])
            sel = flat.isel(_spectrum=idx)
            get = {n: sel[n].transpose("_spectrum", ...).values for n in sel.data_vars if "_spectrum" in sel[n].dims}
            missing = [n for n in ("scattering_rate_fit", "residual") if n not in get]
            if missing:
                raise ValueError(f"plot: the dataset has 'glue' but lacks {', '.join(map(repr, missing))}; "
                                 "plot input data or what ds.rrim.invert() returns")
            omega, Omega = ds.omega.values, ds.Omega.values
            y = _measured(data if data is not None else ds if var in ds else None, {d: ds.sizes[d] for d in lead}, idx,
                          omega, var, dim, model, options)
            if y is None:
                y = np.full_like(get["scattering_rate_fit"], np.nan, dtype=np.float64)  # no data: nothing drawn
        else:
            if var not in ds:
                raise ValueError(f"plot: the dataset has neither the input variable {var!r} nor a 'glue' output")
            loaded = load_model(model)
            opts = ArchiveOptions(var=var, dim=dim, **{k: options[k] for k in ("temperature", "temperature_name", "crop",
                                                                                "smoothing_meV", "uncertainty", "impurity")
                                                         if k in options})
            src = read_source(ds, ds.encoding.get("source", "<in-memory dataset>"), loaded, opts)
            idx = _indices(spectra, src.n_spectra)
            rows = _source_rows(src, idx, list(src.lead), dim)
            with Engine(loaded, provider) as engine:
                get = invert_rows(rows, np.asarray(src.temperature).reshape(-1)[idx], src, engine, opts)
            omega, Omega, y = loaded.info.omega.values, loaded.info.Omega.values, get["y"]
        band = (get["glue_lower"], get["glue_upper"]) if "glue_lower" in get else None
        true = None if truth is None else np.asarray(ds[truth].stack(_spectrum=[d for d in ds[truth].dims if d != "Omega"])
                                                     .transpose("_spectrum", ...).values)[idx]
        return plot_inversions(path, omega, Omega, y, get["glue"], get["scattering_rate_fit"], get["residual"],
                               labels=[f"spectrum {i}" for i in idx], truth=true, title=title, band=band)


def _measured(data, sizes: dict, idx: list, omega: np.ndarray, var: str, dim: str, model, options: dict):
    """The spectra ``idx`` (flat over the outputs' leading ``sizes``) of ``var`` in ``data``, on the outputs'
    ω grid in meV, or None without ``data``."""
    if data is None:
        return None
    lead = list(sizes)
    data = data if isinstance(data, xr.Dataset) else data.to_dataset(name=data.name or var)
    loaded = load_model(model)
    if len(loaded.info.omega) != len(omega) or not np.allclose(loaded.info.omega.values, omega):
        raise ValueError(f"plot: model {loaded.name!r} has another ω grid than these outputs; pass the model that "
                         "inverted them (model=...)")
    opts = ArchiveOptions(var=var, dim=dim, crop=options.get("crop", False),
                          temperature=0.0)  # only the ω interpolation is used, never the temperature
    src = read_source(data, data.encoding.get("source", "<in-memory dataset>"), loaded, opts)
    if dict(zip(src.lead, src.shape)) != sizes:
        raise ValueError(f"plot: {var!r} in data has leading dimensions {dict(zip(src.lead, src.shape))}, "
                         f"the outputs {sizes}; they must match")
    with np.errstate(invalid="ignore"):
        return src.interpolate(_source_rows(src, idx, lead, dim))


def _source_rows(src, idx: list, lead: list, dim: str) -> np.ndarray:
    """Spectra ``idx`` (flat indices over the leading dimensions in the order ``lead``) of a validated
    source, as stored: (len(idx), n_in) float64 on the input's ω axis ``dim``."""
    flat = src.data.transpose(*lead, dim).stack(_spectrum=lead) if lead else src.data.expand_dims("_spectrum")
    return np.asarray(flat.isel(_spectrum=idx).transpose("_spectrum", dim).values, dtype=np.float64)


def _indices(spectra, n: int) -> list[int]:
    idx = list(range(min(4, n))) if spectra is None else [int(i) for i in spectra]
    if not idx or any(not 0 <= i < n for i in idx):
        raise ValueError(f"spectra: expected indices in 0…{n - 1}, got {spectra!r}")
    return idx


xr.register_dataset_accessor("rrim")(_RrimAccessor)
xr.register_dataarray_accessor("rrim")(_RrimAccessor)
