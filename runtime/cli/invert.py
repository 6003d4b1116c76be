"""``rrim invert``: one archive (or the shipped example) into one output."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from rrim.cli.common import (EXAMPLE_ARCHIVE, EXIT_MOSTLY_SKIPPED, archive_options, check_side_outputs, emit,
                             engine_for, fail, sigterm_as_interrupt)
from rrim.cli.logs import Progress

log = logging.getLogger("rrim")


@click.command("invert")
@click.argument("input_path", metavar="INPUT.nc", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output NetCDF file.")
@click.option("--example", is_flag=True, help="Invert the example archive shipped with rrim (instead of INPUT.nc).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG of a few spectra (needs rrim[plot]).")
@click.option("--plot-spectra", type=click.IntRange(1, 12), default=3, show_default=True)
@archive_options
def invert_command(input_path, output, example, plot_path, plot_spectra, model_name, sha256, provider, batch_size,
                   report, opts):
    """Invert the scattering rates of INPUT.nc into glue functions written to OUTPUT."""
    from rrim.jobs.invert import invert_archive

    sigterm_as_interrupt()
    source = EXAMPLE_ARCHIVE if example else Path(input_path or "")
    try:
        check_side_outputs({"--report": report, "--plot": plot_path},
                            inputs={"input": source if example or input_path else None}, outputs={"output": output})
    except Exception as e:
        fail(e, None, input=str(source), output=str(output))
    if example == bool(input_path):
        fail(click.BadParameter("give either INPUT.nc or --example"), report)
    progress = Progress("inverting")
    try:
        with engine_for(model_name, sha256, provider, opts.tf32, batch_size) as engine:
            summary = invert_archive(source, output, engine, opts, progress=progress,
                                     preview=plot_spectra if plot_path else 0)
        progress.close()
        result = {"status": "ok", **summary.to_dict(), "output": str(Path(output).resolve()),
                  "batch_size": engine.batch_size}
        if example:
            result["example_glue_error"] = _example_error(source, output)
        if plot_path:
            result["plot"] = str(_plot(summary, plot_path, source if example else None))
    except (Exception, KeyboardInterrupt) as e:
        progress.close()
        fail(e, report, input=str(source), output=str(output))
    log.info("wrote %s (%d spectra, %.1f spectra/s, provider %s)", result["output"], summary.n_spectra,
             result["spectra_per_second"] or 0, summary.provider)
    if plot_path:
        log.info("plot: %s", result["plot"])
    if 2 * summary.skipped > summary.n_spectra:
        result.update(status="mostly_skipped", exit_code=EXIT_MOSTLY_SKIPPED)
        log.error("%s: %d of %d spectra skipped (see the warning above); the output holds NaN for them",
                  source, summary.skipped, summary.n_spectra)
        emit(result, report)
        sys.exit(EXIT_MOSTLY_SKIPPED)
    emit(result, report)


def _example_error(source: Path, output) -> dict:
    """Median and 90th percentile of ‖x̂ − x_true‖/‖x_true‖ over the example's spectra."""
    import numpy as np

    from rrim.io.reading import open_dataset

    with open_dataset(source) as a, open_dataset(output) as b:
        truth, glue = a["glue_true"].values, b["glue"].values.astype(np.float64)
    err = np.linalg.norm(glue - truth, axis=-1) / np.linalg.norm(truth, axis=-1)
    return {"median_relative_l2": float(np.median(err)), "p90_relative_l2": float(np.percentile(err, 90))}


def _plot(summary, plot_path, example_source: Path | None) -> Path:
    from rrim.io.plotting import plot_inversions

    p = summary.preview
    truth = None
    if example_source is not None:
        from rrim.io.reading import open_dataset

        with open_dataset(example_source) as a:
            t = a["glue_true"].values.reshape(-1, a.sizes["Omega"])
        truth = t[: len(p["glue"])]
    labels = [", ".join(f"{d}={i}" for d, i in zip(p["lead"], idx)) or "spectrum" for idx in p["index"]]
    return plot_inversions(Path(plot_path).resolve(), p["omega"], p["Omega"], p["y"], p["glue"], p["fit"],
                           p["residual"], labels=labels, truth=truth,
                           title=f"{Path(summary.input).name} — model {summary.model} ({summary.provider})")
