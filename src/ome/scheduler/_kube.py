"""The seam to the apiserver: list, watch, get a pod, bind. HttpKube talks to a real one;
FakeKube keeps objects in memory for tests and benchmarks.

Raw JSON over httpx, not the official client's models: a 1,213-node list and a busy pod watch
decode several times faster that way. The official package is used only to read a kubeconfig
or the in-cluster service-account configuration. Bindings, one per scheduled pod, go through
the standard library's http.client on keep-alive connections in a few worker threads
(_Poster): httpx's async stack costs several times more CPU per request, and on a machine the
extender shares with kube-scheduler and the apiserver that CPU is scheduling throughput.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any, Protocol

import httpx

from ome.domain import OmeError

try:
    from orjson import dumps as _dumps
    from orjson import loads as _loads  # watch lines and lists decode several times faster
except ImportError:  # pragma: no cover
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LIST_PAGE = 500


class KubeError(OmeError, RuntimeError):
    """The apiserver refused (status set) or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class Gone(KubeError):
    """410: the resourceVersion is too old; list again."""


class KubeApi(Protocol):
    def list(self, path: str) -> tuple[list[dict[str, Any]], str]: ...
    def watch(self, path: str, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]: ...
    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def bind(self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str]) -> None: ...
    def close(self) -> None: ...


class _TokenFile(httpx.Auth):
    """Bearer token re-read from the projected service-account file (kubelet rotates it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = ""
        self._read = 0.0

    def header(self) -> str:
        if time.monotonic() - self._read > 60 or not self._token:
            self._token = self.path.read_text().strip()
            self._read = time.monotonic()
        return f"Bearer {self._token}"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = self.header()
        yield request


class _Poster:
    """POST a JSON body to the apiserver from asyncio code: http.client on one keep-alive
    connection per worker thread. A connection the server closed while idle is reopened and the
    request sent once more (a Binding that had in fact landed then answers 409 "already
    assigned", which the bind verb treats as done)."""

    def __init__(self, server: str, kwargs: Mapping[str, Any], timeout_s: float, workers: int = 4) -> None:
        url = urlsplit(server)
        self.https = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        verify = kwargs.get("verify")
        self.context = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        **dict(kwargs.get("headers") or {})}
        auth = kwargs.get("auth")
        self.token = auth if isinstance(auth, _TokenFile) else None
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ome-bind")

    def _connect(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=self.context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers = self.headers if self.token is None else {**self.headers, "Authorization": self.token.header()}
        for attempt in (1, 2):
            conn = self._connect()
            reused = conn.sock is not None
            try:
                conn.request("POST", self.prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(conn)
                if attempt == 2 or not reused:
                    raise
            except BaseException:
                self._drop(conn)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def apost(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.post, path, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()


def _connection(kubeconfig: str | None) -> tuple[str, dict[str, Any]]:
    """(server, httpx client kwargs) from a kubeconfig file, $KUBECONFIG, or the in-cluster account."""
    from kubernetes import client as kclient  # only to read the configuration
    from kubernetes import config as kconfig

    in_cluster = kubeconfig is None and not os.environ.get("KUBECONFIG") and (SA_DIR / "token").exists()
    cfg = kclient.Configuration()
    if in_cluster:
        kconfig.load_incluster_config(client_configuration=cfg)
    else:
        kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert_file and cfg.key_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    kwargs: dict[str, Any] = {"verify": ctx, "trust_env": False}
    if in_cluster:
        kwargs["auth"] = _TokenFile(SA_DIR / "token")
    else:
        # kubernetes >= 12 files a kubeconfig token under "BearerToken" (older: "authorization")
        token = (cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
                 if cfg.api_key else None)
        if token:
            kwargs["headers"] = {"Authorization": token}
    return cfg.host.rstrip("/"), kwargs


def _body_message(content: bytes) -> str:
    try:
        parsed = _loads(content)
    except ValueError:
        parsed = None
    text = content[:300].decode(errors="replace")
    return str(parsed.get("message") or text) if isinstance(parsed, dict) else text


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text[:300])
    except ValueError:
        return response.text[:300]


class HttpKube:
    def __init__(self, kubeconfig: str | None = None, timeout_s: float = 10.0) -> None:
        self.server, kwargs = _connection(kubeconfig)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._sync = httpx.Client(base_url=self.server, timeout=httpx.Timeout(timeout_s, read=None),
                                  limits=limits, **kwargs)
        self._async = httpx.AsyncClient(base_url=self.server, timeout=timeout_s, limits=limits, **kwargs)
        self._poster = _Poster(self.server, kwargs, timeout_s)
        self._streams: set[httpx.Response] = set()
        self._lock = threading.Lock()

    def list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": LIST_PAGE}
        while True:
            response = self._sync.get(path, params=params, timeout=60)
            if response.status_code == 410:
                raise Gone(410, _message(response))
            if response.status_code != 200:
                raise KubeError(response.status_code, _message(response))
            body = _loads(response.content)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion") or "")
            params = {"limit": LIST_PAGE, "continue": meta["continue"]}

    def watch(self, path: str, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_s)}
        with self._sync.stream("GET", path, params=params, timeout=httpx.Timeout(10, read=timeout_s + 30)) as r:
            if r.status_code == 410:
                raise Gone(410, "watch: resourceVersion too old")
            if r.status_code != 200:
                r.read()
                raise KubeError(r.status_code, _message(r))
            with self._lock:
                self._streams.add(r)
            try:
                for line in r.iter_lines():
                    if line:
                        yield _loads(line)
            finally:
                with self._lock:
                    self._streams.discard(r)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = await self._async.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        except httpx.HTTPError as exc:
            raise KubeError(0, f"GET pod {namespace}/{name}: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise KubeError(response.status_code, _message(response))
        return dict(response.json())

    async def bind(self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str]) -> None:
        """POST pods/binding. The apiserver copies the Binding's annotations onto the pod in the same
        write that sets spec.nodeName, so the GPU indices and the node land together or not at all."""
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": dict(annotations)},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            status, content = await self._poster.apost(f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
                                                       _dumps(body))
        except (OSError, http.client.HTTPException) as exc:  # socket.timeout and ssl.SSLError are OSErrors
            raise KubeError(0, f"binding {namespace}/{name}: {type(exc).__name__}") from None
        if status not in (200, 201):
            raise KubeError(status, _body_message(content))

    def close(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for r in streams:
            try:
                r.close()
            except Exception:  # noqa: BLE001 - closing a stream another thread reads
                pass
        self._sync.close()
        self._poster.close()

    async def aclose(self) -> None:
        await self._async.aclose()


class FakeKube:
    """Pods in memory. bind() sets spec.nodeName and the annotations and tells `on_pod`
    (normally Extender.pod_event), as the watch would."""

    def __init__(self, on_pod: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.nodes: list[dict[str, Any]] = []
        self.on_pod = on_pod
        self.binds: list[tuple[str, str, str, dict[str, str]]] = []
        self.fail_next: KubeError | None = None

    def add_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.pods[(meta.get("namespace", "default"), meta["name"])] = pod
        if self.on_pod:
            self.on_pod("ADDED", pod)

    def list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        if path.endswith("/nodes"):
            return list(self.nodes), "1"
        if path.endswith("/pods"):
            return list(self.pods.values()), "1"
        return [], "1"

    def watch(self, path: str, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        time.sleep(min(timeout_s, 1))
        return iter(())

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get((namespace, name))

    async def bind(self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str]) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise KubeError(404, f"pods {name!r} not found")
        if uid and pod["metadata"].get("uid") != uid:
            raise KubeError(409, "uid precondition failed")
        if pod["spec"].get("nodeName"):
            raise KubeError(409, f"pod {name} is already assigned to node {pod['spec']['nodeName']!r}")
        pod = json.loads(json.dumps(pod))
        pod["spec"]["nodeName"] = node
        pod["metadata"].setdefault("annotations", {}).update(annotations)
        self.pods[(namespace, name)] = pod
        self.binds.append((f"{namespace}/{name}", node, uid, dict(annotations)))
        if self.on_pod:
            self.on_pod("MODIFIED", pod)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
