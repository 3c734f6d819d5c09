"""Plan model-serving replicas onto nodes: ordered accelerator preference, spot policy, prices, gangs.

Pure: every function reads a ClusterArrays and returns decisions as data; only `apply_plan`
mutates, and only the working copy its caller hands it.

Vocabulary
  replica   one copy of a model server. It is one pod (`members` of length 1) or a gang of
            k pods that must sit on k distinct nodes (multi-node serving), all or nothing.
  tier      one entry of the ordered accelerator preference: a GPU model set and/or a node
            label selector (an OME AcceleratorClass's discovery selector). Tier 0 is the first
            choice; tier i+1 is used only when no tier <= i holds the whole replica.
  eligible  the caller's node mask (taints, the pod template's node selector, cordons).

plan_replica runs these passes:
  1. static   eligible & required labels & capacity rule (spot policy) -> node mask
  2. tiers    for each tier in order, place the members one by one on a scratch copy;
              members of a gang take distinct nodes and prefer the first member's zone.
              Candidates are ranked by the documented key (lower wins):
                (capacity_rank, label_rank, zone_rank, weighted, node_name)
              capacity_rank  0 for spot when spot is preferred, else 0 for every node
              label_rank     0 when the node carries every preferred label (model Ready)
              zone_rank      0 in the gang's zone (members after the first), else 1
              weighted       w_stranded*stranded + w_cost*cost + w_spread*spread, where
                stranded = 100 * GPU milli left free on the node after placing / capacity
                cost     = 100 * node's price per GPU-hour / max price among candidates
                spread   = 100 * replicas of this workload already on the node / peers
  3. verdict  the first tier that holds every member wins; otherwise `explain_replica`
              says why, in words a person can act on.

Units: prices are integer micro-USD per GPU-hour; a pod costs gpu_demand_milli/1000 of that.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from ome.domain import MILLI, SPOT, Assignment, Code, InvalidInput, Node, PodRequest, Status

from ._arrays import ClusterArrays
from ._framework import Infeasible
from .plugins._common import tightest_gpus

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Labels = tuple[tuple[str, str], ...]


class CapacityRule(enum.Enum):
    """Which capacity types one replica may use (resolved from a spot policy per replica)."""

    ON_DEMAND_ONLY = "on-demand-only"
    ANY = "any"
    PREFER_SPOT = "prefer-spot"


@dataclass(frozen=True, slots=True)
class Tier:
    """One accelerator choice. A node matches when both filters hold (an empty filter holds)."""

    name: str
    gpu_models: frozenset[str] = frozenset()  # nvidia.com/gpu.product values; empty = any model
    node_selector: Labels = ()  # every (key, value) must be a node label

    def matches(self, node: Node) -> bool:
        if self.gpu_models and node.gpu_model not in self.gpu_models:
            return False
        labels = dict(node.labels)
        return all(labels.get(k) == v for k, v in self.node_selector)


ANY_TIER = Tier("any")


@dataclass(frozen=True, slots=True)
class PoolPrice:
    """Price per GPU-hour of the nodes whose labels match `selector` (first matching pool wins)."""

    name: str
    selector: Labels
    on_demand_micro_usd: int  # per GPU-hour
    spot_micro_usd: int  # per GPU-hour

    def matches(self, node: Node) -> bool:
        labels = dict(node.labels)
        return all(labels.get(k) == v for k, v in self.selector)


@dataclass(frozen=True, slots=True)
class Weights:
    """Objective weights (non-negative integers); see the module docstring for the terms."""

    stranded: int = 1
    cost: int = 1
    spread: int = 1

    def __post_init__(self) -> None:
        if min(self.stranded, self.cost, self.spread) < 0:
            raise InvalidInput(f"objective weights must be >= 0, got {self}")


def gpu_hour_prices(nodes: Sequence[Node], pools: Sequence[PoolPrice]) -> IntArray:
    """Micro-USD per GPU-hour of every node.

    The first pool whose selector matches the node's labels gives the price (its spot price
    on a spot node); a node no pool matches falls back to its own whole-node price divided by
    its GPU count; CPU-only nodes cost 0.
    """
    out = np.zeros(len(nodes), np.int64)
    for i, node in enumerate(nodes):
        if not node.gpu_count:
            continue
        pool = next((p for p in pools if p.matches(node)), None)
        if pool is not None:
            out[i] = pool.spot_micro_usd if node.capacity_type == SPOT else pool.on_demand_micro_usd
        else:
            out[i] = node.price_micro_usd_per_hour // node.gpu_count
    return out


@dataclass(slots=True)
class PlanContext:
    """Per-cycle scratchpad shared by every plan of one snapshot: prices, zones, mask caches.

    Build it once per snapshot with `PlanContext.build`; it never changes the cluster.
    """

    nodes: tuple[Node, ...]
    weights: Weights
    price: IntArray  # micro-USD per GPU-hour per node
    spot: BoolArray
    zone: tuple[str, ...]
    _label_masks: dict[Labels, BoolArray] = field(default_factory=dict)
    _tier_masks: dict[Tier, BoolArray] = field(default_factory=dict)

    @staticmethod
    def build(nodes: Sequence[Node], pools: Sequence[PoolPrice] = (), weights: Weights | None = None) -> PlanContext:
        nodes = tuple(nodes)
        return PlanContext(
            nodes=nodes,
            weights=weights or Weights(),
            price=gpu_hour_prices(nodes, pools),
            spot=np.array([n.capacity_type == SPOT for n in nodes], np.bool_),
            zone=tuple(n.zone for n in nodes),
        )

    def labels_mask(self, labels: Labels) -> BoolArray:
        """Nodes carrying every (key, value) in `labels`."""
        mask = self._label_masks.get(labels)
        if mask is None:
            mask = np.array([all(dict(n.labels).get(k) == v for k, v in labels) for n in self.nodes], np.bool_)
            self._label_masks[labels] = mask
        return mask

    def tier_mask(self, tier: Tier) -> BoolArray:
        mask = self._tier_masks.get(tier)
        if mask is None:
            mask = np.array([tier.matches(n) for n in self.nodes], np.bool_)
            self._tier_masks[tier] = mask
        return mask

    def capacity_mask(self, rule: CapacityRule) -> BoolArray:
        return ~self.spot if rule is CapacityRule.ON_DEMAND_ONLY else np.ones(len(self.nodes), np.bool_)

    def pod_price(self, pod: PodRequest, node: int) -> int:
        """Micro-USD per hour of `pod` on `node`: its GPU share of the node's GPU-hour price."""
        return int(self.price[node]) * pod.gpu_demand_milli // MILLI


@dataclass(frozen=True, slots=True)
class ReplicaRequest:
    """What one replica needs and where it may go.

    `members` has one PodRequest per node of the replica (length 1 for a single-node replica).
    `gpu_memory_share_mib` > 0 sizes a GPU-sharing member by memory: on a node whose GPUs have
    M MiB the member takes ceil(1000 * share / M) milli of one GPU (and needs M >= share).
    """

    key: str
    members: tuple[PodRequest, ...]
    tiers: tuple[Tier, ...] = ()  # ordered preference; empty = any accepting node
    required_labels: Labels = ()  # e.g. the model-Ready label when the model is required
    preferred_labels: Labels = ()  # e.g. the model-Ready label when it is only preferred
    capacity: CapacityRule = CapacityRule.ANY
    peers: tuple[int, ...] = ()  # node indices already holding replicas of the same workload
    gpu_memory_share_mib: int = 0

    def __post_init__(self) -> None:
        if not self.members:
            raise InvalidInput(f"replica {self.key!r} has no members")
        if self.gpu_memory_share_mib and any(not m.is_sharing and m.num_gpu for m in self.members):
            raise InvalidInput(f"replica {self.key!r}: a memory-sized share needs sharing members (one GPU, milli < 1000)")

    @property
    def priority(self) -> int:
        return max(m.priority for m in self.members)

    @property
    def ordered_tiers(self) -> tuple[Tier, ...]:
        return self.tiers or (ANY_TIER,)


@dataclass(frozen=True, slots=True)
class MemberPlacement:
    member: int  # index into ReplicaRequest.members
    node: int
    node_name: str
    gpus: tuple[int, ...]
    pod: PodRequest  # the member as placed (a memory-sized share carries its per-node milli)


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    key: str
    tier: str
    tier_index: int
    members: tuple[MemberPlacement, ...]
    cost_micro_usd_per_hour: int

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(m.node_name for m in self.members)


# ----------------------------------------------------------------------------- helpers


def member_on(request: ReplicaRequest, member: PodRequest, gpu_memory_mib: int) -> PodRequest | None:
    """The member as it would sit on a node whose GPUs have `gpu_memory_mib` (None: cannot)."""
    if not request.gpu_memory_share_mib or not member.num_gpu:
        return member
    if gpu_memory_mib < request.gpu_memory_share_mib or gpu_memory_mib <= 0:
        return None
    milli = min(MILLI, math.ceil(MILLI * request.gpu_memory_share_mib / gpu_memory_mib))
    return replace(member, gpu_milli=milli) if milli < MILLI else replace(member, gpu_milli=MILLI)


def _variants(cluster: ClusterArrays, request: ReplicaRequest, member: PodRequest) -> list[tuple[PodRequest, BoolArray]]:
    """(pod as placed, nodes it applies to): one pair, or one per GPU-memory size for memory shares."""
    if not request.gpu_memory_share_mib or not member.num_gpu:
        return [(member, np.ones(len(cluster), np.bool_))]
    out = []
    for mem in sorted({int(m) for m in cluster.gpu_memory.tolist()}):
        pod = member_on(request, member, mem)
        if pod is not None:
            out.append((pod, cluster.gpu_memory == mem))
    return out


def static_mask(cluster: ClusterArrays, request: ReplicaRequest, ctx: PlanContext,
                eligible: BoolArray | None = None) -> BoolArray:
    """Pass 1: eligible, required labels and the capacity rule."""
    mask = ctx.capacity_mask(request.capacity)
    if eligible is not None:
        mask = mask & eligible
    if request.required_labels:
        mask = mask & ctx.labels_mask(request.required_labels)
    return mask


def _weighted(cluster: ClusterArrays, pod: PodRequest, nodes: IntArray, ctx: PlanContext,
              peers: Counter[int]) -> IntArray:
    w = ctx.weights
    cap = cluster.gpu_cap[nodes].sum(axis=1)
    left = cluster.gpu_free[nodes].sum(axis=1) - pod.gpu_demand_milli
    stranded = np.where(cap > 0, left * 100 // np.maximum(cap, 1), 0)
    price = ctx.price[nodes]
    top = int(price.max(initial=0))
    cost = price * 100 // top if top > 0 else np.zeros(nodes.size, np.int64)
    total_peers = sum(peers.values())
    if total_peers:
        spread = np.array([peers.get(int(n), 0) for n in nodes], np.int64) * 100 // total_peers
    else:
        spread = np.zeros(nodes.size, np.int64)
    return (w.stranded * stranded + w.cost * cost + w.spread * spread).astype(np.int64)


def rank_keys(cluster: ClusterArrays, request: ReplicaRequest, pod: PodRequest, nodes: IntArray,
              ctx: PlanContext, zone: str | None = None) -> list[tuple[int, int, int, int, str, int]]:
    """Sort keys (capacity_rank, label_rank, zone_rank, weighted, node_name, node) of candidates."""
    if nodes.size == 0:
        return []
    weighted = _weighted(cluster, pod, nodes, ctx, Counter(request.peers))
    preferred = ctx.labels_mask(request.preferred_labels) if request.preferred_labels else None
    keys = []
    for i, n in enumerate(nodes.tolist()):
        capacity_rank = 0 if request.capacity is not CapacityRule.PREFER_SPOT or ctx.spot[n] else 1
        label_rank = 0 if preferred is None or preferred[n] else 1
        zone_rank = 0 if zone is None or ctx.zone[n] == zone else 1
        keys.append((capacity_rank, label_rank, zone_rank, int(weighted[i]), ctx.nodes[n].name, n))
    return keys


def rank_nodes(cluster: ClusterArrays, request: ReplicaRequest, pod: PodRequest, nodes: IntArray,
               ctx: PlanContext, zone: str | None = None) -> list[int]:
    """Candidate node indices, best first, by the key in the module docstring."""
    return [k[-1] for k in sorted(rank_keys(cluster, request, pod, nodes, ctx, zone))]


def choose_gpus(cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
    """GPU indices for `pod` on `node`: the tightest GPU for a share, the first free ones otherwise."""
    return tightest_gpus(cluster, pod, node)


# ----------------------------------------------------------------------------- planning


def plan_replica(cluster: ClusterArrays, request: ReplicaRequest, ctx: PlanContext,
                 eligible: BoolArray | None = None) -> ReplicaPlan | Infeasible:
    """Place one replica (every member, or none) without moving anything. `cluster` is not mutated."""
    base = static_mask(cluster, request, ctx, eligible)
    for tier_index, tier in enumerate(request.ordered_tiers):
        tier_mask = base & ctx.tier_mask(tier)
        if not tier_mask.any():
            continue
        plan = _place_members(cluster, request, ctx, tier, tier_index, tier_mask)
        if plan is not None:
            return plan
    return Infeasible(explain_replica(cluster, request, ctx, eligible))


def _place_members(cluster: ClusterArrays, request: ReplicaRequest, ctx: PlanContext, tier: Tier,
                   tier_index: int, mask: BoolArray) -> ReplicaPlan | None:
    work = cluster.copy() if len(request.members) > 1 else cluster
    used = np.zeros(len(cluster), np.bool_)
    zone: str | None = None
    placed: list[MemberPlacement] = []
    for m, member in enumerate(request.members):
        candidates: list[tuple[tuple[int, int, int, int, str, int], PodRequest]] = []
        for pod, applies in _variants(work, request, member):
            fits = mask & applies & ~used & work.fits_mask(pod)
            candidates += [(key, pod) for key in rank_keys(work, request, pod, np.flatnonzero(fits), ctx, zone)]
        if not candidates:
            return None
        key, pod = min(candidates, key=lambda c: c[0])
        node = key[-1]
        gpus = choose_gpus(work, pod, node)
        placed.append(MemberPlacement(m, node, ctx.nodes[node].name, gpus, pod))
        if len(request.members) > 1:
            work.allocate(pod, node, gpus)
        used[node] = True
        zone = ctx.zone[node] if zone is None else zone
    cost = sum(ctx.pod_price(p.pod, p.node) for p in placed)
    return ReplicaPlan(request.key, tier.name, tier_index, tuple(placed), cost)


def apply_plan(cluster: ClusterArrays, plan: ReplicaPlan) -> list[Assignment]:
    """Allocate every member of `plan` on `cluster` (the caller's working copy)."""
    return [cluster.allocate(m.pod, m.node, m.gpus) for m in plan.members]


def plan_replicas(cluster: ClusterArrays, requests: Iterable[ReplicaRequest], ctx: PlanContext,
                  eligible: BoolArray | None = None) -> list[ReplicaPlan | Infeasible]:
    """Plan requests in the order given, each seeing the ones before it. `cluster` is not mutated."""
    work = cluster.copy()
    out: list[ReplicaPlan | Infeasible] = []
    for request in requests:
        decision = plan_replica(work, request, ctx, eligible)
        if isinstance(decision, ReplicaPlan):
            apply_plan(work, decision)
        out.append(decision)
    return out


def capacity_rule(policy: str, min_on_demand: int, on_demand_placed: int) -> CapacityRule:
    """The rule for the next replica of a placement under its spot policy.

    Never -> on-demand only. Allowed -> any (cost decides). Preferred -> spot first.
    While fewer than `min_on_demand` replicas sit on on-demand nodes, the next one must too.
    """
    if policy not in ("Never", "Allowed", "Preferred"):
        raise InvalidInput(f"spot policy must be Never, Allowed or Preferred, got {policy!r}")
    if policy == "Never" or on_demand_placed < min_on_demand:
        return CapacityRule.ON_DEMAND_ONLY
    return CapacityRule.PREFER_SPOT if policy == "Preferred" else CapacityRule.ANY


# ----------------------------------------------------------------------------- explanations


def _describe(request: ReplicaRequest) -> str:
    m = request.members[0]
    if request.gpu_memory_share_mib:
        gpu = f"a {request.gpu_memory_share_mib}Mi share of one GPU"
    elif m.is_sharing:
        gpu = f"{m.gpu_milli}m of one GPU"
    elif m.num_gpu:
        gpu = f"{m.num_gpu} GPU(s)"
    else:
        gpu = "no GPU"
    where = " > ".join(t.name for t in request.ordered_tiers)
    nodes = f" on each of {len(request.members)} distinct nodes" if len(request.members) > 1 else ""
    return f"needs {gpu}, {m.cpu_milli}m CPU, {m.memory_mib}Mi memory per pod{nodes}; accepts {where}"


def explain_replica(cluster: ClusterArrays, request: ReplicaRequest, ctx: PlanContext,
                    eligible: BoolArray | None = None) -> Status:
    """Why the replica does not fit, as counts of nodes ruled out by each filter, in filter order.

    UNSCHEDULABLE_AND_UNRESOLVABLE when no node could ever hold it (wrong accelerator, too
    small, excluded); UNSCHEDULABLE when nodes exist but are busy now.
    """
    n = len(cluster)
    remaining = np.ones(n, np.bool_)
    counts: list[str] = []

    def cut(mask: BoolArray, what: str) -> None:
        nonlocal remaining
        dropped = int((remaining & ~mask).sum())
        if dropped:
            counts.append(f"{dropped} {what}")
        remaining = remaining & mask

    if eligible is not None:
        cut(eligible, "excluded (taint, node selector or cordon)")
    tiers = np.zeros(n, np.bool_)
    for tier in request.ordered_tiers:
        tiers |= ctx.tier_mask(tier)
    cut(tiers, "with another accelerator")
    member = request.members[0]
    static = np.zeros(n, np.bool_)
    for pod, applies in _variants(cluster, request, member):
        static |= applies & cluster.accepts_mask(pod)
    cut(static, "too small or with too little GPU memory")
    if request.required_labels:
        labels = ", ".join(f"{k}={v}" for k, v in request.required_labels)
        cut(ctx.labels_mask(request.required_labels), f"without {labels}")
    if request.capacity is CapacityRule.ON_DEMAND_ONLY:
        cut(~ctx.spot, "spot (this replica must run on on-demand capacity)")
    possible = int(remaining.sum())
    free = np.zeros(n, np.bool_)
    for pod, applies in _variants(cluster, request, member):
        free |= applies & cluster.fits_mask(pod)
    free_now = int((remaining & free).sum())
    need = len(request.members)
    head = f"replica {request.key} {_describe(request)}"
    ruled = f"; of {n} nodes: {', '.join(counts)}" if counts else ""
    if possible < need:
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                      (f"{head}{ruled}; {possible} node(s) could ever hold it, {need} needed",), "planning")
    return Status(Code.UNSCHEDULABLE,
                  (f"{head}{ruled}; {possible} suitable node(s), {free_now} with room now, {need} needed in "
                   "one accelerator tier: wait for capacity to free up, add nodes, or accept more accelerators",),
                  "planning")


def replica_cost(plan: ReplicaPlan, ctx: PlanContext) -> int:
    """Micro-USD per hour of a planned replica (sum over its members)."""
    return sum(ctx.pod_price(m.pod, m.node) for m in plan.members)


def assignments_cost(assignments: Iterable[Assignment], ctx: PlanContext) -> int:
    return sum(ctx.pod_price(a.pod, a.node) for a in assignments)


def label_tuple(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))
