"""The global repack a rescheduler runs: move a bounded number of pods so waiting pods fit.

Passes, in order:
  1. load: replay the current assignments into a PackingState (raises if infeasible);
  2. place waiting pods that fit as things are (best fit, zero moves);
  3. bound: min(GPU capacity, aggregated LP bound over placed + waiting GPU pods): what no
     repack, with any number of moves, can beat; the gap is measured against it;
  4. target-guided migration (``_switch``): an optimum-style target for placed + waiting GPU
     pods, matched node by node to the current contents; CP-SAT chooses the node
     conversions that place the most waiting GPU milli with at most `budget_moves` moved
     pods; then waiting pods that now fit are placed (zero moves);
  5. large-neighbourhood search in KEEP mode (``_window``) with the moves and time left:
     windows of nodes with idle GPU (plus CPU-rich and busy nodes) re-solved exactly; a
     placed pod stays on its node and GPUs or moves inside the window;
  6. moves are the pods whose (node, GPUs) changed; no placed pod is ever left unplaced;
     the result is replayed through ome.domain.ClusterState.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ome.domain import MILLI, Assignment, Node, PodRequest

from ._bound import aggregate_bound_lp
from ._switch import migrate
from ._greedy import fill
from ._lns import run_lns
from ._settings import SolverSettings
from ._shapes import fits_type, node_types
from ._state import PackingState, verify
from ._window import Mode


@dataclass(frozen=True, slots=True)
class Move:
    """One pod relocated by the repack (node indices as in Assignment.node)."""

    pod: PodRequest
    from_node: int
    to_node: int
    gpus: tuple[int, ...]  # on to_node
    from_gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RepackResult:
    """new_assignments: every pod placed after the repack (all previously placed pods included);
    moves: the pods among them whose node or GPUs changed (len(moves) <= budget);
    allocated_before/after: GPU milli; bound: no repack of these pods can allocate more;
    placed: waiting pods the repack placed (moved or not)."""

    new_assignments: list[Assignment]
    moves: list[Move]
    allocated_before: int
    allocated_after: int
    bound: int
    seconds: float
    placed: list[PodRequest] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def gap_milli(self) -> int:
        return self.bound - self.allocated_after


def repack(
    nodes: Sequence[Node],
    assignments: Sequence[Assignment],
    budget_moves: int,
    settings: SolverSettings = SolverSettings(),
    *,
    pending: Sequence[PodRequest] = (),
    window_seconds: float = 0.25,
) -> RepackResult:
    """Repack `assignments` on `nodes`, moving at most `budget_moves` pods, to place `pending` pods
    and raise allocated GPU milli. Runs for at most settings.max_time_in_seconds (plus the
    final verification). Inputs are not mutated."""
    if budget_moves < 0:
        raise ValueError("budget_moves must be >= 0")
    t0 = time.perf_counter()
    deadline = t0 + settings.max_time_in_seconds
    pods = [a.pod for a in assignments] + list(pending)
    state = PackingState(nodes, pods)
    for p, a in enumerate(assignments):
        state.place(p, (a.node, tuple(a.gpus)))
    before = state.milli
    original = dict(state.placement)
    waiting_idx = list(range(len(assignments), len(pods)))

    # 2. zero-move placements
    waiting = set(fill(state, waiting_idx))

    # 3. bound over every GPU pod, placed or waiting
    types = node_types(nodes, [i for i, n in enumerate(nodes) if n.gpu_count])
    reps = [t.node() for t in types]
    counts = Counter(state.shapes[p] for p in range(len(pods)) if pods[p].num_gpu)
    usable = {s: c for s, c in counts.items() if any(fits_type(s, r) for r in reps)}
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    bound = min(capacity, aggregate_bound_lp(types, usable)) if usable else 0
    bound = max(bound, state.milli)

    # 4. target-guided migration
    switch_moves = 0
    if budget_moves > 0 and any(pods[p].num_gpu for p in waiting):
        switch_moves = migrate(state, waiting, types, budget_moves, settings, t0 + 0.85 * settings.max_time_in_seconds,
                               bound=bound)
        fill(state, sorted(waiting))
        waiting = {p for p in waiting if p not in state.placement}

    # 5. LNS with the moves and time left
    stats = run_lns(
        state, waiting, settings, deadline, mode=Mode.KEEP, budget=budget_moves - switch_moves,
        window_seconds=window_seconds, rng=np.random.default_rng(settings.random_seed),
        stop=lambda: state.milli >= bound and not waiting,
    ) if budget_moves - switch_moves > 0 and waiting else None

    # 6. read off moves; verify
    moves = [
        Move(pods[p], original[p][0], state.placement[p][0], state.placement[p][1], original[p][1])
        for p in sorted(original) if state.placement.get(p) != original[p]
    ]
    if any(p not in state.placement for p in original):
        raise AssertionError("repack evicted a placed pod")
    if len(moves) > budget_moves:
        raise AssertionError(f"repack moved {len(moves)} pods with a budget of {budget_moves}")
    new_assignments = state.assignments()
    after = verify(nodes, new_assignments)
    placed = [pods[p] for p in waiting_idx if p in state.placement]
    info: dict[str, float] = {"waiting_before": len(waiting_idx), "waiting_after": len(waiting),
                              "switch_moves": switch_moves}
    if stats is not None:
        info.update(windows=stats.windows, improved=stats.improved, solve_seconds=stats.solve_seconds)
    return RepackResult(new_assignments, moves, before, after, bound, time.perf_counter() - t0, placed, info)
