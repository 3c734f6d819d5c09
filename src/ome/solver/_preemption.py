"""Minimal-victim preemption: which lower-priority replicas to evict so a replica fits.

Pure: `select_victims` reads a ClusterArrays in which every victim unit's assignments are
allocated, and returns a `Preemption` (the plan plus the victims) or `Infeasible`.

A victim *unit* is everything that goes when one replica goes: one pod, or every pod of a
multi-node gang (evicting one member of a gang breaks the whole gang, so it counts whole).
Only units with a priority strictly below the preemptor's are candidates.

Passes, per member of the preemptor (a gang's members in order, on distinct nodes):
  1. static   the nodes `plan_replica` would accept (tiers, labels, capacity rule, eligible)
  2. bound    skip a node unless its free capacity plus everything lower-priority units hold
              there could hold the member
  3. subsets  on each remaining node, every subset of the units there (exhaustive up to
              MAX_EXACT units, else greedy add-then-reprieve like kube-scheduler), keeping
              only subsets whose pods fit within every PodDisruptionBudget's allowance;
              nodes go in order of the GPU milli victims must free there at least, and a
              node or subset size that cannot beat the best so far is skipped (same result)
  4. choose   the subset and node with the smallest key (lower wins):
                (highest victim priority, GPU milli disrupted, victim count,
                 sum of victim priorities, tier index, node name)
              i.e. victims come from the lowest priority first, then the fewest GPUs are
              disrupted, then the fewest replicas; a node with room needs no victim and wins.
The members of a gang are chosen greedily one after another on a scratch copy in which the
victims chosen so far are already gone, so the total is minimal per member, not globally.

`select_reclaim` is the rescheduler's variant: the caller's candidates regardless of priority
(best-effort pods of the request's own class), the fewest GPU milli disrupted, and only where
the request brings more GPU milli than its victims hold.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ome.domain import Assignment, Code, PodRequest, Status

from ._arrays import ClusterArrays
from ._framework import Infeasible
from ._planning import (
    BoolArray,
    MemberPlacement,
    PlanContext,
    ReplicaPlan,
    ReplicaRequest,
    _variants,
    choose_gpus,
    static_mask,
)

MAX_EXACT = 12  # units on one node up to which every subset is tried (2**12 subsets)


@dataclass(frozen=True, slots=True)
class VictimUnit:
    """One replica that could be evicted: its priority, where its pods sit, the PDBs covering them."""

    key: str
    priority: int
    assignments: tuple[Assignment, ...]
    pdbs: tuple[tuple[str, int], ...] = ()  # (PDB key, pods of this unit that PDB selects)

    @property
    def gpu_milli(self) -> int:
        return sum(a.pod.gpu_demand_milli for a in self.assignments)

    def on(self, node: int) -> list[Assignment]:
        return [a for a in self.assignments if a.node == node]


@dataclass(frozen=True, slots=True)
class Preemption:
    plan: ReplicaPlan
    victims: tuple[VictimUnit, ...]

    @property
    def gpus_disrupted_milli(self) -> int:
        return sum(v.gpu_milli for v in self.victims)

    @property
    def max_victim_priority(self) -> int | None:
        return max((v.priority for v in self.victims), default=None)


Key = tuple[int, int, int, int, int, str]


def subset_key(units: Sequence[VictimUnit], tier_index: int, node_name: str) -> Key:
    """The ranking key of evicting `units` to land on `node_name` (see the module docstring)."""
    top = max((u.priority for u in units), default=-(2**62))
    return (top, sum(u.gpu_milli for u in units), len(units), sum(u.priority for u in units), tier_index, node_name)


def _fits_after(work: ClusterArrays, pod: PodRequest, node: int, removed: Iterable[VictimUnit]) -> bool:
    cpu = int(work.cpu_free[node])
    mem = int(work.mem_free[node])
    row = work.gpu_free[node].copy()
    for unit in removed:
        for a in unit.on(node):
            cpu += a.pod.cpu_milli
            mem += a.pod.memory_mib
            for g in a.gpus:
                row[g] += a.pod.gpu_milli
    if cpu < pod.cpu_milli or mem < pod.memory_mib:
        return False
    return not pod.num_gpu or int((row >= pod.gpu_milli).sum()) >= pod.num_gpu


def _within_budgets(units: Iterable[VictimUnit], left: Mapping[str, int]) -> bool:
    used: dict[str, int] = defaultdict(int)
    for unit in units:
        for pdb, pods in unit.pdbs:
            used[pdb] += pods
    return all(used[pdb] <= left.get(pdb, 0) for pdb in used)


def _best_subset(work: ClusterArrays, pod: PodRequest, node: int, units: list[VictimUnit], tier_index: int,
                 node_name: str, left: Mapping[str, int], bound: Key | None) -> tuple[Key, tuple[VictimUnit, ...]] | None:
    if not _fits_after(work, pod, node, units):
        return None
    best: tuple[Key, tuple[VictimUnit, ...]] | None = None
    if len(units) <= MAX_EXACT:
        # subset_key's leading fields from per-unit numbers: up to 4,095 subsets per node, and
        # most lose to the best so far on (top priority, GPU milli, count) alone.
        prio = [u.priority for u in units]
        milli = [u.gpu_milli for u in units]
        least = sorted(milli)
        for r in range(1, len(units) + 1):
            # No subset of r or more units frees less than the r smallest: once that loses, stop.
            floor = (min(prio), sum(least[:r]), r)
            if (bound is not None and floor > bound[:3]) or (best is not None and floor > best[0][:3]):
                break
            for idx in itertools.combinations(range(len(units)), r):
                head = (max(prio[i] for i in idx), sum(milli[i] for i in idx), r)
                if (bound is not None and head > bound[:3]) or (best is not None and head > best[0][:3]):
                    continue
                combo = tuple(units[i] for i in idx)
                key = subset_key(combo, tier_index, node_name)
                if (bound is not None and key >= bound) or (best is not None and key >= best[0]):
                    continue
                if _within_budgets(combo, left) and _fits_after(work, pod, node, combo):
                    best = (key, combo)
        return best
    # Greedy: add the cheapest units until it fits, then give back the dearest that are not needed.
    chosen: list[VictimUnit] = []
    for unit in sorted(units, key=lambda u: (u.priority, u.gpu_milli, u.key)):
        if _within_budgets([*chosen, unit], left):
            chosen.append(unit)
            if _fits_after(work, pod, node, chosen):
                break
    if not _fits_after(work, pod, node, chosen):
        return None
    for unit in sorted(chosen, key=lambda u: (-u.priority, -u.gpu_milli, u.key)):
        rest = [u for u in chosen if u is not unit]
        if _fits_after(work, pod, node, rest):
            chosen = rest
    key = subset_key(chosen, tier_index, node_name)
    return None if bound is not None and key >= bound else (key, tuple(chosen))


def _milli_floor(work: ClusterArrays, pod: PodRequest, nodes: np.ndarray) -> np.ndarray:
    """Per node, the least GPU milli victims must free there for `pod` to fit (0: it may fit
    as is): the smallest shortfalls of its `num_gpu` emptiest GPUs. A lower bound on the GPU
    field of any victim subset's key, so nodes whose floor is already beaten can be skipped."""
    if not pod.num_gpu or not nodes.size:
        return np.zeros(nodes.size, np.int64)
    free = work.gpu_free[nodes]
    short = np.where(work.gpu_cap[nodes] > 0, np.maximum(0, pod.gpu_milli - free), np.iinfo(np.int64).max // 64)
    return np.sort(short, axis=1)[:, : pod.num_gpu].sum(axis=1)


def select_victims(cluster: ClusterArrays, request: ReplicaRequest, units: Sequence[VictimUnit], ctx: PlanContext,
                   eligible: BoolArray | None = None, budgets: Mapping[str, int] | None = None) -> Preemption | Infeasible:
    """The cheapest set of lower-priority units whose eviction lets every member of `request` land.

    `budgets` maps a PDB key to the disruptions it still allows (absent: none allowed for the
    pods it covers). `cluster` is not mutated.
    """
    priority = request.priority
    candidates = [u for u in units if u.priority < priority]
    work = cluster.copy()
    left = dict(budgets or {})
    base = static_mask(cluster, request, ctx, eligible)
    used = np.zeros(len(cluster), np.bool_)
    gone: set[str] = set()
    victims: list[VictimUnit] = []
    placed: list[MemberPlacement] = []
    tier_used: tuple[int, str] | None = None
    for m, member in enumerate(request.members):
        by_node: dict[int, list[VictimUnit]] = defaultdict(list)
        for unit in candidates:
            if unit.key not in gone:
                for node in {a.node for a in unit.assignments}:
                    by_node[node].append(unit)
        best: tuple[Key, int, PodRequest, tuple[VictimUnit, ...], int, str] | None = None
        tiers = list(enumerate(request.ordered_tiers))
        if tier_used is not None:  # a gang stays in one accelerator tier
            tiers = [(i, t) for i, t in tiers if i == tier_used[0]]
        for tier_index, tier in tiers:
            tier_mask = base & ctx.tier_mask(tier) & ~used
            for pod, applies in _variants(work, request, member):
                nodes = np.flatnonzero(tier_mask & applies & work.accepts_mask(pod))
                floor = _milli_floor(work, pod, nodes)
                for node, least in sorted(zip(nodes.tolist(), floor.tolist()), key=lambda nl: nl[1]):
                    name = ctx.nodes[node].name
                    bound = best[0] if best is not None else None
                    if bound is not None and least > 0 and (
                            min(u.priority for u in by_node.get(node, ())) if node in by_node else bound[0] + 1,
                            least, 1) > bound[:3]:
                        continue  # no victim subset here can beat the best so far (nodes go least first)
                    if work.fits_mask_one(pod, node):
                        key = subset_key((), tier_index, name)
                        if bound is None or key < bound:
                            best = (key, node, pod, (), tier_index, tier.name)
                        continue
                    found = _best_subset(work, pod, node, by_node.get(node, []), tier_index, name, left, bound)
                    if found is not None:
                        best = (found[0], node, pod, found[1], tier_index, tier.name)
        if best is None:
            return Infeasible(Status(Code.UNSCHEDULABLE, (
                f"replica {request.key} (priority {priority}) does not fit even after evicting every "
                f"lower-priority replica its PodDisruptionBudgets allow (member {m})",), "preemption"))
        _, node, pod, chosen, tier_index, tier_name = best
        for unit in chosen:
            for a in unit.assignments:
                work.release(a)
            for pdb, pods in unit.pdbs:
                left[pdb] = left.get(pdb, 0) - pods
            gone.add(unit.key)
            victims.append(unit)
        gpus = choose_gpus(work, pod, node)
        work.allocate(pod, node, gpus)
        placed.append(MemberPlacement(m, node, ctx.nodes[node].name, gpus, pod))
        used[node] = True
        tier_used = (tier_index, tier_name)
    assert tier_used is not None
    cost = sum(ctx.pod_price(p.pod, p.node) for p in placed)
    plan = ReplicaPlan(request.key, tier_used[1], tier_used[0], tuple(placed), cost)
    return Preemption(plan, tuple(victims))


def select_reclaim(cluster: ClusterArrays, request: ReplicaRequest, units: Sequence[VictimUnit], ctx: PlanContext,
                   *, min_gain_milli: int, eligible: BoolArray | None = None,
                   budgets: Mapping[str, int] | None = None) -> Preemption | Infeasible:
    """Reclaim: evict `units` so that `request` lands only where that raises the GPU allocated.

    Unlike `select_victims`, priority does not decide: every unit given is a candidate (the
    caller passes the ones its policy lets go, e.g. best-effort pods of the request's own
    class), and the fewest GPU milli disrupted wins. The result stands only if the request's
    GPU milli exceeds the victims' by at least `min_gain_milli`; a request without GPUs gains
    nothing and never reclaims. `cluster` is not mutated.
    """
    gain_at_most = sum(m.gpu_demand_milli for m in request.members)
    if gain_at_most < max(1, min_gain_milli):
        return Infeasible(Status(Code.UNSCHEDULABLE, (
            f"replica {request.key} asks for {gain_at_most} GPU milli: no reclaim can gain {min_gain_milli}",), "reclaim"))
    by_key = {u.key: u for u in units}
    # One level below the request: select_victims then treats them all alike, by GPU milli first.
    level = [VictimUnit(u.key, request.priority - 1, u.assignments, u.pdbs) for u in units]
    found = select_victims(cluster, request, level, ctx, eligible, budgets)
    if not isinstance(found, Preemption):
        return found
    victims = tuple(by_key[v.key] for v in found.victims)
    freed = sum(v.gpu_milli for v in victims)
    if gain_at_most - freed < min_gain_milli:
        return Infeasible(Status(Code.UNSCHEDULABLE, (
            f"replica {request.key}: the cheapest victims hold {freed} of its {gain_at_most} GPU milli; "
            f"a reclaim must gain at least {min_gain_milli}",), "reclaim"))
    return Preemption(found.plan, victims)
