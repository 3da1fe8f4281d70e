"""The block-wise Kalman filter gives the numbers of the textbook full-matrix filter (written out here with
8x8 matrices: x' = F x, P' = F P F^T + Q; K = P H^T (H P H^T + R)^-1, x += K (z - H x), P = (I - K H) P)."""

from __future__ import annotations

import numpy as np

from edge.events import kalman


def full_filter_step(x: np.ndarray, p: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    h = np.eye(4, 8)
    height = x[3]
    q = np.diag(
        np.square([height / 20, height / 20, 1e-2, height / 20, height / 160, height / 160, 1e-5, height / 160])
    )
    x = f @ x
    p = f @ p @ f.T + q
    height = x[3]
    r = np.diag(np.square([height / 20, height / 20, 1e-1, height / 20]))
    k = p @ h.T @ np.linalg.inv(h @ p @ h.T + r)
    x = x + k @ (z - h @ x)
    p = (np.eye(8) - k @ h) @ p
    return x, p


def blocks_to_full(cov: np.ndarray) -> np.ndarray:
    full = np.zeros((8, 8))
    for c in range(4):
        full[c, c], full[c, c + 4], full[c + 4, c], full[c + 4, c + 4] = cov[c, 0], cov[c, 1], cov[c, 1], cov[c, 2]
    return full


def test_blocks_match_the_full_matrix_filter_over_many_steps() -> None:
    rng = np.random.default_rng(3)
    z0 = np.array([[100.0, 200.0, 0.5, 80.0], [640.0, 360.0, 1.2, 40.0]])
    mean, cov = kalman.initiate(z0)
    full = [(mean[i].copy(), blocks_to_full(cov[i])) for i in range(2)]
    for step in range(25):
        z = z0 + np.array([[5.0, -2.0, 0.0, 0.3], [-7.0, 4.0, 0.01, -0.2]]) * (step + 1) + rng.normal(0, 1, (2, 4))
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, z)
        full = [full_filter_step(x, p, z[i]) for i, (x, p) in enumerate(full)]
        for i in range(2):
            np.testing.assert_allclose(mean[i], full[i][0], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(blocks_to_full(cov[i]), full[i][1], rtol=1e-9, atol=1e-12)
    assert abs(mean[0, 4] - 5.0) < 1.0 and abs(mean[1, 5] - 4.0) < 1.0, "the velocities were learnt"


def test_box_conversions_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 2.0]])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(boxes)), boxes)
    np.testing.assert_allclose(kalman.xyxy_to_xyah(boxes)[0], [30.0, 60.0, 0.5, 80.0])
