"""Target-guided migration: move the cluster toward a better packing within a move budget.

1. Target. The offline optimum (``_optimum``) of the placed + waiting GPU pods and the placed
   CPU-only pods, warm-started from the current placement and obliged to keep every running
   pod (so it packs at least as much, and it leaves the CPU-only pods CPU: where CPU is
   scarce a target that ignored them could not be reached). It is advisory: running pods
   stay where they are unless a chosen conversion moves them. If no conversion can be
   carried out so, the pass is redone with the CPU-only pods pinned to their nodes.
2. Matching. Per node type, each node gets the target node contents that overlap most with
   what it holds (greedy, best overlap first) and they are laid out on the node around the
   pods that stay (same GPUs): a *conversion* of the node, with its leaving pods and the
   (shape, GPUs) slots it offers.
3. Choice (CP-SAT, ``choose``): the set of conversions that places the most waiting GPU
   milli such that every leaving pod finds a slot of its shape in another chosen
   conversion and the leaving pods number at most the budget.
4. Application: the leaving pods are evicted and re-created in their slots, waiting pods
   take the free slots (a rescheduler's evict-then-place). The end state is feasible by
   construction and is replayed through ClusterArrays, which checks every placement.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from ortools.sat.python import cp_model

from ome.domain import InvariantViolation, MILLI, Assignment

from ._greedy import best_fit_node
from ._settings import SolverSettings
from ._shapes import NodeType, PodShape, shape_of
from ._state import PackingState, Placement


def _layout_on(
    state: PackingState, node: int, counts: Mapping[PodShape, int]
) -> tuple[list[int], list[tuple[PodShape, tuple[int, ...]]]] | None:
    """Keep as many of the node's pods as the pattern allows (on their GPUs) and lay the rest
    out best-fit around them, dropping slots that no longer fit (CPU, memory, GPU)."""
    gcount = state.nodes[node].gpu_count
    free = [MILLI] * gcount
    left = dict(counts)
    stays: list[int] = []
    for p in sorted(state.on_node.get(node, ()), key=lambda p: (-state.pods[p].gpu_demand_milli, p)):
        s = state.shapes[p]
        if left.get(s, 0) > 0:
            left[s] -= 1
            stays.append(p)
            for g in state.placement[p][1]:
                free[g] -= s.gpu_milli
    node_obj = state.nodes[node]
    cpu = node_obj.cpu_milli - sum(state.pods[p].cpu_milli for p in stays)
    mem = node_obj.memory_mib - sum(state.pods[p].memory_mib for p in stays)
    if cpu < 0 or mem < 0:
        return None
    arrivals: list[tuple[PodShape, tuple[int, ...]]] = []
    # Biggest GPU share first; a slot that no longer fits (CPU, memory or GPU) is dropped.
    for s in sorted((s for s, k in left.items() if k > 0), key=lambda s: (-s.num_gpu, -s.gpu_milli, s)):
        for _ in range(left[s]):
            if s.cpu_milli > cpu or s.memory_mib > mem:
                break
            if s.is_multi:
                whole = [g for g in range(gcount) if free[g] == MILLI][: s.num_gpu]
                if len(whole) < s.num_gpu:
                    break
                gpus: tuple[int, ...] = tuple(whole)
            elif s.is_single:
                fits = [g for g in range(gcount) if free[g] >= s.gpu_milli]
                if not fits:
                    break
                gpus = (min(fits, key=lambda g: (free[g], g)),)
            else:
                gpus = ()
            for g in gpus:
                free[g] -= s.gpu_milli
            cpu -= s.cpu_milli
            mem -= s.memory_mib
            arrivals.append((s, gpus))
    return stays, arrivals


def _layout_exact(
    state: PackingState, node: int, layout: Sequence[tuple[PodShape, tuple[int, ...]]]
) -> tuple[list[int], list[tuple[PodShape, tuple[int, ...]]]]:
    """The target node's own layout on `node`: pods already on exactly such a slot stay, the
    other slots are arrivals (every pod of the node not staying leaves)."""
    wanted: dict[tuple[PodShape, tuple[int, ...]], int] = Counter(layout)
    stays: list[int] = []
    for p in sorted(state.on_node.get(node, ())):
        key = (state.shapes[p], state.placement[p][1])
        if wanted.get(key, 0) > 0:
            wanted[key] -= 1
            stays.append(p)
    arrivals = [key for key, k in wanted.items() for _ in range(k)]
    return stays, arrivals


def _match(state: PackingState, members: Sequence[int], patterns: Sequence[Counter[PodShape]]) -> dict[int, int]:
    """node -> index into `patterns` (one entry per target node), most overlap first."""
    current = {x: Counter(state.shapes[p] for p in state.on_node.get(x, ())) for x in members}
    distinct: dict[tuple[tuple[PodShape, int], ...], list[int]] = defaultdict(list)
    for k, counts in enumerate(patterns):
        distinct[tuple(sorted(counts.items()))].append(k)
    keys = list(distinct)
    overlap = np.array([[sum(min(c, current[x].get(s, 0)) for s, c in key) for key in keys] for x in members],
                       dtype=np.int64).reshape(len(members), len(keys))
    out: dict[int, int] = {}
    free_nodes = set(range(len(members)))
    while free_nodes and any(distinct.values()):
        alive = np.array([bool(distinct[k]) for k in keys])
        best_j = np.where(alive[None, :], overlap, -1)
        rows = sorted(free_nodes)
        sub = best_j[rows]
        flat = int(np.argmax(sub))
        r, j = divmod(flat, sub.shape[1])
        if sub[r, j] < 0:
            break
        node_row = rows[r]
        out[members[node_row]] = distinct[keys[j]].pop()
        free_nodes.discard(node_row)
    return out


@dataclass(frozen=True, slots=True)
class Conversion:
    """Node `node` becomes `stays` (unchanged pods) plus `arrivals` (shape, GPUs) slots."""

    node: int
    stays: frozenset[int]
    leavers: tuple[int, ...]
    arrivals: tuple[tuple[PodShape, tuple[int, ...]], ...]

    def balance(self, shapes: Sequence[PodShape]) -> Counter[PodShape]:
        """Slots offered minus pods leaving, per shape (CPU-only ones included)."""
        out: Counter[PodShape] = Counter(s for s, _ in self.arrivals)
        out.subtract(shapes[p] for p in self.leavers)
        return out


def choose(
    state: PackingState, convs: Sequence[Conversion], waiting: set[int], budget: int, settings: SolverSettings, seconds: float
) -> list[Conversion]:
    """Which conversions to carry out (CP-SAT):

        x[X] in {0,1};  net_s = sum_X x[X] (arrivals_Xs - leavers_Xs) >= 0   (moved pods land)
        0 <= new_s <= min(waiting_s, net_s)                                  (waiting pods placed)
        sum_X x[X] |leavers_X| <= budget
        maximise  W * sum_s u_s k_s new_s + sum_s new_s - sum_X x[X] |leavers_X|
    """
    if not convs or budget <= 0:
        return []
    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x[{c.node}]") for c in convs]
    net: dict[PodShape, list[tuple[int, cp_model.IntVar]]] = defaultdict(list)
    for c, v in zip(convs, x):
        for sh, d in c.balance(state.shapes).items():
            if d:
                net[sh].append((d, v))
    waiting_counts = Counter(state.shapes[p] for p in waiting)
    gained = []
    for sh, terms in net.items():
        expr = sum(d * v for d, v in terms)
        model.add(expr >= 0)
        cap = waiting_counts.get(sh, 0)
        if cap:
            new = model.new_int_var(0, cap, f"new[{sh.cpu_milli}c,{sh.num_gpu}x{sh.gpu_milli}]")
            model.add(new <= expr)
            gained.append((sh, new))
    moves = sum(len(c.leavers) * v for c, v in zip(convs, x))
    model.add(moves <= budget)
    weight = len(waiting) + budget + 1
    model.maximize(weight * sum(sh.demand_milli * n for sh, n in gained) + sum(n for _, n in gained) - moves)
    hint = _greedy_subset(state, convs, budget)
    for k, v in enumerate(x):
        model.add_hint(v, int(k in hint))
    solver = settings.solver(seconds)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return []
    return [c for c, v in zip(convs, x) if solver.value(v)]


def _greedy_subset(state: PackingState, convs: Sequence[Conversion], budget: int) -> set[int]:
    """A feasible choice to hint the model: all conversions, then drop the ones that take most
    of a shape whose pods would be left without slots, then the ones with the most leaving
    pods until the budget holds."""
    chosen = set(range(len(convs)))
    balances = [c.balance(state.shapes) for c in convs]
    net: Counter[PodShape] = Counter()
    for b in balances:
        net.update(b)
    moves = sum(len(c.leavers) for c in convs)
    while chosen:
        short = [sh for sh, v in net.items() if v < 0]
        if short:
            sh = short[0]
            k = min(chosen, key=lambda k: (balances[k].get(sh, 0), k))
        elif moves > budget:
            k = max(chosen, key=lambda k: (len(convs[k].leavers), k))
        else:
            break
        chosen.discard(k)
        net.subtract(balances[k])
        moves -= len(convs[k].leavers)
    return chosen


def apply(state: PackingState, chosen: Sequence[Conversion], waiting: set[int]) -> int | None:
    """Carry out the conversions at once (movers are evicted, then re-created in their slots,
    as a rescheduler does; CPU-only leavers beyond their shape's slots go back to their node if
    it still has room, else best fit elsewhere). Returns the number of moved pods, or None
    (state unchanged) when such a CPU-only leaver finds no room anywhere."""
    leavers: dict[PodShape, list[int]] = defaultdict(list)
    homeless: list[int] = []
    slots: dict[PodShape, list[Placement]] = defaultdict(list)
    for c in chosen:
        for p in c.leavers:
            leavers[state.shapes[p]].append(p)
        for sh, gpus in c.arrivals:
            slots[sh].append((c.node, gpus))
    waiting_by_shape: dict[PodShape, list[int]] = defaultdict(list)
    for p in sorted(waiting):
        waiting_by_shape[state.shapes[p]].append(p)
    plan: list[tuple[int, Placement]] = []
    for sh, movers in leavers.items():
        room = len(slots.get(sh, ()))
        if room < len(movers):
            if sh.num_gpu:
                raise AssertionError("conversion plan leaves a running pod without a slot")
            homeless += movers[room:]
            del movers[room:]
    for sh, places in slots.items():
        movers = leavers.get(sh, [])
        fresh = waiting_by_shape.get(sh, [])[: len(places) - len(movers)]
        plan += list(zip(movers + fresh, places))
    moved = [p for ps in leavers.values() for p in ps] + homeless
    before = {p: state.placement[p] for p in moved}
    for p in moved:
        state.remove(p)
    done: list[int] = []

    def roll_back() -> None:
        for q in done:
            if q in state.placement:
                state.remove(q)
        for q, where in before.items():
            if q in state.placement:
                state.remove(q)
        for q, where in before.items():
            state.place(q, where)

    try:
        for p, where in sorted(plan, key=lambda pw: (-state.pods[pw[0]].num_gpu, pw[0])):
            state.place(p, where)
            done.append(p)
    except InvariantViolation:
        # A slot of the target layout that this node cannot hold (e.g. a GPU-memory bound
        # shape on a smaller GPU): reject the whole conversion, as when a pod finds no home.
        roll_back()
        return None
    for p in sorted(homeless, key=lambda p: (-state.pods[p].cpu_milli, p)):
        home = before[p]
        if state.arrays.fits_mask_one(state.pods[p], home[0]):
            state.place(p, home)
        else:
            node = best_fit_node(state.arrays, state.pods[p])
            if node is None:
                roll_back()
                return None
            state.place(p, (node, ()))
        done.append(p)
    for p, _ in plan:
        waiting.discard(p)
    return sum(1 for p in moved if state.placement[p] != before[p])


def migrate(
    state: PackingState,
    waiting: set[int],
    types: Sequence[NodeType],
    budget: int,
    settings: SolverSettings,
    deadline: float,
    bound: int | None = None,
) -> int:
    """Move toward an optimum-style target; returns moves made (<= budget).

    The target comes from ``solve_optimum`` over placed + waiting GPU pods and the placed
    CPU-only pods, warm-started from the current placement and keeping every running pod, so
    it never packs less. CPU-only pods take the target's slots like GPU pods; if no choice of
    conversions can be carried out so, the pass is redone with them pinned to their nodes.
    """
    from ._optimum import solve_optimum  # the optimum imports this module's siblings only

    chosen_pods = [p for p in range(len(state.pods))
                   if p in state.placement or (p in waiting and state.pods[p].num_gpu)]
    sub = [state.pods[p] for p in chosen_pods]
    start = [Assignment(state.pods[p], *state.placement[p]) for p in chosen_pods if p in state.placement]
    seconds = deadline - time.perf_counter()
    if seconds <= 0.5:
        return 0
    target = solve_optimum(state.nodes, sub, replace(settings, max_time_in_seconds=0.65 * seconds), start=start,
                           known_bound=bound, keep_started=True, bound_from_duals=False)
    if target.allocated_milli <= state.milli:
        return 0
    target_nodes: dict[int, list[tuple[PodShape, tuple[int, ...]]]] = defaultdict(list)
    for a in target.assignments:
        target_nodes[a.node].append((shape_of(a.pod), a.gpus))

    # First with CPU-only pods moving into the target's slots, else with them pinned.
    for cpu_only_move in (True, False):
        convs = _conversions(state, types, target_nodes, cpu_only_move)
        left = deadline - time.perf_counter()
        chosen = choose(state, convs, waiting, budget, settings, max(0.1, left if not cpu_only_move else 0.7 * left))
        moves = apply(state, chosen, waiting)
        if moves is not None:
            return moves
    return 0


def _conversions(
    state: PackingState,
    types: Sequence[NodeType],
    target_nodes: Mapping[int, Sequence[tuple[PodShape, tuple[int, ...]]]],
    cpu_only_move: bool,
) -> list[Conversion]:
    """Match target node contents to nodes (per type) and lay each out around its staying pods
    (or, when that would drop slots, in the target node's own layout)."""
    convs: list[Conversion] = []
    for t in types:
        layouts = [target_nodes[x] for x in t.members if target_nodes.get(x)]
        targets = [Counter(sh for sh, _ in lay) for lay in layouts]
        matched = _match(state, t.members, targets)
        for x in t.members:
            want = Counter(targets[matched[x]]) if x in matched else Counter()
            if not cpu_only_move:
                want = Counter({s: k for s, k in want.items() if s.num_gpu})  # the target's CPU-only slots go
                for p in state.on_node.get(x, ()):
                    if not state.pods[p].num_gpu:
                        want[state.shapes[p]] += 1  # CPU-only pods stay put
            laid = _layout_on(state, x, want)
            if laid is None:
                continue  # cannot reach this pattern around the staying pods: keep the node as is
            if cpu_only_move and x in matched and len(laid[0]) + len(laid[1]) < sum(want.values()):
                laid = _layout_exact(state, x, layouts[matched[x]])
            stays, arrivals = laid
            kept = frozenset(stays)
            leavers = tuple(sorted(p for p in state.on_node.get(x, ()) if p not in kept))
            if arrivals or leavers:
                convs.append(Conversion(x, kept, leavers, tuple(arrivals)))
    return convs
