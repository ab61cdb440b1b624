#!/usr/bin/env bash
# What `make test-containers` needs on a Debian machine without Docker Hub:
# Debian's docker.io (dockerd and a client that builds with BuildKit),
# docker-compose (1.29) and debootstrap. Installs what is missing (root or
# passwordless sudo), starts dockerd when none answers, and waits for it.
# Prints the docker client to use (one with BuildKit) on stdout.
set -euo pipefail

as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(false)
  fi
fi

missing=()
[ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    "${as_root[@]}" apt-get update -qq >/dev/null \
      && "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || { echo "error: cannot install ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2; exit 1; }
  fi
fi

# A client that builds with BuildKit: Debian's (20.10) has it built in; a
# newer client without the buildx plugin refuses DOCKER_BUILDKIT=1.
client=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then
  client=/usr/bin/docker
fi

if ! "$client" info >/dev/null 2>&1; then
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  echo "starting dockerd (log: /tmp/micro-dockerd.log)" >&2
  "${as_root[@]}" nohup "$dockerd" >/tmp/micro-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    "$client" info >/dev/null 2>&1 && break
    sleep 1
  done
  "$client" info >/dev/null 2>&1 || { echo "error: dockerd did not answer in 60 s; see /tmp/micro-dockerd.log" >&2; exit 1; }
fi
echo "$client"
