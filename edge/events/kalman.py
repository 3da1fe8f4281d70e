"""A constant-velocity Kalman filter for boxes, batched over every track of a frame (numpy only).

The state of one track is ``x, y, a, h, vx, vy, va, vh``: box centre, aspect ratio (w / h), height and
their velocities per frame; the measurement is ``x, y, a, h``. Noise scales with the box height, as in
ByteTrack (and DeepSORT before it): position noise 1/20 of the height, velocity noise 1/160.

The motion model, the measurement and every noise matrix treat the four coordinates independently, so
the 8x8 covariance never couples two coordinates: it is four 2x2 blocks (position, velocity of x, of y,
of a, of h). The filter keeps just those blocks, ``cov[:, k] = (var_pos, cov_pos_vel, var_vel)`` for
coordinate k, and runs the textbook equations on them elementwise: the same numbers as the full-matrix
filter, without batched 8x8 products and 4x4 solves.
"""

from __future__ import annotations

import numpy as np

_W_POS = 1.0 / 20
_W_VEL = 1.0 / 160


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


def _std(h: np.ndarray, scale: float, aspect: float) -> np.ndarray:
    """[N, 4] standard deviations for x, y, a, h: ``scale`` x height, a constant for the aspect ratio."""
    s = np.repeat((scale * h)[:, None], 4, axis=1)
    s[:, 2] = aspect
    return s


def initiate(xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means [N, 8] and covariance blocks [N, 4, 3] of new tracks from measurements [N, 4] (velocities 0)."""
    n = len(xyah)
    mean = np.zeros((n, 8))
    mean[:, :4] = xyah
    h = xyah[:, 3]
    cov = np.zeros((n, 4, 3))
    cov[:, :, 0] = _std(h, 2 * _W_POS, 1e-2) ** 2
    cov[:, :, 2] = _std(h, 10 * _W_VEL, 1e-5) ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: x += v; P = F P F^T + Q per 2x2 block."""
    h = mean[:, 3]
    new_mean = mean.copy()
    new_mean[:, :4] += mean[:, 4:]
    pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
    new_cov = np.empty_like(cov)
    new_cov[:, :, 0] = pp + 2 * pv + vv + _std(h, _W_POS, 1e-2) ** 2
    new_cov[:, :, 1] = pv + vv
    new_cov[:, :, 2] = vv + _std(h, _W_VEL, 1e-5) ** 2
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks [N] with their matched measurements [N, 4]: K = P H^T S^-1, P -= K S K^T per block."""
    r = _std(mean[:, 3], _W_POS, 1e-1) ** 2
    pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
    s = pp + r
    k_pos, k_vel = pp / s, pv / s
    innovation = xyah - mean[:, :4]
    new_mean = mean.copy()
    new_mean[:, :4] += k_pos * innovation
    new_mean[:, 4:] += k_vel * innovation
    new_cov = np.empty_like(cov)
    new_cov[:, :, 0] = pp - k_pos * pp
    new_cov[:, :, 1] = pv - k_pos * pv
    new_cov[:, :, 2] = vv - k_vel * pv
    return new_mean, new_cov
