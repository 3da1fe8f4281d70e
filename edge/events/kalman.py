"""A constant-velocity Kalman filter for boxes, batched over every track of a frame (numpy only).

The state of one track is ``x, y, a, h, vx, vy, va, vh``: box centre, aspect ratio (w / h), height and
their velocities per frame; the measurement is ``x, y, a, h``. Noise scales with the box height, as in
ByteTrack (and DeepSORT before it): position noise 1/20 of the height, velocity noise 1/160.
"""

from __future__ import annotations

import numpy as np

_W_POS = 1.0 / 20
_W_VEL = 1.0 / 160
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # x += vx ... one frame per step


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] x1, y1, x2, y2 -> [N, 4] centre x, centre y, aspect w/h, height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    x1 = xyah[:, 0] - w / 2
    y1 = xyah[:, 1] - h / 2
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def _noise(scaled: np.ndarray, aspect: float) -> list[np.ndarray]:
    """Standard deviations of x, y, a, h (or their velocities): ``scaled`` for x, y, h, a constant for a."""
    return [scaled, scaled, np.full(len(scaled), aspect), scaled]


def initiate(xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means [N, 8] and covariances [N, 8, 8] of new tracks from measurements [N, 4] (velocities 0)."""
    n = len(xyah)
    mean = np.zeros((n, 8))
    mean[:, :4] = xyah
    h = xyah[:, 3]
    std = np.stack(
        [*_noise(2 * _W_POS * h, 1e-2), *_noise(10 * _W_VEL * h, 1e-5)],
        axis=1,
    )
    cov = np.zeros((n, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track."""
    h = mean[:, 3]
    std = np.stack(
        [*_noise(_W_POS * h, 1e-2), *_noise(_W_VEL * h, 1e-5)],
        axis=1,
    )
    new_mean = mean @ _F.T
    new_cov = _F @ cov @ _F.T
    idx = np.arange(8)
    new_cov[:, idx, idx] += std**2
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks [N] with their matched measurements [N, 4]."""
    n = len(mean)
    h = mean[:, 3]
    r = np.stack([_W_POS * h, _W_POS * h, np.full(n, 1e-1), _W_POS * h], axis=1) ** 2
    s = cov[:, :4, :4].copy()
    idx = np.arange(4)
    s[:, idx, idx] += r
    pht = cov[:, :, :4]  # P H^T: [N, 8, 4]
    gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
    innovation = xyah - mean[:, :4]
    new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    new_cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return new_mean, new_cov
