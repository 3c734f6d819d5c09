"""Files the components read: the admin kubeconfig, the KubeSchedulerConfiguration, kwok's config."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ._pki import Pki

CLUSTER_NAME = "ome-local"
POD_CIDR = "10.244.0.0/16"  # kwok's pod IPs; disjoint from the service range below
SERVICE_CIDR = "10.96.0.0/16"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_MILLI_RESOURCE = "ome.io/gpu-milli"  # the GPU-share resource the extender manages

# Client rate limits for the scheduler: client-go's defaults (qps 50 in the scheduler) make
# bulk what-if runs wait on the client, not on the apiserver.
SCHEDULER_QPS = 1000
SCHEDULER_BURST = 2000


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(server: str, pki: Pki) -> dict[str, Any]:
    """Admin kubeconfig with the certificates embedded, so the file can be copied elsewhere."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {
            "server": server, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)}}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": "admin"}}],
        "current-context": CLUSTER_NAME,
    }


def extender(url: str, weight: int = 5) -> dict[str, Any]:
    """One `extenders` entry: every verb, node cache, both GPU resources managed.

    `nvidia.com/gpu` stays checked by the scheduler too; `ome.io/gpu-milli` is left to the
    extender alone (ignoredByScheduler), since only it knows how shares sit on physical GPUs.
    Only pods asking for a managed resource are sent to the extender.
    """
    return {
        "urlPrefix": url.rstrip("/"),
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "bindVerb": "bind",
        "preemptVerb": "preempt",
        "weight": weight,
        "enableHTTPS": url.startswith("https://"),
        "httpTimeout": "10s",
        "nodeCacheCapable": True,
        "ignorable": False,
        "managedResources": [
            {"name": GPU_RESOURCE, "ignoredByScheduler": False},
            {"name": GPU_MILLI_RESOURCE, "ignoredByScheduler": True},
        ],
    }


def scheduler_config(kubeconfig_path: Path, extender_url: str | None = None) -> dict[str, Any]:
    """KubeSchedulerConfiguration v1.

    The kubeconfig goes in clientConnection: kube-scheduler ignores --kubeconfig when --config is given.
    """
    config: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path), "qps": SCHEDULER_QPS, "burst": SCHEDULER_BURST},
        "leaderElection": {"leaderElect": False},
        "percentageOfNodesToScore": 100,
        "profiles": [{"schedulerName": "default-scheduler"}],
    }
    if extender_url:
        config["extenders"] = [extender(extender_url)]
    return config


def kwok_config(stage_files: Sequence[Path], node_play_parallelism: int = 16,
                pod_play_parallelism: int = 16) -> str:
    """Multi-document YAML: a KwokConfiguration, then the Stage documents (kwok exits without stages)."""
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "manageAllNodes": True,
            "cidr": POD_CIDR,
            "nodePlayStageParallelism": node_play_parallelism,
            "podPlayStageParallelism": pod_play_parallelism,
        },
    }
    docs = [yaml.safe_dump(options, sort_keys=False)]
    docs += [path.read_text().strip() + "\n" for path in stage_files]
    return "---\n".join(docs)


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
