"""The seam to the apiserver: list, watch, get a pod, bind. HttpKube talks to a real one;
FakeKube keeps objects in memory for tests and benchmarks.

Raw JSON over httpx, not the official client's models: a 1,213-node list and a busy pod watch
decode several times faster that way. The official package is used only to read a kubeconfig
or the in-cluster service-account configuration.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from ome.domain import OmeError

try:
    from orjson import loads as _loads  # watch lines and lists decode several times faster
except ImportError:  # pragma: no cover
    _loads = json.loads

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

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if time.monotonic() - self._read > 60 or not self._token:
            self._token = self.path.read_text().strip()
            self._read = time.monotonic()
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


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
        token = cfg.get_api_key_with_prefix("authorization") if cfg.api_key else None
        if token:
            kwargs["headers"] = {"Authorization": token}
    return cfg.host.rstrip("/"), kwargs


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
            response = await self._async.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", json=body)
        except httpx.HTTPError as exc:
            raise KubeError(0, f"binding {namespace}/{name}: {type(exc).__name__}") from None
        if response.status_code not in (200, 201):
            raise KubeError(response.status_code, _message(response))

    def close(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for r in streams:
            try:
                r.close()
            except Exception:  # noqa: BLE001 - closing a stream another thread reads
                pass
        self._sync.close()

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
