"""Provenance: the CF-1.12/ACDD-1.3 global attributes an output records (what was inverted, with which
model, options and provider), and reading them back."""
from __future__ import annotations

import datetime as _dt
import json

import numpy as np

from rrim import __version__, files
from rrim.inversion.uncertainty import calibration_digest
from rrim.io.paths import display_name
from rrim.io.reading import Source
from rrim.io.schema import OUTPUT_FORMAT, ArchiveOptions
from rrim.models.loading import LoadedModel


PROVENANCE_ATTRIBUTES = (
    "Conventions", "title", "summary", "history", "source", "date_created", "product_version",
    "rrim_version", "rrim_output_format", "model_name", "model_version", "model_sha256", "model_form",
    "execution_provider", "input_file", "input_sha256", "input_variable", "options", "temperature_K",
    "omega_input_range_meV", "flag_counts", "calibration_sha256", "references",
)
#: The paper the method comes from (ACDD ``references``).
REFERENCES = "doi:10.1038/s41598-024-59594-3"


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


def provenance_attrs(src: Source, model: LoadedModel, opts: ArchiveOptions, input_sha: str, provider: str,
                     prior_history: str, flag_counts: dict, calibration_sha256: str | None = None) -> dict:
    """The CF/ACDD global attributes of an output: the input's global attributes (one that rrim also sets is
    kept as ``input_<name>``; ``history`` continues), then rrim's: what was inverted, with which model,
    options and provider."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    name = display_name(src.path.name)
    line = (f"{now}: rrim {__version__} invert {name} var={opts.var} "
            f"(model {model.name} sha256 {model.sha256[:12]}…, provider {provider})")
    temps = np.unique(src.temperature_values)
    own = {
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
        "references": REFERENCES,
    }
    carried = {}
    for key, value in src.attrs.items():
        if key == "history":
            continue
        carried[f"input_{key}" if key in own and f"input_{key}" not in src.attrs else key] = value
    return {**carried, **own}


def source_files(ds) -> list[str]:
    """The files an xarray Dataset was opened from: every file of an ``xr.open_mfdataset`` (found through
    the closers xarray keeps for them, each store's file name), else its ``encoding["source"]``, else []."""
    closer = getattr(ds, "_close", None)
    closers = getattr(closer, "args", ())[:1]
    names = [getattr(getattr(c, "__self__", None), "_filename", None) for c in (closers[0] if closers else ())]
    if names and all(isinstance(n, str) for n in names):
        return names
    source = ds.encoding.get("source")
    return [str(source)] if source else []


def multi_file_attrs(attrs: dict, paths: list[str]) -> dict:
    """``attrs`` of an output made from several files ``paths``: ``input_file`` names all of them
    (comma-separated), the title and the latest history line say how many."""
    from pathlib import Path

    names = [display_name(Path(p).name) for p in paths]
    first = names[0]
    out = dict(attrs, input_file=", ".join(names),
               title=f"Electron-boson glue functions from {len(names)} files ({first} …)")
    lines = str(attrs.get("history", "")).split("\n")
    lines[0] = lines[0].replace(f"invert {first} ", f"invert {len(names)} files ({', '.join(names)}) ", 1)
    out["history"] = "\n".join(lines)
    return out
