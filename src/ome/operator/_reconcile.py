"""Desired vs observed -> decisions. Pure: a Snapshot in, a Plan (writes, statuses, events) out.

One cycle runs these passes, in order:
  1. derive   OME InferenceServices -> the ModelPlacements to create or update
  2. load     nodes -> ClusterArrays; every pod that holds resources is allocated where it
              sits: bound pods on their node, then reservations (planned, not yet bound) by
              priority. Pods being deleted hold nothing: they are on their way out.
  3. repair   a reservation that no longer fits its node finishes the preemption that was
              interrupted (minimal victims on that node) or is dropped (pod deleted, re-planned)
  4. place    placements by (priority desc, age, name): scale down, drop lost pods, plan every
              unplaced replica (ordered preference, spot rule, prices; a gang whole or not at
              all), preempt lower priorities when it does not fit, release complete gangs
  5. report   status per placement (per-replica placement, placed/desired, hourly cost,
              Placed/Degraded/Unschedulable) and one event per decision kind and placement

Replica states: Running (every member bound), Reserved (every member planned, some unbound),
Pending (not placed), Terminating (a member is being deleted), Preempted (evicted this cycle).
The writes are staged (see Plan) so that a crash between any two leaves the cluster in a state
the next cycle completes without evicting anything more.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ome.domain import MILLI, ON_DEMAND, Assignment, Code, InvariantViolation, PodRequest, Status
from ome.solver import (
    ClusterArrays,
    Infeasible,
    PlanContext,
    PoolPrice,
    Preemption,
    ReplicaPlan,
    ReplicaRequest,
    Tier,
    VictimUnit,
    Weights,
    apply_plan,
    capacity_rule,
    plan_replica,
    select_victims,
)

from . import _names as n
from ._model import Condition, PlacementSpec, PlacementView, PodView, Snapshot, cpu_milli, mebibytes, plain, usd
from ._ome import derived_placements
from ._pods import eligible_mask, plan_annotations, pod_manifest, pod_name, release_patch, reserve_patch

MAX_EVENT_ITEMS = 8


# ----------------------------------------------------------------------------- decisions as data


@dataclass(frozen=True, slots=True)
class CreatePod:
    namespace: str
    name: str
    manifest: Mapping[str, Any] = field(compare=False, repr=False)
    planned_node: str = ""
    gated: bool = True


@dataclass(frozen=True, slots=True)
class PatchPod:
    namespace: str
    name: str
    patch: Mapping[str, Any] = field(compare=False, repr=False)
    planned_node: str = ""  # the reservation this patch writes ("" = leaves it)
    release: bool = False  # removes the operator's scheduling gate


@dataclass(frozen=True, slots=True)
class EvictPod:
    namespace: str
    name: str
    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeletePod:
    namespace: str
    name: str
    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class ApplyPlacement:
    namespace: str
    name: str
    body: Mapping[str, Any] = field(compare=False, repr=False)
    exists: bool = False


@dataclass(frozen=True, slots=True)
class WriteStatus:
    namespace: str
    name: str
    status: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Event:
    namespace: str
    name: str
    uid: str
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PlacementSummary:
    namespace: str
    name: str
    desired: int
    placed: int
    running: int
    cost_micro_usd_per_hour: int


@dataclass(frozen=True)
class Plan:
    """The writes of one cycle, in the order they must be applied (each stage after the last).

    placements  ModelPlacements derived from InferenceServices
    reserve     pod creations and reservations (a single-pod replica is released in the same write)
    evict       evictions of preemption victims (only after the preemptor's reservation is durable)
    release     gate removals of complete gangs, deletions (scale-down, lost or stale pods)
    statuses, events  reporting
    """

    placements: tuple[ApplyPlacement, ...] = ()
    reserve: tuple[CreatePod | PatchPod, ...] = ()
    evict: tuple[EvictPod, ...] = ()
    release: tuple[PatchPod | DeletePod, ...] = ()
    statuses: tuple[WriteStatus, ...] = ()
    events: tuple[Event, ...] = ()
    summaries: tuple[PlacementSummary, ...] = ()
    unschedulable_replicas: int = 0

    @property
    def pod_writes(self) -> int:
        return len(self.reserve) + len(self.evict) + len(self.release)

    @property
    def empty(self) -> bool:
        return not (self.placements or self.pod_writes or self.statuses)


# ----------------------------------------------------------------------------- per-placement state


@dataclass
class _Replica:
    state: str
    members: list[tuple[str, str, tuple[int, ...], PodRequest]] = field(default_factory=list)  # pod, node, gpus, req
    tier: str = ""


@dataclass
class _Work:
    view: PlacementView
    spec: PlacementSpec
    priority: int
    template: dict[str, Any]
    pods: list[PodView]
    replicas: dict[int, _Replica] = field(default_factory=dict)
    problems: list[tuple[int, Status]] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    placed_now: list[str] = field(default_factory=list)
    released_now: list[int] = field(default_factory=list)
    preempting: list[str] = field(default_factory=list)
    scaled_down: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.view.namespace}/{self.view.name}"


def _contains(current: Any, desired: Any) -> bool:
    """`desired` is a subset of `current`: what the API server added (defaults) does not count."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and _contains(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(current, list) and len(current) == len(desired)
                and all(_contains(c, d) for c, d in zip(current, desired, strict=True)))
    return bool(current == desired)


def _unit_key(namespace: str, name: str, replica: int) -> str:
    return f"{namespace}/{name}#{replica}"


def _priority(spec: PlacementSpec, classes: Mapping[str, int]) -> int:
    if spec.priority is not None:
        return spec.priority
    return classes.get(spec.priority_class_name, 0)


def _template_requests(template: Mapping[str, Any]) -> tuple[int, int]:
    containers = (template.get("spec") or {}).get("containers") or ()
    cpu = mem = 0
    for c in containers:
        requests = ((c.get("resources") or {}).get("requests") or {})
        cpu += cpu_milli(requests.get("cpu"))
        mem += mebibytes(requests.get("memory"))
    return cpu, mem


class _Cycle:
    def __init__(self, snap: Snapshot, scheduler_name: str, now: str) -> None:
        self.snap = snap
        self.scheduler_name = scheduler_name
        self.now = now
        self.nodes = tuple(v.node for v in snap.nodes)
        self.node_index = {node.name: i for i, node in enumerate(self.nodes)}
        self.cluster = ClusterArrays(self.nodes)
        policy = snap.policy
        pools = [PoolPrice(p.name, p.selector, p.on_demand_micro_usd, p.spot_micro_usd) for p in policy.pools]
        pools += [PoolPrice(f"class/{c.name}", c.node_selector, c.on_demand_micro_usd, c.spot_micro_usd)
                  for c in snap.accelerator_classes.values() if c.on_demand_micro_usd and c.node_selector]
        self.ctx = PlanContext.build(self.nodes, pools, Weights(policy.stranded_weight, policy.cost_weight,
                                                                 policy.spread_weight))
        self.pools = pools
        self.loaded: dict[tuple[str, str], Assignment] = {}
        self.units: dict[str, VictimUnit] = {}
        self.budgets = {p.key: p.disruptions_allowed for p in snap.pdbs}
        self.placement_actions: list[ApplyPlacement] = []
        self.reserve: list[CreatePod | PatchPod] = []
        self.evict: list[EvictPod] = []
        self.release: list[PatchPod | DeletePod] = []
        self.events: list[Event] = []
        self.evicting: set[tuple[str, str]] = set()
        self.works: dict[tuple[str, str], _Work] = {}
        self._eligible: dict[str, Any] = {}

    # ------------------------------------------------------------------ pass 1: derive

    def derive(self) -> None:
        existing = {p.key: p for p in self.snap.placements}
        for isvc in self.snap.inference_services:
            for body in derived_placements(isvc):
                key = (body["metadata"]["namespace"], body["metadata"]["name"])
                current = existing.get(key)
                if current is None:
                    self.placement_actions.append(ApplyPlacement(key[0], key[1], body, exists=False))
                elif not _contains(json.loads(current.spec_json), body["spec"]):
                    self.placement_actions.append(ApplyPlacement(key[0], key[1], body, exists=True))

    # ------------------------------------------------------------------ pass 2: load

    def _request_of(self, pod: PodView, priority: int, workload: str = "") -> PodRequest | None:
        try:
            return PodRequest(f"{pod.namespace}/{pod.name}", pod.cpu_milli, pod.memory_mib, pod.num_gpu,
                              pod.gpu_milli, priority=priority, workload=workload)
        except ValueError:
            return None

    def _allocate(self, pod: PodView, node_name: str, priority: int, workload: str) -> bool:
        node = self.node_index.get(node_name)
        req = self._request_of(pod, priority, workload)
        if node is None or req is None:
            return False
        gpus = pod.gpu_index if len(pod.gpu_index) == req.num_gpu else ()
        if not gpus and req.num_gpu:
            gpus = tuple(self.cluster.usable_gpus(req, node)[: req.num_gpu])
        try:
            self.loaded[pod.key] = self.cluster.allocate(req, node, gpus)
        except InvariantViolation:
            return False
        return True

    def load(self) -> None:
        classes = self.snap.priority_classes
        for view in self.snap.placements:
            if view.spec is None:
                continue
            template = json.loads(view.spec.template) if view.spec.template != "{}" else {}
            if not template:
                ref = (view.spec.workload_kind, view.namespace, view.spec.workload_name)
                template = json.loads(self.snap.workload_templates.get(ref, "{}"))
            self.works[view.key] = _Work(view, view.spec, _priority(view.spec, classes), template, [])
        others: list[PodView] = []
        for pod in self.snap.pods:
            work = self.works.get((pod.namespace, pod.placement)) if pod.placement else None
            if work is not None and pod.owner_uid in ("", work.view.uid):
                work.pods.append(pod)
            else:
                others.append(pod)
        for pod in others:
            if pod.node_name and pod.holds_resources:
                self._allocate(pod, pod.node_name, 0, "")
        for work in self.works.values():
            for pod in work.pods:
                if pod.node_name and pod.holds_resources:
                    self._allocate(pod, pod.node_name, work.priority, work.key)
        self.conflicts: list[tuple[_Work, PodView]] = []
        for work in sorted(self.works.values(), key=self._order):
            for pod in work.pods:
                if not pod.node_name and pod.planned_node and pod.holds_resources:
                    if not self._allocate(pod, pod.planned_node, work.priority, work.key):
                        self.conflicts.append((work, pod))
        for work in self.works.values():
            by_replica: dict[int, list[PodView]] = defaultdict(list)
            for pod in work.pods:
                if pod.key in self.loaded:
                    by_replica[pod.replica].append(pod)
            for replica, pods in by_replica.items():
                self._add_unit(work, replica, pods)

    def _add_unit(self, work: _Work, replica: int, pods: Sequence[PodView]) -> None:
        pdbs: Counter[str] = Counter()
        for pod in pods:
            for pdb in self.snap.pdbs:
                if pdb.selects(pod):
                    pdbs[pdb.key] += 1
        key = _unit_key(work.view.namespace, work.view.name, replica)
        self.units[key] = VictimUnit(key, work.priority, tuple(self.loaded[p.key] for p in pods),
                                     tuple(sorted(pdbs.items())))

    @staticmethod
    def _order(work: _Work) -> tuple[int, str, str, str]:
        return (-work.priority, work.view.created, work.view.namespace, work.view.name)

    # ------------------------------------------------------------------ pass 3: repair

    def repair(self) -> None:
        for work, pod in self.conflicts:
            node = self.node_index.get(pod.planned_node)
            req = self._request_of(pod, work.priority, work.key)
            if node is None or req is None:
                continue  # pass 4 drops reservations on vanished nodes
            eligible = np.zeros(len(self.nodes), np.bool_)
            eligible[node] = True
            request = ReplicaRequest(_unit_key(work.view.namespace, work.view.name, pod.replica), (req,))
            units = [u for u in self.units.values() if u.priority < work.priority]
            decision = select_victims(self.cluster, request, units, self.ctx, eligible, self.budgets)
            if isinstance(decision, Preemption):
                self._evict_units(work, decision.victims, pod.replica)
                member = decision.plan.members[0]
                self.loaded[pod.key] = self.cluster.allocate(member.pod, member.node, member.gpus)
                if member.gpus != pod.gpu_index:
                    self.reserve.append(PatchPod(pod.namespace, pod.name, {"metadata": {"annotations": {
                        n.ANN_GPU_INDEX: ",".join(map(str, member.gpus))}}}, planned_node=pod.planned_node))
                existing = self.units.get(request.key)
                self.units[request.key] = VictimUnit(request.key, work.priority, (
                    *(existing.assignments if existing else ()), self.loaded[pod.key]))
            else:
                self.release.append(DeletePod(pod.namespace, pod.name, pod.uid,
                                              f"reservation on {pod.planned_node} no longer fits"))
                work.lost.append(f"replica {pod.replica}: reservation on {pod.planned_node} no longer fits")
                self.evicting.add(pod.key)

    def _evict_units(self, preemptor: _Work, victims: Sequence[VictimUnit], replica: int) -> None:
        for unit in victims:
            for a in unit.assignments:
                self.cluster.release(a)
            self.units.pop(unit.key, None)
            for pdb, count in unit.pdbs:
                self.budgets[pdb] = self.budgets.get(pdb, 0) - count
            ns_name, _, victim_replica = unit.key.rpartition("#")
            ns, _, name = ns_name.partition("/")
            victim = self.works.get((ns, name))
            gpus = unit.gpu_milli / MILLI
            nodes = sorted({self.nodes[a.node].name for a in unit.assignments})
            reason = (f"preempted by {preemptor.key} replica {replica} (priority {preemptor.priority}); "
                      f"frees {gpus:g} GPU(s) on {', '.join(nodes)}")
            preemptor.preempting.append(f"{unit.key} (priority {unit.priority}, {gpus:g} GPU(s) on {', '.join(nodes)})")
            if victim is None:
                continue
            victim.preempted.append(f"replica {victim_replica} {reason}")
            for pod in victim.pods:
                if str(pod.replica) == victim_replica and not pod.terminating and pod.key not in self.evicting:
                    self.evict.append(EvictPod(pod.namespace, pod.name, pod.uid, reason))
                    self.evicting.add(pod.key)
                    self.loaded.pop(pod.key, None)

    # ------------------------------------------------------------------ pass 4: place

    def place(self) -> None:
        for work in sorted(self.works.values(), key=self._order):
            self._place(work)

    def _eligible_for(self, work: _Work) -> Any:
        key = json.dumps(work.template.get("spec") or {}, sort_keys=True, default=str)
        mask = self._eligible.get(key)
        if mask is None:
            mask = self._eligible[key] = eligible_mask(self.snap.nodes, work.template)
        return mask

    def _drop(self, work: _Work, pod: PodView, reason: str) -> None:
        self.release.append(DeletePod(pod.namespace, pod.name, pod.uid, reason))
        self.evicting.add(pod.key)
        assignment = self.loaded.pop(pod.key, None)
        if assignment is not None:
            self.cluster.release(assignment)
            unit = self.units.get(_unit_key(work.view.namespace, work.view.name, pod.replica))
            if unit is not None:
                rest = tuple(a for a in unit.assignments if a is not assignment)
                self.units[unit.key] = VictimUnit(unit.key, unit.priority, rest, unit.pdbs)

    def _place(self, work: _Work) -> None:
        spec, k = work.spec, work.spec.nodes_per_replica
        for pod in work.pods:
            if pod.terminating or pod.key in self.evicting:
                continue
            if not 0 <= pod.replica < spec.replicas or not 0 <= pod.member < k:
                self._drop(work, pod, "scaled down")
                work.scaled_down.append(pod.name)
            elif pod.finished:
                self._drop(work, pod, f"pod {pod.phase}")
                work.lost.append(f"replica {pod.replica}: pod {pod.name} {pod.phase}")
            elif pod.node_name and pod.node_name not in self.node_index:
                self._drop(work, pod, f"node {pod.node_name} is gone")
                work.lost.append(f"replica {pod.replica}: node {pod.node_name} is gone")
            elif not pod.node_name and pod.planned_node and pod.planned_node not in self.node_index:
                self._drop(work, pod, f"planned node {pod.planned_node} is gone")
                work.lost.append(f"replica {pod.replica}: planned node {pod.planned_node} is gone")
        slots: dict[int, dict[int, PodView]] = defaultdict(dict)
        for pod in work.pods:
            if 0 <= pod.replica < spec.replicas and 0 <= pod.member < k:
                slots[pod.replica][pod.member] = pod
        peers = [self.loaded[p.key].node for p in work.pods if p.key in self.loaded]
        on_demand = {p.replica for p in work.pods
                     if p.key in self.loaded and self.nodes[self.loaded[p.key].node].capacity_type == ON_DEMAND}
        for r in range(spec.replicas):
            members = slots.get(r, {})
            if any(p.terminating or p.key in self.evicting for p in members.values()):
                if k > 1:  # never a partial gang running: the rest of the gang goes too
                    for p in members.values():
                        if not p.terminating and p.key not in self.evicting:
                            self._drop(work, p, "gang incomplete: another member is gone")
                state = "Preempted" if any(m.startswith(f"replica {r} ") for m in work.preempted) else "Terminating"
                work.replicas[r] = _Replica(state)
                continue
            loaded = {m: p for m, p in members.items() if p.key in self.loaded}
            if len(members) == k and len(loaded) == k:
                self._placed(work, r, members)
                continue
            if k > 1 and any(not p.gated for p in members.values()):
                for p in members.values():  # never a partial gang running: drop it whole, re-plan
                    self._drop(work, p, "gang incomplete: member lost")
                work.lost.append(f"replica {r}: gang member lost, gang restarted")
                work.replicas[r] = _Replica("Terminating")
                continue
            for p in loaded.values():  # a partial reservation of a gang holds nothing
                self.cluster.release(self.loaded.pop(p.key))
            self.units.pop(_unit_key(work.view.namespace, work.view.name, r), None)
            rule = capacity_rule(spec.spot_policy, spec.min_on_demand, len(on_demand))
            request = self._request(work, r, rule, tuple(peers))
            decision = plan_replica(self.cluster, request, self.ctx, self._eligible_for(work))
            victims: tuple[VictimUnit, ...] = ()
            if isinstance(decision, Infeasible) and decision.status.code is Code.UNSCHEDULABLE:
                lower = [u for u in self.units.values() if u.priority < work.priority]
                if lower:
                    pre = select_victims(self.cluster, request, lower, self.ctx, self._eligible_for(work), self.budgets)
                    if isinstance(pre, Preemption):
                        decision, victims = pre.plan, pre.victims
            if isinstance(decision, ReplicaPlan):
                if victims:
                    self._evict_units(work, victims, r)
                self._reserve(work, r, members, decision)
                peers += [m.node for m in decision.members]
                if self.nodes[decision.members[0].node].capacity_type == ON_DEMAND:
                    on_demand.add(r)
            else:
                work.problems.append((r, decision.status))
                work.replicas[r] = _Replica("Pending")
                if not (spec.gpu_memory_mib and not spec.gpus and not spec.gpu_share_milli):
                    for m in range(k):
                        if m not in members:
                            self._create(work, r, m, None, spec.gpu_share_milli)

    def _request(self, work: _Work, replica: int, rule: Any, peers: tuple[int, ...]) -> ReplicaRequest:
        spec = work.spec
        cpu, mem = spec.cpu_milli, spec.memory_mib
        if not cpu or not mem:
            t_cpu, t_mem = _template_requests(work.template)
            cpu, mem = cpu or t_cpu, mem or t_mem
        memory_share = bool(spec.gpu_memory_mib and not spec.gpus and not spec.gpu_share_milli)
        if spec.gpus:
            num, milli = spec.gpus, MILLI
        elif spec.gpu_share_milli or memory_share:
            num, milli = 1, spec.gpu_share_milli or 1
        else:
            num, milli = 0, 0
        min_memory = max(spec.min_gpu_memory_mib, 0 if memory_share else spec.gpu_memory_mib)
        key = _unit_key(work.view.namespace, work.view.name, replica)
        members = tuple(PodRequest(f"{key}/{m}", cpu, mem, num, milli, min_gpu_memory_mib=min_memory,
                                   priority=work.priority, workload=work.key, gang=key if spec.nodes_per_replica > 1 else "")
                        for m in range(spec.nodes_per_replica))
        tiers = []
        for a in spec.accelerators:
            if a.gpu_model:
                tiers.append(Tier(a.gpu_model, gpu_models=frozenset({a.gpu_model})))
            else:
                cls = self.snap.accelerator_classes.get(a.accelerator_class)
                selector = cls.node_selector if cls else ((n.GROUP + "/missing-accelerator-class", a.accelerator_class),)
                tiers.append(Tier(a.name if cls else f"{a.name} (AcceleratorClass not found)", node_selector=selector))
        required = (spec.model_label,) if spec.model_label and spec.model_policy == "Required" else ()
        preferred = (spec.model_label,) if spec.model_label and spec.model_policy != "Required" else ()
        return ReplicaRequest(key, members, tuple(tiers), required, preferred, rule, peers,
                              spec.gpu_memory_mib if memory_share else 0)

    def _create(self, work: _Work, replica: int, member: int, plan: dict[str, str] | None, gpu_milli: int,
                gated: bool = True) -> None:
        manifest = pod_manifest(work.view, work.spec, work.template, replica, member,
                                scheduler_name=self.scheduler_name,
                                gated=gated, gpu_milli=gpu_milli, plan=plan)
        self.reserve.append(CreatePod(work.view.namespace, manifest["metadata"]["name"], manifest,
                                      planned_node=plan[n.ANN_PLANNED_NODE] if plan else "", gated=gated))

    def _reserve(self, work: _Work, replica: int, members: Mapping[int, PodView], plan: ReplicaPlan) -> None:
        k = work.spec.nodes_per_replica
        assignments = apply_plan(self.cluster, plan)
        gang = f"{work.view.namespace}/{work.view.name}/{replica}"
        info = _Replica("Reserved", tier=plan.tier)
        for member, assignment in zip(plan.members, assignments, strict=True):
            ann = plan_annotations(member.node_name, member.gpus, member.pod.gpu_milli, plan.tier, gang, k)
            pod = members.get(member.member)
            name = pod_name(work.view.name, replica, member.member, k)
            if pod is None:
                self._create(work, replica, member.member, ann, 0 if work.spec.gpus else member.pod.gpu_milli,
                             gated=k > 1)
            elif pod.planned_node and pod.planned_node != member.node_name:
                self._drop(work, pod, f"re-planned from {pod.planned_node} to {member.node_name}")
            elif pod.planned_node:
                if pod.gpu_index != member.gpus:
                    self.reserve.append(PatchPod(pod.namespace, pod.name, {"metadata": {"annotations": ann}},
                                                 planned_node=member.node_name))
            else:
                self.reserve.append(PatchPod(pod.namespace, pod.name, reserve_patch(pod, ann, release=k == 1),
                                             planned_node=member.node_name, release=k == 1))
            self.loaded[(work.view.namespace, name)] = assignment
            info.members.append((name, member.node_name, member.gpus, member.pod))
        key = _unit_key(work.view.namespace, work.view.name, replica)
        self.units[key] = VictimUnit(key, work.priority, tuple(assignments))
        work.replicas[replica] = info
        nodes = ",".join(f"{m.node_name}[{','.join(map(str, m.gpus))}]" for m in plan.members)
        work.placed_now.append(f"{replica}->{nodes} ({plan.tier}, ${usd(plan.cost_micro_usd_per_hour)}/h)")

    def _placed(self, work: _Work, replica: int, members: Mapping[int, PodView]) -> None:
        pods = [members[m] for m in sorted(members)]
        gated = [p for p in pods if p.gated]
        if gated:
            for p in gated:
                self.release.append(PatchPod(p.namespace, p.name, release_patch(p), planned_node=p.planned_node,
                                             release=True))
            work.released_now.append(replica)
        running = all(p.node_name and p.phase == "Running" for p in pods)
        info = _Replica("Running" if running else "Reserved")
        for p in pods:
            a = self.loaded[p.key]
            info.members.append((p.name, self.nodes[a.node].name, a.gpus, a.pod))
        work.replicas[replica] = info

    # ------------------------------------------------------------------ pass 5: report

    def report(self) -> Plan:
        statuses: list[WriteStatus] = []
        summaries: list[PlacementSummary] = []
        unschedulable = 0
        for view in self.snap.placements:
            work = self.works.get(view.key)
            if work is None:
                status = self._invalid_status(view)
                summaries.append(PlacementSummary(view.namespace, view.name, 0, 0, 0, 0))
            else:
                status, summary = self._status(work)
                summaries.append(summary)
                unschedulable += len(work.problems)
                self._events(work)
            if json.dumps(status, sort_keys=True) != view.status:
                statuses.append(WriteStatus(view.namespace, view.name, status))
        return Plan(tuple(self.placement_actions), tuple(self.reserve), tuple(self.evict), tuple(self.release),
                    tuple(statuses), tuple(self.events), tuple(summaries), unschedulable)

    def _condition(self, view: PlacementView, kind: str, status: bool, reason: str, message: str) -> Condition:
        prev = view.condition(kind)
        text = "True" if status else "False"
        since = prev.last_transition_time if prev is not None and prev.status == text else self.now
        return Condition(kind, text, reason, message, since)

    def _invalid_status(self, view: PlacementView) -> dict[str, Any]:
        conditions = [
            self._condition(view, n.PLACED, False, "InvalidSpec", view.error),
            self._condition(view, n.DEGRADED, False, "InvalidSpec", ""),
            self._condition(view, n.UNSCHEDULABLE, True, "InvalidSpec", view.error),
        ]
        return {"observedGeneration": view.generation, "desiredReplicas": 0, "placedReplicas": 0,
                "runningReplicas": 0, "hourlyCost": "0.00", "hourlyCostMicroUSD": 0, "replicas": [],
                "conditions": [c.as_dict(view.generation) for c in conditions]}

    def _pool_of(self, node: int) -> str:
        spec_node = self.nodes[node]
        pool = next((p.name for p in self.pools if p.matches(spec_node)), "")
        return pool or spec_node.pool

    def _status(self, work: _Work) -> tuple[dict[str, Any], PlacementSummary]:
        view, spec = work.view, work.spec
        replicas = []
        total = placed = running = 0
        for r in range(spec.replicas):
            info = work.replicas.get(r, _Replica("Pending"))
            entry: dict[str, Any] = {"index": r, "state": info.state}
            if info.members:
                first = self.node_index[info.members[0][1]]
                cost = sum(self.ctx.pod_price(req, self.node_index[node]) for _, node, _, req in info.members)
                total += cost
                placed += 1
                running += info.state == "Running"
                entry |= {
                    "accelerator": info.tier or self.nodes[first].gpu_model,
                    "pool": self._pool_of(first),
                    "capacityType": self.nodes[first].capacity_type,
                    "hourlyCost": usd(cost),
                    "pods": [{"name": pod, "node": node, "gpus": list(gpus)} for pod, node, gpus, _ in info.members],
                }
            replicas.append(entry)
        desired = spec.replicas
        prev_placed = view.condition(n.PLACED)
        prev_degraded = view.condition(n.DEGRADED)
        complete = placed == desired
        placed_c = self._condition(view, n.PLACED, complete, "AllReplicasPlaced" if complete else "ReplicasPending",
                                   f"{placed}/{desired} replicas placed, {running} running")
        if work.preempted and not complete:
            degraded = self._condition(view, n.DEGRADED, True, "Preempted", "; ".join(work.preempted))
        elif work.lost and not complete:
            degraded = self._condition(view, n.DEGRADED, True, "ReplicaLost", "; ".join(work.lost))
        elif not complete and prev_degraded is not None and prev_degraded.status == "True":
            degraded = prev_degraded
        elif not complete and prev_placed is not None and prev_placed.status == "True":
            degraded = self._condition(view, n.DEGRADED, True, "ReplicaLost",
                                       f"{desired - placed} replica(s) no longer placed")
        else:
            degraded = self._condition(view, n.DEGRADED, False, "AsDesired" if complete else "NotYetPlaced", "")
        if work.problems:
            first_status = work.problems[0][1]
            reason = ("NoSuitableNode" if first_status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
                      else "GangIncomplete" if spec.nodes_per_replica > 1 else "InsufficientCapacity")
            indices = ",".join(str(r) for r, _ in work.problems[:MAX_EVENT_ITEMS])
            more = f" (+{len(work.problems) - MAX_EVENT_ITEMS} more)" if len(work.problems) > MAX_EVENT_ITEMS else ""
            message = f"replica(s) {indices}{more} cannot be placed: {first_status.reasons[0]}"
            unsched = self._condition(view, n.UNSCHEDULABLE, True, reason, message)
        else:
            unsched = self._condition(view, n.UNSCHEDULABLE, False, "Schedulable", "")
        status = {
            "observedGeneration": view.generation,
            "desiredReplicas": desired,
            "placedReplicas": placed,
            "runningReplicas": running,
            "priority": work.priority,
            "hourlyCost": usd(total),
            "hourlyCostMicroUSD": total,
            "replicas": replicas,
            "conditions": [c.as_dict(view.generation) for c in (placed_c, degraded, unsched)],
        }
        return status, PlacementSummary(view.namespace, view.name, desired, placed, running, total)

    def _event(self, work: _Work, kind: str, reason: str, items: Sequence[str], head: str) -> None:
        if not items:
            return
        shown = "; ".join(items[:MAX_EVENT_ITEMS])
        more = f"; and {len(items) - MAX_EVENT_ITEMS} more" if len(items) > MAX_EVENT_ITEMS else ""
        self.events.append(Event(work.view.namespace, work.view.name, work.view.uid, kind, reason,
                                 f"{head}: {shown}{more}"[:1000]))

    def _events(self, work: _Work) -> None:
        self._event(work, "Normal", "Placed", work.placed_now, f"planned {len(work.placed_now)} replica(s)")
        self._event(work, "Normal", "GangReleased", [f"replica {r}" for r in work.released_now],
                    "every member reserved, gates removed together")
        self._event(work, "Normal", "Preempting", work.preempting,
                    f"evicting {len(work.preempting)} lower-priority replica(s)")
        self._event(work, "Warning", "Preempted", work.preempted, "evicted")
        self._event(work, "Warning", "ReplicaLost", work.lost, "lost")
        self._event(work, "Normal", "ScaledDown", work.scaled_down, "deleted")
        prev = work.view.condition(n.UNSCHEDULABLE)
        if work.problems:
            message = work.problems[0][1].reasons[0]
            if prev is None or prev.status != "True" or message not in prev.message:
                self._event(work, "Warning", "Unschedulable", [message], f"{len(work.problems)} replica(s) pending")


def reconcile(snap: Snapshot, scheduler_name: str = n.SCHEDULER_NAME, now: str = "") -> Plan:
    """Run the five passes over one snapshot. Deterministic for a given snapshot and `now`."""
    cycle = _Cycle(snap, scheduler_name, now)
    cycle.derive()
    cycle.load()
    cycle.repair()
    cycle.place()
    return cycle.report()


__all__ = ["ApplyPlacement", "CreatePod", "DeletePod", "EvictPod", "Event", "PatchPod", "Plan", "PlacementSummary",
           "WriteStatus", "plain", "reconcile"]
