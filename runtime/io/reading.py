"""Input archives: opening, validating and mapping them onto the model's ω grid (docs/ARCHITECTURE.md §6).

**Input** (opened read-only through xarray, netCDF4 engine, h5netcdf accepted): a variable
(default ``scattering_rate``) with a core dimension (default ``omega``) and any leading
dimensions; a coordinate on the core dimension and ``units`` attributes on both, each 'meV' or
'cm-1' (missing or unknown → refused); the temperature in K as a scalar attribute of the variable
or the file, or as a coordinate/variable (default name ``temperature``) that is scalar or spans
leading dimensions; an explicit ``temperature`` option overrides all of these. ω must be strictly
monotonic (a decreasing axis is read in reverse; repeated or unordered values are refused). The
spectra are linearly interpolated onto the model's ω grid.

The ω axis against the model's grid (observed points, trained coverage, sampling density, cropping):
:mod:`rrim.io.omega_axis`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rrim import files
from rrim.inversion.feeds import mask_aware
from rrim.io.hdf5 import check_self_contained
from rrim.io.omega_axis import axis_interpolation, bracket, trained_coverage
from rrim.io.paths import ArchiveError, check_encodable
from rrim.io.schema import ArchiveOptions
from rrim.models.loading import LoadedModel
from rrim.physics.units import ENERGY_EXAMPLES, TEMPERATURE_EXAMPLES, energy_factor, to_kelvin

#: Most spectra (product of the leading sizes) and most input ω points one archive may declare.
MAX_SPECTRA = 10**8
MAX_OMEGA_POINTS = 1 << 24
#: Highest temperature accepted (K): far above any model's range (flagged there), below where the
#: kernel's Bose and Fermi factors overflow.
MAX_TEMPERATURE_K = 1e6


def open_dataset(path):
    """Open a NetCDF file read-only and lazily (netCDF4 engine, then h5netcdf); :class:`ArchiveError` if
    impossible, if it is not a regular file, or if it keeps data outside itself (:func:`check_self_contained`)."""
    import xarray as xr

    path = Path(path)
    check_encodable(path)
    kind = files.file_kind(path)
    if kind == "missing":
        raise ArchiveError(f"{path}: no such file")
    if kind is not None:
        raise ArchiveError(f"{path}: is {kind}, not a regular file")
    if path.stat().st_size == 0:
        raise ArchiveError(f"{path}: file is empty, not a NetCDF file")
    check_self_contained(path)
    errors = []
    for engine in ("netcdf4", "h5netcdf"):
        try:
            return xr.open_dataset(path, engine=engine, decode_times=False, decode_timedelta=False, cache=False)
        except ImportError:
            continue
        except Exception as e:  # the engines raise OSError, ValueError, KeyError… for foreign bytes
            errors.append(f"{engine}: {e}")
    raise ArchiveError(f"{path}: not a readable NetCDF file ({'; '.join(errors) or 'no engine'})")


@dataclass
class Source:
    """A validated input: the variable, its leading dims, interpolation onto the model grid, temperatures.

    ``lo_idx``, ``hi_idx``, ``t_hi``: the interpolation of fully finite spectra onto ``omega_model``
    (the model's grid, meV); ``valid`` (n_ω,) bool: the model points they observe; ``coverage``
    (start_max, end_min) meV: the trained coverage of a mask-aware model that serves this file
    (None: NaN anywhere skips a spectrum); ``tol``: the meV tolerance of range comparisons."""

    path: Path
    data: object  # DataArray, dims (*lead, dim), lazy
    lead: tuple
    shape: tuple
    omega_meV: np.ndarray  # input ω as stored, in meV
    y_factor: float
    lo_idx: np.ndarray
    hi_idx: np.ndarray
    t_hi: np.ndarray
    valid: np.ndarray
    grid_flags: int
    temperature_values: np.ndarray  # K, an array that broadcasts to ``shape`` (as small as the file has it)
    omega_model: np.ndarray | None = None  # the model's ω grid, meV
    coverage: tuple | None = None
    tol: float = 0.0
    omega_stored: np.ndarray | None = None  # the input ω axis as stored (its own units)
    omega_attrs: dict = field(default_factory=dict)  # the input ω coordinate's attributes
    y_units: str = "meV"  # the spectra's units as the file names them
    attrs: dict = field(default_factory=dict)  # the input's global attributes

    @property
    def n_spectra(self) -> int:
        return math.prod(self.shape)

    @property
    def temperature(self) -> np.ndarray:
        """Temperatures (K) of every spectrum, shape ``shape`` (a read-only view: nothing is allocated)."""
        return np.broadcast_to(self.temperature_values, self.shape)

    def temperatures(self, key) -> np.ndarray:
        """Temperatures (K) of the spectra ``key`` selects, one per spectrum."""
        return self.temperature[key].reshape(-1)

    def variables(self, opts: ArchiveOptions) -> dict:
        """The output variables of ``opts`` for this input (:meth:`ArchiveOptions.output_variables`)."""
        return opts.output_variables(self.lead, self.y_units)

    def interpolate(self, y: np.ndarray) -> np.ndarray:
        """Rows on the input ω axis (m, n_in), in the file's unit → rows on the model's ω grid (m, n_ω), meV."""
        return (y[:, self.lo_idx] * (1.0 - self.t_hi) + y[:, self.hi_idx] * self.t_hi) * self.y_factor

    def on_grid(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows (m, n_in) as stored → (y (m, n_ω) meV, observed (m, n_ω) bool). Without ``coverage``
        every row observes ``valid`` (NaN propagates: the engine skips such rows). With it, NaN
        channels are unobserved: each pattern of them gets its own interpolation, and the unobserved
        points of a row hold values interpolated from its observed ones (finite; the model, the noise
        estimate and the residual use only the observed points)."""
        with np.errstate(invalid="ignore"):
            y = self.interpolate(rows)
        observed = np.broadcast_to(self.valid, y.shape)
        if self.coverage is None:
            return y, observed
        nan = np.isnan(rows)
        holed = np.flatnonzero(nan.any(axis=1))
        if holed.size == 0:
            return y, observed
        observed = observed.copy()
        patterns, which = np.unique(nan[holed], axis=0, return_inverse=True)
        w_in = self.omega_meV
        for k, pattern in enumerate(patterns):
            idx = holed[which.reshape(-1) == k]
            keep = np.flatnonzero(~pattern)
            if keep.size < 2:
                observed[idx] = False
                y[idx] = 0.0
                continue
            keep = keep[np.argsort(w_in[keep])]
            lo, hi, t, obs = bracket(w_in[keep], self.omega_model, self.tol)
            part = rows[np.ix_(idx, keep)]
            y[idx] = (part[:, lo] * (1.0 - t) + part[:, hi] * t) * self.y_factor
            observed[idx] = obs
            if 2 <= np.count_nonzero(obs) < obs.size:  # fill the unobserved points from the observed ones
                lo, hi, t, _ = bracket(self.omega_model[obs], self.omega_model[~obs], 0.0)
                seen = y[np.ix_(idx, obs)]
                y[np.ix_(idx, ~obs)] = seen[:, lo] * (1.0 - t) + seen[:, hi] * t
        return y, observed

    def trained(self, rows: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(m,) bool: rows whose coverage the mask-aware model was trained for (all True without
        ``coverage``); :func:`~rrim.io.omega_axis.trained_coverage` on each row's finite channels."""
        if self.coverage is None:
            return np.ones(len(rows), bool)
        finite = ~np.isnan(rows[:, np.argsort(self.omega_meV)])
        w = np.sort(self.omega_meV)
        any_finite = finite.any(axis=1)
        first = np.where(any_finite, w[np.argmax(finite, axis=1)], np.inf)
        last = np.where(any_finite, w[w.size - 1 - np.argmax(finite[:, ::-1], axis=1)], -np.inf)
        return trained_coverage(first, last, observed, self.omega_model, self.coverage, self.tol)


def _units(attrs: dict, path: Path, what: str, override: str | None, option: str) -> tuple[float, str]:
    """(factor to meV, the unit's name) for ``what``: ``override`` (the ``option`` given) else its ``units``."""
    unit = attrs.get("units") if override is None else override
    source = f"{option} {override!r}" if override is not None else f"{what}'s units"
    if unit is None:
        raise ArchiveError(f"{path}: {what} has no 'units' attribute; set it (e.g. 'meV', 'cm-1', 'THz') or pass {option}")
    try:
        return energy_factor(unit if isinstance(unit, str) else repr(unit), name=what), str(unit)
    except ValueError as e:
        reason = str(e).split("; accepted")[0].split(" (", 1)[-1].rstrip(")")
        raise ArchiveError(f"{path}: {what} has unknown units {unit!r} ({source}: {reason}); accepted: any energy, "
                           f"wavenumber or frequency unit, e.g. {ENERGY_EXAMPLES}, or pass {option}") from None


def _temperature(ds, da, path: Path, opts: ArchiveOptions, lead: tuple, shape: tuple) -> np.ndarray:
    """Temperatures in K, an array that broadcasts to the leading shape (never allocated at that size).

    Units: ``opts.temperature_units`` if given, else the variable's ``units`` attribute; an attribute
    named ``<name>_K`` is in K; a temperature without units is refused."""
    name, given = opts.temperature_var, opts.temperature_units
    hint = f"set its 'units' attribute (e.g. {TEMPERATURE_EXAMPLES}) or pass --temperature-units"
    if opts.temperature is not None:
        return _checked_kelvin(np.asarray(float(opts.temperature)), "K" if given is None else given, path,
                               "--temperature", "--temperature-units")
    if name in ds.variables or name in da.coords:
        tv = da.coords[name] if name in da.coords else ds[name]
        if not _is_real(tv.dtype):
            raise ArchiveError(f"{path}: variable {name!r} has dtype {tv.dtype}; temperatures must be numbers "
                               f"with units (e.g. {TEMPERATURE_EXAMPLES})")
        unit = tv.attrs.get("units") if given is None else given
        if unit is None:
            raise ArchiveError(f"{path}: variable {name!r} has no units; {hint}")
        extra = [d for d in tv.dims if d not in lead]
        if extra:
            raise ArchiveError(f"{path}: variable {name!r} has dimensions {extra} that the spectra of "
                               f"{opts.var!r} do not have; it must be scalar or span leading dimensions {list(lead)}")
        order = [d for d in lead if d in tv.dims]
        t = np.asarray(tv.transpose(*order).values, dtype=np.float64)
        t = t.reshape([n if d in tv.dims else 1 for d, n in zip(lead, shape)])  # broadcasts to ``shape``
        return _checked_kelvin(t, unit, path, f"variable {name!r}", "--temperature-units" if given else f"{name!r}'s units")
    for key, unit in ((name, given), (f"{name}_K", "K" if given is None else given)):
        raw = da.attrs.get(key, ds.attrs.get(key))
        if raw is None:
            continue
        try:
            t = np.asarray(float(np.asarray(raw).item()))
        except (TypeError, ValueError):
            raise ArchiveError(f"{path}: attribute {key!r} = {raw!r} is not a temperature in K") from None
        if unit is None:
            raise ArchiveError(f"{path}: attribute {key!r} = {raw!r} has no units; name it {name + '_K'!r} (kelvin) "
                               "or pass --temperature-units")
        return _checked_kelvin(t, unit, path, f"attribute {key!r}", "--temperature-units" if given else "its name")
    raise ArchiveError(f"{path}: no temperature for variable {opts.var!r}: no variable, coordinate or "
                       f"attribute {name!r} (or {name + '_K'!r}); pass --temperature K")


def _checked_kelvin(t: np.ndarray, unit: str, path: Path, what: str, source: str) -> np.ndarray:
    """Temperatures ``t`` in ``unit`` → K, checked finite, ≥ 0 K and ≤ :data:`MAX_TEMPERATURE_K`."""
    try:
        k = to_kelvin(t, unit if isinstance(unit, str) else repr(unit), name=what)
    except ValueError as e:
        raise ArchiveError(f"{path}: {what} has units {unit!r} ({source}), which are not a temperature; accepted: "
                           f"e.g. {TEMPERATURE_EXAMPLES}") from None
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ArchiveError(f"{path}: temperature {what} must be finite and ≥ 0 K")
    if np.any(k > MAX_TEMPERATURE_K):
        raise ArchiveError(f"{path}: temperature {what} reaches {float(np.max(k)):.6g} K, above the "
                           f"{MAX_TEMPERATURE_K:g} K rrim accepts")
    return k


def _is_real(dtype) -> bool:
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


def read_source(ds, path, model: LoadedModel, opts: ArchiveOptions) -> Source:
    """Validate an opened dataset against the options and the model; :class:`ArchiveError` naming the problem."""
    path = Path(path)
    if opts.var not in ds.data_vars:
        raise ArchiveError(f"{path}: no variable {opts.var!r}; the file has {sorted(map(str, ds.data_vars)) or 'none'} (use --var)")
    da = ds[opts.var]
    if opts.dim not in da.dims:
        raise ArchiveError(f"{path}: variable {opts.var!r} has dimensions {list(da.dims)}, none named {opts.dim!r} (use --dim)")
    if da.dims.count(opts.dim) > 1:
        raise ArchiveError(f"{path}: variable {opts.var!r} has dimension {opts.dim!r} {da.dims.count(opts.dim)} times; "
                           "it must be the one ω axis of each spectrum")
    if not _is_real(da.dtype):
        raise ArchiveError(f"{path}: variable {opts.var!r} has dtype {da.dtype}; scattering rates must be real numbers")
    if opts.dim not in ds.coords:
        raise ArchiveError(f"{path}: dimension {opts.dim!r} of variable {opts.var!r} has no coordinate (ω values with units)")
    lead = tuple(d for d in da.dims if d != opts.dim)
    clash = {"Omega", "omega", "omega_input"} & set(lead)
    if clash:
        raise ArchiveError(f"{path}: variable {opts.var!r} has leading dimension(s) {sorted(clash)}, names the output reserves for its grids")
    shape = tuple(da.sizes[d] for d in lead)
    if math.prod(shape) == 0:
        raise ArchiveError(f"{path}: variable {opts.var!r} holds no spectra (shape {dict(da.sizes)})")
    if math.prod(shape) > MAX_SPECTRA or da.sizes[opts.dim] > MAX_OMEGA_POINTS:
        raise ArchiveError(f"{path}: variable {opts.var!r} declares {math.prod(shape)} spectra of {da.sizes[opts.dim]} "
                           f"points (shape {dict(da.sizes)}); rrim reads at most {MAX_SPECTRA} spectra of at most "
                           f"{MAX_OMEGA_POINTS} points per file: split it")
    coord = ds[opts.dim]
    if coord.dims != (opts.dim,):
        raise ArchiveError(f"{path}: coordinate {opts.dim!r} has dimensions {list(coord.dims)}; it must be "
                           f"1-D along {opts.dim!r} (one ω axis shared by all spectra)")
    if not _is_real(coord.dtype):
        raise ArchiveError(f"{path}: coordinate {opts.dim!r} has dtype {coord.dtype}; ω values must be real numbers")
    w_factor, _ = _units(ds[opts.dim].attrs, path, f"coordinate {opts.dim!r}", opts.omega_units, "--omega-units")
    y_factor, y_units = _units(da.attrs, path, f"variable {opts.var!r}", opts.rate_units, "--rate-units")
    w_in = np.asarray(ds[opts.dim].values, dtype=np.float64) * w_factor
    eps = float(np.finfo(coord.dtype).eps) if np.issubdtype(coord.dtype, np.floating) else 0.0
    reg = model.info.regularization
    measured = reg.get("measured_range_meV") if mask_aware(model) else None
    model_w = model.info.omega.values
    lo, hi, t, valid, flags, served, tol = axis_interpolation(path, opts.dim, w_in, model_w, opts.crop, eps, measured)
    temps = _temperature(ds, da, path, opts, lead, shape)
    return Source(path, da.transpose(*lead, opts.dim), lead, shape, w_in, y_factor, lo, hi, t, valid, flags, temps,
                  model_w, tuple(measured) if served else None, tol, np.asarray(coord.values),
                  {k: v for k, v in coord.attrs.items() if not str(k).startswith("_")} | (
                      {"units": opts.omega_units} if opts.omega_units else {}), y_units,
                  dict(ds.attrs))
