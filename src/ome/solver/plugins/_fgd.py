"""Fragmentation Gradient Descent (FGD): place where the expected fragment grows least.

Score of a node = int(100 * sigmoid((F_before - F_after) / 1000)), F as in _fragmentation.
For a sharing pod every GPU of the node is tried and the best one kept (first index on ties),
exactly as the paper's simulator does; whole GPUs take the first fully free ones.
The integer truncation is kept on purpose: it creates the ties that kube-scheduler then breaks
at random, which is part of the published behaviour.
"""

from __future__ import annotations

import numpy as np

from ome.domain import PodRequest

from .._arrays import ClusterArrays
from .._fragmentation import FragModel, TargetWorkload, take_whole_gpus
from .._framework import IntArray
from ._common import first_free_gpus


def _sigmoid_score(delta: np.ndarray) -> IntArray:
    return (100.0 / (1.0 + np.exp(-delta / 1000.0))).astype(np.int64)


class FgdPolicy:
    name = "fgd"

    def __init__(self, target: TargetWorkload) -> None:
        self.target = target
        self._model: FragModel | None = None
        self._models: tuple[str, ...] | None = None

    def _frag(self, cluster: ClusterArrays) -> FragModel:
        if self._model is None or self._models != tuple(cluster.models):  # one FragModel per set of GPU models
            self._model = FragModel(self.target, cluster)
            self._models = tuple(cluster.models)
        return self._model

    def gpu_scores(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        """(len(nodes), G) scores of putting a sharing pod on each GPU; -1 where it does not fit."""
        fm = self._frag(cluster)
        free, cpu, model = cluster.gpu_free[nodes], cluster.cpu_free[nodes], cluster.model_id[nodes]
        before = fm.node_frag(free, cpu, model)
        after = fm.share_frag_after(free, cpu, model, pod.gpu_milli, pod.cpu_milli)
        delta = before[:, None] - after
        return np.where(np.isfinite(after), _sigmoid_score(np.where(np.isfinite(delta), delta, 0.0)), -1)

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        if pod.is_sharing:
            return self.gpu_scores(cluster, pod, nodes).max(axis=1)
        fm = self._frag(cluster)
        free, cpu, model = cluster.gpu_free[nodes], cluster.cpu_free[nodes], cluster.model_id[nodes]
        before = fm.node_frag(free, cpu, model)
        after_free = take_whole_gpus(free, pod.num_gpu) if pod.num_gpu else free
        after = fm.node_frag(after_free, cpu - pod.cpu_milli, model)
        return _sigmoid_score(before - after)

    def choose_gpus(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
        if pod.num_gpu == 0:
            return ()
        if not pod.is_sharing:
            return first_free_gpus(cluster, node, pod.num_gpu)
        row = self.gpu_scores(cluster, pod, np.array([node]))[0]
        return (int(np.argmax(row)),)

    def observe(self, cluster: ClusterArrays, pod: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        return None
