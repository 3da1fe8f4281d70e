"""Where INT8 Q/DQ goes on a real export: residual Adds of the backbone yes, the head's box decoding no.

Found on a dynamic YOLO12n export (Ultralytics' own exporter): with its box decoding quantized, the int8
model's boxes moved by a median of 114 px (output cosine 0.53 against FP32); the decode Adds add anchor
points to distances (`dist2bbox` in Ultralytics' head: `x2y2 = anchor + rb`, `c_xy = x1y1 + x2y2`), in grid
units up to the image size, which one per-tensor int8 scale cannot carry.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from builders.precision import name_nodes, quant_nodes

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


@pytest.mark.parametrize("name", ["yolov8n-detect-dyn", "yolov8n-seg"])
def test_box_decoding_adds_stay_float_and_residuals_are_quantized(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not committed")
    model = onnx.load(path)
    name_nodes(model)
    chosen = set(quant_nodes(onnx.shape_inference.infer_shapes(model)))
    # Names as Ultralytics' exporter writes them (read off the graph by hand): model.22 is the Detect/Segment
    # head; Add_7 = anchor_points + rb, Add_8 = x1y1 + x2y2, both of two activations in a dynamic export.
    assert "/model.22/Add_7" not in chosen
    assert "/model.22/Add_8" not in chosen
    # C2f bottleneck shortcuts (x + cv2(cv1(x))) in the backbone are residuals TensorRT fuses into the Conv
    assert {"/model.2/m.0/Add", "/model.4/m.0/Add", "/model.8/m.0/Add"} <= chosen
    assert any(n.endswith("/Conv") for n in chosen)
