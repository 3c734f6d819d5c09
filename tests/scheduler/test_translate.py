from __future__ import annotations

from decimal import Decimal

import pytest

from ome.domain import InvalidInput
from ome.scheduler import node_from_v1, parse_gpu_index, pod_from_v1
from ome.scheduler._translate import cpu_milli, memory_mib, quantity

from .builders import make_node, make_pod


@pytest.mark.parametrize(("text", "value"), [
    ("100m", Decimal("0.1")), ("2", Decimal(2)), ("1Gi", Decimal(2**30)), ("1e3", Decimal(1000)),
    ("8k", Decimal(8000)), (3, Decimal(3)), ("0.5", Decimal("0.5")), ("1.5Mi", Decimal(3 * 2**19)),
])
def test_quantity(text: object, value: Decimal) -> None:
    assert quantity(text, "x") == value


@pytest.mark.parametrize("bad", ["", "abc", "-1", "1Zi", "1e400", None, True, [1], float("nan"), "1" * 100])
def test_quantity_rejects(bad: object) -> None:
    with pytest.raises(InvalidInput):
        quantity(bad, "field")


def test_cpu_and_memory_round_up() -> None:
    assert cpu_milli("1500m", "x") == 1500
    assert cpu_milli("0.0001", "x") == 1
    assert memory_mib("1Gi", "x") == 1024
    assert memory_mib("1", "x") == 1


def test_node() -> None:
    node = node_from_v1(make_node("n1", "H100", 8, cpu="192", memory="2Ti", gpu_memory_mib=81920))
    assert (node.gpu_model, node.gpu_count, node.cpu_milli, node.memory_mib, node.gpu_memory_mib) == (
        "H100", 8, 192_000, 2 * 1024 * 1024, 81920)
    cpu_only = node_from_v1(make_node("c1", gpus=0))
    assert cpu_only.gpu_count == 0 and cpu_only.gpu_model == ""


def test_node_with_too_many_gpus_is_refused() -> None:
    with pytest.raises(InvalidInput, match="more than"):
        node_from_v1(make_node("big", gpus=64))


def test_pod_shapes() -> None:
    whole = pod_from_v1(make_pod("w", gpus=2)).request
    assert (whole.num_gpu, whole.gpu_milli) == (2, 1000)
    share = pod_from_v1(make_pod("s", milli=250)).request
    assert (share.num_gpu, share.gpu_milli, share.is_sharing) == (1, 250, True)
    cpu = pod_from_v1(make_pod("c", milli=0))
    assert cpu.request.num_gpu == 0 and cpu.managed
    both = pod_from_v1(make_pod("b", gpus=2, milli=2000)).request
    assert (both.num_gpu, both.gpu_milli) == (2, 1000)
    assert not pod_from_v1(make_pod("plain")).managed


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"milli": 1000}, "not a share"),
    ({"milli": 5000}, "not a share"),
    ({"gpus": 2, "milli": 300}, "one or the other"),
    ({"gpus": 17}, "more than"),
    ({"cpu": "-1"}, "negative"),
    ({"cpu": "100000000000"}, "beyond any node"),
])
def test_absurd_pods(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        pod_from_v1(make_pod("x", **kwargs))  # type: ignore[arg-type]


def test_models_from_annotation_selector_and_affinity() -> None:
    ann = pod_from_v1(make_pod("a", gpus=1, annotations={"ome.io/gpu-models": "A100, H100"}))
    assert ann.request.gpu_models == {"A100", "H100"}
    sel = pod_from_v1(make_pod("s", gpus=1, nodeSelector={"nvidia.com/gpu.product": "L4"}))
    assert sel.request.gpu_models == {"L4"}
    term = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["T4", "A10"]}]}
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    assert pod_from_v1(make_pod("f", gpus=1, affinity=aff)).request.gpu_models == {"T4", "A10"}
    anyterm = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
    aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].append(anyterm)
    assert pod_from_v1(make_pod("g", gpus=1, affinity=aff)).request.gpu_models == frozenset()


def test_init_containers_sidecars_and_overhead() -> None:
    pod = make_pod("i", cpu="1", memory="1Gi")
    pod["spec"]["initContainers"] = [
        {"name": "init", "resources": {"requests": {"cpu": "4"}}},
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
    ]
    pod["spec"]["overhead"] = {"cpu": "100m"}
    # max(app 1 + sidecar 0.5, init 4) + overhead 0.1
    assert pod_from_v1(pod).request.cpu_milli == 4100


def test_gpu_index_annotation() -> None:
    assert parse_gpu_index("0,3") == (0, 3)
    for bad in ("", "a", "1,1", "-1", "99", None, 3):
        assert parse_gpu_index(bad) is None
    assert pod_from_v1(make_pod("p", gpus=1, node="n", gpu_index="5")).gpu_index == (5,)


def test_missing_fields() -> None:
    for broken in ({}, {"metadata": {}}, {"metadata": {"name": "x"}, "spec": {}}, {"metadata": [], "spec": {}}):
        with pytest.raises(InvalidInput):
            pod_from_v1(broken)


def test_one_quantity_string_converts_by_its_resource() -> None:
    """Conversions are cached per (unit, value): "2" is 2000 milli CPU, 1 MiB of memory and 2 GPUs."""
    pod = make_pod("q", cpu="2", memory="2", gpus=2)
    request = pod_from_v1(pod).request
    assert (request.cpu_milli, request.memory_mib, request.num_gpu) == (2000, 1, 2)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "0.5"
    with pytest.raises(InvalidInput, match=r"containers\[0\] nvidia.com/gpu: '0.5' must be a whole number"):
        pod_from_v1(pod)


def test_a_sidecar_counts_for_the_init_containers_after_it() -> None:
    pod = make_pod("s", cpu="1", memory="1Gi")
    pod["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}},
        {"name": "init", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}},
    ]
    # cpu: max(app 1 + sidecar 1, sidecar 1 + init 3) = 4; memory: max(1 + 2, 2 + 1) = 3 GiB
    request = pod_from_v1(pod).request
    assert (request.cpu_milli, request.memory_mib) == (4000, 3072)
