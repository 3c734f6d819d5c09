from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from ome.domain import MILLI, Node, PodRequest
from ome.scheduler import (
    Extender,
    ExtenderSettings,
    Refused,
    canonical_order,
    node_from_v1,
    pod_from_v1,
    tie_break_rng,
)
from ome.scheduler._scores import SCORE_FIELDS, RecordingPolicy
from ome.solver import Bind, ClusterArrays, TargetWorkload, make_policy, place_one

from .builders import cluster, make_node, make_pod

TARGET = TargetWorkload.from_pods([PodRequest(f"t{i}", 1000, 0, n, m) for i, (n, m) in enumerate(
    [(1, 1000), (1, 500), (1, 250), (2, 1000), (1, 500), (0, 0)])])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = (), clock: Clock | None = None,
           **settings: Any) -> Extender:
    e = Extender(ExtenderSettings(**settings), target=TARGET, clock=clock or Clock())
    e.replace_nodes(nodes)
    e.replace_pods(list(pods))
    return e


def names(e: Extender) -> list[str]:
    return sorted(e.nodes)


def gpu_free(e: Extender, node: str) -> list[int]:
    return e.snapshot()["nodes"][node]["gpu_free"]


def test_filter_reserves_so_shares_never_overlap() -> None:
    e = engine(cluster(("a", "A100", 1)))
    taken = []
    for k in range(5):
        out = e.filter(pod_from_v1(make_pod(f"p{k}", milli=300)), names(e))
        if out.chosen:
            taken.append(out.gpus)
    assert len(taken) == 3  # 3 x 300 fit on one GPU, the 4th and 5th do not
    assert gpu_free(e, "a") == [100]
    out = e.filter(pod_from_v1(make_pod("p9", milli=300)), names(e))
    assert out.nodes == [] and "a" in out.failed and "300 milli free" in out.failed["a"]


def test_unresolvable_and_unknown_nodes_are_reported() -> None:
    e = engine(cluster(("a", "A100", 1), ("b", "T4", 2)))
    pod = pod_from_v1(make_pod("p", gpus=2, annotations={"ome.io/gpu-models": "A100"}))
    out = e.filter(pod, ["a", "b", "ghost"])
    assert out.nodes == []
    assert set(out.unresolvable) == {"a", "b"}
    assert "not (yet) in" in out.failed["ghost"]


def test_prioritize_gives_the_choice_ten_and_the_rest_at_most_four() -> None:
    e = engine(cluster(("a", "A100", 8), ("b", "A100", 8), ("c", "A100", 8)))
    pod = pod_from_v1(make_pod("p", milli=500))
    out = e.filter(pod, names(e))
    scores = dict(e.prioritize(pod, names(e)))
    assert scores[out.chosen] == 10
    assert all(0 <= s <= 4 for n, s in scores.items() if n != out.chosen)


def test_chosen_mode_returns_one_node() -> None:
    e = engine(cluster(("a", "A100", 8), ("b", "A100", 8)), filter_mode="chosen")
    out = e.filter(pod_from_v1(make_pod("p", gpus=1)), names(e))
    assert out.nodes == [out.chosen] and out.failed == {}


def test_bind_confirms_the_reservation() -> None:
    e = engine(cluster(("a", "A100", 2)))
    pod = pod_from_v1(make_pod("p", milli=400, uid="u1"))
    out = e.filter(pod, names(e))
    plan = e.begin_bind("u1", "default", "p", out.chosen)
    assert plan is not None and plan.gpus == out.gpus and plan.annotations == {"ome.io/gpu-index": str(out.gpus[0])}
    e.end_bind("u1", out.chosen, True)
    assert e.entries["u1"].state == "bound"
    assert sum(gpu_free(e, "a")) == 2000 - 400


def test_bind_elsewhere_replans_and_releases_the_reservation() -> None:
    e = engine(cluster(("a", "A100", 1), ("b", "A100", 1)))
    pod = pod_from_v1(make_pod("p", milli=400, uid="u1"))
    chosen = e.filter(pod, names(e)).chosen
    other = "b" if chosen == "a" else "a"
    plan = e.begin_bind("u1", "default", "p", other)
    assert plan is not None and plan.node == other
    assert gpu_free(e, chosen) == [1000] and gpu_free(e, other) == [600]


def test_failed_bind_releases_and_unknown_outcome_holds_until_ttl() -> None:
    clock = Clock()
    e = engine(cluster(("a", "A100", 1)), clock=clock)
    pod = pod_from_v1(make_pod("p", milli=400, uid="u1"))
    node = e.filter(pod, names(e)).chosen
    e.begin_bind("u1", "default", "p", node)
    e.end_bind("u1", node, False)
    assert gpu_free(e, "a") == [1000] and "u1" not in e.entries
    e.filter(pod, names(e))
    e.begin_bind("u1", "default", "p", node)
    e.end_bind("u1", node, None)  # apiserver timed out: we do not know
    assert gpu_free(e, "a") == [600]
    clock.now += e.settings.bind_ttl_s + 1
    e.expire()
    assert gpu_free(e, "a") == [1000]


def test_reservation_expires_without_bind() -> None:
    clock = Clock()
    e = engine(cluster(("a", "A100", 1)), clock=clock)
    e.filter(pod_from_v1(make_pod("p", milli=400, uid="u1")), names(e))
    clock.now += e.settings.reservation_ttl_s + 1
    assert e.expire() == 1
    assert gpu_free(e, "a") == [1000]


def test_refiltering_a_pod_replaces_its_reservation() -> None:
    e = engine(cluster(("a", "A100", 1)))
    pod = pod_from_v1(make_pod("p", milli=600, uid="u1"))
    assert e.filter(pod, names(e)).chosen == "a"
    assert e.filter(pod, names(e)).chosen == "a"  # not blocked by its own reservation
    assert gpu_free(e, "a") == [400]


def test_bind_refusals() -> None:
    e = engine(cluster(("a", "A100", 1)), [make_pod("big", milli=900, uid="ub", node="a", gpu_index="0")])
    with pytest.raises(Refused) as unknown_node:
        e.begin_bind("u1", "default", "p", "ghost")
    assert unknown_node.value.status == 404
    assert e.begin_bind("nobody", "default", "nobody", "a") is None  # caller must fetch the pod
    e.pod_event("ADDED", make_pod("p", milli=500, uid="u1"))
    with pytest.raises(Refused, match="does not fit"):
        e.begin_bind("u1", "default", "p", "a")
    e.node_event("ADDED", make_node("b", "A100", 1))
    with pytest.raises(Refused, match="already placed"):
        e.begin_bind("ub", "default", "big", "b")
    plan = e.begin_bind("ub", "default", "big", "a")
    assert plan is not None and plan.already_bound


def test_watch_events_bind_release_and_rebuild_from_annotations() -> None:
    pods = [make_pod("x", gpus=2, uid="ux", node="a", gpu_index="1,3"),
            make_pod("y", milli=250, uid="uy", node="a", gpu_index="0"),
            make_pod("z", milli=250, uid="uz", node="a", gpu_index="0")]
    e = engine(cluster(("a", "A100", 4)), pods)
    assert gpu_free(e, "a") == [500, 0, 1000, 0]
    e.pod_event("DELETED", pods[1])
    assert gpu_free(e, "a") == [750, 0, 1000, 0]
    done = dict(pods[2], status={"phase": "Succeeded"})
    e.pod_event("MODIFIED", done)
    assert gpu_free(e, "a") == [1000, 0, 1000, 0]
    e.node_event("ADDED", make_node("b", "A100", 2))  # rebuild keeps every allocation
    assert gpu_free(e, "a") == [1000, 0, 1000, 0] and gpu_free(e, "b") == [1000, 1000]


def test_unannotated_bound_pod_gets_gpus_and_conflicts_are_counted() -> None:
    e = engine(cluster(("a", "A100", 1)), [make_pod("u", gpus=1, uid="u1", node="a"),
                                           make_pod("v", gpus=1, uid="u2", node="a", gpu_index="0")])
    assert gpu_free(e, "a") == [0]
    assert e.stats()["conflicts"] == 1


def test_relist_keeps_pending_reservations() -> None:
    e = engine(cluster(("a", "A100", 1)))
    pod = make_pod("p", milli=500, uid="u1")
    e.pod_event("ADDED", pod)
    e.filter(pod_from_v1(pod), names(e))
    e.replace_pods([pod])  # a 410 Gone re-list while the pod waits for its bind
    assert gpu_free(e, "a") == [500]


def test_pod_bound_by_someone_else_moves_its_entry() -> None:
    e = engine(cluster(("a", "A100", 1), ("b", "A100", 1)))
    pod = make_pod("p", milli=500, uid="u1")
    chosen = e.filter(pod_from_v1(pod), names(e)).chosen
    other = "b" if chosen == "a" else "a"
    e.pod_event("MODIFIED", dict(pod, spec=dict(pod["spec"], nodeName=other),
                                 metadata=dict(pod["metadata"], annotations={"ome.io/gpu-index": "0"})))
    assert gpu_free(e, chosen) == [1000] and gpu_free(e, other) == [500]


# ---------------------------------------------------------------- same decisions as in-process


def _request(k: int, rng: np.random.Generator) -> dict[str, Any]:
    kind = rng.integers(4)
    if kind == 0:
        return make_pod(f"p{k}", gpus=int(rng.choice([1, 2, 4, 8])), cpu="4", memory="8Gi", uid=f"u{k}")
    if kind == 3:
        return make_pod(f"p{k}", milli=0, cpu="8", memory="4Gi", uid=f"u{k}")
    return make_pod(f"p{k}", milli=int(rng.choice([250, 500, 300, 700])), cpu="2", memory="2Gi", uid=f"u{k}")


@pytest.mark.parametrize(("policy", "tie_break"), [("fgd", "random"), ("bestfit", "random"),
                                                  ("gpu-packing", "random"), ("most-allocated", "random"),
                                                  ("fgd", "first"), ("gpu-packing", "first")])
def test_decisions_equal_in_process_replay_across_a_restart(policy: str, tie_break: str) -> None:
    rng = np.random.default_rng(7)
    nodes = [make_node(f"n{i:02d}", ["A100", "T4", "H100"][i % 3], [8, 2, 4][i % 3]) for i in range(24)]
    pods = [_request(k, rng) for k in range(160)]
    # In-process: ClusterArrays + place_one over the same sequence, canonical node order, per-pod rng.
    arrays = ClusterArrays(canonical_order(node_from_v1(n) for n in nodes))
    inner = make_policy(policy, target=TARGET)
    expected = {}
    for pod in pods:
        info = pod_from_v1(pod)
        d = place_one(arrays, info.request, inner, tie_break_rng(0, info.key), tie_break=tie_break)
        if isinstance(d, Bind):
            arrays.allocate(info.request, d.node, d.gpus)
            inner.observe(arrays, info.request, d.node, d.gpus)
            expected[info.key] = (arrays.names[d.node], d.gpus)
    # Extender: filter + bind each pod; half-way, a new extender rebuilt from the bound pods.
    e = engine(nodes, policy=policy, tie_break=tie_break)
    bound: list[dict[str, Any]] = []
    got = {}
    for k, pod in enumerate(pods):
        if k == 80:
            e = engine(nodes, bound, policy=policy, tie_break=tie_break)
        info = pod_from_v1(pod)
        out = e.filter(info, sorted(e.nodes, reverse=True))
        if not out.chosen:
            continue
        plan = e.begin_bind(info.uid, info.namespace, info.name, out.chosen)
        e.end_bind(info.uid, out.chosen, True)
        bound.append(make_pod(info.name, uid=info.uid, node=plan.node, gpu_index=",".join(map(str, plan.gpus)),
                              **_shape(pod)))
        got[info.key] = (plan.node, plan.gpus)
    assert got == expected


def _shape(pod: dict[str, Any]) -> dict[str, Any]:
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    out: dict[str, Any] = {"cpu": limits["cpu"], "memory": limits["memory"]}
    if "nvidia.com/gpu" in limits:
        out["gpus"] = int(limits["nvidia.com/gpu"])
    if "ome.io/gpu-milli" in limits:
        out["milli"] = int(limits["ome.io/gpu-milli"])
    return out


def test_score_cache_gives_the_policy_values() -> None:
    rng = np.random.default_rng(3)
    nodes = [node_from_v1(make_node(f"n{i}", "A100", 8)) for i in range(30)]
    arrays = ClusterArrays(nodes)
    inner = make_policy("fgd", target=TARGET)
    version = np.zeros(len(arrays), np.int64)
    cached = RecordingPolicy(inner, version, cache=True)
    for k in range(200):
        pod = pod_from_v1(_request(k, rng)).request
        feasible = np.flatnonzero(arrays.fits_mask(pod))
        if not feasible.size:
            continue
        assert np.array_equal(cached.score(arrays, pod, feasible), inner.score(arrays, pod, feasible))
        node = int(feasible[rng.integers(feasible.size)])
        arrays.allocate(pod, node, inner.choose_gpus(arrays, pod, node))
        version[node] += 1


@pytest.mark.parametrize("policy", sorted(SCORE_FIELDS))
def test_score_fields_are_all_the_policy_reads(policy: str) -> None:
    """Pods that differ only outside SCORE_FIELDS score the same (so they may share a cached row)."""
    arrays = ClusterArrays([node_from_v1(make_node(f"n{i}", ["A100", "T4"][i % 2], 4)) for i in range(6)])
    arrays.allocate(PodRequest("x", 1000, 10, 1, 300), 0, (1,))
    p = make_policy(policy, target=TARGET)
    base = PodRequest("a", 2000, 100, 1, 500)
    nodes = np.arange(len(arrays))
    for other in (replace(base, memory_mib=9999), replace(base, priority=7), replace(base, gpu_models=frozenset({"T4"})),
                  replace(base, min_gpu_memory_mib=10)):
        assert np.array_equal(p.score(arrays, base, nodes), p.score(arrays, other, nodes))


def test_warm_fills_the_cache() -> None:
    # Only node-local policies (a node's score depends on that node alone) have a score cache.
    e = engine(cluster(("a", "A100", 8), ("b", "T4", 2)), policy="fgd")
    assert e.warm() > 0
    assert engine(cluster(("a", "A100", 8)), policy="ome").warm() == 0


# ---------------------------------------------------------------- preemption


def _victims(e: Extender, pod: dict[str, Any], nodes: list[str]) -> dict[str, tuple[list[str], int]]:
    return e.preempt(pod_from_v1(pod), {n: (["whatever"], 0) for n in nodes})


def test_preempt_takes_the_fewest_lowest_priority_victims() -> None:
    pods = [make_pod("small1", milli=200, uid="s1", node="a", gpu_index="0", priority=1),
            make_pod("small2", milli=200, uid="s2", node="a", gpu_index="0", priority=1),
            make_pod("big", milli=700, uid="b1", node="a", gpu_index="1", priority=1),
            make_pod("vip", milli=300, uid="v1", node="a", gpu_index="1", priority=100)]
    e = engine(cluster(("a", "A100", 2)), pods)
    # Needs 700 on one GPU: GPU0 has 600 free, GPU1 has 0. Evicting one of the small pods frees
    # 800 on GPU0 (1 victim); evicting "big" frees only 700 on GPU1 too (1 victim, same priority).
    out = _victims(e, make_pod("new", milli=700, priority=50), ["a"])
    assert len(out["a"][0]) == 1 and "v1" not in out["a"][0]


def test_preempt_prefers_no_pdb_violation_and_drops_hopeless_nodes() -> None:
    pods = [make_pod("guarded", gpus=1, uid="g", node="a", gpu_index="0", priority=1, labels={"app": "db"}),
            make_pod("free", gpus=1, uid="f", node="a", gpu_index="1", priority=5),
            make_pod("vip", gpus=1, uid="v", node="b", gpu_index="0", priority=100)]
    e = engine(cluster(("a", "A100", 2), ("b", "A100", 1)), pods)
    e.replace_pdbs([{"metadata": {"name": "db", "namespace": "default"},
                     "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0}}])
    out = _victims(e, make_pod("new", gpus=1, priority=50), ["a", "b", "ghost"])
    assert out == {"a": (["f"], 0)}  # not the lower-priority "g": its PDB allows no disruption


def test_preempt_keeps_the_schedulers_proposal_where_the_pod_fits_for_us() -> None:
    e = engine(cluster(("a", "A100", 2)))
    assert e.preempt(pod_from_v1(make_pod("new", gpus=1, priority=5)), {"a": (["x"], 0)}) == {"a": (["x"], 0)}


def test_observed_target_comes_from_the_first_pod_list() -> None:
    e = Extender(ExtenderSettings(), target=None)
    e.replace_nodes(cluster(("a", "A100", 8)))
    e.replace_pods([make_pod(f"s{k}", milli=300, node="a", gpu_index=str(k)) for k in range(4)])
    e.filter(pod_from_v1(make_pod("p", gpus=1)), ["a"])
    assert e.target is not None and {(s.num_gpu, s.gpu_milli) for s in e.target.shapes} == {(1, 300)}


def test_unchanged_pods_are_not_translated_again() -> None:
    e = engine(cluster(("a", "A100", 2)))
    pod = make_pod("p", gpus=1, uid="u1")
    e.pod_event("ADDED", pod)
    first = e.pods["u1"]
    e.pod_event("MODIFIED", dict(pod, status={"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}))
    assert e.pods["u1"] is first  # a status-only update
    assert e.request_pod_info(pod) is first
    e.request_pod_info(make_pod("stranger", uid="u9"))
    assert "u9" not in e._fingerprints  # requests never add to the cache
    moved = dict(pod, spec=dict(pod["spec"], nodeName="a"), metadata=dict(pod["metadata"], annotations={
        "ome.io/gpu-index": "1"}))
    e.pod_event("MODIFIED", moved)
    assert e.pods["u1"] is not first and e.entries["u1"].gpus == (1,)
    e.pod_event("DELETED", moved)
    assert "u1" not in e._fingerprints and "u1" not in e.entries


def test_ome_plan_follows_its_plan_once_installed_and_gives_released_slots_back() -> None:
    from ome.solver import SlotPlan, pod_kind

    e = engine(cluster(("a", "A100", 2), ("b", "A100", 2)), policy="ome-plan", tie_break="first")
    first = make_pod("p1", gpus=1, uid="u1")
    kind = pod_kind(pod_from_v1(first).request)
    assert e.plan is None and e.policy.name == "ome"  # `ome` alone until a plan is in
    e.set_plan(SlotPlan({"b": {kind: 1}}))
    e.pod_event("ADDED", first)
    assert e.filter(pod_from_v1(first), names(e)).chosen == "b"  # its slot, though ome alone takes "a"
    assert e.policy.name == "ome-plan"
    e.pod_event("DELETED", first)  # the reservation goes, and with it the slot's use
    second = make_pod("p2", gpus=1, uid="u2")
    e.pod_event("ADDED", second)
    assert e.filter(pod_from_v1(second), names(e)).chosen == "b"


def test_ome_plan_is_solved_in_a_separate_process_from_the_target_workload() -> None:
    from ome.scheduler._planner import solve_plan

    workload = [PodRequest(f"w{i}", 4000, 8192, 1, MILLI) for i in range(4)] + [PodRequest("s", 2000, 4096, 1, 500)]
    e = Extender(ExtenderSettings(policy="ome-plan", plan_seconds=2.0), target=TargetWorkload.from_pods(workload),
                 clock=Clock(), warm_shapes=workload)
    e.replace_nodes(cluster(("a", "A100", 2), ("b", "A100", 2)))
    e.replace_pods([])
    assert solve_plan(e) and e.plan is not None
    assert sum(e.plan.slots.get("a", {}).values()) + sum(e.plan.slots.get("b", {}).values()) == e.plan.count() > 0
    assert not solve_plan(e)  # one plan per target: nothing more to solve until the workload changes


def test_ome_plan_is_solved_again_only_when_the_nodes_or_the_workload_mix_change() -> None:
    from ome.solver import SlotPlan

    clock = Clock()
    e = Extender(ExtenderSettings(policy="ome-plan"), target=None, clock=clock)
    e.replace_nodes(cluster(("a", "A100", 2), ("b", "A100", 2)))
    e.replace_pods([make_pod("p1", gpus=1, node="a", gpu_index="0", uid="u1")])
    e.filter(pod_from_v1(make_pod("x", gpus=1)), names(e))  # builds the observed target
    inputs = e.plan_inputs()
    assert inputs is not None and [p.name for p in inputs[1]] == ["default/p1"]
    e.set_plan(SlotPlan({"a": {}}))
    clock.now += 601.0  # past target_refresh_s: the target is rebuilt, from the same pods
    assert e.refresh_target() and e.plan_inputs() is None  # same nodes, same mix: the plan stays
    e.pod_event("ADDED", make_pod("p2", milli=500, node="b", gpu_index="0", uid="u2"))
    clock.now += 601.0
    assert e.refresh_target()
    inputs = e.plan_inputs()  # a new kind in the workload: plan again
    assert inputs is not None and sorted(p.name for p in inputs[1]) == ["default/p1", "default/p2"]
    e.set_plan(None)  # that solve failed: the same inputs are asked for again
    assert e.plan_inputs() is not None
