"""CLI verbs of the training extra. Imports only click here; torch is imported when a verb runs."""
from __future__ import annotations

COMMANDS: list = []
