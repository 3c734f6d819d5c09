"""Properties of the exact allocator: no over-commit, exact release, models honoured."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, ClusterState, Code, InvariantViolation, Node, PodRequest
from tests.builders import make_node, make_pod

MODELS = ("A100", "T4")


@st.composite
def clusters(draw: st.DrawFn) -> list[Node]:
    n = draw(st.integers(1, 4))
    return [
        Node(f"n{i}", draw(st.integers(1, 32)) * 1000, draw(st.integers(1, 64)) * 1024,
             draw(st.sampled_from(MODELS)), draw(st.integers(1, 8)))
        for i in range(n)
    ]


@st.composite
def pods(draw: st.DrawFn) -> PodRequest:
    kind = draw(st.sampled_from(["cpu", "share", "whole"]))
    gpus, milli = {"cpu": (0, 0), "share": (1, draw(st.integers(1, 999))), "whole": (draw(st.integers(1, 8)), MILLI)}[kind]
    models = draw(st.sets(st.sampled_from(MODELS), max_size=1))
    return PodRequest(f"p{draw(st.integers(0, 10**6))}", draw(st.integers(0, 16)) * 1000,
                      draw(st.integers(0, 32)) * 1024, gpus, milli, frozenset(models))


def assert_within_capacity(state: ClusterState) -> None:
    for i, node in enumerate(state.nodes):
        assert 0 <= state.cpu_free[i] <= node.cpu_milli
        assert 0 <= state.mem_free[i] <= node.memory_mib
        assert all(0 <= f <= MILLI for f in state.gpu_free[i])


@settings(max_examples=150, deadline=None)
@given(clusters(), st.lists(pods(), max_size=30), st.data())
def test_allocations_never_overcommit_and_release_exactly(nodes: list[Node], requests: list[PodRequest], data: st.DataObject) -> None:
    state = ClusterState(nodes)
    placed = []
    for pod in requests:
        node = data.draw(st.integers(0, len(nodes) - 1))
        status = state.check(pod, node)
        if not status.ok:
            assert status.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)
            continue
        usable = state.usable_gpus(pod, node)
        gpus = data.draw(st.permutations(usable))[: pod.num_gpu]
        before = (list(state.cpu_free), list(state.mem_free), [list(g) for g in state.gpu_free])
        a = state.allocate(pod, node, gpus)
        assert not (pod.num_gpu and pod.gpu_models) or nodes[a.node].gpu_model in pod.gpu_models
        assert len(set(a.gpus)) == pod.num_gpu  # one node, distinct GPUs
        assert_within_capacity(state)
        placed.append((a, before))
    for a, before in reversed(placed):  # release in reverse restores every prior state exactly
        state.release(a)
        assert (state.cpu_free, state.mem_free, state.gpu_free) == before


def test_allocate_refuses_what_does_not_fit() -> None:
    state = ClusterState([make_node().gpus("T4", 2).obj()])
    state.allocate(make_pod(gpus=1, milli=700), 0, [0])
    try:
        state.allocate(make_pod("q", gpus=1, milli=400), 0, [0])
    except InvariantViolation as exc:
        assert "GPU 0" in str(exc)
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError("over-commit of GPU 0 was accepted")
    assert state.check(make_pod(gpus=2), 0).code is Code.UNSCHEDULABLE
    assert state.check(make_pod(gpus=4), 0).code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert state.check(make_pod(gpus=1, models=("A100",)), 0).code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
