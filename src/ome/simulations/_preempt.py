"""`ome-preempt`: the `ome` policy online plus priority preemption, as a cluster with priorities does it.

The FGD protocol never evicts. A cluster whose pods carry priorities does: kube-scheduler
preempts lower-priority pods for a pending higher-priority one, and our extender and operator
choose the victims with `ome.solver.select_victims` (strictly lower priority only; the lowest
priority first, then the fewest GPUs disrupted, then the fewest pods). This replay adds that to
the online protocol, one pod at a time:

- a pod that fits is placed by the policy, as in `replay`;
- a pod that fits nowhere preempts if some set of lower-priority running pods, evicted, lets it
  land; it takes the place the plan found, else it fails for good;
- each victim is offered again at once, to the policy (it may fit elsewhere), and is lost if
  it fits nowhere: nothing in a replay frees room later, and a victim never preempts in turn.

The trace's QoS column gives the priorities (`load_pods`: best-effort pods 0, the rest 1).
Reported like `ome`, plus extra: preemptions, evicted (pods), evicted_replaced, evicted_lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ome.domain import Assignment, Node, PodRequest
from ome.solver import (
    Bind, ClusterArrays, Infeasible, PlanContext, Policy, Preemption, ReplicaRequest, TargetWorkload, VictimUnit, make_policy,
    place_one, select_reclaim, select_victims,
)

from ._replay import CURVE_LEVELS, LEVELS, ReplayResult, record_levels

OME_PREEMPT = "ome-preempt"


def replay_with_preemption(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], base_policy: str, target: TargetWorkload | None, seed: int,
    *, keep_placements: bool = False, log: list[tuple[int, tuple[int, ...]]] | None = None,
) -> ReplayResult:
    """Online replay with `base_policy` and priority preemption (module docstring). `log`, if
    given, receives (preemptor, victims) as indices into `sequence`, one entry per preemption."""
    t0 = time.perf_counter()
    cluster = ClusterArrays(nodes)
    policy = make_policy(base_policy, seed=seed, target=target)
    rng = np.random.default_rng(seed)
    ctx = PlanContext.build(nodes)
    result = ReplayResult(OME_PREEMPT, seed)
    capacity = cluster.gpu_capacity_milli
    running: dict[int, Assignment] = {}  # sequence index -> where the pod runs
    arrived = failed = preemptions = evicted = replaced = lost = 0
    levels, curve = list(LEVELS), list(CURVE_LEVELS)

    def place(k: int) -> bool:
        return place_online(cluster, policy, rng, sequence, running, k)

    for i, pod in enumerate(sequence):
        arrived += pod.gpu_demand_milli
        if not place(i):
            victims = preempt_for(cluster, ctx, running, i, pod)
            if victims is None:
                failed += 1
            else:
                preemptions += 1
                if log is not None:
                    log.append((i, tuple(victims)))
                policy.observe(cluster, pod, running[i].node, running[i].gpus)
                for k in victims:
                    evicted += 1
                    if place(k):
                        replaced += 1
                    else:
                        lost += 1
        unalloc = 100.0 - 100.0 * cluster.allocated_gpu_milli() / capacity
        record_levels(result, arrived, capacity, unalloc, curve, levels)
    result.placed = len(running)
    result.failed = failed + lost
    if keep_placements:
        result.placements = [(a.pod.name, nodes[a.node].name, a.gpus) for _, a in sorted(running.items())]
    result.allocated_pct_final = 100.0 * cluster.allocated_gpu_milli() / capacity
    result.seconds = time.perf_counter() - t0
    result.extra.update(preemptions=preemptions, evicted=evicted, evicted_replaced=replaced, evicted_lost=lost)
    return result


def place_online(cluster: ClusterArrays, policy: Policy, rng: np.random.Generator, sequence: Sequence[PodRequest],
                 running: dict[int, Assignment], k: int) -> bool:
    """Place sequence[k] where the policy says (first-node ties, as the replays break them)
    and record it in `running`; False if it fits nowhere."""
    decision = place_one(cluster, sequence[k], policy, rng, tie_break="first")
    if not isinstance(decision, Bind):
        return False
    running[k] = cluster.allocate(sequence[k], decision.node, decision.gpus)
    policy.observe(cluster, sequence[k], decision.node, decision.gpus)
    return True


def preempt_for(cluster: ClusterArrays, ctx: PlanContext, running: dict[int, Assignment], i: int,
                pod: PodRequest) -> list[int] | None:
    """Evict the victims select_victims picks for `pod` (sequence index i) and place it; returns
    the victims' indices, or None (nothing changed) if no set of lower-priority pods will do."""
    lower = {k: a for k, a in running.items() if a.pod.priority < pod.priority}
    if not lower:
        return None
    units = [VictimUnit(str(k), a.pod.priority, (a,)) for k, a in lower.items()]
    plan = select_victims(cluster, ReplicaRequest(pod.name, (pod,)), units, ctx, eligible=_could_fit(cluster, lower, pod))
    return _evict_and_place(cluster, running, i, pod, plan)


def reclaim_class(sequence: Sequence[PodRequest]) -> int | None:
    """The priority whose pods a reclaim may evict: the lowest, best-effort, class of the
    workload; None where every pod has the same priority (nothing marks any pod as one to let go)."""
    priorities = {p.priority for p in sequence}
    return min(priorities) if len(priorities) > 1 else None


def reclaim_for(cluster: ClusterArrays, ctx: PlanContext, running: dict[int, Assignment], i: int, pod: PodRequest,
                reclaimable: int, min_gain_milli: int) -> list[int] | None:
    """Evict running pods of priority `reclaimable` (never above the pod's own) so that `pod`
    (sequence index i) lands, if that raises the GPU allocated by at least `min_gain_milli`
    (``ome.solver.select_reclaim``); returns the victims' indices, or None (nothing changed)."""
    if pod.priority < reclaimable:
        return None
    candidates = {k: a for k, a in running.items() if a.pod.priority == reclaimable}
    if not candidates:
        return None
    units = [VictimUnit(str(k), a.pod.priority, (a,)) for k, a in candidates.items()]
    plan = select_reclaim(cluster, ReplicaRequest(pod.name, (pod,)), units, ctx, min_gain_milli=min_gain_milli,
                          eligible=_could_fit(cluster, candidates, pod))
    return _evict_and_place(cluster, running, i, pod, plan)


def _evict_and_place(cluster: ClusterArrays, running: dict[int, Assignment], i: int, pod: PodRequest,
                     plan: Preemption | Infeasible) -> list[int] | None:
    if not isinstance(plan, Preemption):
        return None
    victims = [int(u.key) for u in plan.victims]
    for k in victims:
        cluster.release(running.pop(k))
    (member,) = plan.plan.members
    running[i] = cluster.allocate(pod, member.node, member.gpus)
    return victims


def _could_fit(cluster: ClusterArrays, lower: dict[int, Assignment], pod: PodRequest) -> np.ndarray:
    """Nodes where `pod` would fit if every lower-priority pod there were gone: select_victims
    tries victim subsets only there (the same test it makes per node, here for all at once)."""
    cpu, mem, gpu = cluster.cpu_free.astype(np.int64), cluster.mem_free.astype(np.int64), cluster.gpu_free.astype(np.int64)
    for a in lower.values():
        cpu[a.node] += a.pod.cpu_milli
        mem[a.node] += a.pod.memory_mib
        for g in a.gpus:
            gpu[a.node, g] += a.pod.gpu_milli
    ok = (cpu >= pod.cpu_milli) & (mem >= pod.memory_mib)
    if pod.num_gpu:
        ok &= (gpu >= pod.gpu_milli).sum(axis=1) >= pod.num_gpu
    return ok


def _preempt_runner(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int, seconds: float | None,
    keep_placements: bool = False,
) -> ReplayResult:
    return replay_with_preemption(nodes, sequence, "ome", target, seed, keep_placements=keep_placements)


RUNNERS = {OME_PREEMPT: _preempt_runner}

__all__ = ["OME_PREEMPT", "RUNNERS", "place_online", "preempt_for", "reclaim_class", "reclaim_for", "replay_with_preemption"]
