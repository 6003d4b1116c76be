"""Inverting one archive into one output (docs/ARCHITECTURE.md §4, §6).

**Output** (written with netCDF4 because xarray cannot write a NetCDF file region by region
without dask; zlib-compressed, chunked by whole spectra; to a temporary file beside the target,
then ``os.replace``): ``glue`` (…, Omega), ``scattering_rate_fit`` (…, omega) on the *model's*
ω grid in meV, ``residual``, ``flags`` (bits in :mod:`rrim.inversion.flags`), ``lambda``,
``omega_log``, ``temperature``, the leading coordinates, and CF-1.12/ACDD-1.3 provenance
attributes (:data:`rrim.io.provenance.PROVENANCE_ATTRIBUTES`). Spectra are read, inverted and written in
slabs of about ``chunk_spectra`` (fewer when the input ω axis is long: at most
:data:`SLAB_VALUES` input values) so that memory does not grow with the archive.
"""
from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rrim import files
from rrim.inversion.engine import Engine
from rrim.inversion.flags import FLAG_COVERAGE, FLAG_NONFINITE, FLAGS
from rrim.inversion.temperatures import physics_temperatures
from rrim.inversion.uncertainty import calibration_digest
from rrim.io.netcdf import copied_coords, copy_coords, create_variables
from rrim.io.paths import ArchiveError, check_encodable, check_output_path, file_sha256
from rrim.io.provenance import provenance_attrs
from rrim.io.omega_axis import MAX_UNOBSERVED_FRACTION
from rrim.io.reading import Source, open_dataset, read_source
from rrim.io.schema import TEMPERATURE_USED, ArchiveOptions
from rrim.models.loading import LoadedModel
from rrim.physics.operator import ForwardOperator
from rrim.physics.quantities import coupling_lambda, omega_log

log = logging.getLogger(__name__)


#: Spectra read, inverted and written per slab.
DEFAULT_CHUNK_SPECTRA = 4096
#: At most this many input values are read per slab (32 MiB as float64), however long the input ω axis.
SLAB_VALUES = 1 << 22
#: Input ω points per block of the refit on the input's axis (A's block: 4096 × n_Ω float64).
REFIT_BLOCK = 4096


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

    @property
    def skipped(self) -> int:
        """Spectra not inverted: non-finite, or outside the model's trained coverage."""
        return skipped_count(self.flag_counts)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "preview"}
        d["spectra_per_second"] = self.n_spectra / self.seconds if self.seconds > 0 else None
        d["skipped"] = self.skipped
        return d


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


def invert_rows(rows: np.ndarray, temperatures: np.ndarray, src: Source, engine: Engine, opts: ArchiveOptions) -> dict:
    """Invert spectra ``rows`` (m, n_in) as stored in ``src`` (file units, input ω axis) at ``temperatures`` (m,) K.

    Spectra are inverted in groups of one temperature (the physics at the nearest point of a temperature grid,
    :func:`~rrim.inversion.temperatures.physics_temperatures`) and one set of observed ω points
    (:meth:`Source.on_grid`); those outside the model's trained coverage are skipped (flag
    ``coverage_untrained``, NaN outputs). Returns the variables of ``opts.output_variables()`` as
    arrays with m rows, ``y`` (the measured spectra on the model's ω grid, meV, NaN where unobserved) and
    ``model_seconds``.
    """
    y, observed = src.on_grid(rows)
    trained = src.trained(rows, observed)
    model = engine.model
    m, Omega = rows.shape[0], model.info.Omega
    fields = ["glue", "scattering_rate_fit", "residual", "flags", "noise_estimate", "ood_score"]  # of the result
    if opts.uncertainty is not None:
        fields += ["glue_lower", "glue_upper"]
    if opts.impurity:
        fields.append("impurity_rate")
    sizes = {"Omega": len(Omega), "omega": len(model.info.omega), "omega_input": src.omega_meV.size}
    variables = src.variables(opts)
    out = {name: np.full((m, *(sizes[c] for c in variables[name][1])), np.nan)
           for name in (*fields, "scattering_rate_fit_input")}
    empty = np.isnan(rows).all(axis=1)  # nothing measured at all: non-finite rather than a coverage matter
    out["flags"] = np.where(trained, 0, np.where(empty, FLAG_NONFINITE, FLAG_COVERAGE)).astype(np.uint8)
    out["model_seconds"] = 0.0
    used = physics_temperatures(temperatures)
    patterns, which = np.unique(observed, axis=0, return_inverse=True)
    which = which.reshape(-1)
    input_blocks = {}  # temperature → A on the input's ω axis, in blocks: built once, whatever the NaN patterns
    for k, mask in enumerate(patterns):
        for T in np.unique(used[(which == k) & trained]):
            sel = (which == k) & trained & (used == T)
            r = engine.invert(y[sel], temperature=float(T), smoothing_meV=opts.smoothing, valid_omega=mask,
                              coverage=opts.uncertainty, impurity=opts.impurity)
            out["model_seconds"] += r.model_seconds
            for name in fields:
                out[name][sel] = getattr(r, name)
            out["scattering_rate_fit_input"][sel] = _input_refit(r, src, engine, input_blocks)
    out["flags"] |= np.uint8(src.grid_flags)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["lambda"] = coupling_lambda(out["glue"], Omega)
        out["omega_log"] = omega_log(np.nan_to_num(out["glue"]), Omega)
    out[TEMPERATURE_USED if "temperature" in src.lead else "temperature"] = np.asarray(temperatures, dtype=np.float64)
    out["y"] = np.where(observed, y, np.nan)  # for plots: unobserved points are not drawn as data
    return out


def _input_refit(r, src: Source, engine: Engine, blocks: dict) -> np.ndarray:
    """The refit A·x̂ (+ the impurity rate) of result ``r`` on the input's ω axis (as stored, ω > 0; NaN
    elsewhere), in the input's units: A from the engine's physics at ``r.temperature`` on that axis, in
    blocks of :data:`REFIT_BLOCK` input points (memory stays bounded however long the axis), kept in
    ``blocks`` per temperature for the next group of spectra."""
    w = src.omega_meV
    fit = np.full((len(r.glue), w.size), np.nan)
    positive = np.flatnonzero(w > 0)
    if positive.size < 2:
        return fit
    if r.temperature not in blocks:
        op = engine.physics(r.temperature)[0]
        blocks[r.temperature] = [(cols, ForwardOperator(w[cols], op.Omega, op.temperature, op.kernel, op.scale).matrix)
                                 for cols in np.array_split(positive, -(-positive.size // REFIT_BLOCK))]  # ≥ 2 points each
    c = 0.0 if r.impurity_rate is None else r.impurity_rate[:, None]
    for cols, a in blocks[r.temperature]:
        fit[:, cols] = r.glue @ a.T + c
    return fit / src.y_factor


def skipped_warning(name: str, counts: dict, n_spectra: int, src: Source) -> str | None:
    """The warning for the spectra a job skipped (``counts``: flag name → spectra), or None if none were."""
    why = []
    if counts.get("coverage_untrained"):
        start, end = src.coverage
        why.append(f"{counts['coverage_untrained']} because their measured ω coverage (NaN channels taken out) is "
                   f"outside what the model was trained for (data from ≤ {start:g} meV to ≥ {end:g} meV, at most "
                   f"{MAX_UNOBSERVED_FRACTION:.0%} of its ω grid unobserved in between)")
    if counts.get("nonfinite_input"):
        why.append(f"{counts['nonfinite_input']} because they hold NaN or inf values"
                   + ("" if src.coverage else " (this model reads every ω point: NaN channels cannot be left out)"))
    if not why:
        return None
    return f"{name}: {skipped_count(counts)} of {n_spectra} spectra skipped: " + "; ".join(why)


def skipped_count(counts: dict) -> int:
    """Spectra not inverted (NaN outputs), from flag counts (a spectrum carries at most one of these flags)."""
    return counts.get("nonfinite_input", 0) + counts.get("coverage_untrained", 0)


def invert_archive(input_path, output_path, engine: Engine, opts: ArchiveOptions = ArchiveOptions(), *,
                   chunk_spectra: int = DEFAULT_CHUNK_SPECTRA, progress=None, preview: int = 0,
                   input_sha256: str | None = None, input_identity: tuple | None = None) -> ArchiveSummary:
    """Invert every spectrum of ``input_path`` with ``engine`` and write ``output_path`` atomically and durably.

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
    check_encodable(input_path)
    out = check_output_path(output_path, input_path)
    model = engine.model
    if engine.session.tf32 != opts.tf32:
        raise ValueError(f"opts.tf32={opts.tf32} but the engine runs with tf32={engine.session.tf32}: they must agree "
                         "(TF32 is part of an output's identity)")
    files.remove_stale_temporaries(out, all_writers=False)  # those of killed writers
    calibration_sha = calibration_digest(model)
    try:
        before = files.identity(input_path)
    except OSError:
        before = None  # open_dataset names the problem
    with open_dataset(input_path) as ds:
        input_sha = input_sha256 if input_sha256 and input_identity == before else file_sha256(input_path)
        src = read_source(ds, input_path, model, opts)
        coords = list(copied_coords(src, opts))
        try:
            tmp = files.make_temporary(out)
        except OSError as e:  # read-only mounts, quotas, ACLs that os.access does not see
            raise ArchiveError(f"{out}: cannot create a file in output folder {out.parent} ({e.strerror or e})") from None
        counts = {name: 0 for name in FLAGS}
        keep: dict[str, list] = {"y": [], "glue": [], "fit": [], "residual": [], "flags": [], "index": []}
        model_seconds, done = 0.0, 0
        try:
            with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
                create_variables(nc, src, model, opts, coords)
                copy_coords(nc, coords)
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
                                               src, engine, opts)
                        if pending is not None:
                            finish(*pending)
                        pending = (key, raw.shape[:-1], future)
                    if pending is not None:
                        finish(*pending)
                finally:
                    worker.shutdown(wait=False, cancel_futures=True)
                _check_unchanged(input_path, before, model, calibration_sha)
                warning = skipped_warning(str(input_path), counts, src.n_spectra, src)
                if warning:
                    log.warning("%s", warning)
                nc.setncatts(provenance_attrs(src, model, opts, input_sha, engine.provider,
                                              str(ds.attrs.get("history", "")), counts, calibration_sha))
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
    return ArchiveSummary(str(input_path), str(out), src.n_spectra, counts, engine.provider, model.name,
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
