#!/usr/bin/env bash
# Set up a virtual environment (.venv) with every extra and the dev tools, then run the test suite.
# Extra arguments go to pytest (default: everything not marked slow; `-m slow` for the long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q -U pip
# torch first, from the CPU build on local disk: the train extra's range then installs nothing more
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[train,dask,plot,h5]' --group dev
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest "$@"
