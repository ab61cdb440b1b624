#!/usr/bin/env bash
# `make test-containers`: Docker from Debian's packages (installed and started
# when missing), the local base images (debootstrap), the project image and a
# Prometheus image, then tests/test_containers.py against a real engine.
# Uses PyPI's torch (TORCH_INDEX) and passes this machine's CA bundle
# (PIP_CERT) to the build as a BuildKit secret, never into a layer.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
docker=$(deploy/images/ensure-docker.sh)
eval "$(deploy/images/build-bases.sh "$docker")"   # PYTHON_IMAGE, RUST_IMAGE

secret=()
ca=${PIP_CERT:-}
[ -n "$ca" ] && [ -f "$ca" ] && secret=(--secret "id=ca,src=$ca")
echo "== building micro-muzero:latest (torch from ${TORCH_INDEX:=https://pypi.org/simple})" >&2
started=$(date +%s)
DOCKER_BUILDKIT=1 "$docker" build --network host "${secret[@]}" \
  --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg TORCH_INDEX="$TORCH_INDEX" \
  -f deploy/Dockerfile -t micro-muzero:latest . >/tmp/micro-image-build.log 2>&1 \
  || { tail -30 /tmp/micro-image-build.log >&2; echo "error: the image build failed (log above)" >&2; exit 1; }
echo "== built in $(( $(date +%s) - started )) s: $("$docker" image inspect -f '{{.Size}}' micro-muzero:latest) bytes" >&2
DOCKER_BUILDKIT=1 "$docker" build -q --network host --build-arg BASE="$PYTHON_IMAGE" \
  -f deploy/images/prometheus.Dockerfile -t micro-muzero/prometheus:bookworm deploy/images >/dev/null

MICRO_DOCKER="$docker" "$py" -m pytest -m containers -v tests/test_containers.py "$@"
