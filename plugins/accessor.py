"""The xarray accessor ``.rrim`` (registered on ``import rrim.plugins``), for Datasets and DataArrays.

A thin layer over the runtime: ``ds.rrim.invert()`` is :func:`rrim.jobs.dataset.invert_dataset`
with an engine of its own, so it returns the variables, names and attributes that ``rrim invert``
writes. On dask-backed data it stays lazy: :func:`xarray.apply_ufunc` with ``dask="parallelized"``
inverts each chunk of spectra in one batch, with an engine of its own per chunk (the verified model
travels; each worker process reads the model file once, for its cached onnxruntime session).

Lazy results are computed again by every computation that needs them: ``out.glue.values`` and then
``out.lambda.values`` run the network twice. Call ``out = out.persist()`` (or ``.load()``) once
before taking several variables, plotting or writing.
"""
from __future__ import annotations

import inspect
import json
import re
import warnings
from dataclasses import fields

import numpy as np
import xarray as xr

from rrim.inversion.engine import DEFAULT_BATCH_SIZE, Engine
from rrim.inversion.uncertainty import calibration_digest
from rrim.io.paths import ArchiveError
from rrim.io.provenance import multi_file_attrs, source_files
from rrim.io.reading import read_source
from rrim.io.schema import ArchiveOptions, option_type
from rrim.jobs.dataset import invert_dataset
from rrim.jobs.invert import invert_rows
from rrim.models.loading import DEFAULT_MODEL, load_model
from rrim.physics.operator import ForwardOperator

_MODEL_OMEGA = "omega_model"  # forward()'s ω axis inside apply_ufunc (renamed to omega after)
#: The keywords that choose the model and how it runs (the command line's --model, --sha256, --provider, --batch-size).
_ENGINE_KEYWORDS = ("model", "sha256", "provider", "batch_size")
#: Former keywords, now named as the command line names them (accepted with a FutureWarning).
_RENAMED = {"temperature_name": "temperature_var", "smoothing_meV": "smoothing"}
#: The command line's options in the runtime's messages → the accessor's keywords (``--temperature-var`` →
#: ``temperature_var=``, ``--crop`` → ``crop=True``).
_KEYWORDS = {"--temperature K": "temperature=<kelvin>",
             **{"--" + f.name.replace("_", "-"): f.name + ("=True" if option_type(f) is bool else "=")
                for f in fields(ArchiveOptions)},
             **{"--" + k.replace("_", "-"): k + "=" for k in _ENGINE_KEYWORDS}}
_FLAG = re.compile("|".join(re.escape(k) + r"(?![\w-])" for k in sorted(_KEYWORDS, key=len, reverse=True)))


def _python_message(e: ArchiveError) -> ArchiveError:
    """The same error, its command-line options named as this accessor's keywords (``--var`` → ``var=``)."""
    return type(e)(_FLAG.sub(lambda m: _KEYWORDS[m.group(0)], str(e)))


def _with_keywords(call):
    try:
        return call()
    except ArchiveError as e:
        raise _python_message(e) from None


def _options(method: str, options: dict) -> ArchiveOptions:
    """The :class:`ArchiveOptions` of keywords ``options`` given to ``ds.rrim.<method>()``."""
    options = dict(options)
    for old, new in _RENAMED.items():
        if old in options:
            warnings.warn(f"ds.rrim.{method}(): {old}= is now {new}=, as on the command line", FutureWarning,
                          stacklevel=3)
            if new in options:
                raise TypeError(f"ds.rrim.{method}(): give {new}= only (not also {old}=)")
            options[new] = options.pop(old)
    unknown = sorted(set(options) - {f.name for f in fields(ArchiveOptions)})
    if unknown:
        raise TypeError(f"ds.rrim.{method}(): unknown keyword(s) {', '.join(unknown)}; the options are "
                        f"{', '.join(f.name for f in fields(ArchiveOptions))}")
    return ArchiveOptions(**options)


def _takes_options(method):
    """``method(..., **options)`` with a signature and a docstring that list the :class:`ArchiveOptions` fields."""
    sig = inspect.signature(method)
    keywords = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
                for f in fields(ArchiveOptions)]
    method.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values()
                                                   if p.kind is not p.VAR_KEYWORD] + keywords)
    def line(f):
        meta = f.metadata
        what = meta.get("units") or (" or ".join(map(str, meta["choices"])) if "choices" in meta else None)
        return (f"- ``{f.name}={f.default!r}``{f' ({what})' if what else ''}: "
                + _FLAG.sub(lambda m: f"``{_KEYWORDS[m.group(0)]}``", meta["help"]))

    method.__doc__ += ("\n        Options (those of ``rrim invert``, ``--temperature-var`` → ``temperature_var=``):\n\n        "
                       + "\n        ".join(map(line, fields(ArchiveOptions))) + "\n")
    return method


class _RrimAccessor:
    def __init__(self, obj):
        self._obj = obj

    def _dataset(self, var: str) -> xr.Dataset:
        return self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset(name=var)

    @_takes_options
    def invert(self, *, model=DEFAULT_MODEL, provider: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
               sha256: str | None = None, **options) -> xr.Dataset:
        """Glue functions of the spectra in ``var`` (core dimension ``dim``), as ``rrim invert`` writes them.

        ``model`` is an installed name or a path (``sha256`` pins its file), run on ``provider`` with
        ``batch_size`` spectra per call. ``options`` are those of ``rrim invert`` (listed below, named as
        there: ``--temperature-var`` is ``temperature_var=``).
        Lazy on dask-backed input: each computation of the result runs the network again, so call
        ``.persist()`` on it before taking more than one variable. Raises
        :class:`rrim.io.paths.ArchiveError` for bad input (naming these keywords). On a dataset opened with
        ``xr.open_mfdataset`` the provenance (``input_file``, ``title``, ``history``) names every file.
        """
        opts = _options("invert", options)
        ds = self._dataset(opts.var)
        loaded = load_model(model, sha256=sha256)
        if calibration_digest(loaded) in ("none", "unreadable"):
            warnings.warn(f"model {loaded.name!r} has no usable calibration: ood_score is NaN, the out_of_distribution "
                          "flag is off and uncertainty= bands are unavailable (rrim calibrate makes one)", stacklevel=2)
        with Engine(loaded, provider, tf32=opts.tf32, batch_size=batch_size) as engine:
            out = _with_keywords(lambda: invert_dataset(ds, engine, opts))
        files = source_files(ds)
        if len(files) > 1:
            out.attrs = multi_file_attrs(out.attrs, files)
        return out

    def forward(self, var: str = "glue", model=DEFAULT_MODEL, temperature: float | None = None) -> xr.DataArray:
        """Scattering rate (meV, on the model's ω grid) of the glue functions in ``var`` (core dim ``Omega``)
        through the shared physics at ``temperature`` (K; default: the model's)."""
        loaded = load_model(model)
        op: ForwardOperator = loaded.info.base_operator(temperature)
        glue = self._dataset(var)[var]
        rate = xr.apply_ufunc(op.forward, glue, input_core_dims=[["Omega"]], output_core_dims=[[_MODEL_OMEGA]],
                              dask="parallelized", output_dtypes=[np.float64],
                              dask_gufunc_kwargs={"output_sizes": {_MODEL_OMEGA: len(op.omega)}}, keep_attrs=False)
        rate = rate.rename({_MODEL_OMEGA: "omega"}).assign_coords(omega=("omega", op.omega.values, {"units": "meV"}))
        rate.attrs = {"long_name": "scattering rate 1/τ = A·I²χ", "units": "meV", "temperature_K": op.temperature}
        return rate.rename("scattering_rate")


    @_takes_options
    def plot(self, path, spectra=None, *, model=None, provider: str = "auto", truth: str | None = None, title: str = "",
             data=None, **options):
        """A PNG (or any matplotlib format) with one row per spectrum: glue (with the band where there is
        one, and ``truth``, a variable of true glue, if given) | measured 1/τ on the model's grid with
        the refit | fit − measured. Rows are labelled by their coordinate values. Returns the path.
        Drawn by :func:`rrim.io.plotting.plot_inversions`; needs ``rrim[plot]``.

        On input data (``var`` on ``dim``) the selected spectra are inverted first, eagerly, with
        ``model`` (default ``rrim-default``), ``provider`` and the ``options`` (those of :meth:`invert`, e.g.
        ``uncertainty=0.9``). On what :meth:`invert` returned (``glue``, ``scattering_rate_fit``,
        ``residual``) they are drawn as they are; the measured spectra come from ``data`` (the input
        Dataset, same leading dimensions) or from ``var`` on ``dim`` in this dataset if it holds them,
        interpolated as the recorded model and ``crop`` option did (``model=`` and ``crop=`` override
        them), else the measured curve and fit − measured are left empty (the residual stays in the
        title). ``spectra``: flat indices over the leading dimensions (default: the first 4). On lazy
        outputs call ``.persist()`` first, or each drawn variable runs the network again.
        """
        from rrim.io.plotting import plot_inversions

        opts = _options("plot", options)
        var, dim = opts.var, opts.dim
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
            source = data if data is not None else ds if var in ds else None
            y = None
            if source is not None:
                loaded = load_model(model) if model is not None else _recorded_model(ds)
                crop = opts.crop if "crop" in options else json.loads(ds.attrs.get("options", "{}")).get("crop", False)
                y = _with_keywords(lambda: _measured(source, {d: ds.sizes[d] for d in lead}, idx, omega, var, dim,
                                                     loaded, crop))
            if y is None:
                y = np.full_like(get["scattering_rate_fit"], np.nan, dtype=np.float64)  # no data: nothing drawn
            labels = _labels(ds, lead, [ds.sizes[d] for d in lead], idx)
        else:
            if var not in ds:
                raise ValueError(f"plot: the dataset has neither the input variable {var!r} nor a 'glue' output")
            loaded = load_model(DEFAULT_MODEL if model is None else model)
            src = _with_keywords(lambda: read_source(ds, ds.encoding.get("source", "<in-memory dataset>"), loaded, opts))
            idx = _indices(spectra, src.n_spectra)
            rows = _source_rows(src, idx, list(src.lead), dim)
            with Engine(loaded, provider, tf32=opts.tf32) as engine:
                get = invert_rows(rows, np.asarray(src.temperature).reshape(-1)[idx], src, engine, opts)
            omega, Omega, y = loaded.info.omega.values, loaded.info.Omega.values, get["y"]
            labels = _labels(ds, list(src.lead), list(src.shape), idx)
        band = (get["glue_lower"], get["glue_upper"]) if "glue_lower" in get else None
        true = None if truth is None else np.asarray(ds[truth].stack(_spectrum=[d for d in ds[truth].dims if d != "Omega"])
                                                     .transpose("_spectrum", ...).values)[idx]
        return plot_inversions(path, omega, Omega, y, get["glue"], get["scattering_rate_fit"], get["residual"],
                               labels=labels, truth=true, title=title, band=band)


def _recorded_model(ds: xr.Dataset):
    """The model the outputs ``ds`` record (``model_name``, pinned to ``model_sha256``), else the default."""
    from rrim.models.modelfile import ModelFileError

    name, sha = ds.attrs.get("model_name"), ds.attrs.get("model_sha256")
    if not name:
        return load_model(DEFAULT_MODEL)
    try:
        return load_model(name, sha256=sha)
    except ModelFileError as e:
        raise ValueError(f"plot: these outputs record model {name!r} (sha256 {str(sha)[:12]}…), which cannot be "
                         f"loaded by that name here ({e}); pass model= with its .onnx path") from None


def _labels(ds: xr.Dataset, lead: list, shape: list, idx: list) -> list[str]:
    """'dim=value, …' of each flat index in ``idx`` over the leading dimensions (the index where a
    dimension has no coordinate)."""
    def value(d, i):
        if d not in ds.coords:
            return str(i)
        v = ds[d].values[i]
        if isinstance(v, np.datetime64):
            return np.datetime_as_string(v, unit="s")
        return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)

    labels = []
    for i in idx:
        pos = np.unravel_index(i, shape) if lead else ()
        labels.append(", ".join(f"{d}={value(d, int(j))}" for d, j in zip(lead, pos)) or "spectrum")
    return labels


def _measured(data, sizes: dict, idx: list, omega: np.ndarray, var: str, dim: str, loaded, crop: bool):
    """The spectra ``idx`` (flat over the outputs' leading ``sizes``) of ``var`` in ``data``, on the outputs'
    ω grid in meV, interpolated as model ``loaded`` with ``crop`` does."""
    lead = list(sizes)
    data = data if isinstance(data, xr.Dataset) else data.to_dataset(name=data.name or var)
    if len(loaded.info.omega) != len(omega) or not np.allclose(loaded.info.omega.values, omega):
        raise ValueError(f"plot: model {loaded.name!r} has another ω grid than these outputs; pass the model that "
                         "inverted them (model=...)")
    opts = ArchiveOptions(var=var, dim=dim, crop=crop, temperature=0.0)  # only the ω interpolation is used
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
