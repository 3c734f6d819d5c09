"""Column generation over node patterns: a near-optimal packing and, when it converges, a bound.

Notation. A pattern p of node type t is a multiset of pod shapes (a_ps pods of shape s)
that fits one node of type t, GPU by GPU; c_p = sum_s k_s u_s a_ps is its GPU milli.

Master (LP, solved by GLOP for its duals; its integer version by CP-SAT):

    maximise   sum_{t,p} c_p y_tp
    subject to sum_{t,p} a_ps y_tp <= d_s      (pods of shape s)        dual pi_s >= 0
               sum_p y_tp <= n_t               (nodes of type t)        dual mu_t >= 0
               y_tp >= 0 (integer in the integer master)

Pricing for type t: max_p sum_s (k_s u_s - pi_s) a_ps over one node's feasible packings
(``_packing.add_node_packing``); a pattern whose value exceeds mu_t improves the LP.
Patterns come from greedy fills under several orders, then from CP-SAT when those find none.
Duals are smoothed (pi_sep = a pi_prev + (1 - a) pi_LP), which cuts the tailing-off of
plain column generation; a round that finds nothing at the smoothed duals is repeated at
the LP duals before the loop may stop.

Bound. The LP value is a bound on the true optimum only when no pattern of any type has a
positive reduced cost, proven by CP-SAT (``converged``). Without that proof the duals still
give one (``lagrangian_bound``): for any pi (>= 0 on rows without a minimum), setting mu_t
to the best reduced cost of type t, found by CP-SAT pricing, makes (pi, mu) feasible for the
master's dual, so sum_s pi_s d_s (lo_s where pi_s < 0) + sum_t n_t mu_t bounds every
packing. At the LP duals it is the LP value plus what the columns still miss, which near
the end of the generation is little.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ortools.linear_solver import pywraplp  # type: ignore[import-untyped]
from ortools.sat.python import cp_model

from ome.domain import MILLI, Node

from ._packing import add_node_packing, decode_layout, hint_layout, per_node_limit, sorted_layout
from ._settings import SolverSettings
from ._shapes import NodeType, PodShape, fits_type

DUAL_SCALE = 100  # CP-SAT pricing objective in 1/100 milli
SMOOTHING = 0.5
EXACT_SECONDS = 0.2  # CP-SAT pricing of one type inside the loop (a column, not a proof)
Layout = tuple[tuple[PodShape, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    """One node's contents: `layout` has one (shape, GPU indices) per pod."""

    type_index: int
    layout: Layout


# --- greedy pricing ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Sizes:
    """Shape attributes as plain lists indexed by shape id (hot loops avoid dataclass hashing)."""

    cpu: list[int]
    mem: list[int]
    num_gpu: list[int]
    milli: list[int]
    demand: list[int]

    @staticmethod
    def of(shapes: Sequence[PodShape]) -> _Sizes:
        return _Sizes([s.cpu_milli for s in shapes], [s.memory_mib for s in shapes], [s.num_gpu for s in shapes],
                      [s.gpu_milli for s in shapes], [s.demand_milli for s in shapes])


def _greedy_fill(node: Node, order: Sequence[int], avail: Sequence[int], z: _Sizes) -> list[tuple[int, tuple[int, ...]]]:
    """Add shape ids in `order`, each as often as it fits; single-GPU pods best-fit by GPU."""
    cpu, mem = node.cpu_milli, node.memory_mib
    gcount = node.gpu_count
    free = [MILLI] * gcount
    out: list[tuple[int, tuple[int, ...]]] = []
    for s in order:
        c, m, k, u = z.cpu[s], z.mem[s], z.num_gpu[s], z.milli[s]
        for _ in range(avail[s]):
            if c > cpu or m > mem:
                break
            if k > 1:
                whole = [g for g in range(gcount) if free[g] == MILLI][:k]
                if len(whole) < k:
                    break
                gpus: tuple[int, ...] = tuple(whole)
            elif k == 1:
                best, best_free = -1, MILLI + 1
                for g in range(gcount):
                    f = free[g]
                    if u <= f < best_free:
                        best, best_free = g, f
                if best < 0:
                    break
                gpus = (best,)
            else:
                gpus = ()
            for g in gpus:
                free[g] -= u
            cpu -= c
            mem -= m
            out.append((s, gpus))
    return out


def greedy_layouts(node: Node, ids: Sequence[int], values: Sequence[float], avail: Sequence[int],
                   z: _Sizes) -> list[list[tuple[int, tuple[int, ...]]]]:
    """Greedy fills under five orders: value per normalised size (sum and max), per GPU milli,
    per CPU, and absolute value. Only shape ids in `ids` with a positive value take part."""
    cand = [s for s in ids if values[s] > 1e-9 and avail[s] > 0]
    if not cand:
        return []
    C, M, G = max(node.cpu_milli, 1), max(node.memory_mib, 1), max(node.gpu_count * MILLI, 1)
    size_sum = {s: z.cpu[s] / C + z.demand[s] / G + 0.5 * z.mem[s] / M + 1e-9 for s in cand}
    size_max = {s: max(z.cpu[s] / C, z.demand[s] / G, z.mem[s] / M) + 1e-9 for s in cand}
    keys = [
        lambda s: values[s] / size_sum[s],
        lambda s: values[s] / size_max[s],
        lambda s: values[s] / (z.demand[s] + 1e-9),
        lambda s: values[s] / (z.cpu[s] + 1.0),
        lambda s: values[s],
    ]
    out = []
    for key in keys:
        layout = _greedy_fill(node, sorted(cand, key=lambda s: (-key(s), s)), avail, z)
        if layout:
            out.append(layout)
    return out


# --- exact pricing ----------------------------------------------------------------------

def exact_pattern(
    node: Node,
    values: Mapping[PodShape, int],
    avail: Mapping[PodShape, int],
    settings: SolverSettings,
    seconds: float,
    hint: Layout | None = None,
) -> tuple[Layout | None, int, bool]:
    """max sum values[s] * a_s over one node's packings: (best layout or None, upper bound, optimal)."""
    ubs = {s: avail.get(s, 0) for s, v in values.items() if v > 0 and fits_type(s, node)}
    if not any(ubs.values()):
        return (), 0, True
    model = cp_model.CpModel()
    nv = add_node_packing(model, node, ubs, symmetry=True)
    model.maximize(sum(values[s] * v for s, v in nv.n.items()))
    if hint:
        hint_layout(model, nv, sorted_layout([(s, g) for s, g in hint if s in nv.n], node.gpu_count))
    solver = settings.solver(seconds)
    status = solver.solve(model)
    solved = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    proven = solver.best_objective_bound
    # Stopped before any solution (UNKNOWN), CP-SAT reports a bound of 0, which bounds nothing;
    # then, or without a finite bound, every pod of positive value on the node bounds any packing.
    if solved and math.isfinite(proven):
        ub = int(math.floor(proven + 1e-6))
    else:
        ub = sum(values[s] * k for s, k in ubs.items())
    if not solved:
        return None, ub, False
    layout = tuple(decode_layout(solver, nv))
    if status == cp_model.OPTIMAL:
        return layout, int(solver.objective_value + 0.5), True
    return layout, ub, False


def _per_gpu_bound(node: Node, values: Mapping[PodShape, int]) -> int:
    """A quick upper bound on exact_pattern's value: CPU and memory ignored, every GPU filled
    on its own by an unbounded knapsack (a k-GPU pod counted as k items of value/k)."""
    items = [(s.gpu_milli if s.num_gpu == 1 else MILLI, v / s.num_gpu)
             for s, v in values.items() if v > 0 and s.num_gpu and fits_type(s, node)]
    best = [0.0] * (MILLI + 1)
    for c in range(1, MILLI + 1):
        best[c] = max([best[c - 1]] + [best[c - w] + v for w, v in items if w <= c])
    # A CPU-only pod takes no GPU: it can be worth something only as a forced (minimum) row, and
    # then as many as its CPU or memory alone allow are counted.
    cpu_only = sum(v * per_node_limit(s, node) for s, v in values.items() if v > 0 and not s.num_gpu and fits_type(s, node))
    return math.ceil(node.gpu_count * best[MILLI] - 1e-9) + cpu_only


# --- the column generation --------------------------------------------------------------

class LpFailed(RuntimeError):
    """GLOP returned no optimal restricted master (ABNORMAL is seen on degenerate masters)."""


class ColumnGeneration:
    """Restricted master + pricing loop: generate(), then floor_counts() or integer_master()."""

    def __init__(
        self,
        types: Sequence[NodeType],
        demand: Mapping[PodShape, int],
        settings: SolverSettings,
        *,
        values: Mapping[PodShape, int] | None = None,
        minimum: Mapping[PodShape, int] | None = None,
    ) -> None:
        """`demand`: pods available per shape; `values`: objective per pod (default: its GPU milli;
        shapes worth 0 are left out unless they have a minimum); `minimum`: pods of a shape that
        must be placed (the rescheduler's already-running pods), which makes those rows ranges."""
        self.types = list(types)
        self.nodes = [t.node() for t in self.types]
        worth = values if values is not None else {s: s.demand_milli for s in demand}
        self.shapes = sorted(s for s, d in demand.items() if d > 0 and (worth.get(s, 0) > 0 or (minimum or {}).get(s, 0) > 0))
        self.id = {s: i for i, s in enumerate(self.shapes)}
        self.demand = [demand[s] for s in self.shapes]
        self.value = [worth[s] for s in self.shapes]
        self.minimum = [min(self.demand[i], (minimum or {}).get(s, 0)) for i, s in enumerate(self.shapes)]
        self.sizes = _Sizes.of(self.shapes)
        self.fits = [[i for i, s in enumerate(self.shapes) if fits_type(s, n)] for n in self.nodes]
        self.settings = settings
        self.exact_seconds = EXACT_SECONDS
        self.patterns: list[Pattern] = []
        self.pattern_counts: list[dict[int, int]] = []
        self.pattern_milli: list[int] = []
        self.pattern_value: list[int] = []
        self._seen: set[tuple[int, tuple[int, ...]]] = set()
        self._key_index: dict[tuple[int, tuple[int, ...]], int] = {}
        self._lp_solved = False  # the LP's solution matches the columns (floor_counts may read it)
        self.last_pi: list[float] | None = None  # duals of the last solved LP (for lagrangian_bound)
        self.lp = pywraplp.Solver.CreateSolver("GLOP")
        self.rows = [self.lp.RowConstraint(lo, d, f"d{i}") for i, (lo, d) in enumerate(zip(self.minimum, self.demand))]
        self.node_rows = [self.lp.Add(self.lp.Sum([]) <= t.count, f"n{ti}") for ti, t in enumerate(self.types)]
        self.lp.Maximize(self.lp.Sum([]))
        self.columns: list[pywraplp.Variable] = []

    def add_ids(self, ti: int, layout: Sequence[tuple[int, tuple[int, ...]]]) -> bool:
        counts: dict[int, int] = {}
        for s, _ in layout:
            counts[s] = counts.get(s, 0) + 1
        key = (ti, tuple(sorted(counts.items())))
        key_flat = (ti, tuple(x for kv in key[1] for x in kv))
        if not layout or key_flat in self._seen:
            return False
        self._seen.add(key_flat)
        self._key_index[key_flat] = len(self.patterns)
        self.patterns.append(Pattern(ti, tuple((self.shapes[s], g) for s, g in layout)))
        self.pattern_counts.append(counts)
        milli = sum(self.sizes.demand[s] * a for s, a in counts.items())
        self.pattern_milli.append(milli)
        worth = sum(self.value[s] * a for s, a in counts.items())
        self.pattern_value.append(worth)
        var = self.lp.NumVar(0, self.types[ti].count, f"y{len(self.columns)}")
        for s, a in counts.items():
            self.rows[s].SetCoefficient(var, a)
        self.node_rows[ti].SetCoefficient(var, 1)
        self.lp.Objective().SetCoefficient(var, worth)
        self.columns.append(var)
        return True

    def add(self, pattern: Pattern) -> bool:
        if any(s not in self.id for s, _ in pattern.layout):
            return False
        return self.add_ids(pattern.type_index, [(self.id[s], g) for s, g in pattern.layout])

    def _index_of(self, pattern: Pattern) -> int | None:
        counts: dict[int, int] = {}
        for s, _ in pattern.layout:
            if s not in self.id:
                return None
            counts[self.id[s]] = counts.get(self.id[s], 0) + 1
        key = (pattern.type_index, tuple(x for kv in sorted(counts.items()) for x in kv))
        return self._key_index.get(key)

    def _solve_lp(self) -> tuple[float, list[float], list[float]]:
        status = self.lp.Solve()
        if status != pywraplp.Solver.OPTIMAL:
            raise LpFailed(f"restricted master LP status {status}")
        # A row with a lower bound may have a negative dual (the pod must be placed).
        pi = [r.dual_value() if lo > 0 else max(0.0, r.dual_value()) for r, lo in zip(self.rows, self.minimum)]
        mu = [max(0.0, r.dual_value()) for r in self.node_rows]
        self.last_pi = pi
        return self.lp.Objective().Value(), pi, mu

    def _avail(self, ti: int) -> list[int]:
        out = [0] * len(self.shapes)
        for s in self.fits[ti]:
            out[s] = self.demand[s]
        return out

    def _price_round(self, pi: Sequence[float], mu: Sequence[float], pi_check: Sequence[float],
                     end: float, exact_seconds: float) -> int:
        """Price every type at duals `pi`: greedy fills first; a type where they find nothing gets
        a short CP-SAT pricing. Patterns are added if their reduced cost at the LP duals
        (`pi_check`, `mu`) is positive."""
        added = 0
        values = [self.value[s] - pi[s] for s in range(len(self.shapes))]
        scaled: dict[PodShape, int] | None = None
        for ti, node in enumerate(self.nodes):
            avail = self._avail(ti)
            found = 0
            best: list[tuple[int, tuple[int, ...]]] | None = None
            for layout in greedy_layouts(node, self.fits[ti], values, avail, self.sizes):
                reduced = sum(self.value[s] - pi_check[s] for s, _ in layout) - mu[ti]
                if reduced > 1e-6 and self.add_ids(ti, layout):
                    found += 1
                best = layout if best is None or len(layout) > len(best) else best
            if not found and exact_seconds > 0 and time.perf_counter() + exact_seconds < end:
                if scaled is None:
                    scaled = {s: round(values[i] * DUAL_SCALE) for i, s in enumerate(self.shapes)}
                shape_avail = {self.shapes[i]: avail[i] for i in self.fits[ti]}
                hint = tuple((self.shapes[s], g) for s, g in best) if best else None
                layout_s, _, _ = exact_pattern(node, scaled, shape_avail, self.settings, exact_seconds, hint)
                if layout_s:
                    ids = [(self.id[s], g) for s, g in layout_s]
                    reduced = sum(self.value[s] - pi_check[s] for s, _ in ids) - mu[ti]
                    if reduced > 1e-6 and self.add_ids(ti, ids):
                        found += 1
            added += found
        return added

    def _exact_round(self, pi: Sequence[float], mu: Sequence[float], seconds: float) -> tuple[int, bool]:
        """CP-SAT pricing, biggest types first; (patterns added, every type proven to have none)."""
        pis = [math.ceil(p * DUAL_SCALE - 1e-7) for p in pi]
        scaled = {s: self.value[i] * DUAL_SCALE - pis[i] for i, s in enumerate(self.shapes)}
        added, proven = 0, True
        end = time.perf_counter() + seconds
        order = sorted(range(len(self.types)), key=lambda t: -self.types[t].count * self.types[t].gpu_count)
        for ti in order:
            left = end - time.perf_counter()
            if left <= 0.02:
                return added, False
            avail = {s: self.demand[i] for i, s in enumerate(self.shapes) if i in set(self.fits[ti])}
            layout, ub, optimal = exact_pattern(self.nodes[ti], scaled, avail, self.settings, min(0.3, left))
            if layout and sum(scaled[s] for s, _ in layout) > mu[ti] * DUAL_SCALE + 1e-3:
                added += int(self.add_ids(ti, [(self.id[s], g) for s, g in layout]))
            # pi rounded up only lowers pattern values, so ub <= mu proves nothing improves the LP
            # at pi; at the true LP duals a pattern could still gain up to sum(a_s) / DUAL_SCALE.
            if not optimal or ub > mu[ti] * DUAL_SCALE - self._slack(ti):
                proven = False
        return added, proven

    def lagrangian_bound(self, seconds: float, pi: Sequence[float] | None = None) -> float | None:
        """An upper bound on the GPU milli of any packing these rows allow, from duals `pi`
        (default: the last LP's), or None without duals.

        Each type is priced exactly by CP-SAT, biggest first, with time in proportion to its
        GPUs (a type's looseness counts once per node); a pricing stopped by the clock
        contributes its proven upper bound, so the result is sound whatever the time, only
        looser."""
        if not self.shapes:
            return 0.0
        pi = self.last_pi if pi is None else pi
        if pi is None:
            return None
        if any(p < 0 and lo == 0 for p, lo in zip(pi, self.minimum)):
            raise ValueError("a negative dual needs a row with a minimum")
        pis = [math.ceil(p * DUAL_SCALE - 1e-7) for p in pi]
        scaled = {s: self.value[i] * DUAL_SCALE - pis[i] for i, s in enumerate(self.shapes)}
        total = sum(p * (d if p > 0 else lo) for p, d, lo in zip(pi, self.demand, self.minimum))
        end = time.perf_counter() + seconds
        weight = [t.count * max(t.gpu_count, 1) for t in self.types]
        order = sorted(range(len(self.types)), key=lambda t: -weight[t])
        for k, ti in enumerate(order):
            rest = sum(weight[t] for t in order[k:])
            share = max(0.02, (end - time.perf_counter()) * weight[ti] / rest)
            avail = {self.shapes[i]: self.demand[i] for i in self.fits[ti]}
            _, ub, optimal = exact_pattern(self.nodes[ti], scaled, avail, self.settings, share)
            if not optimal:
                ub = min(ub, _per_gpu_bound(self.nodes[ti], scaled))
            # scaled values are rounded down by under one unit per pod: _slack covers a node's pods.
            total += self.types[ti].count * max(0.0, (ub + self._slack(ti)) / DUAL_SCALE)
        return total

    def _slack(self, ti: int) -> float:
        """Rounding allowance: at most (pods per node) * 1 unit of the scaled duals."""
        node = self.nodes[ti]
        gpu_pods = node.gpu_count * MILLI // max(1, min((m for m in self.sizes.milli if m), default=MILLI))
        cpu_only = [s for s in self.fits[ti] if not self.sizes.num_gpu[s]]
        least_cpu = min((self.sizes.cpu[s] for s in cpu_only), default=0)
        if least_cpu:
            cpu_pods = node.cpu_milli // least_cpu
        else:
            cpu_pods = sum(per_node_limit(self.shapes[s], node) for s in cpu_only)
        return float(gpu_pods + cpu_pods + 1)

    def generate(self, seconds: float, seed_patterns: Sequence[Pattern] = ()) -> tuple[float, bool, int]:
        """Price and re-solve the LP for up to `seconds`: (LP value, converged, iterations).

        `seed_patterns` (for example the nodes of a known packing) become the first columns.
        """
        end = time.perf_counter() + seconds
        for p in seed_patterns:
            self.add(p)
        for ti, node in enumerate(self.nodes):
            for layout in greedy_layouts(node, self.fits[ti], self.value, self._avail(ti), self.sizes):
                self.add_ids(ti, layout)
        iterations, converged = 0, False
        self._lp_solved = False
        try:
            lp_value, pi, mu = self._solve_lp()
        except LpFailed:
            return 0.0, False, 0  # no bound from the LP; the columns still serve integer_master()
        self._lp_solved = True
        smooth = list(pi)
        while time.perf_counter() < end:
            iterations += 1
            smooth = [SMOOTHING * a + (1 - SMOOTHING) * b for a, b in zip(smooth, pi)]
            added = self._price_round(smooth, mu, pi, end, 0.0)
            if not added:
                added = self._price_round(pi, mu, pi, end, self.exact_seconds)
                smooth = list(pi)
            if not added:
                added, converged = self._exact_round(pi, mu, end - time.perf_counter())
                if not added:
                    break
            try:
                lp_value, pi, mu = self._solve_lp()
            except LpFailed:
                # Stop pricing: the last LP value bounded a smaller master only, so it proves
                # nothing now, and its solution no longer matches the columns.
                self._lp_solved, converged = False, False
                break
        return lp_value, converged, iterations

    def floor_counts(self) -> list[int]:
        """The last LP solution rounded down: a feasible (partial) integer solution.

        Valid only right after generate() (columns added later would invalidate the LP); all
        zeros when generate() ended without a solved LP."""
        if not self._lp_solved:
            return [0] * len(self.columns)
        return [int(math.floor(v.solution_value() + 1e-9)) for v in self.columns]

    def integer_master(self, seconds: float, hint: Sequence[Pattern] = ()) -> tuple[list[int], int]:
        """CP-SAT over all generated columns: (nodes per pattern, GPU milli).

        `hint`: the node patterns of a known packing; they are added as columns and their
        multiplicities hint the search, so the answer is never worse than that packing when it
        meets the rows' minimums (one that does not is only a guide, which CP-SAT repairs).
        Without a hint, the rounded-down LP solution is the hint.
        """
        floor = self.floor_counts() if self.columns and not hint else []
        counts_hint: dict[int, int] = {}
        for p in hint:
            self.add(p)
            k = self._index_of(p)
            if k is not None:
                counts_hint[k] = counts_hint.get(k, 0) + 1
        model = cp_model.CpModel()
        y = [model.new_int_var(0, self.types[p.type_index].count, f"y{k}") for k, p in enumerate(self.patterns)]
        by_shape: list[list[tuple[int, cp_model.IntVar]]] = [[] for _ in self.shapes]
        by_type: list[list[cp_model.IntVar]] = [[] for _ in self.types]
        for k, counts in enumerate(self.pattern_counts):
            by_type[self.patterns[k].type_index].append(y[k])
            for s, a in counts.items():
                by_shape[s].append((a, y[k]))
        for s, terms in enumerate(by_shape):
            if terms:
                model.add_linear_constraint(sum(a * v for a, v in terms), self.minimum[s], self.demand[s])
        for ti, mine in enumerate(by_type):
            if mine:
                model.add(sum(mine) <= self.types[ti].count)
        model.maximize(sum(m * v for m, v in zip(self.pattern_value, y)))
        for k in range(len(y)):
            model.add_hint(y[k], counts_hint.get(k, 0) if counts_hint else (floor[k] if k < len(floor) else 0))
        solver = self.settings.solver(seconds)
        status = solver.solve(model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return [0] * len(self.patterns), 0
        out = [int(solver.value(v)) for v in y]
        return out, sum(c * m for c, m in zip(out, self.pattern_milli))
