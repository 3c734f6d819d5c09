"""ome.simulations._offline: the optimum per arrived level and the replay with repacks."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, ClusterState, Node, PodRequest
from ome.simulations._offline import level_prefixes, optimum_levels, replay_with_repack, solve_levels
from ome.simulations._replay import LEVELS, arrival_sequence, replay
from ome.solver import ClusterArrays, TargetWorkload, make_policy
from ome.solver.cpsat import SolverSettings, verify

from ._strategies import pods_with_priorities

FAST = SolverSettings(max_time_in_seconds=0.5, num_workers=1, random_seed=3)


def small_cluster() -> tuple[list[Node], list[PodRequest]]:
    """8 nodes of two shapes (CPU-poor 4-GPU, CPU-rich 2-GPU) and a mix like the trace's."""
    nodes = [Node(f"g{i}", 24_000, 96_000, "G2", 4) for i in range(5)] + [
        Node(f"t{i}", 52_000, 256_000, "T4", 2) for i in range(3)
    ]
    shapes = [  # (cpu, mem, gpus, milli, copies)
        (11_000, 24_000, 1, 1000, 6), (3_000, 5_000, 1, 810, 5), (18_000, 32_000, 1, 1000, 3),
        (8_000, 16_000, 1, 470, 4), (4_000, 8_000, 1, 320, 3), (6_000, 12_000, 2, 1000, 1),
        (12_000, 40_000, 0, 0, 3),
    ]
    pods = [PodRequest(f"p{k}-{j}", c, m, g, u) for k, (c, m, g, u, n) in enumerate(shapes) for j in range(n)]
    return nodes, pods


def test_level_prefixes_are_where_demand_first_reaches_the_level() -> None:
    pods = [PodRequest(f"p{i}", 1, 1, 1, MILLI) for i in range(5)]  # 1 GPU each, capacity 4 GPUs
    assert level_prefixes(pods, 4 * MILLI, (50, 75, 100, 120, 130)) == {50: 2, 75: 3, 100: 4, 120: 5}


def test_optimum_levels_report_best_bound_and_gap_consistently() -> None:
    nodes, pods = small_cluster()
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    seq = arrival_sequence(pods, capacity, 1.3, seed=5)
    levels = optimum_levels(nodes, seq, LEVELS, FAST)
    assert set(levels) == set(level_prefixes(seq, capacity, LEVELS))
    online = replay(ClusterArrays(nodes), seq, make_policy("bestfit"), seed=5, target=TargetWorkload.from_pods(pods))
    for level, (best, bound, gap) in levels.items():
        assert best >= bound - 1e-9 and abs(gap - (best - bound)) < 1e-9
        # The online packing of the same prefix is one feasible packing: the optimum is no worse.
        assert best <= online.unallocated_pct[level] + 1e-9, level
        assert bound >= 100.0 - level - 1e-9  # nothing beats placing every arrived pod


def test_solve_levels_packings_are_feasible_and_nested_prefixes_only() -> None:
    nodes, pods = small_cluster()
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    seq = arrival_sequence(pods, capacity, 1.3, seed=8)
    prefixes = level_prefixes(seq, capacity, (100, 130))
    for level, result in solve_levels(nodes, seq, (100, 130), FAST).items():
        allowed = {id(p) for p in seq[: prefixes[level]]}
        assert all(id(a.pod) in allowed for a in result.assignments)
        assert verify(nodes, result.assignments) == result.allocated_milli


def test_replay_with_repack_keeps_a_feasible_cluster_and_counts_moves() -> None:
    nodes, pods = small_cluster()
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    seq = arrival_sequence(pods, capacity, 1.3, seed=2)
    result = replay_with_repack(nodes, seq, "bestfit", None, seed=2, every_pods=10, budget_moves=3,
                                settings=FAST, keep_placements=True)
    assert result.policy == "ome-repack"
    assert result.placed + result.failed == len(seq)
    assert result.extra["moves"] <= 3 * result.extra["repacks"]
    assert set(result.unallocated_pct) == set(level_prefixes(seq, capacity, LEVELS))
    state = ClusterState(nodes)
    by_name = {p.name: p for p in seq}
    for name, node, gpus in result.placements:
        state.allocate(by_name[name], state.index_of(node), gpus)
    assert abs(100.0 * state.allocated_gpu_milli() / capacity - result.allocated_pct_final) < 1e-9


def test_replay_with_repack_and_preemption_stays_feasible_and_serves_more_production_pods() -> None:
    nodes, pods = small_cluster()
    pods = [replace(p, priority=k % 2) for k, p in enumerate(pods)]  # every other pod best-effort
    capacity = sum(n.gpu_count for n in nodes) * MILLI
    seq = arrival_sequence(pods, capacity, 1.3, seed=4)
    result = replay_with_repack(nodes, seq, "ome", TargetWorkload.from_pods(pods), seed=4, every_pods=8,
                                budget_moves=4, settings=FAST, keep_placements=True, preempt=True)
    plain = replay_with_repack(nodes, seq, "ome", TargetWorkload.from_pods(pods), seed=4, every_pods=8,
                               budget_moves=4, settings=FAST)
    assert result.policy == "ome-preempt-repack" and result.placed + result.failed == len(seq)
    assert result.extra["preemptions"] > 0 and result.extra["evicted"] >= result.extra["preemptions"]
    assert "preemptions" not in plain.extra
    state = ClusterState(nodes)
    by_name = {p.name: p for p in seq}
    for name, node, gpus in result.placements:
        state.allocate(by_name[name], state.index_of(node), gpus)
    assert abs(100.0 * state.allocated_gpu_milli() / capacity - result.allocated_pct_final) < 1e-9
    # On this instance priorities pay off: more production pods run at the end than without them.
    running = {name for name, _, _ in result.placements}
    plain_running = {name for name, _, _ in replay_with_repack(
        nodes, seq, "ome", TargetWorkload.from_pods(pods), seed=4, every_pods=8, budget_moves=4, settings=FAST,
        keep_placements=True).placements}
    assert sum(by_name[n].priority for n in running) > sum(by_name[n].priority for n in plain_running)


NO_REPACK = 10**9  # every_pods: the replay's repacks never run, only what happens at arrival


def test_reclaim_lets_a_whole_gpu_pod_displace_a_best_effort_share_of_its_own_class() -> None:
    nodes = [Node("n", 16_000, 64_000, "T4", 1)]
    seq = [PodRequest("be-810", 2_000, 4_000, 1, 810, priority=0), PodRequest("be-1000", 4_000, 8_000, 1, MILLI, priority=0),
           PodRequest("ls-cpu", 1_000, 1_000, priority=1)]  # a production pod: the workload has two classes
    target = TargetWorkload.from_pods(seq)
    log: list[tuple[str, int, tuple[int, ...]]] = []
    result = replay_with_repack(nodes, seq, "ome", target, seed=1, every_pods=NO_REPACK, preempt=True,
                                reclaim_gain_milli=100, keep_placements=True, log=log)
    assert result.policy == "ome-reclaim" and log == [("reclaim", 1, (0,))]
    assert sorted(name for name, _, _ in result.placements) == ["be-1000", "ls-cpu"]
    assert result.allocated_pct_final == 100.0 and (result.extra["reclaims"], result.extra["reclaim_evicted"]) == (1, 1)
    assert result.failed == 1  # be-810 waits: nowhere else to go
    strict = replay_with_repack(nodes, seq, "ome", target, seed=1, every_pods=NO_REPACK, preempt=True,
                                reclaim_gain_milli=200)  # a gain of 190 is not enough
    assert strict.allocated_pct_final == 81.0 and strict.extra["reclaims"] == 0
    one_class = [replace(p, priority=0) for p in seq]  # nothing marks a pod as best-effort: no reclaim
    same = replay_with_repack(nodes, one_class, "ome", TargetWorkload.from_pods(one_class), seed=1, every_pods=NO_REPACK,
                              preempt=True, reclaim_gain_milli=100)
    assert same.allocated_pct_final == 81.0 and "reclaims" not in same.extra


def test_the_periodic_refill_trades_a_best_effort_810_for_two_waiting_470s() -> None:
    nodes = [Node("n", 16_000, 64_000, "T4", 1)]
    seq = [PodRequest("be-810", 2_000, 4_000, 1, 810), PodRequest("ls-cpu", 1_000, 1_000, priority=1),
           PodRequest("be-470a", 2_000, 4_000, 1, 470), PodRequest("be-470b", 2_000, 4_000, 1, 470)]
    log: list[tuple[str, int, tuple[int, ...]]] = []
    result = replay_with_repack(nodes, seq, "ome", TargetWorkload.from_pods(seq), seed=1, every_pods=4, settings=FAST,
                                preempt=True, reclaim_gain_milli=100, refill_every=4, keep_placements=True, log=log)
    assert log == []  # neither 470 gains anything alone at arrival
    assert sorted(name for name, _, _ in result.placements) == ["be-470a", "be-470b", "ls-cpu"]
    assert result.allocated_pct_final == 94.0 and result.failed == 1
    assert (result.extra["refills"], result.extra["refill_evicted"]) == (1, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods_with_priorities(1, min_size=2, max_size=16), st.integers(0, 3), st.sampled_from([1, 100, 400]))
def test_reclaims_evict_only_best_effort_pods_for_a_gain_and_end_feasible(seq: list[PodRequest], seed: int,
                                                                          gain: int) -> None:
    nodes = [Node("a", 8_000, 64_000, "T4", 2), Node("b", 12_000, 64_000, "G2", 4)]
    log: list[tuple[str, int, tuple[int, ...]]] = []
    result = replay_with_repack(nodes, seq, "ome", TargetWorkload.from_pods(seq), seed, every_pods=5, settings=FAST,
                                preempt=True, reclaim_gain_milli=gain, refill_every=3, keep_placements=True, log=log)
    lowest = min(p.priority for p in seq)
    for kind, pod, victims in log:
        if kind == "reclaim":
            assert all(seq[v].priority == lowest <= seq[pod].priority for v in victims)
            assert seq[pod].gpu_demand_milli - sum(seq[v].gpu_demand_milli for v in victims) >= gain
        else:
            assert victims and all(seq[v].priority < seq[pod].priority for v in victims)
    assert result.extra.get("reclaims", 0) == sum(kind == "reclaim" for kind, _, _ in log)
    assert result.placed + result.failed == len(seq)
    state = ClusterState(nodes)
    by_name = {p.name: p for p in seq}
    for name, node, gpus in result.placements:
        state.allocate(by_name[name], state.index_of(node), gpus)
    assert abs(100.0 * state.allocated_gpu_milli() / (6 * MILLI) - result.allocated_pct_final) < 1e-9
