"""The whole loop (reconcile + apply) against FakeKube: placement, preference, cost, gangs,
preemption, restart safety, OME derivation, status and events."""

from __future__ import annotations

import pytest
from .operator_builders import (
    blocker,
    condition,
    converge,
    loop_for,
    node,
    placement,
    pods_of,
    policy,
    status_of,
)

from ome.operator import FakeKube, KubeError, reconcile
from ome.operator import _names as n


def cluster(*nodes: dict) -> FakeKube:
    kube = FakeKube()
    for body in nodes:
        kube.add(body)
    return kube


def planned(pod: dict) -> str:
    return pod["metadata"].get("annotations", {}).get(n.ANN_PLANNED_NODE, "")


# ------------------------------------------------------------------------ placing replicas


def test_replicas_are_created_pinned_and_run() -> None:
    kube = cluster(node("h0"), node("h1"))
    kube.add(placement("llama", replicas=3, gpus=4, accelerators=["H100"]))
    converge(kube)
    pods = pods_of(kube, "llama")
    assert [p["metadata"]["name"] for p in pods] == ["llama-0", "llama-1", "llama-2"]
    for p in pods:
        spec = p["spec"]
        assert spec["schedulerName"] == "default-scheduler"
        assert "preemptionPolicy" not in spec and "priorityClassName" not in spec  # the operator alone preempts
        assert not spec.get("schedulingGates")
        assert spec["nodeName"] == planned(p)
        pin = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert pin["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [planned(p)]
        assert len(p["metadata"]["annotations"][n.ANN_GPU_INDEX].split(",")) == 4
        assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    status = status_of(kube, "llama")
    assert (status["desiredReplicas"], status["placedReplicas"], status["runningReplicas"]) == (3, 3, 3)
    assert condition(kube, "llama", "Placed")["status"] == "True"
    # GPUs never double-booked on a node
    used: dict[str, set[str]] = {}
    for p in pods:
        gpus = set(p["metadata"]["annotations"][n.ANN_GPU_INDEX].split(","))
        assert not used.get(planned(p), set()) & gpus
        used.setdefault(planned(p), set()).update(gpus)


def test_ordered_preference_and_cost_from_policy() -> None:
    kube = cluster(node("a0", "A100"), node("h0", "H100"))
    kube.add(policy([("h100", "h100", "4.00", "1.50"), ("a100", "a100", "2.50", "1.00")]))
    kube.add(placement("m", replicas=3, gpus=4, accelerators=["H100", "A100"]))
    converge(kube)
    nodes = [planned(p) for p in pods_of(kube, "m")]
    assert nodes.count("h0") == 2 and nodes.count("a0") == 1  # first choice while it fits, then the next
    status = status_of(kube, "m")
    # 2 replicas x 4 GPUs x $4.00 + 1 x 4 x $2.50 = $42.00
    assert status["hourlyCost"] == "42.00" and status["hourlyCostMicroUSD"] == 42_000_000
    by_index = {r["index"]: r for r in status["replicas"]}
    assert {by_index[i]["accelerator"] for i in (0, 1)} == {"H100"} and by_index[2]["accelerator"] == "A100"
    assert by_index[2]["pool"] == "a100" and by_index[2]["capacityType"] == "on-demand"
    assert by_index[2]["hourlyCost"] == "10.00"


def test_unschedulable_says_why_and_pods_wait_gated() -> None:
    kube = cluster(node("l0", "L4"))
    kube.add(placement("big", replicas=1, gpus=8, accelerators=["H100"]))
    converge(kube)
    [pod] = pods_of(kube, "big")
    assert pod["spec"]["schedulingGates"] == [{"name": n.GATE}] and not planned(pod)
    cond = condition(kube, "big", "Unschedulable")
    assert cond["status"] == "True" and cond["reason"] == "NoSuitableNode"
    assert "1 with another accelerator" in cond["message"] and "accepts H100" in cond["message"]
    assert any(e.reason == "Unschedulable" for e in kube.events)


def test_taints_and_template_node_selector_are_honoured() -> None:
    taint = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    kube = cluster(node("tainted", taints=[taint]), node("plain"), node("labelled", labels={"team": "a"}))
    kube.add(placement("t1", template={"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}],
                                                "nodeSelector": {"kubernetes.io/hostname": "tainted"}}}))
    kube.add(placement("t2", template={"spec": {"nodeSelector": {"team": "a"}}}))
    converge(kube)
    assert planned(pods_of(kube, "t1")[0]) == "tainted"
    assert planned(pods_of(kube, "t2")[0]) == "labelled"


def test_spot_policy_keeps_minimum_on_demand() -> None:
    kube = cluster(node("od0"), node("sp0", spot=True), node("sp1", spot=True))
    kube.add(placement("s", replicas=3, gpus=8, spot={"policy": "Preferred", "minOnDemandReplicas": 1}))
    converge(kube)
    assert sorted(planned(p) for p in pods_of(kube, "s")) == ["od0", "sp0", "sp1"]
    kube.add(placement("never", replicas=1, gpus=1, spot={"policy": "Never"}))
    converge(kube)
    cond = condition(kube, "never", "Unschedulable")
    assert cond["status"] == "True" and "on-demand" in cond["message"]


def test_scale_down_deletes_highest_replicas() -> None:
    kube = cluster(node("h0"))
    kube.add(placement("m", replicas=3, gpus=1))
    converge(kube)
    kube.placements[("ml", "m")]["spec"]["replicas"] = 1
    converge(kube)
    assert [p["metadata"]["name"] for p in pods_of(kube, "m")] == ["m-0"]
    assert any(e.reason == "ScaledDown" for e in kube.events)


def test_invalid_spec_is_reported() -> None:
    kube = cluster(node("h0"))
    kube.add(placement("bad", spot={"policy": "Sometimes"}))
    converge(kube)
    cond = condition(kube, "bad", "Unschedulable")
    assert cond["reason"] == "InvalidSpec" and "spec.spot.policy" in cond["message"]
    assert not pods_of(kube, "bad")


def test_gpu_share_pods_share_one_gpu() -> None:
    kube = cluster(node("l0", "L4"))
    kube.add(placement("small", replicas=4, gpus=0, resources={"gpus": 0, "gpuShare": 250}))
    converge(kube)
    pods = pods_of(kube, "small")
    assert {p["metadata"]["annotations"][n.ANN_GPU_INDEX] for p in pods} == {"0"}  # packed on the tightest GPU
    assert all(p["spec"]["containers"][0]["resources"]["limits"]["ome.io/gpu-milli"] == "250" for p in pods)


# ------------------------------------------------------------------------ gangs


def test_gang_waits_gated_then_starts_together() -> None:
    kube = cluster(*(node(f"h{i}") for i in range(4)))
    kube.add(blocker("hog", "h3", 8))
    kube.add(placement("gang", replicas=1, gpus=8, resources={"gpus": 8, "nodesPerReplica": 4}))
    loop = converge(kube)
    pods = pods_of(kube, "gang")
    assert len(pods) == 4
    assert all(p["spec"]["schedulingGates"] == [{"name": n.GATE}] and not planned(p) for p in pods)
    assert condition(kube, "gang", "Unschedulable")["reason"] == "GangIncomplete"
    del kube.pods[("other", "hog")]  # a fourth node frees up
    report = loop.cycle()  # reserves all four, still gated
    assert len(report.plan.reserve) == 4 and not report.plan.release
    pods = pods_of(kube, "gang")
    assert all(p["spec"]["schedulingGates"] and planned(p) for p in pods)
    assert sorted(planned(p) for p in pods) == ["h0", "h1", "h2", "h3"]
    assert kube.bind() == []  # nothing can start while gated
    report = loop.cycle()  # every member reserved: release them all in one stage
    assert len([a for a in report.plan.release if getattr(a, "release", False)]) == 4
    assert sorted(kube.bind()) == ["gang-0-0", "gang-0-1", "gang-0-2", "gang-0-3"]
    converge(kube, loop)
    assert status_of(kube, "gang")["runningReplicas"] == 1
    assert any(e.reason == "GangReleased" for e in kube.events)


def test_gang_member_lost_restarts_whole_gang() -> None:
    kube = cluster(*(node(f"h{i}") for i in range(3)))
    kube.add(placement("gang", replicas=1, gpus=8, resources={"gpus": 8, "nodesPerReplica": 2}))
    loop = converge(kube)
    kube.pods[("ml", "gang-0-1")]["status"]["phase"] = "Failed"
    report = loop.cycle()
    assert {a.name for a in report.plan.release} == {"gang-0-0", "gang-0-1"}
    converge(kube, loop)
    assert status_of(kube, "gang")["runningReplicas"] == 1


# ------------------------------------------------------------------------ preemption


def _filled() -> FakeKube:
    kube = cluster(node("h0"), node("h1"))
    kube.add({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"},
              "value": 1000})
    kube.add(placement("low", replicas=4, gpus=2, priority=10))  # 8 GPUs
    kube.add(placement("mid", replicas=2, gpus=4, priority=50))  # 8 GPUs
    converge(kube)
    assert status_of(kube, "low")["placedReplicas"] == 4 and status_of(kube, "mid")["placedReplicas"] == 2
    return kube


def test_preemption_evicts_minimal_lowest_priority_victims() -> None:
    kube = _filled()
    kube.add(placement("urgent", replicas=1, gpus=4, priorityClassName="high"))
    loop = loop_for(kube)
    report = loop.cycle()
    assert len(report.plan.evict) == 2  # two 2-GPU low replicas, not one 4-GPU mid replica
    evicted = {e.name for e in report.plan.evict}
    assert all(name.startswith("low-") for name in evicted)
    low_nodes = {kube.pods[("ml", name)]["spec"]["nodeName"] for name in evicted}
    assert len(low_nodes) == 1  # both on the node the urgent replica lands on
    [urgent] = pods_of(kube, "urgent")
    assert planned(urgent) in low_nodes and "priorityClassName" not in urgent["spec"]
    assert status_of(kube, "urgent")["priority"] == 1000  # from the PriorityClass named by the placement
    # ordering: the reservation was written before the evictions
    first_evict = next(i for i, (verb, _) in enumerate(kube.log) if verb == "evict")
    assert kube.log.index(("create", "ml/urgent-0")) < first_evict
    converge(kube, loop)
    assert status_of(kube, "urgent")["runningReplicas"] == 1
    degraded = condition(kube, "low", "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "Preempted"
    assert "preempted by ml/urgent" in degraded["message"] and "priority 1000" in degraded["message"]
    assert status_of(kube, "low")["placedReplicas"] == 2
    assert status_of(kube, "mid")["placedReplicas"] == 2  # untouched
    assert sum(1 for verb, _ in kube.log if verb == "evict") == 2
    assert any(e.reason == "Preempting" for e in kube.events)
    assert any(e.reason == "Preempted" and e.type == "Warning" for e in kube.events)


def test_equal_priority_never_preempts() -> None:
    kube = _filled()
    kube.add(placement("peer", replicas=1, gpus=2, priority=10))
    converge(kube)
    assert not any(verb == "evict" for verb, _ in kube.log)
    assert condition(kube, "peer", "Unschedulable")["status"] == "True"


def test_pdb_protects_victims() -> None:
    kube = _filled()
    kube.add({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "low", "namespace": "ml"},
              "spec": {"selector": {"matchLabels": {n.LABEL_PLACEMENT: "low"}}}, "status": {"disruptionsAllowed": 0}})
    kube.add(placement("urgent", replicas=1, gpus=4, priority=1000))
    report = loop_for(kube).cycle()
    assert {e.name.rsplit("-", 1)[0] for e in report.plan.evict} == {"mid"}  # low is protected: one mid goes


@pytest.mark.parametrize("crash_after", range(0, 4))
def test_crash_mid_preemption_evicts_nothing_extra(crash_after: int) -> None:
    """Kill the operator after any number of writes of the preemption cycle; a fresh one finishes it."""
    kube = _filled()
    kube.add(placement("urgent", replicas=1, gpus=4, priority=1000))
    kube.fail_after = crash_after
    with pytest.raises(KubeError):
        _crashing_cycle(kube)
    kube.fail_after = None
    kube.bind()
    converge(kube)  # a new operator instance, rebuilt from the cluster only
    assert sum(1 for verb, _ in kube.log if verb == "evict") == 2
    assert status_of(kube, "urgent")["runningReplicas"] == 1
    assert status_of(kube, "mid")["placedReplicas"] == 2


def _crashing_cycle(kube: FakeKube) -> None:
    """One cycle whose writes stop at the injected failure, in stage order (like a killed process)."""
    plan = reconcile(kube.snapshot(), "default-scheduler", "t")
    for a in plan.reserve:
        if hasattr(a, "manifest"):
            kube.create_pod(a.namespace, a.manifest)
        else:
            kube.patch_pod(a.namespace, a.name, a.patch)
    for e in plan.evict:
        kube.evict_pod(e.namespace, e.name, e.uid)
    for r in plan.release:
        kube.patch_pod(r.namespace, r.name, r.patch) if hasattr(r, "patch") else kube.delete_pod(r.namespace, r.name, r.uid)
    raise KubeError("the whole cycle went through")


# ------------------------------------------------------------------------ restart safety


def test_restart_rebuilds_and_writes_nothing() -> None:
    kube = cluster(node("h0"), node("h1"), node("a0", "A100"))
    kube.add(placement("a", replicas=3, gpus=2, accelerators=["H100"]))
    kube.add(placement("b", replicas=1, gpus=8, resources={"gpus": 8, "nodesPerReplica": 2}, priority=5))
    converge(kube)
    before = {k: (p["spec"].get("nodeName"), planned(p)) for k, p in kube.pods.items()}
    writes = len(kube.log)
    report = loop_for(kube).cycle()  # a brand-new operator
    assert report.plan.pod_writes == 0 and not report.plan.statuses
    assert len(kube.log) == writes
    assert {k: (p["spec"].get("nodeName"), planned(p)) for k, p in kube.pods.items()} == before


def test_restart_with_reservations_not_yet_bound() -> None:
    kube = cluster(node("h0"))
    kube.add(placement("a", replicas=2, gpus=4))
    loop_for(kube).cycle()  # reserved and released, the scheduler has not bound them yet
    report = loop_for(kube).cycle()  # restart before binding
    assert report.plan.pod_writes == 0
    kube.bind()
    assert status_of(kube, "a")["placedReplicas"] == 2


# ------------------------------------------------------------------------ OME input


def _ome_world() -> FakeKube:
    ready = {"models.ome.io/clusterbasemodel.llama-3-70b": "Ready"}
    kube = cluster(node("h0", labels=ready), node("h1"), node("h2", labels=ready), node("a0", "A100", labels=ready))
    kube.add({"apiVersion": "ome.io/v1beta1", "kind": "AcceleratorClass", "metadata": {"name": "nvidia-h100"},
              "spec": {"discovery": {"nodeSelector": {"nvidia.com/gpu.product": "H100"}},
                       "capabilities": {"memoryGB": "80Gi"}, "cost": {"perHour": "3.5", "spotPerHour": "1.2"}}})
    kube.add({"apiVersion": "ome.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "chat", "namespace": "ml"},
              "spec": {"model": {"name": "llama-3-70b"}, "acceleratorSelector": {"acceleratorClass": "nvidia-h100"},
                       "engine": {"minReplicas": 4, "maxReplicas": 6,
                                  "runner": {"image": "vllm:latest",
                                             "resources": {"requests": {"nvidia.com/gpu": "2", "cpu": "4"}}}}}})
    return kube


def test_inference_service_becomes_placement_on_model_ready_nodes() -> None:
    kube = _ome_world()
    converge(kube)
    mp = kube.placements[("ml", "chat-engine")]
    assert mp["spec"]["accelerators"] == [{"acceleratorClass": "nvidia-h100"}]
    assert mp["spec"]["model"] == {"name": "llama-3-70b", "kind": "ClusterBaseModel", "policy": "Required"}
    assert mp["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    pods = pods_of(kube, "chat-engine")
    assert len(pods) == 4
    assert {planned(p) for p in pods} == {"h0", "h2"}  # H100 class and model Ready: not h1, not a0
    assert pods[0]["spec"]["containers"][0]["image"] == "vllm:latest"
    assert status_of(kube, "chat-engine")["hourlyCost"] == "28.00"  # 4 x 2 GPUs x $3.50 (class price)
    report = loop_for(kube).cycle()
    assert not report.plan.placements  # derived spec is stable
    mp["spec"]["resources"]["nodesPerReplica"] = 1  # what the API server's defaulting adds
    mp["spec"]["spot"] = {"policy": "Never", "minOnDemandReplicas": 0}
    assert not loop_for(kube).cycle().plan.placements


def test_inference_service_change_updates_placement() -> None:
    kube = _ome_world()
    converge(kube)
    kube.inference_services[("ml", "chat")]["spec"]["engine"]["minReplicas"] = 2
    converge(kube)
    assert kube.placements[("ml", "chat-engine")]["spec"]["replicas"] == 2
    assert len(pods_of(kube, "chat-engine")) == 2


def test_node_loss_replaces_replica_and_marks_degraded() -> None:
    kube = cluster(node("h0"), node("h1"))
    kube.add(placement("m", replicas=2, gpus=8))
    loop = converge(kube)
    gone = planned(pods_of(kube, "m")[0])
    del kube.nodes[gone]
    kube.add(node("h2"))
    loop.cycle()
    assert condition(kube, "m", "Degraded")["reason"] == "ReplicaLost"
    converge(kube, loop)
    assert status_of(kube, "m")["runningReplicas"] == 2
    assert condition(kube, "m", "Degraded")["status"] == "False"
