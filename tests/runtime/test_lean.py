"""The runtime stays lean: a CPU inference in a fresh interpreter never imports the builder's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("onnx", "onnxsim", "onnxslim", "onnxconverter_common", "builders", "torch")

SCRIPT = """
import json, sys
import edge, edge.runtime, edge.backends.onnxruntime
from edge.cli import main
from edge.preprocess import load_image
from edge.runtime import load

with load(sys.argv[1]) as model:
    result = model.predict(load_image(sys.argv[2]))
code = main(["infer", sys.argv[1], sys.argv[2], "--json"])
forbidden = tuple(sys.argv[3].split(","))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"faces": len(result), "code": code, "forbidden": loaded}))
"""


def test_cpu_inference_imports_nothing_from_the_builder(face_bundle: Path) -> None:
    from tests.runtime.bundles import photo_path

    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(face_bundle), str(photo_path("astronaut")), ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"faces": 1, "code": 0, "forbidden": []}
