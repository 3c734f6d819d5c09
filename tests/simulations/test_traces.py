from pathlib import Path

import pytest

from ome.domain import InvalidInput
from ome.simulations import load_nodes, load_pods, resolve_trace


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loader_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\np2,lots,10,1,500\n")
    with pytest.raises(InvalidInput, match=r"pods\.csv:3: column 'cpu_milli' is not an integer: 'lots'"):
        load_pods(bad)
    rule = write(tmp_path, "rule.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,2,500\n")
    with pytest.raises(InvalidInput, match=r"rule\.csv:2: pod 'p1'.*whole GPUs"):
        load_pods(rule)
    missing = write(tmp_path, "nodes.csv", "sn,cpu_milli,memory_mib,gpu\nn1,1000,10,2\n")
    with pytest.raises(InvalidInput, match=r"nodes\.csv:1: missing column\(s\) model"):
        load_nodes(missing)
    with pytest.raises(InvalidInput, match="cannot open"):
        load_pods(tmp_path / "absent.csv")


def test_loads_the_openb_files(trace_dir: Path) -> None:
    nodes = load_nodes(trace_dir / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213 and sum(n.gpu_count for n in nodes) == 6212
    trace = load_pods(resolve_trace("default", trace_dir))
    assert trace.name == "openb_pod_list_default" and len(trace.pods) == 8152
    assert sum(p.gpu_demand_milli for p in trace.pods) == 6_086_800
    five_columns = load_pods(resolve_trace("multigpu20", trace_dir))
    assert len(five_columns.pods) == 8324


def test_resolve_trace_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="openb_pod_list_nope.csv"):
        resolve_trace("nope", tmp_path)


def test_qos_becomes_priority_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,qos\n"
    good = tmp_path / "good.csv"
    good.write_text(head + "a,1000,100,1,500,BE\nb,1000,100,1,1000,LS\nc,1000,100,0,0,Guaranteed\nd,1000,100,0,0,\n")
    assert [p.priority for p in load_pods(good).pods] == [0, 1, 1, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text(head + "a,1000,100,1,500,BE\nb,1000,100,1,500,Gold\n")
    with pytest.raises(InvalidInput, match=r"bad.csv:3: qos 'Gold' unknown"):
        load_pods(bad)
