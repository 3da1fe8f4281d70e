"""A line's or zone's ``classes`` must name classes the model has: a typo (``persn``) used to run and count
nothing forever; now `edge run` refuses it in one line, before any frame, with the close match."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.errors import ConfigError
from edge.events.analytics import AnalyticsConfig, LineSpec, ZoneSpec, check_classes
from tests.runtime.bundles import write_bundle

COCO_HEAD = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")
LINE = ((320.0, 0.0), (320.0, 480.0))
ZONE = ((0.0, 300.0), (640.0, 300.0), (640.0, 480.0))


@pytest.mark.parametrize(
    ("config", "labels", "message"),
    [
        (
            AnalyticsConfig(lines=(LineSpec("door", LINE, ("persn",)),)),
            COCO_HEAD,
            "analytics.lines[0] (door).classes: 'persn' is not a label of the model; did you mean 'person'? "
            "its labels: person, bicycle, car, motorcycle, airplane, bus, train, truck, ... (9 in all)",
        ),
        (
            AnalyticsConfig(zones=(ZoneSpec("bay", ZONE, ("car", 9)),)),
            COCO_HEAD,
            "analytics.zones[0] (bay).classes: class id 9 is not one of the model's 9 classes (0..8)",
        ),
        (AnalyticsConfig(lines=(LineSpec("door", LINE, ("zebra",)),)), ("face",), "'zebra' is not a label"),
    ],
)
def test_a_class_the_model_lacks_is_a_config_error(
    config: AnalyticsConfig, labels: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_classes(config, labels)
    assert message in str(info.value)


def test_known_classes_and_models_without_labels_pass() -> None:
    check_classes(AnalyticsConfig(lines=(LineSpec("door", LINE, ("person", 8)),)), COCO_HEAD)
    # without labels, detections are named by their ids ("0"): nothing to check against
    check_classes(AnalyticsConfig(lines=(LineSpec("door", LINE, ("anything",)),)), ())


def test_edge_run_refuses_the_typo_before_any_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "faces.bundle")  # RetinaFace with labels ("face",)
    out = tmp_path / "events.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {bundle}\nsources: ['test://?frames=3&width=64&height=48']\nsinks: ['jsonl://{out}']\n"
        "analytics:\n  lines:\n    - {name: door, points: [[32, 0], [32, 48]], classes: [fase]}\n"
    )
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: analytics.lines[0] (door).classes: 'fase' is not a label of the model; did you mean 'face'? "
        "its labels: face"
    )
    assert not out.exists()
