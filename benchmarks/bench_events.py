"""Tracking and analytics: cost per frame and tracking quality, beside supervision's ByteTrack in the same run.

- cost: synthetic scenes of 10 and 100 moving objects (1920x1080); per frame, our ByteTrack, our IoU
  tracker, the analytics (2 lines, 2 zones) and the whole events step (ByteTrack + analytics, as the
  pipeline runs it) beside supervision's ``ByteTrack.update_with_detections``, taking turns on every frame.
  Goal: the events step with 100 objects <= 1 ms (median).
- pipeline share: the demo (RetinaFace on the demo clip, ONNX Runtime on the CPU, 90 frames) run through the
  pipeline with ByteTrack and a counting line; the ``track`` stage's mean over the pipeline's time per
  frame (1 / fps). Goal <= 10%.
- quality: synthetic sequences with known identities: objects on straight paths that cross each other,
  occluded for 3-30 frames at a time, detections jittered and now and then scored low. ID switches (a
  ground-truth object's track id changing), ids per object, and line crossings counted by the same
  analytics on each tracker's ids, beside the crossings of the ground-truth paths.

Run: ``python -m benchmarks.run events`` (needs the bench extra: ``pip install -e '.[bench]'`` for supervision).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.events.analytics import Analytics, AnalyticsConfig, LineSpec, ZoneSpec
from edge.events.stage import EventStage
from edge.events.tracking import Tracker, TrackerConfig
from edge.results import Detections

GOAL_MS_100 = 1.0
GOAL_SHARE = 0.10
W, H = 1920, 1080
LABELS = ("person", "car")
ANALYTICS = AnalyticsConfig(
    lines=(LineSpec("a", ((960.0, 0.0), (960.0, 1080.0))), LineSpec("b", ((0.0, 540.0), (1920.0, 540.0)))),
    zones=(
        ZoneSpec("left", ((0.0, 0.0), (600.0, 0.0), (600.0, 1080.0), (0.0, 1080.0))),
        ZoneSpec("corner", ((1400.0, 700.0), (1920.0, 700.0), (1920.0, 1080.0), (1400.0, 1080.0))),
    ),
)


def _reference() -> Any:
    try:
        import supervision as sv
    except ImportError:
        return None
    return sv if hasattr(sv, "ByteTrack") else None


def _sv_tracker(sv: Any) -> Any:
    """Settings matching ours: activation 0.5 (new tracks from 0.6), match cost 1 - IoU x score <= 0.8, ids from
    a track's second frame (supervision's minimum_consecutive_frames=1 reports a track once it is activated,
    on its second frame, like our min_hits=2), 30 frames lost."""
    return sv.ByteTrack(
        track_activation_threshold=0.5,
        lost_track_buffer=30,
        minimum_matching_threshold=0.8,
        frame_rate=30,
        minimum_consecutive_frames=1,
    )


def scene(n: int, frames: int, seed: int = 0) -> list[Detections]:
    """``n`` boxes per frame drifting with constant velocities (bouncing off the edges), small jitter."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 90, (n, 2))
    pos = rng.uniform(0, 1, (n, 2)) * ([W, H] - size)
    vel = rng.uniform(-6, 6, (n, 2))
    classes = rng.integers(0, 2, n)
    out = []
    for _ in range(frames):
        pos += vel
        bounce = (pos < 0) | (pos > [W, H] - size)
        vel[bounce] *= -1
        pos = np.clip(pos, 0, [W, H] - size)
        jitter = rng.normal(0, 1.0, (n, 4))
        boxes = np.concatenate([pos, pos + size], axis=1) + jitter
        out.append(Detections(boxes.astype(np.float32), rng.uniform(0.6, 0.95, n).astype(np.float32), classes, LABELS))
    return out


def _median_ms(samples: list[float]) -> float:
    return round(float(np.median(samples)) * 1e3, 4)


def bench_cost(n: int, frames: int, sv: Any) -> dict[str, Any]:
    seq = scene(n, frames, seed=n)
    ours_bt = Tracker(TrackerConfig("bytetrack"))
    ours_iou = Tracker(TrackerConfig("iou"))
    analytics = Analytics(ANALYTICS)
    stage = EventStage(TrackerConfig("bytetrack"), ANALYTICS)
    ref = _sv_tracker(sv) if sv is not None else None
    pre = Tracker(TrackerConfig("bytetrack"))
    tracked = [pre.update(d) for d in seq]  # the analytics alone run on ids made beforehand
    times: dict[str, list[float]] = {"bytetrack": [], "iou": [], "analytics": [], "events_step": [], "supervision": []}
    fns: dict[str, Callable[[int], object]] = {
        "bytetrack": lambda i: ours_bt.update(seq[i]),
        "iou": lambda i: ours_iou.update(seq[i]),
        "analytics": lambda i: analytics.update(tracked[i], i / 30.0),
        "events_step": lambda i: stage.process("bench", seq[i], i / 30.0),
    }
    if ref is not None:
        svd = [sv.Detections(xyxy=d.boxes.copy(), confidence=d.scores.copy(), class_id=d.class_ids.copy()) for d in seq]
        fns["supervision"] = lambda i: ref.update_with_detections(svd[i])
    for i in range(frames):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t0)
    warm = min(10, frames // 5)  # the first frames create the tracks
    ms = {k: _median_ms(v[warm:]) for k, v in times.items() if v}
    out: dict[str, Any] = {"objects": n, "frames": frames, "ms": ms}
    if "supervision" in ms:
        out["ratio_bytetrack_vs_supervision"] = round(ms["bytetrack"] / ms["supervision"], 3)
    return out


def _gt_sequence(objects: int, frames: int, seed: int = 7) -> tuple[list[Detections], list[np.ndarray], np.ndarray]:
    """Detections, the ground-truth object index of each detection, and every object's centre per frame."""
    rng = np.random.default_rng(seed)
    start = np.stack([rng.uniform(100, W - 100, objects), rng.uniform(100, H - 100, objects)], axis=1)
    # paths through the middle so that they cross each other and the counting line
    target = np.stack([W - start[:, 0] + rng.uniform(-150, 150, objects), rng.uniform(100, H - 100, objects)], axis=1)
    vel = (target - start) / frames
    size = rng.uniform(40, 80, (objects, 2))
    hidden = np.zeros((frames, objects), bool)
    for k in range(objects):  # 2-3 occlusions of 3-15 frames each
        for _ in range(rng.integers(2, 4)):
            t = int(rng.integers(10, frames - 20))
            hidden[t : t + int(rng.integers(3, 31)), k] = True
    centres = np.zeros((frames, objects, 2))
    dets, gts = [], []
    for f in range(frames):
        c = start + vel * f
        centres[f] = c
        seen = np.flatnonzero(~hidden[f])
        boxes = np.concatenate([c[seen] - size[seen] / 2, c[seen] + size[seen] / 2], axis=1) + rng.normal(
            0, 1.5, (len(seen), 4)
        )
        scores = np.where(
            rng.uniform(size=len(seen)) < 0.1, rng.uniform(0.2, 0.45, len(seen)), rng.uniform(0.6, 0.95, len(seen))
        )
        order = rng.permutation(len(seen))  # detectors list objects in any order
        dets.append(
            Detections(
                boxes[order].astype(np.float32), scores[order].astype(np.float32), np.zeros(len(seen), np.int64), LABELS
            )
        )
        gts.append(seen[order])
    return dets, gts, centres


def _identity_stats(assigned: list[tuple[np.ndarray, np.ndarray]], objects: int) -> dict[str, Any]:
    """``assigned``: per frame (gt indices, track ids), -1 = no id. ID switches per CLEAR-MOT's spirit."""
    last: dict[int, int] = {}
    ids_per_gt: dict[int, set[int]] = {k: set() for k in range(objects)}
    gts_per_id: dict[int, set[int]] = {}
    switches = 0
    with_id = total = 0
    for gt, ids in assigned:
        for g, t in zip(gt.tolist(), ids.tolist()):
            total += 1
            if t < 0:
                continue
            with_id += 1
            if g in last and last[g] != t:
                switches += 1
            last[g] = t
            ids_per_gt[g].add(t)
            gts_per_id.setdefault(t, set()).add(g)
    return {
        "id_switches": switches,
        "ids_per_object": round(float(np.mean([len(v) for v in ids_per_gt.values()])), 2),
        "ids_shared_by_objects": sum(1 for v in gts_per_id.values() if len(v) > 1),
        "detections_with_id": round(with_id / max(1, total), 3),
    }


def _count(assigned_dets: list[Detections]) -> dict[str, int]:
    a = Analytics(AnalyticsConfig(lines=(LineSpec("middle", ((960.0, 0.0), (960.0, 1080.0))),)))
    for i, d in enumerate(assigned_dets):
        a.update(d, i / 30.0)
    return dict(a.counts.lines["middle"])


def bench_quality(objects: int, frames: int, seeds: int, sv: Any) -> dict[str, Any]:
    """ID switches and line counts of each tracker, summed over ``seeds`` sequences."""
    truth = {"in": 0, "out": 0}
    totals: dict[str, dict[str, Any]] = {}

    def add(name: str, stats: dict[str, Any], crossings: dict[str, int]) -> None:
        t = totals.setdefault(name, {"id_switches": 0, "ids_per_object": [], "ids_shared_by_objects": 0,
                                     "detections_with_id": [], "crossings": {"in": 0, "out": 0}})  # fmt: skip
        t["id_switches"] += stats["id_switches"]
        t["ids_shared_by_objects"] += stats["ids_shared_by_objects"]
        t["ids_per_object"].append(stats["ids_per_object"])
        t["detections_with_id"].append(stats["detections_with_id"])
        for k in ("in", "out"):
            t["crossings"][k] += crossings[k]

    for seed in range(1, seeds + 1):
        dets, gts, centres = _gt_sequence(objects, frames, seed)
        side = np.sign(centres[:, :, 0] - 960.0)  # the line is drawn top to bottom: its right is x < 960, "in"
        flips = side[1:] != side[:-1]
        truth["in"] += int((flips & (side[1:] < 0)).sum())
        truth["out"] += int((flips & (side[1:] > 0)).sum())
        for kind in ("bytetrack", "iou"):
            tr = Tracker(TrackerConfig(kind))
            tracked = [tr.update(d) for d in dets]
            ids = [(g, d.track_ids if d.track_ids is not None else np.full(len(g), -1)) for g, d in zip(gts, tracked)]
            add(f"edge {kind}", _identity_stats(ids, objects), _count(tracked))
        if sv is not None:
            ref = _sv_tracker(sv)
            pairs, as_dets = [], []
            for g, d in zip(gts, dets):
                svd = sv.Detections(
                    xyxy=d.boxes.copy(), confidence=d.scores.copy(), class_id=d.class_ids.copy(), data={"gt": g}
                )
                r = ref.update_with_detections(svd)
                pairs.append((np.asarray(r.data["gt"]), np.asarray(r.tracker_id, np.int64)))
                as_dets.append(
                    Detections(
                        np.asarray(r.xyxy, np.float32),
                        np.asarray(r.confidence, np.float32),
                        np.asarray(r.class_id, np.int64),
                        LABELS,
                        None,
                        np.asarray(r.tracker_id, np.int64),
                    )
                )
            add("supervision ByteTrack", _identity_stats(pairs, objects), _count(as_dets))
    for t in totals.values():
        t["ids_per_object"] = round(float(np.mean(t["ids_per_object"])), 2)
        t["detections_with_id"] = round(float(np.mean(t["detections_with_id"])), 3)
    return {"objects": objects, "frames": frames, "seeds": seeds, "ground_truth_crossings": truth, "trackers": totals}


def bench_pipeline_share(ctx: Any) -> dict[str, Any]:
    """The demo through the pipeline with tracking and a line: the track stage's share of the time per frame."""
    from edge.cli.demo import CLIP_SIZE, cache_dir, ensure_bundle, make_clip
    from edge.pipeline import Pipeline
    from edge.runtime import load
    from edge.sources import open_source

    cache = cache_dir()  # the demo's own cache: the bundle is built once for both
    bundle = ensure_bundle(cache)
    frames = 45 if ctx.quick else 90
    clip = cache / f"clip-{CLIP_SIZE[0]}x{CLIP_SIZE[1]}-{frames}.mp4"
    if not clip.is_file():
        make_clip(clip, frames)
    line = LineSpec("middle", ((320.0, 480.0), (320.0, 0.0)), ("face",))
    with load(bundle, "onnxruntime-cpu", warmup=1, intra_op_threads=1) as model:
        stage = EventStage(TrackerConfig("bytetrack"), AnalyticsConfig(lines=(line,)))
        stats = Pipeline(model, [open_source(f"file://{clip}")], [], events=stage).run()
    per_frame_ms = 1000.0 / stats.fps if stats.fps else float("nan")
    track_ms = stats.stage_ms.get("track", float("nan"))
    return {
        "frames": stats.frames,
        "fps": stats.fps,
        "stage_ms": stats.stage_ms,
        "per_frame_ms": round(per_frame_ms, 2),
        "track_ms": track_ms,
        "ratio_track_share": round(track_ms / per_frame_ms, 4),
        "counts": stats.extra.get("events", {}).get("lines"),
    }


def run(ctx: Any) -> dict[str, Any]:
    sv = _reference()
    if sv is None:
        ctx.log("supervision with ByteTrack is not installed (pip install -e '.[bench]'): no reference columns")
    frames = 150 if ctx.quick else 400
    result: dict[str, Any] = {"reference": f"supervision {sv.__version__} ByteTrack" if sv is not None else None}
    result["cost"] = {}
    for n in (10, 100):
        ctx.log(f"cost: {n} objects, {frames} frames")
        result["cost"][str(n)] = bench_cost(n, frames, sv)
    ms100 = result["cost"]["100"]["ms"]["events_step"]
    result["ratio_events_step_100_vs_goal_ms"] = round(ms100 / GOAL_MS_100, 3)
    ctx.log("quality: 48 objects with crossing paths and occlusions, 4 sequences")
    result["quality"] = bench_quality(48, 300, 2 if ctx.quick else 4, sv)
    ctx.log("pipeline share: the demo clip with ByteTrack and a counting line")
    result["pipeline"] = bench_pipeline_share(ctx)
    try:
        import os

        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return result


def report(result: dict[str, Any]) -> str:
    ref = result.get("reference") or "not installed"
    lines = [
        f"Reference: {ref}. Medians per frame, the trackers taking turns on every frame of the same sequence. "
        f"Goal: the events step (ByteTrack + 2 lines + 2 zones) with 100 objects <= {GOAL_MS_100} ms; "
        f"the track stage <= {GOAL_SHARE:.0%} of the pipeline's time per frame on the demo clip.",
        "",
        "| objects | edge bytetrack ms | edge iou ms | analytics ms | events step ms | supervision ByteTrack ms | bytetrack / supervision |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in result["cost"].items():
        m = r["ms"]
        lines.append(
            f"| {n} | {m['bytetrack']} | {m['iou']} | {m['analytics']} | **{m['events_step']}** | "
            f"{m.get('supervision', '-')} | {r.get('ratio_bytetrack_vs_supervision', '-')} |"
        )
    p = result["pipeline"]
    lines += [
        "",
        f"Demo clip through the pipeline ({p['frames']} frames, {p['fps']:.1f} fps): track stage {p['track_ms']} ms of "
        f"{p['per_frame_ms']} ms per frame = **{p['ratio_track_share']:.1%}** (goal <= {GOAL_SHARE:.0%}); "
        f"line counts {p['counts']}.",
        "",
    ]
    q = result["quality"]
    truth = q["ground_truth_crossings"]
    lines += [
        f"Quality: {q['seeds']} sequences of {q['objects']} objects and {q['frames']} frames (totals): crossing paths, "
        "2-3 occlusions of 3-30 frames per object, 10% low-score detections. Ground-truth line crossings: "
        f"in {truth['in']}, out {truth['out']}. supervision keeps a removed track one more frame (its lost list drops "
        "removed tracks a frame late) and reports only detections within IoU 0.5 of their track's corrected box.",
        "",
        "| tracker | ID switches | ids per object | ids shared by 2+ objects | detections with an id | crossings in / out |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in q["trackers"].items():
        c = t["crossings"]
        lines.append(
            f"| {name} | {t['id_switches']} | {t['ids_per_object']} | {t['ids_shared_by_objects']} | "
            f"{t['detections_with_id']} | {c['in']} / {c['out']} |"
        )
    if "load_average" in result:
        lines += ["", f"Load average during the run: {result['load_average']}."]
    return "\n".join(lines) + "\n"
