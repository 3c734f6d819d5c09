"""plan_slots: the `ome` policy's placement plan, an optimised packing of the expected workload.

The workload's pod kinds are scaled to `level` x the cluster's GPUs at their expected counts
(largest remainders; a rare kind keeps its share rather than the luck of a resample), in a
shuffled order. `ome` alone places them one at a time, as it would online; the CPU-only pods
it serves are kept (online they take CPU wherever they arrive, so a plan that dropped them
would spend that CPU twice), and the optimum of `solve_optimum` repacks the rest. Each node's
share of that packing becomes its slots.

A plan is then put to the test before it is trusted: the workload, resampled in a random order
until it asks for the cluster's GPUs, is placed once by `ome` alone and once following the
plan, on VALIDATION_RUNS such sequences; the plan is adopted only if following it leaves fewer
GPUs unallocated in total (a plan that only ties may still cost later: on the embedded
synthetic cluster one did, 0.05 -> 0.16 % from 105 % arrived). Where the packing has little
room beyond what `ome` finds (the GPU-sharing-heavy workloads) a plan's slots are mostly
noise, and `ome` alone keeps placing.

Plans differ with the solver's seed and the order `ome` first placed the expected workload
in, and by more than their packings show: PLAN_CANDIDATES plans are solved, each with the
whole time limit, and the one that does best on the same check sequences is the one checked
against `ome` alone. The check, not the plan's own packing, chooses: it is the plan's value
on arrivals drawn from the workload, which is what a replay or a cluster then sees.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ome.domain import MILLI, Assignment, InvalidInput, Node, PodRequest
from ome.solver import Bind, ClusterArrays, OmePolicy, PodKind, SlotPlan, TargetWorkload, place_one, pod_kind

from ._optimum import solve_optimum
from ._settings import SolverSettings

PLAN_SHUFFLE_SEED = 987_654_321  # the plan's own order; unrelated to any arrival seed
# Multi-GPU kinds are planned for this load rather than `level`: they are rare, a rare kind's
# arrivals often run above their expected count, and one that finds no whole-GPU home loses
# up to 8 GPUs at once. 1.3 is the highest load the replays report (their inflation).
MULTI_GPU_LEVEL = 1.3
# Two orders let gpushare80 plans through that then cost 0.05 at 100 % (one) or 0.8 at 90 %
# (another) in the replays; on six orders the latter's mean was below `ome` alone.
VALIDATION_RUNS = 6
PLAN_CANDIDATES = 3


def expected_pods(pods: Sequence[PodRequest], capacity_milli: int, level: float, seed: int = PLAN_SHUFFLE_SEED,
                  multi_level: float | None = None) -> list[PodRequest]:
    """`pods`' kinds at their expected counts for a GPU demand of `level` x capacity, shuffled
    (multi-GPU kinds at `multi_level` x capacity when given)."""
    demand = sum(p.gpu_demand_milli for p in pods)
    if demand <= 0:
        raise InvalidInput("a placement plan needs a workload that asks for GPUs")
    kinds = Counter(pod_kind(p) for p in pods)
    first: dict[PodKind, PodRequest] = {}
    for p in pods:
        first.setdefault(pod_kind(p), p)
    scale = level * capacity_milli / demand
    multi = (multi_level if multi_level is not None else level) * capacity_milli / demand
    want = {k: n * (multi if k[2] > 1 else scale) for k, n in kinds.items()}
    count = {k: int(v) for k, v in want.items()}
    short = round(sum(want.values())) - sum(count.values())
    # Largest remainders first; ties in the workload's own order, so the plan is reproducible.
    for k in sorted(want, key=lambda k: count[k] - want[k])[: max(0, short)]:
        count[k] += 1
    out = [replace(first[k], name=f"plan-{i}-{j}") for i, k in enumerate(first) for j in range(count[k])]
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def resampled(pods: Sequence[PodRequest], capacity_milli: int, seed: int) -> list[PodRequest]:
    """`pods` drawn uniformly with replacement until they ask for `capacity_milli` of GPU."""
    rng, demand = np.random.default_rng(seed), 0
    out: list[PodRequest] = []
    while demand < capacity_milli:
        pod = pods[int(rng.integers(len(pods)))]
        out.append(replace(pod, name=f"check-{len(out)}"))
        demand += pod.gpu_demand_milli
    return out


def place_in_order(nodes: Sequence[Node], sequence: Sequence[PodRequest], policy: OmePolicy,
                   seed: int = 0) -> tuple[float, list[Assignment]]:
    """`sequence` placed one pod at a time (first node on ties): GPU % allocated, and where each went."""
    cluster, rng = ClusterArrays(nodes), np.random.default_rng(seed)
    placed: list[Assignment] = []
    for pod in sequence:
        decision = place_one(cluster, pod, policy, rng, tie_break="first")
        if isinstance(decision, Bind):
            placed.append(cluster.allocate(pod, decision.node, decision.gpus))
            policy.observe(cluster, pod, decision.node, decision.gpus)
    return 100.0 * cluster.allocated_gpu_milli() / max(cluster.gpu_capacity_milli, 1), placed


def plan_slots(
    nodes: Sequence[Node],
    pods: Sequence[PodRequest],
    *,
    level: float = 1.0,
    settings: SolverSettings = SolverSettings(max_time_in_seconds=30.0),
    target: TargetWorkload | None = None,
    multi_level: float | None = MULTI_GPU_LEVEL,
    validation_runs: int = VALIDATION_RUNS,
    candidates: int = PLAN_CANDIDATES,
) -> SlotPlan:
    """A SlotPlan for `nodes` from the workload `pods` (the list the target workload comes from):
    its kinds at their expected counts for `level` x the cluster's GPUs (multi-GPU kinds for
    `multi_level`), packed by `solve_optimum` within `settings`' time limit, per candidate;
    of `candidates` plans, the one that does best on the check."""
    started = time.perf_counter()
    target = target if target is not None else TargetWorkload.from_pods(pods)
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    plans = [_one_plan(nodes, pods, level, replace(settings, random_seed=settings.random_seed + k), target, multi_level)
             for k in range(max(1, candidates))]
    sequences = [resampled(pods, capacity, PLAN_SHUFFLE_SEED + settings.random_seed + 1 + run)
                 for run in range(validation_runs)]
    alone = float(np.mean([place_in_order(nodes, seq, OmePolicy(target))[0] for seq in sequences])) if sequences else 0.0
    followed = [float(np.mean([place_in_order(nodes, seq, OmePolicy(target, plan=p))[0] for seq in sequences]))
                if sequences else p.planned_pct for p in plans]
    chosen = int(np.argmax(followed))  # the first of equals
    plan = plans[chosen]
    stats = dict(plan.stats, check_alone_pct=alone, check_followed_pct=followed[chosen] if sequences else 0.0,
                 candidates=float(len(plans)), chosen=float(chosen), seconds=time.perf_counter() - started)
    return replace(plan, adopted=not sequences or followed[chosen] > alone, stats=stats)


def _one_plan(nodes: Sequence[Node], pods: Sequence[PodRequest], level: float, settings: SolverSettings,
              target: TargetWorkload, multi_level: float | None) -> SlotPlan:
    """`ome` places the expected workload, in an order from `settings`' seed; its CPU-only pods
    stay, and solve_optimum repacks the rest."""
    started = time.perf_counter()
    expected = expected_pods(pods, sum(n.gpu_count for n in nodes) * MILLI, level,
                              PLAN_SHUFFLE_SEED + settings.random_seed, multi_level)
    online_pct, placed = place_in_order(nodes, expected, OmePolicy(target), settings.random_seed)
    start = [a for a in placed if not a.pod.num_gpu]
    left = max(1.0, settings.max_time_in_seconds - (time.perf_counter() - started))
    result = solve_optimum(nodes, expected, replace(settings, max_time_in_seconds=left), start=start,
                           keep_started=True, bound_from_duals=False)
    slots: dict[str, Counter[PodKind]] = {}
    for a in result.assignments:
        slots.setdefault(nodes[a.node].name, Counter())[pod_kind(a.pod)] += 1
    return SlotPlan({name: dict(kinds) for name, kinds in slots.items()}, level=level,
                    planned_pct=100.0 * result.allocated_milli / (result.capacity_milli or 1),
                    stats={"online_pct": online_pct, "pods": float(len(expected))})
