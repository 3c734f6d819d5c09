"""Offline trace replay, the embedded synthetic scenario and the local simulated cluster."""

from ._replay import LEVELS, ReplayResult, arrival_sequence, replay
from ._report import report, summarize
from ._run import LevelState, Scenario, Task, replay_to_level, run_all, run_task
from ._synthetic import synthetic_nodes, synthetic_pods, synthetic_scenario
from ._traces import Trace, load_nodes, load_pods, resolve_trace

__all__ = [
    "LEVELS",
    "LevelState",
    "ReplayResult",
    "Scenario",
    "Task",
    "Trace",
    "arrival_sequence",
    "load_nodes",
    "load_pods",
    "replay",
    "replay_to_level",
    "report",
    "resolve_trace",
    "run_all",
    "run_task",
    "summarize",
    "synthetic_nodes",
    "synthetic_pods",
    "synthetic_scenario",
]
