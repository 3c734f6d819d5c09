"""The write seam: a KubeClient Protocol, the real client (httpx, raw JSON, explicit patch
types) and an in-memory FakeKube that behaves like the API server for the operator's writes.

Reads go through the watches (kopf indexes, see _handlers.py); FakeKube also serves snapshots
so the whole loop runs in unit tests without a cluster.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import ssl
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import kubernetes

from ome.domain import OmeError

from . import _names as n
from ._model import (
    AcceleratorClassView,
    PdbView,
    Snapshot,
    accelerator_class_view,
    inference_service_view,
    node_view,
    pdb_view,
    placement_view,
    pod_view,
    policy_view,
)
from ._model import PolicyView as _PolicyView
from ._reconcile import Event

MERGE = "application/merge-patch+json"


class KubeError(OmeError, RuntimeError):
    """An API call failed in a way the operator cannot shrug off (it is retried next cycle)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeClient(Protocol):
    """The writes the operator makes. Idempotent where the API allows: 409/404 are not errors."""

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None: ...
    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...
    def evict_pod(self, namespace: str, name: str, uid: str) -> bool: ...
    def delete_pod(self, namespace: str, name: str, uid: str) -> None: ...
    def apply_placement(self, body: Mapping[str, Any], exists: bool) -> None: ...
    def patch_placement_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...
    def post_event(self, event: Event) -> None: ...


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to reach the API server (from a kubeconfig or the service account)."""

    server: str
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    token: str | None = None
    insecure: bool = False

    @staticmethod
    def load(kubeconfig: Path | None) -> Connection:
        cfg = kubernetes.client.Configuration()
        if kubeconfig is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=cfg)
        token = (cfg.api_key or {}).get("BearerToken") or (cfg.api_key or {}).get("authorization")
        if token and token.lower().startswith("bearer "):
            token = token[7:]
        return Connection(cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file, token, not cfg.verify_ssl)

    def http(self, timeout: float = 30.0, connections: int = 16) -> httpx.Client:
        context = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_path and self.key_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.server, verify=context, headers=headers, timeout=timeout, trust_env=False,
                            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RealKube:
    """KubeClient over httpx: raw JSON bodies, merge patches, the Eviction subresource."""

    def __init__(self, client: httpx.Client, component: str = n.MANAGER) -> None:
        self._http = client
        self._component = component

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
              ok: Iterable[int] = ()) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise KubeError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300 and response.status_code not in set(ok):
            raise KubeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}", response.status_code)
        return response

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        self._call("POST", f"/api/v1/namespaces/{namespace}/pods", manifest, ok=(409,))

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}", patch, MERGE, ok=(404,))

    def evict_pod(self, namespace: str, name: str, uid: str) -> bool:
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": {"preconditions": {"uid": uid}} if uid else {}}
        response = self._call("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body,
                              ok=(404, 409, 429))
        return response.status_code < 300 or response.status_code in (404, 409)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}} if uid else None
        self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body, ok=(404, 409))

    def apply_placement(self, body: Mapping[str, Any], exists: bool) -> None:
        meta = body["metadata"]
        base = f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{meta['namespace']}/{n.PLACEMENTS}"
        if exists:
            self._call("PATCH", f"{base}/{meta['name']}", {"spec": body["spec"]}, MERGE, ok=(404,))
        else:
            self._call("POST", base, body, ok=(409,))

    def patch_placement_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        path = f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{namespace}/{n.PLACEMENTS}/{name}/status"
        # Merge patch replaces lists whole (replicas, conditions) and removes keys set to null.
        self._call("PATCH", path, {"status": status}, MERGE, ok=(404,))

    def post_event(self, event: Event) -> None:
        now = _now()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{event.name}.", "namespace": event.namespace},
            "involvedObject": {"apiVersion": f"{n.GROUP}/{n.VERSION}", "kind": n.PLACEMENT_KIND,
                               "name": event.name, "namespace": event.namespace, "uid": event.uid},
            "type": event.type, "reason": event.reason, "message": event.message,
            "source": {"component": self._component}, "reportingComponent": self._component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._call("POST", f"/api/v1/namespaces/{event.namespace}/events", body, ok=(404, 403))


# ----------------------------------------------------------------------------- in-memory fake


class FakeKube:
    """An in-memory API server for the operator: objects as dicts, the writes a real one accepts.

    `bind()` plays the scheduler (binds ungated pods to their planned node) and kwok (marks
    them Running); `settle()` completes graceful deletions. `snapshot()` is what the watches see.
    Every write is recorded in `log` as (verb, namespace/name).
    """

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.placements: dict[tuple[str, str], dict[str, Any]] = {}
        self.policy: dict[str, Any] | None = None
        self.priority_classes: dict[str, int] = {}
        self.pdbs: dict[tuple[str, str], dict[str, Any]] = {}
        self.inference_services: dict[tuple[str, str], dict[str, Any]] = {}
        self.accelerator_classes: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.log: list[tuple[str, str]] = []
        self.fail_after: int | None = None  # raise on the n-th write from now (crash simulation)
        self._lock = threading.RLock()
        self._rv = itertools.count(1)

    # -- test set-up ------------------------------------------------------------------------
    def add(self, body: Mapping[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{next(self._rv) % 60:02d}Z")
        meta["resourceVersion"] = str(next(self._rv))
        kind, key = obj["kind"], (meta.get("namespace", ""), meta["name"])
        if kind == "Node":
            self.nodes[meta["name"]] = obj
        elif kind == "Pod":
            self.pods[key] = obj
        elif kind == n.PLACEMENT_KIND:
            meta.setdefault("generation", 1)
            self.placements[key] = obj
        elif kind == "PlacementPolicy":
            self.policy = obj
        elif kind == "PriorityClass":
            self.priority_classes[meta["name"]] = int(obj["value"])
        elif kind == "PodDisruptionBudget":
            self.pdbs[key] = obj
        elif kind == "InferenceService":
            self.inference_services[key] = obj
        elif kind == "AcceleratorClass":
            self.accelerator_classes[meta["name"]] = obj
        else:
            raise ValueError(f"FakeKube does not store {kind}")
        return obj

    # -- KubeClient --------------------------------------------------------------------------
    def _write(self, verb: str, what: str) -> None:
        with self._lock:
            if self.fail_after is not None:
                if self.fail_after <= 0:
                    raise KubeError(f"injected failure before {verb} {what}")
                self.fail_after -= 1
            self.log.append((verb, what))

    def create_pod(self, namespace: str, manifest: Mapping[str, Any]) -> None:
        key = (namespace, manifest["metadata"]["name"])
        self._write("create", "/".join(key))
        with self._lock:
            if key in self.pods:
                return
            body = copy.deepcopy(dict(manifest))
            body["metadata"]["namespace"] = namespace
            body.setdefault("status", {"phase": "Pending"})
            self.add(body)

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._write("patch", f"{namespace}/{name}")
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return
            if "spec" in patch and not pod["spec"].get("schedulingGates") and "affinity" in patch["spec"]:
                raise KubeError(f"pod {name}: spec.affinity is immutable once the pod is not gated", 422)
            _merge(pod, patch)
            pod["metadata"]["resourceVersion"] = str(next(self._rv))

    def evict_pod(self, namespace: str, name: str, uid: str) -> bool:
        self._write("evict", f"{namespace}/{name}")
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is not None and (not uid or pod["metadata"]["uid"] == uid):
                pod["metadata"].setdefault("deletionTimestamp", _now())
            return True

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        self._write("delete", f"{namespace}/{name}")
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None or (uid and pod["metadata"]["uid"] != uid):
                return
            if pod["spec"].get("nodeName"):
                pod["metadata"].setdefault("deletionTimestamp", _now())
            else:
                del self.pods[(namespace, name)]

    def apply_placement(self, body: Mapping[str, Any], exists: bool) -> None:
        meta = body["metadata"]
        self._write("apply-placement", f"{meta['namespace']}/{meta['name']}")
        with self._lock:
            key = (meta["namespace"], meta["name"])
            if key in self.placements:
                self.placements[key]["spec"] = copy.deepcopy(dict(body["spec"]))
                self.placements[key]["metadata"]["generation"] += 1
            else:
                self.add({"apiVersion": f"{n.GROUP}/{n.VERSION}", "kind": n.PLACEMENT_KIND, **copy.deepcopy(dict(body))})

    def patch_placement_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        with self._lock:
            placement = self.placements.get((namespace, name))
            if placement is not None:
                placement["status"] = copy.deepcopy(dict(status))

    def post_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    # -- what a scheduler and kwok would do ---------------------------------------------------
    def bind(self) -> list[str]:
        """Bind every ungated, unbound, planned pod to its planned node and mark it Running."""
        bound = []
        with self._lock:
            for pod in self.pods.values():
                meta, spec = pod["metadata"], pod["spec"]
                planned = (meta.get("annotations") or {}).get(n.ANN_PLANNED_NODE)
                if spec.get("nodeName") or spec.get("schedulingGates") or not planned or meta.get("deletionTimestamp"):
                    continue
                if planned not in self.nodes:
                    continue
                spec["nodeName"] = planned
                pod["status"] = {"phase": "Running"}
                bound.append(meta["name"])
        return bound

    def settle(self) -> list[str]:
        """Finish graceful deletions (what kwok's pod-delete stage does)."""
        with self._lock:
            gone = [k for k, p in self.pods.items() if p["metadata"].get("deletionTimestamp")]
            for key in gone:
                del self.pods[key]
        return [name for _, name in gone]

    # -- the watches -----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            classes = {name: accelerator_class_view(b) for name, b in self.accelerator_classes.items()}
            return Snapshot(
                nodes=tuple(node_view(b) for b in self.nodes.values()),
                pods=tuple(pod_view(b) for b in self.pods.values()),
                placements=tuple(placement_view(b) for b in self.placements.values()),
                policy=policy_view(self.policy) if self.policy else _PolicyView(),
                priority_classes=dict(self.priority_classes),
                pdbs=tuple(pdb_view(b) for b in self.pdbs.values()),
                inference_services=tuple(inference_service_view(b) for b in self.inference_services.values()),
                accelerator_classes=classes,
            )


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value) if not isinstance(value, Mapping) else _fresh(value)


def _fresh(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _merge(out, value)
    return out


__all__ = ["AcceleratorClassView", "Connection", "FakeKube", "KubeClient", "KubeError", "PdbView", "RealKube"]
