"""``rrim check``: a preflight of one archive against a model, without inverting."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from rrim.cli.common import archive_options, check_side_outputs, emit, fail

log = logging.getLogger("rrim")

#: Spectra read per block while counting non-finite values.
BLOCK_SPECTRA = 4096


@click.command("check")
@click.argument("input_path", metavar="INPUT.nc", type=click.Path(dir_okay=False))
@archive_options
def check_command(input_path, model_name, sha256, provider, batch_size, report, opts):
    """Check INPUT.nc against --model as `rrim invert` would, without inverting: the variable and its
    units, the ω range and how much of the model's it covers, the temperatures against the model's
    range, and the spectra holding NaN or infinite values. Exit 0 when it would invert, 2 when not
    (the message names file, variable and reason), 4 when the model is refused."""
    from rrim.models.loading import load_model

    path = Path(input_path)
    try:
        check_side_outputs({"--report": report}, inputs={"input": path}, outputs={})
        model = load_model(model_name, sha256=sha256)
        result = preflight(path, model, opts)
    except (Exception, KeyboardInterrupt) as e:
        fail(e, report, input=str(path))
    for warning in result["warnings"]:
        log.warning("%s: %s", path, warning)
    log.info("%s: %d spectra valid for model %s", path, result["n_spectra"], model.name)
    emit(result, report)


def preflight(path: Path, model, opts) -> dict:
    """What ``rrim check`` reports for ``path`` (raises :class:`rrim.io.paths.ArchiveError` when it is invalid)."""
    import numpy as np

    from rrim.inversion.flags import FLAG_TEMPERATURE
    from rrim.io.reading import open_dataset, read_source

    with open_dataset(path) as ds:
        src = read_source(ds, path, model, opts)
        units = {"variable": src.data.attrs.get("units"), "omega": ds[opts.dim].attrs.get("units")}
        nonfinite_spectra = nonfinite_values = untrained = 0
        flat = src.data.stack(_spectrum=list(src.lead)) if src.lead else src.data.expand_dims("_spectrum")
        flat = flat.transpose("_spectrum", opts.dim)
        for start in range(0, src.n_spectra, BLOCK_SPECTRA):
            block = np.asarray(flat[start:start + BLOCK_SPECTRA].values, dtype=np.float64)
            bad = ~np.isfinite(block)
            nonfinite_values += int(bad.sum())
            nonfinite_spectra += int(bad.any(axis=1).sum())
            untrained += int(np.count_nonzero(~src.trained(block, src.on_grid(block)[1])))
    w_model = model.info.omega.values
    w = src.omega_meV
    covered = float(np.mean((w_model >= w.min()) & (w_model <= w.max())))
    temps = np.unique(src.temperature_values)
    t_lo, t_hi = model.info.temperature_range_K
    outside = temps[(temps < t_lo) | (temps > t_hi)]
    warnings = []
    masked = src.coverage is not None  # a mask-aware model that serves this file: unobserved points are not read
    if nonfinite_spectra:
        warnings.append(f"{nonfinite_spectra} of {src.n_spectra} spectra of {opts.var!r} hold NaN or infinite values "
                        + ("(NaN channels are left out as unobserved; infinite values skip their spectrum)" if masked
                           else "(they are flagged, not inverted)"))
    if untrained:
        warnings.append(f"{untrained} of {src.n_spectra} spectra would be skipped: their own ω coverage (NaN channels "
                        "taken out) is outside what the model was trained for (flag coverage_untrained)")
    if covered < 1:
        warnings.append(f"the data cover {covered:.0%} of the model's ω range {w_model[0]:g}…{w_model[-1]:g} meV "
                        + ("(the rest is unobserved: the model does not read it)" if masked
                           else "(the rest is extrapolated or cropped and flagged)"))
    if outside.size:
        warnings.append(f"{outside.size} temperature(s) outside the model's range {t_lo:g}…{t_hi:g} K "
                        f"(e.g. {outside[0]:g} K; flagged temperature_out_of_range, bit {FLAG_TEMPERATURE})")
    return {"status": "ok", "input": str(path.resolve()), "model": model.name, "variable": opts.var,
            "dimensions": {d: int(n) for d, n in zip(src.lead, src.shape)}, "n_spectra": src.n_spectra,
            "n_omega": int(w.size), "units": units,
            "omega_range_meV": [float(w.min()), float(w.max())],
            "model_omega_range_meV": [float(w_model[0]), float(w_model[-1])], "model_omega_coverage": covered,
            "temperature_K": {"min": float(temps.min()), "max": float(temps.max()), "distinct": int(temps.size),
                              "model_range": [float(t_lo), float(t_hi)], "outside_model_range": int(outside.size)},
            "nonfinite_spectra": nonfinite_spectra, "nonfinite_values": nonfinite_values,
            "spectra_outside_trained_coverage": untrained,
            "grid_flags": int(src.grid_flags), "warnings": warnings}
