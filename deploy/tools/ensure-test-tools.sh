#!/usr/bin/env bash
# What `make test` needs besides the venv: promtool and prometheus (Debian's
# `prometheus` package) for the monitoring tests, chromium and chromedriver
# (Debian's `chromium` and `chromium-driver`) for the decision pages' browser
# test. Installs the missing ones when this machine can (root, or passwordless
# sudo, with apt-get); otherwise stops with the one command to run.
set -euo pipefail

package_of() {  # the Debian package that holds a tool
  case "$1" in
    promtool|prometheus) echo prometheus ;;
    chromedriver) echo chromium-driver ;;
    *) echo "$1" ;;
  esac
}

missing=()
packages=()
for tool in promtool prometheus chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 && continue
  missing+=("$tool")
  package=$(package_of "$tool")
  [[ " ${packages[*]-} " == *" $package "* ]] || packages+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "make test needs ${missing[*]} (Debian packages ${packages[*]}); installing them" >&2
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=none
  fi
  if [ "${as_root[*]-}" != none ]; then
    export DEBIAN_FRONTEND=noninteractive
    if "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1 \
       || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }; then
      all=yes
      for tool in "${missing[@]}"; do command -v "$tool" >/dev/null || all=no; done
      [ "$all" = yes ] && exit 0
    fi
  fi
fi
echo "error: cannot install ${packages[*]} here. Run this once, then make test again:" >&2
echo "    sudo apt-get install ${packages[*]}" >&2
exit 1
