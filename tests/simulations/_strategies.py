"""Hypothesis strategies shared by the replay tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ome.domain import MILLI, PodRequest


def pods_with_priorities(top: int, min_size: int = 1, max_size: int = 14) -> st.SearchStrategy[list[PodRequest]]:
    """Pods of 0-2 GPUs (shares of 160-810 milli or whole GPUs), 1-6 cores, priorities 0..top."""
    shape = st.tuples(st.integers(0, 2), st.sampled_from([160, 470, 810, MILLI]), st.integers(1, 6), st.integers(0, top))
    return st.lists(shape, min_size=min_size, max_size=max_size).map(lambda rows: [
        PodRequest(f"p{k}", cpu * 1_000, 1_000, gpus, (milli if gpus == 1 else MILLI) if gpus else 0, priority=prio)
        for k, (gpus, milli, cpu, prio) in enumerate(rows)
    ])
