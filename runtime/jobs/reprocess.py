"""One file of ``rrim reprocess``: whether its output is current, inverting it when not, and what a run
remembers for the next one in the output folder (:class:`RunState`)."""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from rrim import files
from rrim.inversion.engine import Engine
from rrim.inversion.uncertainty import calibration_digest
from rrim.io.paths import file_sha256
from rrim.io.provenance import read_provenance
from rrim.io.schema import ArchiveOptions
from rrim.jobs.invert import invert_archive
from rrim.models.loading import LoadedModel

log = logging.getLogger(__name__)

#: The record a run leaves in OUT_DIR for the next one (hashes by file identity, failures).
STATE_NAME = ".rrim-reprocess.state.json"
STATE_VERSION = 1
MAX_STATE_BYTES = 1 << 28


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


def _stamp(path) -> dict:
    """What says a file is unchanged without reading it: size, mtime and ctime (ns), inode."""
    dev, ino, size, mtime_ns, ctime_ns = files.identity(path)
    return {"size": size, "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, "inode": ino}


class RunState:
    """What ``rrim reprocess`` remembers in OUT_DIR/:data:`STATE_NAME` between runs, per input (its name
    relative to ARCHIVE_DIR):

    - ``sha256`` with the ``size``, ``mtime_ns``, ``ctime_ns`` and ``inode`` it was taken at: a file whose
      stamp is unchanged is not read again (:meth:`digest`);
    - ``failure``: the error of its last failed run, with the fingerprint of what failed (bytes, model,
      options), since when and how many runs in a row: the same failure again is *known*
      (:meth:`fail` returns True), which the command reports without failing the run.

    A missing or unreadable record is an empty one (everything is hashed once again). Written atomically
    by :meth:`save`; only the holder of the folder's lock may.
    """

    def __init__(self, out_dir):
        self.path = Path(out_dir) / STATE_NAME
        self.entries: dict[str, dict] = {}
        self.hashed = 0
        try:
            raw = json.loads(files.read_regular(self.path, MAX_STATE_BYTES))
            if isinstance(raw, dict) and raw.get("version") == STATE_VERSION and isinstance(raw.get("files"), dict):
                self.entries = {k: v for k, v in raw["files"].items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s); every input is hashed again", self.path, getattr(e, "strerror", None) or e)

    def digest(self, rel: str, path) -> tuple[str, tuple]:
        """(sha256, identity) of input ``path``: the recorded digest if its stamp is unchanged, else hashed."""
        ident = files.identity(path)
        stamp = _stamp(path)
        entry = self.entries.setdefault(rel, {})
        if entry.get("sha256") and all(entry.get(k) == v for k, v in stamp.items()):
            return entry["sha256"], ident
        digest = file_sha256(path)
        self.hashed += 1
        if files.identity(path) == ident:  # not changed while it was read
            entry.update(stamp, sha256=digest)
        return digest, ident

    def fail(self, rel: str, fingerprint: str, error: str) -> dict | None:
        """Record that ``rel`` failed with ``error``; the earlier record when it failed the same way on the
        same ``fingerprint`` (bytes, model and options) before (a known failure), else None."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        entry = self.entries.setdefault(rel, {})
        before = entry.get("failure")
        known = isinstance(before, dict) and before.get("fingerprint") == fingerprint and before.get("error") == error
        entry["failure"] = {"fingerprint": fingerprint, "error": error, "since": before["since"] if known else now,
                            "last": now, "runs": before.get("runs", 1) + 1 if known else 1}
        return before if known else None

    def succeed(self, rel: str) -> None:
        self.entries.get(rel, {}).pop("failure", None)

    def failures(self) -> dict[str, dict]:
        return {rel: e["failure"] for rel, e in self.entries.items() if "failure" in e}

    def save(self, keep) -> None:
        """Write the record of the inputs in ``keep`` (those still in the folder) atomically."""
        keep = set(keep)
        entries = {rel: e for rel, e in sorted(self.entries.items()) if rel in keep and e}
        files.atomic_write_text(self.path, json.dumps({"version": STATE_VERSION, "files": entries}, indent=1) + "\n")
