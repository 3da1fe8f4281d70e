"""Without the HTTP stack (aiohttp, prometheus-client: edge-kit's dependencies, but an environment can lack them),
an `http:` section is one clear error, not a traceback.

The packages are hidden the way Python itself documents: ``sys.modules[name] = None`` makes ``import name``
fail and ``importlib.util.find_spec(name)`` answer None, exactly as for a package that is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HIDE = "import sys; sys.modules['{module}'] = None; from edge.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize(("module", "package"), [("aiohttp", "aiohttp"), ("prometheus_client", "prometheus-client")])
@pytest.mark.parametrize("command", ["run", "install"])
def test_http_section_without_the_serve_extra(
    tmp_path: Path, face_bundle: Path, token_file: Path, module: str, package: str, command: str
) -> None:
    config = tmp_path / "cam.yaml"
    config.write_text(
        f"model: {face_bundle}\nsource: test://\npipeline: {{max_frames: 3}}\n"
        f"http: {{listen: 127.0.0.1:0, token_file: {token_file}}}\n"
    )
    argv = ["run", str(config)] if command == "run" else ["service", "install", str(config), "--name", "cam"]
    if command == "install":
        argv += ["--unit-dir", str(tmp_path / "units")]
    run = subprocess.run(
        [sys.executable, "-c", HIDE.format(module=module), *argv], capture_output=True, text=True, timeout=120
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert run.returncode == 9, run.stderr
    assert len(lines) == 1 and f"the HTTP API needs {package}" in lines[0] and "pip install 'aiohttp>=3.9'" in lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "units").exists()
