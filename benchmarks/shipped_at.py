"""A shipped model file as it was at a git commit (for the benchmarks' before/after comparisons)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where the shipped models lived, newest layout first (runtime/models/ before the layered package).
MODEL_FOLDERS = ("runtime/data/models", "runtime/models")


def model_bytes(commit: str, name: str) -> bytes:
    """The bytes of ``NAME.onnx`` shipped at ``commit``; ``ValueError`` when no folder held it."""
    for folder in MODEL_FOLDERS:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{folder}/{name}.onnx"], capture_output=True)
        if shown.returncode == 0:
            return shown.stdout
    raise ValueError(f"{commit}: no {name}.onnx in {', '.join(MODEL_FOLDERS)}")
