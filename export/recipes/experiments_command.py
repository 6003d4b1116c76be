"""``rrim experiments -o DIR``: the accuracy experiments of issue 14 (imports torch when run)."""
from __future__ import annotations

import click

BUDGETS = ("smoke", "session", "full")  # rrim.export.recipes.experiments.PRESETS (not imported here: it needs numpy)


@click.command("experiments")
@click.option("-o", "--output-dir", "--out", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for RESULTS.md, results.json and the figures (created); the repository keeps its "
                   "copy in docs/experiments.")
@click.option("--budget", type=click.Choice(BUDGETS), default="session", show_default=True,
              help="smoke: seconds, for tests; session: about an hour on 2 cores; full: N up to 1e5, days of CPU.")
@click.option("--work", type=click.Path(file_okay=False),
              help="Checkpoints and finished pieces; rerunning the same command resumes from them "
                   "[default: runs/experiments/BUDGET].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
def experiments_command(output_dir, budget, work, threads):
    """The rRIM against searched CNN/FCN, ridge and classical solvers on the same spectra (rrim.export.recipes.experiments)."""
    from pathlib import Path

    from rrim.export.recipes.experiments import run

    command = f"{click.get_current_context().command_path} -o {output_dir} --budget {budget}"
    command += (f" --work {work}" if work else "") + (f" --threads {threads}" if threads != 1 else "")
    try:
        run(Path(output_dir), budget=budget, work=Path(work) if work else None, threads=threads, command=command)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
