# syntax=docker/dockerfile:1
# edge-kit for Jetson Orin on JetPack 6 (L4T 36.4: CUDA 12.6, TensorRT 10.3, Python 3.10).
# Build on the Jetson itself (or an arm64 builder), from the repository root:
#   docker build -f deploy/docker/jetson.Dockerfile -t edge-kit:jetson .
# Run with the NVIDIA runtime: docker run --runtime nvidia ... (K3s: runtimeClassName: nvidia).
# The L4T tag must match the host's L4T major.minor (cat /etc/nv_tegra_release): r36.x runs on any 36.x host.
ARG L4T_JETPACK=r36.4.0
FROM nvcr.io/nvidia/l4t-jetpack:${L4T_JETPACK}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# JetPack's apt OpenCV has GStreamer (pip's wheels have not); TensorRT's Python bindings come as
# python3-libnvinfer; nvarguscamerasrc (CSI) and nvv4l2decoder (RTSP) come with the base image's multimedia API.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3-venv python3-opencv python3-libnvinfer \
        gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edge
COPY setup.py pyproject.toml README.md ./
COPY edge ./edge
COPY builders ./builders
COPY platforms ./platforms

# A venv that sees JetPack's OpenCV and TensorRT (--system-site-packages). numpy stays 1.x, or JetPack's cv2
# (built against numpy 1.x) fails to import; cuda-python 12.x, because 13.x needs a CUDA 13 driver.
RUN python3 -m venv --system-site-packages /opt/edge/venv \
    && /opt/edge/venv/bin/pip install --no-cache-dir "numpy<2" "cuda-python>=12.6.1,<13" ".[serve,events]"

# An unprivileged user in the video group (44 in L4T), which owns the GPU and camera device nodes.
RUN useradd --system --uid 10001 --gid video --no-create-home --shell /usr/sbin/nologin edge
USER 10001
ENV PATH=/opt/edge/venv/bin:$PATH \
    EDGE_STATE_DIR=/var/lib/edge \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

EXPOSE 8080 8000 8001
ENTRYPOINT ["edge"]
CMD ["info"]
