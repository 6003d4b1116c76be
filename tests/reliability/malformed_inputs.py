"""A catalogue of malformed (and oddly encoded) input archives and what ``rrim`` must do with each.

Every case is a function that writes one file and an expectation: either the file is
**refused** with a message that names the file, the variable and the reason (each fragment in
``fragments`` must appear; ``any_of`` lists alternatives of which one must appear), or it is
**accepted** and its spectra carry the listed quality flags. The files are written with
netCDF4 directly (not xarray) so that structures xarray would never write can be made too.

Base data: ``n`` spectra 1/τ(ω) in meV on an 80-point ω grid spanning the model's range, a
leading dimension ``sample``, the temperature as a scalar coordinate in K.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import netCDF4
import numpy as np

VAR, DIM = "scattering_rate", "omega"


@dataclass(frozen=True)
class Base:
    """Good data to start from: ω (meV, on the model's range) and spectra y (n, n_ω) in meV."""

    omega: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # structure, units, dimensions, dtypes, values, attributes, encodings, sizes, temperature
    build: Callable[[Path, Base], None]
    refused: bool = True
    fragments: tuple = ()
    any_of: tuple = ()
    flags: dict = field(default_factory=dict)  # accepted: flag name → number of spectra carrying it

    @property
    def file(self) -> str:
        return f"{self.name}.nc"


def write_nc(path: Path, base: Base, *, y=None, omega="base", var=VAR, y_dims=("sample", DIM),
             y_attrs=None, omega_attrs=None, omega_dims=(DIM,), dtype=None, temperature=100.0,
             temperature_attrs=None, temperature_dims=(), extra=None, fmt="NETCDF4", zlib=False) -> None:
    """Write one archive; every argument can be bent. ``omega=None`` writes no ω variable;
    ``temperature=None`` none; ``extra(f)`` adds anything else to the open file."""
    y = base.y if y is None else y
    y = np.asarray(y)
    omega = base.omega if isinstance(omega, str) and omega == "base" else omega
    with netCDF4.Dataset(path, "w", format=fmt, auto_complex=True) as f:
        for d, n in zip(y_dims, y.shape):
            if d not in f.dimensions:
                f.createDimension(d, n)
        if omega is not None:
            omega = np.asarray(omega)
            for d, n in zip(omega_dims, omega.shape):
                if d not in f.dimensions:
                    f.createDimension(d, n)
            w = f.createVariable(DIM, omega.dtype if omega.dtype.kind != "U" else str, omega_dims)
            w[...] = omega.astype(object) if omega.dtype.kind == "U" else omega
            w.setncatts({"units": "meV"} if omega_attrs is None else omega_attrs)
        if var is not None:
            dt = dtype or y.dtype
            v = f.createVariable(var, dt if np.dtype(dt).kind != "U" else str, y_dims, zlib=zlib)
            with np.errstate(over="ignore", invalid="ignore"):  # float32 overflow is part of some cases
                v[...] = y.astype(str).astype(object) if np.dtype(dt).kind == "U" else y.astype(dt)
            v.setncatts({"units": "meV"} if y_attrs is None else y_attrs)
        if temperature is not None:
            t = np.asarray(temperature)
            for d, n in zip(temperature_dims, t.shape):
                if d not in f.dimensions:
                    f.createDimension(d, n)
            tv = f.createVariable("temperature", t.dtype if t.dtype.kind != "U" else str, temperature_dims)
            tv[...] = t.astype(object) if t.dtype.kind == "U" else t
            tv.setncatts({"units": "K"} if temperature_attrs is None else temperature_attrs)
        if extra is not None:
            extra(f)


def _bytes(data: bytes):
    return lambda p, b: p.write_bytes(data)


def _good_bytes(p: Path, b: Base) -> bytes:
    write_nc(p, b)
    return p.read_bytes()


def _truncated(fraction: float, n: int = 0):
    def build(p, b):
        y = b.y if not n else np.tile(b.y, (n // len(b.y) + 1, 1))[:n]
        write_nc(p, Base(b.omega, y))
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * fraction)])
    return build


def _corrupt_chunk(p, b):
    """A compressed variable whose data chunks are overwritten with garbage: opens, fails on read."""
    write_nc(p, b, y=np.tile(b.y, (1400, 1)), zlib=True)
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = b"\xa5" * 4096
    p.write_bytes(bytes(data))


def _gzipped(p, b):
    p.write_bytes(gzip.compress(_good_bytes(p, b)))


def _in_group(p, b):
    with netCDF4.Dataset(p, "w") as f:
        g = f.createGroup("data")
        g.createDimension("sample", len(b.y))
        g.createDimension(DIM, len(b.omega))
        g.createVariable(DIM, "f8", (DIM,))[:] = b.omega
        v = g.createVariable(VAR, "f8", ("sample", DIM))
        v[:] = b.y
        v.units = "meV"


def _w(transform):
    """Build with ω replaced by ``transform(ω)``."""
    return lambda p, b: write_nc(p, b, omega=transform(b.omega.copy()))


def _y(transform, **kw):
    """Build with the spectra replaced by ``transform(y)``."""
    return lambda p, b: write_nc(p, b, y=transform(b.y.copy()), **kw)


def _set(a, index, value):
    a[index] = value
    return a


def _unordered(w):
    w[[10, 11]] = w[[11, 10]]
    return w


def _kw(**kw):
    return lambda p, b: write_nc(p, b, **kw)


def _omega_2d(p, b):
    write_nc(p, b, omega=np.tile(b.omega, (len(b.y), 1)), omega_dims=("sample", DIM))


def _omega_3d(p, b):
    write_nc(p, b, omega=np.tile(b.omega, (len(b.y), 2, 1)), omega_dims=("sample", "copy", DIM))


def _zero_spectra(p, b):
    write_nc(p, b, y=np.zeros((0, len(b.omega))))


def _zero_records_unlimited(p, b):
    with netCDF4.Dataset(p, "w") as f:
        f.createDimension("sample", None)
        f.createDimension(DIM, len(b.omega))
        w = f.createVariable(DIM, "f8", (DIM,))
        w[:] = b.omega
        w.units = "meV"
        f.createVariable(VAR, "f8", ("sample", DIM)).units = "meV"
        f.createVariable("temperature", "f8", ()).assignValue(100.0)


def _huge_omega_grid(p, b):
    w = np.linspace(b.omega[0], b.omega[-1], 400_000)
    y = np.stack([np.interp(w, b.omega, row) for row in b.y[:2]])
    write_nc(p, b, y=y, omega=w)


def _many_tiny_spectra(p, b):
    w = np.linspace(b.omega[0], b.omega[-1], 5)
    y = np.tile(np.interp(w, b.omega, b.y[0]), (20_000, 1))
    write_nc(p, b, y=y, omega=w)


def _packed_int16(p, b):
    scale = float(np.max(b.y)) / 30000
    with netCDF4.Dataset(p, "w") as f:
        f.createDimension("sample", len(b.y))
        f.createDimension(DIM, len(b.omega))
        w = f.createVariable(DIM, "f8", (DIM,))
        w[:] = b.omega
        w.units = "meV"
        v = f.createVariable(VAR, "i2", ("sample", DIM))
        v.setncatts({"scale_factor": scale, "add_offset": 0.0, "units": "meV"})
        v[:] = b.y
        f.createVariable("temperature", "f8", ()).assignValue(100.0)
        f["temperature"].units = "K"


def _all_fill(p, b):
    """Every value is the declared _FillValue (no data were ever written)."""
    with netCDF4.Dataset(p, "w") as f:
        f.createDimension("sample", len(b.y))
        f.createDimension(DIM, len(b.omega))
        w = f.createVariable(DIM, "f8", (DIM,))
        w[:] = b.omega
        w.units = "meV"
        f.createVariable(VAR, "f8", ("sample", DIM), fill_value=-9999.0).units = "meV"
        f.temperature_K = 100.0


def _attr(**attrs):
    return lambda p, b: write_nc(p, b, extra=lambda f: f.setncatts(attrs))


def _nonutf8_units(p, b):
    write_nc(p, b, omega_attrs={})
    with netCDF4.Dataset(p, "a") as f:
        f[DIM].setncattr_string("units", "m\udcffeV".encode("utf-8", "surrogateescape").decode("latin-1"))


def _var_attr_units_list(p, b):
    write_nc(p, b, omega_attrs={"units": np.array([1.0, 2.0])})


def _temperature_attr(value):
    def build(p, b):
        write_nc(p, b, temperature=None, extra=lambda f: f[VAR].setncattr("temperature", value))
    return build


def _dims_swapped(p, b):
    write_nc(p, b, y=b.y.T.copy(), y_dims=(DIM, "sample"))


def _string_sample_coord(p, b):
    def extra(f):
        s = f.createVariable("sample", str, ("sample",))
        s[:] = np.array([f"crystal-{i}" for i in range(len(b.y))], dtype=object)
    write_nc(p, b, extra=extra)


def _coord_named_like_output(p, b):
    def extra(f):
        f.createVariable("glue", "f8", ("sample",))[:] = np.arange(len(b.y))
    write_nc(p, b, extra=extra)


def _netcdf3(p, b):
    write_nc(p, b, fmt="NETCDF3_64BIT_OFFSET")


def _duplicate_dims(p, b):
    with netCDF4.Dataset(p, "w") as f:
        f.createDimension(DIM, len(b.omega))
        w = f.createVariable(DIM, "f8", (DIM,))
        w[:] = b.omega
        w.units = "meV"
        v = f.createVariable(VAR, "f8", (DIM, DIM))
        v[:] = np.tile(b.y[0], (len(b.omega), 1))
        v.units = "meV"
        f.temperature_K = 100.0


def _odd_coordinate(kind: str):
    """A leading coordinate the output cannot store as is: boolean (xarray's dtype='bool' encoding,
    named in VAR's 'coordinates') or complex (netCDF4's compound encoding, as the dimension's coordinate)."""
    def build(p, b):
        def extra(f):
            if kind == "bool":
                c = f.createVariable("good", "i1", ("sample",))
                c[:] = np.arange(len(b.y)) % 2
                c.setncattr("dtype", "bool")
                f[VAR].setncattr("coordinates", "good")
            else:
                f.createVariable("sample", np.complex128, ("sample",))[:] = np.arange(len(b.y)) * (1 + 1j)
        write_nc(p, b, extra=extra)
    return build


def _declared_spectra(n: int):
    """A chunked variable declaring ``n`` spectra with none written: a tiny file, a huge shape."""
    def build(p, b):
        with netCDF4.Dataset(p, "w") as f:
            f.createDimension("sample", n)
            f.createDimension(DIM, len(b.omega))
            w = f.createVariable(DIM, "f8", (DIM,))
            w[:] = b.omega
            w.units = "meV"
            f.createVariable(VAR, "f4", ("sample", DIM), chunksizes=(1, len(b.omega))).units = "meV"
            f.temperature_K = 100.0
    return build


def _omega_float32_cm1(p, b):
    """ω stored in float32 cm⁻¹, spanning exactly the model's range (rounding at the 1e-7 level)."""
    from rrim.physics.units import CM1_PER_MEV

    write_nc(p, b, omega=(b.omega * CM1_PER_MEV).astype(np.float32), omega_attrs={"units": "cm-1"})


def _R(name, what, build, *fragments, any_of=()):
    return Case(name, what, build, True, fragments, any_of)


def _A(name, what, build, **flags):
    return Case(name, what, build, False, flags=flags)


N_BASE = 3  # spectra in the base data

CATALOGUE: list[Case] = [
    # structure and encodings
    _R("text_named_nc", "structure", _bytes(b"omega,rate\n2,0.1\n400,30\n"), "not a readable NetCDF file"),
    _R("empty_file", "structure", _bytes(b""), "file is empty"),
    _R("hdf5_signature_then_garbage", "structure",
       _bytes(b"\x89HDF\r\n\x1a\n" + bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8))),
       "not a readable NetCDF file"),
    _R("netcdf3_signature_then_garbage", "structure", _bytes(b"CDF\x01" + b"\xff" * 300), "not a readable NetCDF file"),
    _R("truncated_hdf5_header", "structure", _truncated(0.05), "not a readable NetCDF file"),
    _R("truncated_hdf5_data", "structure", _truncated(0.6, n=4000), "not a readable NetCDF file"),
    _R("corrupt_compressed_chunk", "structure", _corrupt_chunk, f"variable {VAR!r} cannot be read"),
    _R("gzip_compressed_netcdf", "encodings", _gzipped, "not a readable NetCDF file"),
    _R("variable_inside_a_group", "structure", _in_group, f"no variable {VAR!r}"),
    _R("no_variables_at_all", "structure", _kw(var=None, omega=None, temperature=None), f"no variable {VAR!r}", "none"),
    _R("wrong_variable_name", "structure", _kw(var="scatteringrate"), f"no variable {VAR!r}", "scatteringrate"),
    _R("variable_without_omega_dim", "dimensions", _kw(y_dims=("sample", "energy"), omega=None), VAR,
       "none named 'omega'"),
    _R("scalar_variable", "dimensions", _y(lambda y: np.float64(y[0, 0]), y_dims=()), VAR, "none named 'omega'"),
    _R("omega_dim_without_coordinate", "dimensions", _kw(omega=None), "'omega'", "has no coordinate"),
    _R("omega_coordinate_2d", "dimensions", _omega_2d, "coordinate 'omega'", "['sample', 'omega']", "must be 1-D"),
    _R("omega_coordinate_3d", "dimensions", _omega_3d, "coordinate 'omega'", "must be 1-D"),
    _R("omega_dimension_twice", "dimensions", _duplicate_dims, "omega",
       any_of=("not a readable NetCDF file", "reserves", "dimension")),
    _R("leading_dim_named_Omega", "dimensions", _kw(y_dims=("Omega", DIM)), VAR, "names the output reserves"),
    _R("zero_spectra", "sizes", _zero_spectra, VAR, "holds no spectra"),
    _R("zero_records_unlimited_dim", "sizes", _zero_records_unlimited, VAR, "holds no spectra"),
    _R("omega_single_point", "sizes", _y(lambda y: y[:, :1], omega=np.array([200.0])), "'omega'",
       "needs at least 2 points"),
    # 20,000 spectra of 5 ω points ~100 meV apart: a straight line between them would invent the glue's structure
    _R("many_tiny_spectra", "sizes", _many_tiny_spectra, "'omega'", "too sparse for the model's ω grid"),
    _R("omega_no_points", "sizes", _y(lambda y: y[:, :0], omega=np.zeros(0)), "'omega'", "needs at least 2 points"),
    # ω values and units
    _R("omega_duplicate_values", "values", _w(lambda w: _set(w, 5, w[4])), "'omega'", "repeated values"),
    _R("omega_unordered", "values", _w(_unordered), "'omega'", "not monotonic"),
    _R("omega_nan", "values", _w(lambda w: _set(w, 3, np.nan)), "'omega'", "NaN or inf"),
    _R("omega_inf", "values", _w(lambda w: _set(w, -1, np.inf)), "'omega'", "NaN or inf"),
    _R("omega_out_of_range", "values", _w(lambda w: w / 2), "'omega'", "spans", "model's ω grid"),
    _R("omega_in_meV_labelled_cm-1", "units", _kw(omega_attrs={"units": "cm-1"}), "'omega'", "spans"),
    _R("omega_astronomical_values", "values", _w(lambda w: w * 1e300), "'omega'", any_of=("spans", "NaN or inf")),
    _R("omega_strings", "dtypes", _w(lambda w: w.astype(str)), "coordinate 'omega'", "dtype", "real numbers"),
    _R("omega_units_eV", "units", _kw(omega_attrs={"units": "eV"}), "'omega'", "spans"),  # meV values read as eV
    _R("omega_units_kelvin", "units", _kw(omega_attrs={"units": "K"}), "'omega'", "unknown units 'K'", "temperature"),
    _R("omega_units_empty", "units", _kw(omega_attrs={"units": ""}), "'omega'", "unknown units ''"),
    _R("omega_units_missing", "units", _kw(omega_attrs={}), "'omega'", "no 'units' attribute"),
    _R("omega_units_numeric", "attributes", _kw(omega_attrs={"units": 5}), "'omega'", "unknown units"),
    _R("omega_units_numeric_array", "attributes", _var_attr_units_list, "'omega'", "unknown units"),
    _R("omega_units_not_utf8", "encodings", _nonutf8_units, "omega", any_of=("unknown units", "not a readable")),
    # the variable's units and dtype
    _R("rate_units_missing", "units", _kw(y_attrs={}), VAR, "no 'units' attribute"),
    _R("rate_units_nm", "units", _kw(y_attrs={"units": "nm"}), VAR, "unknown units 'nm'", "length"),
    _R("rate_strings", "dtypes", _kw(dtype="U8"), VAR, "real numbers"),
    _R("rate_complex", "dtypes", lambda p, b: write_nc(p, b, y=b.y.astype(np.complex128)), VAR, "real numbers"),
    # temperature
    _R("temperature_missing", "temperature", _kw(temperature=None), "no temperature", VAR),
    _R("temperature_negative", "temperature", _kw(temperature=-5.0), "'temperature'", "≥ 0 K"),
    _R("temperature_nan", "temperature", _kw(temperature=np.nan), "'temperature'", "finite"),
    _R("temperature_inf", "temperature", _kw(temperature=np.inf), "'temperature'", "finite"),
    _R("temperature_string_attribute", "temperature", _temperature_attr("hot"), "'temperature'",
       "not a temperature in K"),
    _R("temperature_string_variable", "temperature", _kw(temperature=np.array("100 K")), "variable 'temperature'",
       "dtype", "numbers with units"),
    _R("temperature_in_meV", "temperature", _kw(temperature_attrs={"units": "meV"}), "'temperature'",
       "not a temperature"),
    _R("temperature_without_units", "temperature", _kw(temperature_attrs={}), "'temperature'", "no units",
       "--temperature-units"),
    _R("temperature_array_mismatch", "temperature", _kw(temperature=np.full(5, 100.0), temperature_dims=("run",)),
       "'temperature'", "['run']"),
    _R("temperature_one_nan_per_spectrum", "temperature",
       _kw(temperature=np.array([100.0, np.nan, 100.0]), temperature_dims=("sample",)), "'temperature'", "finite"),
    # found by the red-team review (issue 15): each must name the file and the variable
    _R("complex_leading_coordinate", "dtypes", _odd_coordinate("complex"), "coordinate 'sample'", VAR,
       "the output cannot hold"),
    _R("temperature_1e308", "temperature", _kw(temperature=1e308), "'temperature'", "above the"),
    _R("declares_1e10_spectra", "sizes", _declared_spectra(10**10), VAR, "declares 10000000000 spectra", "split it"),
    _A("boolean_leading_coordinate", "dtypes", _odd_coordinate("bool")),
    _A("omega_float32_cm-1_exact_range", "units", _omega_float32_cm1),
    # accepted, per-spectrum flags where the values are bad
    _A("omega_descending", "values", lambda p, b: write_nc(p, b, y=b.y[:, ::-1].copy(), omega=b.omega[::-1].copy())),
    _A("rate_int32", "dtypes", _y(lambda y: np.round(y * 100), dtype="i4", y_attrs={"units": "meV", "comment": "x100"})),
    _A("rate_float32", "dtypes", _kw(dtype="f4")),
    _A("rate_packed_int16", "encodings", _packed_int16),
    _A("netcdf3_64bit_offset", "encodings", _netcdf3),
    _A("dims_swapped_omega_first", "dimensions", _dims_swapped),
    _A("string_sample_coordinate", "attributes", _string_sample_coord),
    _A("coordinate_named_like_an_output", "attributes", _coord_named_like_output),
    _A("huge_history_attribute", "attributes", _attr(history="x" * 1_000_000)),
    _A("huge_omega_grid", "sizes", _huge_omega_grid),
    _A("all_nan_spectra", "values", _y(lambda y: np.full_like(y, np.nan)), nonfinite_input=N_BASE),
    _A("all_fill_values", "values", _all_fill, nonfinite_input=N_BASE),
    _A("one_inf_spectrum", "values", _y(lambda y: _set(y, (1, 7), np.inf)), nonfinite_input=1),
    _A("one_nan_point", "values", _y(lambda y: _set(y, (2, 0), np.nan)), nonfinite_input=1),
    _A("values_beyond_float32", "values", _y(lambda y: y * 1e300), nonfinite_input=N_BASE),
    _A("values_near_float32_max", "values", _y(lambda y: y * 1e36)),
    _A("all_zero_spectra", "values", _y(np.zeros_like)),
    _A("negative_spectra", "values", _y(lambda y: -y), poor_fit=N_BASE),
    _A("temperature_far_out_of_range", "temperature", _kw(temperature=1e5), temperature_out_of_range=N_BASE,
       poor_fit=N_BASE),
]
