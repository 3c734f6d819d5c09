"""Governed pods: the manifest the operator creates, and the patches that reserve and release them.

A governed pod is created from the ModelPlacement's template with:
  schedulerName  the OME scheduler (settings.scheduler_name, default `ome-scheduler`)
  schedulingGates [scheduling.ome.io/placement] unless it is a single-pod replica created
                 with its plan already known
  no priorityClassName/preemptionPolicy: governed pods run at priority 0, so kube-scheduler
                 never preempts for them or among them; the ModelPlacement's priority is
                 enforced by the operator alone, through the Eviction API
  labels         scheduling.ome.io/placement, /replica, /member, app.kubernetes.io/managed-by
  ownerReference the ModelPlacement (controller), so deleting it deletes its pods
A *reservation* adds the plan: annotations scheduling.ome.io/planned-node, ome.io/gpu-index,
scheduling.ome.io/gpu-milli and a required node affinity on metadata.name = planned node (a
gated pod's affinity may still be narrowed, KEP-3838). *Release* removes the gate.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ome.domain import MILLI

from . import _names as n
from ._model import NodeView, PlacementSpec, PlacementView, PodView

DEFAULT_CONTAINER = {"name": "server", "image": "registry.invalid/ome/model-server:latest"}


def pod_name(placement: str, replica: int, member: int, members: int) -> str:
    return f"{placement}-{replica}" if members == 1 else f"{placement}-{replica}-{member}"


def plan_annotations(node: str, gpus: Sequence[int], gpu_milli: int, tier: str, gang: str, gang_size: int) -> dict[str, str]:
    out = {n.ANN_PLANNED_NODE: node, n.ANN_GPU_INDEX: ",".join(str(g) for g in gpus), n.ANN_TIER: tier}
    if gpus:
        out[n.ANN_GPU_MILLI] = str(gpu_milli)
    if gang_size > 1:
        out[n.ANN_GANG] = gang
        out[n.ANN_GANG_SIZE] = str(gang_size)
    return out


def pinned_terms(existing: str, node: str) -> list[dict[str, Any]]:
    """Required node-affinity terms narrowed to one node (each existing term ANDed with it)."""
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    required = json.loads(existing) if existing else {}
    terms = [dict(t) for t in required.get("nodeSelectorTerms") or ()] or [{}]
    for term in terms:
        term["matchFields"] = [*(term.get("matchFields") or []), pin]
    return terms


def _resources(spec: PlacementSpec, container: dict[str, Any], gpu_milli: int) -> None:
    resources = container.setdefault("resources", {})
    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    for key in (n.GPU_RESOURCE, n.GPU_MILLI_RESOURCE):
        requests.pop(key, None)
        limits.pop(key, None)
    if spec.cpu_milli:
        requests["cpu"] = f"{spec.cpu_milli}m"
    if spec.memory_mib:
        requests["memory"] = f"{spec.memory_mib}Mi"
        limits["memory"] = f"{spec.memory_mib}Mi"
    if spec.gpus:
        requests[n.GPU_RESOURCE] = limits[n.GPU_RESOURCE] = str(spec.gpus)
    elif gpu_milli:
        requests[n.GPU_MILLI_RESOURCE] = limits[n.GPU_MILLI_RESOURCE] = str(gpu_milli)
    resources["requests"], resources["limits"] = requests, limits


def pod_manifest(view: PlacementView, spec: PlacementSpec, template: Mapping[str, Any], replica: int, member: int,
                 *, scheduler_name: str, gated: bool, gpu_milli: int,
                 plan: dict[str, str] | None = None) -> dict[str, Any]:
    """The pod for one member of one replica; `plan` (annotations) reserves it at creation."""
    k = spec.nodes_per_replica
    meta_t = template.get("metadata") or {}
    spec_t = copy.deepcopy(dict(template.get("spec") or {}))
    containers = spec_t.get("containers") or [dict(DEFAULT_CONTAINER)]
    spec_t["containers"] = containers
    _resources(spec, containers[0], gpu_milli)
    labels = dict(meta_t.get("labels") or {}) | {
        n.LABEL_PLACEMENT: view.name, n.LABEL_REPLICA: str(replica), n.LABEL_MEMBER: str(member),
        n.LABEL_MANAGED_BY: n.MANAGER}
    annotations = dict(meta_t.get("annotations") or {})
    spec_t["schedulerName"] = scheduler_name
    for key in ("nodeName", "priority", "preemptionPolicy", "priorityClassName"):
        spec_t.pop(key, None)  # the operator alone ranks, places and preempts governed pods
    if gated:
        spec_t["schedulingGates"] = [{"name": n.GATE}]
    if plan:
        annotations |= plan
        node_affinity = ((spec_t.get("affinity") or {}).get("nodeAffinity") or {})
        existing = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        terms = pinned_terms(json.dumps(existing) if existing else "", plan[n.ANN_PLANNED_NODE])
        spec_t.setdefault("affinity", {}).setdefault("nodeAffinity", {})[
            "requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(view.name, replica, member, k),
            "namespace": view.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": f"{n.GROUP}/{n.VERSION}", "kind": n.PLACEMENT_KIND,
                                 "name": view.name, "uid": view.uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": spec_t,
    }


def reserve_patch(pod: PodView, plan: dict[str, str], release: bool) -> dict[str, Any]:
    """Merge patch: write the plan on a gated pod (and, with `release`, remove our gate)."""
    spec: dict[str, Any] = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": pinned_terms(pod.node_affinity, plan[n.ANN_PLANNED_NODE])}}}}
    if release:
        spec["schedulingGates"] = [{"name": g} for g in pod.gates if g != n.GATE]
    return {"metadata": {"annotations": plan}, "spec": spec}


def release_patch(pod: PodView) -> dict[str, Any]:
    return {"spec": {"schedulingGates": [{"name": g} for g in pod.gates if g != n.GATE]}}


# ----------------------------------------------------------------------------- eligibility


def _tolerated(taint: Any, tolerations: Sequence[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.effect:
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t.get("key") == taint.key):
            return True
        if op == "Equal" and t.get("key") == taint.key and (t.get("value") or "") == taint.value:
            return True
    return False


def eligible_mask(nodes: Sequence[NodeView], template: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
    """Nodes a pod from `template` may use: Ready, not cordoned, taints tolerated, nodeSelector held."""
    spec = template.get("spec") or {}
    tolerations = list(spec.get("tolerations") or ())
    selector = dict(spec.get("nodeSelector") or {})
    out = np.zeros(len(nodes), np.bool_)
    for i, view in enumerate(nodes):
        if not view.ready or view.unschedulable:
            continue
        if any(t.effect in ("NoSchedule", "NoExecute") and not _tolerated(t, tolerations) for t in view.taints):
            continue
        labels = dict(view.node.labels)
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        out[i] = True
    return out
