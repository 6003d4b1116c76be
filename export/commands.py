"""CLI verbs of the training extra. Imports only click here; torch is imported when a verb runs."""
from __future__ import annotations

COMMANDS: list = []

from rrim.export.training.command import train_command  # noqa: E402  (click only; torch is imported when it runs)

COMMANDS.append(train_command)

from rrim.export.onnx.command import export_command  # noqa: E402  (click only; torch is imported when it runs)

COMMANDS.append(export_command)

from rrim.export.recipes.experiments_command import experiments_command  # noqa: E402  (click only; torch when it runs)

COMMANDS.append(experiments_command)
