#!/usr/bin/env bash
# The main job on a fresh machine: create .venv, install rrim with plotting, invert the example
# archive shipped in the package with the shipped default model, and say where the outputs are.
# (An editable install, so that running this in a development checkout keeps its .venv as it was.)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -e '.[plot]'
mkdir -p out
.venv/bin/rrim invert --example -o out/example_glue.nc --plot out/example_glue.png --report out/example_glue.json
echo "glue functions: $(pwd)/out/example_glue.nc"
echo "plot:           $(pwd)/out/example_glue.png"
echo "summary:        $(pwd)/out/example_glue.json"
