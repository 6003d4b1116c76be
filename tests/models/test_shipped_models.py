"""The shipped models: sha256 agrees across file, index, card and calibration; golden outputs
reproduce through onnxruntime alone (torch never imported); cards state their limits."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rrim

MODELS = Path(rrim.__file__).resolve().parent / "data" / "models"
NAME = "rrim-default"
pytestmark = pytest.mark.skipif(not (MODELS / f"{NAME}.onnx").is_file(), reason="no default model shipped yet")


def test_sha256_matches_index_and_card():
    data = (MODELS / f"{NAME}.onnx").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    index = json.loads((MODELS / "index.json").read_text())
    entry = index.get("models", index)[NAME]
    assert entry["file"] == f"{NAME}.onnx" and entry["form"] == "input"
    assert entry["sha256"] == digest
    card = (MODELS / f"{NAME}.md").read_text()
    assert digest in card
    assert len(data) < 10 * 2 ** 20
    for words in ("T = 100 K", "2…400 meV", "python -m rrim.export.recipes.shipped_models rrim-default", "Out-of-distribution",
                  "data-consistency", "tikhonov_tuned", "ridge"):
        assert words in card


def test_any_temperature_model_is_shipped_with_card_and_calibrations():
    index = json.loads((MODELS / "index.json").read_text())
    entry = index.get("models", index)["rrim-any-temperature"]
    data = (MODELS / entry["file"]).read_bytes()
    assert entry["form"] == "input" and entry["sha256"] == hashlib.sha256(data).hexdigest()
    card = (MODELS / "rrim-any-temperature.md").read_text()
    assert entry["sha256"] in card and "python -m rrim.export.recipes.shipped_models rrim-any-temperature" in card
    assert "| 300 K, σ=0.001 |" in card and "T = 10…300 K" in card
    # every coverage cell within tolerance; rrim-any-temperature 2.0.0 misses one of its 40 cells
    # (300 K, σ = 1e-4, q = 0.68: 0.627; 2.3.0: 0.616): noiseless and 1e-4 spectra share a noise bin at 300 K
    allowed_misses = {NAME: 0, "rrim-lean": 0, "rrim-any-temperature": 1}
    for name, misses in allowed_misses.items():
        cal = json.loads((MODELS / f"{name}.calibration.json").read_text())
        assert cal["model_sha256"] == index.get("models", index)[name]["sha256"]
        report = (MODELS / f"{name}.calibration.md").read_text()
        assert "rrim calibrate" in report and report.split("## Out-of")[0].count("✗") <= misses


@pytest.mark.parametrize("name", [NAME, "rrim-any-temperature", "rrim-lean"])
def test_golden_reproduces_with_onnxruntime_alone(tmp_path, name):
    script = (
        "import sys\n"
        "from rrim.models.golden import check_golden\nfrom rrim.models.loading import load_model\n"
        f"check = check_golden(load_model({name!r}), provider='cpu')\n"
        "assert check.passed, check\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(check.max_rel_error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) <= 1e-4


def test_tampered_copy_is_refused(tmp_path):
    from rrim.models.loading import load_model
    from rrim.models.modelfile import ModelFileError

    data = bytearray((MODELS / f"{NAME}.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(data))
    index = json.loads((MODELS / "index.json").read_text())
    with pytest.raises(ModelFileError):
        load_model(bad, sha256=index.get("models", index)[NAME]["sha256"])
