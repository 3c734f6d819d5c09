"""`ome.domain.Node` -> v1 Node manifests for kwok, and creating them fast.

A node registers the way a kubelet does: POST with `status.capacity`/`allocatable` filled in.
kwok's node-initialize stage keeps those and adds conditions, addresses and nodeInfo.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ome.domain import MILLI, ON_DEMAND, SPOT, Node, OmeError

from ._config import GPU_MILLI_RESOURCE, GPU_RESOURCE

LABEL_PRODUCT = "nvidia.com/gpu.product"
LABEL_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU, as NVIDIA's GPU feature discovery writes it
LABEL_COUNT = "nvidia.com/gpu.count"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_POOL = "scheduling.ome.io/pool"
LABEL_MANAGED = "scheduling.ome.io/simulated"  # marks nodes this package created
ANNOTATION_PRICE = "scheduling.ome.io/price-micro-usd-per-hour"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
PODS_PER_NODE = 256  # kubelet's default is 110; GPU sharing packs more small pods on a node
ZONES = ("zone-a", "zone-b", "zone-c")
SPOT_SHARE = 4  # one node in SPOT_SHARE is spot when the source does not say


class NodeCreationError(OmeError, RuntimeError):
    """The apiserver refused a node, or nodes did not become Ready in time."""


Taint = dict[str, str]  # {"key": ..., "value": ..., "effect": "NoSchedule" | "PreferNoSchedule" | "NoExecute"}


def _quantity_cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def manifest(node: Node, taints: Sequence[Taint] = ()) -> dict[str, Any]:
    """The v1 Node a kubelet (here kwok) would register for `node`."""
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        LABEL_MANAGED: "true",
        LABEL_CAPACITY_TYPE: node.capacity_type,
    }
    if node.zone:
        labels[LABEL_ZONE] = node.zone
    if node.pool:
        labels[LABEL_POOL] = node.pool
    resources = {"cpu": _quantity_cpu(node.cpu_milli), "memory": f"{node.memory_mib}Mi", "pods": str(PODS_PER_NODE)}
    if node.gpu_count:
        labels[LABEL_PRODUCT] = node.gpu_model
        labels[LABEL_COUNT] = str(node.gpu_count)
        if node.gpu_memory_mib:
            labels[LABEL_MEMORY] = str(node.gpu_memory_mib)
        resources[GPU_RESOURCE] = str(node.gpu_count)
        resources[GPU_MILLI_RESOURCE] = str(node.gpu_count * MILLI)
    labels.update(node.labels)
    annotations = {KWOK_ANNOTATION: "fake"}
    if node.price_micro_usd_per_hour:
        annotations[ANNOTATION_PRICE] = str(node.price_micro_usd_per_hour)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels, "annotations": annotations},
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def with_derived_placement(nodes: Iterable[Node]) -> list[Node]:
    """Give nodes without a zone a zone and a capacity type derived from a CRC32 of the name.

    The openb trace says neither. Deterministic, so the same node is in the same zone and
    market on every run: zone = ZONES[h % 3]; spot when (h // 3) % SPOT_SHARE == 0 (about 1 in 4).
    """
    out = []
    for node in nodes:
        if node.zone:
            out.append(node)
            continue
        h = zlib.crc32(node.name.encode())
        capacity_type = SPOT if (h // len(ZONES)) % SPOT_SHARE == 0 else ON_DEMAND
        out.append(replace(node, zone=ZONES[h % len(ZONES)], capacity_type=capacity_type))
    return out


@dataclass(frozen=True, slots=True)
class GpuShape:
    model: str  # nvidia.com/gpu.product
    gpus: int
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    price_micro_usd_per_hour: int  # on-demand, whole node; spot is a third of it


SYNTHETIC_SHAPES = (
    GpuShape("H100", 8, 81920, 192_000, 2_097_152, 98_320_000),
    GpuShape("A100", 8, 40960, 96_000, 1_179_648, 32_770_000),
    GpuShape("L4", 4, 24576, 48_000, 196_608, 3_910_000),
)


def synthetic_nodes(count: int, prefix: str = "sim") -> list[Node]:
    """`count` GPU nodes cycling through H100 8x80GB, A100 8x40GB and L4 4x24GB.

    Zones rotate over three; every third node of a shape is spot (at a third of the price).
    """
    nodes = []
    for i in range(count):
        shape = SYNTHETIC_SHAPES[i % len(SYNTHETIC_SHAPES)]
        rank = i // len(SYNTHETIC_SHAPES)
        spot = rank % 3 == 2
        nodes.append(Node(
            name=f"{prefix}-{shape.model.lower()}-{rank:04d}",
            cpu_milli=shape.cpu_milli,
            memory_mib=shape.memory_mib,
            gpu_model=shape.model,
            gpu_count=shape.gpus,
            gpu_memory_mib=shape.gpu_memory_mib,
            pool=shape.model.lower(),
            capacity_type=SPOT if spot else ON_DEMAND,
            zone=ZONES[rank % len(ZONES)],
            price_micro_usd_per_hour=shape.price_micro_usd_per_hour // (3 if spot else 1),
        ))
    return nodes


Progress = Callable[[int, int], None]  # (done, total)


def create_nodes(client: httpx.Client, nodes: Sequence[Node], workers: int = 16,
                 progress: Progress | None = None, taints: Sequence[Taint] = ()) -> None:
    """POST every node as raw JSON from a thread pool. An existing node (409) counts as created."""
    bodies = [json.dumps(manifest(n, taints)).encode() for n in nodes]
    done = 0

    def post(body: bytes) -> httpx.Response:
        for attempt in range(5):
            try:
                response = client.post("/api/v1/nodes", content=body, headers={"Content-Type": "application/json"})
            except httpx.TransportError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code == 429 or response.status_code >= 500:  # throttled or timed out: retry
                time.sleep(0.2 * (attempt + 1))
                continue
            return response
        return response

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ome-node-post") as pool:
        for node, response in zip(nodes, pool.map(post, bodies), strict=True):
            if response.status_code not in (201, 409):
                raise NodeCreationError(f"creating node {node.name}: HTTP {response.status_code}: {response.text[:500]}")
            done += 1
            if progress is not None and (done % 50 == 0 or done == len(nodes)):
                progress(done, len(nodes))


# Server-side table rendering (kubectl's `get nodes` columns) without the objects: a few dozen
# bytes per node instead of kilobytes, so polling 1,000+ nodes costs the apiserver little.
_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def ready_node_names(client: httpx.Client) -> set[str]:
    """Names of the nodes this package created that report Ready (read from the watch cache)."""
    response = client.get("/api/v1/nodes", headers={"Accept": _TABLE}, params={
        "labelSelector": f"{LABEL_MANAGED}=true", "resourceVersion": "0", "includeObject": "None"})
    response.raise_for_status()
    table = response.json()
    columns = [c["name"] for c in table["columnDefinitions"]]
    name, status = columns.index("Name"), columns.index("Status")
    # Status is "Ready", "NotReady" or "Unknown", with ",SchedulingDisabled" when cordoned.
    return {row["cells"][name] for row in table["rows"] if row["cells"][status].split(",")[0] == "Ready"}


def wait_ready(client: httpx.Client, names: Iterable[str], timeout_s: float,
               progress: Progress | None = None, alive: Callable[[], None] | None = None) -> None:
    """Return once every named node is Ready; `alive` raises if a component died meanwhile."""
    wanted = set(names)
    deadline = time.monotonic() + timeout_s
    while True:
        ready = ready_node_names(client) & wanted
        if progress is not None:
            progress(len(ready), len(wanted))
        if len(ready) == len(wanted):
            return
        if time.monotonic() > deadline:
            missing = sorted(wanted - ready)
            raise NodeCreationError(f"{len(missing)} of {len(wanted)} nodes not Ready after {timeout_s:.0f}s "
                                    f"(e.g. {', '.join(missing[:5])}); see kwok.log")
        if alive is not None:
            alive()
        time.sleep(1.0)
