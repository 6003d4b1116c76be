"""The xarray accessor ``.rrim`` (registered on ``import rrim.plugins``), for Datasets and DataArrays.

A thin layer over the runtime: validation (:func:`rrim.archives.read_source`) and inversion
(:func:`rrim.archives.invert_rows`) are the CLI's own, so ``ds.rrim.invert()`` returns the
variables, names and attributes that ``rrim invert`` writes. On dask-backed data it stays lazy:
:func:`xarray.apply_ufunc` with ``dask="parallelized"`` inverts each chunk of spectra in one batch;
only the model's path and sha256 travel to the workers, whose sessions are cached per process.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import xarray as xr

from ..archives import OUTPUT_VARIABLES, ArchiveOptions, invert_rows, provenance_attrs, read_source
from ..inversion import DEFAULT_BATCH_SIZE, FLAGS
from ..models import DEFAULT_MODEL, load_model
from ..operator import ForwardOperator

_FIT_DIM = "omega_model"  # the refit's ω axis inside apply_ufunc (the input's ω axis has another size)


def _invert_block(rows, temperatures, *, src, model_path, sha256, opts, provider, batch_size):
    """One chunk: rows (..., n_in) in file units, temperatures (...) K → the output arrays."""
    model = load_model(model_path, sha256=sha256)
    lead = rows.shape[:-1]
    out = invert_rows(rows.reshape(-1, rows.shape[-1]).astype(np.float64), temperatures.reshape(-1), src, model,
                      opts, session=model.session(provider), batch_size=batch_size)
    return tuple(np.asarray(out[name]).reshape(*lead, *out[name].shape[1:]).astype(OUTPUT_VARIABLES[name][0])
                 for name in OUTPUT_VARIABLES)


class _RrimAccessor:
    def __init__(self, obj):
        self._obj = obj

    def _dataset(self, var: str) -> xr.Dataset:
        return self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset(name=var)

    def invert(self, var: str = "scattering_rate", dim: str = "omega", model=DEFAULT_MODEL, provider: str = "auto",
               temperature: float | None = None, temperature_name: str = "temperature", crop: bool = False,
               smoothing_meV: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, sha256: str | None = None) -> xr.Dataset:
        """Glue functions of the spectra in ``var`` (core dimension ``dim``), as ``rrim invert`` writes them.

        ``temperature`` (K) overrides the dataset's; ``model`` is an installed name or a path.
        Lazy on dask-backed input. Raises :class:`rrim.archives.ArchiveError` for bad input.
        """
        ds = self._dataset(var)
        loaded = load_model(model, sha256=sha256)
        opts = ArchiveOptions(var=var, dim=dim, temperature_name=temperature_name, temperature=temperature,
                              crop=crop, smoothing_meV=smoothing_meV)
        src = read_source(ds, ds.encoding.get("source", "<in-memory dataset>"), loaded, opts)
        data = src.data
        temps = xr.DataArray(src.temperature, dims=src.lead, coords={d: data[d] for d in src.lead if d in data.coords})
        if data.chunks is not None:
            temps = temps.chunk({d: data.chunksizes[d] for d in src.lead})
        n_Omega, n_omega = len(loaded.info.Omega), len(loaded.info.omega)
        cores = {"Omega": ["Omega"], "scattering_rate_fit": [_FIT_DIM]}
        results = xr.apply_ufunc(
            _invert_block, data, temps,
            kwargs=dict(src=dataclasses.replace(src, data=None), model_path=str(loaded.path), sha256=loaded.sha256,
                        opts=opts, provider=provider, batch_size=batch_size),
            input_core_dims=[[dim], []],
            output_core_dims=[cores.get(name, ["Omega"] if name == "glue" else []) for name in OUTPUT_VARIABLES],
            output_dtypes=[np.dtype(v[0]) for v in OUTPUT_VARIABLES.values()],
            dask="parallelized", dask_gufunc_kwargs={"output_sizes": {"Omega": n_Omega, _FIT_DIM: n_omega}},
            keep_attrs=False,
        )
        # non-index coordinates are dropped before merging (comparing dask coordinates would compute
        # them; the input's temperature coordinate would clash with the `temperature` output) and re-added
        out = xr.Dataset({name: r.reset_coords(drop=True) for name, r in zip(OUTPUT_VARIABLES, results)})
        out = out.assign_coords({k: c for k, c in data.coords.items()
                                 if k not in out.coords and k not in out.data_vars and dim not in c.dims})
        out = out.rename({_FIT_DIM: "omega"}).assign_coords(
            Omega=("Omega", loaded.info.Omega.values, {"units": "meV", "long_name": "boson energy Ω"}),
            omega=("omega", loaded.info.omega.values, {"units": "meV", "long_name": "optical energy ω (model grid)"}))
        for name, (_, _, attrs) in OUTPUT_VARIABLES.items():
            out[name].attrs = dict(attrs)
        provider_used = loaded.session(provider).provider
        out.attrs = provenance_attrs(src, loaded, opts, "n/a (in-memory dataset)", provider_used,
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


xr.register_dataset_accessor("rrim")(_RrimAccessor)
xr.register_dataarray_accessor("rrim")(_RrimAccessor)
