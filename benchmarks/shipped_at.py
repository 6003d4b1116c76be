"""A shipped model file as it was at a git commit (for the benchmarks' before/after comparisons)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where the shipped models lived, newest layout first (runtime/models/ before the layered package).
MODEL_FOLDERS = ("runtime/data/models", "runtime/models")


def shipped_file(commit: str, filename: str) -> bytes:
    """The bytes of the model folder's ``filename`` at ``commit``; ``ValueError`` when no folder held it."""
    for folder in MODEL_FOLDERS:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{folder}/{filename}"], capture_output=True)
        if shown.returncode == 0:
            return shown.stdout
    raise ValueError(f"{commit}: no {filename} in {', '.join(MODEL_FOLDERS)}")


def model_bytes(commit: str, name: str) -> bytes:
    """The bytes of ``NAME.onnx`` shipped at ``commit``."""
    return shipped_file(commit, f"{name}.onnx")


def write_shipped(commit: str, name: str, folder: Path) -> Path:
    """``NAME.onnx`` of ``commit`` and its calibration, when it had one, written into ``folder``; the model's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    path.write_bytes(model_bytes(commit, name))
    try:
        (folder / f"{name}.calibration.json").write_bytes(shipped_file(commit, f"{name}.calibration.json"))
    except ValueError:
        pass
    return path


def shipped_label(name: str, model) -> str:
    """A report's row name for an installed model: its name, version and the first 8 hex digits of its
    sha256, so that a report made with an older model shows it."""
    return f"{name} {model.info.model_version} (shipped, sha256 {model.sha256[:8]})"
