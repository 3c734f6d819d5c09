"""The embedded default: a synthetic LLM-serving cluster and workload, generated from a seed.

Several GPU types with different memory and prices, spot and on-demand pools, model replicas
needing 1/2/4/8 whole GPUs and small models sharing GPUs. No files, no downloads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ome.domain import ON_DEMAND, SPOT, Node, PodRequest

# (model, GPUs per node, GPU memory MiB, vCPU, memory GiB, on-demand $/GPU-hour, node count)
GPU_POOLS = (
    ("H100", 8, 81920, 192, 2048, 4.00, 40),
    ("A100", 8, 40960, 96, 1152, 2.40, 60),
    ("L40S", 4, 46080, 64, 512, 1.30, 60),
    ("L4", 4, 24576, 48, 192, 0.70, 80),
    ("T4", 2, 16384, 32, 128, 0.35, 80),
)
SPOT_DISCOUNT = 0.35  # spot costs 35 % of on-demand
SPOT_SHARE = 0.3
ZONES = ("zone-a", "zone-b", "zone-c")

# (name, GPUs, milli per GPU, min GPU memory MiB, vCPU, memory GiB, relative frequency)
MODEL_SHAPES = (
    ("llama-70b-tp8", 8, 1000, 40960, 64, 640, 3),
    ("llama-70b-tp4", 4, 1000, 81920, 32, 320, 3),
    ("mixtral-tp4", 4, 1000, 40960, 32, 256, 2),
    ("llama-13b-tp2", 2, 1000, 24576, 16, 96, 6),
    ("llama-8b", 1, 1000, 24576, 8, 48, 14),
    ("embed-small", 1, 250, 0, 2, 8, 12),
    ("rerank", 1, 500, 0, 4, 16, 10),
    ("whisper", 1, 330, 0, 4, 16, 8),
    ("vision-7b", 1, 750, 16384, 6, 32, 8),
    ("cpu-router", 0, 0, 0, 4, 8, 6),
)


@dataclass(frozen=True, slots=True)
class SyntheticScenario:
    nodes: tuple[Node, ...]
    pods: tuple[PodRequest, ...]
    name: str = "synthetic-llm"


def synthetic_nodes(seed: int = 7, scale: float = 1.0) -> list[Node]:
    rng = np.random.default_rng(seed)
    nodes: list[Node] = []
    for model, gpus, gmem, vcpu, mem_gib, price, count in GPU_POOLS:
        for i in range(max(1, int(round(count * scale)))):
            spot = rng.random() < SPOT_SHARE
            gpu_price = price * (SPOT_DISCOUNT if spot else 1.0)
            nodes.append(
                Node(
                    name=f"{model.lower()}-{i:04d}",
                    cpu_milli=vcpu * 1000,
                    memory_mib=mem_gib * 1024,
                    gpu_model=model,
                    gpu_count=gpus,
                    gpu_memory_mib=gmem,
                    pool=f"{model.lower()}-{'spot' if spot else 'od'}",
                    capacity_type=SPOT if spot else ON_DEMAND,
                    zone=ZONES[i % len(ZONES)],
                    price_micro_usd_per_hour=int(round(gpu_price * gpus * 1_000_000)),
                )
            )
    return nodes


def synthetic_pods(count: int, seed: int = 7) -> list[PodRequest]:
    rng = np.random.default_rng(seed + 1)
    weights = np.array([s[-1] for s in MODEL_SHAPES], float)
    picks = rng.choice(len(MODEL_SHAPES), size=count, p=weights / weights.sum())
    pods = []
    for i, k in enumerate(picks):
        name, gpus, milli, gmem, vcpu, mem_gib, _ = MODEL_SHAPES[int(k)]
        pods.append(
            PodRequest(
                name=f"{name}-{i:05d}",
                cpu_milli=vcpu * 1000,
                memory_mib=mem_gib * 1024,
                num_gpu=gpus,
                gpu_milli=milli if gpus else 0,
                min_gpu_memory_mib=gmem,
                workload=name,
            )
        )
    return pods


def synthetic_scenario(seed: int = 7, scale: float = 1.0) -> SyntheticScenario:
    nodes = synthetic_nodes(seed, scale)
    gpus = sum(n.gpu_count for n in nodes)
    # About one cluster's worth of GPU demand; the replay resamples to the inflation target.
    pods = synthetic_pods(int(gpus * 1.1), seed)
    return SyntheticScenario(tuple(nodes), tuple(pods))
