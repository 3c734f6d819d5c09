"""LP prices of the sharing sizes and the hole values the ome policy ranks sharing pods by."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ome.solver import ClusterArrays, Shape, TargetWorkload
from ome.solver.plugins._hole_prices import fill_cpu, hole_values, sharing_mix, size_prices
from ome.solver.plugins._ome import OmePolicy
from tests.builders import make_node, make_pod

# Per 7 pods: two 470s, one 650, four 320s. The LP packs them into 3 GPUs: (470, 470),
# (650, 320), (320, 320, 320); each pattern it uses is worth exactly one GPU, which pins
# the prices: 2 u470 = 1, 3 u320 = 1, u650 + u320 = 1.
MIX = {470: 2.0, 650: 1.0, 320: 4.0}
TARGET = TargetWorkload(
    (Shape(4000, 470, 1), Shape(4000, 650, 1), Shape(4000, 320, 1), Shape(8000, 1000, 1)),
    (0.2, 0.1, 0.4, 0.3), cpu_per_gpu=4000, mem_per_gpu=1,
)


def test_prices_of_a_mix_worked_by_hand() -> None:
    prices = size_prices(MIX)
    assert prices == pytest.approx({320: 1 / 3, 470: 0.5, 650: 2 / 3}, abs=1e-6)


def test_hole_values_by_hand() -> None:
    k = hole_values(TARGET)
    assert sharing_mix(TARGET) == pytest.approx({470: 0.2, 650: 0.1, 320: 0.4})
    assert k[0] == 0 and k[1000] == pytest.approx(1.0)
    assert (np.diff(k) >= -1e-12).all()
    # The hole a 470 leaves (530) is worth another 470; a 320 put there leaves 210, worth nothing:
    # it gives up 1/2 to collect 1/3. Beside a 650 (350 left) or on an empty GPU it loses nothing.
    assert k[530] == pytest.approx(0.5) and k[210] == 0
    assert k[350] - k[30] == pytest.approx(1 / 3)
    assert k[1000] - k[680] == pytest.approx(1 / 3)


def test_no_sharing_pods_no_values() -> None:
    whole = TargetWorkload((Shape(8000, 1000, 1),), (1.0,))
    assert not hole_values(whole).any()
    assert size_prices({}) == {}


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="1..999"):
        size_prices({1000: 1.0})


@pytest.mark.parametrize(("table", "best"), [("lp", 1), ("fgd", 0)])
def test_a_320_goes_beside_a_470_only_with_fgds_table(table: str, best: int) -> None:
    # n0: one GPU with a 470 on it (530 free), the rest taken; n1: one empty GPU, the rest taken.
    c = ClusterArrays([make_node(f"n{i}").gpus("A100", 8).cpu(64_000).obj() for i in range(2)])
    c.gpu_free[0] = [530] + [0] * 7
    c.gpu_free[1] = [1000] + [0] * 7
    policy = OmePolicy(TARGET, share_table=table)
    s = policy.score(c, make_pod(cpu=4000, gpus=1, milli=320), np.arange(2)).tolist()
    assert s[best] > s[1 - best]


def test_fill_cpu_by_hand() -> None:
    # Fillers: 320 with 4 cores, 470 with 6, 650 with 12 (all priced). A hole needs the least CPU of
    # a priced pod that fits it; empty and whole GPUs are never a hole.
    target = TargetWorkload((Shape(6000, 470, 1), Shape(12000, 650, 1), Shape(4000, 320, 1)), (0.2, 0.1, 0.7))
    c = fill_cpu(target)
    assert np.isinf(c[319]) and c[320] == 4000 and c[700] == 4000 and c[0] == 0 and c[1000] == 0
    only_big = fill_cpu(TargetWorkload((Shape(6000, 470, 1), Shape(12000, 650, 1)), (0.5, 0.5)))
    assert np.isinf(only_big[469]) and only_big[470] == 6000 and only_big[999] == 6000
    # A 160 beside each of many 810s is free at the LP prices (u160 = 0): it makes no hole worth CPU.
    cheap = fill_cpu(TargetWorkload((Shape(3000, 810, 1), Shape(1000, 160, 1)), (0.9, 0.1)))
    assert np.isinf(cheap[190]) and cheap[810] == 3000


@pytest.mark.parametrize(("hole_cpu", "best"), [(True, 1), (False, 0)])
def test_a_whole_gpu_pod_does_not_take_the_cpu_a_hole_needs(hole_cpu: bool, best: int) -> None:
    # n0: a 350 hole (a 320 with 4 cores fills it, worth 1/3) and one free GPU, 10 cores free;
    # n1: two free GPUs, 20 cores. An 8-core whole-GPU pod on n0 would leave 2 cores: the hole
    # could never be filled. Without key 1d the packing key prefers n0 (less left free).
    c = ClusterArrays([make_node(f"n{i}").gpus("A100", 8).cpu(64_000).obj() for i in range(2)])
    c.gpu_free[0] = [350, 1000] + [0] * 6
    c.gpu_free[1] = [1000, 1000] + [0] * 6
    c.cpu_free[:] = [10_000, 20_000]
    policy = OmePolicy(TARGET, hole_cpu=hole_cpu)
    pod = make_pod(cpu=8000, gpus=1)
    s = policy.score(c, pod, np.arange(2)).tolist()
    assert s[best] > s[1 - best]
    if hole_cpu:
        assert policy.rank_keys(c, pod, np.arange(2))[0].tolist() == pytest.approx([1 / 3, 0.0])


def test_unknown_table_is_refused() -> None:
    with pytest.raises(ValueError, match="share_table"):
        OmePolicy(TARGET, share_table="sos")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.integers(20, 990), st.integers(1, 50), min_size=1, max_size=8))
def test_prices_are_an_optimal_dual_for_any_mix(counts: dict[int, int]) -> None:
    mix = {s: float(n) for s, n in counts.items()}
    prices = size_prices(mix)
    k = hole_values(TargetWorkload(tuple(Shape(1000, s, 1) for s in mix), tuple(n / sum(mix.values()) for n in mix.values())))
    # Dual feasible: no GPU's contents are worth more than one GPU, and some are worth exactly one.
    assert k[1000] == pytest.approx(1.0, abs=1e-6)
    assert (np.diff(k) >= -1e-9).all() and k[0] == 0
    assert all(u >= 0 for u in prices.values())
    # The LP value (sum of count x price) is the fewest GPUs a fractional packing takes: at least
    # the volume, at most packing each size on GPUs of its own.
    value = sum(n * prices[s] for s, n in mix.items())
    assert value >= sum(n * s for s, n in mix.items()) / 1000 - 1e-6
    assert value <= sum(n / (1000 // s) for s, n in mix.items()) + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.integers(20, 990), st.integers(1, 50), min_size=1, max_size=10))
def test_prices_match_glops_optimum(counts: dict[int, int]) -> None:
    # The prices come from a small hand-written simplex (to keep LP libraries out of the
    # extender); the LP's optimal value must equal GLOP's on the patterns the prices imply.
    from ortools.linear_solver import pywraplp

    mix = {s: float(n) for s, n in counts.items()}
    prices = size_prices(mix)
    sizes = sorted(mix)
    patterns = [[s] * (1000 // s) for s in sizes]
    for _ in range(200):  # column generation with GLOP, as a reference
        lp = pywraplp.Solver.CreateSolver("GLOP")
        use = [lp.NumVar(0.0, lp.infinity(), "") for _ in patterns]
        rows = [lp.Add(sum(u * p.count(s) for u, p in zip(use, patterns)) >= mix[s]) for s in sizes]
        lp.Minimize(sum(use))
        assert lp.Solve() == pywraplp.Solver.OPTIMAL
        duals = [max(0.0, r.dual_value()) for r in rows]
        best, fill = _best_pattern(sizes, duals)
        if best <= 1 + 1e-7:
            break
        patterns.append(fill)
    glop_value = lp.Objective().Value()
    assert sum(mix[s] * prices[s] for s in sizes) == pytest.approx(glop_value, rel=1e-6)


def _best_pattern(sizes: list[int], values: list[float]) -> tuple[float, list[int]]:
    """The most valuable multiset of sizes fitting 1000 (a plain knapsack, for the reference)."""
    best = [(0.0, [])] * 1001
    for c in range(1, 1001):
        best[c] = best[c - 1]
        for s, v in zip(sizes, values):
            if s <= c and best[c - s][0] + v > best[c][0] + 1e-12:
                best[c] = (best[c - s][0] + v, best[c - s][1] + [s])
    return best[1000]

