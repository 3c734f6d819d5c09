"""API bodies -> views, and InferenceService -> ModelPlacement derivation."""

from __future__ import annotations

import json

import pytest

from ome.domain import SPOT, InvalidInput
from ome.operator import _names as n
from ome.operator._model import (
    accelerator_class_view,
    cpu_milli,
    mebibytes,
    micro_usd,
    model_label,
    node_view,
    placement_spec,
    placement_view,
    pod_view,
    policy_view,
    selector_matches,
    usd,
)
from ome.operator._ome import derived_placements
from ome.operator._model import InferenceServiceView

from .operator_builders import node, placement, policy


@pytest.mark.parametrize(("text", "milli"), [("2", 2000), ("500m", 500), ("1.5", 1500), (4, 4000), (None, 0)])
def test_cpu(text: object, milli: int) -> None:
    assert cpu_milli(text) == milli


@pytest.mark.parametrize(("text", "mib"), [("1Gi", 1024), ("512Mi", 512), ("1G", 954), ("1048576", 1), ("", 0)])
def test_memory(text: object, mib: int) -> None:
    assert mebibytes(text) == mib


def test_money() -> None:
    assert micro_usd("2.50", "x") == 2_500_000 and usd(2_500_000) == "2.50"
    with pytest.raises(InvalidInput, match="price"):
        micro_usd("cheap", "price")


def test_node_view_reads_gpu_labels_and_market() -> None:
    view = node_view(node("h0", spot=True, zone="z9", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]))
    assert (view.node.gpu_model, view.node.gpu_count, view.node.gpu_memory_mib) == ("H100", 8, 81920)
    assert view.node.capacity_type == SPOT and view.node.zone == "z9" and view.node.pool == "h100"
    assert view.taints[0].key == "k" and view.ready and not view.unschedulable


def test_pod_view_governed_share_gated() -> None:
    body = {"metadata": {"name": "m-0", "namespace": "ml", "uid": "u1",
                         "labels": {n.LABEL_MANAGED_BY: n.MANAGER, n.LABEL_PLACEMENT: "m", n.LABEL_REPLICA: "3",
                                    n.LABEL_MEMBER: "1"},
                         "annotations": {n.ANN_PLANNED_NODE: "h0", n.ANN_GPU_INDEX: "2"},
                         "ownerReferences": [{"kind": "ModelPlacement", "uid": "mp-uid"}]},
            "spec": {"schedulingGates": [{"name": n.GATE}], "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi", n.GPU_MILLI_RESOURCE: "300"}}},
                {"name": "b", "resources": {"limits": {"cpu": "250m"}}}]}}
    view = pod_view(body)
    assert (view.placement, view.replica, view.member, view.owner_uid) == ("m", 3, 1, "mp-uid")
    assert (view.cpu_milli, view.memory_mib, view.num_gpu, view.gpu_milli) == (500, 1024, 1, 300)
    assert view.gated and view.planned_node == "h0" and view.gpu_index == (2,)


def test_pod_view_ignores_labels_of_pods_it_does_not_manage() -> None:
    view = pod_view({"metadata": {"name": "x", "namespace": "ml", "labels": {n.LABEL_PLACEMENT: "m"}},
                     "spec": {"nodeName": "h0", "containers": []}, "status": {"phase": "Running"}})
    assert view.placement == "" and view.node_name == "h0"


@pytest.mark.parametrize(("patch", "error"), [
    ({"resources": {"gpus": 1, "gpuShare": 100}}, "spec.resources: gpus and gpuShare"),
    ({"accelerators": [{"gpuModel": "H100", "acceleratorClass": "x"}]}, "spec.accelerators[0]"),
    ({"spot": {"policy": "Sometimes"}}, "spec.spot.policy"),
    ({"resources": {"cpu": "lots"}}, "spec.resources.cpu"),
])
def test_placement_spec_errors_name_the_field(patch: dict, error: str) -> None:
    spec = placement("m")["spec"] | patch
    with pytest.raises(InvalidInput, match=error.replace("[", r"\[").replace("]", r"\]")):
        placement_spec(spec, "ml")


def test_placement_view_keeps_invalid_spec_as_error() -> None:
    body = placement("m", spot={"policy": "Sometimes"})
    body["metadata"]["uid"] = "u"
    view = placement_view(body)
    assert view.spec is None and "spec.spot.policy" in view.error


@pytest.mark.parametrize(("model", "namespace", "label"), [
    ({"name": "llama"}, "ml", "models.ome.io/clusterbasemodel.llama"),
    ({"name": "llama", "kind": "BaseModel"}, "ml", "models.ome.io/ml.basemodel.llama"),
    ({"name": "llama", "kind": "BaseModel", "namespace": "models"}, "ml", "models.ome.io/models.basemodel.llama"),
    ({"name": "llama", "readyLabel": "example.com/llama"}, "ml", "example.com/llama"),
])
def test_model_label(model: dict, namespace: str, label: str) -> None:
    assert model_label(model, namespace) == (label, "Ready")


def test_policy_view_prices_and_defaults() -> None:
    view = policy_view(policy([("h100", "h100", "4.00", "1.50")], costWeight=3))
    assert view.cost_weight == 3 and view.stranded_weight == 1
    assert view.pools[0].selector == (("scheduling.ome.io/pool", "h100"),)
    assert (view.pools[0].on_demand_micro_usd, view.pools[0].spot_micro_usd) == (4_000_000, 1_500_000)
    assert "spotPricePerGpuHour" not in json.dumps(policy_view({"spec": {"pools": [
        {"name": "p", "nodeSelector": {"matchLabels": {}}, "onDemandPricePerGpuHour": "1"}]}}).error)
    assert policy_view({"spec": {"pools": [{"name": "p", "onDemandPricePerGpuHour": "x"}]}}).error


def test_selector_expressions() -> None:
    labels = {"a": "1", "b": "2"}
    assert selector_matches(labels, {"a": "1"}, [{"key": "b", "operator": "In", "values": ["2", "3"]}])
    assert not selector_matches(labels, {}, [{"key": "b", "operator": "NotIn", "values": ["2"]}])
    assert selector_matches(labels, {}, [{"key": "c", "operator": "DoesNotExist"}])
    assert not selector_matches(labels, {}, [{"key": "c", "operator": "Exists"}])


def test_accelerator_class_view() -> None:
    view = accelerator_class_view({"metadata": {"name": "h100"}, "spec": {
        "discovery": {"nodeSelector": {"nvidia.com/gpu.product": "H100"}},
        "capabilities": {"memoryGB": "80Gi"}, "cost": {"perHour": "3.5"}}})
    assert view.node_selector == (("nvidia.com/gpu.product", "H100"),)
    assert view.gpu_memory_mib == 80 * 1024 and view.on_demand_micro_usd == view.spot_micro_usd == 3_500_000
    bare = accelerator_class_view({"metadata": {"name": "a"}, "spec": {"capabilities": {"memoryGB": 40}}})
    assert bare.gpu_memory_mib == 40 * 1024 and bare.on_demand_micro_usd == 0


# ------------------------------------------------------------------------ OME derivation


def isvc(spec: dict) -> InferenceServiceView:
    return InferenceServiceView("ml", "chat", "uid-1", json.dumps(spec))


def test_engine_and_decoder_become_two_placements() -> None:
    bodies = derived_placements(isvc({
        "model": {"name": "m", "kind": "BaseModel"},
        "acceleratorSelector": {"acceleratorClass": "h100", "constraints": {"minMemory": 80}},
        "engine": {"minReplicas": 2, "priorityClassName": "high",
                   "runner": {"image": "e:1", "resources": {"limits": {"nvidia.com/gpu": "4", "cpu": "8"}}}},
        "decoder": {"acceleratorOverride": {"acceleratorClass": "l40s"},
                    "runner": {"resources": {"requests": {"nvidia.com/gpu": "1"}}}},
        "router": {"runner": {"resources": {"requests": {"cpu": "1"}}}},
    }))
    engine, decoder = bodies
    assert engine["metadata"]["name"] == "chat-engine" and decoder["metadata"]["name"] == "chat-decoder"
    assert engine["spec"]["replicas"] == 2 and engine["spec"]["resources"] == {"gpus": 4, "cpu": "8"}
    assert engine["spec"]["accelerators"] == [{"acceleratorClass": "h100"}]
    assert engine["spec"]["minGpuMemory"] == "80Gi" and engine["spec"]["priorityClassName"] == "high"
    assert engine["spec"]["model"] == {"name": "m", "kind": "BaseModel", "policy": "Required"}
    assert engine["spec"]["template"]["spec"]["containers"][0]["image"] == "e:1"
    assert decoder["spec"]["replicas"] == 1 and decoder["spec"]["accelerators"] == [{"acceleratorClass": "l40s"}]
    assert engine["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert engine["metadata"]["labels"] == {n.LABEL_FROM_ISVC: "chat", n.LABEL_COMPONENT: "engine"}


def test_multi_node_engine_is_a_gang() -> None:
    [engine] = derived_placements(isvc({"engine": {
        "minReplicas": 1, "leader": {"runner": {"resources": {"requests": {"nvidia.com/gpu": "8"}}}},
        "worker": {"size": 3, "runner": {"resources": {"requests": {"nvidia.com/gpu": "8"}}}}}}))
    assert engine["spec"]["resources"] == {"gpus": 8, "nodesPerReplica": 4}


def test_component_without_gpu_is_not_governed() -> None:
    assert derived_placements(isvc({"engine": {"runner": {"resources": {"requests": {"cpu": "1"}}}}})) == []
