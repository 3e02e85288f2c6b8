#!/usr/bin/env bash
# Sets up Geex in ./.venv on a fresh machine.
#   scripts/setup.sh          the library, its CLI and server, and the toolchains evaluation
#                             runs code with
#   scripts/setup.sh --dev    plus what the test suite needs (pytest, transformers, chromium,
#                             the npm editor agents in tests/serve/clients, and the VS Code
#                             extension's toolchain in editors/vscode)
#
# GEEX_VENV puts the virtual environment elsewhere (default .venv); the test suite uses it to
# check the base install in a fresh environment of its own.
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

# System packages: the toolchains `geex run` and `geex eval` judge code with, and the sandbox
# (scripts/apt-packages.txt); --dev adds what only the tests use (scripts/apt-packages-dev.txt).
# A line "PACKAGE COMMAND" installs PACKAGE only where COMMAND is not on PATH already.
install_apt_packages() {
  local wanted missing sudo=""
  wanted=$(cat "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' \
           | while read -r package command; do
               if [ -n "$command" ] && command -v "$command" >/dev/null; then continue; fi
               echo "$package"
             done || true)
  [ -n "$wanted" ] || return 0
  missing=$(echo "$wanted" | xargs -r dpkg-query -W -f='${Status} ${Package}\n' 2>&1 \
            | grep -v '^install ok installed' | awk '{print $NF}' || true)
  [ -n "$missing" ] || return 0
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: not a Debian system; install these yourself if you want them:" $missing >&2
    return 0
  fi
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup.sh: installing system packages:" $missing
  if ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq $missing >/dev/null; }; then
    echo "setup.sh: could not install" $missing "- languages without a toolchain are left" \
         "out of evaluations, with what to install" >&2
    [ "$dev" = 0 ] || exit 1
  fi
}
packages=(scripts/apt-packages.txt)
[ "$dev" = 0 ] || packages+=(scripts/apt-packages-dev.txt)
install_apt_packages "${packages[@]}"

venv=${GEEX_VENV:-.venv}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"$venv/bin/python" -c 'import torch' 2>/dev/null || "${pip[@]}" "${GEEX_TORCH:-torch==2.13.0}"
if [ "$dev" = 1 ]; then "${pip[@]}" -e '.[dev]'; else "${pip[@]}" -e .; fi
# The editor agents the serve tests drive as real clients, and the VS Code extension's
# compiler, linters, test runner and packager, each pinned by its lock file.
if [ "$dev" = 1 ]; then
  node_version=$(node --version 2>/dev/null || echo none)
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
    # Debian 12's nodejs is 18: vitest (vite) and @vscode/vsce need 20.19 or newer.
    echo "setup.sh: the editor tests need Node.js 20.19 or newer (found: $node_version):" \
         "install it from nodejs.org or NodeSource, then run setup.sh --dev again" >&2
    exit 1
  fi
  if command -v npm >/dev/null; then
    (cd tests/serve/clients && npm ci --no-audit --no-fund --silent)
    (cd editors/vscode && npm ci --no-audit --no-fund --silent)
  else
    echo "setup.sh: npm is missing, so the editor tests (tests/serve/clients, editors/vscode)" \
         "cannot run: install Node.js 20.19 or newer with npm (Debian package npm)" >&2
    exit 1
  fi
fi
echo "setup.sh: ready ($venv/bin/geex)"
