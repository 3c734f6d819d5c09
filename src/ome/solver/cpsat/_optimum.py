"""The offline optimum: the most GPU milli the arrived pods allow when packed all at once.

Passes, in order (each checks the time left):
  1. trivial bound: min(GPU capacity, GPU demand of pods that fit some node);
  2. start: the caller's placement (for example the previous arrived level's), then a
     best-fit-decreasing fill of the other GPU pods;
  3. aggregated bound (``_bound``): CP-SAT on shape x node-type counts with DFF cuts;
  4. column generation (``_columns``) seeded with the start's node patterns (with a warm
     start, those of a cold best-fit-decreasing fill too); its LP duals
     bound the optimum (exactly priced, ``lagrangian_bound``) when the generation has not
     converged, and its integer master replaces the start when it packs more;
  5. large-neighbourhood search (``_lns``) over windows of nodes until the time is spent;
  6. the packing is replayed into ome.domain.ClusterState (the exact reference) before return.

CPU-only pods are left out: they add no GPU milli and only take CPU and memory; except, with
`keep_started`, those the start places, which must then be served too (on any node).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ome.domain import MILLI, Assignment, InvalidInput, Node, PodRequest

from ._bound import aggregate_bound_lp
from ._columns import ColumnGeneration, Pattern
from ._greedy import fill
from ._lns import run_lns
from ._settings import SolverSettings
from ._shapes import NodeType, PodShape, fits_type, node_types
from ._state import PackingState, verify
from ._window import Mode

OPTIMAL = "OPTIMAL"
FEASIBLE = "FEASIBLE"
# Of the time left after the aggregated bound, for column generation; more when its duals are
# to prove a bound (they must be close to optimal for the bound to be tight).
COLUMN_SHARE, COLUMN_SHARE_PROVING = 0.45, 0.55
LAGRANGIAN_SHARE = 0.5  # of the time left after column generation, for the bound from its duals


@dataclass(frozen=True, slots=True)
class OptimumResult:
    """allocated_milli: GPU milli of `assignments` (verified feasible); bound_milli: proven upper
    bound on any packing's GPU milli; status OPTIMAL when they are equal, else FEASIBLE."""

    allocated_milli: int
    bound_milli: int
    assignments: list[Assignment]
    status: str
    seconds: float
    capacity_milli: int = 0
    demand_milli: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def gap_milli(self) -> int:
        return self.bound_milli - self.allocated_milli


def _start_indices(pods: Sequence[PodRequest], start: Sequence[Assignment]) -> list[tuple[int, Assignment]]:
    """Match each start assignment to a distinct index of an equal pod in `pods`."""
    free: dict[PodRequest, list[int]] = defaultdict(list)
    for i in range(len(pods) - 1, -1, -1):
        free[pods[i]].append(i)
    out = []
    for a in start:
        stack = free.get(a.pod)
        if not stack:
            raise InvalidInput(f"start assignment for {a.pod.name!r}, which is not among the pods")
        out.append((stack.pop(), a))
    return out


def _patterns_of(state: PackingState, types: Sequence[NodeType]) -> list[Pattern]:
    type_of = {i: ti for ti, t in enumerate(types) for i in t.members}
    out = []
    for node, members in state.on_node.items():
        if members and node in type_of:
            out.append(Pattern(type_of[node], tuple(sorted((state.shapes[p], state.placement[p][1]) for p in members))))
    return out


def _from_patterns(
    state: PackingState, packed: Sequence[int], types: Sequence[NodeType], patterns: Sequence[Pattern], counts: Sequence[int]
) -> PackingState:
    fresh = PackingState(state.nodes, state.pods)
    by_shape: dict[object, list[int]] = defaultdict(list)
    for p in packed:
        by_shape[state.shapes[p]].append(p)
    next_node = [0] * len(types)
    for pattern, count in zip(patterns, counts):
        t = types[pattern.type_index]
        for _ in range(count):
            node = t.members[next_node[pattern.type_index]]
            next_node[pattern.type_index] += 1
            for shape, gpus in pattern.layout:
                fresh.place(by_shape[shape].pop(), (node, gpus))
    return fresh


def _short(state: PackingState, minimum: Counter[PodShape] | None) -> set[PodShape]:
    """Shapes with fewer placed pods than `minimum` asks for."""
    if not minimum:
        return set()
    have = Counter(state.shapes[p] for p in state.placement)
    return {s for s, k in minimum.items() if have[s] < k}


def solve_optimum(
    nodes: Sequence[Node],
    pods: Sequence[PodRequest],
    settings: SolverSettings = SolverSettings(),
    *,
    start: Sequence[Assignment] | None = None,
    known_bound: int | None = None,
    keep_started: bool = False,
    bound_from_duals: bool = True,
) -> OptimumResult:
    """Most GPU milli allocatable by packing `pods` at once on empty `nodes`, with a proven bound.

    `start`: an optional feasible placement of some of these pods (a warm start). The time
    limit is settings.max_time_in_seconds for the whole call. `known_bound`: a bound the
    caller already proved for these pods (the aggregated LP is then not solved again).
    `keep_started`: the packing must hold, for every pod shape, at least as many pods as
    `start` places (a rescheduler's target: running pods may move but not be dropped),
    CPU-only shapes included.
    `bound_from_duals`: spend part of the time proving a tighter bound from the column
    generation's duals; a caller that only wants the packing (the repack's target) turns it off.
    """
    t0 = time.perf_counter()
    budget = settings.max_time_in_seconds
    deadline = t0 + budget
    stats: dict[str, float] = {}
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    state = PackingState(nodes, pods)
    gpu_pods = [i for i, p in enumerate(pods) if p.num_gpu]
    started = _start_indices(pods, start) if start else []
    # The pods the packing may hold: GPU pods, and CPU-only pods only where they must be kept.
    packed = sorted(gpu_pods + [p for p, a in started if keep_started and not a.pod.num_gpu])
    types = node_types(nodes, [i for i, n in enumerate(nodes) if n.gpu_count])
    reps = [t.node() for t in types]
    fits_somewhere = {s: any(fits_type(s, r) for r in reps) for s in {state.shapes[p] for p in packed}}
    demand = sum(pods[p].gpu_demand_milli for p in gpu_pods)
    bound = min(capacity, sum(pods[p].gpu_demand_milli for p in gpu_pods if fits_somewhere[state.shapes[p]]))

    # 2. start + fill
    packable = set(packed)
    for p, a in started:
        if p in packable:
            state.place(p, (a.node, a.gpus))
    minimum = Counter(state.shapes[p] for p in state.placement) if keep_started else None
    waiting = set(fill(state, [p for p in packed if p not in state.placement]))
    stats["start_milli"] = state.milli

    def keeps(candidate: PackingState) -> bool:
        if minimum is None:
            return True
        have = Counter(candidate.shapes[p] for p in candidate.placement)
        return all(have[s] >= k for s, k in minimum.items())

    def done(status: str) -> OptimumResult:
        assignments = state.assignments()
        allocated = verify(nodes, assignments)
        if allocated != state.milli:
            raise AssertionError("packing state and reference allocator disagree")
        best_bound = max(bound, allocated)
        stats["seconds"] = time.perf_counter() - t0
        return OptimumResult(allocated, best_bound, assignments,
                             OPTIMAL if allocated >= best_bound else status, stats["seconds"],
                             capacity, demand, stats)

    if state.milli >= bound:
        return done(OPTIMAL)

    # 3. aggregated bound
    shape_counts = Counter(state.shapes[p] for p in packed if fits_somewhere[state.shapes[p]])
    gpu_counts = Counter({s: k for s, k in shape_counts.items() if s.num_gpu})  # kept CPU-only pods relaxed away
    aggregate = known_bound if known_bound is not None else aggregate_bound_lp(types, gpu_counts)
    bound = min(bound, aggregate)
    stats["aggregate_bound_milli"] = aggregate
    if state.milli >= bound:
        return done(OPTIMAL)

    # 4. column generation seeded with the current packing; then two roundings of its LP:
    #    rounded down + fill, and CP-SAT on the integer master hinted with the better packing
    #    (the rounded one even when it is short of kept pods).
    seeds = _patterns_of(state, types)
    if start:
        # A warm start's nodes are few patterns, and a restricted LP that starts from them alone
        # converges slowly and prices poorly (seed 42 at 100 %: bound 2.62 against 2.96 cold);
        # the greedy packing of all pods adds the varied columns a cold start begins with.
        cold = PackingState(nodes, pods)
        fill(cold, packed)
        seeds += _patterns_of(cold, types)
    left = deadline - time.perf_counter()
    cg = ColumnGeneration(types, shape_counts, settings, minimum=minimum)
    share = COLUMN_SHARE_PROVING if bound_from_duals else COLUMN_SHARE
    lp_value, converged, iterations = cg.generate(share * left, seeds)
    stats.update(cg_iterations=iterations, cg_columns=len(cg.patterns), cg_lp_milli=lp_value)
    if converged:
        bound = min(bound, int(lp_value + 1.0))
    elif bound_from_duals:
        lagrangian = cg.lagrangian_bound(LAGRANGIAN_SHARE * (deadline - time.perf_counter()))
        if lagrangian is not None:
            stats["lagrangian_bound_milli"] = lagrangian
            bound = min(bound, int(math.floor(lagrangian + 1e-6)))
    floor = _from_patterns(state, packed, types, cg.patterns, cg.floor_counts())
    floor_waiting = set(fill(floor, [p for p in packed if p not in floor.placement], first=_short(floor, minimum)))
    stats["cg_floor_fill_milli"] = floor.milli
    hint_state = state
    if floor.milli > state.milli:
        if keeps(floor):
            state, waiting = floor, floor_waiting
        # A floor short of kept pods still guides CP-SAT, which repairs the hint, far better
        # than the start does (cpu250, seed 42, every pod kept, 20 s: 4.03 % unallocated
        # found, against the start's 6.00 with the start as the hint).
        hint_state = floor
    if state.milli < bound:
        counts, integer = cg.integer_master(max(0.1, 0.4 * (deadline - time.perf_counter())), _patterns_of(hint_state, types))
        stats["cg_integer_milli"] = integer
        if integer > state.milli:
            candidate = _from_patterns(state, packed, types, cg.patterns, counts)
            if keeps(candidate):
                state = candidate
                waiting = set(fill(state, [p for p in packed if p not in state.placement]))
    stats["cg_keeps_started"] = float(keeps(state))
    stats["cg_milli"] = state.milli
    if state.milli >= bound:
        return done(OPTIMAL)

    # 5. LNS
    waiting = {p for p in waiting if fits_somewhere[state.shapes[p]]}
    lns = run_lns(state, waiting, settings, deadline, mode=Mode.FREE,
                  rng=np.random.default_rng(settings.random_seed),
                  stop=lambda: state.milli >= bound, minimum=minimum)
    stats.update(lns_windows=lns.windows, lns_improved=lns.improved)
    return done(FEASIBLE)
