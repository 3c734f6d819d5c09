"""Kubernetes v1 JSON (Pod, Node, Quantity) -> ome.domain values, and the pod annotations OME writes.

How a pod asks for GPUs (the contract of this extender):

- whole GPUs: `nvidia.com/gpu: N` in limits (or requests) of its containers, N in 1..16;
- a share of one GPU: `ome.io/gpu-milli: M` with M in 1..999 and no `nvidia.com/gpu`;
- `ome.io/gpu-milli: 0` with no `nvidia.com/gpu` is a CPU-only pod that opts into OME
  placement (kube-scheduler only calls an extender for pods naming one of its managed
  resources, so this is how a CPU pod gets packed away from GPU-shaped holes);
- both: allowed only when M == N * 1000 (the same request said twice).

Accepted GPU models, first match wins:
1. annotation `ome.io/gpu-models: "A100,H100"` (comma list);
2. `spec.nodeSelector["nvidia.com/gpu.product"]`;
3. required node affinity: every term constrains `nvidia.com/gpu.product` with `In`;
   the union of their values (a term without such a constraint allows any model).
kube-scheduler's own NodeAffinity filter enforces 2 and 3 before the extender runs; reading
them here keeps the extender's view (target shapes, preemption) the same.
Minimum memory per GPU: annotation `ome.io/gpu-memory-mib` (MiB).

The GPU indices a pod holds are written on it as `ome.io/gpu-index: "0,3"` before it is
bound, so that allocations can be rebuilt from the cluster alone.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard

from ome.domain import MILLI, InvalidInput, Node, PodRequest

GPU_RESOURCE = "nvidia.com/gpu"
GPU_MILLI_RESOURCE = "ome.io/gpu-milli"
MANAGED_RESOURCES = (GPU_RESOURCE, GPU_MILLI_RESOURCE)

ANNOTATION_GPU_INDEX = "ome.io/gpu-index"
ANNOTATION_GPU_MODELS = "ome.io/gpu-models"
ANNOTATION_GPU_MEMORY = "ome.io/gpu-memory-mib"

LABEL_PRODUCT = "nvidia.com/gpu.product"
LABEL_MEMORY = "nvidia.com/gpu.memory"

MAX_GPUS = 16  # ome.domain's per-node limit
MAX_CPU_MILLI = 10**9  # a million cores: anything larger is a typo or an attack
MAX_MEMORY_MIB = 10**12  # an exbibyte
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def quantity(value: object, where: str) -> Decimal:
    """A Kubernetes resource.Quantity ("100m", "64Mi", "1e3", 2) as an exact Decimal, >= 0."""
    parsed = _quantity_or_reason(value)
    if isinstance(parsed, str):
        raise InvalidInput(f"{where}: {parsed}")
    return parsed


@functools.lru_cache(maxsize=4096)
def _parse(value: str) -> Decimal | str:
    """A quantity string -> Decimal, or the reason it is not one (cached: pods repeat a few sizes)."""
    text = value.strip()
    match = _QUANTITY.match(text) if len(text) <= 64 else None
    if match is None:
        return f"{text[:64]!r} is not a Kubernetes quantity"
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return f"{text!r} is not a Kubernetes quantity"
    if not number.is_finite() or abs(number.adjusted()) > 30:
        return f"{text!r} is out of range"
    result = number * _SUFFIX[match.group(2) or ""]
    if result < 0:
        return f"{text!r} is negative"
    return result


def _ceil(d: Decimal) -> int:
    return int(d.to_integral_value(rounding="ROUND_CEILING"))


def _quantity_or_reason(value: object) -> Decimal | str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"quantity must be a string or number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"quantity {value!r} is not finite"
    return _parse(str(value))


@functools.lru_cache(maxsize=4096)
def _converted(unit: str, value: str | int | float) -> int | str:
    """A quantity in `unit` ("milli", "mib", "whole"), or the reason it cannot be (cached: pods
    repeat a few sizes, and Decimal arithmetic is most of a translation's cost otherwise)."""
    q = _quantity_or_reason(value)
    if isinstance(q, str):
        return q
    if unit == "milli":
        return _ceil(q * 1000)
    if unit == "mib":
        return _ceil(q / (1 << 20))
    if q != q.to_integral_value():
        return f"{value!r} must be a whole number"
    return int(q)


def _convert(unit: str, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInput(f"{where}: quantity must be a string or number, got {type(value).__name__}")
    result = _converted(unit, value)
    if isinstance(result, str):
        raise InvalidInput(f"{where}: {result}")
    return result


def cpu_milli(value: object, where: str) -> int:
    return _convert("milli", value, where)


def memory_mib(value: object, where: str) -> int:
    return _convert("mib", value, where)


def whole(value: object, where: str) -> int:
    return _convert("whole", value, where)


def is_dns_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and bool(_NAME.match(name))


# --------------------------------------------------------------------------- nodes


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be an object, got {type(value).__name__}")
    return value


def node_from_v1(obj: Mapping[str, Any]) -> Node:
    """A v1 Node -> Node: allocatable CPU/memory/GPUs, GPU model and memory from NVIDIA's labels."""
    meta = _mapping(obj.get("metadata"), "node.metadata")
    name = meta.get("name")
    if not is_dns_name(name):
        raise InvalidInput(f"node name {str(name)[:80]!r} is not a valid DNS name")
    where = f"node {name}"
    labels = {str(k): str(v) for k, v in _mapping(meta.get("labels"), f"{where}.labels").items()}
    status = _mapping(obj.get("status"), f"{where}.status")
    alloc = _mapping(status.get("allocatable") or status.get("capacity"), f"{where}.status.allocatable")
    gpus = whole(alloc.get(GPU_RESOURCE, 0), f"{where} {GPU_RESOURCE}")
    if not gpus and GPU_MILLI_RESOURCE in alloc:
        gpus = whole(alloc[GPU_MILLI_RESOURCE], f"{where} {GPU_MILLI_RESOURCE}") // MILLI
    if gpus > MAX_GPUS:
        raise InvalidInput(f"{where}: {gpus} GPUs, more than the {MAX_GPUS} OME models per node")
    memory = labels.get(LABEL_MEMORY, "")
    return Node(
        name=str(name),
        cpu_milli=min(cpu_milli(alloc.get("cpu", 0), f"{where} cpu"), MAX_CPU_MILLI),
        memory_mib=min(memory_mib(alloc.get("memory", 0), f"{where} memory"), MAX_MEMORY_MIB),
        gpu_model=(labels.get(LABEL_PRODUCT) or "unknown") if gpus else "",
        gpu_count=gpus,
        gpu_memory_mib=int(memory) if memory.isdigit() else 0,
        pool=labels.get("scheduling.ome.io/pool", ""),
        zone=labels.get("topology.kubernetes.io/zone", ""),
    )


def node_schedulable(obj: Mapping[str, Any]) -> bool:
    """False for cordoned nodes; kube-scheduler filters those itself, this is for the metrics."""
    spec = obj.get("spec")
    return not (isinstance(spec, Mapping) and spec.get("unschedulable"))


# --------------------------------------------------------------------------- pods


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the extender keeps of one pod."""

    uid: str
    namespace: str
    name: str
    request: PodRequest
    node_name: str = ""
    gpu_index: tuple[int, ...] | None = None  # from the annotation; None when absent or unreadable
    terminal: bool = False
    managed: bool = False  # names a managed resource, so kube-scheduler sends it to the extender

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _containers(spec: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    value = spec.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"pod.spec.{field} must be a list")
    return [_mapping(c, f"pod.spec.{field}[]") for c in value]


def _resources(container: Mapping[str, Any], where: str) -> tuple[dict[str, object], bool]:
    """The container's requests (limits fill in what requests lack, as the apiserver defaults)."""
    res = _mapping(container.get("resources"), f"{where}.resources")
    limits = _mapping(res.get("limits"), f"{where}.resources.limits")
    requests = _mapping(res.get("requests"), f"{where}.resources.requests")
    merged = dict(limits)
    merged.update(requests)
    managed = any(r in limits or r in requests for r in MANAGED_RESOURCES)
    return merged, managed


def _effective(spec: Mapping[str, Any], units: Mapping[str, str], where: str) -> tuple[dict[str, int], bool]:
    """kube-scheduler's pod request for each resource of `units` (resource -> unit): max(sum of
    app containers + sidecars, each init container + the sidecars started before it) + overhead.
    Also whether any container names a resource the extender manages."""
    total = dict.fromkeys(units, 0)
    sidecars = dict.fromkeys(units, 0)
    peak = dict.fromkeys(units, 0)
    managed = False
    for i, c in enumerate(_containers(spec, "containers")):
        here = f"{where}.containers[{i}]"
        res, named = _resources(c, here)
        managed |= named
        for resource, unit in units.items():
            if resource in res:
                total[resource] += _convert(unit, res[resource], f"{here} {resource}")
    for i, c in enumerate(_containers(spec, "initContainers")):
        here = f"{where}.initContainers[{i}]"
        res, named = _resources(c, here)
        managed |= named
        sidecar = c.get("restartPolicy") == "Always"
        for resource, unit in units.items():
            value = _convert(unit, res[resource], f"{here} {resource}") if resource in res else 0
            if sidecar:
                sidecars[resource] += value
                peak[resource] = max(peak[resource], sidecars[resource])
            else:
                peak[resource] = max(peak[resource], sidecars[resource] + value)
    overhead = _mapping(spec.get("overhead"), f"{where}.overhead")
    out = {}
    for resource, unit in units.items():
        extra = _convert(unit, overhead[resource], f"{where}.overhead {resource}") if resource in overhead else 0
        out[resource] = max(total[resource] + sidecars[resource], peak[resource]) + extra
    return out, managed


_POD_UNITS = {"cpu": "milli", "memory": "mib", GPU_RESOURCE: "whole", GPU_MILLI_RESOURCE: "whole"}


def _models(meta: Mapping[str, Any], spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> frozenset[str]:
    raw = annotations.get(ANNOTATION_GPU_MODELS)
    if isinstance(raw, str) and raw.strip():
        return frozenset(m.strip() for m in raw.split(",") if m.strip())
    selector = _mapping(spec.get("nodeSelector"), "pod.spec.nodeSelector")
    if isinstance(selector.get(LABEL_PRODUCT), str):
        return frozenset({selector[LABEL_PRODUCT]})
    affinity = _mapping(_mapping(spec.get("affinity"), "pod.spec.affinity").get("nodeAffinity"), "nodeAffinity")
    required = _mapping(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), "nodeAffinity.required")
    terms = required.get("nodeSelectorTerms")
    if not isinstance(terms, list) or not terms:
        return frozenset()
    models: set[str] = set()
    for term in terms:
        exprs = _mapping(term, "nodeSelectorTerm").get("matchExpressions") or []
        found = [e for e in exprs if isinstance(e, Mapping) and e.get("key") == LABEL_PRODUCT
                 and e.get("operator") == "In" and isinstance(e.get("values"), list)]
        if not found:
            return frozenset()  # this term allows any model
        for e in found:
            models.update(str(v) for v in e["values"])
    return frozenset(models)


def parse_gpu_index(raw: object) -> tuple[int, ...] | None:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        return None
    try:
        indices = tuple(int(part) for part in raw.split(","))
    except ValueError:
        return None
    if any(not 0 <= g < MAX_GPUS for g in indices) or len(set(indices)) != len(indices):
        return None
    return indices


def format_gpu_index(gpus: Iterable[int]) -> str:
    return ",".join(str(g) for g in gpus)


def pod_from_v1(obj: Mapping[str, Any]) -> PodInfo:
    """A v1 Pod -> PodInfo. Raises InvalidInput, naming the field, for anything malformed or absurd."""
    if not isinstance(obj, Mapping):
        raise InvalidInput(f"pod must be an object, got {type(obj).__name__}")
    meta = _mapping(obj.get("metadata"), "pod.metadata")
    spec = _mapping(obj.get("spec"), "pod.spec")
    status = _mapping(obj.get("status"), "pod.status")
    name, namespace, uid = meta.get("name"), meta.get("namespace") or "default", meta.get("uid") or ""
    if not isinstance(name, str) or not name or len(name) > 253:
        raise InvalidInput("pod.metadata.name is missing or not a string")
    if not isinstance(namespace, str) or not isinstance(uid, str) or len(uid) > 128 or len(namespace) > 253:
        raise InvalidInput("pod.metadata.namespace and pod.metadata.uid must be strings")
    where = f"pod {namespace}/{name}"
    if not spec.get("containers"):
        raise InvalidInput(f"{where}: spec.containers is missing or empty")
    annotations = _mapping(meta.get("annotations"), f"{where}.annotations")
    asked, managed = _effective(spec, _POD_UNITS, where)
    cpu, mem, gpus, milli = (asked[r] for r in _POD_UNITS)
    if cpu > MAX_CPU_MILLI or mem > MAX_MEMORY_MIB:
        raise InvalidInput(f"{where}: requests {cpu}m CPU / {mem}Mi memory, beyond any node")
    if gpus > MAX_GPUS:
        raise InvalidInput(f"{where}: {GPU_RESOURCE} {gpus} is more than the {MAX_GPUS} GPUs a node can have")
    if gpus and milli not in (0, gpus * MILLI):
        raise InvalidInput(f"{where}: asks {gpus} whole GPU(s) and {GPU_MILLI_RESOURCE} {milli}; "
                           f"ask one or the other ({GPU_MILLI_RESOURCE} must then be 0 or {gpus * MILLI})")
    if not gpus and milli >= MILLI:
        raise InvalidInput(f"{where}: {GPU_MILLI_RESOURCE} {milli} is not a share (1..{MILLI - 1}); "
                           f"ask whole GPUs with {GPU_RESOURCE}")
    num_gpu, per_gpu = (gpus, MILLI) if gpus else ((1, milli) if milli else (0, 0))
    gpu_memory = annotations.get(ANNOTATION_GPU_MEMORY)
    min_memory = whole(gpu_memory, f"{where} {ANNOTATION_GPU_MEMORY}") if gpu_memory is not None else 0
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 2**31:
        raise InvalidInput(f"{where}: spec.priority must be a 32-bit integer")
    request = PodRequest(
        name=f"{namespace}/{name}",
        cpu_milli=cpu,
        memory_mib=mem,
        num_gpu=num_gpu,
        gpu_milli=per_gpu,
        gpu_models=_models(meta, spec, annotations) if num_gpu else frozenset(),
        min_gpu_memory_mib=min(min_memory, MAX_MEMORY_MIB),
        priority=int(priority),
    )
    node_name = spec.get("nodeName") or ""
    if not isinstance(node_name, str):
        raise InvalidInput(f"{where}: spec.nodeName must be a string")
    return PodInfo(
        uid=uid, namespace=namespace, name=name, request=request, node_name=node_name,
        gpu_index=parse_gpu_index(annotations.get(ANNOTATION_GPU_INDEX)),
        terminal=status.get("phase") in TERMINAL_PHASES, managed=managed,
    )
