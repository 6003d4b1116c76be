#!/bin/sh
# Prepare a base image for rrim (run inside the build, as root).
#   os-setup.sh runtime   a Python 3 interpreter, the user `rrim` (uid/gid 10001), /data/in and /data/out
#   os-setup.sh builder   additionally the venv module with pip (Debian/Ubuntu: python3-venv) and CA
#                         certificates (for pip, when it installs from the index)
# Slim Python images already have Python; Debian or Ubuntu bases (a debootstrapped bookworm, the
# NVIDIA CUDA images) get it from their distribution. No package lists or caches are left behind.
set -eu
role=${1:?usage: os-setup.sh runtime|builder}

apt_install() {
    command -v apt-get >/dev/null || { echo "os-setup.sh: no python3 in the base image and no apt-get to install $*" >&2; exit 1; }
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
}

case $role in
runtime)
    command -v python3 >/dev/null || apt_install python3
    getent group rrim >/dev/null || groupadd --system --gid 10001 rrim
    getent passwd rrim >/dev/null || useradd --system --uid 10001 --gid rrim --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin rrim
    mkdir -p /data/in /data/out
    chown rrim:rrim /data/out
    ;;
builder)
    need=
    python3 -m ensurepip --version >/dev/null 2>&1 || need=python3-venv
    [ -e /etc/ssl/certs/ca-certificates.crt ] || need="$need ca-certificates"
    [ -z "$need" ] || apt_install $need
    ;;
*)
    echo "os-setup.sh: unknown role '$role' (runtime or builder)" >&2
    exit 2
    ;;
esac
