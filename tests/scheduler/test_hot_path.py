"""The per-request shortcuts of filter and prioritize give the same answers as the long way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ome.scheduler import pod_from_v1
from ome.scheduler._engine import MAX_REQUEST_PODS
from ome.scheduler._wire import BadRequest, HostPriorityEncoder, extender_args, host_priority_list

from .builders import cluster, make_node, make_pod
from .test_engine import engine, names


def test_priority_encoder_writes_what_host_priority_list_writes() -> None:
    nodes = [f"node-{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    encoder = HostPriorityEncoder()
    for _ in range(50):
        rows = rng.integers(0, len(nodes) + 1, rng.integers(0, 40)).astype(np.int64)  # len(nodes): unknown
        scores = rng.integers(0, 11, rows.size).astype(np.int64)
        asked = [nodes[r] if r < len(nodes) else f"ghost-{k}" for k, r in enumerate(rows.tolist())]
        expected = host_priority_list(list(zip(asked, scores.tolist())))
        assert encoder.encode(asked, scores, rows, nodes) == expected
        assert json.loads(expected) == [{"Host": h, "Score": s} for h, s in zip(asked, scores.tolist())]
    # a new node list (arrays rebuilt) gets a new table: row 0 is another node now
    renamed = [f"other-{i}" for i in range(30)]
    rows = np.arange(3, dtype=np.int64)
    assert json.loads(encoder.encode(renamed[:3], np.zeros(3, np.int64), rows, renamed))[0]["Host"] == "other-0"
    # a score outside 0..10 is written as it is, not looked up in the table
    assert json.loads(encoder.encode(renamed[:1], np.array([11]), rows[:1], renamed)) == [{"Host": "other-0", "Score": 11}]


def test_names_are_looked_up_once_and_the_rest_checked_as_dns_names() -> None:
    index = {"a": 0, "b": 1}
    pod = make_pod("p", gpus=1)
    args = extender_args({"Pod": pod, "NodeNames": ["b", "new-node", "a"]}, "filter", index)
    assert args.names == ["b", "new-node", "a"] and args.rows is not None
    assert args.rows[0] is index and args.rows[1].tolist() == [1, -1, 0]
    with pytest.raises(BadRequest, match=r"NodeNames\[2\]"):
        extender_args({"Pod": pod, "NodeNames": ["a", "b", "Not_A_Name"]}, "filter", index)
    with pytest.raises(BadRequest, match=r"NodeNames\[1\] = '3' is not a node name"):
        extender_args({"Pod": pod, "NodeNames": ["a", 3]}, "filter", index)
    with pytest.raises(BadRequest, match=r"NodeNames\[1\]"):
        extender_args({"Pod": pod, "NodeNames": ["a", ["b"]]}, "filter", index)  # unhashable
    assert extender_args({"Pod": pod, "NodeNames": ["zz"]}, "filter").rows is None  # no index: checked only


def test_lookups_made_in_an_index_the_engine_has_replaced_are_redone() -> None:
    e = engine(cluster(("a", "A100", 1), ("c", "A100", 1)))
    stale = e.index
    e.node_event("ADDED", make_node("b", "A100", 1))  # rows shift: a, b, c
    out = e.filter(pod_from_v1(make_pod("p", gpus=1, uid="u1")), ["c"], (stale, np.array([1])))
    assert out.chosen == "c"
    # a hint made in the current index is used as given
    e.filter(pod_from_v1(make_pod("q", gpus=1, uid="u2")), ["b"], (e.index, np.array([e.index["b"]])))
    assert e.entries["u2"].node == "b"


def test_prioritize_rows_match_prioritize_and_keep_the_request_order() -> None:
    e = engine(cluster(("a", "A100", 8), ("b", "A100", 8), ("c", "T4", 2)))
    pod = pod_from_v1(make_pod("p", milli=500, uid="u1"))
    asked = ("c", "ghost", "a", "b")
    e.filter(pod, asked)
    scores, rows, nodes = e.prioritize_rows(pod, asked)
    assert list(zip(asked, scores.tolist())) == e.prioritize(pod, asked)
    assert [nodes[r] if r < len(nodes) else None for r in rows.tolist()] == ["c", None, "a", "b"]
    assert scores[1] == 0 and 10 in scores.tolist()


def test_a_node_added_after_a_filter_is_a_candidate_in_the_next() -> None:
    e = engine(cluster(("a", "A100", 1)))
    asked = ("a", "b")
    out = e.filter(pod_from_v1(make_pod("p1", gpus=1, uid="u1")), asked)
    assert out.chosen == "a" and "b" in out.failed  # b is not known yet
    e.node_event("ADDED", make_node("b", "A100", 1))
    out = e.filter(pod_from_v1(make_pod("p2", gpus=1, uid="u2")), asked)
    assert out.chosen == "b" and out.failed == {}


def test_request_pods_are_translated_once_and_kept_in_a_bounded_cache() -> None:
    e = engine(cluster(("a", "A100", 1)))
    pod = make_pod("p", gpus=1, uid="u1")
    first = e.request_pod_info(pod)
    assert e.request_pod_info(json.loads(json.dumps(pod))) is first
    changed = json.loads(json.dumps(pod))
    for field in ("limits", "requests"):
        changed["spec"]["containers"][0]["resources"][field]["nvidia.com/gpu"] = "2"
    assert e.request_pod_info(changed).request.num_gpu == 2
    assert "u1" not in e._fingerprints  # only the watch fills that cache
    for k in range(MAX_REQUEST_PODS + 10):
        e.request_pod_info(make_pod(f"q{k}", gpus=1, uid=f"q{k}"))
    assert len(e._request_pods) == MAX_REQUEST_PODS
    assert names(e) == ["a"]
