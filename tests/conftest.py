"""Shared fixtures. The trace data is third-party and lives outside the repo (OME_TRACE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def trace_dir() -> Path:
    """The openb CSVs; a skip outside CI when absent, a failure under CI=true."""
    value = os.environ.get("OME_TRACE_DIR")
    path = Path(value) if value else None
    if path is None or not (path / "openb_node_list_gpu_node.csv").is_file():
        message = f"OME_TRACE_DIR={value!r} does not hold the openb trace (openb_node_list_gpu_node.csv)"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return path
