"""Offline settings for the replay: the CP-SAT optimum and online + periodic repack.

Both take the same inflated, shuffled arrival sequence as the online policies
(``_replay.arrival_sequence``) and report unallocated GPU % at the same arrived levels: the
level L is reached by the shortest prefix of the sequence whose GPU demand is at least
L % of capacity, exactly where ``_replay.replay`` records it.

- ``optimum_levels``: for each level, the most GPU milli the prefix's pods allow when packed
  all at once (``ome.solver.cpsat.solve_optimum``), with the proven bound. Levels are solved
  in increasing order, each warm-started from the previous level's packing (prefixes nest).
  These numbers are a different setting from the online ones: no arrival order at all.
- ``replay_with_repack``: the online replay with a base policy, where pods that do not fit
  wait (instead of failing for good) and every `every_pods` arrivals a repack
  (``ome.solver.cpsat.repack``) may move up to `budget_moves` running pods to place them.
  Also a different setting from strict online (it migrates pods), and not comparable 1:1
  with the optimum: a rescheduler never drops a running pod (CPU-only ones included), while
  the optimum chooses which arrived pods to serve and ignores CPU-only pods. With `preempt`
  ("ome-preempt-repack") priorities count: online preemption as in ``_preempt``, then the
  same repacks. "ome-reclaim" adds reclaims and refills: best-effort pods also make way for
  pods that bring at least 0.1 GPU more than they hold (``replay_with_repack``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ome.domain import MILLI, Assignment, Node, PodRequest
from ome.solver import ClusterArrays, PlanContext, TargetWorkload, make_policy, refill_gpus
from ome.solver.cpsat import OptimumResult, SolverSettings, repack, solve_optimum

from ._preempt import place_online, preempt_for, reclaim_class, reclaim_for
from ._replay import CURVE_LEVELS, LEVELS, ReplayResult, record_levels

OPTIMUM = "optimum"
OME_REPACK = "ome-repack"
OME_PREEMPT_REPACK = "ome-preempt-repack"
OME_RECLAIM = "ome-reclaim"
# A reclaim must buy at least a tenth of a GPU: evicting for any gain at all placed 0.01-0.04
# points more on default seed 42 (100-130 %) and evicted 305 pods instead of 194.
RECLAIM_GAIN_MILLI = 100


def level_prefixes(sequence: Sequence[PodRequest], capacity_milli: int, levels: Sequence[int] = LEVELS) -> dict[int, int]:
    """level -> number of pods in the shortest prefix whose GPU demand reaches level % of capacity.

    Levels the whole sequence does not reach are left out."""
    out: dict[int, int] = {}
    pending = sorted(levels)
    arrived = 0
    for i, pod in enumerate(sequence):
        arrived += pod.gpu_demand_milli
        while pending and arrived * 100 >= pending[0] * capacity_milli:
            out[pending.pop(0)] = i + 1
    return out


def solve_levels(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], levels: Sequence[int] = LEVELS,
    settings: SolverSettings = SolverSettings(),
) -> dict[int, OptimumResult]:
    """The optimum at each reached level (settings.max_time_in_seconds per level)."""
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    out: dict[int, OptimumResult] = {}
    start: list[Assignment] | None = None
    for level, count in sorted(level_prefixes(sequence, capacity, levels).items()):
        result = solve_optimum(nodes, sequence[:count], settings, start=start)
        out[level] = result
        start = result.assignments
    return out


def optimum_levels(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], levels: Sequence[int] = LEVELS,
    settings: SolverSettings = SolverSettings(),
) -> dict[int, tuple[float, float, float]]:
    """level -> (best unallocated GPU %, bound on it, gap in points = best - bound).

    best: the packing found (verified feasible); bound: no packing can leave less than this
    unallocated. Takes up to settings.max_time_in_seconds per level (about 10 s by default).
    """
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    out: dict[int, tuple[float, float, float]] = {}
    for level, r in solve_levels(nodes, sequence, levels, settings).items():
        best = 100.0 - 100.0 * r.allocated_milli / capacity
        bound = 100.0 - 100.0 * r.bound_milli / capacity
        out[level] = (best, bound, best - bound)
    return out


def optimum_replay(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], seed: int, settings: SolverSettings = SolverSettings()
) -> ReplayResult:
    """optimum_levels as a ReplayResult: unallocated_pct = best; extra bound_<L>, gap_<L>, seconds_<L>."""
    t0 = time.perf_counter()
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    result = ReplayResult(OPTIMUM, seed)
    for level, r in solve_levels(nodes, sequence, LEVELS, settings).items():
        best = 100.0 - 100.0 * r.allocated_milli / capacity
        result.unallocated_pct[level] = best
        result.curve[level] = best
        result.extra[f"bound_{level}"] = 100.0 - 100.0 * r.bound_milli / capacity
        result.extra[f"gap_{level}"] = (r.bound_milli - r.allocated_milli) * 100.0 / capacity
        result.extra[f"seconds_{level}"] = r.seconds
        result.placed = len(r.assignments)
        result.allocated_pct_final = 100.0 * r.allocated_milli / capacity
    result.seconds = time.perf_counter() - t0
    return result


def replay_with_repack(
    nodes: Sequence[Node],
    sequence: Sequence[PodRequest],
    base_policy: str,
    target: TargetWorkload | None,
    seed: int,
    every_pods: int = 500,
    budget_moves: int = 200,
    settings: SolverSettings = SolverSettings(),
    *,
    keep_placements: bool = False,
    preempt: bool = False,
    reclaim_gain_milli: int | None = None,
    refill_every: int = 100,
    log: list[tuple[str, int, tuple[int, ...]]] | None = None,
) -> ReplayResult:
    """Online replay with `base_policy` plus a repack every `every_pods` arrivals.

    A pod that does not fit waits; a repack runs only when some pod waits, may move up to
    `budget_moves` running pods and places waiting pods (settings.max_time_in_seconds per
    repack). Returns a ReplayResult named "ome-repack": unallocated_pct at the levels (as
    the online replay records them), failed = pods still waiting at the end, and extra
    moves (total pods moved), repacks, repack_seconds, placed_by_repack. keep_placements:
    also list the final (pod, node, GPUs) in result.placements.

    `preempt` ("ome-preempt-repack"): priorities count, as in a cluster that has them: a pod
    that fits nowhere first preempts lower-priority pods as `ome-preempt` does (its victims
    are offered again at once, else they wait). The repacks only move pods, as before.
    extra: preemptions and evicted too.

    `reclaim_gain_milli` (with `preempt`): a pod that still fits nowhere may evict pods of the
    workload's best-effort class (``_preempt.reclaim_class``; never above its own priority)
    where it brings at least that much more GPU milli than they hold (``reclaim_for``); the
    victims are offered again, else they wait. And every `refill_every` arrivals, while pods
    wait, GPUs are refilled (``ome.solver.refill_gpus``): best-effort shares leave a GPU that
    waiting pods fill with at least that much more; the evicted pods wait. extra: reclaims,
    reclaim_evicted, refills, refill_evicted.
    `log`, if given, receives ("preempt" or "reclaim", pod, victims) as sequence indices.
    """
    if every_pods < 1 or refill_every < 1:
        raise ValueError("every_pods and refill_every must be >= 1")
    t0 = time.perf_counter()
    cluster = ClusterArrays(nodes)
    policy = make_policy(base_policy, seed=seed, target=target)
    rng = np.random.default_rng(seed)
    ctx = PlanContext.build(nodes) if preempt else None
    name = (OME_RECLAIM if reclaim_gain_milli is not None else OME_PREEMPT_REPACK) if preempt else OME_REPACK
    result = ReplayResult(name, seed)
    capacity = cluster.gpu_capacity_milli
    assignments: dict[int, Assignment] = {}
    waiting: list[int] = []
    arrived = 0
    levels, curve = list(LEVELS), list(CURVE_LEVELS)
    moves = repacks = placed_by_repack = preemptions = evicted = reclaims = reclaim_evicted = refills = refill_evicted = 0
    reclaimable = reclaim_class(sequence) if preempt and reclaim_gain_milli is not None else None
    repack_seconds = 0.0

    def place(k: int) -> bool:
        return place_online(cluster, policy, rng, sequence, assignments, k)

    for i, pod in enumerate(sequence):
        arrived += pod.gpu_demand_milli
        if not place(i):
            victims = preempt_for(cluster, ctx, assignments, i, pod) if ctx is not None else None
            kind = "preempt"
            if victims is not None:
                preemptions += 1
                evicted += len(victims)
            elif ctx is not None and reclaimable is not None and reclaim_gain_milli is not None:
                victims, kind = reclaim_for(cluster, ctx, assignments, i, pod, reclaimable, reclaim_gain_milli), "reclaim"
                if victims is not None:
                    reclaims += 1
                    reclaim_evicted += len(victims)
            if victims is None:
                waiting.append(i)
            else:
                if log is not None:
                    log.append((kind, i, tuple(victims)))
                policy.observe(cluster, pod, assignments[i].node, assignments[i].gpus)
                waiting += [k for k in victims if not place(k)]
        if (i + 1) % refill_every == 0 and waiting and reclaimable is not None and reclaim_gain_milli is not None:
            for step in refill_gpus(cluster, assignments, {k: sequence[k] for k in waiting},
                                    lambda p: p.priority == reclaimable, reclaim_gain_milli):
                refills += 1
                refill_evicted += len(step.evicted)
                for k in step.evicted:
                    cluster.release(assignments.pop(k))
                for k in step.placed:
                    assignments[k] = cluster.allocate(sequence[k], step.node, (step.gpu,))
                placed_now = set(step.placed)
                waiting = [k for k in waiting if k not in placed_now] + [k for k in step.evicted if k not in placed_now]
        if (i + 1) % every_pods == 0 and waiting:
            order = sorted(assignments)
            r = repack(nodes, [assignments[k] for k in order], budget_moves, settings,
                       pending=[sequence[k] for k in waiting])
            repacks += 1
            moves += len(r.moves)
            repack_seconds += r.seconds
            cluster, assignments, waiting, newly = _apply_repack(nodes, sequence, order, waiting, r.new_assignments)
            placed_by_repack += newly
        unalloc = 100.0 - 100.0 * cluster.allocated_gpu_milli() / capacity
        record_levels(result, arrived, capacity, unalloc, curve, levels)
    result.placed = len(assignments)
    result.failed = len(waiting)
    if keep_placements:
        result.placements = [(a.pod.name, nodes[a.node].name, a.gpus) for _, a in sorted(assignments.items())]
    result.allocated_pct_final = 100.0 * cluster.allocated_gpu_milli() / capacity
    result.seconds = time.perf_counter() - t0
    result.extra.update(moves=moves, repacks=repacks, repack_seconds=repack_seconds, placed_by_repack=placed_by_repack,
                        every_pods=every_pods, budget_moves=budget_moves)
    if preempt:
        result.extra.update(preemptions=preemptions, evicted=evicted)
    if reclaimable is not None:
        result.extra.update(reclaims=reclaims, reclaim_evicted=reclaim_evicted, refills=refills,
                            refill_evicted=refill_evicted)
    return result


def _apply_repack(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], placed: Sequence[int], waiting: Sequence[int],
    new: Sequence[Assignment],
) -> tuple[ClusterArrays, dict[int, Assignment], list[int], int]:
    """Rebuild the cluster from the repack's assignments, mapping them back to sequence indices.

    repack() returns one Assignment per placed pod, its pods being the inputs (placed first,
    then waiting) in that order, so pods are matched by identity in input order.
    """
    candidates = list(placed) + list(waiting)
    by_pod: dict[int, list[int]] = {}
    for k in candidates:
        by_pod.setdefault(id(sequence[k]), []).append(k)
    cluster = ClusterArrays(nodes)
    assignments: dict[int, Assignment] = {}
    for a in new:
        k = by_pod[id(a.pod)].pop(0)
        assignments[k] = cluster.allocate(a.pod, a.node, a.gpus)
    missing = [k for k in placed if k not in assignments]
    if missing:
        raise AssertionError(f"repack dropped {len(missing)} running pods")
    still = [k for k in waiting if k not in assignments]
    return cluster, assignments, still, len(waiting) - len(still)


def _optimum_runner(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int, seconds: float | None,
    keep_placements: bool = False,
) -> ReplayResult:
    if keep_placements:  # one packing per level, none of them "the" state
        raise ValueError(f"{OPTIMUM!r} solves each level on its own: it has no placements to keep")
    # 10 s per level by default keeps a 7-level x 10-seed sweep near 12 min on 2 cores.
    return optimum_replay(nodes, sequence, seed, SolverSettings(max_time_in_seconds=seconds or 10.0, random_seed=seed))


def _repack_runner(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int, seconds: float | None,
    keep_placements: bool = False,
) -> ReplayResult:
    # A repack every 500 arrivals, up to 1,000 moves and 20 s each by default (about 2 min per seed on 2 cores).
    return replay_with_repack(nodes, sequence, "ome", target, seed, every_pods=500, budget_moves=1000,
                              settings=SolverSettings(max_time_in_seconds=seconds or 20.0, random_seed=seed),
                              keep_placements=keep_placements)


def _preempt_repack_runner(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int, seconds: float | None,
    keep_placements: bool = False,
) -> ReplayResult:
    # ome-repack's settings, with priorities: online preemption as in ome-preempt.
    return replay_with_repack(nodes, sequence, "ome", target, seed, every_pods=500, budget_moves=1000,
                              settings=SolverSettings(max_time_in_seconds=seconds or 20.0, random_seed=seed), preempt=True,
                              keep_placements=keep_placements)


def _reclaim_runner(
    nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int, seconds: float | None,
    keep_placements: bool = False,
) -> ReplayResult:
    # ome-preempt-repack, plus reclaims of best-effort pods for pods that bring more GPU, and a
    # refill every 100 arrivals (every 500, as the repacks: 3.17 / 2.42 / 1.69 at 100 / 105 / 110 %
    # on default seed 42 against 3.11 / 2.35 / 1.65, both with 2-s repacks).
    return replay_with_repack(nodes, sequence, "ome", target, seed, every_pods=500, budget_moves=1000,
                              settings=SolverSettings(max_time_in_seconds=seconds or 20.0, random_seed=seed), preempt=True,
                              reclaim_gain_milli=RECLAIM_GAIN_MILLI, keep_placements=keep_placements)


# name -> runner(nodes, sequence, target, seed); picked up by _run (the CLI's --policy).
RUNNERS = {OPTIMUM: _optimum_runner, OME_REPACK: _repack_runner, OME_PREEMPT_REPACK: _preempt_repack_runner,
           OME_RECLAIM: _reclaim_runner}

__all__ = ["OME_PREEMPT_REPACK", "OME_RECLAIM", "OME_REPACK", "OPTIMUM", "RECLAIM_GAIN_MILLI", "RUNNERS", "level_prefixes",
           "optimum_levels", "optimum_replay", "replay_with_repack", "solve_levels"]
