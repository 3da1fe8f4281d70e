"""A config, bundle, source or sink in the host's /tmp: the unit's PrivateTmp=yes gives the service an empty
/tmp, so the service could not even read its config (found trying `edge service install` on files in /tmp).
Those paths are bound in (read-only unless a sink writes there) and the installer warns."""

from __future__ import annotations

import shutil
from pathlib import Path

import edge
from edge.service.systemd import plan_unit
from edge.service.unit import render_unit
from tests.service.test_unit import SECURITY_GOAL, check_comments, run_config, security_score, verify


def test_paths_in_the_host_tmp_are_bound_into_the_private_tmp(tmp_path: Path, face_bundle: Path) -> None:
    cfg = run_config(
        tmp_path,
        face_bundle,
        None,
        sources=["file:///var/tmp/clips/door.mp4"],
        sinks=["jsonl:///tmp/edge-out/events.jsonl"],
    )
    planned = plan_unit(cfg, Path("/tmp/edge-cfg/cam.yaml"), "cam", user="edge", version=252, dev_root=tmp_path)
    text = render_unit(planned.spec)
    lines = text.splitlines()
    assert "PrivateTmp=yes" in lines
    binds_ro = next(line for line in lines if line.startswith("BindReadOnlyPaths=") and "/tmp/edge-cfg" in line)
    assert {"/tmp/edge-cfg", "/var/tmp/clips/door.mp4"} <= set(binds_ro.split("=", 1)[1].split())
    assert "BindPaths=-/tmp/edge-out" in lines
    assert "ReadWritePaths=-/tmp/edge-out" in lines
    assert any("in the host's /tmp, which the service's private /tmp hides" in w for w in planned.warnings)
    check_comments(text)
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "edge-cam.service"
        unit.write_text(text)
        assert verify(unit) == ""
        assert security_score(unit) <= SECURITY_GOAL


def test_nothing_is_bound_when_nothing_lives_in_tmp(tmp_path: Path, face_bundle: Path) -> None:
    """Config, bundle, sources and sinks outside /tmp: nothing of theirs is bound. The kit itself may live in /tmp
    (a CI clone there): its own directory is then the one path bound, read-only, and the only one warned about."""
    if any(p in (Path("/tmp"), Path("/var/tmp")) for p in face_bundle.resolve().parents):
        cfg = run_config(tmp_path, Path("/opt/models/face.bundle"), None)
    else:
        cfg = run_config(tmp_path, face_bundle, None)
    kit = Path(edge.__file__).resolve().parent.parent
    kit_in_tmp = any(p in (Path("/tmp"), Path("/var/tmp")) for p in kit.parents)
    planned = plan_unit(
        cfg, Path("/etc/edge/cam.yaml"), "cam", user="edge", version=252, dev_root=tmp_path, python="/usr/bin/python3"
    )
    text = render_unit(planned.spec)
    assert "BindPaths=" not in text
    bound = {
        path.lstrip("-")
        for line in text.splitlines()
        if line.startswith("BindReadOnlyPaths=")
        for path in line.split("=", 1)[1].split()
    }
    assert bound == ({str(kit)} if kit_in_tmp else set())
    tmp_warnings = [w for w in planned.warnings if "host's /tmp" in w]
    assert tmp_warnings == ([] if not kit_in_tmp else [w for w in tmp_warnings if w.startswith(f"{kit}:")])
    assert len(tmp_warnings) == (1 if kit_in_tmp else 0)
