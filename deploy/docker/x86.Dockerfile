# syntax=docker/dockerfile:1
# edge-kit for x86-64 with an NVIDIA GPU: TensorRT-RTX (CUDA 13) or ONNX Runtime, Python 3.12 (Ubuntu 24.04).
# From the repository root:
#   docker build -f deploy/docker/x86.Dockerfile -t edge-kit:x86 .
# Run with the NVIDIA Container Toolkit: docker run --gpus all ... (Kubernetes: the NVIDIA device plugin).
# The host driver must support CUDA 13 (driver 580 or newer); older drivers: a CUDA 12 base and tensorrt-rtx-cu12.
ARG CUDA_TAG=13.0.0-runtime-ubuntu24.04
FROM nvcr.io/nvidia/cuda:${CUDA_TAG}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv libglib2.0-0 \
        gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edge
COPY setup.py pyproject.toml README.md ./
COPY edge ./edge
COPY builders ./builders
COPY platforms ./platforms

RUN python3 -m venv /opt/edge/venv \
    && /opt/edge/venv/bin/pip install --no-cache-dir ".[serve,rtx,events]"

RUN useradd --system --uid 10001 --gid video --no-create-home --shell /usr/sbin/nologin edge
USER 10001
ENV PATH=/opt/edge/venv/bin:$PATH \
    EDGE_STATE_DIR=/var/lib/edge \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

EXPOSE 8080 8000 8001
ENTRYPOINT ["edge"]
CMD ["info"]
