"""What a GPU's free milli is worth to the sharing pods still to come: LP prices of the sizes.

The sharing pods of the target workload (one GPU, less than all of it) are a one-dimensional
bin-packing problem: GPUs are the bins, and every GPU they take is one the whole-GPU pods lose.
The LP relaxation of packing the workload's mix into the fewest GPUs,

    minimise  sum_p x_p    subject to  sum_p a_sp x_p >= d_s  (each size s),  x >= 0,

over patterns p (multisets of sizes that fit one GPU), has a dual price u_s per size: the
share of a GPU a pod of size s is worth when the mix is packed as well as it can be. No
pattern is worth more than one GPU at those prices, and the patterns the LP uses are worth
exactly one. We solve the dual directly, adding the pattern a knapsack finds most valuable
while one is worth more than a GPU.

The LP is small (a dozen sizes, a few dozen patterns), and the extender builds it in its own
process, so it is solved here by a plain tableau simplex rather than an LP library: loading
OR-Tools into the extender measurably slowed every verb (about 0.15 ms on the filter's p50,
bind included; SciPy looked similar). tests/solver/test_hole_prices.py checks the prices
against GLOP's.

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
MAX_ROUNDS = 200  # row generation converges in about a dozen rounds on the openb traces
MAX_PIVOTS = 10_000


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


def _max_packing_lp(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """argmax values . u subject to rows @ u <= 1, u >= 0 (bounded: every size has a row of its own).

    Tableau simplex from the slack basis (feasible as the right-hand side is 1), Bland's rule
    against cycling. A handful of variables (the sizes) and at most a few hundred rows."""
    m, n = rows.shape
    tab = np.zeros((m + 1, n + m + 1))
    tab[:m, :n], tab[:m, n:n + m], tab[:m, -1] = rows, np.eye(m), 1.0
    tab[m, :n] = -values
    basis = list(range(n, n + m))
    for _ in range(MAX_PIVOTS):
        entering = np.flatnonzero(tab[m, :-1] < -_EPS)
        if not entering.size:
            break
        j = int(entering[0])
        col = tab[:m, j]
        ok = col > _EPS
        ratio = np.full(m, np.inf)
        ratio[ok] = tab[:m, -1][ok] / col[ok]
        ties = np.flatnonzero(ratio <= ratio.min() + _EPS)
        i = int(min(ties, key=lambda r: basis[r]))
        tab[i] /= tab[i, j]
        pivot_row = tab[i].copy()
        tab -= np.outer(tab[:, j], pivot_row)
        tab[i] = pivot_row
        basis[i] = j
    else:
        raise RuntimeError("the sharing-size price LP did not converge")
    u = np.zeros(n + m)
    u[basis] = tab[:m, -1]
    return np.maximum(u[:n], 0.0)


def size_prices(mix: Mapping[int, float]) -> dict[int, float]:
    """u_s: the LP dual price of each size (in GPUs) for packing `mix` into the fewest GPUs.

    Solves the dual, max sum_s d_s u_s subject to sum_s a_sp u_s <= 1 for every pattern p,
    adding the knapsack's best pattern while one is worth more than a GPU."""
    sizes = tuple(sorted(s for s, d in mix.items() if d > 0))
    if not sizes:
        return {}
    if sizes[0] <= 0 or sizes[-1] >= MILLI:
        raise ValueError(f"sharing sizes must be in 1..{MILLI - 1} milli, got {sizes}")
    total = sum(mix[s] for s in sizes)
    demand = np.array([mix[s] / total for s in sizes])
    patterns = [np.eye(len(sizes))[k] * (MILLI // s) for k, s in enumerate(sizes)]
    prices: tuple[float, ...] = ()
    for _ in range(MAX_ROUNDS):
        prices = tuple(float(u) for u in _max_packing_lp(demand, np.array(patterns)))
        best = _knapsack(sizes, prices)
        if best[MILLI] <= 1.0 + 1e-7:
            break
        fill = _best_fill(best, sizes, prices)
        patterns.append(np.array([fill.count(s) for s in sizes], np.float64))
    return dict(zip(sizes, prices))


@lru_cache(maxsize=16)
def _prices(mix: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
    """size_prices once per mix: the hole values and the fillers' CPU both need them."""
    return tuple(size_prices(dict(mix)).items())


@lru_cache(maxsize=16)
def _hole_values(mix: tuple[tuple[int, float], ...]) -> np.ndarray:
    prices = dict(_prices(mix))
    # Rounded so that the table, and the ties it breaks, do not depend on summation order.
    best = np.round(_knapsack(tuple(prices), tuple(prices.values())), 9)
    best.setflags(write=False)
    return best


def hole_values(target: TargetWorkload) -> np.ndarray:
    """K[x] for x = 0..MILLI: the most GPU-share a hole of x milli can still collect at the LP prices.

    Non-decreasing, K[0] = 0, K[MILLI] = 1 when the workload has sharing pods (all zeros if none)."""
    return _hole_values(tuple(sorted(sharing_mix(target).items())))


def fill_cpu(target: TargetWorkload) -> np.ndarray:
    """C[x] for x = 0..MILLI: the least CPU (milli) of a sharing pod of the target workload that
    fits a hole of x milli and is worth something at the LP prices; inf where none is (K[x] is
    0 there); 0 at 0 and MILLI, so that neither counts as a hole CPU can leave unfilled (a whole
    free GPU is the stranding term's business).

    A hole on a node with less CPU free than C[x] can no longer be filled: its value K[x] is lost."""
    return _fill_cpu(tuple(sorted(sharing_mix(target).items())), _sharing_cpu(target))


def _sharing_cpu(target: TargetWorkload) -> tuple[tuple[int, int], ...]:
    least: dict[int, int] = {}
    for shape in target.shapes:
        if shape.num_gpu == 1 and 0 < shape.gpu_milli < MILLI:
            least[shape.gpu_milli] = min(least.get(shape.gpu_milli, shape.cpu_milli), shape.cpu_milli)
    return tuple(sorted(least.items()))


@lru_cache(maxsize=16)
def _fill_cpu(mix: tuple[tuple[int, float], ...], cpu: tuple[tuple[int, int], ...]) -> np.ndarray:
    prices = dict(_prices(mix))
    out = np.full(MILLI + 1, np.inf)
    for size, least in cpu:
        if prices.get(size, 0.0) > _EPS:
            out[size:] = np.minimum(out[size:], least)  # every hole of at least `size` fits it
    out[0] = out[MILLI] = 0.0
    out.setflags(write=False)
    return out


__all__ = ["fill_cpu", "hole_values", "sharing_mix", "size_prices"]
