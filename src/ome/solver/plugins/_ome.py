"""`ome`: our online policy. One pod at a time, no eviction, no look at future arrivals.

Nodes are ranked by a tuple, best first (each later key only breaks ties of the earlier):

1. expected GPUs wasted by this placement, the sum of
   a. stranded GPUs added: a free GPU is only usable with CPU and memory beside it. With the
      workload's average CPU and memory per GPU (from the target workload), a node strands
      max(0, free_gpus - cpu_free / cpu_per_gpu, free_gpus - mem_free / mem_per_gpu) GPUs.
      This keeps CPU-only and CPU-heavy pods off the nodes whose GPUs still need that CPU.
      Where CPU is scarce (the workload asks per GPU, CPU-only pods included, for at least
      SCARCE_CPU_PRESSURE of what the cluster offers per GPU), each free GPU keeps
      SCARCE_CPU_RESERVE x the average instead.
   b. homes of multi-GPU shapes lost, x host_weight: for each multi-GPU shape b of the target
      workload, a node that could host it and no longer can costs
      num_gpu_b * min(1, need_b / hosts_b), need_b being how many b-pods the free capacity
      would receive at the workload's mix and hosts_b how many nodes can still take one.
      Whole 8-GPU nodes stay whole while smaller holes exist; rare shapes keep their last homes.
   c. sharing pods only: the hole value the pod spoils on the best GPU of the node,
      K(free) - K(free - milli), K being what a hole can still collect at the LP prices of
      the workload's sharing sizes (``_hole_prices``): zero where the pod completes a good
      pairing, positive where it leaves a hole nothing fits well. share_table="fgd" uses
      FGD's per-GPU expected waste w(x) = x * P(a GPU pod needs more than x milli) instead.
   d. hole value left without CPU (hole_cpu): a hole of x milli can only be filled while its
      node has the CPU of the cheapest sharing pod worth putting there (``fill_cpu``); the
      K(x) of every hole whose node drops below that is lost. The stranding term (a) counts
      free milli as needing CPU in proportion; this counts the pod a hole needs, whole.
2. (share_waste="key" moves 1c here as its own key; "off" drops it.)
3. packing: sharing pods take the GPU whose leftover is smallest (pairing fractions that sum
   to a whole GPU), whole-GPU pods the node with the fewest free GPUs left, CPU-only pods the
   node with the least CPU left. Unless CPU is scarce, CPU-only pods first take the node type
   with the most CPU per GPU (no GPU: the most): the average of (a) undercounts what a
   CPU-poor type's GPUs will need, so CPU-only pods that fit there "for free" still starve
   them later. Where CPU is scarce, all of it is needed and packing it tightest wins.
4. fewer free GPUs on the node overall (fill started nodes first).
With a placement plan (``_slots.SlotPlan``, computed by ``ome.solver.cpsat.plan_slots``), a
key comes before all of these: whether the node still has a free slot of the pod's kind.
Exact ties go to the framework's tie rule (first node in list order in `ome simulate`, a hash
of the pod in the extender unless configured). Scores handed to the extender are ranks
mapped onto 0..100 (best node 100).
"""

from __future__ import annotations

import numpy as np

from ome.domain import MILLI, PodRequest

from .._arrays import ClusterArrays
from .._fragmentation import TargetWorkload
from .._framework import IntArray
from ._common import tightest_gpus
from ._hole_prices import fill_cpu, hole_values
from ._slots import SlotBook, SlotPlan


def gpu_waste_table(target: TargetWorkload) -> np.ndarray:
    """w[x] = x * P(a GPU pod needs more than x milli per GPU): idle milli nobody is expected to use."""
    milli = np.array([s.gpu_milli for s in target.shapes if s.num_gpu > 0], np.int64)
    weight = np.array([w for s, w in zip(target.shapes, target.weights) if s.num_gpu > 0], np.float64)
    x = np.arange(MILLI + 1)
    if weight.sum() <= 0:
        return np.zeros(MILLI + 1)
    p_more = ((milli[None, :] > x[:, None]) * weight).sum(axis=1) / weight.sum()
    return x * p_more


# CPU counts as scarce when the workload asks, per GPU, for at least this share of the CPU the
# cluster offers per GPU (CPU-only pods included). Then every free GPU keeps SCARCE_CPU_RESERVE
# times the average CPU per GPU beside it instead of the average: the margin keeps free GPUs
# usable by the CPU-heavier pods and steers CPU-light GPU pods onto the CPU-poor nodes.
SCARCE_CPU_PRESSURE = 0.95
SCARCE_CPU_RESERVE = 1.4


class OmePolicy:
    name = "ome"

    def __init__(
        self, target: TargetWorkload, host_weight: float = 0.5, share_waste: str = "sum", cpu_reserve: float | None = None,
        share_table: str = "lp", hole_cpu: bool = True, plan: SlotPlan | None = None,
    ) -> None:
        """cpu_reserve: CPU kept per free GPU, as a multiple of the workload's average; None chooses it
        from the CPU pressure (1, or SCARCE_CPU_RESERVE where CPU is scarce). share_table: how a GPU's
        hole is valued for sharing pods, "lp" (hole values at the LP prices) or "fgd" (FGD's w(x)).
        hole_cpu: charge the hole value a placement leaves without the CPU to fill it (key 1d).
        plan: slots per node; a node with a free slot of the pod's kind comes first (unless the
        plan was not adopted: it then only names the setting)."""
        if share_waste not in ("sum", "key", "off"):
            raise ValueError(f"share_waste must be 'sum', 'key' or 'off', got {share_waste!r}")
        if share_table not in ("lp", "fgd"):
            raise ValueError(f"share_table must be 'lp' or 'fgd', got {share_table!r}")
        self.target = target
        self.host_weight = host_weight
        self.share_waste = share_waste
        self.cpu_per_gpu = max(target.cpu_per_gpu, 1.0)
        self.cpu_reserve = cpu_reserve
        self._cpu_kept = self.cpu_per_gpu
        self._cpu_scarce = False
        self._cpu_per_gpu_cap = np.zeros(0)  # per node, CPU capacity per GPU (inf: no GPU)
        self.mem_per_gpu = max(target.mem_per_gpu, 1.0)
        self._big = target.big_shapes
        # Each big shape's CPU, memory, GPU count, GPU memory and share of the GPU demand.
        self._big_cpu = np.array([b.cpu_milli for b in self._big], np.int64)
        self._big_mem = np.array([b.memory_mib for b in self._big], np.int64)
        self._big_num = np.array([b.num_gpu for b in self._big], np.int64)
        self._big_gpu_memory = np.array([b.min_gpu_memory_mib for b in self._big], np.int64)
        self._big_share = np.array([b.demand_share for b in self._big], np.float64)
        self._static = np.zeros((0, len(self._big)), np.bool_)
        self._nodes_seen: tuple[object, ...] | None = None  # the node list _cpu_kept and _static are for
        # Per-node state kept between decisions (see _sync): the cluster it is for and that
        # cluster's clock then, free milli and whole free GPUs per node, stranded GPUs now, which big shapes each node
        # could host now (and whether any), and the number of hosts per shape.
        self._view: tuple[ClusterArrays | None, int] = (None, -1)
        self._total = np.zeros(0, np.int64)
        self._full = np.zeros(0, np.int64)
        self._strand = np.zeros(0)
        self._now = np.zeros((0, len(self._big)), np.bool_)
        self._hosts = np.zeros(len(self._big), np.int64)
        self._hosting = np.zeros(0, np.bool_)
        # Per-GPU cost of a hole of x free milli, in milli: only its growth is used.
        self._hole_cost = gpu_waste_table(target) if share_table == "fgd" else -MILLI * hole_values(target)
        # Key 1d: per node and GPU, the hole's value (GPUs) and the CPU its cheapest filler needs
        # (0 for a full or empty GPU: never dead), and per node the value already dead.
        self.hole_cpu = hole_cpu
        self._hole_value, self._fill_cpu = hole_values(target), fill_cpu(target)
        self._hole_k = np.zeros((0, 0))
        self._hole_c = np.zeros((0, 0))
        self._dead = np.zeros(0)
        self._has_hole = np.zeros(0, np.bool_)  # some GPU of the node is a hole worth something
        self.plan = plan if plan is not None and plan.adopted else None
        self._book: SlotBook | None = None
        if plan is not None:
            self.name = "ome-plan"  # the setting, adopted plan or not

    # --- keys ---------------------------------------------------------------------------
    def _stranded(self, cpu: np.ndarray, mem: np.ndarray, gpu_free_milli: np.ndarray) -> np.ndarray:
        gpus = gpu_free_milli / MILLI
        short = np.maximum(gpus - cpu / self._cpu_kept, gpus - mem / self.mem_per_gpu)
        return np.maximum(short, 0.0)

    def cpu_pressure(self, cluster: ClusterArrays) -> float:
        """Workload CPU per GPU requested (CPU-only pods included) over cluster CPU per GPU."""
        gpus = float(cluster.gpu_count.sum())
        if gpus <= 0:
            return 0.0
        asked = self.target.cpu_per_gpu + self.target.cpu_only_per_gpu
        return asked / (float(cluster.cpu_cap.sum()) / gpus)

    def _per_node_list(self, cluster: ClusterArrays) -> None:
        """Refresh what depends only on the node list (nodes may come and go): the CPU kept per
        free GPU, whether CPU is scarce, each node's CPU per GPU, and the (N, B) GPU model / GPU
        memory suitability of each node for each big shape."""
        if self._nodes_seen is cluster.nodes:
            return
        self._cpu_scarce = self.cpu_pressure(cluster) >= SCARCE_CPU_PRESSURE
        reserve = self.cpu_reserve
        if reserve is None:
            reserve = SCARCE_CPU_RESERVE if self._cpu_scarce else 1.0
        self._cpu_kept = self.cpu_per_gpu * reserve
        gpus = cluster.gpu_count
        self._cpu_per_gpu_cap = np.where(gpus > 0, cluster.cpu_cap / np.maximum(gpus, 1), np.inf)
        models = cluster.models
        model_ok = np.zeros((len(models) + 1, len(self._big)), np.bool_)  # last row: id -1, no GPU
        for j, b in enumerate(self._big):
            for i, m in enumerate(models):
                model_ok[i, j] = not b.gpu_models or m in b.gpu_models
        gmem = cluster.gpu_memory[:, None]  # 0: unknown, accepted (as ClusterArrays does)
        self._static = model_ok[cluster.model_id] & ((gmem == 0) | (gmem >= self._big_gpu_memory))
        self._nodes_seen = cluster.nodes

    def _big_hostable(self, cpu: np.ndarray, mem: np.ndarray, full: np.ndarray, static: np.ndarray) -> np.ndarray:
        """(rows, B) whether each big shape fits the given node states; `static` is their model/GPU-memory rows."""
        return (static & (cpu[:, None] >= self._big_cpu) & (mem[:, None] >= self._big_mem)
                & (full[:, None] >= self._big_num))

    def _sync(self, cluster: ClusterArrays) -> None:
        """Bring the per-node state up to date: in full for a new cluster or node list, else only
        the rows allocated on or released from since the last decision (one, in a replay)."""
        self._per_node_list(cluster)
        seen, clock = self._view
        if seen is cluster:  # a cluster's node list never changes; a new list is a new cluster
            rows = cluster.changed_since(clock)
            if not rows.size:
                return
        else:
            rows = None
        pick = slice(None) if rows is None else rows
        free = cluster.gpu_free[pick]
        cpu, mem = cluster.cpu_free[pick], cluster.mem_free[pick]
        total, full = free.sum(axis=1), (free >= MILLI).sum(axis=1)
        strand = self._stranded(cpu, mem, total)
        now = self._big_hostable(cpu, mem, full, self._static[pick])
        hole_k, hole_c = self._hole_value[free], self._fill_cpu[free]
        dead = self._dead_value(hole_k, hole_c, cpu)
        if rows is None:
            self._total, self._full, self._strand, self._now = total, full, strand, now
            self._hosts, self._hosting = now.sum(axis=0), now.any(axis=1)
            self._hole_k, self._hole_c, self._dead = hole_k, hole_c, dead
            self._has_hole = (hole_k * (hole_c > 0) > 0).any(axis=1)
        else:
            self._hosts = self._hosts + now.sum(axis=0) - self._now[rows].sum(axis=0)
            self._total[rows], self._full[rows], self._strand[rows], self._now[rows] = total, full, strand, now
            self._hosting[rows] = now.any(axis=1)
            self._hole_k[rows], self._hole_c[rows], self._dead[rows] = hole_k, hole_c, dead
            self._has_hole[rows] = (hole_k * (hole_c > 0) > 0).any(axis=1)
        self._view = (cluster, cluster.clock)

    @staticmethod
    def _dead_value(hole_k: np.ndarray, hole_c: np.ndarray, cpu: np.ndarray) -> np.ndarray:
        """Per node, the value of the holes its free CPU can no longer fill."""
        return (hole_k * (cpu[:, None] < hole_c)).sum(axis=1)

    def _dead_growth(self, pod: PodRequest, nodes: IntArray, cpu2: np.ndarray, free: np.ndarray | None,
                     delta: np.ndarray | None) -> np.ndarray:
        """Key 1d: hole value each candidate placement leaves without the CPU to fill it."""
        growth = np.zeros(nodes.size)
        rows = np.flatnonzero(self._has_hole[nodes])  # elsewhere nothing can die (but a new hole)
        if rows.size:
            at = nodes[rows]
            growth[rows] = self._dead_value(self._hole_k[at], self._hole_c[at], cpu2[rows]) - self._dead[at]
        if free is not None:  # a sharing pod: the hole of the GPU choose_gpus would take shrinks
            gpu = self._sharing_gpu(free, pod.gpu_milli, delta)
            was = free[np.arange(nodes.size), gpu]
            left = was - pod.gpu_milli
            value, need = self._hole_value, self._fill_cpu
            growth += value[left] * (cpu2 < need[left]) - value[was] * (cpu2 < need[was])
        return growth

    @staticmethod
    def _sharing_gpu(free: np.ndarray, milli: int, delta: np.ndarray | None) -> np.ndarray:
        """Per row of `free`, the GPU a sharing pod takes: the least hole value spoiled (`delta`),
        then the tightest fit, then the lowest index; the tightest fit alone without `delta`."""
        fits = free >= milli
        if delta is not None:
            fits &= delta == delta.min(axis=1)[:, None]
        return np.where(fits, free, 10 * MILLI).argmin(axis=1)

    def _host_value(self, cluster: ClusterArrays, hosts: np.ndarray) -> np.ndarray:
        """Expected GPUs lost when one more node stops hosting each big shape.

        need_b = pods of shape b the free capacity would receive at the workload's mix;
        losing a host matters in proportion to need_b / hosts_b (capped at 1), times its GPUs.
        """
        free_gpus = float(self._total.sum()) / MILLI  # _sync has run
        need = self._big_share * free_gpus / self._big_num
        return self._big_num * np.minimum(1.0, need / np.maximum(hosts, 1))

    def rank_keys(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> list[np.ndarray]:
        """Keys, most significant first; lower is better in each."""
        self._sync(cluster)
        cpu, mem = cluster.cpu_free[nodes], cluster.mem_free[nodes]
        total = self._total[nodes]
        free = cluster.gpu_free[nodes] if pod.is_sharing else None
        cpu2, mem2, total2 = cpu - pod.cpu_milli, mem - pod.memory_mib, total - pod.gpu_demand_milli
        waste = self._stranded(cpu2, mem2, total2) - self._strand[nodes]
        if self._big:
            full = self._full[nodes]
            if free is not None:  # taking the tightest GPU: it is a full one only if no partial one fits
                partial_fits = ((free >= pod.gpu_milli) & (free < MILLI)).any(axis=1)
                full2 = np.where(partial_fits, full, full - 1)
            else:
                full2 = full - pod.num_gpu  # CPU-only: num_gpu 0
            # Only nodes that host some big shape now can lose a home.
            hosting = np.flatnonzero(self._hosting[nodes])
            if hosting.size:
                at = nodes[hosting]
                after = self._big_hostable(cpu2[hosting], mem2[hosting], full2[hosting], self._static[at])
                lost = np.zeros(nodes.size)
                lost[hosting] = ((self._now[at] & ~after) * self._host_value(cluster, self._hosts)).sum(axis=1)
                waste = waste + self.host_weight * lost
        delta = self._share_delta(free, pod.gpu_milli)[0] if free is not None and self.share_waste != "off" else None
        if self.hole_cpu:
            waste = waste + self._dead_growth(pod, nodes, cpu2, free, delta)
        keys = [np.round(waste, 6)]
        if free is not None and delta is not None:
            if self.share_waste == "sum":
                keys[0] = np.round(waste + delta.min(axis=1) / MILLI, 6)
            else:
                keys.append(np.round(delta.min(axis=1), 3))
            leftover = np.where(free >= pod.gpu_milli, free - pod.gpu_milli, 10 * MILLI).min(axis=1)
            keys.append(leftover)
        elif pod.num_gpu:
            keys.append(total2)
        else:
            if not self._cpu_scarce:
                keys.append(-self._cpu_per_gpu_cap[nodes])
            keys.append(cpu2)
        keys.append(total2)
        if self.plan is not None:
            keys.insert(0, (~self._slots(cluster).free(pod, nodes)).astype(np.int64))
        return keys

    def _slots(self, cluster: ClusterArrays) -> SlotBook:
        if self._book is None or self._book.cluster is not cluster:
            assert self.plan is not None
            self._book = SlotBook(self.plan, cluster)
        return self._book

    # --- Policy protocol ------------------------------------------------------------------
    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        keys = self.rank_keys(cluster, pod, nodes)
        order = np.lexsort(keys[::-1])  # lexsort: last key is primary
        ranks = np.empty(nodes.size, np.int64)
        # Equal key tuples share a rank so that ties stay ties.
        new_group = np.zeros(nodes.size, np.bool_)
        new_group[:1] = True
        for key in keys:
            ordered = key[order]
            new_group[1:] |= ordered[1:] != ordered[:-1]
        ranks[order] = np.cumsum(new_group) - 1
        worst = max(int(ranks.max(initial=0)), 1)
        return (100 - ranks * 100 // worst).astype(np.int64) if nodes.size > 1 else np.full(nodes.size, 100, np.int64)

    def _share_delta(self, free: np.ndarray, milli: int) -> tuple[np.ndarray, np.ndarray]:
        """Growth of the per-GPU hole cost when `milli` goes on each GPU (inf where it does not fit)."""
        fits = free >= milli
        table = self._hole_cost
        after = table[np.clip(free - milli, 0, MILLI)]
        delta = np.where(fits, after - table[np.clip(free, 0, MILLI)], np.inf)
        return delta, fits

    def choose_gpus(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
        if not pod.is_sharing or self.share_waste == "off":
            return tightest_gpus(cluster, pod, node)
        row = cluster.gpu_free[node][None, :]
        return (int(self._sharing_gpu(row, pod.gpu_milli, self._share_delta(row, pod.gpu_milli)[0])[0]),)

    def observe(self, cluster: ClusterArrays, pod: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        if self.plan is not None:
            self._slots(cluster).take(pod, node)

    def released(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> None:
        """Called after the caller released a pod from `node` (its slot is free again)."""
        if self.plan is not None:
            self._slots(cluster).give_back(pod, node)
