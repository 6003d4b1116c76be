"""One options definition (issue 16, item 3): the options of ``rrim invert``/``reprocess``/``check``, the
keywords of ``ds.rrim.invert()`` and the options an output records are the fields of
:class:`rrim.io.schema.ArchiveOptions`, by the same names, with the same checks."""
from __future__ import annotations

import inspect
import json
from dataclasses import fields

import click
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim.plugins  # noqa: F401  (registers the accessor)
from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE
from rrim.io.schema import ArchiveOptions

NAMES = {f.name for f in fields(ArchiveOptions)}
#: A value other than the default for every option (a new option must be added here).
CHANGED = {"var": "rate", "dim": "w", "temperature": 120.0, "omega_units": "cm-1", "rate_units": "THz",
           "temperature_units": "degC", "temperature_var": "T", "crop": True, "smoothing": 2.5, "uncertainty": 0.9,
           "impurity": True, "tf32": True}


def test_the_command_line_the_accessor_and_the_outputs_name_the_same_options():
    shared = set.intersection(*({p.name for p in main.commands[c].params if isinstance(p, click.Option)}
                                for c in ("invert", "reprocess", "check")))
    assert shared == NAMES | {"model_name", "sha256", "provider", "batch_size", "report", "verbose", "quiet", "log_format"}
    for name in NAMES:
        option = next(p for p in main.commands["invert"].params if p.name == name)
        assert option.opts == ["--" + name.replace("_", "-")]
    accessor = xr.Dataset().rrim
    assert set(inspect.signature(accessor.invert).parameters) == NAMES | {"model", "sha256", "provider", "batch_size"}
    assert NAMES <= set(inspect.signature(accessor.plot).parameters)
    assert set(json.loads(ArchiveOptions().to_json())) == NAMES | {"output_format"}
    assert set(CHANGED) == NAMES and all(CHANGED[f.name] != f.default for f in fields(ArchiveOptions))


def test_the_command_line_and_the_accessor_make_the_same_options(monkeypatch):
    import rrim.cli.check as check
    from rrim.plugins.accessor import _options

    seen = []
    monkeypatch.setattr(check, "preflight", lambda path, model, opts: seen.append(opts) or {"warnings": [], "n_spectra": 0})
    args = ["check", str(EXAMPLE_ARCHIVE)]
    for name, value in CHANGED.items():
        if name != "uncertainty":  # from the environment, as a cron line would set it
            args += ["--" + name.replace("_", "-")] + ([] if value is True else [str(value)])
    res = CliRunner().invoke(main, args, env={"RRIM_UNCERTAINTY": "0.9"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert seen == [ArchiveOptions(**CHANGED)] == [_options("invert", CHANGED)]
    assert json.loads(seen[0].to_json()) == {**CHANGED, "output_format": "3"}


def test_options_are_checked_alike_on_the_command_line_and_in_python():
    for bad in ("0.5", "abc"):
        res = CliRunner().invoke(main, ["check", str(EXAMPLE_ARCHIVE), "--uncertainty", bad])
        assert res.exit_code == 2 and "--uncertainty" in res.output
    res = CliRunner().invoke(main, ["check", str(EXAMPLE_ARCHIVE), "--smoothing", "0"])
    assert res.exit_code == 2 and "--smoothing" in res.output
    with pytest.raises(ValueError, match=r"uncertainty: expected one of 0\.68, 0\.9, got 0\.5"):
        ArchiveOptions(uncertainty=0.5)
    with pytest.raises(ValueError, match="smoothing: expected a value > 0 meV"):
        ArchiveOptions(smoothing=0)
    with pytest.raises(ValueError, match="smoothing"):
        ArchiveOptions(smoothing=float("nan"))
    with pytest.raises(TypeError, match="crop: expected bool"):
        ArchiveOptions(crop="yes")
    with pytest.raises(TypeError, match="temperature: expected float or None, got '100'"):
        ArchiveOptions(temperature="100")
    opts = ArchiveOptions(temperature=np.float32(100), smoothing=2, impurity=np.bool_(True))
    assert (opts.temperature, opts.smoothing, opts.impurity) == (100.0, 2.0, True)
    assert json.loads(opts.to_json())["temperature"] == 100.0  # numpy scalars are recorded as plain numbers


def test_the_accessor_refuses_unknown_keywords_and_renames_former_ones():
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) smoothing_mev; the options are var, dim, "):
        xr.Dataset().rrim.invert(smoothing_mev=2.0)
    with pytest.warns(FutureWarning, match="smoothing_meV= is now smoothing="), \
            pytest.raises(TypeError, match="give smoothing= only"):
        xr.Dataset().rrim.invert(smoothing_meV=2.0, smoothing=2.0)
    from rrim.plugins.accessor import _options

    with pytest.warns(FutureWarning, match="temperature_name= is now temperature_var="):
        assert _options("plot", {"temperature_name": "T"}) == ArchiveOptions(temperature_var="T")
