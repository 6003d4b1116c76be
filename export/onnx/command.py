"""``rrim export CHECKPOINT -o MODEL.onnx [--form baked|input]`` (imports torch when run)."""
from __future__ import annotations

import json

import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The ONNX file to write (MODEL.golden.npz is written beside it).")
@click.option("--form", type=click.Choice(["baked", "input"]), default="baked", show_default=True,
              help="baked: A and P inside the model (one temperature); input: A and P fed at run time.")
@click.option("--name", default=None, help="Model name for the metadata (default: the output file's stem).")
@click.option("--model-version", default="0.1.0", show_default=True, help="Model version for the metadata.")
@click.option("--temperature-range", nargs=2, type=float, default=None, metavar="LOW HIGH",
              help="Temperatures (K) the model is meant for (default: the training temperature; "
                   "widen it for the input form only after checking the model there).")
def export_command(checkpoint, output, form, name, model_version, temperature_range):
    """Export the rRIM in CHECKPOINT (from `rrim train`) to one self-contained ONNX file.

    Checks the file with onnx.checker and onnxruntime against PyTorch before it is kept, writes a
    golden .npz beside it, and prints a JSON summary (path, sha256, parity) to stdout.
    """
    from rrim.export.onnx.export import export_checkpoint

    try:
        summary = export_checkpoint(checkpoint, output, form=form, name=name, model_version=model_version,
                                    temperature_range_K=temperature_range,
                                    command=f"rrim export {checkpoint} -o {output} --form {form}")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(summary))
