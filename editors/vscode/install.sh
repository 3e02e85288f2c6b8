#!/usr/bin/env bash
# Builds the Geex extension (geex.vsix) and installs it into VS Code:
#   editors/vscode/install.sh            build, then `code --install-extension geex.vsix`
#   editors/vscode/install.sh --build    build only, and print where the .vsix is
# Needs Node.js 20 or newer with npm. CODE names the editor's command (default: code; e.g.
# CODE=codium for VSCodium, CODE=code-insiders).
set -euo pipefail
cd "$(dirname "$0")"

build_only=0
for arg in "$@"; do
  case "$arg" in
    --build) build_only=1 ;;
    *) echo "install.sh: unknown option '$arg' (known: --build)" >&2; exit 2 ;;
  esac
done

if ! command -v npm >/dev/null; then
  echo "install.sh: npm is missing: install Node.js 20 or newer with npm" >&2
  exit 1
fi
# npm ci again only when the lock file is newer than what node_modules was installed from.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
fi
npm run --silent package >/dev/null
vsix="$PWD/geex.vsix"
echo "install.sh: built $vsix"
[ "$build_only" = 0 ] || exit 0

code=${CODE:-code}
if ! command -v "$code" >/dev/null; then
  echo "install.sh: '$code' is not on PATH; in VS Code run 'Extensions: Install from VSIX...'" \
       "and pick $vsix (or set CODE to your editor's command)" >&2
  exit 1
fi
"$code" --install-extension "$vsix" --force
echo "install.sh: installed; set geex.serverUrl (default http://127.0.0.1:8000) and geex.apiKey" \
     "in VS Code's settings if your server differs"
