"""Bad input at scale: the catalogue of tests/reliability/malformed_inputs.py through one ``rrim reprocess``
job (with good files among them) and through the library, and hypothesis-generated archives.

Contract: every file either inverts (bad spectra flagged per spectrum) or is refused with a
message naming the file, the variable and the reason — an ArchiveError (a ValueError) in the
library, a 'failed' entry with exit code 2 in the job, never a traceback — and the job goes on.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rrim
from rrim.inversion.engine import Engine
from malformed_inputs import CATALOGUE, DIM, VAR, Base, write_nc
from reliability_support import make_job, outputs, run_rrim, sha256_of, tally, temporaries, tree_hashes
from runtime_helpers import noisy_spectra, write_model

N_GOOD = 3
CATEGORIES = {"structure", "units", "dimensions", "dtypes", "values", "attributes", "encodings", "sizes", "temperature"}


@pytest.fixture(scope="module")
def base(small_operator) -> Base:
    w = np.linspace(small_operator.omega.values[0], small_operator.omega.values[-1], 80)
    _, y = noisy_spectra(rrim.ForwardOperator(w, small_operator.Omega, temperature=100.0), 3, seed=11)
    return Base(w, y)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, small_operator):
    return write_model(tmp_path_factory.mktemp("model"), small_operator, "baked")


@pytest.fixture(scope="module")
def model(model_path):
    from rrim.models.loading import load_model

    return load_model(model_path)


@pytest.fixture(scope="module")
def job(tmp_path_factory, small_operator, base, model_path):
    """Every catalogue file plus 3 good ones in one folder, and one ``rrim reprocess`` over it."""
    root = tmp_path_factory.mktemp("inputs")
    inputs = root / "archive"
    inputs.mkdir()
    for case in CATALOGUE:
        case.build(inputs / case.file, base)
    make_job(inputs, small_operator, N_GOOD, 4)
    hashes = tree_hashes(inputs)
    out = root / "out"
    p, s = run_rrim("reprocess", inputs, "-o", out, "--model", model_path, "--provider", "cpu", cwd=root)
    return {"inputs": inputs, "out": out, "hashes": hashes, "proc": p, "summary": s,
            "failed": {f["input"]: f for f in s["failed"]}, "processed": {d["input"]: d for d in s["processed"]}}


def test_the_catalogue_is_large_distinct_and_covers_every_category(job):
    names = [c.name for c in CATALOGUE]
    assert len(names) == len(set(names)) >= 40
    assert sum(c.refused for c in CATALOGUE) >= 40
    assert {c.what for c in CATALOGUE} == CATEGORIES
    contents = {job["hashes"][c.file] for c in CATALOGUE}
    assert len(contents) == len(CATALOGUE)  # no two cases write the same bytes
    assert {"zero_spectra", "huge_omega_grid", "text_named_nc", "truncated_hdf5_header"} <= set(names)


def test_one_job_over_all_of_them_goes_on_and_loses_nothing(job):
    p, s = job["proc"], job["summary"]
    assert p.returncode == 1 and s["status"] == "failed", p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    refused = sorted(c.file for c in CATALOGUE if c.refused)
    accepted = sorted([c.file for c in CATALOGUE if not c.refused] + [f"run{i:02d}.nc" for i in range(N_GOOD)])
    assert sorted(job["failed"]) == refused and sorted(job["processed"]) == accepted
    assert sorted(outputs(job["out"])) == [n.replace(".nc", ".glue.nc") for n in accepted]
    assert temporaries(job["out"]) == [] and tree_hashes(job["inputs"]) == job["hashes"]
    for f in s["failed"]:  # each refusal is logged once on stderr, as one line
        assert sum(f["error"] in line for line in p.stderr.splitlines()) == 1
    tally("bad inputs", files=len(CATALOGUE), refused=len(refused), accepted_with_flags=len(accepted) - N_GOOD,
          good_files=N_GOOD, tracebacks=0, outputs_lost=0)


def _check_refusal(case, message: str, path) -> None:
    assert str(path) in message, (case.name, message)  # the file, by its full path
    for fragment in case.fragments:
        assert fragment in message, (case.name, fragment, message)
    if case.any_of:
        assert any(a in message for a in case.any_of), (case.name, case.any_of, message)
    assert "\n" not in message and len(message) < 1000


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_each_catalogue_file_in_the_job(job, case):
    if case.refused:
        f = job["failed"][case.file]
        assert f["exit_code"] == 2, f
        _check_refusal(case, f["error"], job["inputs"] / case.file)
        assert not (job["out"] / case.file.replace(".nc", ".glue.nc")).exists()
    else:
        d = job["processed"][case.file]
        assert {k: v for k, v in d["flag_counts"].items() if v} == case.flags, d["flag_counts"]


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.refused], ids=[c.name for c in CATALOGUE if c.refused])
def test_each_refusal_through_the_library(job, model, case, tmp_path):
    from rrim.io.paths import ArchiveError
    from rrim.jobs.invert import invert_archive

    path = job["inputs"] / case.file
    with pytest.raises(ArchiveError) as e:
        invert_archive(path, tmp_path / "x.nc", Engine(model, "cpu"))
    _check_refusal(case, str(e.value), path)
    assert list(tmp_path.iterdir()) == []


def test_a_huge_omega_grid_is_read_in_bounded_slabs(tmp_path, base, model):
    """64 spectra on a 200 000-point ω axis: slabs of at most SLAB_VALUES input values, same glue as
    the same spectra on the ordinary grid."""
    from rrim.jobs.invert import SLAB_VALUES, invert_archive

    w = np.linspace(base.omega[0], base.omega[-1], 200_000)
    y = np.tile(np.stack([np.interp(w, base.omega, row) for row in base.y]), (22, 1))[:64]
    write_nc(tmp_path / "fine.nc", base, y=y, omega=w)
    write_nc(tmp_path / "coarse.nc", base, y=np.tile(base.y, (22, 1))[:64])
    calls = []
    invert_archive(tmp_path / "fine.nc", tmp_path / "fine.out.nc", Engine(model, "cpu"),
                   progress=lambda done, total: calls.append(done))
    per_slab = SLAB_VALUES // w.size
    assert calls == list(range(per_slab, 64, per_slab)) + [64]
    invert_archive(tmp_path / "coarse.nc", tmp_path / "coarse.out.nc", Engine(model, "cpu"))
    import netCDF4

    with netCDF4.Dataset(tmp_path / "fine.out.nc") as f, netCDF4.Dataset(tmp_path / "coarse.out.nc") as c:
        np.testing.assert_allclose(f["glue"][:], c["glue"][:], rtol=1e-4, atol=1e-6 * float(np.max(c["glue"][:])))


# ---- property-based: random archives -------------------------------------------------------------

def _pick(draw, good: list, bad: list):
    """One of ``good`` nine times in ten, else one of ``bad``: about half the archives are valid."""
    return draw(st.sampled_from(good)) if draw(st.integers(0, 9)) else draw(st.sampled_from(bad))


@st.composite
def archives(draw):
    """A random archive: leading shape, ω grid (length, order, range, units), dtype, values, temperature."""
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    if _pick(draw, [False], [True]):
        lead = lead + [0]
    n_w = _pick(draw, list(range(31, 61)), [0, 1, 2, 5])  # ≥ 31 points: ≤ 2 steps of the 60-point model grid apart
    lo, hi = _pick(draw, [(2.0, 400.0)], [(1.0, 400.0), (2.0, 600.0), (2.0, 300.0), (0.5, 2000.0)])
    w_units = _pick(draw, ["meV", "cm-1", "1/cm"], ["eV", "", None, "K"])
    w = np.linspace(lo, hi, n_w) * (rrim.CM1_PER_MEV if w_units in ("cm-1", "1/cm") else 1.0)
    order = _pick(draw, ["up", "down"], ["shuffle", "repeat"])
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if order == "down":
        w = w[::-1].copy()
    elif order == "shuffle" and n_w > 2:
        w = w[rng.permutation(n_w)]
    elif order == "repeat" and n_w > 2:
        w[1] = w[0]
    shape = tuple(lead) + (n_w,)
    y = rng.uniform(0, 30, shape)
    dtype = draw(st.sampled_from(["f8", "f4", "i4"]))
    special = draw(st.sampled_from(["none", "nan", "inf", "neg", "huge", "zero"] if dtype != "i4"
                                   else ["none", "neg", "zero"]))
    if y.size and special != "none":
        idx = tuple(rng.integers(0, n) for n in shape)
        y[idx] = {"nan": np.nan, "inf": np.inf, "neg": -5.0, "huge": 1e200, "zero": 0.0}[special]
    y_units = _pick(draw, ["meV", "cm-1"], [None, "THz"])
    t_kind = _pick(draw, ["scalar", "per_spectrum"], ["missing", "negative", "nan"])
    dims = tuple(f"d{i}" for i in range(len(lead))) + (DIM,)
    t = {"scalar": 100.0, "negative": -1.0, "nan": np.nan, "missing": None}.get(t_kind)
    t_dims = ()
    if t_kind == "per_spectrum":
        t, t_dims = (rng.uniform(50, 150, tuple(lead)), dims[:-1]) if lead else (120.0, ())
    return dict(y=y, omega=w, y_dims=dims, dtype=dtype, temperature=t, temperature_dims=t_dims,
                omega_attrs={} if w_units is None else {"units": w_units},
                y_attrs={} if y_units is None else {"units": y_units})


def _random_archive_contract(spec, base, model, folder, counter):
    """Write the archive, invert it; either an output that matches the input or a clear ArchiveError."""
    from rrim.io.paths import ArchiveError
    from rrim.jobs.invert import invert_archive

    counter["n"] += 1
    path = folder / f"random{counter['n']}.nc"
    out = folder / f"random{counter['n']}.glue.nc"
    write_nc(path, base, **spec)
    before = sha256_of(path)
    try:
        s = invert_archive(path, out, Engine(model, "cpu"))
    except ArchiveError as e:
        assert str(path) in str(e) and ": " in str(e), str(e)
        assert not out.exists()
        counter["refused"] += 1
    else:
        lead = spec["y"].shape[:-1]
        assert s.n_spectra == math.prod(lead) > 0
        import netCDF4

        with netCDF4.Dataset(out) as f:
            glue, flags = np.ma.filled(f["glue"][...], np.nan), f["flags"][...]
        assert glue.shape == lead + (len(model.info.Omega),)
        nonfinite = ~np.all(np.isfinite(spec["y"]) & (np.abs(spec["y"]) < 1e38), axis=-1)
        np.testing.assert_array_equal((flags & 1).astype(bool), nonfinite)
        assert np.all(np.isfinite(glue[~nonfinite])) and np.all(glue[~nonfinite] >= 0)
        counter["inverted"] += 1
    finally:
        assert sha256_of(path) == before
        assert not list(folder.glob("*.rrim-tmp"))
        path.unlink()
        out.unlink(missing_ok=True)


def _property_test(n_examples: int):
    @settings(max_examples=n_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(spec=archives())
    def check(spec, base, model, tmp_path, counter):
        _random_archive_contract(spec, base, model, tmp_path, counter)
    return check


@pytest.fixture
def counter():
    c = {"n": 0, "refused": 0, "inverted": 0}
    yield c
    tally("random archives", examples=c["n"], refused=c["refused"], inverted=c["inverted"], tracebacks=0)
    if c["n"] >= 1000:  # the generator explores both sides of the contract
        assert min(c["refused"], c["inverted"]) >= 0.1 * c["n"], c


test_random_archives_invert_or_are_refused_clearly = _property_test(30)
test_random_archives_invert_or_are_refused_clearly_1000 = pytest.mark.slow(_property_test(1000))
