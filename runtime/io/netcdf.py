"""Creating an output's NetCDF structure (netCDF4): dimensions, grids, chunked compressed variables and
the leading coordinates copied from the input."""
from __future__ import annotations

import logging
import math

import numpy as np

from rrim.io.paths import ArchiveError, display_name
from rrim.io.reading import Source
from rrim.io.schema import (BAND_VARIABLES, GRIDS, IMPURITY_VARIABLES, INPUT_GRID_ATTRS, OUTPUT_VARIABLES,
                            TEMPERATURE_USED, ArchiveOptions)
from rrim.models.loading import LoadedModel

log = logging.getLogger(__name__)


#: zlib level of the outputs (with byte shuffling).
OUTPUT_COMPLEVEL = 4
#: Spectra per NetCDF chunk of the outputs (whole spectra only).
OUTPUT_CHUNK_SPECTRA = 256
#: At most this many values per chunk along the input's ω axis (scattering_rate_fit_input; 4 MiB as float32).
INPUT_CHUNK_VALUES = 1 << 20
#: HDF5 chunk cache per output variable (bytes).
OUTPUT_CHUNK_CACHE_BYTES = 4 << 20


def _stored_dtype(dtype):
    """The dtype an output stores a leading coordinate of ``dtype`` as (``str`` for text); None if none.
    Dates and durations come only from datasets opened with time decoding (the accessor's; files are
    read undecoded): they stay as they are, for xarray to encode."""
    dtype = np.dtype(dtype)
    if dtype.kind in "Mm":
        return dtype
    if dtype.kind in "OUS":
        return str
    if dtype.kind == "b":
        return np.dtype("i1")
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype("f4")
    if dtype.kind in "iuf" and dtype.itemsize <= 8:
        return dtype
    return None


def _chunk_shape(shape: tuple, target: int) -> tuple:
    if not shape:
        return ()
    k = next(i for i in range(len(shape)) if math.prod(shape[i + 1:]) <= target)
    block = max(1, min(shape[k], target // max(1, math.prod(shape[k + 1:]))))
    return (1,) * k + (block,) + tuple(shape[k + 1:])


def copied_coords(src: Source, opts: ArchiveOptions):
    """(name, coordinate) of the leading coordinates an output copies; :class:`ArchiveError` for one whose
    dtype the output cannot hold (checked before the output is created). A ``temperature`` index coordinate
    stays; another ``temperature`` coordinate gives way to the output's own variable (what was used)."""
    variables = src.variables(opts)
    reserved = {*variables, *OUTPUT_VARIABLES, *BAND_VARIABLES, *IMPURITY_VARIABLES, TEMPERATURE_USED}
    for name, c in src.data.coords.items():
        if name == src.data.dims[-1] or not set(c.dims) <= set(src.lead) or name in ("Omega", "omega"):
            continue
        if name == "temperature":
            if name in variables:
                continue
        elif name in reserved:
            log.warning("%s: coordinate %r not copied: the output has its own variable of that name",
                        display_name(src.path.name), name)
            continue
        if _stored_dtype(c.dtype) is None:
            raise ArchiveError(f"{src.path}: coordinate {name!r} of variable {opts.var!r} has dtype {c.dtype}, which "
                               "the output cannot hold (numbers, booleans or strings only)")
        yield name, c


def stored_coord(c) -> tuple[np.ndarray, dict]:
    """A copied coordinate as an output holds it: (values, attributes) — text as str, booleans as 0/1."""
    values = np.asarray(c.values)
    stored = _stored_dtype(values.dtype)
    attrs = {k: a for k, a in c.attrs.items() if not k.startswith("_")}
    if values.dtype.kind == "b":
        attrs["comment"] = "boolean coordinate stored as 0 (false) / 1 (true)"
    return (values.astype(str) if stored is str else values.astype(stored)), attrs


def copy_coords(nc, coords) -> None:
    for name, c in coords:
        values, attrs = stored_coord(c)
        if values.dtype.kind == "U":
            v = nc.createVariable(name, str, c.dims)
            v[...] = values.astype(object) if values.ndim else str(values)
        else:
            v = nc.createVariable(name, values.dtype, c.dims)
            v[...] = values
        v.setncatts(attrs)


def input_grid_attrs(src: Source) -> dict:
    """Attributes of the output's ``omega_input`` coordinate: the input ω coordinate's, with a long name and axis."""
    return {**INPUT_GRID_ATTRS, **src.omega_attrs, "axis": "X"}


def create_variables(nc, src: Source, model: LoadedModel, opts: ArchiveOptions, coords=()) -> None:
    """Dimensions, grids and the (empty) output variables; each names the copied non-index ``coords``
    ((name, coordinate) pairs) on its dimensions in its ``coordinates`` attribute (CF)."""
    info = model.info
    auxiliary = [(name, set(c.dims)) for name, c in coords if c.dims != (name,)]
    for d, n in zip(src.lead, src.shape):
        nc.createDimension(d, n)
    nc.createDimension("Omega", len(info.Omega))
    nc.createDimension("omega", len(info.omega))
    nc.createDimension("omega_input", src.omega_stored.size)
    for name, grid in (("Omega", info.Omega), ("omega", info.omega)):
        v = nc.createVariable(name, "f8", (name,))
        v[:] = grid.values
        v.setncatts(GRIDS[name])
    v = nc.createVariable("omega_input", src.omega_stored.dtype, ("omega_input",))
    v[:] = src.omega_stored
    v.setncatts(input_grid_attrs(src))
    n_in = src.omega_stored.size
    chunks = {False: _chunk_shape(src.shape, OUTPUT_CHUNK_SPECTRA),
              True: _chunk_shape(src.shape, max(1, min(OUTPUT_CHUNK_SPECTRA, INPUT_CHUNK_VALUES // n_in)))}
    core_sizes = {"Omega": len(info.Omega), "omega": len(info.omega), "omega_input": min(n_in, INPUT_CHUNK_VALUES)}
    for name, (dtype, core, attrs) in src.variables(opts).items():
        dims = src.lead + core
        sizes = chunks["omega_input" in core] + tuple(core_sizes[c] for c in core)
        kw = dict(zlib=True, complevel=OUTPUT_COMPLEVEL, shuffle=True, chunksizes=sizes) if dims else {}
        v = nc.createVariable(name, dtype, dims, fill_value=None if dtype == "u1" else np.nan, **kw)
        # chunks are written whole, once: a small cache keeps memory flat (the default grows to 16+ MiB per variable)
        v.set_var_chunk_cache(size=OUTPUT_CHUNK_CACHE_BYTES, nelems=61, preemption=1.0)
        v.setncatts(attrs)
        names = [a for a, a_dims in auxiliary if a_dims <= set(dims)]
        if names:
            v.setncattr("coordinates", " ".join(names))
