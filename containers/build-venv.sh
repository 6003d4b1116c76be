#!/bin/sh
# Build rrim's virtual environment at /opt/rrim (run inside the builder stage).
#   build-venv.sh FLAVOUR SRC WHEELS
# FLAVOUR cpu|cuda picks containers/requirements-FLAVOUR.txt; SRC is the source tree; WHEELS a
# folder of wheels: if it holds any, pip installs from it alone (no index), else from the index.
# Dependencies come as wheels only (no compiler); rrim itself is installed without extras (no torch).
set -eu
flavour=${1:?usage: build-venv.sh cpu|cuda SRC WHEELS} src=${2:?SRC} wheels=${3:?WHEELS}
venv=/opt/rrim
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheels"
fi

python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --only-binary=:all: --no-deps -r "$src/containers/requirements-$flavour.txt"
# the requirement files pin everything, the flavour's onnxruntime wheel among them: rrim itself without
# dependencies; in the cuda flavour onnxruntime-gpu stands in for rrim's onnxruntime (the one expected
# complaint of pip check)
"$venv/bin/python" -m pip install -q --no-deps "$src"
problems=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e "^No broken requirements" \
           -e "^rrim [^ ]* requires onnxruntime, which is not installed" || true)
[ -z "$problems" ] || { echo "build-venv.sh: pip check: $problems" >&2; exit 1; }
"$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
names = {d.metadata["Name"].lower() for d in md.distributions()}
bad = names & {"torch", "onnx", "dask", "matplotlib"}
both = {"onnxruntime", "onnxruntime-gpu"} <= names
if bad or both:
    sys.exit(f"build-venv.sh: unexpected packages in the runtime venv: {sorted(bad) or 'onnxruntime with onnxruntime-gpu'}")
PY
# the runtime needs neither pip nor setuptools, nor the test suites of its libraries (~100 MB)
"$venv/bin/python" -m pip uninstall -q -y pip setuptools
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
for pkg in numpy scipy pandas xarray; do
    find "$site/$pkg" -depth -type d -name tests -exec rm -rf {} +
done
