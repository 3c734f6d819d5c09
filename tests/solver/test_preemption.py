"""select_victims: fewest, lowest-priority victims; PDBs respected; gangs count whole."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, Assignment, ClusterState, Node, PodRequest
from ome.solver import (
    ClusterArrays,
    Infeasible,
    PlanContext,
    Preemption,
    ReplicaRequest,
    Tier,
    VictimUnit,
    select_reclaim,
    select_victims,
)


def node(name: str, model: str = "H100", gpus: int = 8) -> Node:
    return Node(name, 64_000, 512_000, model, gpus, 81920)


def pod(gpus: int, priority: int = 0, name: str = "p", milli: int = MILLI) -> PodRequest:
    return PodRequest(name, 100, 100, gpus, milli if gpus else 0, priority=priority)


@dataclass
class Running:
    key: str
    priority: int
    where: list[tuple[str, int]]  # (node, GPUs) per pod; several entries = a gang
    pdbs: tuple[tuple[str, int], ...] = ()


def build(nodes: list[Node], running: list[Running]) -> tuple[ClusterArrays, PlanContext, list[VictimUnit]]:
    cluster = ClusterArrays(nodes)
    units = []
    for r in running:
        assignments = []
        for i, (name, gpus) in enumerate(r.where):
            n = cluster.index[name]
            p = pod(gpus, r.priority, f"{r.key}-{i}")
            assignments.append(cluster.allocate(p, n, cluster.usable_gpus(p, n)[:gpus]))
        units.append(VictimUnit(r.key, r.priority, tuple(assignments), r.pdbs))
    return cluster, PlanContext.build(nodes), units


def ask(gpus: int, priority: int, members: int = 1, *tiers: Tier) -> ReplicaRequest:
    return ReplicaRequest("new#0", tuple(pod(gpus, priority, f"new-{i}") for i in range(members)), tuple(tiers))


def victims_of(decision: Preemption | Infeasible) -> list[str]:
    assert isinstance(decision, Preemption), decision
    return sorted(v.key for v in decision.victims)


CASES = [
    # (name, nodes, running, request gpus, request priority, expected victims)
    ("one low victim is enough",
     [node("n0")], [Running("low-a", 10, [("n0", 4)]), Running("low-b", 10, [("n0", 4)])], 4, 100, ["low-a"]),
    ("lowest priority first, even if it costs more GPUs",
     # n0: a mid 4-GPU replica; n1: two low 2-GPU + a high 4-GPU. 4 GPUs needed.
     # n0 -> key (50, 4000, 1); n1 -> key (10, 4000, 2): the low pair wins on priority
     [node("n0"), node("n1")],
     [Running("mid", 50, [("n0", 4)]), Running("fill0", 100, [("n0", 4)]),
      Running("low-a", 10, [("n1", 2)]), Running("low-b", 10, [("n1", 2)]), Running("fill1", 100, [("n1", 4)])],
     4, 100, ["low-a", "low-b"]),
    ("fewest GPUs among equal priorities",
     [node("n0"), node("n1")],
     [Running("big", 10, [("n0", 8)]), Running("small-a", 10, [("n1", 2)]), Running("small-b", 10, [("n1", 2)]),
      Running("fill", 100, [("n1", 4)])],
     4, 100, ["small-a", "small-b"]),
    ("free room needs no victim",
     [node("n0"), node("n1")], [Running("low", 10, [("n0", 8)])], 4, 100, []),
    ("equal or higher priority is never a victim",
     [node("n0")], [Running("peer", 100, [("n0", 8)])], 1, 100, None),
    ("a gang victim counts whole (all its GPUs on every node)",
     # n0: member of a 2-node gang (8+8); n1: two 4-GPU singles -> n1 (8000 milli) beats gang (16000)
     [node("n0"), node("n1"), node("n2")],
     [Running("gang", 10, [("n0", 8), ("n2", 8)]), Running("s-a", 10, [("n1", 4)]), Running("s-b", 10, [("n1", 4)])],
     8, 100, ["s-a", "s-b"]),
    ("PDB with no disruptions left protects its pods",
     [node("n0"), node("n1")],
     [Running("guarded", 10, [("n0", 8)], pdbs=(("ns/pdb", 1),)), Running("other", 20, [("n1", 8)])],
     8, 100, ["other"]),
]


@pytest.mark.parametrize(("nodes", "running", "gpus", "priority", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_victim_selection(nodes: list[Node], running: list[Running], gpus: int, priority: int,
                          expected: list[str] | None) -> None:
    cluster, ctx, units = build(nodes, running)
    decision = select_victims(cluster, ask(gpus, priority), units, ctx)
    if expected is None:
        assert isinstance(decision, Infeasible)
    else:
        assert victims_of(decision) == expected


def test_pdb_allowance_lets_victims_go() -> None:
    cluster, ctx, units = build([node("n0")], [Running("guarded", 10, [("n0", 8)], pdbs=(("ns/pdb", 1),))])
    assert isinstance(select_victims(cluster, ask(8, 100), units, ctx), Infeasible)
    assert victims_of(select_victims(cluster, ask(8, 100), units, ctx, budgets={"ns/pdb": 1})) == ["guarded"]


def test_plan_lands_on_the_freed_node_and_gpus() -> None:
    cluster, ctx, units = build([node("n0")], [Running("low", 10, [("n0", 4)]), Running("keep", 50, [("n0", 4)])])
    decision = select_victims(cluster, ask(4, 100), units, ctx)
    assert isinstance(decision, Preemption)
    member = decision.plan.members[0]
    assert member.node_name == "n0"
    assert member.gpus == units[0].assignments[0].gpus  # exactly the GPUs the victim held
    assert decision.gpus_disrupted_milli == 4 * MILLI and decision.max_victim_priority == 10


def test_gang_preemptor_frees_distinct_nodes() -> None:
    nodes = [node(f"n{i}") for i in range(3)]
    running = [Running(f"low{i}", 10, [(f"n{i}", 8)]) for i in range(3)]
    cluster, ctx, units = build(nodes, running)
    decision = select_victims(cluster, ask(8, 100, 2), units, ctx)
    assert isinstance(decision, Preemption)
    assert len(decision.victims) == 2
    assert len(set(decision.plan.nodes)) == 2


def test_tier_respected_under_preemption() -> None:
    cluster, ctx, units = build([node("h", "H100"), node("a", "A100")],
                                [Running("low-h", 10, [("h", 8)]), Running("low-a", 5, [("a", 8)])])
    decision = select_victims(cluster, ask(8, 100, 1, Tier("H100", frozenset({"H100"}))), units, ctx)
    assert victims_of(decision) == ["low-h"]


def test_does_not_mutate_cluster() -> None:
    cluster, ctx, units = build([node("n0")], [Running("low", 10, [("n0", 8)])])
    before = cluster.gpu_free.copy()
    select_victims(cluster, ask(8, 100), units, ctx)
    assert (cluster.gpu_free == before).all()


# ------------------------------------------------------------------------ property: minimal on one node


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([1, 2, 4]), st.sampled_from([10, 20, 30, 200])),
                min_size=1, max_size=10),
       st.integers(1, 8))
def test_matches_brute_force_oracle(pods: list[tuple[int, int, int]], need: int) -> None:
    """The chosen victims are exactly as good as the best of every subset, by the documented key."""
    nodes = [node(f"n{i}") for i in range(3)]
    free = [8, 8, 8]
    running = []
    for i, (n, gpus, prio) in enumerate(pods):
        if free[n] >= gpus:
            free[n] -= gpus
            running.append(Running(f"u{i:02d}", prio, [(f"n{n}", gpus)]))
    cluster, ctx, units = build(nodes, running)
    decision = select_victims(cluster, ask(need, 100), units, ctx)

    def oracle_key(subset: tuple[VictimUnit, ...], n: int) -> tuple[int, int, int, int] | None:
        free = int((cluster.gpu_free[n] >= MILLI).sum()) + sum(u.gpu_milli // MILLI for u in subset)
        if free < need or any(u.priority >= 100 for u in subset) or any(u.assignments[0].node != n for u in subset):
            return None
        top = max((u.priority for u in subset), default=-(2**62))
        return (top, sum(u.gpu_milli for u in subset), len(subset), sum(u.priority for u in subset))

    best = None
    for n in range(3):
        here = [u for u in units if u.assignments[0].node == n]
        for r in range(len(here) + 1):
            for subset in itertools.combinations(here, r):
                key = oracle_key(subset, n)
                if key is not None and (best is None or key < best):
                    best = key
    if best is None:
        assert isinstance(decision, Infeasible)
        return
    assert isinstance(decision, Preemption)
    got = decision.victims
    assert (max((u.priority for u in got), default=-(2**62)), sum(u.gpu_milli for u in got), len(got),
            sum(u.priority for u in got)) == best
    # and the result really fits: replay it on the exact allocator
    exact = ClusterState(nodes)
    for u in units:
        if u not in got:
            for a in u.assignments:
                exact.allocate(a.pod, a.node, a.gpus)
    for m in decision.plan.members:
        exact.allocate(m.pod, m.node, m.gpus)


def test_assignment_type_is_domain() -> None:
    cluster, ctx, units = build([node("n0")], [Running("low", 10, [("n0", 2)])])
    assert isinstance(units[0].assignments[0], Assignment)


# ------------------------------------------------------------------------ reclaim: evict for a gain in GPU


def share(milli: int, priority: int, name: str) -> PodRequest:
    return PodRequest(name, 100, 100, 1, milli, priority=priority)


def build_shares(nodes: list[Node],
                 running: list[tuple[str, str, int, int, int]]) -> tuple[ClusterArrays, PlanContext, list[VictimUnit]]:
    """running: (key, node, GPU index, milli, priority), one sharing pod each."""
    cluster = ClusterArrays(nodes)
    units = []
    for key, name, gpu, milli, priority in running:
        a = cluster.allocate(share(milli, priority, key), cluster.index[name], (gpu,))
        units.append(VictimUnit(key, priority, (a,)))
    return cluster, PlanContext.build(nodes), units


def test_reclaim_evicts_a_share_for_a_whole_gpu_only_when_it_gains_enough() -> None:
    cluster, ctx, units = build_shares([node("n0", gpus=1)], [("be-810", "n0", 0, 810, 0)])
    whole = ReplicaRequest("w#0", (pod(1, 0, "w"),))
    assert victims_of(select_reclaim(cluster, whole, units, ctx, min_gain_milli=100)) == ["be-810"]
    assert victims_of(select_reclaim(cluster, whole, units, ctx, min_gain_milli=190)) == ["be-810"]
    refused = select_reclaim(cluster, whole, units, ctx, min_gain_milli=191)
    assert isinstance(refused, Infeasible) and "810 of its 1000" in refused.status.reasons[0]
    assert isinstance(select_victims(cluster, whole, units, ctx), Infeasible)  # equal priority never preempts


def test_reclaim_takes_the_fewest_gpu_milli_among_the_candidates_given() -> None:
    cluster, ctx, units = build_shares(
        [node("n0", gpus=1), node("n1", gpus=1)],
        [("lone-810", "n0", 0, 810, 0), ("a-300", "n1", 0, 300, 5), ("b-300", "n1", 0, 300, 5)])
    decision = select_reclaim(cluster, ReplicaRequest("w#0", (pod(1, 0, "w"),)), units, ctx, min_gain_milli=100)
    assert victims_of(decision) == ["a-300", "b-300"]  # 600 disrupted beats 810, whatever the priorities
    assert isinstance(decision, Preemption) and decision.plan.members[0].node_name == "n1"


def test_reclaim_never_for_a_pod_without_gpus() -> None:
    cluster, ctx, units = build_shares([node("n0", gpus=1)], [("be", "n0", 0, 500, 0)])
    decision = select_reclaim(cluster, ReplicaRequest("c#0", (pod(0, 0, "c"),)), units, ctx, min_gain_milli=1)
    assert isinstance(decision, Infeasible)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from([150, 300, 470, 650, 810, 1000])),
                min_size=1, max_size=8),
       st.sampled_from([320, 650, 1000]), st.sampled_from([1, 100, 300]))
def test_reclaim_is_the_cheapest_eviction_and_only_for_its_gain(
        pods: list[tuple[int, int, int]], want: int, min_gain: int) -> None:
    """Against every subset of the running pods: the victims free the least GPU milli of any
    subset that lets the pod land; the reclaim happens exactly when that least gains min_gain."""
    nodes = [node("n0", gpus=2), node("n1", gpus=2)]
    free = {(n, g): MILLI for n in range(2) for g in range(2)}
    running = []
    for i, (n, g, milli) in enumerate(pods):
        if free[(n, g)] >= milli:
            free[(n, g)] -= milli
            running.append((f"u{i:02d}", f"n{n}", g, milli, 0))
    cluster, ctx, units = build_shares(nodes, running)
    request = ReplicaRequest("w#0", (share(want, 0, "w") if want < MILLI else pod(1, 0, "w"),))
    decision = select_reclaim(cluster, request, units, ctx, min_gain_milli=min_gain)

    least = None
    for n in range(2):
        here = [u for u in units if u.assignments[0].node == n]
        for r in range(len(here) + 1):
            for subset in itertools.combinations(here, r):
                work = cluster.copy()
                for u in subset:
                    work.release(u.assignments[0])
                if work.fits_mask_one(request.members[0], n):
                    milli = sum(u.gpu_milli for u in subset)
                    least = milli if least is None else min(least, milli)
    if least is None or want - least < min_gain:
        assert isinstance(decision, Infeasible)
        return
    assert isinstance(decision, Preemption)
    assert decision.gpus_disrupted_milli == least
    exact = ClusterState(nodes)
    for u in units:
        if u not in decision.victims:
            exact.allocate(u.assignments[0].pod, u.assignments[0].node, u.assignments[0].gpus)
    for m in decision.plan.members:
        exact.allocate(m.pod, m.node, m.gpus)
