"""Hypothesis properties over the app: no input gets a 5xx, and no sequence of calls over-commits."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ome.domain import MILLI

from .builders import make_pod
from .conftest import build

NAMES = ["n0", "n1", "n2", "n3"]
json_leaf = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_any = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                        max_leaves=20)
quantity = st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(["100m", "1Gi", "1e3", "-1", "x", "1e99", "0.5", ""]),
                     st.integers(-3, 3), st.none(), st.floats(allow_nan=True))


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    pod = make_pod("p", namespace=draw(st.sampled_from(["default", "a"])), uid=draw(st.sampled_from(["u1", "u2", ""])))
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    for key in draw(st.lists(st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "ome.io/gpu-milli"]), max_size=4)):
        limits[key] = draw(quantity)
    if draw(st.booleans()):
        pod["spec"]["priority"] = draw(st.integers(-2**40, 2**40) | st.text(max_size=3))
    if draw(st.booleans()):
        pod["metadata"]["annotations"] = {"ome.io/gpu-models": draw(st.text(max_size=10)),
                                          "ome.io/gpu-memory-mib": draw(quantity)}
    if draw(st.booleans()):
        del pod[draw(st.sampled_from(["metadata", "spec"]))]
    return pod


bodies = st.one_of(
    json_any,
    st.fixed_dictionaries({"Pod": pods(), "NodeNames": st.lists(st.sampled_from(NAMES + ["ghost", "", "UPPER"]), max_size=6)}),
    st.fixed_dictionaries({"pod": pods() | json_any, "nodes": json_any}),
    st.fixed_dictionaries({"PodName": st.text(max_size=5) | json_leaf, "PodNamespace": st.sampled_from(["default", ""]),
                           "PodUID": st.sampled_from(["u1", "u2", ""]), "Node": st.sampled_from(NAMES + ["ghost", "a b"])}),
    st.fixed_dictionaries({"Pod": pods(), "NodeNameToMetaVictims": st.dictionaries(
        st.sampled_from(NAMES + ["ghost"]), st.fixed_dictionaries({"Pods": st.lists(json_any, max_size=3),
                                                                   "NumPDBViolations": json_leaf}))}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/filter", "/prioritize", "/bind", "/preempt"]), body=bodies)
def test_no_input_gets_a_5xx(path: str, body: Any) -> None:
    _, _, client = CLIENT
    r = client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["Error"], "a refusal must say why"


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_no_bytes_get_a_5xx(raw: bytes) -> None:
    _, _, client = CLIENT
    for path in ("/filter", "/bind"):
        assert client.post(path, content=raw).status_code < 500


CLIENT = build()

call = st.tuples(
    st.sampled_from(["filter", "bind", "bind-elsewhere", "fail", "delete", "expire"]),
    st.integers(0, 11),  # pod
    st.sampled_from([None, 1, 2, 4]),  # whole GPUs
    st.sampled_from([0, 100, 250, 500, 999]),  # share
    st.sampled_from(NAMES),
)


@settings(max_examples=120, deadline=None)
@given(calls=st.lists(call, max_size=40))
def test_no_sequence_of_calls_over_commits(calls: list[tuple[str, int, int | None, int, str]]) -> None:
    from ome.scheduler._kube import KubeError

    e, kube, client = build()
    e.clock = lambda: now[0]
    now = [0.0]
    specs: dict[int, dict[str, Any]] = {}
    for verb, k, gpus, milli, node in calls:
        if k not in specs:
            specs[k] = make_pod(f"p{k}", gpus=gpus or 0, milli=None if gpus else milli, uid=f"u{k}", cpu="1")
            kube.add_pod(specs[k])
        pod = kube.pods[("default", f"p{k}")]
        bind = {"PodName": f"p{k}", "PodNamespace": "default", "PodUID": f"u{k}", "Node": node}
        if verb == "filter":
            client.post("/filter", json={"Pod": pod, "NodeNames": NAMES})
        elif verb == "bind":
            entry = e.entries.get(f"u{k}")
            client.post("/bind", json=dict(bind, Node=entry.node if entry else node))
        elif verb == "bind-elsewhere":
            client.post("/bind", json=bind)
        elif verb == "fail":
            kube.fail_next = KubeError(0, "timeout")
            client.post("/bind", json=bind)
        elif verb == "delete":
            e.pod_event("DELETED", pod)
            del kube.pods[("default", f"p{k}")]
            specs.pop(k)
        else:
            now[0] += 100
            e.expire()
        _check(e, kube)


def _check(e: Any, kube: Any) -> None:
    snap = e.snapshot()
    for name, node in snap["nodes"].items():
        assert all(0 <= f <= MILLI for f in node["gpu_free"]), (name, node)
    # Bound pods per the "cluster" (FakeKube): never more than a GPU's capacity.
    used: dict[tuple[str, int], int] = {}
    for pod in kube.pods.values():
        node = pod["spec"].get("nodeName")
        if node and "ome.io/gpu-index" in pod["metadata"].get("annotations", {}):
            limits = pod["spec"]["containers"][0]["resources"]["limits"]
            per = 1000 if "nvidia.com/gpu" in limits else int(limits["ome.io/gpu-milli"])
            for g in pod["metadata"]["annotations"]["ome.io/gpu-index"].split(","):
                used[(node, int(g))] = used.get((node, int(g)), 0) + per
    assert all(v <= MILLI for v in used.values()), used
    # The cache agrees with the cluster plus the reservations in flight.
    for (node, g), v in used.items():
        assert snap["nodes"][node]["gpu_free"][g] <= MILLI - v
