"""The public surface of each subpackage, and the promise that `import ome` stays light."""

import subprocess
import sys

import ome.domain
import ome.solver


def test_domain_and_solver_exports_are_pinned() -> None:
    assert sorted(ome.domain.__all__) == [
        "Assignment", "ClusterState", "Code", "InvalidInput", "InvariantViolation", "MILLI", "Node",
        "ON_DEMAND", "OmeError", "PodRequest", "SPOT", "SUCCESS", "Status",
    ]
    for name in ("ClusterArrays", "TargetWorkload", "make_policy", "place_one", "policy_names", "Bind", "Infeasible"):
        assert name in ome.solver.__all__
    assert {"ome", "fgd", "bestfit", "random", "dotprod", "gpu-packing", "gpu-clustering"} <= set(ome.solver.policy_names())


def test_import_ome_and_the_online_path_load_no_heavy_framework() -> None:
    code = (
        "import sys, ome, ome.solver; "
        "heavy = [m for m in ('ortools', 'kopf', 'fastapi', 'kubernetes', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"loaded by import ome / ome.solver: {out}"
