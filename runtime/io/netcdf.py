"""Creating an output's NetCDF structure (netCDF4): dimensions, grids, chunked compressed variables and
the leading coordinates copied from the input."""
from __future__ import annotations

import logging
import math

import numpy as np

from rrim.io.paths import ArchiveError, display_name
from rrim.io.reading import Source
from rrim.io.schema import BAND_VARIABLES, IMPURITY_VARIABLES, OUTPUT_VARIABLES, ArchiveOptions
from rrim.models.loading import LoadedModel

log = logging.getLogger(__name__)


#: zlib level of the outputs (with byte shuffling).
OUTPUT_COMPLEVEL = 4
#: Spectra per NetCDF chunk of the outputs (whole spectra only).
OUTPUT_CHUNK_SPECTRA = 256
#: HDF5 chunk cache per output variable (bytes).
OUTPUT_CHUNK_CACHE_BYTES = 4 << 20


def _stored_dtype(dtype):
    """The dtype an output stores a leading coordinate of ``dtype`` as (``str`` for text); None if none."""
    dtype = np.dtype(dtype)
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
    dtype the output cannot hold (checked before the output is created)."""
    for name, c in src.data.coords.items():
        if name == src.data.dims[-1] or not set(c.dims) <= set(src.lead) or name in ("Omega", "omega"):
            continue
        if name == "temperature":  # the output's own temperature variable holds what was used
            continue
        if name in OUTPUT_VARIABLES or name in BAND_VARIABLES or name in IMPURITY_VARIABLES:
            log.warning("%s: coordinate %r not copied: the output has its own variable of that name",
                        display_name(src.path.name), name)
            continue
        if _stored_dtype(c.dtype) is None:
            raise ArchiveError(f"{src.path}: coordinate {name!r} of variable {opts.var!r} has dtype {c.dtype}, which "
                               "the output cannot hold (numbers, booleans or strings only)")
        yield name, c


def copy_coords(nc, coords) -> None:
    for name, c in coords:
        values = np.asarray(c.values)
        stored = _stored_dtype(values.dtype)
        if stored is str:
            v = nc.createVariable(name, str, c.dims)
            v[...] = values.astype(str).astype(object) if values.ndim else str(values)
        else:
            v = nc.createVariable(name, stored, c.dims)
            v[...] = values.astype(stored)
        attrs = {k: a for k, a in c.attrs.items() if not k.startswith("_")}
        if values.dtype.kind == "b":
            attrs["comment"] = "boolean coordinate stored as 0 (false) / 1 (true)"
        v.setncatts(attrs)


def create_variables(nc, src: Source, model: LoadedModel, opts: ArchiveOptions) -> None:
    info = model.info
    for d, n in zip(src.lead, src.shape):
        nc.createDimension(d, n)
    nc.createDimension("Omega", len(info.Omega))
    nc.createDimension("omega", len(info.omega))
    for name, grid, long in (("Omega", info.Omega, "boson energy Ω"), ("omega", info.omega, "optical energy ω (the model's grid)")):
        v = nc.createVariable(name, "f8", (name,))
        v[:] = grid.values
        v.setncatts({"units": "meV", "long_name": long})
    chunk = _chunk_shape(src.shape, OUTPUT_CHUNK_SPECTRA)
    for name, (dtype, core, attrs) in opts.output_variables().items():
        dims = src.lead + core
        sizes = chunk + tuple(len(info.Omega) if c == "Omega" else len(info.omega) for c in core)
        kw = dict(zlib=True, complevel=OUTPUT_COMPLEVEL, shuffle=True, chunksizes=sizes) if dims else {}
        v = nc.createVariable(name, dtype, dims, fill_value=None if dtype == "u1" else np.nan, **kw)
        # chunks are written whole, once: a small cache keeps memory flat (the default grows to 16+ MiB per variable)
        v.set_var_chunk_cache(size=OUTPUT_CHUNK_CACHE_BYTES, nelems=61, preemption=1.0)
        v.setncatts(attrs)
