"""NetCDF archives of scattering rates → NetCDF archives of glue functions (DESIGN §3).

**Input** (opened read-only through xarray, netCDF4 engine, h5netcdf accepted): a variable
(default ``scattering_rate``) with a core dimension (default ``omega``) and any leading
dimensions; a coordinate on the core dimension and ``units`` attributes on both, each 'meV' or
'cm-1' (missing or unknown → refused); the temperature in K as a scalar attribute of the variable
or the file, or as a coordinate/variable (default name ``temperature``) that is scalar or spans
leading dimensions; an explicit ``temperature`` option overrides all of these. ω must be strictly
monotonic (a decreasing axis is read in reverse; repeated or unordered values are refused). The
spectra are linearly interpolated onto the model's ω grid. The data must cover exactly the
model's ω range: otherwise the file is refused, unless ``crop`` is set, in which case data
beyond the range are dropped (flag ``omega_cropped``) and model points without data hold the
edge value (flag ``omega_extrapolated``, left out of the residual).

**Output** (written with netCDF4 because xarray cannot write a NetCDF file region by region
without dask; zlib-compressed, chunked by whole spectra; to a temporary file beside the target,
then ``os.replace``): ``glue`` (…, Omega), ``scattering_rate_fit`` (…, omega) on the *model's*
ω grid in meV, ``residual``, ``flags`` (bits in :mod:`rrim.inversion`), ``lambda``,
``omega_log``, ``temperature``, the leading coordinates, and CF-1.12/ACDD-1.3 provenance
attributes (see :data:`PROVENANCE_ATTRIBUTES`). Spectra are read, inverted and written in
slabs of about ``chunk_spectra`` (fewer when the input ω axis is long: at most
:data:`SLAB_VALUES` input values) so that memory does not grow with the archive.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import hashlib
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from . import files
from .inversion import DEFAULT_BATCH_SIZE, FLAG_CROPPED, FLAG_EXTRAPOLATED, FLAGS, invert, mask_aware
from .models import LoadedModel
from .quantities import coupling_lambda, omega_log
from .uncertainty import calibration_digest
from .units import energy_factor

log = logging.getLogger(__name__)

OUTPUT_FORMAT = "2"  # 2: noise_estimate, ood_score, out_of_distribution flag, optional band and impurity
#: Spectra read, inverted and written per slab.
DEFAULT_CHUNK_SPECTRA = 4096
#: At most this many input values are read per slab (32 MiB as float64), however long the input ω axis.
SLAB_VALUES = 1 << 22
#: zlib level of the outputs (with byte shuffling).
OUTPUT_COMPLEVEL = 4
#: Spectra per NetCDF chunk of the outputs (whole spectra only).
OUTPUT_CHUNK_SPECTRA = 256
#: HDF5 chunk cache per output variable (bytes).
OUTPUT_CHUNK_CACHE_BYTES = 4 << 20
#: Relative tolerance on ω range comparisons (unit conversions round at ~1e-16); an ω axis stored
#: with less precision (float32) gets that precision's rounding on top.
RANGE_RTOL = 1e-9
#: Most spectra (product of the leading sizes) and most input ω points one archive may declare.
MAX_SPECTRA = 10**8
MAX_OMEGA_POINTS = 1 << 24
#: Highest temperature accepted (K): far above any model's range (flagged there), below where the
#: kernel's Bose and Fermi factors overflow.
MAX_TEMPERATURE_K = 1e6
TEMPERATURE_UNITS = ("K", "k", "kelvin", "Kelvin", "degK")
PROVENANCE_ATTRIBUTES = (
    "Conventions", "title", "summary", "history", "source", "date_created", "product_version",
    "rrim_version", "rrim_output_format", "model_name", "model_version", "model_sha256", "model_form",
    "execution_provider", "input_file", "input_sha256", "input_variable", "options", "temperature_K",
    "omega_input_range_meV", "flag_counts", "calibration_sha256",
)


#: Output variables: name → (NetCDF dtype, core dimensions after the leading ones, attributes).
OUTPUT_VARIABLES = {
    "glue": ("f4", ("Omega",), {"long_name": "electron-boson glue function I²χ(Ω)", "units": "1"}),
    "scattering_rate_fit": ("f4", ("omega",), {
        "long_name": "refit scattering rate A·I²χ on the model's ω grid", "units": "meV",
        "comment": "on the model's ω grid (coordinate omega, meV), not the input's grid"}),
    "residual": ("f8", (), {"long_name": "relative RMS residual ‖A·I²χ − 1/τ‖/‖1/τ‖ on the model's ω grid", "units": "1"}),
    "flags": ("u1", (), {"long_name": "quality flags", "flag_masks": np.array(list(FLAGS.values()), dtype=np.uint8),
                         "flag_meanings": " ".join(FLAGS)}),
    "lambda": ("f8", (), {"long_name": "electron-boson coupling λ = 2∫I²χ(Ω)/Ω dΩ", "units": "1"}),
    "omega_log": ("f8", (), {"long_name": "logarithmic average frequency ω_ln", "units": "meV"}),
    "temperature": ("f8", (), {"long_name": "temperature used for the inversion", "units": "K"}),
    "noise_estimate": ("f8", (), {"long_name": "estimated noise σ̂ of the scattering rate (robust std of second differences/√6)",
                                  "units": "meV"}),
    "ood_score": ("f8", (), {"long_name": "out-of-distribution score: smaller refit residual (rRIM or non-negative "
                                          "consistency fit) over √(σ̂² + (β·RMS 1/τ)²)",
                             "units": "1", "comment": "flag out_of_distribution above the model's calibrated threshold; "
                                                       "below it the rRIM's own score (the consistency fit is skipped); "
                                                       "NaN when the model has no calibration"}),
}
#: Written on request: the calibrated band (``uncertainty``) and the impurity rate (``impurity``).
BAND_VARIABLES = {
    name: ("f4", ("Omega",), {"long_name": f"{side} bound of the calibrated uncertainty band of I²χ(Ω)", "units": "1"})
    for name, side in (("glue_lower", "lower"), ("glue_upper", "upper"))}
IMPURITY_VARIABLES = {"impurity_rate": ("f8", (), {
    "long_name": "impurity (ω-independent) scattering rate, estimated and removed before the inversion", "units": "meV",
    "comment": "included in scattering_rate_fit; see rrim.impurity for how well it is identified"})}


class ArchiveError(ValueError):
    """An archive that cannot be read or written; the message names file, variable and reason."""


@dataclass(frozen=True)
class ArchiveOptions:
    """What to read and how; ``to_json()`` is what idempotent reprocessing compares."""

    var: str = "scattering_rate"
    dim: str = "omega"
    temperature_name: str = "temperature"
    temperature: float | None = None
    crop: bool = False
    smoothing_meV: float | None = None
    uncertainty: float | None = None  # coverage of the band (0.68 or 0.9); None: no band
    impurity: bool = False
    tf32: bool = False  # TF32 on CUDA: changes results at the 1e-3 level, so it is part of the identity

    def output_variables(self) -> dict:
        """The variables these options write: :data:`OUTPUT_VARIABLES` and the requested extras."""
        return {**OUTPUT_VARIABLES, **(BAND_VARIABLES if self.uncertainty is not None else {}),
                **(IMPURITY_VARIABLES if self.impurity else {})}

    def to_json(self) -> str:
        d = asdict(self)
        if not d["tf32"]:  # recorded only when on: outputs made before it was recorded stay current
            del d["tf32"]
        return json.dumps({**d, "output_format": OUTPUT_FORMAT}, sort_keys=True)


@dataclass
class ArchiveSummary:
    """What one archive job did (JSON-friendly via :meth:`to_dict`)."""

    input: str
    output: str
    n_spectra: int
    flag_counts: dict
    provider: str
    model: str
    model_sha256: str
    input_sha256: str
    seconds: float
    model_seconds: float
    preview: dict | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "preview"}
        d["spectra_per_second"] = self.n_spectra / self.seconds if self.seconds > 0 else None
        return d


def file_sha256(path, block: int = 1 << 20) -> str:
    """sha256 of a regular file's bytes, read in blocks (read-only; a FIFO or folder is refused)."""
    h = hashlib.sha256()
    try:
        with files.open_regular(path) as f:
            for b in iter(lambda: f.read(block), b""):
                h.update(b)
    except OSError as e:
        raise ArchiveError(f"{path}: cannot be read ({e.strerror or e})") from None
    return h.hexdigest()


def display_name(name: str) -> str:
    """A file name as text that any encoding can write (bytes that are not UTF-8 shown as \\xNN)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _hdf5_offsets(path: Path):
    """Offsets where an HDF5 superblock may start: 0, 512, 1024, 2048, … within the file."""
    size, off = path.stat().st_size, 0
    while off < size:
        yield off
        off = 512 if off == 0 else off * 2


def _is_hdf5(path: Path) -> bool:
    with files.open_regular(path) as f:
        for off in _hdf5_offsets(path):
            f.seek(off)
            if f.read(8) == b"\x89HDF\r\n\x1a\n":
                return True
    return False


@functools.lru_cache(maxsize=1)
def _hdf5():
    """The HDF5 library netCDF4 uses (already loaded in this process), through ctypes; None if not found."""
    import glob
    import netCDF4

    found = []
    try:
        with open("/proc/self/maps") as maps:
            found = [line.split()[-1] for line in maps if "/libhdf5" in line and "hdf5_hl" not in line]
    except OSError:
        pass
    here = Path(netCDF4.__file__).resolve().parent
    for pattern in ("../netcdf4.libs/libhdf5*", ".dylibs/libhdf5*", "../netCDF4.libs/libhdf5*"):
        found += [p for p in glob.glob(str(here / pattern)) if "hdf5_hl" not in p]
    import ctypes.util

    found += [p for p in [ctypes.util.find_library("hdf5")] if p]
    for path in found:
        try:
            lib = ctypes.PyDLL(path)  # PyDLL: calls hold the GIL, as netCDF4's own do
            visit = getattr(lib, "H5Lvisit2", None) or getattr(lib, "H5Lvisit")
        except (OSError, AttributeError):
            continue
        hid, c_int = ctypes.c_int64, ctypes.c_int
        for name, res, args in (("H5open", c_int, []), ("H5Eset_auto2", c_int, [hid, ctypes.c_void_p, ctypes.c_void_p]),
                                ("H5Fopen", hid, [ctypes.c_char_p, ctypes.c_uint, hid]),
                                ("H5Oopen", hid, [hid, ctypes.c_char_p, hid]), ("H5Iget_type", c_int, [hid]),
                                ("H5Dget_create_plist", hid, [hid]), ("H5Pget_layout", c_int, [hid]),
                                ("H5Pget_external_count", c_int, [hid]), ("H5Oclose", c_int, [hid]),
                                ("H5Pclose", c_int, [hid]), ("H5Fclose", c_int, [hid])):
            getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
        callback = ctypes.CFUNCTYPE(c_int, hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
        visit.restype, visit.argtypes = c_int, [hid, c_int, c_int, callback, ctypes.c_void_p]
        lib.H5open()
        lib.H5Eset_auto2(0, None, None)  # no error stacks on stderr (netCDF-C turns them off too)
        return lib, visit, callback
    return None


_H5L_HARD, _H5L_SOFT, _H5I_DATASET, _H5D_VIRTUAL = 0, 1, 5, 3


def check_self_contained(path) -> None:
    """Refuse (:class:`ArchiveError`) an HDF5-based archive that keeps data outside itself: a variable
    with external raw storage or a virtual (mapped) layout, or an external or user-defined link."""
    path = Path(path)
    if not _is_hdf5(path):
        return
    h5 = _hdf5()
    if h5 is None:
        raise ArchiveError(f"{path}: the HDF5 library could not be found to check that the file keeps its data "
                           "inside itself; refusing to read it")
    lib, visit, callback = h5
    fid = lib.H5Fopen(os.fsencode(path), 0, 0)  # read-only, default properties
    if fid < 0:
        raise ArchiveError(f"{path}: not a readable NetCDF file (HDF5 cannot open it)")
    outside = []

    def each(group, name, info, _):
        link_type = ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[0]
        label = display_name(os.fsdecode(name))
        if link_type not in (_H5L_HARD, _H5L_SOFT):
            outside.append(f"{label!r} is a link to another file")
        elif link_type == _H5L_HARD:
            obj = lib.H5Oopen(group, name, 0)
            if obj < 0:
                outside.append(f"{label!r} cannot be opened")
                return 0
            try:
                if lib.H5Iget_type(obj) == _H5I_DATASET:
                    plist = lib.H5Dget_create_plist(obj)
                    if lib.H5Pget_external_count(plist) > 0:
                        outside.append(f"variable {label!r} keeps its data in external files")
                    elif lib.H5Pget_layout(plist) == _H5D_VIRTUAL:
                        outside.append(f"variable {label!r} is a virtual dataset mapping other files")
                    lib.H5Pclose(plist)
            finally:
                lib.H5Oclose(obj)
        return 0

    try:
        status = visit(fid, 0, 2, callback(each), None)  # by name, native order
    finally:
        lib.H5Fclose(fid)
    if outside:
        raise ArchiveError(f"{path}: {'; '.join(outside[:3])}{' …' if len(outside) > 3 else ''}; an archive must "
                           "hold its own data (rrim reads nothing outside the files it is given)")
    if status < 0:
        raise ArchiveError(f"{path}: not a readable NetCDF file (its HDF5 structure cannot be listed)")


def _check_encodable(path: Path) -> None:
    """Refuse a path that is not valid UTF-8: the NetCDF library cannot open or create it."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"{display_name(str(path))}: the file name is not valid UTF-8, which the NetCDF library "
                           "cannot open or create; rename it") from None


def open_dataset(path):
    """Open a NetCDF file read-only and lazily (netCDF4 engine, then h5netcdf); :class:`ArchiveError` if
    impossible, if it is not a regular file, or if it keeps data outside itself (:func:`check_self_contained`)."""
    import xarray as xr

    path = Path(path)
    _check_encodable(path)
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
class _Source:
    """A validated input: the variable, its leading dims, interpolation onto the model grid, temperatures."""

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

    def interpolate(self, y: np.ndarray) -> np.ndarray:
        """Rows on the input ω axis (m, n_in), in the file's unit → rows on the model's ω grid (m, n_ω), meV."""
        return (y[:, self.lo_idx] * (1.0 - self.t_hi) + y[:, self.hi_idx] * self.t_hi) * self.y_factor


def _units(attrs: dict, path: Path, what: str) -> float:
    unit = attrs.get("units")
    if unit is None:
        raise ArchiveError(f"{path}: {what} has no 'units' attribute; set it to 'meV' or 'cm-1'")
    try:
        return energy_factor(str(unit), name=what)
    except ValueError:
        raise ArchiveError(f"{path}: {what} has unknown units {unit!r}; accepted: 'meV' or 'cm-1'") from None


def _interpolation(path: Path, dim: str, w_in: np.ndarray, model_w: np.ndarray, crop: bool, stored_eps: float = 0.0,
                   measured_range=None):
    """Indices and weights mapping the input ω axis (meV, as stored) onto the model grid; ``stored_eps``:
    the machine epsilon of the stored values (their rounding is tolerated at the range's ends).
    ``measured_range`` (start_max, end_min) meV of a mask-aware model: data starting at or below
    start_max and ending at or above end_min need no ``crop``; the model points without data are
    unmeasured (``valid`` False, never read by the model) and nothing is flagged."""
    if not np.all(np.isfinite(w_in)):
        raise ArchiveError(f"{path}: coordinate {dim!r} contains NaN or inf")
    d = np.diff(w_in)
    if w_in.size < 2:
        raise ArchiveError(f"{path}: coordinate {dim!r} needs at least 2 points, has {w_in.size}")
    if np.any(d == 0):
        dup = w_in[1:][d == 0][0]
        raise ArchiveError(f"{path}: coordinate {dim!r} has repeated values (e.g. {dup:g} meV)")
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ArchiveError(f"{path}: coordinate {dim!r} is not monotonic")
    order = np.argsort(w_in)
    w = w_in[order]
    span = model_w[-1] - model_w[0]
    tol = RANGE_RTOL * span + 4 * stored_eps * max(abs(w[0]), abs(w[-1]), abs(model_w[-1]))
    lo_ok = w[0] <= model_w[0] + tol
    hi_ok = w[-1] >= model_w[-1] - tol
    beyond = (w[0] < model_w[0] - tol) or (w[-1] > model_w[-1] + tol)
    flags = 0
    served = (measured_range is not None and w[0] <= measured_range[0] + tol and w[-1] >= measured_range[1] - tol)
    if served:
        if not (lo_ok and hi_ok) or beyond:
            log.info("%s: coordinate %r spans %.6g–%.6g meV; the model sees the measured part of its %.6g–%.6g meV grid",
                     path, dim, w[0], w[-1], model_w[0], model_w[-1])
    elif not (lo_ok and hi_ok) or beyond:
        msg = (f"{path}: coordinate {dim!r} spans {w[0]:.9g}–{w[-1]:.9g} meV but the model's ω grid is "
               f"{model_w[0]:.9g}–{model_w[-1]:.9g} meV")
        if not crop:
            raise ArchiveError(msg + "; pass --crop to drop data beyond it and hold edge values where data are missing (flagged)")
        log.warning("%s; cropping as asked (flagged)", msg)
        flags |= FLAG_CROPPED if beyond else 0
        flags |= 0 if lo_ok and hi_ok else FLAG_EXTRAPOLATED
    valid = (model_w >= w[0] - tol) & (model_w <= w[-1] + tol)
    wc = np.clip(model_w, w[0], w[-1])
    hi = np.clip(np.searchsorted(w, wc, side="left"), 1, w.size - 1)
    lo = hi - 1
    t = np.clip((wc - w[lo]) / (w[hi] - w[lo]), 0.0, 1.0)
    return order[lo], order[hi], t, valid, flags


def _temperature(ds, da, path: Path, opts: ArchiveOptions, lead: tuple, shape: tuple) -> np.ndarray:
    """Temperatures in K, an array that broadcasts to the leading shape (never allocated at that size)."""
    name = opts.temperature_name
    if opts.temperature is not None:
        t = np.asarray(float(opts.temperature))
    elif name in ds.variables or name in da.coords:
        tv = da.coords[name] if name in da.coords else ds[name]
        unit = tv.attrs.get("units")
        if unit is not None and str(unit).strip() not in TEMPERATURE_UNITS:
            raise ArchiveError(f"{path}: variable {name!r} has units {unit!r}; temperatures must be in K")
        if not _is_real(tv.dtype):
            raise ArchiveError(f"{path}: variable {name!r} has dtype {tv.dtype}; temperatures must be numbers in K")
        extra = [d for d in tv.dims if d not in lead]
        if extra:
            raise ArchiveError(f"{path}: variable {name!r} has dimensions {extra} that the spectra of "
                               f"{opts.var!r} do not have; it must be scalar or span leading dimensions {list(lead)}")
        order = [d for d in lead if d in tv.dims]
        t = np.asarray(tv.transpose(*order).values, dtype=np.float64)
        t = t.reshape([n if d in tv.dims else 1 for d, n in zip(lead, shape)])  # broadcasts to ``shape``
    else:
        raw = da.attrs.get(name, da.attrs.get(f"{name}_K", ds.attrs.get(name, ds.attrs.get(f"{name}_K"))))
        if raw is None:
            raise ArchiveError(f"{path}: no temperature for variable {opts.var!r}: no variable, coordinate or "
                               f"attribute {name!r} (or {name + '_K'!r}); pass --temperature K")
        try:
            t = np.asarray(float(np.asarray(raw).item()))
        except (TypeError, ValueError):
            raise ArchiveError(f"{path}: attribute {name!r} = {raw!r} is not a temperature in K") from None
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ArchiveError(f"{path}: temperature {name!r} must be finite and ≥ 0 K")
    if np.any(t > MAX_TEMPERATURE_K):
        raise ArchiveError(f"{path}: temperature {name!r} reaches {float(np.max(t)):.6g} K, above the "
                           f"{MAX_TEMPERATURE_K:g} K rrim accepts")
    return t


def _is_real(dtype) -> bool:
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


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


def read_source(ds, path, model: LoadedModel, opts: ArchiveOptions) -> _Source:
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
    clash = {"Omega", "omega"} & set(lead)
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
    w_factor = _units(ds[opts.dim].attrs, path, f"coordinate {opts.dim!r}")
    y_factor = _units(da.attrs, path, f"variable {opts.var!r}")
    w_in = np.asarray(ds[opts.dim].values, dtype=np.float64) * w_factor
    eps = float(np.finfo(coord.dtype).eps) if np.issubdtype(coord.dtype, np.floating) else 0.0
    reg = model.info.regularization
    measured = reg.get("measured_range_meV") if mask_aware(model) else None
    lo, hi, t, valid, flags = _interpolation(path, opts.dim, w_in, model.info.omega.values, opts.crop, eps, measured)
    temps = _temperature(ds, da, path, opts, lead, shape)
    return _Source(path, da.transpose(*lead, opts.dim), lead, shape, w_in, y_factor, lo, hi, t, valid, flags, temps)


def _slabs(shape: tuple, target: int):
    """Hyperslab index tuples (ints then one slice) covering ``shape`` in C order, ~``target`` items each."""
    if not shape:
        yield ()
        return
    k = next(i for i in range(len(shape)) if math.prod(shape[i + 1:]) <= target)
    block = max(1, target // max(1, math.prod(shape[k + 1:])))
    for outer in np.ndindex(*shape[:k]):
        for start in range(0, shape[k], block):
            yield tuple(int(i) for i in outer) + (slice(start, min(start + block, shape[k])),)


def _chunk_shape(shape: tuple, target: int) -> tuple:
    if not shape:
        return ()
    k = next(i for i in range(len(shape)) if math.prod(shape[i + 1:]) <= target)
    block = max(1, min(shape[k], target // max(1, math.prod(shape[k + 1:]))))
    return (1,) * k + (block,) + tuple(shape[k + 1:])


def check_output_path(output, input_path=None, *, what: str = "output", others: dict | None = None) -> Path:
    """The path of an ``output`` (or a report, a plot: ``what``), refused (:class:`ArchiveError`) if its
    folder is missing or unwritable, if it is a folder, the input, or one of ``others`` ({label: path})."""
    out = Path(output)
    _check_encodable(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ArchiveError(f"{out}: {what} folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArchiveError(f"{out}: {what} folder {parent} is not writable")
    if out.is_dir():
        raise ArchiveError(f"{out}: {what} path is a folder; give a file name")
    if input_path is not None and out.resolve() == Path(input_path).resolve():
        raise ArchiveError(f"{out}: {what} would overwrite the input; inputs are never modified")
    for label, other in (others or {}).items():
        if other is not None and out.resolve() == Path(other).resolve():
            raise ArchiveError(f"{out}: {what} would overwrite the {label} ({other}); give another path")
    return out


def read_provenance(path) -> dict | None:
    """Global attributes of an existing rrim output (None if the file is absent or unreadable)."""
    import netCDF4

    if files.file_kind(path) is not None:  # absent, or a FIFO or folder planted where an output goes
        return None
    try:
        with netCDF4.Dataset(path, "r") as f:
            return {k: f.getncattr(k) for k in f.ncattrs()}
    except (OSError, RuntimeError):
        return None


def is_current(output, input_sha256: str, model: LoadedModel, opts: ArchiveOptions, provider: str | None = None) -> bool:
    """True when ``output`` exists and records the same input hash, model hash, options (TF32 among them),
    calibration and, if given, execution provider ('cpu' or 'cuda': the one that would run now)."""
    attrs = read_provenance(output)
    return bool(attrs) and attrs.get("input_sha256") == input_sha256 and \
        attrs.get("model_sha256") == model.sha256 and attrs.get("options") == opts.to_json() and \
        attrs.get("calibration_sha256") == calibration_digest(model) and \
        (provider is None or attrs.get("execution_provider") == provider)


def _copied_coords(src: _Source, opts: ArchiveOptions):
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


def _copy_coords(nc, coords) -> None:
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


def _create(nc, src: _Source, model: LoadedModel, opts: ArchiveOptions) -> None:
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


def invert_rows(rows: np.ndarray, temperatures: np.ndarray, src: _Source, model: LoadedModel, opts: ArchiveOptions, *,
                session, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Invert spectra ``rows`` (m, n_in) as stored in ``src`` (file units, input ω axis) at ``temperatures`` (m,) K.

    Returns the variables of ``opts.output_variables()`` as arrays with m rows, ``y`` (the
    measured spectra on the model's ω grid, meV) and ``model_seconds``.
    """
    finite_in = np.isfinite(rows).all(axis=1)
    with np.errstate(invalid="ignore"):
        y = src.interpolate(rows)
    y[~finite_in] = np.nan
    m, Omega = rows.shape[0], model.info.Omega
    fields = {"glue": "glue", "scattering_rate_fit": "fit", "residual": "residual", "flags": "flags",
              "noise_estimate": "noise", "ood_score": "ood_score"}
    if opts.uncertainty is not None:
        fields.update(glue_lower="glue_lower", glue_upper="glue_upper")
    if opts.impurity:
        fields["impurity_rate"] = "impurity"
    sizes = {"Omega": len(Omega), "omega": len(model.info.omega)}
    variables = opts.output_variables()
    out = {name: np.empty((m, *(sizes[c] for c in variables[name][1])), dtype=np.uint8 if name == "flags" else np.float64)
           for name in fields}
    out["model_seconds"] = 0.0
    for T in np.unique(temperatures):
        sel = temperatures == T
        r = invert(y[sel], model, batch_size=batch_size, temperature=float(T), smoothing_meV=opts.smoothing_meV,
                   valid_omega=src.valid, session=session, coverage=opts.uncertainty, impurity=opts.impurity)
        out["model_seconds"] += r.model_seconds
        for name, attr in fields.items():
            out[name][sel] = getattr(r, attr)
    out["flags"] |= np.uint8(src.grid_flags)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["lambda"] = coupling_lambda(out["glue"], Omega)
        out["omega_log"] = omega_log(np.nan_to_num(out["glue"]), Omega)
    out["temperature"] = np.asarray(temperatures, dtype=np.float64)
    out["y"] = y
    return out


def provenance_attrs(src: _Source, model: LoadedModel, opts: ArchiveOptions, input_sha: str, provider: str,
                     prior_history: str, flag_counts: dict, calibration_sha256: str | None = None) -> dict:
    """The CF/ACDD global attributes of an output: what was inverted, with which model, options and provider."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    name = display_name(src.path.name)
    line = (f"{now}: rrim {__version__} invert {name} var={opts.var} "
            f"(model {model.name} sha256 {model.sha256[:12]}…, provider {provider})")
    temps = np.unique(src.temperature_values)
    return {
        "Conventions": "CF-1.12, ACDD-1.3",
        "title": f"Electron-boson glue functions from {name}",
        "summary": ("Glue functions I²χ(Ω) inverted from optical scattering rates 1/τ(ω) with the rRIM "
                    "model named in model_name; refit, residual and quality flags per spectrum."),
        "history": line + ("\n" + prior_history if prior_history else ""),
        "source": f"rrim {__version__}, model {model.name} {model.info.model_version} (sha256 {model.sha256})",
        "date_created": now,
        "product_version": __version__,
        "rrim_version": __version__,
        "rrim_output_format": OUTPUT_FORMAT,
        "model_name": model.name,
        "model_version": model.info.model_version,
        "model_sha256": model.sha256,
        "model_form": model.form,
        "execution_provider": provider,
        "input_file": name,
        "input_sha256": input_sha,
        "input_variable": opts.var,
        "options": opts.to_json(),
        "temperature_K": float(temps[0]) if temps.size == 1 else json.dumps([float(t) for t in temps[:50]]),
        "omega_input_range_meV": np.array([src.omega_meV.min(), src.omega_meV.max()]),
        "flag_counts": json.dumps(flag_counts),
        "calibration_sha256": calibration_digest(model) if calibration_sha256 is None else calibration_sha256,
    }


def invert_archive(input_path, output_path, model: LoadedModel, opts: ArchiveOptions = ArchiveOptions(), *,
                   provider: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
                   chunk_spectra: int = DEFAULT_CHUNK_SPECTRA, progress=None, preview: int = 0,
                   input_sha256: str | None = None, input_identity: tuple | None = None,
                   threads: int | None = None) -> ArchiveSummary:
    """Invert every spectrum of ``input_path`` and write ``output_path`` atomically and durably.

    ``progress(done, total)`` is called with the numbers of spectra done and in all after each slab. ``preview`` > 0
    keeps that many first spectra (input on the model grid, glue, fit) in the summary for plots.
    ``input_sha256``: the input's digest when the caller has it, taken when the file had ``input_identity``
    (:func:`rrim.files.identity`); it is used only if the file still has that identity, else the file is hashed
    again. The recorded digest is always that of the bytes read: a file that changes while it is read is refused.
    Raises :class:`ArchiveError` (bad input or output path; nothing is left behind).
    """
    import netCDF4

    t0 = time.perf_counter()
    input_path = Path(input_path)
    _check_encodable(input_path)
    out = check_output_path(output_path, input_path)
    session = model.session(provider, threads=threads, tf32=opts.tf32)
    files.remove_stale_temporaries(out, all_writers=False)  # those of killed writers
    calibration_sha = calibration_digest(model)
    try:
        before = files.identity(input_path)
    except OSError:
        before = None  # open_dataset names the problem
    with open_dataset(input_path) as ds:
        input_sha = input_sha256 if input_sha256 and input_identity == before else file_sha256(input_path)
        src = read_source(ds, input_path, model, opts)
        coords = list(_copied_coords(src, opts))
        try:
            tmp = files.make_temporary(out)
        except OSError as e:  # read-only mounts, quotas, ACLs that os.access does not see
            raise ArchiveError(f"{out}: cannot create a file in output folder {out.parent} ({e.strerror or e})") from None
        counts = {name: 0 for name in FLAGS}
        keep: dict[str, list] = {"y": [], "glue": [], "fit": [], "residual": [], "flags": [], "index": []}
        model_seconds, done = 0.0, 0
        try:
            with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
                _create(nc, src, model, opts)
                _copy_coords(nc, coords)
                per_slab = max(1, min(int(chunk_spectra), SLAB_VALUES // max(1, src.omega_meV.size)))

                def finish(key, slab_shape, future):
                    """Write one inverted slab (main thread: all file access stays here)."""
                    nonlocal model_seconds, done
                    res = future.result()
                    model_seconds += res.pop("model_seconds")
                    for name, values in res.items():
                        if name != "y":
                            nc[name][key] = values.reshape(slab_shape + values.shape[1:])
                    y, glue, fit, residual, flags = (res[k] for k in ("y", "glue", "scattering_rate_fit", "residual", "flags"))
                    for name, bit in FLAGS.items():
                        counts[name] += int(np.count_nonzero(flags & bit))
                    if preview and len(keep["y"]) < preview:
                        take = slice(0, preview - len(keep["y"]))
                        idx = np.stack(np.unravel_index(np.arange(done, done + len(y)), src.shape or (1,)), -1)
                        for k, v in (("y", y), ("glue", glue), ("fit", fit), ("residual", residual), ("flags", flags), ("index", idx)):
                            keep[k].extend(v[take])
                    done += len(y)
                    if progress is not None:
                        progress(done, src.n_spectra)

                # one slab in flight: slab k is inverted in a worker thread (the model calls release the GIL)
                # while this thread reads slab k + 1 and writes slab k − 1
                worker = ThreadPoolExecutor(1, thread_name_prefix="rrim-slab")
                pending = None
                try:
                    for key in _slabs(src.shape, per_slab):
                        try:
                            raw = np.asarray(src.data[key].values, dtype=np.float64)
                        except Exception as e:  # truncated or corrupt data blocks surface only on read
                            raise ArchiveError(f"{input_path}: variable {opts.var!r} cannot be read ({e})") from None
                        future = worker.submit(invert_rows, raw.reshape(-1, raw.shape[-1]), src.temperatures(key),
                                               src, model, opts, session=session, batch_size=batch_size)
                        if pending is not None:
                            finish(*pending)
                        pending = (key, raw.shape[:-1], future)
                    if pending is not None:
                        finish(*pending)
                finally:
                    worker.shutdown(wait=False, cancel_futures=True)
                _check_unchanged(input_path, before, model, calibration_sha)
                nc.setncatts(provenance_attrs(src, model, opts, input_sha, session.provider,
                                              str(ds.attrs.get("history", "")), counts, calibration_sha))
            os.chmod(tmp, 0o644 & ~_umask())
            files.replace_durably(tmp, out)
        except BaseException as e:
            size = os.path.getsize(tmp) if os.path.exists(tmp) else 0
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError) or (isinstance(e, RuntimeError) and str(e).startswith("NetCDF")):
                raise _write_error(out, e, size) from None  # netCDF4 reports a failed write as 'NetCDF: HDF error'
            raise
    preview_data = None
    if preview:
        preview_data = {k: np.asarray(v) for k, v in keep.items()}
        preview_data.update(omega=model.info.omega.values, Omega=model.info.Omega.values, lead=src.lead)
    return ArchiveSummary(str(input_path), str(out), src.n_spectra, counts, session.provider, model.name,
                          model.sha256, input_sha, time.perf_counter() - t0, model_seconds, preview_data)


def _check_unchanged(input_path: Path, before: tuple | None, model: LoadedModel, calibration_sha: str) -> None:
    """Refuse to record an output when the input or the model's calibration changed while it was read."""
    try:
        now = files.identity(input_path)
    except OSError:
        now = None
    if now != before:
        raise ArchiveError(f"{input_path}: the file changed or was replaced while it was read; nothing was written "
                           "(run again once it is complete)")
    if calibration_digest(model) != calibration_sha:
        raise ArchiveError(f"{input_path}: the calibration of model {model.name} changed while the file was inverted; "
                           "nothing was written (run again)")


def _write_error(out: Path, exc: BaseException, written: int) -> ArchiveError:
    """A clear error for an output that could not be written, with the likely cause when the system shows one."""
    causes = [exc.strerror] if isinstance(exc, OSError) and exc.strerror else []
    try:
        st = os.statvfs(out.parent)
        if st.f_bavail * st.f_frsize < max(2 * written, 1 << 20):
            causes.append(f"{st.f_bavail * st.f_frsize} bytes free on its filesystem")
    except OSError:
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            causes.append(f"this process may write files of at most {soft} bytes (ulimit -f)")
    except (ImportError, OSError, ValueError):
        pass
    cause = "; ".join(causes) or "disk full, quota or I/O error"
    return ArchiveError(f"{out}: writing the output failed after {written} bytes ({exc}; {cause}); "
                        "the partial file was removed and any earlier output is untouched")


def reprocess_one(path, out, model: LoadedModel, opts: ArchiveOptions, *, provider: str, input_sha256: str,
                  input_identity: tuple | None = None, batch_size: int = DEFAULT_BATCH_SIZE, progress=None,
                  threads: int | None = None) -> dict:
    """One file of ``rrim reprocess`` (the caller holds the output folder's lock): remove temporary
    files a killed run left for ``out``, invert atomically, and return the JSON-friendly record.
    ``threads``: the session's intra-op threads (default: the CPUs available)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    s = invert_archive(path, out, model, opts, provider=provider, input_sha256=input_sha256,
                       input_identity=input_identity, batch_size=batch_size, progress=progress, threads=threads)
    return {"output": str(out), "n_spectra": s.n_spectra, "flag_counts": s.flag_counts, "seconds": round(s.seconds, 3)}


def remove_stale_temporaries(out) -> list[Path]:
    """Delete every temporary file a writer left for output ``out`` (call it holding the folder's lock)."""
    return files.remove_stale_temporaries(out, all_writers=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
