"""The aggregated relaxation: an upper bound on allocatable GPU milli, and a per-type plan.

Notation. Node types t (n_t identical nodes with C_t milli-CPU, M_t MiB, G_t GPUs), pod
shapes s (d_s pods, c_s CPU, m_s memory, k_s GPUs of u_s milli each; demand k_s u_s).

    maximise   sum_{t,s} k_s u_s x_ts
    subject to sum_t x_ts <= d_s                                       (pods available)
               sum_s c_s x_ts <= n_t C_t,  sum_s m_s x_ts <= n_t M_t      (CPU, memory)
               sum_s k_s f(u_s) x_ts <= n_t G_t f(1000)   for every DFF f  (GPU slots)
               sum_s g(c_s) x_ts <= n_t g(C_t)             for every DFF g  (CPU per node)
               sum_s h(k_s 1000) x_ts <= n_t h(G_t 1000)   for every DFF h  (GPUs per node)
               x_ts integer, 0 if shape s can never run on type t.

A pod placed on one node is an item in three kinds of bin: each of its GPU shares is an item
in a GPU (capacity 1000), its CPU an item in the node's CPU, its GPU total an item in the
node's GPUs. Summing a dual-feasible function (DFF) f over the items of any feasible bin
gives at most f(capacity), so every inequality above holds for every real packing: the
model is a relaxation and CP-SAT's proven objective bound on it bounds the true optimum.
The DFFs are Fekete and Schepers' u^(k) (k = 1..4) and U^(eps), with eps taken from the
item sizes that occur (the thresholds where they bite); f = identity is the plain sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ortools.linear_solver import pywraplp  # type: ignore[import-untyped]

from ome.domain import MILLI

from ._shapes import NodeType, PodShape, fits_type

Dff = Callable[[int], int]
V = TypeVar("V")


def _u_k(capacity: int, k: int) -> Dff:
    """k * u^(k): x -> k x if (k+1)x/C is integral, else floor((k+1)x/C) C; k * u(C) = k C."""

    def f(x: int) -> int:
        return k * x if ((k + 1) * x) % capacity == 0 else ((k + 1) * x // capacity) * capacity

    return f


def _u_eps(capacity: int, eps: int) -> Dff:
    """U^(eps): C above C - eps, 0 below eps, x between (0 < eps <= C/2)."""

    def f(x: int) -> int:
        return capacity if x > capacity - eps else (0 if x < eps else x)

    return f


def dual_feasible_functions(capacity: int, sizes: Iterable[int], *, max_eps: int = 12) -> list[Dff]:
    """Identity, u^(1..4) and U^(eps) for up to `max_eps` item sizes in (0, C/2]."""
    dffs: list[Dff] = [lambda x: x]
    dffs += [_u_k(capacity, k) for k in (1, 2, 3, 4)]
    small = sorted({s for s in sizes if 0 < s <= capacity // 2}) if max_eps > 0 else []
    if len(small) > max_eps:  # spread the thresholds over the range
        step = len(small) / max_eps
        small = [small[int(i * step)] for i in range(max_eps)]
    dffs += [_u_eps(capacity, e) for e in small if e > 1]
    return dffs


def dff_rows(
    terms: Sequence[tuple[V, int, int]], capacity: int, bins: int, dffs: Sequence[Dff]
) -> list[tuple[list[tuple[int, V]], int]]:
    """For each f: sum multiplicity * f(size) * var <= bins * f(capacity); terms = (var, size, multiplicity).

    Returns the distinct rows as ([(coefficient, var)], right-hand side)."""
    seen: set[tuple[int, ...]] = set()
    rows: list[tuple[list[tuple[int, V]], int]] = []
    for f in dffs:
        coefs = tuple(mult * f(size) for _, size, mult in terms)
        rhs = bins * f(capacity)
        key = (*coefs, rhs)
        if key in seen or not any(coefs):
            continue
        seen.add(key)
        rows.append(([(c, v) for c, (v, _, _) in zip(coefs, terms) if c], rhs))
    return rows


@dataclass(frozen=True, slots=True)
class AggregateModel:
    """The relaxation as plain data: one column per (type index, shape), rows of (coef, column)."""

    columns: list[tuple[int, PodShape]]
    upper: list[int]
    objective: list[int]
    rows: list[tuple[list[tuple[int, int]], int]]


def _upper(shape: PodShape, t: NodeType) -> int:
    per_node = t.gpu_count // shape.num_gpu if shape.is_multi else t.gpu_count * (MILLI // shape.gpu_milli)
    if shape.cpu_milli:
        per_node = min(per_node, t.cpu_milli // shape.cpu_milli)
    if shape.memory_mib:
        per_node = min(per_node, t.memory_mib // shape.memory_mib)
    return per_node * t.count


def aggregate_model(types: Sequence[NodeType], demand: Mapping[PodShape, int]) -> AggregateModel:
    """Columns, bounds, objective and rows of the relaxation in the module docstring."""
    shapes = [s for s in sorted(demand) if s.demand_milli > 0 and demand[s] > 0]
    columns: list[tuple[int, PodShape]] = []
    upper: list[int] = []
    for ti, t in enumerate(types):
        for s in shapes:
            if fits_type(s, t):
                ub = min(demand[s], _upper(s, t))
                if ub > 0:
                    columns.append((ti, s))
                    upper.append(ub)
    rows: list[tuple[list[tuple[int, int]], int]] = []
    by_shape: dict[PodShape, list[int]] = {}
    for k, (_, s) in enumerate(columns):
        by_shape.setdefault(s, []).append(k)
    for s, ks in by_shape.items():
        if len(ks) > 1:
            rows.append(([(1, k) for k in ks], demand[s]))
    for ti, t in enumerate(types):
        own = [(k, s) for k, (tj, s) in enumerate(columns) if tj == ti]
        if not own:
            continue
        gpu = [(k, s.gpu_milli, s.num_gpu) for k, s in own]
        rows += dff_rows(gpu, MILLI, t.count * t.gpu_count, dual_feasible_functions(MILLI, (s.gpu_milli for _, s in own)))
        node_gpu = t.gpu_count * MILLI
        rows += dff_rows([(k, s.demand_milli, 1) for k, s in own], node_gpu, t.count,
                         dual_feasible_functions(node_gpu, (), max_eps=0))
        cpu = [(k, s.cpu_milli, 1) for k, s in own if s.cpu_milli]
        if cpu:
            rows += dff_rows(cpu, t.cpu_milli, t.count,
                             dual_feasible_functions(t.cpu_milli, (s.cpu_milli for _, s in own), max_eps=8))
        mem = [(k, s.memory_mib, 1) for k, s in own if s.memory_mib]
        if mem:
            rows += dff_rows(mem, t.memory_mib, t.count,
                             dual_feasible_functions(t.memory_mib, (s.memory_mib for _, s in own), max_eps=4))
    return AggregateModel(columns, upper, [s.demand_milli for _, s in columns], rows)


def aggregate_bound_lp(types: Sequence[NodeType], demand: Mapping[PodShape, int]) -> int:
    """The relaxation's LP bound (GLOP), made safe by weak duality and rounded down.

    GLOP's optimum carries floating-point tolerances, so its objective is not used as such:
    for any duals y >= 0, sum_i rhs_i y_i + sum_j ub_j max(0, c_j - a_j . y) bounds the LP
    (and so the integer problem) from above; that sum is evaluated from GLOP's duals.
    """
    agg = aggregate_model(types, demand)
    if not agg.columns:
        return 0
    lp = pywraplp.Solver.CreateSolver("GLOP")
    x = [lp.NumVar(0, ub, f"x{k}") for k, ub in enumerate(agg.upper)]
    constraints = [lp.Add(lp.Sum([c * x[k] for c, k in row]) <= rhs) for row, rhs in agg.rows]
    lp.Maximize(lp.Sum([c * v for c, v in zip(agg.objective, x)]))
    if lp.Solve() == pywraplp.Solver.OPTIMAL:
        duals = [max(0.0, c.dual_value()) for c in constraints]
    else:  # weak duality holds for any y >= 0; y = 0 gives the weakest bound, total demand
        duals = [0.0] * len(constraints)
    reduced = [float(c) for c in agg.objective]
    total = 0.0
    for (row, rhs), y in zip(agg.rows, duals):
        if y:
            total += rhs * y
            for coef, k in row:
                reduced[k] -= coef * y
    total += sum(ub * r for ub, r in zip(agg.upper, reduced) if r > 0)
    return int(math.floor(total * (1 + 1e-12) + 1e-6))
