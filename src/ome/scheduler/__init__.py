"""The kube-scheduler extender front end: filter, prioritize, bind and preempt over HTTP,
answered from a watch-backed cache with ome.solver's policies. See docs/extender.md."""

from ._app import create_app
from ._engine import BindPlan, Extender, FilterOutcome, Refused, canonical_order, tie_break_rng
from ._kube import FakeKube, HttpKube, KubeApi, KubeError
from ._settings import DEFAULT_POLICY, FILTER_CHOSEN, FILTER_FEASIBLE, ExtenderSettings
from ._target import pods_from_csv, target_from_csv, target_from_pods
from ._translate import (
    ANNOTATION_GPU_INDEX,
    ANNOTATION_GPU_MEMORY,
    ANNOTATION_GPU_MODELS,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    PodInfo,
    node_from_v1,
    parse_gpu_index,
    pod_from_v1,
)

__all__ = [
    "ANNOTATION_GPU_INDEX",
    "ANNOTATION_GPU_MEMORY",
    "ANNOTATION_GPU_MODELS",
    "DEFAULT_POLICY",
    "FILTER_CHOSEN",
    "FILTER_FEASIBLE",
    "GPU_MILLI_RESOURCE",
    "GPU_RESOURCE",
    "BindPlan",
    "Extender",
    "ExtenderSettings",
    "FakeKube",
    "FilterOutcome",
    "HttpKube",
    "KubeApi",
    "KubeError",
    "PodInfo",
    "Refused",
    "canonical_order",
    "create_app",
    "node_from_v1",
    "parse_gpu_index",
    "pod_from_v1",
    "pods_from_csv",
    "target_from_csv",
    "target_from_pods",
    "tie_break_rng",
]
