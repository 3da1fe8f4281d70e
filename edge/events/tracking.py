"""Multi-object trackers: every detection gets a stable ``track_id``, per class, through missed frames.

    tracker = Tracker(TrackerConfig("bytetrack"))
    for image in frames:
        dets = tracker.update(model.predict(image))      # Detections with track_ids (-1: not yet confirmed)

- ``bytetrack`` (ByteTrack, Zhang et al. 2022): a constant-velocity Kalman filter per track
  (:mod:`edge.events.kalman`); confident detections are matched to the predicted boxes first (cost
  ``1 - IoU x score``), then the low-score ones keep the remaining tracks alive (cost ``1 - IoU``), so an
  object that fades during an occlusion keeps its id. A track that finds no detection is *lost* and can
  be found again for ``max_lost`` frames.
- ``iou``: the cheap one: each track's last box matched to the detections by IoU; no motion model.

Both are per class (a detection never continues a track of another class), assign with
:func:`scipy.optimize.linear_sum_assignment`, and hand out ids only to tracks confirmed by ``min_hits``
matches in a row. All per-frame work is batched in numpy over the tracks of the frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.events import kalman
from edge.results import Detections

TRACKERS = ("bytetrack", "iou")


@dataclass(frozen=True)
class TrackerConfig:
    kind: str = "bytetrack"  # one of TRACKERS
    track_threshold: float = 0.5  # detections at or above this score start tracks and are matched first
    low_threshold: float = 0.1  # bytetrack: scores in [low, track) only keep existing tracks alive
    min_iou: float | None = None  # least overlap for a match (bytetrack: IoU x score); None: 0.2 / iou 0.3
    max_lost: int = 30  # frames a track without detections is kept to be found again
    min_hits: int = 2  # frames in a row with a match before a track is confirmed and gets its id

    @property
    def match_iou(self) -> float:
        if self.min_iou is not None:
            return self.min_iou
        return 0.2 if self.kind == "bytetrack" else 0.3


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] (xyxy) -> [N, M]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax1, ay1, ax2, ay2 = (a[:, i : i + 1] for i in range(4))
    bx1, by1, bx2, by2 = b.T
    inter = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)  # few temporaries: this runs on every frame
    np.maximum(inter, 0.0, out=inter)
    h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    np.maximum(h, 0.0, out=h)
    inter *= h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    np.maximum(union, 1e-9, out=union)
    inter /= union
    return inter


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the least-cost matching that keeps only pairs with cost <= ``limit``."""
    if cost.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    from scipy.optimize import linear_sum_assignment

    # Pairs over the limit cost just over it (as LAPJV's cost_limit does): the least total cost wins, rather
    # than the most pairs (a huge cost would force poor pairs in so that one more pair is under the limit).
    rows, cols = linear_sum_assignment(np.minimum(cost, limit + 1e-4))
    ok = cost[rows, cols] <= limit
    return rows[ok], cols[ok]


class Tracker:
    """One video stream's tracks (use one tracker per source; ``ids`` may be shared to keep ids unique)."""

    def __init__(self, config: TrackerConfig | None = None, ids: Iterator[int] | None = None) -> None:
        self.config = config or TrackerConfig()
        if self.config.kind not in TRACKERS:
            from edge.errors import ConfigError

            raise ConfigError(f"tracker: {self.config.kind!r} is not one of {', '.join(TRACKERS)}")
        self._ids = ids if ids is not None else itertools.count(1)
        self._kalman = self.config.kind == "bytetrack"
        self.frame = 0
        self.mean = np.zeros((0, 8))  # bytetrack: Kalman state
        self.cov = np.zeros((0, 4, 3))  # per-coordinate 2x2 covariance blocks (see kalman)
        self.box = np.zeros((0, 4))  # the latest box of each track (predicted, then corrected)
        self.cls = np.zeros(0, np.int64)
        self.tid = np.zeros(0, np.int64)  # -1 until confirmed
        self.hits = np.zeros(0, np.int64)
        self.lost = np.zeros(0, bool)
        self.last = np.zeros(0, np.int64)  # the frame the track last matched a detection
        self.start = np.zeros(0, np.int64)

    # ---- public ------------------------------------------------------------------------------------
    def update(self, dets: Detections) -> Detections:
        """``dets`` with ``track_ids`` set: a confirmed track's id, or -1."""
        ids = self.update_arrays(dets.boxes, dets.scores, dets.class_ids)
        return Detections(dets.boxes, dets.scores, dets.class_ids, dets.labels, dets.keypoints, ids)

    def alive(self) -> set[int]:
        """Ids of the confirmed tracks, tracked or lost (not yet dropped)."""
        return set(self.tid[self.tid >= 0].tolist())

    def update_arrays(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """Track ids [N] (int64, -1: not in a confirmed track) for one frame's boxes [N, 4], scores, class ids."""
        c = self.config
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        class_ids = np.asarray(class_ids, np.int64).reshape(-1)
        n = len(boxes)
        self._predict()
        iou = iou_matrix(self.box, boxes)
        iou[self.cls[:, None] != class_ids[None, :]] = 0.0
        det_track = np.full(n, -1, np.int64)  # the track each detection continues
        free_t = np.ones(len(self.tid), bool)
        free_d = np.ones(n, bool)

        def match(tracks: np.ndarray, dets: np.ndarray, cost: np.ndarray, limit: float) -> None:
            r, k = assign(cost, limit)
            det_track[dets[k]] = tracks[r]
            free_t[tracks[r]] = False
            free_d[dets[k]] = False

        confirmed = self.tid >= 0
        if self._kalman:
            high = np.flatnonzero(scores >= c.track_threshold)
            low = np.flatnonzero((scores >= c.low_threshold) & (scores < c.track_threshold))
            # 1. confirmed tracks (tracked or lost) with the confident detections
            pool = np.flatnonzero(confirmed)
            match(pool, high, 1.0 - iou[np.ix_(pool, high)] * scores[high], 1.0 - c.match_iou)
            # 2. confirmed tracks still tracked (not lost) with the low-score detections
            rest = np.flatnonzero(confirmed & free_t & ~self.lost)
            match(rest, low, 1.0 - iou[np.ix_(rest, low)], 0.5)
            # 3. tentative tracks with the confident detections left
            tentative = np.flatnonzero(~confirmed)
            left = high[free_d[high]]
            match(tentative, left, 1.0 - iou[np.ix_(tentative, left)] * scores[left], 0.7)
            starts = left[free_d[left] & (scores[left] >= c.track_threshold + 0.1)]
        else:
            every = np.arange(len(self.tid))
            usable = np.flatnonzero(scores >= c.low_threshold)
            match(every, usable, 1.0 - iou[np.ix_(every, usable)], 1.0 - c.match_iou)
            starts = usable[free_d[usable] & (scores[usable] >= c.track_threshold)]
        self._correct(det_track, boxes)
        out = np.full(n, -1, np.int64)
        has = det_track >= 0
        out[has] = self.tid[det_track[has]]
        self._retire(free_t)  # matched tracks stay; indices change from here on
        self._start(starts, boxes, class_ids)
        if len(starts):
            out[starts] = self.tid[len(self.tid) - len(starts) :]
        return out

    # ---- steps -------------------------------------------------------------------------------------
    def _predict(self) -> None:
        if not len(self.tid) or not self._kalman:
            return
        mean = self.mean
        mean[self.lost, 7] = 0.0  # a lost track's height stops changing (ByteTrack)
        self.mean, self.cov = kalman.predict(mean, self.cov)
        self.box = kalman.xyah_to_xyxy(self.mean[:, :4])

    def _correct(self, det_track: np.ndarray, boxes: np.ndarray) -> None:
        d = np.flatnonzero(det_track >= 0)
        if not len(d):
            return
        t = det_track[d]
        if self._kalman:
            m, cv = kalman.update(self.mean[t], self.cov[t], kalman.xyxy_to_xyah(boxes[d]))
            self.mean[t], self.cov[t] = m, cv
        self.box[t] = boxes[d]
        self.lost[t] = False
        self.last[t] = self.frame
        self.hits[t] += 1
        new = t[(self.tid[t] < 0) & (self.hits[t] >= self.config.min_hits)]
        for i in new:
            self.tid[i] = next(self._ids)

    def _retire(self, unmatched: np.ndarray) -> None:
        """Unmatched tracks: tentative ones are dropped, confirmed ones lost; lost too long: dropped."""
        n_old = len(unmatched)
        confirmed = self.tid[:n_old] >= 0
        self.lost[:n_old] |= unmatched & confirmed
        keep = ~(unmatched & ~confirmed) & (self.frame - self.last[:n_old] <= self.config.max_lost)
        if self._kalman and keep.any():
            keep &= ~self._duplicates(keep)
        if not keep.all():
            self._select(keep)

    def _duplicates(self, keep: np.ndarray) -> np.ndarray:
        """Lost and tracked tracks of one class on the same spot (IoU > 0.85): the younger one goes."""
        out = np.zeros(len(keep), bool)
        tracked = np.flatnonzero(keep & ~self.lost)  # tentative ones too: a new track on a lost one goes
        lost = np.flatnonzero(keep & self.lost)
        if not len(tracked) or not len(lost):
            return out
        iou = iou_matrix(self.box[tracked], self.box[lost])
        iou[self.cls[tracked][:, None] != self.cls[lost][None, :]] = 0.0
        for a, b in zip(*np.nonzero(iou > 0.85)):
            ta, tb = tracked[a], lost[b]
            age_a, age_b = self.last[ta] - self.start[ta], self.last[tb] - self.start[tb]
            out[tb if age_a > age_b else ta] = True
        return out

    def _select(self, keep: np.ndarray) -> None:
        names = ("box", "cls", "tid", "hits", "lost", "last", "start") + (("mean", "cov") if self._kalman else ())
        for name in names:
            setattr(self, name, getattr(self, name)[keep])

    def _start(self, dets: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> None:
        k = len(dets)
        if not k:
            return
        b = boxes[dets]
        if self._kalman:
            m, cv = kalman.initiate(kalman.xyxy_to_xyah(b))
            self.mean = np.concatenate([self.mean, m])
            self.cov = np.concatenate([self.cov, cv])
        confirmed_now = self.config.min_hits <= 1
        tids = np.array([next(self._ids) if confirmed_now else -1 for _ in range(k)], np.int64)
        self.box = np.concatenate([self.box, b])
        self.cls = np.concatenate([self.cls, class_ids[dets]])
        self.tid = np.concatenate([self.tid, tids])
        self.hits = np.concatenate([self.hits, np.ones(k, np.int64)])
        self.lost = np.concatenate([self.lost, np.zeros(k, bool)])
        self.last = np.concatenate([self.last, np.full(k, self.frame, np.int64)])
        self.start = np.concatenate([self.start, np.full(k, self.frame, np.int64)])
