"""``python -m rrim`` runs the ``rrim`` command line."""
from rrim.cli import main

main(prog_name="rrim")
