"""Readers for the Alibaba GPU trace v2023 ("openb") CSV files.

Errors name the file and line. Rows become domain objects; the replay turns them into arrays.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ome.domain import InvalidInput, Node, PodRequest

NODE_FILE = "openb_node_list_gpu_node.csv"
TRACE_DIR_ENV = "OME_TRACE_DIR"

# Per-GPU memory of the models whose name says it; G2/G3 are undisclosed internal codes.
GPU_MEMORY_MIB = {"T4": 16384, "P100": 16384, "V100M16": 16384, "V100M32": 32768, "A10": 24576}

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


@dataclass(frozen=True, slots=True)
class Trace:
    name: str  # file stem, e.g. openb_pod_list_default
    pods: tuple[PodRequest, ...]


def trace_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    value = explicit or os.environ.get(TRACE_DIR_ENV)
    if not value:
        raise InvalidInput(f"no trace folder: pass --trace-dir or set ${TRACE_DIR_ENV}")
    path = Path(value)
    if not path.is_dir():
        raise InvalidInput(f"trace folder {path} does not exist")
    return path


def resolve_trace(name_or_path: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """`default` -> <dir>/openb_pod_list_default.csv; an existing path is used as it is."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".csv" or candidate.exists():
        if not candidate.is_file():
            raise InvalidInput(f"trace file {candidate} does not exist")
        return candidate
    base = trace_dir(directory)
    for stem in (name_or_path, f"openb_pod_list_{name_or_path}"):
        path = base / f"{stem}.csv"
        if path.is_file():
            return path
    raise InvalidInput(f"no trace named {name_or_path!r} in {base} (looked for openb_pod_list_{name_or_path}.csv)")


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot open: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row in reader:
            yield reader.line_num, row


def _int(path: Path, line: int, row: dict[str, str], column: str, default: int | None = None) -> int:
    raw = (row.get(column) or "").strip()
    if raw == "" and default is not None:
        return default
    try:
        return int(float(raw)) if "." in raw else int(raw)
    except ValueError:
        raise InvalidInput(f"{path}:{line}: column {column!r} is not an integer: {raw!r}") from None


def load_nodes(path: str | os.PathLike[str]) -> list[Node]:
    """Nodes of an openb node list. CPU-only rows are kept (gpu 0)."""
    path = Path(path)
    nodes: list[Node] = []
    for line, row in _rows(path, NODE_COLUMNS):
        model = (row.get("model") or "").strip()
        gpus = _int(path, line, row, "gpu")
        try:
            nodes.append(
                Node(
                    name=row["sn"].strip(),
                    cpu_milli=_int(path, line, row, "cpu_milli"),
                    memory_mib=_int(path, line, row, "memory_mib"),
                    gpu_model=model if gpus else "",
                    gpu_count=gpus,
                    gpu_memory_mib=GPU_MEMORY_MIB.get(model, 0),
                    pool=model.lower() if gpus else "cpu",
                )
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{path}:{line}: {exc}") from None
    if not nodes:
        raise InvalidInput(f"{path}: no nodes")
    return nodes


# The trace's QoS classes as pod priorities: best-effort pods are the ones others may preempt;
# latency-sensitive, Burstable and Guaranteed pods are all production and never preempt each
# other. Without a qos column (or with it empty) a pod gets priority 0.
QOS_PRIORITY = {"BE": 0, "LS": 1, "Burstable": 1, "Guaranteed": 1}


def _priority(row: dict[str, str]) -> int:
    qos = (row.get("qos") or "").strip()
    if not qos:
        return 0
    if qos not in QOS_PRIORITY:  # load_pods adds the file and line
        raise InvalidInput(f"qos {qos!r} unknown; expected one of {', '.join(QOS_PRIORITY)}")
    return QOS_PRIORITY[qos]


def load_pods(path: str | os.PathLike[str]) -> Trace:
    """Pods of an openb pod list, in file order; priorities from the qos column (QOS_PRIORITY)."""
    path = Path(path)
    pods: list[PodRequest] = []
    for line, row in _rows(path, POD_COLUMNS):
        num_gpu = _int(path, line, row, "num_gpu")
        milli = _int(path, line, row, "gpu_milli", default=0) if num_gpu else 0
        spec = (row.get("gpu_spec") or "").strip()
        try:
            pods.append(
                PodRequest(
                    name=row["name"].strip(),
                    cpu_milli=_int(path, line, row, "cpu_milli"),
                    memory_mib=_int(path, line, row, "memory_mib"),
                    num_gpu=num_gpu,
                    gpu_milli=milli if num_gpu else 0,
                    gpu_models=frozenset(s for s in spec.split("|") if s),
                    priority=_priority(row),
                )
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{path}:{line}: {exc}") from None
    if not pods:
        raise InvalidInput(f"{path}: no pods")
    return Trace(path.stem, tuple(pods))
