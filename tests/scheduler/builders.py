"""Fluent-ish builders of v1 Node and Pod JSON for the extender tests."""

from __future__ import annotations

import itertools
from typing import Any

_uids = itertools.count()


def make_node(name: str, model: str = "A100", gpus: int = 8, cpu: str = "96", memory: str = "512Gi",
              gpu_memory_mib: int = 40960, labels: dict[str, str] | None = None) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": "256"}
    node_labels = {"kubernetes.io/hostname": name}
    if gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
        alloc["ome.io/gpu-milli"] = f"{gpus}k"
        node_labels["nvidia.com/gpu.product"] = model
        node_labels["nvidia.com/gpu.memory"] = str(gpu_memory_mib)
    node_labels.update(labels or {})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels},
            "spec": {}, "status": {"capacity": dict(alloc), "allocatable": alloc}}


def make_pod(name: str, gpus: int = 0, milli: int | None = None, cpu: str = "1", memory: str = "1Gi",
             namespace: str = "default", uid: str | None = None, node: str = "", gpu_index: str | None = None,
             priority: int | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    if milli is not None:
        limits["ome.io/gpu-milli"] = str(milli)
    ann = dict(annotations or {})
    if gpu_index is not None:
        ann["ome.io/gpu-index"] = gpu_index
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}-{next(_uids)}",
                     "labels": labels or {}, "annotations": ann},
        "spec": {"containers": [{"name": "main", "image": "x", "resources": {"limits": limits, "requests": limits}}],
                 **spec},
        "status": {"phase": "Running" if node else "Pending"},
    }
    if node:
        body["spec"]["nodeName"] = node
    if priority is not None:
        body["spec"]["priority"] = priority
    return body


def cluster(*shapes: tuple[str, str, int]) -> list[dict[str, Any]]:
    """Nodes from (name, model, gpus) triples."""
    return [make_node(n, m, g) for n, m, g in shapes]
