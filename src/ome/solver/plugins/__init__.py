"""Score plugins (policies) and their registry: name -> factory."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ome.domain import InvalidInput, PodRequest

from .._fragmentation import TargetWorkload
from .._framework import Policy
from ._baselines import (
    BestFitPolicy,
    DotProductPolicy,
    GpuClusteringPolicy,
    GpuPackingPolicy,
    LeastAllocatedPolicy,
    MostAllocatedPolicy,
    RandomPolicy,
)
from ._fgd import FgdPolicy
from ._ome import OmePolicy

_FACTORIES: dict[str, Callable[[int, TargetWorkload | None], Policy]] = {
    "random": lambda seed, _t: RandomPolicy(seed),
    "dotprod": lambda _s, _t: DotProductPolicy(),
    "gpu-clustering": lambda _s, _t: GpuClusteringPolicy(),
    "gpu-packing": lambda _s, _t: GpuPackingPolicy(),
    "bestfit": lambda _s, _t: BestFitPolicy(),
    "fgd": lambda _s, t: FgdPolicy(_need_target("fgd", t)),
    "ome": lambda _s, t: OmePolicy(_need_target("ome", t)),
    "least-allocated": lambda _s, _t: LeastAllocatedPolicy(),
    "most-allocated": lambda _s, _t: MostAllocatedPolicy(),
}

NEEDS_TARGET = {"fgd", "ome"}


def _need_target(name: str, target: TargetWorkload | None) -> TargetWorkload:
    if target is None:
        raise InvalidInput(f"policy {name!r} needs a target workload (the pod shapes it packs for)")
    return target


def register(name: str, factory: Callable[[int, TargetWorkload | None], Policy], *, needs_target: bool) -> None:
    _FACTORIES[name] = factory
    if needs_target:
        NEEDS_TARGET.add(name)


def policy_names() -> list[str]:
    return list(_FACTORIES)


def make_policy(
    name: str, *, seed: int = 0, target: TargetWorkload | None = None, pods: Iterable[PodRequest] | None = None
) -> Policy:
    """Build a policy by name; bad names fail here, at start-up, not on the first pod."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InvalidInput(f"unknown policy {name!r}; known: {', '.join(_FACTORIES)}")
    if target is None and pods is not None and name in NEEDS_TARGET:
        target = TargetWorkload.from_pods(pods)
    return factory(seed, target)


__all__ = ["NEEDS_TARGET", "make_policy", "policy_names", "register"]
