"""What the operator reads, as frozen views: API objects -> typed values, once, at the edge.

Each `*_view` function turns one API object body (a kopf Body or a plain dict) into a view.
Bad user data raises InvalidInput naming the field; the CRD schema rejects most of it first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity

from ome.domain import MILLI, ON_DEMAND, SPOT, InvalidInput, Node

from . import _names as n

Body = Mapping[str, Any]
Labels = tuple[tuple[str, str], ...]


# ----------------------------------------------------------------------------- quantities


def _quantity(value: Any, where: str) -> Decimal:
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise InvalidInput(f"{where}: {value!r} is not a quantity") from exc


def cpu_milli(value: Any, where: str = "cpu") -> int:
    return 0 if value in (None, "") else math.ceil(_quantity(value, where) * 1000)


def mebibytes(value: Any, where: str = "memory") -> int:
    return 0 if value in (None, "") else math.ceil(_quantity(value, where) / (1 << 20))


def micro_usd(value: Any, where: str) -> int:
    """A decimal USD amount ("2.50") -> integer micro-USD."""
    if value in (None, ""):
        return 0
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidInput(f"{where}: {value!r} is not a decimal amount") from exc
    if amount < 0:
        raise InvalidInput(f"{where}: {value!r} must be >= 0")
    return int(amount * 1_000_000)


def usd(micro: int) -> str:
    return f"{Decimal(micro) / 1_000_000:.2f}"


def labels_of(meta: Mapping[str, Any]) -> Labels:
    return tuple(sorted((meta.get("labels") or {}).items()))


# ----------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class NodeView:
    node: Node
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True

    @property
    def name(self) -> str:
        return self.node.name


def node_view(body: Body) -> NodeView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    labels = dict(meta.get("labels") or {})
    alloc = status.get("allocatable") or status.get("capacity") or {}
    name = meta["name"]
    gpus = int(alloc.get(n.GPU_RESOURCE, 0) or 0)
    if not gpus and alloc.get(n.GPU_MILLI_RESOURCE):
        gpus = int(alloc[n.GPU_MILLI_RESOURCE]) // MILLI
    spot = any(labels.get(k) == v for k, v in n.SPOT_LABELS)
    price = (meta.get("annotations") or {}).get(n.NODE_PRICE, "0")
    node = Node(
        name=name,
        cpu_milli=cpu_milli(alloc.get("cpu", 0), f"node {name} cpu"),
        memory_mib=mebibytes(alloc.get("memory", 0), f"node {name} memory"),
        gpu_model=labels.get(n.NODE_GPU_PRODUCT, "gpu" if gpus else "") if gpus else "",
        gpu_count=min(gpus, 16),
        gpu_memory_mib=int(labels.get(n.NODE_GPU_MEMORY, "0") or 0) if gpus else 0,
        pool=labels.get(n.NODE_POOL, ""),
        capacity_type=SPOT if spot else ON_DEMAND,
        zone=labels.get(n.NODE_ZONE, ""),
        price_micro_usd_per_hour=int(price) if str(price).isdigit() else 0,
        labels=tuple(sorted(labels.items())),
    )
    taints = tuple(Taint(t.get("key", ""), t.get("value", "") or "", t.get("effect", ""))
                   for t in spec.get("taints") or ())
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return NodeView(node, taints, bool(spec.get("unschedulable")), ready)


# ----------------------------------------------------------------------------- pods


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    uid: str
    node_name: str = ""
    phase: str = "Pending"
    terminating: bool = False
    cpu_milli: int = 0
    memory_mib: int = 0
    num_gpu: int = 0
    gpu_milli: int = 0  # per GPU
    gpu_index: tuple[int, ...] = ()  # from the ome.io/gpu-index annotation
    labels: Labels = ()
    # Governed pods only:
    placement: str = ""  # ModelPlacement name ("" = not governed)
    owner_uid: str = ""
    replica: int = -1
    member: int = -1
    planned_node: str = ""
    gates: tuple[str, ...] = ()
    node_affinity: str = ""  # JSON of spec.affinity.nodeAffinity.requiredDuringScheduling... ("" = none)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def gated(self) -> bool:
        return n.GATE in self.gates

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def holds_resources(self) -> bool:
        """Counts against its node: bound (or planned), not finished, not on its way out."""
        return not self.finished and not self.terminating


def _container_requests(spec: Mapping[str, Any]) -> dict[str, Any]:
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or ():
        resources = c.get("resources") or {}
        requests = dict(resources.get("limits") or {}) | dict(resources.get("requests") or {})
        for key, value in requests.items():
            total[key] = total.get(key, Decimal(0)) + _quantity(value, f"container {c.get('name')} {key}")
    return total


def pod_view(body: Body) -> PodView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    labels = dict(meta.get("labels") or {})
    annotations = meta.get("annotations") or {}
    req = _container_requests(spec)
    num_gpu = int(req.get(n.GPU_RESOURCE, 0))
    gpu_milli = MILLI if num_gpu else 0
    share = int(req.get(n.GPU_MILLI_RESOURCE, 0))
    if not num_gpu and share:
        num_gpu, gpu_milli = (1, share) if share < MILLI else (share // MILLI, MILLI)
    governed = labels.get(n.LABEL_MANAGED_BY) == n.MANAGER and n.LABEL_PLACEMENT in labels
    owner = next((o.get("uid", "") for o in meta.get("ownerReferences") or () if o.get("kind") == n.PLACEMENT_KIND), "")
    affinity = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return PodView(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        uid=meta.get("uid", ""),
        node_name=spec.get("nodeName") or "",
        phase=status.get("phase") or "Pending",
        terminating=bool(meta.get("deletionTimestamp")),
        cpu_milli=math.ceil(req.get("cpu", Decimal(0)) * 1000),
        memory_mib=math.ceil(req.get("memory", Decimal(0)) / (1 << 20)),
        num_gpu=min(num_gpu, 16),
        gpu_milli=gpu_milli,
        gpu_index=parse_gpu_index(annotations.get(n.ANN_GPU_INDEX, "")),
        labels=tuple(sorted(labels.items())),
        placement=labels.get(n.LABEL_PLACEMENT, "") if governed else "",
        owner_uid=owner,
        replica=_int(labels.get(n.LABEL_REPLICA)) if governed else -1,
        member=_int(labels.get(n.LABEL_MEMBER, "0")) if governed else -1,
        planned_node=annotations.get(n.ANN_PLANNED_NODE, "") if governed else "",
        gates=tuple(g.get("name", "") for g in spec.get("schedulingGates") or ()),
        node_affinity=json.dumps(affinity, sort_keys=True) if affinity else "",
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def parse_gpu_index(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip()) if text else ()
    except ValueError:
        return ()


# ----------------------------------------------------------------------------- placements


@dataclass(frozen=True, slots=True)
class Accelerator:
    gpu_model: str = ""
    accelerator_class: str = ""

    @property
    def name(self) -> str:
        return self.gpu_model or f"class/{self.accelerator_class}"


@dataclass(frozen=True, slots=True)
class PlacementSpec:
    workload_kind: str
    workload_name: str
    replicas: int
    gpus: int = 0  # whole GPUs per pod
    gpu_share_milli: int = 0  # share of one GPU per pod
    gpu_memory_mib: int = 0  # per GPU: the memory-sized share, or a minimum with gpus/gpuShare
    cpu_milli: int = 0
    memory_mib: int = 0
    nodes_per_replica: int = 1
    accelerators: tuple[Accelerator, ...] = ()
    min_gpu_memory_mib: int = 0
    priority_class_name: str = ""
    priority: int | None = None
    spot_policy: str = "Never"
    min_on_demand: int = 0
    model_label: tuple[str, str] | None = None
    model_policy: str = "Preferred"
    template: str = "{}"  # JSON of a PodTemplateSpec (kept as text: hashable, immutable)

    @property
    def template_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.template))


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""

    def as_dict(self, generation: int) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message,
                "lastTransitionTime": self.last_transition_time, "observedGeneration": generation}


@dataclass(frozen=True, slots=True)
class PlacementView:
    namespace: str
    name: str
    uid: str
    generation: int
    created: str
    spec: PlacementSpec | None  # None when the spec could not be read (error says why)
    error: str = ""
    labels: Labels = ()
    conditions: tuple[Condition, ...] = ()
    status: str = "{}"  # JSON of the current status, to write only what changed
    spec_json: str = "{}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


def model_label(model: Mapping[str, Any], namespace: str) -> tuple[str, str] | None:
    """OME's model-Ready node label: models.ome.io/clusterbasemodel.<name> or <ns>.basemodel.<name>."""
    if not model or not model.get("name"):
        return None
    if model.get("readyLabel"):
        return (str(model["readyLabel"]), "Ready")
    kind = str(model.get("kind") or "ClusterBaseModel")
    ns = model.get("namespace") or namespace
    key = (f"models.ome.io/clusterbasemodel.{model['name']}" if kind == "ClusterBaseModel"
           else f"models.ome.io/{ns}.basemodel.{model['name']}")
    return (key, "Ready")


def placement_spec(spec: Mapping[str, Any], namespace: str) -> PlacementSpec:
    where = "spec"
    ref = spec.get("workloadRef") or {}
    resources = spec.get("resources") or {}
    if "replicas" not in spec:
        raise InvalidInput(f"{where}.replicas is required")
    gpus = int(resources.get("gpus") or 0)
    share = int(resources.get("gpuShare") or 0)
    if gpus and share:
        raise InvalidInput(f"{where}.resources: gpus and gpuShare are mutually exclusive")
    accelerators = []
    for i, a in enumerate(spec.get("accelerators") or ()):
        if bool(a.get("gpuModel")) == bool(a.get("acceleratorClass")):
            raise InvalidInput(f"{where}.accelerators[{i}]: set exactly one of gpuModel, acceleratorClass")
        accelerators.append(Accelerator(a.get("gpuModel") or "", a.get("acceleratorClass") or ""))
    spot = spec.get("spot") or {}
    if (spot.get("policy") or "Never") not in ("Never", "Allowed", "Preferred"):
        raise InvalidInput(f"{where}.spot.policy must be Never, Allowed or Preferred, got {spot.get('policy')!r}")
    priority = spec.get("priority")
    return PlacementSpec(
        workload_kind=str(ref.get("kind", "")),
        workload_name=str(ref.get("name", "")),
        replicas=int(spec["replicas"]),
        gpus=gpus,
        gpu_share_milli=share,
        gpu_memory_mib=mebibytes(resources.get("gpuMemory"), f"{where}.resources.gpuMemory"),
        cpu_milli=cpu_milli(resources.get("cpu"), f"{where}.resources.cpu"),
        memory_mib=mebibytes(resources.get("memory"), f"{where}.resources.memory"),
        nodes_per_replica=int(resources.get("nodesPerReplica") or 1),
        accelerators=tuple(accelerators),
        min_gpu_memory_mib=mebibytes(spec.get("minGpuMemory"), f"{where}.minGpuMemory"),
        priority_class_name=str(spec.get("priorityClassName") or ""),
        priority=int(priority) if priority is not None else None,
        spot_policy=str(spot.get("policy") or "Never"),
        min_on_demand=int(spot.get("minOnDemandReplicas") or 0),
        model_label=model_label(spec.get("model") or {}, namespace),
        model_policy=str((spec.get("model") or {}).get("policy") or "Preferred"),
        template=json.dumps(spec.get("template") or {}, sort_keys=True, default=str),
    )


def _plain(value: Any) -> Any:
    """kopf bodies are read-only mappings; JSON needs plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def placement_view(body: Body) -> PlacementView:
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace", "")
    raw_spec = _plain(body.get("spec") or {})
    status = _plain(body.get("status") or {})
    try:
        spec: PlacementSpec | None = placement_spec(raw_spec, namespace)
        error = ""
    except (InvalidInput, ValueError, TypeError, KeyError) as exc:
        spec, error = None, str(exc)
    conditions = tuple(Condition(c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""),
                                 c.get("lastTransitionTime", "")) for c in status.get("conditions") or ())
    return PlacementView(
        namespace=namespace,
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        created=meta.get("creationTimestamp") or "",
        spec=spec,
        error=error,
        labels=labels_of(meta),
        conditions=conditions,
        status=json.dumps(status, sort_keys=True),
        spec_json=json.dumps(raw_spec, sort_keys=True),
    )


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    selector: Labels
    on_demand_micro_usd: int  # per GPU-hour
    spot_micro_usd: int


@dataclass(frozen=True, slots=True)
class PolicyView:
    stranded_weight: int = 1
    cost_weight: int = 1
    spread_weight: int = 1
    pools: tuple[Pool, ...] = ()
    moves_per_hour: int = 10
    max_unavailable_per_workload: int = 1
    cool_down_s: int = 300
    error: str = ""


def policy_view(body: Body) -> PolicyView:
    spec = body.get("spec") or {}
    objective = spec.get("objective") or {}
    budget = spec.get("rescheduling") or {}
    try:
        pools = []
        for i, p in enumerate(spec.get("pools") or ()):
            where = f"spec.pools[{i}]"
            selector = ((p.get("nodeSelector") or {}).get("matchLabels") or {})
            on_demand = micro_usd(p.get("onDemandPricePerGpuHour"), f"{where}.onDemandPricePerGpuHour")
            spot = p.get("spotPricePerGpuHour")
            pools.append(Pool(str(p.get("name") or f"pool-{i}"), tuple(sorted(selector.items())), on_demand,
                              micro_usd(spot, f"{where}.spotPricePerGpuHour") if spot is not None else on_demand))
        return PolicyView(
            stranded_weight=int(objective.get("strandedGpusWeight", 1)),
            cost_weight=int(objective.get("costWeight", 1)),
            spread_weight=int(objective.get("spreadWeight", 1)),
            pools=tuple(pools),
            moves_per_hour=int(budget.get("movesPerHour", 10)),
            max_unavailable_per_workload=int(budget.get("maxUnavailablePerWorkload", 1)),
            cool_down_s=int(budget.get("coolDownSeconds", 300)),
        )
    except InvalidInput as exc:
        return PolicyView(error=str(exc))


# ----------------------------------------------------------------------------- others


@dataclass(frozen=True, slots=True)
class PdbView:
    namespace: str
    name: str
    match_labels: Labels
    match_expressions: str  # JSON list
    disruptions_allowed: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: PodView) -> bool:
        if pod.namespace != self.namespace:
            return False
        return selector_matches(dict(pod.labels), dict(self.match_labels), json.loads(self.match_expressions))


def selector_matches(labels: Mapping[str, str], match_labels: Mapping[str, str],
                     expressions: Sequence[Mapping[str, Any]]) -> bool:
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for e in expressions:
        key, op, values = e.get("key", ""), e.get("operator", ""), list(e.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pdb_view(body: Body) -> PdbView:
    meta = body.get("metadata") or {}
    selector = (body.get("spec") or {}).get("selector") or {}
    return PdbView(meta.get("namespace", ""), meta["name"], tuple(sorted((selector.get("matchLabels") or {}).items())),
                   json.dumps(_plain(selector.get("matchExpressions") or [])),
                   int((body.get("status") or {}).get("disruptionsAllowed") or 0))


@dataclass(frozen=True, slots=True)
class AcceleratorClassView:
    name: str
    node_selector: Labels
    gpu_memory_mib: int = 0
    on_demand_micro_usd: int = 0  # per accelerator-hour, from spec.cost.perHour
    spot_micro_usd: int = 0


def accelerator_class_view(body: Body) -> AcceleratorClassView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    selector = ((spec.get("discovery") or {}).get("nodeSelector") or {})
    memory = (spec.get("capabilities") or {}).get("memoryGB")
    cost = spec.get("cost") or {}
    try:
        if memory in (None, ""):
            mib = 0
        elif str(memory).replace(".", "", 1).isdigit():  # a bare number: GB, as the field's name says
            mib = int(Decimal(str(memory)) * 1024)
        else:  # a quantity with a unit ("80Gi"): bytes
            mib = mebibytes(memory, "spec.capabilities.memoryGB")
        per_hour = micro_usd(_quantity(cost["perHour"], "perHour") if cost.get("perHour") else 0, "spec.cost.perHour")
        spot = micro_usd(_quantity(cost["spotPerHour"], "spotPerHour") if cost.get("spotPerHour") else 0,
                         "spec.cost.spotPerHour")
    except InvalidInput:
        mib, per_hour, spot = 0, 0, 0
    return AcceleratorClassView(meta["name"], tuple(sorted(selector.items())), mib, per_hour, spot or per_hour)


@dataclass(frozen=True, slots=True)
class InferenceServiceView:
    namespace: str
    name: str
    uid: str
    spec: str  # JSON


def inference_service_view(body: Body) -> InferenceServiceView:
    meta = body.get("metadata") or {}
    return InferenceServiceView(meta.get("namespace", ""), meta["name"], meta.get("uid", ""),
                                json.dumps(_plain(body.get("spec") or {}), sort_keys=True))


@dataclass(frozen=True)
class Snapshot:
    """Everything one reconcile cycle reads, taken at one instant from the watches."""

    nodes: tuple[NodeView, ...] = ()
    pods: tuple[PodView, ...] = ()
    placements: tuple[PlacementView, ...] = ()
    policy: PolicyView = field(default_factory=PolicyView)
    priority_classes: Mapping[str, int] = field(default_factory=dict)
    pdbs: tuple[PdbView, ...] = ()
    inference_services: tuple[InferenceServiceView, ...] = ()
    accelerator_classes: Mapping[str, AcceleratorClassView] = field(default_factory=dict)
    workload_templates: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    """(kind, namespace, name) -> pod template JSON of Deployments, StatefulSets and
    LeaderWorkerSets whose template names the OME scheduler (for placements without a template)."""


plain = _plain
