"""plan_replica: ordered accelerator preference, spot policy, prices, model labels, gangs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ome.domain import MILLI, ON_DEMAND, SPOT, Code, ClusterState, InvalidInput, Node, PodRequest
from ome.solver import (
    CapacityRule,
    ClusterArrays,
    Infeasible,
    PlanContext,
    PoolPrice,
    ReplicaPlan,
    ReplicaRequest,
    Tier,
    Weights,
    apply_plan,
    capacity_rule,
    gpu_hour_prices,
    plan_replica,
    plan_replicas,
)

MODEL_READY = ("models.ome.io/clusterbasemodel.llama", "Ready")


# ------------------------------------------------------------------------ builders


class NodeBuilder:
    def __init__(self, name: str) -> None:
        self._kw: dict[str, object] = {"name": name, "cpu_milli": 64_000, "memory_mib": 512_000}
        self._labels: dict[str, str] = {}

    def gpus(self, model: str, count: int, memory_mib: int = 81920) -> NodeBuilder:
        self._kw.update(gpu_model=model, gpu_count=count, gpu_memory_mib=memory_mib)
        return self

    def spot(self) -> NodeBuilder:
        self._kw["capacity_type"] = SPOT
        return self

    def zone(self, zone: str) -> NodeBuilder:
        self._kw["zone"] = zone
        return self

    def label(self, key: str, value: str) -> NodeBuilder:
        self._labels[key] = value
        return self

    def price(self, micro_usd_per_hour: int) -> NodeBuilder:
        self._kw["price_micro_usd_per_hour"] = micro_usd_per_hour
        return self

    def obj(self) -> Node:
        return Node(**self._kw, labels=tuple(sorted(self._labels.items())))  # type: ignore[arg-type]


def make_node(name: str) -> NodeBuilder:
    return NodeBuilder(name)


def pod(gpus: int = 1, milli: int = MILLI, cpu: int = 1000, mem: int = 1024, priority: int = 0,
        name: str = "p") -> PodRequest:
    return PodRequest(name, cpu, mem, gpus, milli if gpus else 0, priority=priority)


def request(*tiers: Tier, gpus: int = 1, members: int = 1, milli: int = MILLI, key: str = "ns/mp#0",
            **kw: object) -> ReplicaRequest:
    return ReplicaRequest(key, tuple(pod(gpus, milli, name=f"m{i}") for i in range(members)), tuple(tiers), **kw)  # type: ignore[arg-type]


def model(name: str) -> Tier:
    return Tier(name, gpu_models=frozenset({name}))


@dataclass
class World:
    nodes: list[Node]
    used: dict[str, list[int]] = field(default_factory=dict)  # node -> GPU indices taken (whole GPUs)
    pools: Sequence[PoolPrice] = ()
    weights: Weights = field(default_factory=Weights)

    def build(self) -> tuple[ClusterArrays, PlanContext]:
        cluster = ClusterArrays(self.nodes)
        for name, gpus in self.used.items():
            cluster.allocate(pod(len(gpus), cpu=0, mem=0), cluster.index[name], gpus)
        return cluster, PlanContext.build(self.nodes, self.pools, self.weights)


def nodes_of(decision: ReplicaPlan | Infeasible) -> tuple[str, ...]:
    assert isinstance(decision, ReplicaPlan), decision
    return decision.nodes


# ------------------------------------------------------------------------ ordered preference


PREFERENCE_CASES = [
    # (name, nodes, used GPUs, tiers, gpus, expected node(s) or None)
    ("first choice when it fits",
     [make_node("a100-0").gpus("A100", 8).obj(), make_node("h100-0").gpus("H100", 8).obj()],
     {}, [model("H100"), model("A100")], 4, ("h100-0",)),
    ("next choice when the first is full",
     [make_node("a100-0").gpus("A100", 8).obj(), make_node("h100-0").gpus("H100", 8).obj()],
     {"h100-0": [0, 1, 2, 3, 4, 5]}, [model("H100"), model("A100")], 4, ("a100-0",)),
    ("first choice even when a later choice is emptier",
     [make_node("a100-0").gpus("A100", 8).obj(), make_node("h100-0").gpus("H100", 8).obj()],
     {"h100-0": [0, 1, 2, 3]}, [model("H100"), model("A100")], 4, ("h100-0",)),
    ("no accepted model: infeasible",
     [make_node("l4-0").gpus("L4", 4).obj()], {}, [model("H100")], 1, None),
    ("best fit inside a tier: fewer GPUs left stranded",
     [make_node("h100-0").gpus("H100", 8).obj(), make_node("h100-1").gpus("H100", 8).obj()],
     # h100-0 left with 4 free after a 4-GPU pod = 50 stranded; h100-1 (6 used) left 0 = 0 stranded
     {"h100-1": [0, 1, 2, 3]}, [model("H100")], 4, ("h100-1",)),
    ("accelerator class tier by node selector",
     [make_node("gpu-0").gpus("H100", 8).label("class", "fast").obj(),
      make_node("gpu-1").gpus("H100", 8).label("class", "slow").obj()],
     {}, [Tier("fast", node_selector=(("class", "fast"),))], 8, ("gpu-0",)),
]


@pytest.mark.parametrize(("nodes", "used", "tiers", "gpus", "expected"),
                         [c[1:] for c in PREFERENCE_CASES], ids=[c[0] for c in PREFERENCE_CASES])
def test_ordered_preference(nodes: list[Node], used: dict[str, list[int]], tiers: list[Tier], gpus: int,
                            expected: tuple[str, ...] | None) -> None:
    cluster, ctx = World(nodes, used).build()
    decision = plan_replica(cluster, request(*tiers, gpus=gpus), ctx)
    if expected is None:
        assert isinstance(decision, Infeasible)
        assert decision.status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert "1 with another accelerator" in decision.status.reasons[0]
    else:
        assert nodes_of(decision) == expected


def test_tier_name_and_index_are_reported() -> None:
    cluster, ctx = World([make_node("a").gpus("A100", 8).obj()]).build()
    plan = plan_replica(cluster, request(model("H100"), model("A100")), ctx)
    assert isinstance(plan, ReplicaPlan)
    assert (plan.tier, plan.tier_index) == ("A100", 1)


# ------------------------------------------------------------------------ spot policy and prices


POOLS = [PoolPrice("h100", (("pool", "h100"),), on_demand_micro_usd=4_000_000, spot_micro_usd=1_500_000)]


def _spot_world() -> World:
    return World([make_node("od").gpus("H100", 8).label("pool", "h100").obj(),
                  make_node("sp").gpus("H100", 8).label("pool", "h100").spot().obj()], pools=POOLS,
                 weights=Weights(stranded=0, cost=0, spread=0))


@pytest.mark.parametrize(("rule", "expected"), [
    (CapacityRule.ON_DEMAND_ONLY, "od"),
    (CapacityRule.PREFER_SPOT, "sp"),
    (CapacityRule.ANY, "od"),  # all weights 0: ties broken by node name ("od" < "sp")
])
def test_capacity_rules(rule: CapacityRule, expected: str) -> None:
    cluster, ctx = _spot_world().build()
    assert nodes_of(plan_replica(cluster, request(model("H100"), capacity=rule), ctx)) == (expected,)


def test_cost_weight_picks_spot_when_allowed() -> None:
    world = _spot_world()
    world.weights = Weights(stranded=0, cost=1, spread=0)
    cluster, ctx = world.build()
    # cost: od = 100 * 4.0 / 4.0 = 100, sp = 100 * 1.5 / 4.0 = 37 -> sp
    assert nodes_of(plan_replica(cluster, request(model("H100"), capacity=CapacityRule.ANY), ctx)) == ("sp",)


def test_prefer_spot_falls_back_to_on_demand_when_spot_is_full() -> None:
    world = _spot_world()
    world.used = {"sp": list(range(8))}
    cluster, ctx = world.build()
    assert nodes_of(plan_replica(cluster, request(model("H100"), capacity=CapacityRule.PREFER_SPOT), ctx)) == ("od",)


def test_on_demand_only_does_not_fall_back_to_spot() -> None:
    world = _spot_world()
    world.used = {"od": list(range(8))}
    cluster, ctx = world.build()
    decision = plan_replica(cluster, request(model("H100"), capacity=CapacityRule.ON_DEMAND_ONLY), ctx)
    assert isinstance(decision, Infeasible)
    assert "1 spot (this replica must run on on-demand capacity)" in decision.status.reasons[0]


@pytest.mark.parametrize(("policy", "min_od", "od_placed", "expected"), [
    ("Never", 0, 5, CapacityRule.ON_DEMAND_ONLY),
    ("Allowed", 0, 0, CapacityRule.ANY),
    ("Allowed", 2, 1, CapacityRule.ON_DEMAND_ONLY),
    ("Allowed", 2, 2, CapacityRule.ANY),
    ("Preferred", 1, 0, CapacityRule.ON_DEMAND_ONLY),
    ("Preferred", 1, 1, CapacityRule.PREFER_SPOT),
])
def test_capacity_rule_from_spot_policy(policy: str, min_od: int, od_placed: int, expected: CapacityRule) -> None:
    assert capacity_rule(policy, min_od, od_placed) is expected


def test_capacity_rule_rejects_unknown_policy() -> None:
    with pytest.raises(InvalidInput, match="spot policy"):
        capacity_rule("Sometimes", 0, 0)


def test_gpu_hour_prices_pool_then_node_fallback() -> None:
    nodes = [make_node("od").gpus("H100", 8).label("pool", "h100").obj(),
             make_node("sp").gpus("H100", 8).label("pool", "h100").spot().obj(),
             make_node("other").gpus("L4", 4).price(2_000_000).obj(),
             make_node("cpu").obj()]
    # od: pool on-demand 4.0; sp: pool spot 1.5; other: 2.0 / 4 GPUs = 0.5; cpu-only: 0
    assert gpu_hour_prices(nodes, POOLS).tolist() == [4_000_000, 1_500_000, 500_000, 0]


def test_replica_cost_is_gpus_times_price() -> None:
    cluster, ctx = _spot_world().build()
    plan = plan_replica(cluster, request(model("H100"), gpus=2, capacity=CapacityRule.PREFER_SPOT), ctx)
    assert isinstance(plan, ReplicaPlan)
    assert plan.cost_micro_usd_per_hour == 2 * 1_500_000
    share = plan_replica(cluster, request(model("H100"), gpus=1, milli=250, capacity=CapacityRule.ON_DEMAND_ONLY), ctx)
    assert isinstance(share, ReplicaPlan)
    assert share.cost_micro_usd_per_hour == 4_000_000 // 4


# ------------------------------------------------------------------------ model labels


def test_required_model_label_restricts_nodes() -> None:
    cluster, ctx = World([make_node("a").gpus("H100", 8).obj(),
                          make_node("b").gpus("H100", 8).label(*MODEL_READY).obj()], used={"b": [0, 1, 2, 3]}).build()
    assert nodes_of(plan_replica(cluster, request(required_labels=(MODEL_READY,)), ctx)) == ("b",)


def test_required_model_label_missing_everywhere_says_so() -> None:
    cluster, ctx = World([make_node("a").gpus("H100", 8).obj()]).build()
    decision = plan_replica(cluster, request(required_labels=(MODEL_READY,)), ctx)
    assert isinstance(decision, Infeasible)
    assert f"1 without {MODEL_READY[0]}=Ready" in decision.status.reasons[0]


def test_preferred_model_label_beats_best_fit() -> None:
    # a is fuller (best fit) but b holds the model
    cluster, ctx = World([make_node("a").gpus("H100", 8).obj(),
                          make_node("b").gpus("H100", 8).label(*MODEL_READY).obj()], used={"a": [0, 1, 2, 3]}).build()
    assert nodes_of(plan_replica(cluster, request(preferred_labels=(MODEL_READY,)), ctx)) == ("b",)


def test_eligible_mask_excludes_nodes() -> None:
    cluster, ctx = World([make_node("a").gpus("H100", 8).obj(), make_node("b").gpus("H100", 8).obj()]).build()
    eligible = np.array([False, True])
    assert nodes_of(plan_replica(cluster, request(), ctx, eligible)) == ("b",)


def test_spread_weight_avoids_peer_nodes() -> None:
    cluster, ctx = World([make_node("a").gpus("H100", 8).obj(), make_node("b").gpus("H100", 8).obj()],
                         weights=Weights(stranded=0, cost=0, spread=1)).build()
    assert nodes_of(plan_replica(cluster, request(peers=(0,)), ctx)) == ("b",)


def test_memory_sized_share() -> None:
    cluster, ctx = World([make_node("a100").gpus("A100", 8, memory_mib=40960).obj(),
                          make_node("l4").gpus("L4", 4, memory_mib=24576).obj()]).build()
    # 30 GiB does not fit a 24 GiB L4; on a 40 GiB A100 it is ceil(1000 * 30720 / 40960) = 750 milli
    plan = plan_replica(cluster, request(gpus=1, milli=500, gpu_memory_share_mib=30720), ctx)
    assert isinstance(plan, ReplicaPlan)
    assert plan.nodes == ("a100",)
    assert plan.members[0].pod.gpu_milli == 750


# ------------------------------------------------------------------------ gangs


GANG_NODES = [make_node(f"h{i}").gpus("H100", 8).zone("z1" if i < 3 else "z2").obj() for i in range(5)]


def test_gang_takes_distinct_nodes_in_one_zone() -> None:
    cluster, ctx = World(GANG_NODES).build()
    plan = plan_replica(cluster, request(model("H100"), gpus=8, members=3), ctx)
    assert sorted(nodes_of(plan)) == ["h0", "h1", "h2"]


def test_gang_is_all_or_nothing() -> None:
    cluster, ctx = World(GANG_NODES, used={"h0": [0], "h3": [0]}).build()
    decision = plan_replica(cluster, request(model("H100"), gpus=8, members=4), ctx)
    assert isinstance(decision, Infeasible)
    assert decision.status.code is Code.UNSCHEDULABLE
    assert "3 with room now, 4 needed" in decision.status.reasons[0]
    # the cluster was not touched
    assert int(cluster.gpu_free.sum()) == (5 * 8 - 2) * MILLI


def test_gang_stays_in_one_tier() -> None:
    nodes = [make_node("h0").gpus("H100", 8).obj(), make_node("a0").gpus("A100", 8).obj(),
             make_node("a1").gpus("A100", 8).obj()]
    cluster, ctx = World(nodes).build()
    plan = plan_replica(cluster, request(model("H100"), model("A100"), gpus=8, members=2), ctx)
    assert isinstance(plan, ReplicaPlan)
    assert sorted(plan.nodes) == ["a0", "a1"] and plan.tier == "A100"


def test_plan_replicas_sees_earlier_plans_and_does_not_mutate() -> None:
    cluster, ctx = World([make_node("h0").gpus("H100", 8).obj()]).build()
    decisions = plan_replicas(cluster, [request(gpus=4, key=f"r{i}") for i in range(3)], ctx)
    assert [isinstance(d, ReplicaPlan) for d in decisions] == [True, True, False]
    assert int(cluster.gpu_free.sum()) == 8 * MILLI


def test_replica_request_validation() -> None:
    with pytest.raises(InvalidInput, match="no members"):
        ReplicaRequest("x", ())
    with pytest.raises(InvalidInput, match="memory-sized share"):
        ReplicaRequest("x", (pod(2),), gpu_memory_share_mib=1000)


# ------------------------------------------------------------------------ properties


node_strategy = st.builds(
    lambda i, model_, count, spot, used: (make_node(f"n{i}").gpus(model_, count).obj() if not spot
                                          else make_node(f"n{i}").gpus(model_, count).spot().obj(), used),
    st.integers(0, 10_000), st.sampled_from(["H100", "A100", "L4"]), st.sampled_from([4, 8]), st.booleans(),
    st.integers(0, 8))


@settings(max_examples=60, deadline=None)
@given(st.lists(node_strategy, min_size=1, max_size=12, unique_by=lambda t: t[0].name),
       st.lists(st.tuples(st.integers(1, 8), st.integers(1, 3), st.sampled_from(list(CapacityRule)),
                          st.lists(st.sampled_from(["H100", "A100", "L4"]), max_size=3, unique=True)),
                min_size=1, max_size=15))
def test_plans_never_exceed_capacity_and_honour_filters(
        nodes_used: list[tuple[Node, int]], asks: list[tuple[int, int, CapacityRule, list[str]]]) -> None:
    nodes = [n for n, _ in nodes_used]
    world = World(nodes, used={n.name: list(range(min(u, n.gpu_count))) for n, u in nodes_used if u})
    cluster, ctx = world.build()
    exact = ClusterState(nodes)
    for n, u in nodes_used:
        if u:
            exact.allocate(pod(min(u, n.gpu_count), cpu=0, mem=0), exact.index_of(n.name), range(min(u, n.gpu_count)))
    for i, (gpus, members, rule, models) in enumerate(asks):
        req = request(*[model(m) for m in models], gpus=gpus, members=members, capacity=rule, key=f"r{i}")
        decision = plan_replica(cluster, req, ctx)
        if not isinstance(decision, ReplicaPlan):
            continue
        assert len(set(decision.nodes)) == members
        for m in decision.members:
            node = nodes[m.node]
            assert not models or node.gpu_model in models
            assert rule is not CapacityRule.ON_DEMAND_ONLY or node.capacity_type == ON_DEMAND
            exact.allocate(m.pod, m.node, m.gpus)  # raises if the plan over-commits
        apply_plan(cluster, decision)
