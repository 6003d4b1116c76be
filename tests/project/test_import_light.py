"""`import rrim` (and its subpackages) stays light: no torch, onnx, dask or matplotlib at import."""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnx", "dask", "matplotlib")


def test_import_rrim_leaves_heavy_modules_out():
    code = ("import json, sys; import rrim, rrim.export, rrim.plugins; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
