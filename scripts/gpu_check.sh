#!/usr/bin/env bash
# One command that checks the kit on a machine with an NVIDIA GPU (x86-64 desktop or server, or a Jetson),
# in at most 5 minutes once set up:
#
#   scripts/gpu_check.sh        # -> benchmarks/results/gpu-<gpu-name>.md, exit 0 when every check passed
#
# It finds a Python with what the kit needs (EDGE_PYTHON, else .venv, else python3), or sets up .venv with
# scripts/setup.sh; then scripts/gpu_check.py runs `edge info`, builds a real bundle and runs `edge doctor` on
# it, runs `pytest tests/gpu -m gpu`, reads telemetry (NVML / nvidia-smi / tegrastats) and writes the report.
# It only READS GPU settings (power limits, clocks, power modes); it never changes them.
# Without a GPU it exits 2 with one line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
SYSROOT=${EDGE_SYSROOT:-}

if [ -f "$SYSROOT/etc/nv_tegra_release" ]; then
  JETSON=1
elif command -v nvidia-smi >/dev/null 2>&1; then
  JETSON=0
  if ! listed=$(nvidia-smi -L 2>&1) || ! grep -q '^GPU ' <<<"$listed"; then
    echo "gpu_check: no NVIDIA GPU answers here (nvidia-smi -L: $(printf '%s\n' "$listed" | head -n 1))" >&2
    exit 2
  fi
else
  echo "gpu_check: no NVIDIA GPU here (no nvidia-smi on PATH and no /etc/nv_tegra_release)" >&2
  exit 2
fi

NEED='import numpy, yaml, onnx, onnxruntime, cv2, pytest'
PY=${EDGE_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "$NEED" 2>/dev/null; then
    PY=.venv/bin/python
  elif command -v python3 >/dev/null 2>&1 && python3 -c "$NEED" 2>/dev/null; then
    PY=python3
  else
    extras=build,rtx,dev
    [ "$JETSON" = 1 ] && extras=build,dev  # setup.sh adds the Jetson extra; TensorRT-RTX has no Jetson build
    echo "gpu_check: no Python with the kit's needs ($NEED): setting up .venv with scripts/setup.sh [$extras]" >&2
    EDGE_EXTRAS=${EDGE_EXTRAS:-$extras} scripts/setup.sh
    PY=.venv/bin/python
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/gpu_check.py "$@"
