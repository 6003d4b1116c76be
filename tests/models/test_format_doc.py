"""docs/MODEL_FORMAT.md stays in step with the code: it names every metadata key and graph input the
runtime knows, the regularization keys of the shipped models and the contract's numbers, and its
example builds a model that rrim loads and runs."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import main
from rrim.inversion.regularization import H_MAX, H_MIN
from rrim.models import modelfile
from rrim.models.golden import GOLDEN_ALIASES, GOLDEN_RTOL
from rrim.models.loading import INDEX_FILE, MAX_GRID_POINTS, MAX_MODEL_BYTES, installed_models, load_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "MODEL_FORMAT.md"


def _named() -> set[str]:
    """Everything the document writes as code (`…`)."""
    return set(re.findall(r"`([^`\s]+)`", DOC.read_text()))


def test_every_metadata_key_is_documented():
    keys = set(modelfile.METADATA_KEYS) | set(modelfile.OPTIONAL_KEYS)
    assert not keys - _named(), f"docs/MODEL_FORMAT.md does not name {sorted(keys - _named())}"


def test_every_graph_input_output_and_form_is_documented():
    names = {v for k, v in vars(modelfile).items() if k.startswith(("INPUT_", "OUTPUT_"))} | set(modelfile.FORMS)
    assert len(names) >= 9 and not names - _named(), sorted(names - _named())


def test_regularization_keys_of_the_shipped_models_are_documented():
    keys = {"rule", "correction_steps", "polish_iterations"}
    for entry in installed_models().values():
        keys |= set(load_model(entry.name).info.regularization)
    assert "mask" in keys and not keys - _named(), sorted(keys - _named())


def test_golden_and_index_names_and_the_contract_numbers_are_documented():
    text = DOC.read_text()
    names = {INDEX_FILE, *GOLDEN_ALIASES, *(a for aliases in GOLDEN_ALIASES.values() for a in aliases)}
    assert not names - _named(), sorted(names - _named())
    numbers = {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])", text)}
    assert {GOLDEN_RTOL, H_MIN, H_MAX, MAX_GRID_POINTS, modelfile.MIN_OPSET} <= numbers
    assert f"format {modelfile.FORMAT_VERSION}" in text and f"{MAX_MODEL_BYTES >> 30} GiB" in text


def test_the_example_builds_a_model_that_rrim_runs(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    text = DOC.read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "model_format_example"})
    (command,) = re.findall(r"`rrim (invert --example --model tikhonov[^`]+)`", text)
    args = shlex.split(command)
    model = load_model(tmp_path / args[args.index("--model") + 1])
    assert model.form == "baked" and not model.info.adaptive
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / args[args.index("-o") + 1]) as out:
        assert out.attrs["model_sha256"] == model.sha256 and np.isfinite(out["glue"].values).all()
