"""refill_gpus: evict best-effort shares from a GPU and fill it with more from the waiting pods."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, Assignment, ClusterState, Node, PodRequest
from ome.solver import ClusterArrays, Refill, refill_gpus


def share(name: str, milli: int, priority: int = 0, cpu: int = 1_000, models: frozenset[str] = frozenset()) -> PodRequest:
    return PodRequest(name, cpu, 1_000, 1, milli, gpu_models=models, priority=priority)


def best_effort(p: PodRequest) -> bool:
    return p.priority == 0


def apply(cluster: ClusterArrays, running: dict[str, Assignment], waiting: dict[str, PodRequest],
          steps: list[Refill]) -> None:
    for s in steps:
        for k in s.evicted:
            waiting[k] = running[k].pod
            cluster.release(running.pop(k))
        for k in s.placed:
            running[k] = cluster.allocate(waiting.pop(k), s.node, (s.gpu,))


def test_a_lone_810_makes_way_for_two_waiting_470s() -> None:
    cluster = ClusterArrays([Node("n", 16_000, 64_000, "T4", 1)])
    running = {"be-810": cluster.allocate(share("be-810", 810), 0, (0,))}
    waiting = {"a": share("a", 470), "b": share("b", 470), "c": share("c", 320)}
    steps = refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=100)
    assert steps == [Refill(0, 0, ("be-810",), ("a", "b"), 130)]
    assert cluster.allocated_gpu_milli() == 810  # not mutated
    apply(cluster, running, waiting, steps)
    assert cluster.allocated_gpu_milli() == 940 and set(waiting) == {"be-810", "c"}


def test_nothing_below_the_gain_nor_a_production_pod_nor_past_the_cpu() -> None:
    cluster = ClusterArrays([Node("n", 3_000, 64_000, "T4", 2)])
    running = {"be": cluster.allocate(share("be", 810), 0, (0,)),
               "ls": cluster.allocate(share("ls", 810, priority=1), 0, (1,))}
    waiting = {"a": share("a", 470), "b": share("b", 470)}
    assert refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=131) == []  # gains 130 only
    heavy = {"a": share("a", 470, cpu=1_500), "b": share("b", 470, cpu=1_500)}  # 3 cores > 1 free + 1 freed
    assert refill_gpus(cluster, running, heavy, best_effort, min_gain_milli=100) == []
    steps = refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=100)
    assert [s.evicted for s in steps] == [("be",)]  # the production 810 stays


def test_best_effort_cpu_only_pods_make_cpu_room_and_production_ones_stay() -> None:
    cluster = ClusterArrays([Node("n", 4_000, 64_000, "T4", 1)])
    running = {"be-810": cluster.allocate(share("be-810", 810), 0, (0,)),
               "ls-cpu": cluster.allocate(PodRequest("ls-cpu", 1_000, 1_000, priority=1), 0, ()),
               "be-cpu": cluster.allocate(PodRequest("be-cpu", 1_500, 1_000), 0, ())}
    waiting = {"a": share("a", 470, cpu=1_500), "b": share("b", 470, cpu=1_500)}  # 3 cores: 0.5 free + 1 freed
    steps = refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=100)
    assert steps == [Refill(0, 0, ("be-810", "be-cpu"), ("a", "b"), 130)]
    running.pop("be-cpu")
    cluster.release(Assignment(PodRequest("be-cpu", 1_500, 1_000), 0, ()))
    cluster.allocate(PodRequest("ls-2", 1_500, 1_000, priority=1), 0, ())
    running["ls-2"] = Assignment(PodRequest("ls-2", 1_500, 1_000, priority=1), 0, ())
    assert refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=100) == []  # production CPU stays


def test_only_pods_that_accept_the_gpu_model_refill_it() -> None:
    cluster = ClusterArrays([Node("t", 16_000, 64_000, "T4", 1)])
    running = {"be": cluster.allocate(share("be", 810), 0, (0,))}
    waiting = {"a": share("a", 470, models=frozenset({"V100"})), "b": share("b", 470), "c": share("c", 470)}
    steps = refill_gpus(cluster, running, waiting, best_effort, min_gain_milli=100)
    assert [set(s.placed) for s in steps] == [{"b", "c"}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.sampled_from([160, 320, 470, 650, 810, MILLI]),
                          st.integers(0, 1)), max_size=10),
       st.lists(st.tuples(st.integers(0, 2), st.sampled_from([500, 2_000]), st.integers(0, 1)), max_size=6),
       st.lists(st.sampled_from([110, 230, 320, 470, 650, 810, MILLI]), max_size=10), st.sampled_from([1, 100]))
def test_every_step_gains_and_the_end_state_is_feasible(running_rows: list[tuple[int, int, int, int]],
                                                       cpu_rows: list[tuple[int, int, int]],
                                                       waiting_sizes: list[int], gain: int) -> None:
    nodes = [Node("a", 6_000, 64_000, "T4", 2), Node("b", 4_000, 64_000, "G2", 2), Node("c", 16_000, 64_000, "T4", 2)]
    cluster = ClusterArrays(nodes)
    running: dict[str, Assignment] = {}
    for i, (n, g, milli, prio) in enumerate(running_rows):
        p = share(f"r{i}", milli, prio)
        if cluster.fits_mask_one(p, n) and cluster.gpu_free[n, g] >= milli:
            running[p.name] = cluster.allocate(p, n, (g,))
    for i, (n, cpu, prio) in enumerate(cpu_rows):
        p = PodRequest(f"c{i}", cpu, 1_000, priority=prio)
        if cluster.fits_mask_one(p, n):
            running[p.name] = cluster.allocate(p, n, ())
    waiting = {f"w{i}": share(f"w{i}", m, cpu=2_000) for i, m in enumerate(waiting_sizes)}
    before_running, before_alloc = dict(running), cluster.allocated_gpu_milli()
    steps = refill_gpus(cluster, running, waiting, best_effort, gain)
    assert running == before_running and cluster.allocated_gpu_milli() == before_alloc
    alloc = before_alloc
    for s in steps:
        assert s.gain_milli >= gain
        assert all(running[k].pod.priority == 0 for k in s.evicted)  # only what the caller lets go
        apply(cluster, running, waiting, [s])
        assert cluster.allocated_gpu_milli() == alloc + s.gain_milli
        alloc += s.gain_milli
    exact = ClusterState(nodes)  # the end state, through the reference allocator
    for a in running.values():
        exact.allocate(a.pod, a.node, a.gpus)
    assert exact.allocated_gpu_milli() == alloc
