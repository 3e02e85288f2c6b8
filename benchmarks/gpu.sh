#!/usr/bin/env bash
# The GPU check: training MFU of the small and 350m presets (bf16, compiled), decoding tokens/s
# and the evaluation's throughput, in one table, in at most 8 minutes on one H100.
#
#   benchmarks/gpu.sh                  # on a machine with a CUDA GPU
#   benchmarks/gpu.sh --cpu-smoke      # the same steps with the tiny preset on the CPU
#   GPU_CHECK_WORK=/tmp/g benchmarks/gpu.sh   # where data, runs and gpu-check.json go
#
# Without a GPU (and without --cpu-smoke) it says so in one line and exits 0.
# What it measures and how: benchmarks/gpu_check.py; results: docs/benchmarks.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

smoke=()
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) smoke=(--cpu-smoke) ;;
        *) echo "usage: benchmarks/gpu.sh [--cpu-smoke]" >&2; exit 2 ;;
    esac
done

if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "gpu.sh: $python cannot import torch; give the environment's python as PYTHON=..." >&2
    exit 1
fi
# Measure this checkout's code, whichever copy of geex the environment installed.
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"

if [[ ${#smoke[@]} -eq 0 ]] && ! "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu.sh: no CUDA GPU on this machine; nothing measured (benchmarks/gpu.sh --cpu-smoke checks the script on the CPU)"
    exit 0
fi

work="${GPU_CHECK_WORK:-$(mktemp -d -t geex-gpu-check.XXXXXX)}"
exec "$python" "$here/gpu_check.py" --work "$work" "${smoke[@]}"
