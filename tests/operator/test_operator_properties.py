"""Properties of the whole loop on random worlds (Hypothesis): no GPU is ever over-committed,
gangs are all or nothing, the loop converges, and a converged world makes a fresh operator
write nothing."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ome.operator import FakeKube
from ome.operator import _names as n

from .operator_builders import converge, loop_for, node, placement

MODELS = ["H100", "A100", "L4"]

node_st = st.tuples(st.sampled_from(MODELS), st.booleans())
placement_st = st.fixed_dictionaries({
    "replicas": st.integers(0, 4),
    "gpus": st.sampled_from([0, 1, 2, 4, 8]),
    "share": st.sampled_from([0, 0, 250, 500]),
    "members": st.sampled_from([1, 1, 1, 2, 3]),
    "accelerators": st.lists(st.sampled_from(MODELS), max_size=2, unique=True),
    "priority": st.sampled_from([0, 10, 100]),
    "spot": st.sampled_from(["Never", "Allowed", "Preferred"]),
})


def _world(nodes: list[tuple[str, bool]], placements: list[dict]) -> FakeKube:
    kube = FakeKube()
    for i, (model, spot) in enumerate(nodes):
        kube.add(node(f"n{i}", model, spot=spot, zone=f"z{i % 2}"))
    for i, p in enumerate(placements):
        resources = {"gpus": p["gpus"], "nodesPerReplica": p["members"]}
        if not p["gpus"] and p["share"]:
            resources = {"gpus": 0, "gpuShare": p["share"], "nodesPerReplica": p["members"]}
        kube.add(placement(f"p{i}", p["replicas"], p["gpus"], accelerators=p["accelerators"], priority=p["priority"],
                           resources=resources, spot={"policy": p["spot"]}))
    return kube


def _check(kube: FakeKube) -> None:
    capacity = {name: int(body["status"]["allocatable"]["nvidia.com/gpu"]) for name, body in kube.nodes.items()}
    milli: Counter[tuple[str, int]] = Counter()
    gangs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (ns, _), pod in kube.pods.items():
        meta, spec = pod["metadata"], pod["spec"]
        labels = meta.get("labels", {})
        gangs[(labels[n.LABEL_PLACEMENT], labels[n.LABEL_REPLICA])].append(pod)
        where = spec.get("nodeName") or meta.get("annotations", {}).get(n.ANN_PLANNED_NODE)
        if not where or meta.get("deletionTimestamp"):
            continue
        limits = spec["containers"][0]["resources"]["limits"]
        share = int(limits.get("ome.io/gpu-milli", 0)) or 1000
        indices = [int(g) for g in meta["annotations"][n.ANN_GPU_INDEX].split(",") if g]
        assert len(indices) == int(limits.get("nvidia.com/gpu", 1 if "ome.io/gpu-milli" in limits else 0))
        for g in indices:
            assert 0 <= g < capacity[where]
            milli[(where, g)] += share
    assert all(v <= 1000 for v in milli.values()), milli
    for members in gangs.values():
        released = [p for p in members if not p["spec"].get("schedulingGates")]
        if released:  # a released gang is complete and fully reserved
            size = int(members[0]["metadata"].get("annotations", {}).get(n.ANN_GANG_SIZE, "1"))
            assert len(released) == len(members) == size
            assert all(p["metadata"]["annotations"].get(n.ANN_PLANNED_NODE) for p in members)
            nodes = [p["metadata"]["annotations"][n.ANN_PLANNED_NODE] for p in members]
            assert len(set(nodes)) == len(nodes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(node_st, min_size=1, max_size=6), st.lists(placement_st, min_size=1, max_size=4))
def test_random_worlds(nodes: list[tuple[str, bool]], placements: list[dict]) -> None:
    kube = _world(nodes, placements)
    loop = loop_for(kube)
    for _ in range(12):  # check the invariants after every cycle, not only at the end
        report = loop.cycle()
        _check(kube)
        bound, gone = kube.bind(), kube.settle()
        _check(kube)
        if not report.plan.pod_writes and not bound and not gone:
            break
    else:
        raise AssertionError("did not converge in 12 cycles")
    fresh = loop_for(kube).cycle()  # a restarted operator finds nothing to do
    assert fresh.plan.pod_writes == 0, fresh.plan
    evictions = sum(1 for verb, _ in kube.log if verb == "evict")
    # preemption only ever takes from strictly lower priorities, so with one priority level none
    if len({p["priority"] for p in placements}) == 1:
        assert evictions == 0
    converge(kube)


def _evicted(kube: FakeKube) -> list[str]:
    return sorted(what for verb, what in kube.log if verb == "evict")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(node_st, min_size=1, max_size=5), st.lists(placement_st, min_size=1, max_size=3),
       placement_st, st.integers(0, 12))
def test_a_crash_anywhere_evicts_nothing_extra(nodes: list[tuple[str, bool]], placements: list[dict],
                                               newcomer: dict, crash_after: int) -> None:
    """Converge, add a high-priority placement, crash the operator after `crash_after` writes of
    its next cycle (every later write fails, as if the process died), restart: no more
    evictions than a run without the crash."""

    def prepared() -> FakeKube:
        kube = _world(nodes, placements)
        converge(kube)
        urgent = _world([], [newcomer | {"priority": 1000}]).placements[("ml", "p0")]
        urgent["metadata"]["name"] = "urgent"
        kube.add(urgent)
        kube.log = []
        return kube

    clean = prepared()
    converge(clean)
    kube = prepared()
    kube.fail_after = crash_after
    loop_for(kube).cycle()  # the failed writes are reported, not raised
    kube.fail_after = None
    kube.bind()
    kube.settle()
    converge(kube)
    _check(kube)
    assert len(_evicted(kube)) <= len(_evicted(clean)), (_evicted(kube), _evicted(clean))
