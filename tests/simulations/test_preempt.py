"""ome.simulations._preempt: the online replay with priority preemption."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, ClusterState, Node, PodRequest
from ome.simulations._preempt import replay_with_preemption
from ome.simulations._report import summarize
from ome.simulations._replay import replay
from ome.solver import ClusterArrays, TargetWorkload, make_policy

from ._strategies import pods_with_priorities


def test_a_production_pod_evicts_a_best_effort_share_it_cannot_fit_beside() -> None:
    nodes = [Node("n", 8_000, 32_000, "T4", 1)]
    seq = [PodRequest("be", 2_000, 4_000, 1, 810, priority=0), PodRequest("ls", 4_000, 8_000, 1, MILLI, priority=1)]
    target = TargetWorkload.from_pods(seq)
    online = replay(ClusterArrays(nodes), seq, make_policy("ome", target=target), seed=1, target=target)
    assert online.allocated_pct_final == 81.0  # the strict protocol: the production pod fails
    log: list[tuple[int, tuple[int, ...]]] = []
    result = replay_with_preemption(nodes, seq, "ome", target, seed=1, keep_placements=True, log=log)
    assert log == [(1, (0,))]
    assert result.placements == [("ls", "n", (0,))]
    assert result.allocated_pct_final == 100.0
    assert (result.extra["preemptions"], result.extra["evicted"], result.extra["evicted_lost"]) == (1, 1, 1)
    report = summarize([result])  # the JSON report counts the disruption too
    assert (report["preemptions"]["median"], report["evicted"]["median"], report["evicted_lost"]["median"]) == (1, 1, 1)


def test_equal_priority_never_preempts_and_a_victim_with_no_room_left_is_lost() -> None:
    nodes = [Node("a", 8_000, 32_000, "T4", 1), Node("b", 4_000, 32_000, "T4", 1)]
    seq = [
        PodRequest("be", 2_000, 4_000, 1, 500, priority=0),  # ome puts it on a
        PodRequest("ls1", 4_000, 8_000, 1, MILLI, priority=1),  # takes b
        PodRequest("ls2", 4_000, 8_000, 1, MILLI, priority=1),  # only a, after evicting be
        PodRequest("ls3", 4_000, 8_000, 1, MILLI, priority=1),  # nothing lower-priority left: fails
    ]
    result = replay_with_preemption(nodes, seq, "ome", TargetWorkload.from_pods(seq), seed=1, keep_placements=True)
    assert sorted(name for name, _, _ in result.placements) == ["ls1", "ls2"]
    assert result.extra["preemptions"] == 1 and result.extra["evicted_lost"] == 1
    assert result.failed == 2  # ls3, and be (evicted, nowhere to go)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods_with_priorities(2), st.integers(0, 3))
def test_preemption_only_evicts_lower_priority_and_ends_feasible(seq: list[PodRequest], seed: int) -> None:
    nodes = [Node("a", 8_000, 64_000, "T4", 2), Node("b", 12_000, 64_000, "G2", 4)]
    log: list[tuple[int, tuple[int, ...]]] = []
    result = replay_with_preemption(nodes, seq, "ome", TargetWorkload.from_pods(seq), seed, keep_placements=True, log=log)
    for preemptor, victims in log:
        assert victims and all(seq[v].priority < seq[preemptor].priority for v in victims)
    assert result.extra["preemptions"] == len(log)
    assert result.extra["evicted"] == sum(len(v) for _, v in log)
    assert result.placed + result.failed == len(seq)  # each pod runs, failed, or was evicted and lost
    state = ClusterState(nodes)  # the final placements, replayed through the reference allocator
    by_name = {p.name: p for p in seq}
    for name, node, gpus in result.placements:
        state.allocate(by_name[name], state.index_of(node), gpus)
    assert abs(100.0 * state.allocated_gpu_milli() / (6 * MILLI) - result.allocated_pct_final) < 1e-9
