"""The model commands: ``calibrate``, ``inspect``, ``models``, ``validate-model`` and ``selfcheck``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from rrim import __version__
from rrim.cli.common import EXIT_FAILED, EXIT_OK, check_side_outputs, emit, fail, warn_if_uncalibrated
from rrim.cli.logs import Heartbeat

log = logging.getLogger("rrim")


@click.command("calibrate")
@click.argument("model_name", metavar="MODEL", default="rrim-default")
@click.option("--sha256", default=None, help="Pin the model file's sha256.")
@click.option("-n", "--spectra", type=click.IntRange(min=20), default=300, show_default=True,
              help="Held-out spectra per noise level in the fit draw and in the test draw.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resamples", type=click.IntRange(min=2, max=1024), default=16, show_default=True,
              help="Noise-resampled copies per spectrum (the band's spread).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for NAME.calibration.json (created; default: the model's own folder, or for a model "
                   "shipped with rrim the user model folder, where rrim looks first).")
@click.option("--report", "report_md", type=click.Path(dir_okay=False), default=None,
              help="Markdown report (default: NAME.calibration.md beside the calibration).")
def calibrate_command(model_name, sha256, spectra, seed, resamples, output_dir, report_md):
    """Calibrate MODEL's uncertainty bands and OOD threshold on held-out synthetic spectra; writes
    NAME.calibration.json (used by --uncertainty and the out_of_distribution flag). Never writes
    into the installed package."""
    from rrim.files import atomic_write_text
    from rrim.inversion.calibration import calibrate, report_markdown
    from rrim.models.loading import MODELS_DIR, load_model, user_model_folders

    try:
        model = load_model(model_name, sha256=sha256)
        shipped = model.path.parent.resolve() == MODELS_DIR.resolve()
        folder = Path(output_dir) if output_dir else (user_model_folders()[0] if shipped else model.path.parent)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{model.path.stem}.calibration.json"
        report = Path(report_md) if report_md else out.with_suffix(".md")
        check_side_outputs({"--report": report}, inputs={"model": model.path},
                            outputs={"calibration": out, "golden file": model.golden})
        command = f"rrim calibrate {model_name} -n {spectra} --seed {seed} --resamples {resamples}"
        log.info("calibrating %s: a fit and a test draw of %d spectra per noise level, %d resamples each, then the "
                 "OOD set; writing %s", model.name, spectra, resamples, out)
        with Heartbeat(f"calibrate {model.name}"):
            cal = calibrate(model, n=spectra, seed=seed, resamples=resamples, command=command)
        atomic_write_text(out, cal.to_json() + "\n")
        atomic_write_text(report, report_markdown(cal, model))
    except (Exception, KeyboardInterrupt) as e:
        fail(e, None, model=str(model_name))
    log.info("calibration written to %s (report %s)", out, report)
    emit({"calibration": str(out), "report": str(report), "alpha": cal.alpha, "beta": cal.beta,
           "ood_threshold": cal.ood_threshold, "band_scale": cal.band_scale}, None)


@click.command("inspect")
@click.argument("target", metavar="MODEL|FILE")
def inspect_command(target):
    """Describe an installed model by name (`rrim models` lists them), a model file (metadata, grids,
    sha256, calibration) or an archive (variables, units, provenance)."""
    from rrim.files import file_kind
    from rrim.io.paths import ArchiveError
    from rrim.models.loading import installed_models, load_model

    p = Path(target)
    try:
        kind = file_kind(p)
        if kind == "missing":
            if target not in installed_models():
                known = ", ".join(sorted(installed_models())) or "none installed"
                raise ArchiveError(f"{target}: no such file, and no installed model of that name ({known})")
            result = _describe_model(load_model(target))
        elif kind is not None:
            raise click.BadParameter(f"{p}: is {kind}, not a model or archive file")
        elif _is_netcdf(p):
            result = _inspect_archive(p)
        else:
            result = _describe_model(load_model(p))
    except (Exception, KeyboardInterrupt) as e:
        fail(e, None, path=str(p))
    emit(result, None)


def _describe_model(model) -> dict:
    """``LoadedModel.describe()`` with the file's size and its calibration (None without one)."""
    from rrim.inversion.uncertainty import calibration_digest, calibration_path

    digest = calibration_digest(model)
    return {"kind": "model", **model.describe(), "size_bytes": model.path.stat().st_size,
            "calibration": None if digest in ("none", "unreadable") else str(calibration_path(model.path))}


def _inspect_archive(p: Path) -> dict:
    import numpy as np

    from rrim.io.paths import file_sha256
    from rrim.io.provenance import PROVENANCE_ATTRIBUTES
    from rrim.io.reading import open_dataset

    with open_dataset(p) as ds:
        variables = {str(k): {"dims": list(v.dims), "shape": list(v.shape), "dtype": str(v.dtype),
                              "units": v.attrs.get("units")} for k, v in ds.variables.items()}
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
    is_output = "model_sha256" in attrs
    return {"kind": "rrim output" if is_output else "archive", "path": str(p.resolve()), "sha256": file_sha256(p),
            "variables": variables,
            "provenance" if is_output else "attributes": {k: attrs[k] for k in (PROVENANCE_ATTRIBUTES if is_output else attrs) if k in attrs}}


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="The list as JSON on stdout (for machines).")
def models_command(as_json):
    """List the models a name finds: those of the user model folders ($RRIM_MODEL_PATH, then
    ~/.local/share/rrim/models; listed in their index.json or any NAME.onnx there), then rrim's own.
    A table (name, version, form, temperature and ω range, calibrated, size, folder), or --json."""
    from rrim.models.loading import installed_models, model_folders

    try:
        rows = [_model_row(entry) for entry in installed_models().values()]
    except Exception as e:
        fail(e, None)
    if as_json:
        emit({"model_folders": [str(f) for f in model_folders()], "models": rows}, None)
        return
    click.echo(_table(rows))
    click.echo("\nmodel folders, searched in this order: " + ", ".join(str(f) for f in model_folders()))


def _model_row(entry) -> dict:
    """One model of ``rrim models``: the index's facts, and the metadata's when the file loads."""
    from rrim.inversion.uncertainty import calibration_digest
    from rrim.models.loading import load_model

    row = {"name": entry.name, "file": str(entry.path), "present": entry.path.is_file(), "sha256": entry.sha256,
           "indexed": entry.sha256 is not None, "form": entry.form or None,
           "size_bytes": entry.path.stat().st_size if entry.path.is_file() else None,
           "golden": str(entry.golden) if entry.golden.is_file() else None,
           "card": str(entry.card) if entry.card.is_file() else None}
    try:
        m = load_model(entry.name)
    except Exception as e:  # listed with the reason: one bad file does not hide the others
        return {**row, "error": str(e)}
    d = m.describe()
    return {**row, "sha256": m.sha256, "form": m.form, "model_version": d["model_version"],
            "temperature_range_K": d["temperature_range_K"], "omega_meV": d["omega_meV"],
            "calibrated": calibration_digest(m) not in ("none", "unreadable")}


def _table(rows: list[dict]) -> str:
    def rng(r, key, unit):
        v = r.get(key)
        return "?" if not v else f"{v[0]:g} {unit}" if v[0] == v[1] else f"{v[0]:g}–{v[1]:g} {unit}"

    head = ("NAME", "VERSION", "FORM", "T", "ω", "CALIBRATED", "SIZE", "FOLDER")
    lines = [head] + [(r["name"], r.get("model_version") or "?", r["form"] or "?", rng(r, "temperature_range_K", "K"),
                       rng(r, "omega_meV", "meV"),
                       "error" if "error" in r else ("yes" if r.get("calibrated") else "no"),
                       f"{r['size_bytes'] / 1e3:.0f} kB" if r["size_bytes"] is not None else "missing",
                       str(Path(r["file"]).parent)) for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out += [f"{r['name']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(out)


@click.command("validate-model")
@click.argument("path", metavar="FILE.onnx", type=click.Path(dir_okay=False))
@click.option("--sha256", default=None, help="Also require this sha256.")
def validate_model_command(path, sha256):
    """Check a model file against rrim's model-file contract (docs/MODEL_FORMAT.md): ONNX, self-contained,
    opset, metadata, inputs and outputs; its golden file if one lies beside it; one inversion of a
    spectrum made by rrim's physics (finite, non-negative glue); and whether it has a calibration (else
    no out_of_distribution flag and no bands). Exit 0 valid, 4 refused by the contract, 1 a check failed."""
    import numpy as np

    from rrim.inversion.engine import Engine
    from rrim.models.golden import check_golden
    from rrim.models.loading import load_model

    checks = []
    try:
        model = load_model(Path(path), sha256=sha256)
    except (Exception, KeyboardInterrupt) as e:
        fail(e, None, path=str(path), valid=False)
    checks.append({"check": "contract", "passed": True,
                   "detail": f"ONNX opset {model.opset}, self-contained, metadata complete, '{model.form}' form I/O"})
    if model.golden.is_file():
        try:
            g = check_golden(model)
            checks.append({"check": "golden", "passed": g.passed,
                           "detail": f"max relative error {g.max_rel_error:.2e} (tolerance {g.rtol:g})"})
        except Exception as e:
            checks.append({"check": "golden", "passed": False, "detail": str(e)})
    else:
        checks.append({"check": "golden", "passed": None, "detail": f"no {model.golden.name} beside it (optional)"})
    try:
        info = model.info
        T = info.temperature if info.temperature is not None else float(np.mean(info.temperature_range_K))
        op = info.base_operator(T)
        W = info.Omega.values
        glue = np.exp(-0.5 * ((W - W[len(W) // 3]) / (0.05 * (W[-1] - W[0]))) ** 2)
        with Engine(model, "cpu", batch_size=1) as engine:
            r = engine.invert(op.forward(glue)[None], temperature=T)
        ok = bool(np.all(np.isfinite(r.glue)) and np.all(r.glue >= 0))
        checks.append({"check": "inversion", "passed": ok,
                       "detail": f"one spectrum at {T:g} K: glue {'finite, ≥ 0' if ok else 'not finite or negative'}, "
                                 f"relative residual {float(r.residual[0]):.2e}"})
    except Exception as e:
        checks.append({"check": "inversion", "passed": False, "detail": f"{type(e).__name__}: {e}"})
    calibrated = warn_if_uncalibrated(model)
    checks.append({"check": "calibration", "passed": None if not calibrated else True,
                   "detail": "present: out_of_distribution flag and --uncertainty bands available" if calibrated else
                             "none: no out_of_distribution flag and no bands (rrim calibrate FILE)"})
    valid = all(c["passed"] is not False for c in checks)
    for c in checks:
        (log.info if c["passed"] is not False else log.error)("%s: %s %s", model.path.name, c["check"], c["detail"])
    emit({"path": str(model.path), "sha256": model.sha256, "valid": valid, "checks": checks,
          "model": model.describe()}, None)
    sys.exit(EXIT_OK if valid else EXIT_FAILED)


@click.command("selfcheck")
def selfcheck_command():
    """Verify every shipped model (sha256, metadata, golden parity) and list the providers that load."""
    from rrim.models.golden import check_golden
    from rrim.models.loading import installed_models, load_model
    from rrim.models.sessions import ProviderUnavailable, available_providers

    checks, ok = [], True
    first = None
    for name in installed_models():
        entry = {"model": name}
        try:
            m = load_model(name)
            first = first or m
            g = check_golden(m)
            entry.update(sha256=m.sha256, sha256_ok=True, golden_max_rel_error=g.max_rel_error, golden_rtol=g.rtol,
                         passed=g.passed)
        except Exception as e:
            entry.update(passed=False, error=str(e))
        ok &= entry["passed"]
        checks.append(entry)
    if not checks:
        ok = False
        log.error("no installed models")
    providers = {}
    for prov in ("cpu", "cuda"):
        if first is None:
            break
        try:
            providers[prov] = first.session(prov).provider == prov
        except ProviderUnavailable as e:
            providers[prov] = False
            log.info("%s", e)
    emit({"status": "ok" if ok else "failed", "rrim_version": __version__, "models": checks,
           "onnxruntime_providers": available_providers(), "providers_that_load": providers}, None)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


#: Suffixes of archive files: such a file is reported as an archive even when its bytes are not NetCDF.
ARCHIVE_SUFFIXES = (".nc", ".nc4", ".cdf", ".h5", ".hdf5", ".he5")


def _is_netcdf(path: Path) -> bool:
    from rrim.files import open_regular

    if path.suffix.lower() in ARCHIVE_SUFFIXES:
        return True
    with open_regular(path) as f:  # a FIFO or device is refused, never waited on
        head = f.read(8)
    return head[:3] == b"CDF" or head[:4] == b"\x89HDF"
