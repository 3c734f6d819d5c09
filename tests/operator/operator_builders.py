"""Builders for operator tests: API object bodies with defaults, and a loop that runs to quiet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ome.operator import FakeKube, OperatorSettings, PlannerLoop
from ome.operator._settings import LoopSettings, SchedulingSettings

GPU_MEMORY = {"H100": 81920, "A100": 40960, "L4": 24576}
GPU_COUNT = {"H100": 8, "A100": 8, "L4": 4}


def node(name: str, model: str = "H100", gpus: int | None = None, *, spot: bool = False, zone: str = "zone-a",
         pool: str | None = None, labels: Mapping[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         ready: bool = True) -> dict[str, Any]:
    count = GPU_COUNT[model] if gpus is None else gpus
    all_labels = {
        "kubernetes.io/hostname": name,
        "nvidia.com/gpu.product": model,
        "nvidia.com/gpu.memory": str(GPU_MEMORY[model]),
        "karpenter.sh/capacity-type": "spot" if spot else "on-demand",
        "topology.kubernetes.io/zone": zone,
        "scheduling.ome.io/pool": pool or model.lower(),
        **(labels or {}),
    }
    resources = {"cpu": "96", "memory": "1024Gi", "pods": "256", "nvidia.com/gpu": str(count),
                 "ome.io/gpu-milli": str(count * 1000)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": resources, "capacity": resources,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def placement(name: str, replicas: int = 1, gpus: int = 1, *, namespace: str = "ml",
              accelerators: list[str] | None = None, priority: int | None = None, **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "replicas": replicas,
        "resources": {"gpus": gpus, "cpu": "1", "memory": "4Gi", **spec.pop("resources", {})},
    }
    if accelerators:
        body_spec["accelerators"] = [{"gpuModel": a} if not a.startswith("class/") else
                                     {"acceleratorClass": a.removeprefix("class/")} for a in accelerators]
    if priority is not None:
        body_spec["priority"] = priority
    body_spec.update(spec)
    return {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "ModelPlacement",
            "metadata": {"name": name, "namespace": namespace}, "spec": body_spec}


def policy(pools: list[tuple[str, str, str, str]] | None = None, **objective: int) -> dict[str, Any]:
    """pools: (name, pool label value, on-demand $/GPU-h, spot $/GPU-h)."""
    return {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
            "spec": {"objective": objective or {"strandedGpusWeight": 1, "costWeight": 1, "spreadWeight": 0},
                     "pools": [{"name": p, "nodeSelector": {"matchLabels": {"scheduling.ome.io/pool": label}},
                                "onDemandPricePerGpuHour": od, "spotPricePerGpuHour": sp}
                               for p, label, od, sp in (pools or [])]}}


def blocker(name: str, node_name: str, gpus: int, namespace: str = "other") -> dict[str, Any]:
    """A running pod the operator does not govern."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": str(gpus)},
                "limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": "Running"}}


def loop_for(kube: FakeKube) -> PlannerLoop:
    settings = OperatorSettings(scheduling=SchedulingSettings("default-scheduler"), loop=LoopSettings(write_workers=1))
    return PlannerLoop(settings, kube, kube)


def converge(kube: FakeKube, loop: PlannerLoop | None = None, max_cycles: int = 20) -> PlannerLoop:
    """Cycle, bind, settle until a cycle writes nothing to pods and nothing changes."""
    loop = loop or loop_for(kube)
    for _ in range(max_cycles):
        report = loop.cycle()
        bound = kube.bind()
        gone = kube.settle()
        if not report.plan.pod_writes and not report.plan.placements and not bound and not gone:
            return loop
    raise AssertionError(f"did not converge in {max_cycles} cycles; last plan {report.plan}")


def pods_of(kube: FakeKube, placement_name: str, namespace: str = "ml") -> list[dict[str, Any]]:
    return sorted((p for (ns, _), p in kube.pods.items()
                   if ns == namespace and p["metadata"].get("labels", {}).get("scheduling.ome.io/placement") == placement_name),
                  key=lambda p: p["metadata"]["name"])


def status_of(kube: FakeKube, name: str, namespace: str = "ml") -> dict[str, Any]:
    return kube.placements[(namespace, name)].get("status", {})


def condition(kube: FakeKube, name: str, kind: str, namespace: str = "ml") -> dict[str, Any]:
    return next(c for c in status_of(kube, name, namespace)["conditions"] if c["type"] == kind)
