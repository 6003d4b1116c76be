"""``rrim train CONFIG [-o OUTDIR]``: train a model from a TOML configuration (imports torch when run)."""
from __future__ import annotations

import json
import logging

import click


@click.command("train")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for model.pt and history.json (default: training.output_dir of CONFIG).")
def train_command(config_path, output_dir):
    """Train the rRIM or an FCN/CNN baseline described by the TOML file CONFIG.

    Logs one line per epoch to stderr; prints a JSON summary (checkpoint, losses, test MSE) to stdout.
    The state is saved after every epoch: the same command resumes an interrupted run; a run cut by
    ``training.chunk_s`` reports "finished": false and writes no model.pt.
    """
    from rrim.export.config import load_config
    from rrim.export.training.loop import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        config = load_config(config_path)
        if output_dir is not None:
            config = config.replace(training={"output_dir": output_dir})
        result = train(config)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps({"finished": result.finished, "checkpoint": str(result.checkpoint_path),
                           "best_val_mse": result.best_val_loss,
                           "best_epoch": result.best_epoch, "epochs": len(result.history),
                           "seconds": round(result.seconds, 1), **result.test_metrics}))
