"""The online placement framework, in the spirit of kube-scheduler's.

One pod at a time: filter (ClusterArrays.fits_mask) -> score every feasible node with a
policy (ints in 0..100, higher is better) -> pick the best node, ties broken uniformly at
random like kube-scheduler's selectHost -> the policy picks the GPU indices inside it.
Decisions come back as data; nothing here mutates the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ome.domain import Code, PodRequest, Status

from ._arrays import ClusterArrays

MAX_SCORE = 100
IntArray = npt.NDArray[np.int64]


@runtime_checkable
class Policy(Protocol):
    """A score plugin plus its GPU-index choice."""

    name: str

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        """Scores in 0..100 for `nodes` (indices of nodes where the pod fits)."""
        ...

    def choose_gpus(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
        """GPU indices on `node` for the pod (empty for a CPU-only pod)."""
        ...

    def observe(self, cluster: ClusterArrays, pod: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        """Called after the caller applied a placement (for policies that keep per-node state)."""
        ...


class TieBreak(Protocol):
    """What place_one draws a tie-break from: a numpy Generator, or any object with integers(n)."""

    def integers(self, high: int, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Bind:
    node: int
    gpus: tuple[int, ...]
    score: int


@dataclass(frozen=True, slots=True)
class Infeasible:
    status: Status


Decision = Bind | Infeasible


def explain_infeasible(cluster: ClusterArrays, pod: PodRequest) -> Status:
    """Why no node fits: unresolvable when no node could ever hold it, else unschedulable."""
    if not cluster.accepts_mask(pod).any():
        models = ",".join(sorted(pod.gpu_models)) or "any"
        return Status(
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            (f"no node can ever hold {pod.num_gpu} GPU(s) x {pod.gpu_milli} milli of model {models} "
             f"with {pod.cpu_milli}m CPU and {pod.memory_mib}Mi memory",),
            "fit",
        )
    return Status(Code.UNSCHEDULABLE, ("no node has enough free CPU, memory or GPU right now",), "fit")


def check_scores(policy: str, scores: IntArray) -> IntArray:
    if scores.size and (scores.min() < 0 or scores.max() > MAX_SCORE):
        raise ValueError(f"policy {policy} returned scores outside 0..{MAX_SCORE}")
    return scores


def place_one(
    cluster: ClusterArrays,
    pod: PodRequest,
    policy: Policy,
    rng: TieBreak,
    candidates: npt.NDArray[np.bool_] | None = None,
    tie_break: str = "random",
) -> Decision:
    """Choose a node and GPUs for one pod. `candidates` narrows the nodes (the extender's list)."""
    mask = cluster.fits_mask(pod)
    if candidates is not None:
        mask &= candidates
    nodes = np.flatnonzero(mask)
    if nodes.size == 0:
        return Infeasible(explain_infeasible(cluster, pod))
    scores = check_scores(policy.name, policy.score(cluster, pod, nodes))
    best = np.flatnonzero(scores == scores.max())
    rule = getattr(policy, "tie_break", tie_break)  # a policy may own the rule (random: it is the policy)
    pick = best[rng.integers(best.size)] if rule == "random" and best.size > 1 else best[0]
    node = int(nodes[pick])
    return Bind(node, policy.choose_gpus(cluster, pod, node), int(scores.max()))


TIE_BREAKS = ("first", "random")
