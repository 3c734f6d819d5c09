"""The `ome` policy with a placement plan: slots come first, are counted, and never break feasibility."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, Assignment, Node, PodRequest
from ome.solver import Bind, ClusterArrays, OmePolicy, SlotBook, SlotPlan, TargetWorkload, place_one, pod_kind

from .test_online_feasible import check_every_decision, scenario


def _one_gpu(name: str, cpu: int = 4) -> PodRequest:
    return PodRequest(name, cpu * 1000, 8 * 1024, 1, MILLI)


def _place(cluster: ClusterArrays, policy: OmePolicy, pod: PodRequest) -> str:
    decision = place_one(cluster, pod, policy, np.random.default_rng(0), tie_break="first")
    assert isinstance(decision, Bind)
    cluster.allocate(pod, decision.node, decision.gpus)
    policy.observe(cluster, pod, decision.node, decision.gpus)
    return cluster.names[decision.node]


def test_pod_kind_ignores_name_priority_and_workload() -> None:
    a = PodRequest("a", 4000, 1024, 1, 500, priority=3, workload="w")
    assert pod_kind(a) == pod_kind(PodRequest("b", 4000, 1024, 1, 500))
    assert pod_kind(a) != pod_kind(PodRequest("c", 4000, 1024, 1, 510))


def test_slot_book_counts_takes_and_give_backs_and_ignores_unknown_nodes() -> None:
    nodes = [Node("n0", 8000, 32768, "T4", 2), Node("n1", 8000, 32768, "T4", 2)]
    pod = _one_gpu("p")
    book = SlotBook(SlotPlan({"n1": {pod_kind(pod): 1}, "gone": {pod_kind(pod): 5}}), ClusterArrays(nodes))
    rows = np.array([0, 1])
    assert book.free(pod, rows).tolist() == [False, True]
    book.take(pod, 1)
    assert book.free(pod, rows).tolist() == [False, False]
    book.take(pod, 0)  # a pod beyond the plan is counted where it runs; n0 has no slot to lose
    book.give_back(pod, 1)
    assert book.free(pod, rows).tolist() == [False, True]
    assert not book.free(_one_gpu("other", cpu=5), rows).any()  # a kind the plan does not know


def test_a_free_slot_outranks_every_other_key_until_it_is_taken() -> None:
    # Two identical empty nodes: ome alone fills n0 first (the framework's first-node tie rule).
    nodes = [Node("n0", 16000, 65536, "T4", 2), Node("n1", 16000, 65536, "T4", 2)]
    pods = [_one_gpu(f"p{i}") for i in range(3)]
    target = TargetWorkload.from_pods(pods)
    alone = ClusterArrays(nodes)
    assert [_place(alone, OmePolicy(target), p) for p in pods[:2]] == ["n0", "n0"]

    cluster = ClusterArrays(nodes)
    planned = OmePolicy(target, plan=SlotPlan({"n1": {pod_kind(pods[0]): 1}}))
    assert planned.name == "ome-plan"
    # The slot on n1 wins over ome's own preference; once taken, ome's keys decide again
    # (they now fill the started node n1, the fewest free GPUs left).
    assert [_place(cluster, planned, p) for p in pods[:2]] == ["n1", "n1"]
    assert _place(cluster, planned, pods[2]) == "n0"


def test_released_frees_the_slot_for_the_next_pod_of_that_kind() -> None:
    nodes = [Node("n0", 16000, 65536, "T4", 1), Node("n1", 16000, 65536, "T4", 1)]
    a, b = _one_gpu("a"), _one_gpu("b")
    for tell, expected in ((True, "n1"), (False, "n0")):
        cluster = ClusterArrays(nodes)
        policy = OmePolicy(TargetWorkload.from_pods([a, b]), plan=SlotPlan({"n1": {pod_kind(a): 1}}))
        assert _place(cluster, policy, a) == "n1"
        cluster.release(Assignment(a, 1, (0,)))  # a leaves n1
        if tell:
            policy.released(cluster, a, 1)
        # Both nodes are empty again: the slot, when given back, sends b to n1; else n0 comes first.
        assert _place(cluster, policy, b) == expected


@st.composite
def planned_scenario(draw: st.DrawFn) -> tuple[list[Node], list[PodRequest], SlotPlan]:
    nodes, pods = draw(scenario())
    # Any plan at all, even one that does not fit: slots only order feasible nodes.
    slots: dict[str, dict] = {}
    for pod in pods:
        if draw(st.booleans()):
            name = draw(st.sampled_from([n.name for n in nodes] + ["unknown"]))
            slots.setdefault(name, {})[pod_kind(pod)] = draw(st.integers(1, 3))
    return nodes, pods, SlotPlan(slots)


@settings(max_examples=40, deadline=None)
@given(planned_scenario(), st.integers(0, 1000))
def test_a_plan_never_leads_to_an_infeasible_state_nor_a_refused_pod_that_fits(
    case: tuple[list[Node], list[PodRequest], SlotPlan], seed: int
) -> None:
    nodes, pods, plan = case
    check_every_decision(nodes, pods, OmePolicy(TargetWorkload.from_pods(pods), plan=plan), seed)
