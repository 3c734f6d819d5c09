"""Every online policy, checked against the exact allocator: never an infeasible state."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, ClusterState, Node, PodRequest
from ome.solver import Bind, ClusterArrays, Infeasible, Policy, TargetWorkload, make_policy, place_one, policy_names

MODELS = ("A100", "T4", "H100")


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[Node], list[PodRequest]]:
    nodes = [
        Node(f"n{i}", draw(st.integers(2, 64)) * 1000, draw(st.integers(4, 256)) * 1024,
             draw(st.sampled_from(MODELS)), draw(st.sampled_from([1, 2, 4, 8])))
        for i in range(draw(st.integers(1, 6)))
    ]
    pods = []
    for i in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["cpu", "share", "whole"]))
        gpus, milli = {"cpu": (0, 0), "share": (1, draw(st.integers(1, 999))), "whole": (draw(st.sampled_from([1, 2, 4, 8])), MILLI)}[kind]
        models = draw(st.sets(st.sampled_from(MODELS), max_size=2))
        pods.append(PodRequest(f"p{i}", draw(st.integers(0, 16)) * 1000, draw(st.integers(0, 64)) * 1024, gpus, milli, frozenset(models)))
    return nodes, pods


@settings(max_examples=25, deadline=None)
@given(scenario(), st.sampled_from(sorted(policy_names())), st.integers(0, 1000))
def test_decisions_are_feasible_and_infeasible_means_nothing_fits(case: tuple[list[Node], list[PodRequest]], name: str, seed: int) -> None:
    nodes, pods = case
    check_every_decision(nodes, pods, make_policy(name, seed=seed, target=TargetWorkload.from_pods(pods)), seed)


def check_every_decision(nodes: list[Node], pods: list[PodRequest], policy: Policy, seed: int) -> None:
    """Place `pods` one by one with `policy`, each decision checked against the exact allocator."""
    arrays, exact = ClusterArrays(nodes), ClusterState(nodes)
    rng = np.random.default_rng(seed)
    for pod in pods:
        decision = place_one(arrays, pod, policy, rng)
        if isinstance(decision, Bind):
            exact.allocate(pod, decision.node, decision.gpus)  # raises on any infeasible choice
            arrays.allocate(pod, decision.node, decision.gpus)
            policy.observe(arrays, pod, decision.node, decision.gpus)
        else:
            assert isinstance(decision, Infeasible)
            assert not any(exact.check(pod, i).ok for i in range(len(nodes)))
        # the fast arrays and the exact reference agree on every node
        assert arrays.cpu_free.tolist() == exact.cpu_free
        assert arrays.mem_free.tolist() == exact.mem_free
        for i, node in enumerate(nodes):
            assert arrays.gpu_free[i, : node.gpu_count].tolist() == exact.gpu_free[i]


@settings(max_examples=60, deadline=None)
@given(scenario())
def test_fits_mask_matches_the_exact_check(case: tuple[list[Node], list[PodRequest]]) -> None:
    nodes, pods = case
    arrays, exact = ClusterArrays(nodes), ClusterState(nodes)
    for pod in pods:
        assert arrays.fits_mask(pod).tolist() == [exact.check(pod, i).ok for i in range(len(nodes))]


@settings(max_examples=40, deadline=None)
@given(scenario(), st.integers(0, 1000))
def test_ome_kept_per_node_state_matches_a_fresh_policy(case: tuple[list[Node], list[PodRequest]], seed: int) -> None:
    """ome keeps per-node sums between decisions and refreshes only the rows changed since
    (ClusterArrays.stamp): after any mix of placements and releases its keys equal those of a
    policy that sees the cluster for the first time."""
    nodes, pods = case
    arrays = ClusterArrays(nodes)
    target = TargetWorkload.from_pods(pods)
    kept = make_policy("ome", target=target)
    rng = np.random.default_rng(seed)
    placed = []
    for pod in pods:
        if placed and rng.random() < 0.3:
            arrays.release(placed.pop(int(rng.integers(len(placed)))))
        candidates = np.flatnonzero(arrays.fits_mask(pod))
        if candidates.size:
            fresh = make_policy("ome", target=target)
            for mine, theirs in zip(kept.rank_keys(arrays, pod, candidates), fresh.rank_keys(arrays, pod, candidates)):
                assert np.array_equal(mine, theirs)
        decision = place_one(arrays, pod, kept, rng)
        if isinstance(decision, Bind):
            placed.append(arrays.allocate(pod, decision.node, decision.gpus))
