"""ome.solver.cpsat.plan_slots: the expected workload and the plan `ome-plan` follows."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from ome.domain import MILLI, Node, PodRequest
from ome.solver import pod_kind
from ome.solver.cpsat import SolverSettings, expected_pods, plan_slots

FAST = SolverSettings(max_time_in_seconds=3.0, num_workers=1, random_seed=1)


def _pods() -> list[PodRequest]:
    out = [PodRequest(f"w{i}", 4000, 8192, 1, MILLI) for i in range(6)]  # 6 GPUs
    out += [PodRequest(f"s{i}", 2000, 4096, 1, 500) for i in range(4)]  # 2 GPUs
    out += [PodRequest("big", 16000, 32768, 4, MILLI)]  # 4 GPUs, the one rare kind
    out += [PodRequest(f"c{i}", 6000, 4096) for i in range(3)]  # CPU only
    return out


def test_expected_pods_scale_every_kind_to_the_asked_load_and_keep_rare_kinds() -> None:
    pods = _pods()  # 12 GPUs of demand
    out = expected_pods(pods, capacity_milli=24 * MILLI, level=1.0)  # twice the list
    kinds = Counter(pod_kind(p) for p in out)
    assert kinds == {pod_kind(pods[0]): 12, pod_kind(pods[6]): 8, pod_kind(pods[10]): 2, pod_kind(pods[11]): 6}
    assert sum(p.gpu_demand_milli for p in out) == 24 * MILLI
    assert len({p.name for p in out}) == len(out)
    # Multi-GPU kinds may be planned for a higher load than the rest.
    more = Counter(pod_kind(p) for p in expected_pods(pods, 24 * MILLI, 1.0, multi_level=1.5))
    assert more[pod_kind(pods[10])] == 3 and more[pod_kind(pods[0])] == 12


def test_expected_pods_round_to_the_total_by_largest_remainders() -> None:
    a, b, c = PodRequest("a", 1000, 1024, 1, MILLI), PodRequest("b", 2000, 1024, 1, 600), PodRequest("c", 1000, 1024, 1, 500)
    # 2.1 GPUs asked, 4 offered: 1.9 of each kind wanted, 5.7 in all -> 6 pods, each kind's
    # remainder (0.9) taking one more than its floor.
    out = Counter(p.cpu_milli * 10_000 + p.gpu_milli for p in expected_pods([a, b, c], capacity_milli=4 * MILLI, level=1.0))
    assert sum(out.values()) == 6
    assert sorted(out.values()) == [2, 2, 2]
    out = Counter(p.gpu_milli for p in expected_pods([a, a, c], capacity_milli=5 * MILLI, level=1.0))
    assert out == {MILLI: 4, 500: 2}  # 2.5 asked: scale 2, exactly


def test_the_plan_fits_every_node_and_keeps_the_cpu_only_pods_ome_would_serve() -> None:
    nodes = [Node(f"n{i}", 32000, 131072, "T4", 4) for i in range(3)] + [Node("cpu0", 64000, 131072, "", 0)]
    pods = _pods()
    plan = plan_slots(nodes, pods, settings=FAST, multi_level=None)
    by_name = {n.name: n for n in nodes}
    example = {pod_kind(p): p for p in pods}
    for name, kinds in plan.slots.items():
        node = by_name[name]
        held = [example[k] for k, n in kinds.items() for _ in range(n)]
        assert sum(p.cpu_milli for p in held) <= node.cpu_milli
        assert sum(p.memory_mib for p in held) <= node.memory_mib
        assert sum(p.gpu_demand_milli for p in held) <= node.gpu_count * MILLI
        assert all(p.num_gpu <= node.gpu_count for p in held)
    # Demand is exactly the cluster's 12 GPUs and everything fits: the plan holds all of it.
    assert plan.planned_pct == 100.0
    cpu_only = sum(n for kinds in plan.slots.values() for k, n in kinds.items() if k[2] == 0)
    assert cpu_only == 3
    assert plan.count() == len(expected_pods(pods, 12 * MILLI, 1.0))
    # Checked against ome alone on resampled arrivals: adopted when following it does better.
    assert plan.adopted == (plan.stats["check_followed_pct"] > plan.stats["check_alone_pct"])


def test_a_plan_that_loses_its_check_is_not_followed() -> None:
    from dataclasses import replace

    from ome.solver import OmePolicy, SlotPlan, TargetWorkload

    pods = _pods()
    kind = pod_kind(pods[0])
    plan = SlotPlan({"n1": {kind: 1}}, adopted=False)
    policy = OmePolicy(TargetWorkload.from_pods(pods), plan=plan)
    assert policy.name == "ome-plan" and policy.plan is None  # the setting's name, ome's placements
    assert OmePolicy(TargetWorkload.from_pods(pods), plan=replace(plan, adopted=True)).plan is not None


def test_of_several_candidate_plans_the_check_chooses_the_one_that_does_best() -> None:
    from ome.solver import OmePolicy, TargetWorkload
    from ome.solver.cpsat._plan import PLAN_SHUFFLE_SEED, place_in_order, resampled

    nodes = [Node(f"n{i}", 32000, 131072, "T4", 4) for i in range(3)] + [Node("cpu0", 64000, 131072, "", 0)]
    pods = _pods()
    plan = plan_slots(nodes, pods, settings=FAST, multi_level=None, candidates=3, validation_runs=3)
    assert plan.stats["candidates"] == 3 and plan.stats["chosen"] in (0, 1, 2)
    # The figures are the chosen plan's, on the check's own sequences, and so is the adoption.
    target = TargetWorkload.from_pods(pods)
    sequences = [resampled(pods, 12 * MILLI, PLAN_SHUFFLE_SEED + FAST.random_seed + 1 + run) for run in range(3)]
    followed = sum(place_in_order(nodes, s, OmePolicy(target, plan=plan))[0] for s in sequences) / 3
    alone = sum(place_in_order(nodes, s, OmePolicy(target))[0] for s in sequences) / 3
    assert abs(plan.stats["check_followed_pct"] - followed) < 1e-9 and abs(plan.stats["check_alone_pct"] - alone) < 1e-9
    assert plan.adopted == (followed > alone)
    # Candidate k is the plan of seed + k alone; the chosen one is the first that does best.
    singles = [plan_slots(nodes, pods, settings=replace(FAST, random_seed=FAST.random_seed + k), multi_level=None,
                          candidates=1, validation_runs=0) for k in range(3)]
    scores = [sum(place_in_order(nodes, s, OmePolicy(target, plan=replace(c, adopted=True)))[0] for s in sequences) / 3
              for c in singles]
    chosen = int(plan.stats["chosen"])
    assert singles[chosen].slots == plan.slots and chosen == scores.index(max(scores))
