#!/usr/bin/env bash
# Sets up Geex in ./.venv on a fresh machine.
#   scripts/setup.sh          the library and its CLI
#   scripts/setup.sh --dev    plus what the test suite needs (pytest, transformers, system tools)
#
# PyTorch: a torch already importable in .venv is kept. Otherwise GEEX_TORCH (default
# "torch==2.13.0") is installed; set it to pick another build, e.g. a CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "setup.sh: unknown option '$arg' (known: --dev)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup.sh: Geex needs Python >= 3.10; '$python' is $("$python" --version 2>&1)." >&2
  exit 1
fi

if [ "$dev" = 1 ] && [ -n "$(cat scripts/apt-packages.txt 2>/dev/null | grep -v '^#')" ]; then
  missing=$(grep -v '^#' scripts/apt-packages.txt | xargs -r dpkg-query -W -f='${Status} ${Package}\n' 2>&1 \
            | grep -v '^install ok installed' | awk '{print $NF}' || true)
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup.sh: installing system packages: $missing"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "${GEEX_TORCH:-torch==2.13.0}"
if [ "$dev" = 1 ]; then "${pip[@]}" -e '.[dev]'; else "${pip[@]}" -e .; fi
echo "setup.sh: ready (.venv/bin/geex)"
