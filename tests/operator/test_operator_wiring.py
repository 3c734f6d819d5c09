"""The seams around the pure core: kopf registry, snapshot source, expectations, staged apply,
metrics, CLI and the public names."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import kopf
import pytest
from typer.testing import CliRunner

import ome.operator
from ome.operator import Expectation, FakeKube, KubeError, Metrics, OperatorSettings, PlannerLoop, apply_plan
from ome.operator import _names as n
from ome.operator._handlers import RESOURCES, KopfSource, build_registry
from ome.operator._kube import Connection
from ome.operator._model import PodView, node_view, placement_view, pod_view
from ome.operator._reconcile import CreatePod, EvictPod, Plan, WriteStatus
from ome.operator.cli import operator_app

from .operator_builders import converge, loop_for, node, placement


def test_public_names_are_pinned() -> None:
    assert sorted(ome.operator.__all__) == [
        "ClusterSettings", "Connection", "CycleReport", "Expectation", "FakeKube", "KubeClient", "KubeError",
        "LoopSettings", "Metrics", "MetricsSettings", "OperatorSettings", "Plan", "PlannerLoop", "RealKube",
        "SchedulingSettings", "Snapshot", "SnapshotSource", "apply_plan", "reconcile"]


def test_registry_is_explicit_and_complete() -> None:
    kube = FakeKube()
    registry = build_registry(OperatorSettings(), PlannerLoop(OperatorSettings(), kube, kube), KopfSource(),
                              Connection("https://127.0.0.1:1"))
    assert registry is not kopf.get_default_registry()
    index_ids = {h.id for h in registry._indexing.get_all_handlers()}
    assert index_ids == {rid for rid, _ in RESOURCES}
    watching = {h.id for h in registry._watching.get_all_handlers()}
    assert watching == {f"poke-{rid}" for rid, _ in RESOURCES}
    assert len(registry._activities.get_all_handlers()) == 3  # login, startup, cleanup
    assert not kopf.get_default_registry()._indexing.get_all_handlers()


class _Store(list[Any]):
    pass


def test_kopf_source_builds_a_snapshot_from_indexes() -> None:
    def index(values: dict[Any, Any]) -> dict[Any, _Store]:
        return {k: _Store([v]) for k, v in values.items()}

    nodes = [node_view(node("h1")), node_view(node("h0"))]
    mp = placement("m")
    mp["metadata"]["namespace"] = "ml"
    source = KopfSource()
    source.bind({
        "ome_nodes": index({v.name: v for v in nodes}),
        "ome_pods": index({}),
        "ome_placements": index({("ml", "m"): placement_view(mp)}),
        "ome_priority_classes": index({"high": ("high", 1000)}),
        "ome_deployments": index({("Deployment", "ml", "d"): (("Deployment", "ml", "d"), "{}")}),
        "not_ours": index({"x": 1}),
    })
    snap = source.snapshot()
    assert [v.name for v in snap.nodes] == ["h0", "h1"]  # a stable order
    assert snap.priority_classes == {"high": 1000}
    assert snap.placements[0].name == "m" and snap.workload_templates == {("Deployment", "ml", "d"): "{}"}
    assert KopfSource().snapshot().nodes == ()


def _pod(name: str, **kw: Any) -> PodView:
    return PodView("ml", name, "u", **kw)


@pytest.mark.parametrize(("expectation", "pod", "met"), [
    (Expectation("ml", "a", "created"), None, False),
    (Expectation("ml", "a", "created"), _pod("a"), True),
    (Expectation("ml", "a", "created", "h0"), None, False),
    (Expectation("ml", "a", "created", "h0"), _pod("a"), False),
    (Expectation("ml", "a", "created", "h0"), _pod("a", planned_node="h0"), True),
    (Expectation("ml", "a", "reserved", "h0"), _pod("a"), False),
    (Expectation("ml", "a", "reserved", "h0"), _pod("a", planned_node="h0"), True),
    (Expectation("ml", "a", "reserved", "h0"), None, True),  # deleted since: nothing to wait for
    (Expectation("ml", "a", "released"), _pod("a", gates=(n.GATE,)), False),
    (Expectation("ml", "a", "released"), _pod("a"), True),
    (Expectation("ml", "a", "gone"), _pod("a"), False),
    (Expectation("ml", "a", "gone"), _pod("a", terminating=True), True),
])
def test_expectations(expectation: Expectation, pod: PodView | None, met: bool) -> None:
    pods = {pod.key: pod} if pod is not None else {}
    assert expectation.met(pods) is met


def test_loop_waits_for_its_own_writes() -> None:
    kube = FakeKube()
    kube.add(node("h0"))
    kube.add(placement("m", replicas=2))
    loop = loop_for(kube)
    stale = kube.snapshot()
    loop.cycle()
    assert not loop.expectations_met(stale)  # the view before the writes lacks the new pods
    assert loop.expectations_met(kube.snapshot())


class _Recorder(FakeKube):
    def __init__(self, fail_create: bool = False) -> None:
        super().__init__()
        self.fail_create = fail_create

    def create_pod(self, namespace: str, manifest: Any) -> None:
        if self.fail_create:
            raise KubeError("boom")
        super().create_pod(namespace, manifest)


def _manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ml"},
            "spec": {"containers": []}}


def test_apply_runs_stages_in_order_and_holds_evictions_when_a_reservation_fails() -> None:
    plan = Plan(reserve=(CreatePod("ml", "new", _manifest("new"), planned_node="h0", gated=False),),
                evict=(EvictPod("ml", "victim", "", "r"),),
                statuses=(WriteStatus("ml", "m", {"x": 1}),))
    ok = _Recorder()
    ok.add({**_manifest("victim"), "spec": {"nodeName": "h0", "containers": []}})
    report = apply_plan(plan, ok, workers=1)
    assert [verb for verb, _ in ok.log] == ["create", "evict"] and not report.failed
    assert {e.want for e in report.expectations} == {"created", "gone"}
    failing = _Recorder(fail_create=True)
    failing.add({**_manifest("victim"), "spec": {"nodeName": "h0", "containers": []}})
    report = apply_plan(plan, failing, workers=1)
    assert not any(verb == "evict" for verb, _ in failing.log)
    assert any("evictions held back" in f for f in report.failed)


def test_metrics_serve_on_loopback_and_stop() -> None:
    kube = FakeKube()
    kube.add(node("h0"))
    kube.add(placement("m", replicas=2))
    metrics = Metrics()
    loop = PlannerLoop(OperatorSettings(), kube, kube, metrics)
    converge(kube, loop)
    port = metrics.serve("127.0.0.1", 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
    finally:
        metrics.stop()
    assert 'ome_operator_replicas_placed{namespace="ml",placement="m"} 2.0' in text
    assert "ome_operator_cycles_total" in text and 'ome_operator_writes_total{stage="reserve"} 2.0' in text
    del kube.placements[("ml", "m")]
    loop.cycle()
    assert not metrics.placed._metrics  # a deleted placement leaves no stale series


def test_async_loop_runs_on_pokes_and_stops() -> None:
    kube = FakeKube()
    kube.add(node("h0"))
    kube.add(placement("m", replicas=1))
    settings = OperatorSettings()
    loop = PlannerLoop(settings, kube, kube)

    async def drive() -> None:
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)
        assert loop.cycles == 0  # not before the watches are ready (the first poke)
        loop.poke()
        for _ in range(100):
            if loop.cycles:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(drive(),))
    thread.start()
    thread.join(10)
    assert loop.cycles >= 1 and ("ml", "m-0") in kube.pods


def test_cli_help_and_bad_selector() -> None:
    runner = CliRunner()
    result = runner.invoke(operator_app, ["run", "--help"])
    assert result.exit_code == 0 and "--node-selector" in result.output
    result = runner.invoke(operator_app, ["run", "--node-selector", "nonsense", "--metrics-port", "-1"])
    assert result.exit_code == 2 and "expected key=value" in result.output


def test_pod_view_of_created_manifest_round_trips() -> None:
    kube = FakeKube()
    kube.add(node("h0"))
    kube.add(placement("m", replicas=1, gpus=2))
    converge(kube)
    view = pod_view(kube.pods[("ml", "m-0")])
    assert (view.placement, view.replica, view.member, view.num_gpu) == ("m", 0, 0, 2)
    assert view.planned_node == "h0" and len(view.gpu_index) == 2 and not view.gated
