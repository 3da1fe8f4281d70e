"""`edge serve` as a user runs it: flag and config errors, TLS, and SIGTERM under load."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from edge.serve.options import load_serve_config
from tests.serve.conftest import ServerThread, auth, gauth, make_repo, options

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(3).random((1, 3, 32, 32), dtype=np.float32)


def edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-auth", "--http", "0.0.0.0:0"], "only allowed on loopback listens"),
        (["--http", "127.0.0.1:0"], "a bearer token is required"),
        (["--no-auth", "--http", "nohost:x"], "port must be a number"),
        (["--no-auth", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--no-auth", "--max-queue", "0"], "--max-queue: must be >= 1, got 0"),
    ],
)
def test_flag_errors_are_one_line(tmp_path: Path, bundles: dict[str, Path], args: list[str], message: str) -> None:
    r = edge("serve", str(bundles["classifier"]), "--grpc", "off", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_unknown_config_key_and_missing_repository(tmp_path: Path, bundles: dict[str, Path]) -> None:
    repo = make_repo(tmp_path / "repo", bundles, {"classifier": "max_batch: 4\nmax_bach: 8\n"})
    r = edge("serve", str(repo), "--no-auth", "--http", "127.0.0.1:0", "--grpc", "off", "--poll", "0")
    assert r.returncode == 9
    assert r.stderr.strip().splitlines()[-1].startswith("error: model classifier: ")
    assert "max_bach: unknown key" in r.stderr
    r = edge("serve", str(tmp_path / "nothing"), "--no-auth")
    assert r.returncode == 2 and "no such model repository" in r.stderr
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("serve:\n  repository: repo\n  auth: none\n  htp: 127.0.0.1:0\n")
    r = edge("serve", str(cfg))
    assert r.returncode == 2 and "serve.htp: unknown key" in r.stderr


def test_serve_yaml(tmp_path: Path, bundles: dict[str, Path], token_path: Path) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        f"serve:\n  repository: models\n  http: 0.0.0.0:8000\n  grpc: null\n  token_file: {token_path}\n"
        "  request_timeout: 5s\n  max_request_mb: 2\n"
    )
    o = load_serve_config(cfg)
    assert o.repository == tmp_path / "models" and o.http == ("0.0.0.0", 8000) and o.grpc is None
    assert o.limits.request_timeout_s == 5.0 and o.limits.max_request_bytes == 2 << 20


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_on_both_protocols(tmp_path: Path, bundles: dict[str, Path], token_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    repo = make_repo(tmp_path / "repo", bundles)
    srv = ServerThread(options(repo, token_path, tls_cert=cert, tls_key=key)).start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        port = srv.server.http_port
        h = th.InferenceServerClient(f"localhost:{port}", ssl=True, ssl_context_factory=lambda: ctx)
        inp = th.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        assert h.infer("classifier", [inp], headers=auth()).as_numpy("probs").shape == (1, 4)
        g = tg.InferenceServerClient(f"localhost:{srv.server.grpc_port}", ssl=True, root_certificates=str(cert))
        ginp = tg.InferInput("input", list(X.shape), "FP32")
        ginp.set_data_from_numpy(X)
        assert g.infer("classifier", [ginp], headers=gauth()).as_numpy("probs").shape == (1, 4)
        plain = th.InferenceServerClient(f"localhost:{port}")  # plain HTTP to the TLS port gets no answer
        with pytest.raises(Exception):  # noqa: B017 - geventhttpclient raises its own connection errors
            plain.is_server_live()
    finally:
        srv.stop()


def test_sigterm_under_load_answers_every_accepted_request(tmp_path: Path, bundles: dict[str, Path]) -> None:
    """4 HTTP clients (a connection per request) and 4 gRPC clients keep requests outstanding; SIGTERM after 40
    answers. Every request the server took is answered and its answer arrives; the others find the listener
    closed (refused, reset in the backlog, gRPC UNAVAILABLE from the transport)."""
    import tritonclient.grpc.aio as tga
    from tritonclient.utils import InferenceServerException

    repo = make_repo(tmp_path / "repo", bundles, {"classifier": "max_queue_delay_us: 1000\n"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "edge", "serve", str(repo), "--no-auth", "--poll", "0",
           "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stderr is not None
    ports = None
    log: list[str] = []
    for line in proc.stderr:
        log.append(line)
        ports = re.search(r"serving .* on http 127\.0\.0\.1:(\d+), grpc 127\.0\.0\.1:(\d+)", line)
        if ports:
            break
    assert ports, "".join(log)
    http_url, grpc_url = f"127.0.0.1:{ports.group(1)}", f"127.0.0.1:{ports.group(2)}"
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(proc.stderr or []), daemon=True)
    reader.start()
    body = (
        '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": '
        + str(X.reshape(-1).tolist())
        + "}]}"
    )
    answers: dict[str, int] = {}
    closed = 0

    def answered(kind: str) -> None:
        answers[kind] = answers.get(kind, 0) + 1
        if sum(answers.values()) == 40:
            proc.send_signal(signal.SIGTERM)

    async def load() -> None:
        nonlocal closed
        connector = aiohttp.TCPConnector(force_close=True)  # a request per connection: no idle keep-alive races
        grpc_client = tga.InferenceServerClient(grpc_url)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def http_worker() -> None:
                nonlocal closed
                while True:
                    try:
                        async with session.post(f"http://{http_url}/v2/models/classifier/infer", data=body) as r:
                            await r.read()
                            answered(f"http {r.status}")
                    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                        # refused, reset while still in the listen backlog when the listener closed, or a connection
                        # accepted but closed with its request unread by the drain: the server never took it (the
                        # equality below proves no taken request lost its answer: a request the server counted as
                        # answered whose answer did not arrive breaks it)
                        closed += 1
                        return

            async def grpc_worker() -> None:
                nonlocal closed
                inp = tga.InferInput("input", list(X.shape), "FP32")
                inp.set_data_from_numpy(X)
                while True:
                    try:
                        await grpc_client.infer("classifier", [inp])
                        answered("grpc OK")
                    except InferenceServerException as exc:
                        if "shutting down" in (exc.message() or ""):
                            answered("grpc shutting down")  # the server's own answer while draining
                            continue
                        closed += 1  # the transport refused the RPC: not taken
                        return

            await asyncio.gather(*(http_worker() for _ in range(4)), *(grpc_worker() for _ in range(4)))
        await grpc_client.close()

    asyncio.run(load())
    assert proc.wait(60) == 0
    reader.join(10)
    text = "".join(rest)
    m = re.search(r"stopped: (\d+) inference request\(s\) answered", text)
    assert m, text
    assert set(answers) <= {"http 200", "http 503", "grpc OK", "grpc shutting down"}, answers
    # every request the server took was answered, and the client got every one of those answers
    assert sum(answers.values()) == int(m.group(1)), (answers, text)
    assert answers.get("http 200", 0) + answers.get("grpc OK", 0) >= 40 and closed == 8


def test_grpc_without_the_serve_extra_is_one_error_line(bundles: dict[str, Path]) -> None:
    """grpcio missing (modelled by blocking its import in the child), gRPC asked for: one error line, exit 9."""
    code = (
        "import sys; sys.modules['grpc'] = None\n"
        "from edge.cli import main\n"
        f"sys.exit(main(['serve', {str(bundles['classifier'])!r}, '--no-auth', '--http', 'off', '--grpc', '127.0.0.1:0']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 9
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --grpc: the gRPC adapter needs the serve extra") and "Traceback" not in r.stderr
