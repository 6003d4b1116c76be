"""One file of ``rrim reprocess``: whether its output is current, and inverting it when not."""
from __future__ import annotations

from pathlib import Path

from rrim import files
from rrim.inversion.engine import Engine
from rrim.inversion.uncertainty import calibration_digest
from rrim.io.provenance import read_provenance
from rrim.io.schema import ArchiveOptions
from rrim.jobs.invert import invert_archive
from rrim.models.loading import LoadedModel



def is_current(output, input_sha256: str, model: LoadedModel, opts: ArchiveOptions, provider: str | None = None) -> bool:
    """True when ``output`` exists and records the same input hash, model hash, options (TF32 among them),
    calibration and, if given, execution provider ('cpu' or 'cuda': the one that would run now)."""
    attrs = read_provenance(output)
    return bool(attrs) and attrs.get("input_sha256") == input_sha256 and \
        attrs.get("model_sha256") == model.sha256 and attrs.get("options") == opts.to_json() and \
        attrs.get("calibration_sha256") == calibration_digest(model) and \
        (provider is None or attrs.get("execution_provider") == provider)


def reprocess_one(path, out, engine: Engine, opts: ArchiveOptions, *, input_sha256: str,
                  input_identity: tuple | None = None, progress=None) -> dict:
    """One file of ``rrim reprocess`` (the caller holds the output folder's lock): remove temporary
    files a killed run left for ``out``, invert atomically with ``engine``, and return the JSON-friendly record."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    s = invert_archive(path, out, engine, opts, input_sha256=input_sha256, input_identity=input_identity,
                       progress=progress)
    return {"output": str(out), "n_spectra": s.n_spectra, "spectra_skipped": s.skipped, "flag_counts": s.flag_counts,
            "seconds": round(s.seconds, 3)}


def remove_stale_temporaries(out) -> list[Path]:
    """Delete every temporary file a writer left for output ``out`` (call it holding the folder's lock)."""
    return files.remove_stale_temporaries(out, all_writers=True)
