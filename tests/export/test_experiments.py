"""The accuracy experiments (rrim.export.recipes.experiments) end to end with the smoke budget: tables
consistent with the raw numbers, the bar check reading what the tables print, seeds that differ,
and a run interrupted then resumed equal to an uninterrupted one."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rrim.export.recipes import evaluation  # noqa: E402
from rrim.export.recipes import experiments as ex  # noqa: E402
from rrim.export.recipes import experiments_design as design  # noqa: E402
from rrim.export.recipes import experiments_report as rep  # noqa: E402
from rrim.export.recipes.experiments_command import BUDGETS, experiments_command  # noqa: E402


def _run(out):
    ex.run(out, budget="smoke", work=out / "work")
    return json.loads((out / "results.json").read_text()), (out / "RESULTS.md").read_text()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke budget through the command line, as a user runs it."""
    out = tmp_path_factory.mktemp("smoke")
    res = CliRunner().invoke(experiments_command, ["-o", str(out), "--budget", "smoke", "--work", str(out / "work")],
                             prog_name="rrim experiments")
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "results.json").read_text()), (out / "RESULTS.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _table(block: str, after: str = "") -> dict[str, list[str]]:
    """{first cell: other cells} of the first markdown table in ``block`` after the text ``after``."""
    lines = block[block.index(after):].splitlines() if after else block.splitlines()
    rows, started = {}, False
    for line in lines:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-"):
                rows[cells[0]] = cells[1:]
        elif started:
            break
    return rows


def _mean(cell: str) -> str:
    return cell.split(" ± ")[0]


def test_smoke_run_writes_consistent_tables(smoke):
    out, results, text = smoke
    budget = design.PRESETS["smoke"]
    for name in ("RESULTS.md", "results.json", "mse_vs_n.png", "mse_vs_sigma.png", "ood_shapes.png"):
        assert (out / name).stat().st_size > 0
    assert results["budget"]["name"] == "smoke"
    assert results["command"] == f"rrim experiments -o {out} --budget smoke --work {out / 'work'}"
    assert "wall time" in text and "machine:" in text and "smoke budget" in text
    assert results["failures"] == []
    records = results["records"]
    wanted = {"rRIM", "CNN", "FCN", "ridge", "Tikhonov (tuned)", "Tikhonov (GCV)", "Tikhonov (discrepancy)",
              "NNLS (tuned weight)", "MEM (χ²)"}
    for kind in ("test", "ood", "realistic"):
        expected = wanted if kind != "realistic" else wanted - {"Tikhonov (tuned)"} | {"Tikhonov (best weight per file)"}
        assert expected <= {r["method"] for r in records if r["set"] == kind}, kind
    # every learned method: one test record per seed, N, σ judged
    for method in ("rRIM", "CNN", "FCN", "ridge"):
        for n in budget.sizes:
            for sigma in design.sigmas_at(n, budget):
                rows = rep.select(records, "test", method, n=n, sigma=sigma)
                assert sorted(r["seed"] for r in rows) == list(range(budget.n_seeds)), (method, n, sigma)
    # the σ table prints the means over seeds of the raw records, for every method and σ
    block = _section(text, "## Test error vs noise level")
    table = _table(block, "MSE:")
    assert list(table) == ["method"] + rep.methods_of(records, "test")
    for method, cells in list(table.items())[1:]:
        for sigma, cell in zip(design.SIGMAS, cells):
            values = rep.per_seed(rep.select(records, "test", method, n=budget.bar_n, sigma=sigma), "mse")
            assert cell == rep.fmt(values), (method, sigma)
    rel = _table(block, "Median relative L2 error:")
    values = rep.per_seed(rep.select(records, "test", "rRIM", n=budget.bar_n, sigma=1e-3), "rel_l2")
    assert rel["rRIM"][design.SIGMAS.index(1e-3)] == rep.fmt(values, ".3f")
    # the N tables: classical methods repeat over N, learned ones change
    n_table = _table(_section(text, "## Test error vs training-set size N"), "MSE:")
    assert len(set(n_table["Tikhonov (tuned)"])) == 1
    assert n_table["rRIM"][0] != n_table["rRIM"][1]


def test_bar_check_reads_the_numbers_it_printed(smoke):
    _, results, text = smoke
    sigma_table = _table(_section(text, "## Test error vs noise level"), "MSE:")
    bars = _table(_section(text, "## Bar check"))
    lines = [line for line in _section(text, "## Bar check").splitlines() if line.startswith("| rRIM")]
    assert len(lines) == len(results["bars"]) - 1  # + the realistic-set bar
    checked = 0
    for line, bar in zip(lines, results["bars"]):
        name, sigma, value, reference, ratio, limit, met = (c.strip() for c in line.strip("|").split("|"))
        assert name == bar["bar"] and float(limit.lstrip("≤ ")) == bar["limit"]
        assert math.isclose(bar["ratio"], bar["value"] / bar["reference"], rel_tol=1e-12)
        assert math.isclose(float(ratio), float(value) / float(reference.split(" (")[0]), rel_tol=0.02)
        assert met == ("yes" if bar["ratio"] <= bar["limit"] else "**no**")
        column = design.SIGMAS.index(float(sigma))
        if name.startswith("rRIM / tuned Tikhonov"):
            assert value == _mean(sigma_table["rRIM"][column])
            assert reference == f"{_mean(sigma_table['Tikhonov (tuned)'][column])} (Tikhonov (tuned))"
            checked += 1
        elif name.startswith("rRIM / best of"):
            best = min(("CNN", "FCN", "ridge"), key=lambda m: float(_mean(sigma_table[m][column])))
            assert value == _mean(sigma_table["rRIM"][column])
            assert reference == f"{_mean(sigma_table[best][column])} ({best})"
            checked += 1
    assert checked == 2 * len(design.SIGMAS)
    assert any(k.startswith("realistic set") for k in bars)


def test_seeds_differ(smoke):
    _, results, _ = smoke
    records = results["records"]
    for method in ("rRIM", "CNN", "ridge", "Tikhonov (tuned)"):
        a, b = (rep.select(records, "test", method, n=60, sigma=1e-3, seed=s) for s in (0, 1))
        assert a[0]["mse"] != b[0]["mse"], method
    problem = design.Problem()
    x0, y0, _ = problem.noisy_set(4, design.TEST_SEED, 0, 1e-3)
    x1, y1, _ = problem.noisy_set(4, design.TEST_SEED, 1, 1e-3)
    xt, _, _ = problem.noisy_set(4, design.TUNE_SEED, 0, 1e-3)
    assert not np.allclose(x0, x1) and not np.allclose(y0, y1) and not np.allclose(x0, xt)


def test_interrupted_run_resumes_to_the_same_numbers(smoke, tmp_path, monkeypatch):
    _, uninterrupted, _ = smoke
    calls = {"n": 0}
    real_fit = ex.fit

    def failing_fit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 9:
            raise KeyboardInterrupt("interrupted")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(ex, "fit", failing_fit)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    assert not (tmp_path / "results.json").exists()
    monkeypatch.setattr(ex, "fit", real_fit)
    resumed, text = _run(tmp_path)
    assert resumed["pieces"]["reused"] > 0
    assert [i["completed"] for i in resumed["invocations"]] == [False, True]  # the interrupted one counts too
    assert "all 2 invocation(s) on this work" in text
    for key in ("records", "bars", "weights"):
        assert resumed[key] == uninterrupted[key], key
    for family, found in uninterrupted["search"].items():  # the same choice from the same validation numbers
        assert resumed["search"][family]["chosen"] == found["chosen"]
        assert [t["best_val"] for t in resumed["search"][family]["tried"]] == [t["best_val"] for t in found["tried"]]
    again, _ = _run(tmp_path)  # a finished run: everything reused
    assert again["pieces"] == {"made": 0, "reused": uninterrupted["pieces"]["made"]}
    assert again["records"] == uninterrupted["records"]


def test_budgets():
    presets = design.PRESETS
    assert set(BUDGETS) == set(presets)
    assert max(presets["full"].sizes) == 100_000 and presets["session"].n_seeds >= 3 and presets["full"].n_seeds >= 3
    for budget in presets.values():
        per_family = [sum(1 for c in budget.search if c[0] == f) for f in design.BASELINES]
        assert len(set(per_family)) == 1  # the same search budget for CNN and FCN
    assert presets["session"].max_epochs == presets["full"].max_epochs == 0  # the configurations' own limit
    with pytest.raises(ValueError, match="bar_n"):
        design.Budget("bad", sizes=(10,), bar_n=20, n_seeds=1, n_test=1, n_tune=1, n_nnls_tune=1, n_mem=0, n_per_file=1,
                  search=presets["smoke"].search)


def test_configs_differ_from_the_shipped_recipe_only_in_size_seed_folder_and_epoch_floor(tmp_path):
    from rrim.export.config import load_config

    shipped = load_config(design.CONFIGS / design.RRIM_CONFIG)  # the rRIM's recipe from scratch
    assert shipped.data == load_config(design.CONFIGS / "rrim_default_2.0.0.toml").data  # the same test spectra
    config = design.rrim_config(1000, 2, design.PRESETS["full"], tmp_path)
    assert config.replace(data={"n": shipped.data.n, "seed": 0},
                          training={"seed": 0, "output_dir": shipped.training.output_dir}) == shipped
    # N = 100: 3 batches a pass; an epoch is made at least MIN_EPOCH_STEPS optimizer steps
    small = design.rrim_config(100, 2, design.PRESETS["full"], tmp_path)
    assert small.training.min_epoch_steps == design.MIN_EPOCH_STEPS > 3 and config.training.min_epoch_steps == 0
    assert small.replace(data={"n": 1000}, training={"min_epoch_steps": 0, "output_dir": config.training.output_dir}) == config
    cnn = design.baseline_config(("CNN", 16, 2, 3e-4), 100, 1e-3, 1, design.PRESETS["full"], tmp_path)
    t = cnn.training
    assert (cnn.model.channels, cnn.model.depth, t.lr, cnn.data.sigma, cnn.data.n, t.seed) == (16, 2, 3e-4, 1e-3, 100, 1)
    for name in ("patience", "lr_patience", "lr_factor", "min_lr", "max_epochs", "batch_size"):
        assert getattr(t, name) == getattr(shipped.training, name), name
    assert cnn.operator == shipped.operator


def test_smoke_never_replaces_the_committed_results(tmp_path):
    with pytest.raises(ValueError, match="never replace docs/experiments"):
        ex.run(ex.DOCS, budget="smoke", work=tmp_path)
    res = CliRunner().invoke(experiments_command, ["-o", str(ex.DOCS), "--budget", "smoke", "--work", str(tmp_path)])
    assert res.exit_code == 2 and "never replace" in res.output


def test_a_failing_solver_is_reported_not_raised():
    problem = design.Problem()
    x, y, noise = problem.noisy_set(2, design.TEST_SEED, 0, 1e-3)
    found = evaluation.classical_estimates(problem.op, y, noise, {"tikhonov": -1.0, "nnls": 1e-6}, n_mem=0)
    assert isinstance(found["Tikhonov (tuned)"], str) and "weight" in found["Tikhonov (tuned)"]
    assert found["Tikhonov (GCV)"][0].shape == x.shape


def test_a_piece_that_trains_is_redone_when_its_configuration_changes(tmp_path):
    """Pieces are reused for the same budget and configuration; a changed training recipe makes it again."""
    budget = design.PRESETS["smoke"]
    config = design.rrim_config(100, 0, budget, tmp_path)
    made = []

    def make():
        made.append(1)
        return {"n": len(made)}

    pieces = ex.Pieces(tmp_path, budget)
    assert pieces.get("rRIM", make, config) == {"n": 1}
    assert ex.Pieces(tmp_path, budget).get("rRIM", make, config) == {"n": 1}  # reused, not made again
    changed = config.replace(training={"patience": config.training.patience + 1})
    assert ex.Pieces(tmp_path, budget).get("rRIM", make, changed) == {"n": 2}
    assert ex.Pieces(tmp_path, budget).get("rRIM", make, changed) == {"n": 2} and len(made) == 2
