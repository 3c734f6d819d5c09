"""Refill: evict the shares a GPU holds and fill it again, from the pods that wait, with more.

An online policy must put a 0.81-GPU pod on an empty GPU when it arrives, and the 0.19 beside
it is lost unless a pod that small comes. Once pods wait, such a GPU can do better: evict what
the caller lets go (best-effort shares) and pack waiting pods into the room that leaves, two
470s or a 650 and a 320 in place of the 810. This is the batch counterpart of
`select_reclaim` (one arriving pod at a time) for the rescheduler's periodic pass.

Greedy, one GPU at a time, on a scratch copy:
  1. every GPU's room: its free milli plus what its evictable single-GPU pods hold;
  2. per node signature (which waiting pod shapes its GPU model and memory accept), the most
     milli those pods can fill into each room size (a bounded subset sum over their sizes);
  3. the GPU whose fill minus what it evicts is largest goes first, if the chosen pods also fit
     the node's CPU and memory once the evicted pods are gone, evicting the node's evictable
     pods without GPUs too where that is what it takes (else the GPU is skipped for good);
  4. the evicted pods join the waiting pool, and it repeats until no GPU gains
     `min_gain_milli`. Every step raises the GPU allocated, so it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ome.domain import MILLI, Assignment, PodRequest

from ._arrays import ClusterArrays, IntArray


@dataclass(frozen=True, slots=True)
class Refill:
    """One GPU refilled: `evicted` (running pods' keys) leave it, `placed` (waiting pods' keys,
    possibly pods an earlier step evicted) land on it; the GPU allocated rises by gain_milli."""

    node: int
    gpu: int
    evicted: tuple[Hashable, ...]
    placed: tuple[Hashable, ...]
    gain_milli: int


Shape = tuple[int, int, int, frozenset[str], int]  # gpu_milli, cpu, memory, models, min GPU memory
_NOTHING = np.arange(MILLI + 1) == 0  # reachable with no item: the empty sum only


def _shape(p: PodRequest) -> Shape:
    return (p.gpu_milli, p.cpu_milli, p.memory_mib, p.gpu_models, p.min_gpu_memory_mib)


def _subset_sums(sizes: Sequence[int], counts: Sequence[int]) -> list[tuple[int, int, np.ndarray]]:
    """Bounded subset sum up to MILLI: items (index into sizes, copies, reachable-after) by
    binary splitting of each count; the last array says which totals are reachable."""
    reach = _NOTHING
    items: list[tuple[int, int, np.ndarray]] = []
    for i, (size, count) in enumerate(zip(sizes, counts)):
        k = 1
        while count > 0:
            take = min(k, count)
            w = size * take
            if w <= MILLI:
                nxt = reach.copy()
                nxt[w:] |= reach[: MILLI + 1 - w]
                reach = nxt
                items.append((i, take, reach))
            count -= take
            k *= 2
    return items


def _best_fill(items: list[tuple[int, int, np.ndarray]]) -> IntArray:
    """For every room 0..MILLI, the largest reachable total not above it."""
    reach = items[-1][2] if items else _NOTHING
    idx = np.where(reach, np.arange(MILLI + 1), -1)
    return np.maximum.accumulate(idx).astype(np.int64)


def _pick(items: list[tuple[int, int, np.ndarray]], sizes: Sequence[int], total: int) -> dict[int, int]:
    """Which copies of which sizes reach `total` exactly (total must be reachable)."""
    out: dict[int, int] = {}
    for pos in range(len(items) - 1, -1, -1):
        before = items[pos - 1][2] if pos else _NOTHING
        if before[total]:
            continue
        i, take, _ = items[pos]
        out[i] = out.get(i, 0) + take
        total -= sizes[i] * take
    assert total == 0
    return out


def refill_gpus(cluster: ClusterArrays, running: Mapping[Hashable, Assignment],
                waiting: Mapping[Hashable, PodRequest], evictable: Callable[[PodRequest], bool],
                min_gain_milli: int) -> list[Refill]:
    """The refills to make, in order (module docstring). Only single-GPU pods are placed, and
    evicted besides pods without GPUs that make CPU or memory room; `cluster` and the
    mappings are not mutated (apply the steps in order)."""
    if min_gain_milli < 1:
        raise ValueError("min_gain_milli must be >= 1: a refill must raise the GPU allocated")
    work = cluster.copy()
    on_gpu: dict[tuple[int, int], list[Hashable]] = {}
    pods: dict[Hashable, PodRequest] = {}
    where: dict[Hashable, Assignment] = {}
    cpu_only: dict[int, list[Hashable]] = {}  # evictable pods without GPUs, per node
    for key, a in running.items():
        if a.pod.num_gpu == 1 and evictable(a.pod):
            on_gpu.setdefault((a.node, a.gpus[0]), []).append(key)
            pods[key], where[key] = a.pod, a
        elif a.pod.num_gpu == 0 and evictable(a.pod):
            cpu_only.setdefault(a.node, []).append(key)
            pods[key], where[key] = a.pod, a
    pool: dict[Shape, list[Hashable]] = {}
    for key, p in waiting.items():
        if p.num_gpu == 1:
            pool.setdefault(_shape(p), []).append(key)
            pods[key] = p
    held = np.zeros_like(work.gpu_free)  # milli the evictable pods hold, per GPU
    for (n, g), keys in on_gpu.items():
        held[n, g] = sum(pods[k].gpu_milli for k in keys)
    skipped = np.zeros(work.gpu_free.shape, np.bool_)
    steps: list[Refill] = []
    while True:
        shapes = [s for s, keys in pool.items() if keys]
        if not shapes:
            return steps
        examples = [pods[pool[s][0]] for s in shapes]
        accepts = np.stack([work.accepts_mask(p) for p in examples], axis=1)  # node x shape
        signatures, node_sig = np.unique(accepts, axis=0, return_inverse=True)
        node_sig = np.asarray(node_sig).reshape(-1)
        room = work.gpu_free + held
        gain = np.full(room.shape, -1, np.int64)
        tables: dict[int, tuple[list[int], list[tuple[int, int, np.ndarray]], IntArray]] = {}
        for sig, ok in enumerate(signatures):
            chosen = [i for i in range(len(shapes)) if ok[i]]
            items = _subset_sums([shapes[i][0] for i in chosen], [len(pool[shapes[i]]) for i in chosen])
            tables[sig] = (chosen, items, _best_fill(items))
            rows = np.flatnonzero(node_sig == sig)
            gain[rows] = tables[sig][2][room[rows]] - held[rows]
        gain[(work.gpu_cap == 0) | skipped] = -1
        best = int(gain.argmax())
        n, g = divmod(best, gain.shape[1])
        if gain[n, g] < min_gain_milli:
            return steps
        chosen, items, fill = tables[int(node_sig[n])]
        total = int(fill[room[n, g]])
        counts = _pick(items, [shapes[i][0] for i in chosen], total)
        new = [key for i, c in counts.items() for key in pool[shapes[chosen[i]]][:c]]
        out = on_gpu.get((n, g), [])
        short = _cpu_only_to_evict(work, n, out, new, pods, cpu_only.get(n, []))
        if short is None:
            skipped[n, g] = True
            continue
        for k in short:
            work.release(where.pop(k))
            cpu_only[n].remove(k)
        for k in out:
            work.release(where.pop(k))
            pool.setdefault(_shape(pods[k]), []).append(k)
        for i, c in counts.items():
            del pool[shapes[chosen[i]]][:c]
        on_gpu[(n, g)] = []
        for k in new:
            where[k] = work.allocate(pods[k], n, (g,))
            if evictable(pods[k]):
                on_gpu[(n, g)].append(k)
        held[n, g] = sum(pods[k].gpu_milli for k in on_gpu[(n, g)])
        steps.append(Refill(n, g, tuple(out) + tuple(short), tuple(new), total - sum(pods[k].gpu_milli for k in out)))


def _cpu_only_to_evict(work: ClusterArrays, node: int, out: Sequence[Hashable], new: Sequence[Hashable],
                       pods: Mapping[Hashable, PodRequest], candidates: Sequence[Hashable]) -> list[Hashable] | None:
    """The evictable pods without GPUs that must also leave `node` for `new` to fit its CPU and
    memory once `out` is gone (the largest CPU first): none if it fits already, None if even
    all of them are not enough. They add no GPU, and GPU nodes are there for GPU pods."""
    cpu = int(work.cpu_free[node]) + sum(pods[k].cpu_milli for k in out) - sum(pods[k].cpu_milli for k in new)
    mem = int(work.mem_free[node]) + sum(pods[k].memory_mib for k in out) - sum(pods[k].memory_mib for k in new)
    chosen: list[Hashable] = []
    for k in sorted(candidates, key=lambda k: (-pods[k].cpu_milli, -pods[k].memory_mib)):
        if cpu >= 0 and mem >= 0:
            break
        chosen.append(k)
        cpu += pods[k].cpu_milli
        mem += pods[k].memory_mib
    return chosen if cpu >= 0 and mem >= 0 else None
