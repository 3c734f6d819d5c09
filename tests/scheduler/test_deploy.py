"""The deploy/scheduler manifests say what docs/extender.md says (the integration test runs the
KubeSchedulerConfiguration in a real kube-scheduler)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ome.scheduler import GPU_MILLI_RESOURCE, GPU_RESOURCE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scheduler"


def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def scheduler_config() -> dict[str, Any]:
    (cm,) = [d for d in docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ome-scheduler-config"]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def test_scheduler_configuration() -> None:
    config = scheduler_config()
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["percentageOfNodesToScore"] == 100
    assert [p["schedulerName"] for p in config["profiles"]] == ["ome-scheduler"]
    (ext,) = config["extenders"]
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]) == (
        "filter", "prioritize", "bind", "preempt")
    assert ext["nodeCacheCapable"] is True and ext["weight"] >= 5 and ext["ignorable"] is False
    assert {m["name"]: m["ignoredByScheduler"] for m in ext["managedResources"]} == {
        GPU_RESOURCE: False, GPU_MILLI_RESOURCE: True}
    assert ext["httpTimeout"].endswith("s") and 1 <= float(ext["httpTimeout"][:-1]) <= 30


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployment_runs_both_containers_once() -> None:
    (dep,) = [d for d in docs() if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"kube-scheduler", "extender"}
    assert containers["extender"]["command"][:3] == ["ome", "extender", "serve"]
    assert "--host=127.0.0.1" in containers["extender"]["command"]


def test_extender_rbac_covers_what_it_calls() -> None:
    (role,) = [d for d in docs() if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ome-extender"]
    grants = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    for needed in [("nodes", "list"), ("nodes", "watch"), ("pods", "list"), ("pods", "watch"), ("pods", "get"),
                   ("pods/binding", "create"), ("poddisruptionbudgets", "watch")]:
        assert needed in grants, needed
