#!/usr/bin/env bash
# What `make test` needs besides the venv: promtool and prometheus (Debian's
# `prometheus` package) for the monitoring tests. Installs them when missing
# and this machine can (root, or passwordless sudo, with apt-get); otherwise
# stops with the one command to run.
set -euo pipefail

missing=()
for tool in promtool prometheus; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "make test needs ${missing[*]} (Debian package prometheus); installing it" >&2
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=none
  fi
  if [ "${as_root[*]}" != none ]; then
    export DEBIAN_FRONTEND=noninteractive
    if "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
       || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
      command -v promtool >/dev/null && command -v prometheus >/dev/null && exit 0
    fi
  fi
fi
echo "error: cannot install prometheus here. Run this once, then make test again:" >&2
echo "    sudo apt-get install prometheus" >&2
exit 1
