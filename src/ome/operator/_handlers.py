"""kopf wiring, on an explicit registry: indexes feed the snapshot, events poke the planner loop.

Every handler is a few lines: translate a body into a view (index) or wake the loop (event).
Deciding happens in _reconcile, writing in _loop. kopf stores nothing on the objects: no
finalizers, no progress annotations (indexes and event handlers keep no state in the cluster).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ome.domain import InvalidInput

from . import _names as n
from ._kube import Connection
from ._loop import PlannerLoop
from ._model import (
    PolicyView,
    Snapshot,
    accelerator_class_view,
    inference_service_view,
    node_view,
    pdb_view,
    placement_view,
    plain,
    pod_view,
    policy_view,
)
from ._settings import OperatorSettings

log = logging.getLogger("ome.operator")

# (index id, kopf resource selector)
RESOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ome_nodes", ("v1", "nodes")),
    ("ome_pods", ("v1", "pods")),
    ("ome_placements", (n.GROUP, n.VERSION, n.PLACEMENTS)),
    ("ome_policies", (n.GROUP, n.VERSION, n.POLICIES)),
    ("ome_priority_classes", ("scheduling.k8s.io", "v1", "priorityclasses")),
    ("ome_pdbs", ("policy", "v1", "poddisruptionbudgets")),
    ("ome_isvcs", (n.OME_GROUP, n.OME_VERSION, n.INFERENCE_SERVICES)),
    ("ome_accelerator_classes", (n.OME_GROUP, n.OME_VERSION, n.ACCELERATOR_CLASSES)),
    ("ome_deployments", ("apps", "v1", "deployments")),
    ("ome_statefulsets", ("apps", "v1", "statefulsets")),
    ("ome_leaderworkersets", ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")),
)


def _values(index: Any) -> list[Any]:
    return [value for store in index.values() for value in store]


class KopfSource:
    """A SnapshotSource over kopf's in-memory indexes (read on the event loop, so consistent)."""

    def __init__(self) -> None:
        self.indices: dict[str, Any] = {}

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        self.indices = {rid: kwargs[rid] for rid, _ in RESOURCES if rid in kwargs}

    def _all(self, rid: str) -> list[Any]:
        index = self.indices.get(rid)
        return _values(index) if index is not None else []

    def snapshot(self) -> Snapshot:
        policies = self._all("ome_policies")
        templates: dict[tuple[str, str, str], str] = {}
        for rid in ("ome_deployments", "ome_statefulsets", "ome_leaderworkersets"):
            for key, template in self._all(rid):
                templates[key] = template
        return Snapshot(
            nodes=tuple(sorted(self._all("ome_nodes"), key=lambda v: v.name)),
            pods=tuple(self._all("ome_pods")),
            placements=tuple(self._all("ome_placements")),
            policy=policies[0] if policies else PolicyView(),
            priority_classes=dict(self._all("ome_priority_classes")),
            pdbs=tuple(self._all("ome_pdbs")),
            inference_services=tuple(self._all("ome_isvcs")),
            accelerator_classes={v.name: v for v in self._all("ome_accelerator_classes")},
            workload_templates=templates,
        )


def _template_of(kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = body.get("spec") or {}
    if kind == "LeaderWorkerSet":
        return ((spec.get("leaderWorkerTemplate") or {}).get("workerTemplate") or {})
    return spec.get("template") or {}


def build_registry(settings: OperatorSettings, loop: PlannerLoop, source: KopfSource,
                   connection: Connection) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    scope = dict(settings.cluster.node_selector)
    scheduler_name = settings.scheduling.scheduler_name
    task: dict[str, asyncio.Task[None]] = {}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=connection.server, ca_path=connection.ca_path,
                                   certificate_path=connection.cert_path, private_key_path=connection.key_path,
                                   scheme="Bearer" if connection.token else None, token=connection.token,
                                   insecure=connection.insecure or None)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        settings.posting.enabled = False  # our events are decisions, posted by the loop
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        source.bind(kwargs)
        task["loop"] = asyncio.create_task(loop.run(), name="ome-planner-loop")

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        running = task.pop("loop", None)
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    @kopf.index("v1", "nodes", registry=registry, id="ome_nodes")
    async def nodes(body: kopf.Body, name: str, labels: kopf.Labels, **_: Any) -> dict[str, Any] | None:
        if any(labels.get(k) != v for k, v in scope.items()):
            return None
        try:
            return {name: node_view(body)}
        except InvalidInput as exc:
            log.warning("node %s ignored: %s", name, exc)
            return None

    @kopf.index("v1", "pods", registry=registry, id="ome_pods")
    async def pods(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
        try:
            view = pod_view(body)
        except InvalidInput as exc:
            log.warning("pod %s ignored: %s", body.get("metadata", {}).get("name"), exc)
            return None
        if not view.placement and (not view.node_name or not view.holds_resources):
            return None  # holds nothing on any node and is not ours
        return {view.key: view}

    @kopf.index(n.GROUP, n.VERSION, n.PLACEMENTS, registry=registry, id="ome_placements")
    async def placements(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        view = placement_view(body)
        return {view.key: view}

    @kopf.index(n.GROUP, n.VERSION, n.POLICIES, registry=registry, id="ome_policies")
    async def policies(body: kopf.Body, name: str, **_: Any) -> dict[str, Any] | None:
        return {name: policy_view(body)} if name == n.POLICY_NAME else None

    @kopf.index("scheduling.k8s.io", "v1", "priorityclasses", registry=registry, id="ome_priority_classes")
    async def priority_classes(body: kopf.Body, name: str, **_: Any) -> dict[str, Any]:
        return {name: (name, int(body.get("value") or 0))}

    @kopf.index("policy", "v1", "poddisruptionbudgets", registry=registry, id="ome_pdbs")
    async def pdbs(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        view = pdb_view(body)
        return {view.key: view}

    @kopf.index(n.OME_GROUP, n.OME_VERSION, n.INFERENCE_SERVICES, registry=registry, id="ome_isvcs")
    async def isvcs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): inference_service_view(body)}

    @kopf.index(n.OME_GROUP, n.OME_VERSION, n.ACCELERATOR_CLASSES, registry=registry, id="ome_accelerator_classes")
    async def accelerator_classes(body: kopf.Body, name: str, **_: Any) -> dict[str, Any]:
        return {name: accelerator_class_view(body)}

    def workloads(rid: str, group: str, version: str, plural: str, kind: str) -> None:
        @kopf.index(group, version, plural, registry=registry, id=rid)
        async def index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any] | None:
            template = _template_of(kind, body)
            if (template.get("spec") or {}).get("schedulerName") != scheduler_name:
                return None  # only workloads whose pods the OME scheduler places
            key = (kind, namespace, name)
            return {key: (key, json.dumps(plain(template), sort_keys=True))}

    workloads("ome_deployments", "apps", "v1", "deployments", "Deployment")
    workloads("ome_statefulsets", "apps", "v1", "statefulsets", "StatefulSet")
    workloads("ome_leaderworkersets", "leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet")

    async def poke(**_: Any) -> None:
        loop.poke()

    for rid, selector in RESOURCES:
        kopf.on.event(*selector, registry=registry, id=f"poke-{rid}")(poke)
    return registry
