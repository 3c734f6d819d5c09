"""HttpKube.bind against a local HTTP server: the Binding body, auth, errors, a closed keep-alive connection."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ome.scheduler import HttpKube, KubeError


class _Apiserver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.replies: list[tuple[int, dict[str, Any], bool]] = []  # (status, body, close the connection after)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Apiserver

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        status, reply, close = self.server.replies.pop(0) if self.server.replies else (201, {"kind": "Status"}, False)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if close:
            self.close_connection = True

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture()
def apiserver(tmp_path: Path) -> Iterator[tuple[_Apiserver, HttpKube]]:
    server = _Apiserver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    kube = HttpKube(str(config), timeout_s=5)
    try:
        yield server, kube
    finally:
        kube.close()
        asyncio.run(kube.aclose())
        server.shutdown()
        server.server_close()


def test_bind_posts_the_binding_with_its_annotations_and_token(apiserver: tuple[_Apiserver, HttpKube]) -> None:
    server, kube = apiserver
    asyncio.run(kube.bind("ns", "p", "u1", "node-a", {"ome.io/gpu-index": "0,3"}))
    (path, headers, body), = server.requests
    assert path == "/api/v1/namespaces/ns/pods/p/binding"
    assert headers["Authorization"] == "Bearer secret-token"
    assert body == {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": {"ome.io/gpu-index": "0,3"}},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}}


def test_a_refused_binding_raises_with_the_apiserver_message(apiserver: tuple[_Apiserver, HttpKube]) -> None:
    server, kube = apiserver
    server.replies.append((409, {"kind": "Status", "message": 'pod p is already assigned to node "node-a"'}, False))
    with pytest.raises(KubeError) as info:
        asyncio.run(kube.bind("ns", "p", "u1", "node-a", {}))
    assert info.value.status == 409 and "already assigned" in info.value.message


def test_binds_go_on_after_the_server_closes_connections(apiserver: tuple[_Apiserver, HttpKube]) -> None:
    server, kube = apiserver
    server.replies.extend([(201, {}, True), (201, {}, False), (201, {}, True), (201, {}, False)])

    async def many() -> None:
        for k in range(6):
            await kube.bind("ns", f"p{k}", f"u{k}", "node-a", {})

    asyncio.run(many())
    assert [r[2]["metadata"]["name"] for r in server.requests] == [f"p{k}" for k in range(6)]


def test_an_unreachable_apiserver_is_a_status_0_error(apiserver: tuple[_Apiserver, HttpKube]) -> None:
    server, kube = apiserver
    server.shutdown()
    server.server_close()
    with pytest.raises(KubeError) as info:
        asyncio.run(kube.bind("ns", "p", "u1", "node-a", {}))
    assert info.value.status == 0
