"""Greedy non-maximum suppression in vectorized numpy, class-aware or class-agnostic.

Same result as OpenCV's ``cv2.dnn.NMSBoxes``/``NMSBoxesBatched`` (a box is dropped when its IoU with a kept,
higher-scoring box of its class is *greater* than the threshold; equal scores keep input order), but
class-aware NMS never compares boxes of different classes. How:

1. Boxes are grouped per class (one group when agnostic), each group in score order; groups of similar size
   (powers of two) are padded into one ``[G, m]`` problem, so every step works on all classes at once.
2. Greedy steps: each group's best remaining boxes (HEAD of them, solved among themselves) are settled and
   the kept ones remove the boxes they overlap. This is cheap per step and fast where boxes crowd (a
   detector's many candidates per object); it goes on while a step removes at least two boxes per box
   settled, compacting the survivors as they thin out.
3. What is left is sparse: its ``[G, m, m]`` IoU matrix is solved exactly (see :func:`_greedy`); groups too
   large for one matrix go block by block against the boxes kept so far.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge.errors import ConfigError

BLOCK = 256  # largest group solved as one m x m matrix; bigger groups go block by block
MATRIX_BUDGET = 1 << 20  # most IoU entries computed at once (about 14 MB of temporaries)
STEP = 128  # columns resolved together in the matrix pass
HEAD = 16  # boxes per row taken in one greedy step


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None,
    iou_threshold: float,
    agnostic: bool = False,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    ``boxes`` ``[N, 4]`` xyxy, ``scores`` ``[N]``, ``class_ids`` ``[N]`` (ignored, and may be ``None``, when
    ``agnostic``). At most ``max_detections`` indices are returned.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    n = len(scores)
    if boxes.shape != (n, 4) or scores.ndim != 1:
        raise ConfigError(f"nms: expected boxes [N, 4] and scores [N], got {boxes.shape} and {scores.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    by_score = order
    if agnostic or class_ids is None:
        starts, sizes = np.zeros(1, np.int64), np.array([n], np.int64)
    else:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != (n,):
            raise ConfigError(f"nms: expected class_ids [{n}], got {class_ids.shape}")
        order = order[np.argsort(class_ids[order], kind="stable")]
        cls = class_ids[order]
        starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
        sizes = np.diff(np.r_[starts, n])
    sorted_boxes = boxes[order]
    keep = np.zeros(n, dtype=bool)  # over the sorted positions
    thr = np.float32(iou_threshold)
    keep[starts[sizes == 1]] = True
    many = sizes > 1
    starts, sizes = starts[many], sizes[many]
    bucket = np.maximum(np.ceil(np.log2(np.maximum(sizes, 1))), 6).astype(np.int64)  # up to 64 boxes: one bucket
    for b in np.unique(bucket):
        s, z = starts[bucket == b], sizes[bucket == b]
        col = np.arange(int(z.max()))
        valid = col[None, :] < z[:, None]
        _solve_rows(sorted_boxes, np.where(valid, s[:, None] + col[None, :], s[:, None]), valid, thr, keep)
    kept = order[keep]
    if len(starts) > 1 or not many.all():  # back from class order to score order (ties: input order)
        rank = np.empty(n, dtype=np.int64)
        rank[by_score] = np.arange(n)
        kept = kept[np.argsort(rank[kept])]
    if max_detections is not None:
        kept = kept[:max_detections]
    return kept.astype(np.int64, copy=False)


def _solve_rows(boxes: np.ndarray, idx: np.ndarray, alive: np.ndarray, thr: np.float32, keep: np.ndarray) -> None:
    """Greedy NMS of every row of ``idx`` (``[G, m]`` positions in ``boxes``, in score order; ``alive`` marks
    the real ones): greedy steps while they pay, then the exact matrix pass on the survivors."""
    b = boxes[idx]
    alive = alive.copy()
    while True:
        counts = alive.sum(axis=1)
        width = int(counts.max()) if len(counts) else 0
        if width == 0:
            return
        if width <= alive.shape[1] // 2 or counts.min() == 0:
            idx, b, alive = _compact(idx, b, alive, counts, width)
        head = min(HEAD, max(1, width // 32))  # more at once in wide rows, where steps are dearer
        if head == 1:  # each row's best remaining box is kept and clears the row
            r = np.arange(len(idx))
            c = alive.argmax(axis=1)
            keep[idx[r, c]] = True
            alive[r, c] = False
            before = int(alive.sum())
            alive &= ~_suppression(b[r, c][:, None, :], b, thr, upper=False)[:, 0, :]
        else:  # each row's `head` best remaining boxes are solved among themselves, the kept ones clear the row
            rank = np.cumsum(alive, axis=1) - 1
            r, c = np.nonzero(alive & (rank < head))
            pos = np.zeros((len(idx), head), dtype=np.int64)
            pos[r, rank[r, c]] = c
            valid = np.zeros((len(idx), head), dtype=bool)
            valid[r, rank[r, c]] = True
            bh = np.take_along_axis(b, pos[:, :, None], axis=1)
            kept = _greedy(_suppression(bh, bh, thr, upper=True), valid)
            keep[np.take_along_axis(idx, pos, axis=1)[kept]] = True
            alive[r, c] = False
            before = int(alive.sum())
            alive &= ~(_suppression(bh, b, thr, upper=False) & kept[:, :, None]).any(axis=1)
        if before - int(alive.sum()) < 2 * len(r):
            break
    counts = alive.sum(axis=1)
    if not counts.any():
        return
    idx, b, alive = _compact(idx, b, alive, counts, int(counts.max()))
    g, m = alive.shape
    if m > BLOCK:
        for row in range(g):
            n = int(alive[row].sum())
            keep[idx[row, :n][_blocked(b[row, :n], thr)]] = True
        return
    per = max(1, MATRIX_BUDGET // (m * m))
    for i in range(0, g, per):
        part = slice(i, i + per)
        kept = _greedy(_suppression(b[part], b[part], thr, upper=True), alive[part])
        keep[idx[part][kept]] = True


def _compact(
    idx: np.ndarray, b: np.ndarray, alive: np.ndarray, counts: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with survivors only, survivors moved to the front (order kept), ``width`` columns."""
    rows = np.flatnonzero(counts)
    pos = np.argsort(~alive[rows], axis=1, kind="stable")[:, :width]
    return (
        np.take_along_axis(idx[rows], pos, axis=1),
        np.take_along_axis(b[rows], pos[:, :, None], axis=1),
        np.arange(width)[None, :] < counts[rows, None],
    )


def _blocked(boxes: np.ndarray, thr: np.float32) -> np.ndarray:
    """Greedy NMS of one large group in score order: each block is first cleared against the boxes kept
    before it, then solved as a matrix. Returns the kept mask."""
    keep = np.zeros(len(boxes), dtype=bool)
    kept_boxes = np.zeros((0, 4), dtype=np.float32)
    for start in range(0, len(boxes), BLOCK):
        block = boxes[start : start + BLOCK]
        alive = np.ones((1, len(block)), dtype=bool)
        if len(kept_boxes):
            alive[0] = ~_suppression(kept_boxes[None], block[None], thr, upper=False)[0].any(axis=0)
        kept = _greedy(_suppression(block[None], block[None], thr, upper=True), alive)[0]
        keep[start : start + len(block)] = kept
        kept_boxes = np.concatenate([kept_boxes, block[kept]])
    return keep


def _suppression(a: np.ndarray, b: np.ndarray, thr: np.float32, upper: bool) -> np.ndarray:
    """``[G, m, k]``: IoU(a_i, b_j) > thr (and i < j when ``upper``) for ``[G, m, 4]`` and ``[G, k, 4]`` boxes.

    Tested without dividing: inter / (area_a + area_b - inter) > thr  <=>  inter * (1 + thr) > thr * (area_a + area_b),
    which also keeps empty boxes (0 / 0) from suppressing anything.
    """
    ca = np.ascontiguousarray(np.moveaxis(a, -1, 0))  # [4, G, m]: contiguous coordinates broadcast fastest
    cb = np.ascontiguousarray(np.moveaxis(b, -1, 0))
    ax1, ay1, ax2, ay2 = ca[:, :, :, None]
    bx1, by1, bx2, by2 = cb[:, :, None, :]
    inter = np.minimum(ax2, bx2)
    tmp = np.maximum(ax1, bx1)
    inter -= tmp
    np.maximum(inter, 0, out=inter)
    np.minimum(ay2, by2, out=tmp)
    tmp -= np.maximum(ay1, by1)
    np.maximum(tmp, 0, out=tmp)
    inter *= tmp
    inter *= np.float32(1) + thr
    area_a = (ca[2] - ca[0]) * (ca[3] - ca[1]) * thr
    area_b = (cb[2] - cb[0]) * (cb[3] - cb[1]) * thr
    out = inter > np.add(area_a[:, :, None], area_b[:, None, :], out=tmp)
    if upper:
        out &= _upper(out.shape[1])
    return out


@lru_cache(maxsize=32)
def _upper(m: int) -> np.ndarray:
    mask = np.triu(np.ones((m, m), dtype=bool), k=1)
    mask.flags.writeable = False
    return mask


def _greedy(sup: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Greedy NMS on ``[G, m, m]`` upper-triangular suppression matrices: which boxes survive, ``[G, m]``.

    keep[j] = valid[j] and no kept i < j suppresses j. Solved STEP columns at a time: inside a block the map
    keep -> valid & ~any_i(sup[i] & keep[i]) is iterated to its fixed point (each round fixes at least one more
    leading position, so it ends within the block's width, usually after two or three rounds; its only fixed
    point is the greedy answer); the block's kept boxes then suppress every later column in one product.
    """
    keep = valid.copy()
    m = sup.shape[1]
    supf = sup.astype(np.float32)
    for b0 in range(0, m, STEP):
        b1 = min(b0 + STEP, m)
        block = supf[:, b0:b1, b0:b1]
        alive = keep[:, b0:b1].copy()
        cur = alive
        for _ in range(b1 - b0 + 1):
            new = alive & ~(np.matmul(cur[:, None, :].astype(np.float32), block)[:, 0, :] > 0)
            if np.array_equal(new, cur):
                break
            cur = new
        keep[:, b0:b1] = cur
        if b1 < m:
            keep[:, b1:] &= ~(np.matmul(cur[:, None, :].astype(np.float32), supf[:, b0:b1, b1:])[:, 0, :] > 0)
    return keep
