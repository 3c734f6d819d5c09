from __future__ import annotations

import datetime
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from ome.scheduler.cli import extender_app


def test_serve_help_lists_the_options() -> None:
    result = CliRunner().invoke(extender_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--policy", "--kubeconfig", "--tls-cert", "--tls-key", "--target"):
        assert option in result.output


def test_bad_arguments_fail_before_serving() -> None:
    runner = CliRunner()
    bad_policy = runner.invoke(extender_app, ["serve", "--policy", "nope"])
    assert bad_policy.exit_code != 0 and "unknown policy" in bad_policy.output
    half_tls = runner.invoke(extender_app, ["serve", "--tls-cert", "x.pem"])
    assert half_tls.exit_code != 0 and "go together" in half_tls.output


def test_serves_https_with_tls_cert_and_key(tmp_path: Path) -> None:
    """A real `serve` process on loopback with a self-signed certificate; the apiserver in its
    kubeconfig does not exist, so the cache never loads and /healthz says so, over TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ome.scheduler", "serve", "--port", str(port),
                             "--kubeconfig", str(tmp_path / "kubeconfig"), "--tls-cert", str(tmp_path / "tls.crt"),
                             "--tls-key", str(tmp_path / "tls.key"), "--policy", "most-allocated"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.3)
        assert r.status_code == 503 and "loading" in r.text
        assert r.http_version == "HTTP/1.1" and r.url.scheme == "https"
    finally:
        proc.terminate()
        proc.wait(10)
