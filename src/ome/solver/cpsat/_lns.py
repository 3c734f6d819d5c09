"""Large-neighbourhood search: re-solve small windows of nodes exactly, keep what improves.

A window is a handful of nodes: nodes with idle GPU (where allocation is lost), partly of one
node type so that pods can trade places, plus a few busy nodes of that type (whose pods may
be swapped for waiting ones). The window model (``_window``) re-packs the window's pods and
candidate waiting pods; the answer replaces the window only if it is no worse.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._settings import SolverSettings
from ._shapes import PodShape, fits_type
from ._state import PackingState
from ._window import Mode, WindowModel


@dataclass(slots=True)
class LnsStats:
    windows: int = 0
    improved: int = 0
    moves: int = 0  # KEEP: pods moved (summed over windows, an upper bound on distinct moves)
    solve_seconds: float = 0.0
    window_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def pick_window(
    state: PackingState, rng: np.random.Generator, size: int, type_of: Sequence[int], cpu_rich: bool = False
) -> list[int]:
    """Seed on a node with idle GPU (weighted by idle milli); fill with idle nodes (mostly of the
    seed's type) and busy nodes of the seed's type."""
    free = state.arrays.gpu_free.sum(axis=1)
    idle = np.flatnonzero(free > 0)
    if idle.size == 0:
        return []
    seed = int(rng.choice(idle, p=free[idle] / free[idle].sum()))
    t = type_of[seed]
    same = np.array([i for i in range(len(type_of)) if type_of[i] == t and i != seed], np.int64)
    same_idle = same[free[same] > 0] if same.size else same
    same_busy = same[free[same] == 0] if same.size else same
    window = [seed]

    def take(candidates: np.ndarray, k: int) -> None:
        cand = np.setdiff1d(candidates, np.array(window, np.int64))
        if cand.size and k > 0:
            window.extend(int(i) for i in rng.choice(cand, size=min(k, cand.size), replace=False))

    take(same_idle, size // 2 - 1)
    if cpu_rich:
        # Nodes with the most idle CPU, any type: they can take CPU-hungry pods off the seed's
        # nodes in exchange for CPU-light ones (the swap that un-strands GPUs).
        rich = np.argsort(-state.arrays.cpu_free, kind="stable")[: max(16, len(type_of) // 10)]
        rich = rich[state.arrays.gpu_count[rich] > 0]
        take(rich, size // 4 + 1)
    else:
        take(idle, size // 4)
    take(same_busy, size - len(window))
    take(idle, size - len(window))
    return sorted(window)


def run_lns(
    state: PackingState,
    waiting: set[int],
    settings: SolverSettings,
    deadline: float,
    *,
    mode: Mode = Mode.FREE,
    budget: int | None = None,
    window_size: Callable[[int], int] = lambda gpus: 8 if gpus >= 8 else (12 if gpus >= 4 else 24),
    window_seconds: float = 0.3,
    rng: np.random.Generator | None = None,
    type_of: Sequence[int] | None = None,
    stop: Callable[[], bool] = lambda: False,
    minimum: Mapping[PodShape, int] | None = None,
) -> LnsStats:
    """Improve `state` in place until `deadline` (perf_counter seconds). `waiting`: unplaced pods
    that may be placed (updated in place). KEEP mode never lets total moves exceed `budget`.
    `minimum` (FREE): the number of placed pods of each shape never drops below it."""
    rng = rng or np.random.default_rng(settings.random_seed)
    nodes = state.nodes
    if type_of is None:
        keys: dict[tuple[int, int, str, int, int], int] = {}
        type_of = [keys.setdefault((n.cpu_milli, n.memory_mib, n.gpu_model, n.gpu_count, n.gpu_memory_mib), len(keys))
                   for n in nodes]
    stats = LnsStats()
    while not stop():
        left = deadline - time.perf_counter()
        if left < 0.05:
            break
        if mode is Mode.KEEP and budget is not None and stats.moves >= budget:
            break
        if not waiting and mode is Mode.FREE:
            break
        seed_probe = pick_window(state, rng, 1, type_of)
        if not seed_probe:
            break
        size = window_size(nodes[seed_probe[0]].gpu_count)
        window = pick_window(state, rng, size, type_of, cpu_rich=mode is Mode.KEEP and stats.windows % 2 == 0)
        kinds = {type_of[i] for i in window}
        reps = [nodes[next(i for i in window if type_of[i] == t)] for t in kinds]
        fit_cache: dict[object, bool] = {}
        pool = []
        for p in waiting:
            s = state.shapes[p]
            ok = fit_cache.get(s)
            if ok is None:
                ok = fit_cache[s] = any(fits_type(s, n) for n in reps)
            if ok:
                pool.append(p)
        if mode is Mode.FREE and not pool:
            continue
        current = state.window_contents(window)
        before = sum(state.pods[p].gpu_demand_milli for p in current)
        min_counts = None
        if minimum:
            placed_now = Counter(state.shapes[p] for p in state.placement)
            here = Counter(state.shapes[p] for p in current)
            min_counts = {s: here[s] - (placed_now[s] - minimum[s]) for s in here if s in minimum}
        model = WindowModel(
            nodes, state.pods, window, current, pool, mode=mode,
            budget=None if budget is None else budget - stats.moves, shapes=state.shapes, min_counts=min_counts,
        )
        t0 = time.perf_counter()
        answer = model.solve(settings.solver(min(window_seconds, left)))
        stats.solve_seconds += time.perf_counter() - t0
        stats.windows += 1
        stats.window_status[answer.status] += 1
        if answer.status == "UNKNOWN":
            continue
        whole = len(window) >= int((state.arrays.gpu_count > 0).sum())
        if whole and answer.status == "OPTIMAL" and answer.milli == before and len(answer.placements) == len(current):
            break  # the window is the whole cluster and nothing better exists
        placed_before = len(current)
        better = answer.milli > before or (answer.milli == before and len(answer.placements) > placed_before)
        if not better and not (mode is Mode.FREE and answer.milli == before):
            continue
        state.replace_window(window, answer.placements)
        for p in current:
            if p not in answer.placements:
                waiting.add(p)
        for p in answer.placements:
            waiting.discard(p)
        stats.moves += answer.moves
        if better:
            stats.improved += 1
        if whole and answer.status == "OPTIMAL":
            break  # solved the whole cluster exactly
    return stats
