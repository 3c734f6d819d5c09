import pytest

from ome.domain import InvalidInput, Node, PodRequest
from tests.builders import make_node, make_pod


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_gpu": 2, "gpu_milli": 500}, "whole GPUs"),
        ({"num_gpu": 1, "gpu_milli": 0}, "gpu_milli must be 1..1000"),
        ({"num_gpu": 1, "gpu_milli": 1001}, "gpu_milli must be 1..1000"),
        ({"num_gpu": 0, "gpu_milli": 300}, "without num_gpu"),
        ({"num_gpu": 17, "gpu_milli": 1000}, "outside 0..16"),
        ({"cpu_milli": -1}, ">= 0"),
    ],
)
def test_bad_pod_requests_name_the_pod_and_field(kwargs: dict, fragment: str) -> None:
    base = {"name": "web-1", "cpu_milli": 1000, "memory_mib": 10}
    with pytest.raises(InvalidInput, match=fragment) as info:
        PodRequest(**(base | kwargs))
    assert "web-1" in str(info.value)


def test_bad_nodes_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="no gpu_model"):
        Node("n1", 1000, 1000, gpu_count=2)
    with pytest.raises(InvalidInput, match="capacity_type"):
        Node("n1", 1000, 1000, capacity_type="preemptible")


def test_sharing_and_demand() -> None:
    assert make_pod(gpus=1, milli=300).is_sharing
    assert not make_pod(gpus=1).is_sharing
    assert make_pod(gpus=4).gpu_demand_milli == 4000
    assert make_pod(gpus=1, milli=300).gpu_demand_milli == 300


def test_accepts_honours_models_memory_and_count() -> None:
    a100 = make_node().gpus("A100", 8, memory_mib=40_960).obj()
    t4 = make_node().gpus("T4", 2, memory_mib=16_384).obj()
    pod = make_pod(gpus=1, models=("A100",))
    assert pod.accepts(a100) and not pod.accepts(t4)
    big = PodRequest("big", 1000, 10, 1, 1000, min_gpu_memory_mib=24_000)
    assert big.accepts(a100) and not big.accepts(t4)
    assert not make_pod(gpus=4).accepts(t4)
    assert make_pod().accepts(make_node().obj())  # CPU-only pods fit CPU nodes
