"""Own models and calibrations live in user model folders, searched before rrim's own; build and
calibrate commands write where they are told, never into the installed package."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from rrim.cli import main
from rrim.inversion.uncertainty import calibration_path
from rrim.models.loading import MODELS_DIR, installed_models, load_model, model_folders, user_model_folders
from rrim.models.sessions import sha256_bytes
from runtime_helpers import write_model


def _own_folder(tmp_path, small_operator, name):
    """A model folder with one model ``name`` listed in its index."""
    folder = tmp_path / "own"
    folder.mkdir()
    path = write_model(folder, small_operator)
    path = path.rename(folder / f"{name}.onnx")
    (folder / "index.json").write_text(json.dumps({name: {"file": path.name, "sha256": sha256_bytes(path.read_bytes()),
                                                          "form": "baked"}}))
    return folder, path


def test_user_folders_come_first(tmp_path, monkeypatch):
    monkeypatch.setenv("RRIM_MODEL_PATH", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_model_folders() == [tmp_path / "a", tmp_path / "b", tmp_path / "data" / "rrim" / "models"]
    assert model_folders()[-1] == MODELS_DIR
    monkeypatch.delenv("RRIM_MODEL_PATH")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_model_folders() == [tmp_path / "home" / ".local" / "share" / "rrim" / "models"]


def test_a_model_in_a_user_folder_hides_the_shipped_one_of_that_name(tmp_path, monkeypatch, small_operator):
    folder, path = _own_folder(tmp_path, small_operator, "rrim-default")
    shipped = installed_models()
    monkeypatch.setenv("RRIM_MODEL_PATH", str(folder))
    models = installed_models()
    assert models["rrim-default"].path == path and set(shipped) <= set(models)
    assert load_model("rrim-default").path == path
    res = CliRunner().invoke(main, ["models", "--json"])
    listed = json.loads(res.stdout)
    assert str(folder) == listed["model_folders"][0]
    assert {m["name"]: m["file"] for m in listed["models"]}["rrim-default"] == str(path)


def test_a_model_dropped_into_the_user_folder_is_listed_and_found_by_name(tmp_path, monkeypatch, small_operator):
    folder, path = _own_folder(tmp_path, small_operator, "mine")
    (folder / "index.json").unlink()  # no index: the file alone, found by its name without a recorded sha256
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    user = tmp_path / "data" / "rrim" / "models"
    shutil.copytree(folder, user)
    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0
    row = next(line for line in res.stdout.splitlines() if line.startswith("mine "))
    assert str(user) in row and " kB" in row
    listed = {m["name"]: m for m in json.loads(CliRunner().invoke(main, ["models", "--json"]).stdout)["models"]}
    assert listed["mine"]["file"] == str(user / "mine.onnx") and listed["mine"]["indexed"] is False
    assert load_model("mine").path == (user / "mine.onnx").resolve()
    res = CliRunner().invoke(main, ["inspect", "mine"])
    assert res.exit_code == 0 and json.loads(res.stdout)["path"] == str((user / "mine.onnx").resolve())


def test_the_xdg_default_folder_is_searched(tmp_path, monkeypatch, small_operator):
    data = tmp_path / "data"
    folder, path = _own_folder(tmp_path, small_operator, "mine")
    shutil.copytree(folder, data / "rrim" / "models")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert load_model("mine").path == data / "rrim" / "models" / "mine.onnx"


def test_a_calibration_in_a_user_folder_is_found_first(tmp_path, monkeypatch):
    model = MODELS_DIR / "rrim-default.onnx"
    assert calibration_path(model) == MODELS_DIR / "rrim-default.calibration.json"
    monkeypatch.setenv("RRIM_MODEL_PATH", str(tmp_path))
    assert calibration_path(model) == MODELS_DIR / "rrim-default.calibration.json"  # none there yet
    (tmp_path / "rrim-default.calibration.json").write_text("{}")
    assert calibration_path(model) == tmp_path / "rrim-default.calibration.json"


@pytest.mark.parametrize("where", ["output-dir", "model folder", "shipped"])
def test_calibrate_writes_where_it_is_told_never_into_the_package(tmp_path, monkeypatch, small_operator, where):
    from rrim.models import loading

    folder, path = _own_folder(tmp_path, small_operator, "mine")
    monkeypatch.setenv("RRIM_MODEL_PATH", str(tmp_path / "user"))
    if where == "shipped":  # the model's folder plays the package's data folder
        monkeypatch.setattr(loading, "MODELS_DIR", folder)
    args = ["calibrate", str(path), "-n", "20", "--resamples", "2"] + (["-o", str(tmp_path / "cal")] if where == "output-dir" else [])
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    expected = {"output-dir": tmp_path / "cal", "model folder": folder, "shipped": tmp_path / "user"}[where]
    assert json.loads(res.stdout)["calibration"] == str(expected / "mine.calibration.json")
    assert (expected / "mine.calibration.md").is_file()
    assert (folder / "mine.calibration.json").exists() == (where == "model folder")


def test_build_commands_need_an_output_folder():
    pytest.importorskip("torch")
    from rrim.export.recipes import shipped_models

    with pytest.raises(SystemExit) as e:
        shipped_models.main(["rrim-lean"])
    assert e.value.code == 2
    res = CliRunner().invoke(main, ["experiments"])
    assert res.exit_code == 2 and "--output-dir" in res.output
