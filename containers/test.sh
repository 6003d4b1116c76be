#!/usr/bin/env bash
# Build rrim's container images with podman and check them against the host; writes containers/REPORT.md.
#
#   bash containers/test.sh
#
# What it does (idempotent; needs root for apt-get, debootstrap and podman):
#   1. installs podman, runc and debootstrap with apt-get if they are missing;
#   2. makes the base image localhost/rrim-base:bookworm (debootstrap of Debian bookworm, podman
#      import) unless it exists: there is no registry to pull a base image from;
#   3. fills containers/wheelhouse/ on the host (pip download, wheels for the base's Python 3.11)
#      so that the build needs no package index;
#   4. builds the `cpu` flavour from scratch on that base and checks it: non-root user, exec-form
#      entrypoint, health check, no compilers, no torch; `rrim selfcheck` and the example job with
#      no network, a read-only root filesystem (tmpfs /tmp only) and the archive mounted read-only;
#      the job's output equals the same job run on the host (glue and every data variable to
#      float32 precision, provenance attributes apart from provider and date/history);
#      `--provider auto` runs on CPU and says so; `--provider cuda` fails with exit code 3;
#   5. the `cuda` flavour: resolves its pinned wheels for the default CUDA base (Python 3.12), builds
#      it on the local base (no CUDA libraries there) and checks the same fallback and failure;
#   6. prints the image sizes and writes containers/REPORT.md.
#
# Environment:
#   RRIM_HOST_PYTHON  Python with rrim installed, for the host run (default: REPO/.venv/bin/python)
#   RRIM_CUDA         build (default) | resolve: only resolve the cuda flavour's wheels, skip its build
#   RRIM_BUILD_CACHE  1: let podman reuse cached layers (default 0: build from scratch)
#   RRIM_KEEP_IMAGES  1: keep the images built here (default 0: remove them; the base image is kept)
# One run at a time per machine: a second run waits for the first (flock on $LOCK). The runs share
# podman's image store, and each ends with `podman image prune`, which would remove the dangling
# intermediate images of a build still running.
# Exit status: 0 when every check passed, 1 when one failed, 2 when the setup itself failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
HOST_PYTHON=${RRIM_HOST_PYTHON:-$REPO/.venv/bin/python}
CUDA_MODE=${RRIM_CUDA:-build}
BUILD_CACHE=${RRIM_BUILD_CACHE:-0}
KEEP_IMAGES=${RRIM_KEEP_IMAGES:-0}

BASE_IMAGE=localhost/rrim-base:bookworm
BASE_PYTHON=3.11                      # Debian bookworm's python3
CPU_IMAGE=localhost/rrim:cpu-test
CUDA_IMAGE=localhost/rrim:cuda-test
EXIT_NO_CUDA=3                        # rrim's documented exit code for --provider cuda without CUDA
SIZE_GOAL_MB=600
WORK=$HERE/work                       # scratch space (git-ignored), emptied on every run
EXAMPLE=$REPO/runtime/data/examples/example_archive.nc
REPORT=$HERE/REPORT.md
LOCK=${TMPDIR:-/tmp}/rrim-containers-test.lock
WHEELHOUSE=$HERE/wheelhouse
PLATFORM=(--only-binary=:all: --implementation cp --platform manylinux_2_28_x86_64)
# what podman needs on these machines (docs/ARCHITECTURE.md §8): runc, not crun; explicit ulimits
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
# how the job runs: no network, read-only root, a tmpfs for /tmp only, no capabilities (and no
# health-check timer: podman would want systemd for it)
JAIL=(--rm --no-healthcheck --network none --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=256m,mode=1777
      --cap-drop ALL --security-opt no-new-privileges "${LIMITS[@]}")

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS=()      # "PASS|FAIL<TAB>check<TAB>detail"
FAILED=0
declare -A FACT  # numbers and versions for the report

log() { printf '[containers/test.sh] %s\n' "$*" >&2; }
die() { log "setup failed: $*"; exit 2; }
record() {  # record PASS|FAIL NAME DETAIL
    RESULTS+=("$1"$'\t'"$2"$'\t'"$3")
    [ "$1" = PASS ] || FAILED=1
    log "$1  $2${3:+ — $3}"
}
check() {  # check NAME DETAIL COMMAND...: PASS if COMMAND succeeds
    local name=$1 detail=$2
    shift 2
    if "$@"; then record PASS "$name" "$detail"; else record FAIL "$name" "$detail"; fi
}

ensure_tools() {
    local need=()
    command -v podman >/dev/null || need+=(podman)
    command -v runc >/dev/null || need+=(runc)
    if ! command -v podman >/dev/null || ! podman image exists "$BASE_IMAGE"; then
        command -v debootstrap >/dev/null || need+=(debootstrap)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing ${need[*]} and not root: install them (apt-get install ${need[*]})"
        log "installing ${need[*]}"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
    fi
    [ -x "$HOST_PYTHON" ] || die "RRIM_HOST_PYTHON=$HOST_PYTHON is not an executable Python"
    "$HOST_PYTHON" -c "import rrim" || die "$HOST_PYTHON cannot import rrim"
    [ -f "$EXAMPLE" ] || die "no example archive at $EXAMPLE"
    "$HOST_PYTHON" -m rrim -q selfcheck >"$WORK/host-selfcheck.json" 2>&1 \
        || die "rrim selfcheck fails on the host (is the model shipped in runtime/data/models/?): see $WORK/host-selfcheck.json"
}

debian_mirror() {  # the host's Debian mirror for bookworm, if it has one (else debootstrap's default)
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk '/^URIs:/{u=$2} /^Suites:/ && / bookworm( |$)/ && u ~ /debian\/?$/ {print u; exit}' "$f"
    done | head -n1
    [ -f /etc/apt/sources.list ] && awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list
    return 0
}

make_base() {
    if podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE exists; not rebuilding it"
        return
    fi
    local rootfs mirror t0=$SECONDS
    rootfs=$(mktemp -d /var/tmp/rrim-rootfs.XXXXXX)
    mirror=$(debian_mirror | head -n1)
    log "debootstrap bookworm (minbase) into $rootfs ${mirror:+from $mirror}"
    nice debootstrap --variant=minbase bookworm "$rootfs" $mirror >"$WORK/debootstrap.log" 2>&1 \
        || { rm -rf "$rootfs"; die "debootstrap failed (see $WORK/debootstrap.log)"; }
    if [ -f /etc/apt/sources.list.d/debian.sources ] && grep -q ' bookworm' /etc/apt/sources.list.d/debian.sources; then
        # the host's sources (bookworm, -updates, -security) so that builds get security updates
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
        rm -f "$rootfs/etc/apt/sources.list"
    fi
    chroot "$rootfs" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q && apt-get clean' \
        >>"$WORK/debootstrap.log" 2>&1 || { rm -rf "$rootfs"; die "apt-get upgrade in the new root failed (see $WORK/debootstrap.log)"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    tar -C "$rootfs" --numeric-owner -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >&2
    rm -rf "$rootfs"
    FACT[base_seconds]=$((SECONDS - t0))
    log "base image $BASE_IMAGE made in ${FACT[base_seconds]} s"
}

fill_wheelhouse() {  # fill_wheelhouse REQUIREMENTS...: wheels for the base's Python into containers/wheelhouse
    local args=() r
    for r in "$@"; do args+=(-r "$HERE/$r"); done
    log "wheelhouse: pip download ${*} (Python $BASE_PYTHON)"
    nice "$HOST_PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" --python-version "$BASE_PYTHON" \
        --abi "cp${BASE_PYTHON/./}" -d "$WHEELHOUSE" "${args[@]}" >"$WORK/wheelhouse.log" 2>&1 \
        || die "pip download failed (see $WORK/wheelhouse.log)"
}

build() {  # build FLAVOUR IMAGE: podman build of one flavour on the local base
    local flavour=$1 image=$2 t0=$SECONDS cache=(--no-cache)
    [ "$BUILD_CACHE" = 1 ] && cache=()
    log "building flavour $flavour as $image"
    nice "${PODMAN[@]}" build --runtime runc --network host --format docker "${LIMITS[@]}" "${cache[@]}" \
        --ignorefile "$HERE/Containerfile.dockerignore" -f "$HERE/Containerfile" --build-arg FLAVOUR="$flavour" \
        --build-arg CPU_BASE="$BASE_IMAGE" --build-arg CUDA_BASE="$BASE_IMAGE" -t "$image" "$REPO" \
        >"$WORK/build-$flavour.log" 2>&1
    local rc=$?
    FACT[${flavour}_build_seconds]=$((SECONDS - t0))
    podman image prune -f >/dev/null 2>&1 || true   # the stages' images and any older image of this tag
    return $rc
}

build_kind() { [ "$BUILD_CACHE" = 1 ] && echo "(layer cache allowed)" || echo "from scratch (--no-cache)"; }

image_mb() { echo $(( $(podman image inspect --format '{{.Size}}' "$1") / 1000000 )); }

in_image() {  # in_image IMAGE PROGRAM ARGS...: run a program other than rrim in the jail
    local image=$1 prog=$2
    shift 2
    "${PODMAN[@]}" run "${JAIL[@]}" --entrypoint "$prog" "$image" "$@"
}

job() {  # job IMAGE OUTDIR ARGS...: rrim in the jail, archive read-only at /data/in, OUTDIR at /data/out
    local image=$1 out=$2
    shift 2
    mkdir -p "$out"
    chown 10001:10001 "$out"   # the image's user; a site would rather pass --user "$(id -u):$(id -g)"
    "${PODMAN[@]}" run "${JAIL[@]}" -v "$EXAMPLE:/data/in/example_archive.nc:ro" -v "$out:/data/out:rw" "$image" "$@"
}

json_field() { "$HOST_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' "$1" "$2"; }

no_build_tools() {  # no compiler, no pip, no pip cache in IMAGE
    in_image "$1" sh -c 'for c in gcc cc c++ g++ clang make pip pip3; do command -v $c && exit 1; done
                         ! ls -d /root/.cache/pip /tmp/.cache/pip /opt/rrim/bin/pip 2>/dev/null'
}

runtime_only() {  # IMAGE's Python finds none of the training or plotting stack
    in_image "$1" python3 -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) for m in ("torch", "onnx", "dask", "matplotlib")))'
}

selfcheck_ok() {  # selfcheck_ok IMAGE JSON: rrim selfcheck in the jail exits 0 with status ok
    "${PODMAN[@]}" run "${JAIL[@]}" "$1" selfcheck >"$2" 2>"$2.log" && [ "$(json_field "$2" status)" = ok ]
}

check_image() {  # check_image FLAVOUR IMAGE: what every image must satisfy
    local flavour=$1 image=$2 cfg uid
    cfg=$(podman image inspect --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck.Test}}' "$image")
    check "$flavour: user, exec-form entrypoint, health check" "$cfg" \
        test "$cfg" = '10001:10001|["rrim"]|["CMD","rrim","-q","selfcheck"]'
    uid=$(in_image "$image" id -u || echo '?')
    check "$flavour: runs as a non-root user" "id -u = $uid" test "$uid" = 10001
    check "$flavour: no compiler, no pip, no pip cache" "gcc cc c++ g++ clang make pip: none" no_build_tools "$image"
    check "$flavour: runtime dependencies only" "torch, onnx, dask, matplotlib not importable" runtime_only "$image"
    check "$flavour: rrim selfcheck (no network, read-only root)" "exit 0, status ok; $WORK/selfcheck-$flavour.json" \
        selfcheck_ok "$image" "$WORK/selfcheck-$flavour.json"
}

# what the log must say when --provider auto ran on the CPU: the cpu image has no CUDA provider at all
# (the provider is named); the cuda image tried CUDA, which cannot load here (a warning says so)
SAYS_CPU_cpu='(on|provider) cpu'
SAYS_CPU_cuda='cuda.*(did not load|failed|unavailable|not available).*cpu'

says_cpu() {  # says_cpu FLAVOUR PROVIDER LOG: the run used the CPU and its log says so
    local pattern=SAYS_CPU_$1
    [ "$2" = cpu ] && grep -qiE "${!pattern}" "$3"
}

refused_cuda() {  # refused_cuda RC OUTPUT: exit code 3 and no output file
    [ "$1" = "$EXIT_NO_CUDA" ] && [ ! -e "$2" ]
}

check_fallbacks() {  # check_fallbacks FLAVOUR IMAGE: the example job; --provider auto on CPU; --provider cuda refused
    local flavour=$1 image=$2 out rc=0 provider uid
    out=$WORK/out-$flavour
    job "$image" "$out" invert /data/in/example_archive.nc -o /data/out/example.glue.nc --provider auto \
        --report /data/out/report.json 2>"$WORK/$flavour-auto.log" || rc=$?
    check "$flavour: example job (archive read-only, no network, read-only root)" \
        "exit $rc; log: $WORK/$flavour-auto.log" test "$rc" = 0
    provider=$(json_field "$out/report.json" provider 2>/dev/null || echo '?')
    local pattern=SAYS_CPU_$flavour
    check "$flavour: --provider auto ran on CPU and says so" \
        "report: provider=$provider; stderr: $( (grep -m1 -iE "${!pattern}" "$WORK/$flavour-auto.log" || echo "no line matches /${!pattern}/; first: $(head -n1 "$WORK/$flavour-auto.log")") | cut -c1-160)" \
        says_cpu "$flavour" "$provider" "$WORK/$flavour-auto.log"
    uid=$(stat -c %u "$out/example.glue.nc" 2>/dev/null || echo '?')
    check "$flavour: output written by the image user" "owner uid $uid" test "$uid" = 10001
    rc=0
    job "$image" "$WORK/out-$flavour-cuda" invert /data/in/example_archive.nc -o /data/out/x.glue.nc \
        --provider cuda --report /data/out/report.json 2>"$WORK/$flavour-cuda.log" || rc=$?
    check "$flavour: --provider cuda without CUDA fails with exit $EXIT_NO_CUDA" \
        "exit $rc; stderr: $(grep -m1 '^rrim ERROR' "$WORK/$flavour-cuda.log" | cut -c1-200)" \
        refused_cuda "$rc" "$WORK/out-$flavour-cuda/x.glue.nc"
}

compare_with_host() {  # compare_with_host FLAVOUR: the in-container output vs the host's
    local flavour=$1 rc=0 summary
    "$HOST_PYTHON" "$HERE/compare_outputs.py" "$WORK/host/example.glue.nc" "$WORK/out-$flavour/example.glue.nc" \
        >"$WORK/compare-$flavour.json" 2>&1 || rc=$?
    summary=$("$HOST_PYTHON" "$HERE/compare_outputs.py" --summary "$WORK/compare-$flavour.json" 2>&1 | cut -c1-400)
    check "$flavour: output equals the host's" "$summary" test "$rc" = 0
}

reprocess_twice() {  # reprocess_twice IMAGE: a folder job processes the archive, then skips it (idempotent)
    local out=$WORK/out-reprocess
    job "$1" "$out" reprocess /data/in -o /data/out/batch >"$WORK/reprocess-1.json" 2>"$WORK/reprocess-1.log" &&
        job "$1" "$out" reprocess /data/in -o /data/out/batch >"$WORK/reprocess-2.json" 2>"$WORK/reprocess-2.log" &&
        "$HOST_PYTHON" -c 'import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(not (len(a["processed"]) == 1 and not a["skipped"] and not b["processed"] and len(b["skipped"]) == 1))' \
            "$WORK/reprocess-1.json" "$WORK/reprocess-2.json"
}

host_job() {
    mkdir -p "$WORK/host"
    log "host run with $HOST_PYTHON"
    nice "$HOST_PYTHON" -m rrim invert "$EXAMPLE" -o "$WORK/host/example.glue.nc" --provider cpu \
        --report "$WORK/host/report.json" 2>"$WORK/host.log" || die "the host run failed (see $WORK/host.log)"
}

resolve_cuda_default_base() {  # the cuda flavour's wheels exist for the default base's Python 3.12
    local rc=0
    nice "$HOST_PYTHON" -m pip install -q --dry-run --ignore-installed --no-deps "${PLATFORM[@]}" \
        --python-version 3.12 --abi cp312 --target "$WORK/resolve-cp312" -r "$HERE/requirements-cuda.txt" \
        >"$WORK/resolve-cuda-cp312.log" 2>&1 || rc=$?
    check "cuda: pinned wheels resolve for the default CUDA base (Python 3.12)" \
        "pip install --dry-run, exit $rc" test "$rc" = 0
}

write_report() {
    local end cpu_mb=${FACT[cpu_mb]:-?} line
    end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    {
        echo "# Container images: build and test report"
        echo
        echo "Written by \`containers/test.sh\` (do not edit by hand). Command: \`bash containers/test.sh\`"
        echo "(RRIM_CUDA=$CUDA_MODE, RRIM_BUILD_CACHE=$BUILD_CACHE), from $START to $end."
        echo
        echo "Machine: $(uname -srm); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'));"
        echo "$(free -g | awk '/^Mem:/{print $2}') GiB memory; $(. /etc/os-release && echo "$PRETTY_NAME"); $(podman --version), runc $(runc --version | head -n1 | awk '{print $3}')."
        echo "Base image: $BASE_IMAGE (debootstrap of Debian bookworm, minbase, podman import)."
        echo "Host reference: $HOST_PYTHON (rrim $("$HOST_PYTHON" -c 'import rrim; print(rrim.__version__)'), onnxruntime $("$HOST_PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)'))."
        echo
        echo "| image | size (MB, 10^6 B) | build time (s) |"
        echo "|---|---|---|"
        echo "| \`cpu\` ($CPU_IMAGE) | $cpu_mb (goal < $SIZE_GOAL_MB) | ${FACT[cpu_build_seconds]:-?} |"
        [ "$CUDA_MODE" = build ] && echo "| \`cuda\` ($CUDA_IMAGE, on the local base: no CUDA libraries) | ${FACT[cuda_mb]:-?} | ${FACT[cuda_build_seconds]:-?} |"
        [ -n "${FACT[base_seconds]:-}" ] && echo "| base (debootstrap + import) | $(image_mb "$BASE_IMAGE") | ${FACT[base_seconds]} |"
        echo
        echo "Of the \`cpu\` image, the virtual environment /opt/rrim (rrim, its dependencies, the model) takes ${FACT[cpu_venv_mb]:-?} MB (du -sm);"
        echo "the rest is the base image and its Python. The \`cuda\` size above lacks the CUDA and cuDNN libraries that its"
        echo "default base image (nvidia/cuda …-cudnn-runtime) adds; not measured here (no registry). Build times include"
        echo "apt-get of Python into the base (network) and pip from the wheelhouse; the machine's 2 CPUs were shared with other work."
        echo
        echo "| result | check | detail |"
        echo "|---|---|---|"
        for line in "${RESULTS[@]}"; do
            IFS=$'\t' read -r status name detail <<<"$line"
            echo "| $status | $name | ${detail//|/\\|} |"
        done
        echo
        if [ "$FAILED" = 0 ]; then echo "All ${#RESULTS[@]} checks passed."; else echo "Some checks FAILED."; fi
    } >"$REPORT"
    log "report written to $REPORT"
}

main() {
    rm -rf "$WORK"
    mkdir -p "$WORK" "$WHEELHOUSE"
    ensure_tools
    make_base
    local reqs=(requirements-cpu.txt requirements-build.txt)
    [ "$CUDA_MODE" = build ] && reqs+=(requirements-cuda.txt)
    fill_wheelhouse "${reqs[@]}"
    host_job

    if build cpu "$CPU_IMAGE"; then
        record PASS "cpu: builds $(build_kind) on $BASE_IMAGE" "${FACT[cpu_build_seconds]} s; log: $WORK/build-cpu.log"
        FACT[cpu_mb]=$(image_mb "$CPU_IMAGE")
        check "cpu: image size under $SIZE_GOAL_MB MB" "${FACT[cpu_mb]} MB" test "${FACT[cpu_mb]}" -lt "$SIZE_GOAL_MB"
        check_image cpu "$CPU_IMAGE"
        check_fallbacks cpu "$CPU_IMAGE"
        compare_with_host cpu
        check "cpu: rrim reprocess of a read-only folder, twice" "1 processed, then 1 skipped" reprocess_twice "$CPU_IMAGE"
        FACT[cpu_venv_mb]=$(in_image "$CPU_IMAGE" du -sm /opt/rrim | cut -f1)
    else
        record FAIL "cpu: builds $(build_kind) on $BASE_IMAGE" "see $WORK/build-cpu.log: $(tail -n3 "$WORK/build-cpu.log" | tr '\n' ' ')"
    fi

    resolve_cuda_default_base
    if [ "$CUDA_MODE" = build ]; then
        if build cuda "$CUDA_IMAGE"; then
            record PASS "cuda: builds on $BASE_IMAGE" "${FACT[cuda_build_seconds]} s; log: $WORK/build-cuda.log"
            FACT[cuda_mb]=$(image_mb "$CUDA_IMAGE")
            check_image cuda "$CUDA_IMAGE"
            check_fallbacks cuda "$CUDA_IMAGE"
            compare_with_host cuda
        else
            record FAIL "cuda: builds on $BASE_IMAGE" "see $WORK/build-cuda.log: $(tail -n3 "$WORK/build-cuda.log" | tr '\n' ' ')"
        fi
    fi

    if [ "$KEEP_IMAGES" != 1 ]; then
        podman rmi -f "$CPU_IMAGE" "$CUDA_IMAGE" >/dev/null 2>&1 || true
        podman image prune -f >/dev/null 2>&1 || true
    fi
    write_report
    log "cpu image: ${FACT[cpu_mb]:-?} MB${FACT[cuda_mb]:+; cuda image (local base): ${FACT[cuda_mb]} MB}"
    [ "$FAILED" = 0 ] && log "all ${#RESULTS[@]} checks passed" || log "some checks FAILED (see $REPORT)"
    return "$FAILED"
}

run_alone() {  # main, holding $LOCK (waits while another run holds it)
    exec 9>"$LOCK"
    flock -n 9 || { log "another run holds $LOCK: waiting for it"; flock 9; }
    main
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then run_alone; fi  # sourcing only defines the functions
