"""The in-memory core: an xarray Dataset of scattering rates → the Dataset of glue functions that
``rrim invert`` would write for it (variables, names, attributes), lazily on dask-backed data.

Validation (:func:`rrim.io.reading.read_source`) and inversion (:func:`rrim.jobs.invert.invert_rows`)
are the file job's own. Eager data run through the given :class:`~rrim.inversion.engine.Engine`; each
dask chunk runs with an engine of its own for the same verified model (the :class:`LoadedModel` travels, so
a worker process reads the file once, for its cached session, instead of loading the model per chunk).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import xarray as xr

from rrim.inversion.engine import Engine
from rrim.inversion.flags import FLAGS
from rrim.io.netcdf import copied_coords, input_grid_attrs, stored_coord
from rrim.io.provenance import provenance_attrs
from rrim.io.reading import read_source
from rrim.io.schema import GRIDS, ArchiveOptions
from rrim.jobs.invert import invert_rows, skipped_warning
from rrim.models.loading import LoadedModel

log = logging.getLogger(__name__)

_FIT_DIM = "omega_model"  # the refit's ω axis inside apply_ufunc (the input's ω axis has another size)


def _invert_block(rows, temperatures, *, src, opts, engine=None, model: LoadedModel | None = None, provider="auto",
                  batch_size=None):
    """One block: rows (..., n_in) in file units, temperatures (...) K → the output arrays, with ``engine``
    or, for a dask chunk, an engine of its own for ``model`` (its session verifies the file's sha256)."""
    if engine is None:
        with Engine(model, provider, tf32=opts.tf32, batch_size=batch_size) as own:
            return _invert_block(rows, temperatures, src=src, opts=opts, engine=own)
    lead = rows.shape[:-1]
    out = invert_rows(rows.reshape(-1, rows.shape[-1]).astype(np.float64), temperatures.reshape(-1), src, engine, opts)
    return tuple(np.asarray(out[name]).reshape(lead + out[name].shape[1:]).astype(dtype)
                 for name, (dtype, _, _) in src.variables(opts).items())


def invert_dataset(ds: xr.Dataset, engine: Engine, opts: ArchiveOptions = ArchiveOptions()) -> xr.Dataset:
    """Glue functions of the spectra ``opts.var`` of ``ds`` inverted with ``engine``: the variables of
    ``opts.output_variables()`` over the leading dimensions, the grids ``Omega`` and ``omega`` (meV),
    the leading coordinates, and the provenance attributes (without an input hash). Raises
    :class:`rrim.io.paths.ArchiveError` for bad input."""
    model, dim = engine.model, opts.dim
    src = read_source(ds, ds.encoding.get("source", "<in-memory dataset>"), model, opts)
    variables = src.variables(opts)
    coords = dict(copied_coords(src, opts))
    data = src.data.drop_vars([k for k in src.data.coords if k != dim])  # coordinates: those an output copies, below
    temps = xr.DataArray(src.temperature, dims=src.lead)
    block = dict(src=dataclasses.replace(src, data=None), opts=opts)
    if data.chunks is not None:
        temps = temps.chunk({d: data.chunksizes[d] for d in src.lead})
        block.update(model=model, provider=engine.session.requested,
                     batch_size=engine.batch_size)
    else:
        block.update(engine=engine)
    cores = {"scattering_rate_fit": [_FIT_DIM]}
    results = xr.apply_ufunc(
        _invert_block, data, temps, kwargs=block,
        input_core_dims=[[dim], []],
        output_core_dims=[cores.get(name, list(core)) for name, (_, core, _) in variables.items()],
        output_dtypes=[np.dtype(v[0]) for v in variables.values()],
        dask="parallelized",
        dask_gufunc_kwargs={"output_sizes": {"Omega": len(model.info.Omega), _FIT_DIM: len(model.info.omega),
                                             "omega_input": src.omega_stored.size}},
        keep_attrs=False,
    )
    out = xr.Dataset(dict(zip(variables, results))).rename({_FIT_DIM: "omega"})
    out = out.assign_coords(Omega=("Omega", model.info.Omega.values, GRIDS["Omega"]),
                            omega=("omega", model.info.omega.values, GRIDS["omega"]),
                            omega_input=("omega_input", src.omega_stored, input_grid_attrs(src)),
                            **{name: (c.dims, *stored_coord(c)) for name, c in coords.items()})
    for name, (_, _, attrs) in variables.items():
        out[name].attrs = dict(attrs)
    out.attrs = provenance_attrs(src, model, opts, "n/a (in-memory dataset)", engine.provider,
                                 str(ds.attrs.get("history", "")), {})
    out.attrs.pop("flag_counts")
    out.attrs["flag_meanings"] = json.dumps(FLAGS)
    if data.chunks is None:
        counts = {k: int(np.count_nonzero(out["flags"].values & bit)) for k, bit in FLAGS.items()}
        warning = skipped_warning(str(src.path), counts, src.n_spectra, src)
        if warning:
            log.warning("%s", warning)
    return out
