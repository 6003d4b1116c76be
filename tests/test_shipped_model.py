"""The shipped default model: sha256 agrees across file, index and card; its golden output
reproduces through onnxruntime alone (torch never imported); its card states its limits."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rrim

MODELS = Path(rrim.__file__).resolve().parent / "models"
NAME = "rrim-default"
pytestmark = pytest.mark.skipif(not (MODELS / f"{NAME}.onnx").is_file(), reason="no default model shipped yet")


def test_sha256_matches_index_and_card():
    data = (MODELS / f"{NAME}.onnx").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    index = json.loads((MODELS / "index.json").read_text())
    entry = index.get("models", index)[NAME]
    assert entry["file"] == f"{NAME}.onnx" and entry["form"] == "baked"
    assert entry["sha256"] == digest
    card = (MODELS / f"{NAME}.md").read_text()
    assert digest in card
    assert len(data) < 10 * 2 ** 20
    for words in ("T = 100 K", "2…400 meV", "python -m rrim.export.default_model", "Out-of-distribution"):
        assert words in card


def test_golden_reproduces_with_onnxruntime_alone(tmp_path):
    script = (
        "import sys\n"
        "from rrim.models import check_golden, load_model\n"
        f"check = check_golden(load_model({NAME!r}), provider='cpu')\n"
        "assert check.passed, check\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(check.max_rel_error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) <= 1e-4


def test_tampered_copy_is_refused(tmp_path):
    from rrim.modelfile import ModelFileError
    from rrim.models import load_model

    data = bytearray((MODELS / f"{NAME}.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(data))
    index = json.loads((MODELS / "index.json").read_text())
    with pytest.raises(ModelFileError):
        load_model(bad, sha256=index.get("models", index)[NAME]["sha256"])
