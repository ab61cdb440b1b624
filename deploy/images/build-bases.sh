#!/usr/bin/env bash
# Local base images from Debian packages, for machines that cannot pull the
# Dockerfile's defaults (python:3.11-slim-bookworm, rust:1-slim-bookworm)
# from Docker Hub:
#
#   micro-muzero/python-base:bookworm  debootstrap --variant=minbase bookworm
#                                      with python3 (3.11), venv and CA certificates
#   micro-muzero/rust-base:bookworm    that, plus gcc, python3-dev and this
#                                      machine's Rust toolchain (rustup's, copied in:
#                                      bookworm's rustc 1.63 is too old for PyO3 0.30,
#                                      and trixie's brings Python 3.13)
#
# Each is built once (skipped when the tag exists). Needs root (debootstrap)
# and Debian's mirror. Usage: deploy/images/build-bases.sh [docker-client]
# Then: docker build --build-arg PYTHON_IMAGE=micro-muzero/python-base:bookworm \
#                    --build-arg RUST_IMAGE=micro-muzero/rust-base:bookworm ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
docker=${1:-docker}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python_base=micro-muzero/python-base:bookworm
rust_base=micro-muzero/rust-base:bookworm

exists() { "$docker" image inspect "$1" >/dev/null 2>&1; }

if ! exists "$python_base"; then
  rootfs=$(mktemp -d /tmp/micro-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "== debootstrap bookworm (minbase + python3) into $rootfs" >&2
  started=$(date +%s)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$rootfs" "$mirror" >/tmp/micro-debootstrap.log 2>&1 \
    || { tail -20 /tmp/micro-debootstrap.log >&2; echo "error: debootstrap failed (log above)" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$python_base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "== $python_base built in $(( $(date +%s) - started )) s" >&2
fi

if ! exists "$rust_base"; then
  sysroot=$(rustc --print sysroot)
  echo "== $rust_base from $python_base and $(rustc --version)" >&2
  DOCKER_BUILDKIT=1 "$docker" build --quiet --network host --build-arg BASE="$python_base" \
    -f "$here/rust-base.Dockerfile" -t "$rust_base" "$sysroot" >/dev/null
fi
echo "PYTHON_IMAGE=$python_base RUST_IMAGE=$rust_base"
