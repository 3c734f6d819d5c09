from __future__ import annotations

import json
from typing import Any

import pytest

from ome.scheduler import Extender, FakeKube
from ome.scheduler._kube import KubeError

from .builders import make_node, make_pod
from .conftest import TestClient, build

App = tuple[Extender, FakeKube, TestClient]
NAMES = ["n0", "n1", "n2", "n3"]


def test_filter_prioritize_bind_round_trip() -> None:
    """--filter-mode feasible: every feasible node back, prioritize picks (10) the reserved one."""
    e, kube, client = build(filter_mode="feasible")
    pod = make_pod("p", milli=300, uid="u1")
    kube.add_pod(pod)
    r = client.post("/filter", json={"Pod": pod, "NodeNames": NAMES, "Nodes": None})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert body["Error"] == "" and sorted(body["NodeNames"]) == NAMES
    scores = client.post("/prioritize", json={"Pod": pod, "NodeNames": NAMES}).json()
    assert {s["Host"] for s in scores} == set(NAMES)
    best = max(scores, key=lambda s: s["Score"])
    assert best["Score"] == 10 and all(0 <= s["Score"] <= 10 for s in scores)
    r = client.post("/bind", json={"PodName": "p", "PodNamespace": "default", "PodUID": "u1", "Node": best["Host"]})
    assert r.status_code == 200 and r.json() == {"Error": ""}
    (key, node, uid, ann), = kube.binds
    assert (key, node, uid) == ("default/p", best["Host"], "u1") and ann["ome.io/gpu-index"].isdigit()
    assert e.entries["u1"].state == "bound"
    # a retried bind (the first answer was lost) succeeds without a second Binding
    r = client.post("/bind", json={"PodName": "p", "PodNamespace": "default", "PodUID": "u1", "Node": best["Host"]})
    assert r.json() == {"Error": ""} and len(kube.binds) == 1


def test_chosen_mode_returns_the_one_node_it_reserved(app: App) -> None:
    e, kube, client = app
    pod = make_pod("p", gpus=2, uid="u1")
    kube.add_pod(pod)
    body = client.post("/filter", json={"Pod": pod, "NodeNames": NAMES}).json()
    assert len(body["NodeNames"]) == 1 and body["FailedNodes"] == {} and body["Error"] == ""
    assert e.entries["u1"].node == body["NodeNames"][0] and e.entries["u1"].state == "reserved"


def test_lowercase_keys_of_the_old_api_are_read(app: App) -> None:
    _, kube, client = app
    pod = make_pod("p", gpus=1, uid="u1")
    kube.add_pod(pod)
    r = client.post("/filter", json={"pod": pod, "nodenames": NAMES})
    assert r.status_code == 200 and r.json()["NodeNames"]
    r = client.post("/prioritize", json={"pod": pod, "nodeNames": NAMES})
    assert r.status_code == 200 and len(r.json()) == 4
    r = client.post("/bind", json={"podName": "p", "podNamespace": "default", "podUID": "u1", "node": "n0"})
    assert r.json() == {"Error": ""}


def test_full_node_list_gets_a_node_list_back() -> None:
    for mode, count in (("feasible", 4), ("chosen", 1)):
        _, _, client = build(filter_mode=mode)
        items = [make_node(n, "A100", 4) for n in NAMES]
        r = client.post("/filter", json={"Pod": make_pod("p", gpus=4), "Nodes": {"metadata": {}, "items": items}})
        body = r.json()
        assert body["NodeNames"] is None and len(body["Nodes"]["items"]) == count


def test_bind_failure_releases_and_reports(app: App) -> None:
    e, kube, client = app
    pod = make_pod("p", gpus=4, uid="u1")
    kube.add_pod(pod)
    node = client.post("/filter", json={"Pod": pod, "NodeNames": ["n0"]}).json()["NodeNames"][0]
    kube.fail_next = KubeError(403, "forbidden")
    r = client.post("/bind", json={"PodName": "p", "PodNamespace": "default", "PodUID": "u1", "Node": node})
    assert r.status_code == 200 and "forbidden" in r.json()["Error"]
    assert "u1" not in e.entries and e.snapshot()["nodes"]["n0"]["gpu_free"] == [1000] * 4


def test_bind_of_a_pod_never_filtered_fetches_it(app: App) -> None:
    e, kube, client = app
    pod = make_pod("late", milli=500, uid="u7")
    kube.pods[("default", "late")] = pod  # the watch has not delivered it yet
    r = client.post("/bind", json={"PodName": "late", "PodNamespace": "default", "PodUID": "u7", "Node": "n2"})
    assert r.json() == {"Error": ""} and e.entries["u7"].node == "n2"


def test_preempt_answers_meta_victims(app: App) -> None:
    e, kube, client = app
    victim = make_pod("low", gpus=4, uid="lv", node="n0", gpu_index="0,1,2,3", priority=1)
    e.pod_event("ADDED", victim)
    pod = make_pod("high", gpus=4, priority=10)
    r = client.post("/preempt", json={"Pod": pod, "NodeNameToMetaVictims": {
        "n0": {"Pods": [{"UID": "lv"}], "NumPDBViolations": 0}}})
    assert r.status_code == 200
    assert r.json() == {"NodeNameToMetaVictims": {"n0": {"Pods": [{"UID": "lv"}], "NumPDBViolations": 0}}}
    r = client.post("/preempt", json={"Pod": pod, "NodeNameToVictims": {"n0": {"Pods": [victim], "NumPDBViolations": 0}}})
    assert r.json()["NodeNameToMetaVictims"]["n0"]["Pods"] == [{"UID": "lv"}]


def _post(client: TestClient, path: str, body: Any) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=data, headers={"Content-Type": "application/json"})
    return r.status_code, r.json().get("Error", "") if r.headers.get("content-type", "").startswith("application/json") else r.text


def test_hostile_input_gets_a_4xx_with_the_reason(app: App) -> None:
    _, _, client = app
    pod = make_pod("p", gpus=1)
    cases = [
        ("/filter", b"{not json", 400, "not valid JSON"),
        ("/filter", [], 400, "must be a JSON object"),
        ("/filter", {"NodeNames": NAMES}, 400, "missing Pod"),
        ("/filter", {"Pod": pod}, 400, "needs NodeNames"),
        ("/filter", {"Pod": pod, "NodeNames": "n0"}, 400, "list of node names"),
        ("/filter", {"Pod": pod, "NodeNames": [1, 2]}, 400, "not a node name"),
        ("/filter", {"Pod": make_pod("p", gpus=400), "NodeNames": NAMES}, 422, "more than the 16"),
        ("/filter", {"Pod": make_pod("p", milli=10**9), "NodeNames": NAMES}, 422, "not a share"),
        ("/filter", {"Pod": make_pod("p", cpu="1e30"), "NodeNames": NAMES}, 422, "beyond any node"),
        ("/filter", {"Pod": make_pod("p", cpu="1e99"), "NodeNames": NAMES}, 422, "out of range"),
        ("/prioritize", {"Pod": {"metadata": {"name": "x"}}, "NodeNames": NAMES}, 422, "spec.containers"),
        ("/bind", {"PodName": "p"}, 400, "PodNamespace"),
        ("/bind", {"PodName": "p", "PodNamespace": "d", "PodUID": "u", "Node": "ghost"}, 404, "not in the OME"),
        ("/bind", {"PodName": "nobody", "PodNamespace": "d", "PodUID": "u", "Node": "n0"}, 404, "does not exist"),
        ("/preempt", {"Pod": pod, "NodeNameToMetaVictims": {"n0": {"Pods": [{}]}}}, 400, "no UID"),
        ("/preempt", {"Pod": pod, "NodeNameToMetaVictims": []}, 400, "must be an object"),
    ]
    for path, body, status, reason in cases:
        got, text = _post(client, path, body)
        assert (got, reason in text) == (status, True), (path, body, got, text)


def test_unknown_nodes_in_filter_are_failed_not_fatal(app: App) -> None:
    _, _, client = app
    r = client.post("/filter", json={"Pod": make_pod("p", gpus=1), "NodeNames": ["ghost", "n1"]})
    body = r.json()
    assert r.status_code == 200 and body["NodeNames"] == ["n1"] and "ghost" in body["FailedNodes"]


def test_not_ready_is_503_and_healthz_metrics() -> None:
    e, _, client = build(ready=False)
    with client:
        assert client.get("/healthz").status_code == 503
        assert client.post("/filter", json={"Pod": make_pod("p"), "NodeNames": []}).status_code == 503
        e.replace_nodes([make_node("n0")])
        e.replace_pods([])
        assert client.get("/healthz").text == "ok\n"
        client.post("/filter", json={"Pod": make_pod("p", gpus=1), "NodeNames": ["n0"]})
        text = client.get("/metrics").text
        for name in ("ome_extender_request_seconds_bucket{le=\"0.005\",verb=\"filter\"}",
                     "ome_extender_decisions_total{outcome=\"placed\",verb=\"filter\"}",
                     "ome_extender_errors_total{reason=\"not_ready\",verb=\"filter\"}",
                     "ome_extender_cache_nodes 1.0", "ome_extender_gpus_allocated 1.0",
                     "ome_extender_gpus_fragmented", "ome_extender_reserved 1.0"):
            assert name in text, name


def test_body_size_limit() -> None:
    _, _, client = build(max_body_bytes=1000)
    with client:
        status, reason = _post(client, "/filter", {"Pod": make_pod("p"), "NodeNames": ["n0"] * 500})
        assert status == 413 and "larger than" in reason


def test_verbs_answer_ahead_of_fastapi_with_their_server_time() -> None:
    """The verbs are served by VerbApp before FastAPI's middleware; other paths and methods are not."""
    _, _, client = build()
    with client:
        r = client.post("/filter", json={"Pod": make_pod("p", gpus=1), "NodeNames": NAMES})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert float(r.headers["server-timing"].split("dur=")[1]) > 0
        assert client.get("/filter").status_code == 405
        assert client.post("/filter/").status_code in (404, 307)
        assert client.get("/healthz").text == "ok\n"


def test_a_handler_bug_is_a_logged_500_and_the_next_call_is_served(monkeypatch: Any) -> None:
    e, _, client = build()
    calls = {"n": 0}
    real = e.filter

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(e, "filter", broken)
    with client:
        r = client.post("/filter", json={"Pod": make_pod("p", gpus=1), "NodeNames": NAMES})
        assert r.status_code == 500 and "internal error" in r.json()["Error"]
        r = client.post("/filter", json={"Pod": make_pod("p", gpus=1), "NodeNames": NAMES})
        assert r.status_code == 200 and r.json()["NodeNames"]


def test_read_body_joins_chunks_refuses_oversize_and_notices_a_disconnect() -> None:
    import asyncio

    from ome.scheduler._asgi import BodyTooLarge, ClientGone, read_body

    def receiver(*messages: dict[str, Any]) -> Any:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            return queue.pop(0)
        return receive

    scope: dict[str, Any] = {"headers": [(b"content-length", b"6")]}
    chunks = receiver({"type": "http.request", "body": b"abc", "more_body": True},
                      {"type": "http.request", "body": b"def", "more_body": False})
    assert asyncio.run(read_body(scope, chunks, 10)) == b"abcdef"
    for headers, limit in (([(b"content-length", b"6")], 5), ([], 5)):  # declared, or only counted
        chunks = receiver({"type": "http.request", "body": b"abc", "more_body": True},
                          {"type": "http.request", "body": b"def", "more_body": False})
        with pytest.raises(BodyTooLarge) as refused:
            asyncio.run(read_body({"headers": headers}, chunks, limit))
        assert refused.value.size == 6
    with pytest.raises(ClientGone):
        asyncio.run(read_body({"headers": []}, receiver({"type": "http.disconnect"}), 10))
