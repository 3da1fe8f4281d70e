"""Inference backends behind one interface (:class:`edge.backends.base.Backend`), one module each.

- :mod:`edge.backends.onnxruntime`: the bundle's ONNX on the CPU or ONNX Runtime's CUDA provider;
- :mod:`edge.backends.tensorrt`: classic TensorRT plans (Jetson, x86);
- :mod:`edge.backends.tensorrt_rtx`: TensorRT for RTX plans (runtime cache in a state dir);
- :mod:`edge.backends.trt_common`: what the two TensorRT flavours share; :mod:`edge.backends.cuda`: CUDA memory,
  streams and devices (a GPU UUID to CUDA's ordinal);
- :mod:`edge.backends.compat`: whether a plan can run on a device (used by the backends and by
  :mod:`edge.runtime.select`, which sits above this package); :mod:`edge.backends.trt_logger`: the one
  TensorRT logger of the process.

Nothing here imports a backend library at module import time.
"""
