"""OME input: an InferenceService (ome.io/v1beta1) -> the ModelPlacement(s) that govern it.

One ModelPlacement per component that needs GPUs (`engine`, and `decoder` for prefill-decode
serving), named `<isvc>-<component>`, owned by the InferenceService (deleted with it):

  replicas           component.minReplicas (default 1)
  nodesPerReplica    1 + worker.size when the component has a leader/worker (multi-node) spec
  resources          the runner's requests (limits when no requests): nvidia.com/gpu, cpu, memory;
                     for multi-node, the largest of the leader's and the worker's runner
  accelerators       [acceleratorClass] of component.acceleratorOverride, else of
                     spec.acceleratorSelector (an AcceleratorClass name, resolved to nodes
                     through its spec.discovery.nodeSelector)
  minGpuMemory       acceleratorSelector.constraints.minMemory (GB)
  priorityClassName  component.priorityClassName
  model              spec.model (name, kind) with policy Required: OME runs a model's pods
                     only where its node label models.ome.io/<...> is Ready
  template           the runner container plus the component's nodeSelector and tolerations
"""

from __future__ import annotations

import json
from typing import Any

from . import _names as n
from ._model import InferenceServiceView

COMPONENTS = ("engine", "decoder")
DEFAULT_IMAGE = "registry.invalid/ome/model-server:latest"


def _resources(runner: dict[str, Any]) -> dict[str, Any]:
    res = runner.get("resources") or {}
    return dict(res.get("limits") or {}) | dict(res.get("requests") or {})


def _gpus(values: dict[str, Any]) -> int:
    try:
        return int(str(values.get(n.GPU_RESOURCE, 0)))
    except ValueError:
        return 0


def placement_for(isvc: InferenceServiceView, component: str) -> dict[str, Any] | None:
    """The ModelPlacement body for one component, or None when it has none or needs no GPU."""
    spec = json.loads(isvc.spec)
    comp = spec.get(component)
    if not isinstance(comp, dict):
        return None
    leader, worker = comp.get("leader") or {}, comp.get("worker") or {}
    multi = bool(leader or worker)
    runners = [r for r in ((leader.get("runner") or {}), (worker.get("runner") or {})) if r] if multi else []
    runners = runners or [comp.get("runner") or {}]
    requests = max((_resources(r) for r in runners), key=_gpus)
    gpus = _gpus(requests)
    if not gpus:
        return None
    selector = comp.get("acceleratorOverride") or spec.get("acceleratorSelector") or {}
    resources: dict[str, Any] = {"gpus": gpus}
    for key in ("cpu", "memory"):
        if requests.get(key) is not None:
            resources[key] = str(requests[key])
    if multi:
        resources["nodesPerReplica"] = 1 + int(worker.get("size") or 0)
    body_spec: dict[str, Any] = {
        "workloadRef": {"apiVersion": f"{n.OME_GROUP}/{n.OME_VERSION}", "kind": "InferenceService",
                        "name": isvc.name, "component": component},
        "replicas": int(comp.get("minReplicas", 1) if comp.get("minReplicas") is not None else 1),
        "resources": resources,
        "template": _template(isvc, component, comp, runners[0]),
    }
    if selector.get("acceleratorClass"):
        body_spec["accelerators"] = [{"acceleratorClass": selector["acceleratorClass"]}]
    min_memory = (selector.get("constraints") or {}).get("minMemory")
    if min_memory:
        body_spec["minGpuMemory"] = f"{int(min_memory)}Gi"
    if comp.get("priorityClassName"):
        body_spec["priorityClassName"] = comp["priorityClassName"]
    model = spec.get("model") or {}
    if model.get("name"):
        body_spec["model"] = {"name": model["name"], "kind": model.get("kind") or "ClusterBaseModel",
                              "policy": "Required"}
    return {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.PLACEMENT_KIND,
        "metadata": {
            "name": f"{isvc.name}-{component}",
            "namespace": isvc.namespace,
            "labels": {n.LABEL_FROM_ISVC: isvc.name, n.LABEL_COMPONENT: component},
            "ownerReferences": [{"apiVersion": f"{n.OME_GROUP}/{n.OME_VERSION}", "kind": "InferenceService",
                                 "name": isvc.name, "uid": isvc.uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": body_spec,
    }


def _template(isvc: InferenceServiceView, component: str, comp: dict[str, Any],
              runner: dict[str, Any]) -> dict[str, Any]:
    container = {k: v for k, v in runner.items() if k in ("name", "image", "command", "args", "env", "ports")}
    container.setdefault("name", "ome-container")
    container.setdefault("image", DEFAULT_IMAGE)
    pod_spec: dict[str, Any] = {"containers": [container]}
    for key in ("nodeSelector", "tolerations", "serviceAccountName"):
        if comp.get(key):
            pod_spec[key] = comp[key]
    return {"metadata": {"labels": {"ome.io/inferenceservice": isvc.name, "ome.io/component": component}},
            "spec": pod_spec}


def derived_placements(isvc: InferenceServiceView) -> list[dict[str, Any]]:
    return [body for c in COMPONENTS if (body := placement_for(isvc, c)) is not None]
