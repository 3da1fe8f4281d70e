"""GPU tests run only where a CUDA device answers; everywhere else they skip with the reason."""

from __future__ import annotations

import pytest

from edge.backends.cuda import cuda_available

CUDA_OK, CUDA_REASON = cuda_available()
requires_gpu = pytest.mark.skipif(not CUDA_OK, reason=f"needs an NVIDIA GPU: {CUDA_REASON}")
