"""Table-driven scorer tests; the expected numbers are worked out in the comments."""

import numpy as np
import pytest

from ome.domain import PodRequest
from ome.solver import ClusterArrays, FragModel, Shape, TargetWorkload, make_policy
from tests.builders import make_node, make_pod


def cluster_with(*gpu_rows: list[int], cpu: int = 64_000) -> ClusterArrays:
    """One node per row; a row lists each GPU's free milli (8-GPU nodes unless shorter)."""
    c = ClusterArrays([make_node(f"n{i}").gpus("A100", len(row)).cpu(cpu).obj() for i, row in enumerate(gpu_rows)])
    for i, row in enumerate(gpu_rows):
        c.gpu_free[i, : len(row)] = row
    return c


def scores(policy: str, c: ClusterArrays, pod: PodRequest, target: TargetWorkload | None = None) -> list[int]:
    p = make_policy(policy, target=target)
    return p.score(c, pod, np.arange(len(c))).tolist()


def test_bestfit_prefers_the_least_leftover() -> None:
    c = cluster_with([1000] * 8, [0] * 6 + [1000, 1000])
    pod = make_pod(cpu=8_000, gpus=1)
    # raw = 100*(1 - (0.5*cpu_left/128000 + 0.5*gpu_left/8000)), cpu_left = 56000 on both:
    #   n0: gpu_left 7000 -> 100*(1 - 0.21875 - 0.4375) = 34.375 -> 34
    #   n1: gpu_left 1000 -> 100*(1 - 0.21875 - 0.0625) = 71.875 -> 71
    # then min-max normalised over the two: n0 -> 0, n1 -> 100
    assert scores("bestfit", c, pod) == [0, 100]


@pytest.mark.parametrize(
    ("rows", "pod", "expected"),
    [
        # idle 8-GPU node: case 3, max(33 - 8, 8) = 25; used node with 2 full GPUs: case 2, 50 - 1 = 49
        ([[1000] * 8, [0] * 6 + [1000, 1000]], make_pod(gpus=1), [25, 49]),
        # sharing 300 milli: n0 idle -> 25; n1 has a GPU with 400 free: case 1, 100 - (40 // 10) = 96
        ([[1000] * 8, [400] + [0] * 7], make_pod(gpus=1, milli=300), [25, 96]),
        # sharing 300 on a used node with only full GPUs left: case 2, 50 - 1 = 49
        ([[1000] * 8, [1000] + [0] * 7], make_pod(gpus=1, milli=300), [25, 49]),
    ],
)
def test_gpu_packing_bands(rows: list[list[int]], pod: PodRequest, expected: list[int]) -> None:
    assert scores("gpu-packing", cluster_with(*rows), pod) == expected


def test_most_and_least_allocated_mirror_each_other() -> None:
    c = cluster_with([1000] * 8, [0] * 4 + [1000] * 4)
    pod = make_pod(cpu=16_000, mem=65_536, gpus=1)
    # n0 after: cpu 25% used, mem 25% used (65536 of 262144), gpu 1/8 = 12% (integer %) -> (25+25+12)//3 = 20
    # n1 after: cpu 25%, mem 25%, gpu 5/8 = 62% -> (25+25+62)//3 = 37
    assert scores("most-allocated", c, pod) == [20, 37]
    # least: (75 + 75 + 88)//3 = 79 and (75 + 75 + 38)//3 = 62
    assert scores("least-allocated", c, pod) == [79, 62]


def test_fgd_fragment_of_a_node_by_hand() -> None:
    # Target: half the pods want 600 milli of one GPU (cpu 1000), half want a whole GPU.
    target = TargetWorkload((Shape(1000, 600, 1), Shape(1000, 1000, 1)), (0.5, 0.5))
    c = cluster_with([1000, 700, 300, 0])
    fm = FragModel(target, c)
    # idle = 2000. 600-shape can use GPUs with >= 600 free: 1000 + 700 = 1700 -> fragment 300.
    # 1000-shape can use the full GPU only: fragment 2000 - 1000 = 1000.
    # F = 0.5 * 300 + 0.5 * 1000 = 650
    assert fm.node_frag(c.gpu_free, c.cpu_free, c.model_id)[0] == pytest.approx(650)
    # Put 600 on the 700 GPU (leaves 100): 600-shape: usable 1000 -> frag 1400-1000 = 400;
    # 1000-shape: frag 400. F' = 400. On the full GPU (leaves 400): 600-shape usable 700 -> frag 700;
    # 1000-shape: nothing -> 1400. F' = 1050.
    after = fm.share_frag_after(c.gpu_free, c.cpu_free, c.model_id, 600, 0)[0]
    assert after[1] == pytest.approx(400) and after[0] == pytest.approx(1050)
    assert np.isinf(after[2]) and np.isinf(after[3])  # 300 and 0 free: does not fit
    # FGD therefore picks GPU 1: score int(100 * sigmoid((650 - 400) / 1000)) = int(56.2) = 56
    fgd = make_policy("fgd", target=target)
    pod = make_pod(gpus=1, milli=600, cpu=0)
    assert fgd.score(c, pod, np.array([0])).tolist() == [56]
    assert fgd.choose_gpus(c, pod, 0) == (1,)


def test_ome_keeps_cpu_beside_free_gpus() -> None:
    # Two 8-GPU nodes, 4 GPUs free each. n0 has 20 cores free, n1 has 80.
    # With 10 cores needed per GPU, a 16-core CPU-only pod strands GPUs on n0 (20-16 = 4 cores
    # left for 4 GPUs -> 3.6 stranded) but none on n1 (64 cores for 4 GPUs).
    target = TargetWorkload((Shape(10_000, 1000, 1),), (1.0,), cpu_per_gpu=10_000, mem_per_gpu=1)
    c = cluster_with([1000] * 4 + [0] * 4, [1000] * 4 + [0] * 4)
    c.cpu_free[:] = [20_000, 80_000]
    s = scores("ome", c, make_pod(cpu=16_000), target)
    assert s[1] > s[0]


@pytest.mark.parametrize(("cpu_only_per_gpu", "scarce"), [(0, False), (8_000, True)])
def test_ome_reserves_more_cpu_where_cpu_is_scarce(cpu_only_per_gpu: int, scarce: bool) -> None:
    # n0: 8 free GPUs, 90 cores (CPU-poor); n1: 8 free GPUs, 200 cores. The cluster offers
    # 290/16 = 18.1 cores per GPU; the workload asks 10 (+8 with CPU-only pods) per GPU.
    # Pressure 10/18.1 = 0.55: 10 cores kept per free GPU, a 9-core 1-GPU pod strands nothing
    # anywhere, so the nodes tie. Pressure 18/18.1 = 0.99: 14 kept per GPU; on n0 stranding
    # falls from 8 - 90/14 = 1.57 to 7 - 81/14 = 1.21, so the CPU-light pod goes to the CPU-poor node.
    target = TargetWorkload(
        (Shape(10_000, 1000, 1),), (1.0,), cpu_per_gpu=10_000, mem_per_gpu=1, cpu_only_per_gpu=cpu_only_per_gpu
    )
    c = cluster_with([1000] * 8, [1000] * 8)
    c.cpu_cap[:] = c.cpu_free[:] = [90_000, 200_000]
    policy = make_policy("ome", target=target)
    assert policy.cpu_pressure(c) == pytest.approx((10_000 + cpu_only_per_gpu) / (290_000 / 16))
    s = policy.score(c, make_pod(cpu=9_000, gpus=1), np.arange(2)).tolist()
    assert (s[0] > s[1]) if scarce else (s[0] == s[1])


@pytest.mark.parametrize(("cpu_only_per_gpu", "scarce"), [(0, False), (16_000, True)])
def test_ome_sends_cpu_only_pods_to_the_cpu_richest_node_type(cpu_only_per_gpu: int, scarce: bool) -> None:
    # n0: 8 GPUs, 96 cores (12 per GPU); n1: 2 GPUs, 104 cores (52 per GPU); all free. A 16-core
    # CPU-only pod strands nothing on either (4 cores kept per GPU: 80 >= 32, 88 >= 8).
    # Pressure 4/20 = 0.2: n1, the type with the most CPU per GPU, though n0 is the tighter fit.
    # Pressure (4+16)/20 = 1.0: CPU is scarce, every core counts, so the tightest fit n0.
    target = TargetWorkload(
        (Shape(4_000, 1000, 1),), (1.0,), cpu_per_gpu=4_000, mem_per_gpu=1, cpu_only_per_gpu=cpu_only_per_gpu
    )
    c = cluster_with([1000] * 8, [1000] * 2)
    c.cpu_cap[:] = c.cpu_free[:] = [96_000, 104_000]
    s = scores("ome", c, make_pod(cpu=16_000), target)
    assert (s[0] > s[1]) if scarce else (s[1] > s[0])


def test_every_policy_stays_in_range() -> None:
    target = TargetWorkload.from_pods([make_pod("a", gpus=1, milli=500), make_pod("b", gpus=2), make_pod("c")])
    c = cluster_with([1000] * 8, [500] * 8, [0] * 7 + [1000])
    for name in ("random", "dotprod", "gpu-clustering", "gpu-packing", "bestfit", "fgd", "ome", "least-allocated", "most-allocated"):
        for pod in (make_pod(gpus=1, milli=500), make_pod(gpus=1), make_pod(cpu=4000)):
            mask = c.fits_mask(pod)
            s = make_policy(name, target=target).score(c, pod, np.flatnonzero(mask))
            assert ((0 <= s) & (s <= 100)).all(), name
