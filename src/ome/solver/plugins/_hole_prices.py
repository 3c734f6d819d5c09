"""What a GPU's free milli is worth to the sharing pods still to come: LP prices of the sizes.

The sharing pods of the target workload (one GPU, less than all of it) are a one-dimensional
bin-packing problem: GPUs are the bins, and every GPU they take is one the whole-GPU pods lose.
The LP relaxation of packing the workload's mix into the fewest GPUs,

    minimise  sum_p x_p    subject to  sum_p a_sp x_p >= d_s  (each size s),  x >= 0,

over patterns p (multisets of sizes that fit one GPU), has a dual price u_s per size: the
share of a GPU a pod of size s is worth when the mix is packed as well as it can be. No
pattern is worth more than one GPU at those prices, and the patterns the LP uses are worth
exactly one. Solved by column generation with GLOP, pricing patterns by a knapsack.

The hole value K(x) is the most a hole of x milli can still collect at those prices (an
unbounded knapsack). Putting a pod of size s into a hole of c milli leaves c - s, so it gives
up K(c) - K(c - s) of the hole's value to collect u_s: the difference is GPU-share lost for
good. It is zero when the pod completes a pattern the LP uses (a 320 beside a 650) and
positive when it spoils one (a 320 in the hole a 470 leaves, which only another 460-480
fills well). FGD's table w(x) = x * P(a pod needs more than x) instead counts every hole a
whole-GPU pod cannot use as lost, so it fills the 470's hole with the 320.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from ome.domain import MILLI

from .._fragmentation import TargetWorkload

_EPS = 1e-9
MAX_ROUNDS = 200  # column generation converges in about a dozen on the openb traces


def sharing_mix(target: TargetWorkload) -> dict[int, float]:
    """GPU milli per sharing pod -> its share of the target workload's pods."""
    mix: dict[int, float] = {}
    for shape, weight in zip(target.shapes, target.weights):
        if shape.num_gpu == 1 and 0 < shape.gpu_milli < MILLI:
            mix[shape.gpu_milli] = mix.get(shape.gpu_milli, 0.0) + weight
    return mix


def _knapsack(sizes: tuple[int, ...], prices: tuple[float, ...]) -> np.ndarray:
    """best[c] = the most price a hole of c milli can hold (each size any number of times)."""
    best = np.zeros(MILLI + 1)
    for s, u in zip(sizes, prices):
        # best[c] = max(best[c], best[c - s] + u) for c = s..MILLI in increasing c, a block of s at a time
        # (within a block no entry depends on another of the same block).
        for lo in range(s, MILLI + 1, s):
            hi = min(lo + s, MILLI + 1)
            np.maximum(best[lo:hi], best[lo - s:hi - s] + u, out=best[lo:hi])
    return best


def _best_fill(best: np.ndarray, sizes: tuple[int, ...], prices: tuple[float, ...]) -> tuple[int, ...]:
    """The sizes of one fill of a whole GPU worth best[MILLI], read back from the table."""
    out: list[int] = []
    c = MILLI
    while c > 0 and best[c] > _EPS:
        took = next((s for s, u in zip(sizes, prices) if s <= c and abs(best[c - s] + u - best[c]) <= _EPS), 0)
        if took:
            out.append(took)
            c -= took
        else:
            c -= 1  # best[c] = best[c - 1]: one milli left unused
    return tuple(sorted(out))


def size_prices(mix: Mapping[int, float]) -> dict[int, float]:
    """u_s: the LP dual price of each size (in GPUs) for packing `mix` into the fewest GPUs."""
    from ortools.linear_solver import pywraplp  # type: ignore[import-untyped]  # heavy; only here

    sizes = tuple(sorted(s for s, d in mix.items() if d > 0))
    if not sizes:
        return {}
    if sizes[0] <= 0 or sizes[-1] >= MILLI:
        raise ValueError(f"sharing sizes must be in 1..{MILLI - 1} milli, got {sizes}")
    demand = {s: mix[s] * 10_000 / sum(mix[t] for t in sizes) for s in sizes}  # per 10,000 pods: well scaled
    patterns = [(s,) * (MILLI // s) for s in sizes]
    prices: tuple[float, ...] = ()
    for _ in range(MAX_ROUNDS):
        lp = pywraplp.Solver.CreateSolver("GLOP")
        use = [lp.NumVar(0.0, lp.infinity(), f"p{j}") for j in range(len(patterns))]
        rows = [lp.Add(sum(use[j] * p.count(s) for j, p in enumerate(patterns) if s in p) >= demand[s]) for s in sizes]
        lp.Minimize(sum(use))
        if lp.Solve() != pywraplp.Solver.OPTIMAL:
            raise RuntimeError("GLOP did not solve the sharing-pod packing LP")
        prices = tuple(max(0.0, r.dual_value()) for r in rows)
        best = _knapsack(sizes, prices)
        if best[MILLI] <= 1.0 + 1e-7:
            break
        patterns.append(_best_fill(best, sizes, prices))
    return dict(zip(sizes, prices))


@lru_cache(maxsize=16)
def _hole_values(mix: tuple[tuple[int, float], ...]) -> np.ndarray:
    prices = size_prices(dict(mix))
    best = _knapsack(tuple(prices), tuple(prices.values()))
    best.setflags(write=False)
    return best


def hole_values(target: TargetWorkload) -> np.ndarray:
    """K[x] for x = 0..MILLI: the most GPU-share a hole of x milli can still collect at the LP prices.

    Non-decreasing, K[0] = 0, K[MILLI] = 1 when the workload has sharing pods (all zeros if none)."""
    return _hole_values(tuple(sorted(sharing_mix(target).items())))


__all__ = ["hole_values", "sharing_mix", "size_prices"]
