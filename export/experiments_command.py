"""``rrim experiments -o DIR``: rerun the paper's experiments (imports torch when run)."""
from __future__ import annotations

import sys

import click


@click.command("experiments")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for RESULTS.md, results.json and the figures (created); the repository keeps its "
                   "copy in docs/experiments.")
@click.option("--full", is_flag=True, help="N up to 100000, 10 seeds, long training (hours to days on CPU).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes for the independent (N, σ, seed) runs (results do not depend on it).")
def experiments_command(output_dir, full, threads, workers):
    """Train and compare the rRIM, CNN, FCN and classical solvers as in the paper (rrim.export.experiments)."""
    from pathlib import Path

    from rrim.export.experiments import run

    run(Path(output_dir), full=full, threads=threads, workers=workers, command=" ".join(["rrim", *sys.argv[1:]]))
