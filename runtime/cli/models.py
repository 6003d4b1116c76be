"""The model commands: ``calibrate``, ``inspect``, ``models`` and ``selfcheck``."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from rrim import __version__
from rrim.cli.common import EXIT_FAILED, EXIT_OK, check_side_outputs, emit, fail

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
        cal = calibrate(model, n=spectra, seed=seed, resamples=resamples, command=command)
        atomic_write_text(out, cal.to_json() + "\n")
        atomic_write_text(report, report_markdown(cal, model))
    except (Exception, KeyboardInterrupt) as e:
        fail(e, None, model=str(model_name))
    emit({"calibration": str(out), "report": str(report), "alpha": cal.alpha, "beta": cal.beta,
           "ood_threshold": cal.ood_threshold, "band_scale": cal.band_scale}, None)


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def inspect_command(path):
    """Describe FILE: a model (metadata, grids, sha256) or an archive (variables, units, provenance)."""
    from rrim.files import file_kind

    p = Path(path)
    try:
        if file_kind(p) is not None:
            raise click.BadParameter(f"{p}: is {file_kind(p)}, not a model or archive file")
        if _is_netcdf(p):
            result = _inspect_archive(p)
        else:
            from rrim.models.loading import load_model

            result = {"kind": "model", **load_model(p).describe()}
    except (Exception, KeyboardInterrupt) as e:
        fail(e, None, path=str(p))
    emit(result, None)


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
def models_command():
    """List the models a name finds (name, file, sha256, form, golden file, model card): those of the
    user model folders ($RRIM_MODEL_PATH, then ~/.local/share/rrim/models), then rrim's own."""
    from rrim.models.loading import installed_models, model_folders

    try:
        models = installed_models()
    except Exception as e:
        fail(e, None)
    emit({"model_folders": [str(f) for f in model_folders()], "models": [
        {"name": m.name, "file": str(m.path), "present": m.path.is_file(), "sha256": m.sha256, "form": m.form,
         "golden": str(m.golden) if m.golden.is_file() else None, "card": str(m.card) if m.card.is_file() else None}
        for m in models.values()]}, None)


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


def _is_netcdf(path: Path) -> bool:
    from rrim.files import open_regular

    with open_regular(path) as f:  # a FIFO or device is refused, never waited on
        head = f.read(8)
    return head[:3] == b"CDF" or head[:4] == b"\x89HDF"
