"""``edge.load`` is the short spelling a new user tries first; it must be the runtime's load and keep
``import edge`` lean (numpy, OpenCV and ONNX Runtime are imported at the first call, not at import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
import edge
before = sorted(m for m in ("numpy", "cv2", "onnxruntime", "edge.runtime") if m in sys.modules)
with edge.load(sys.argv[1], warmup=0) as model:
    faces = model.predict(sys.argv[2])
print(json.dumps({"before": before, "faces": len(faces), "backend": model.backend_name}))
"""


def test_edge_load_is_the_runtime_load_and_import_edge_stays_lean(face_bundle: Path) -> None:
    from tests.runtime.bundles import photo_path

    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(face_bundle), str(photo_path("astronaut"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # the astronaut photo has one face (tests/runtime's other RetinaFace tests find the same one)
    assert report == {"before": [], "faces": 1, "backend": "onnxruntime-cpu"}
