"""``python -m rrim`` runs the ``rrim`` command line."""
from .cli import main

main(prog_name="rrim")
