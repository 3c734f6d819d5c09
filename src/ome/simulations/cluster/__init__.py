"""A real local Kubernetes control plane with simulated (kwok) GPU nodes.

For the integration tests and for what-if runs: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (optionally with the OME extender) and kwok, built from source by
`hack/build-controlplane.sh`, run as child processes on loopback ports. See docs/controlplane.md.
"""

from ._binaries import BUILD_COMMAND, Binaries, MissingBinaries, find_binaries, go_toolchain
from ._config import GPU_MILLI_RESOURCE, GPU_RESOURCE
from ._launcher import (
    ClusterError,
    ClusterSettings,
    ComponentError,
    LocalCluster,
    running_cluster,
    running_processes,
    stop_directory,
)
from ._nodes import (
    LABEL_CAPACITY_TYPE,
    LABEL_COUNT,
    LABEL_MEMORY,
    LABEL_POOL,
    LABEL_PRODUCT,
    LABEL_ZONE,
    NodeCreationError,
    manifest,
    synthetic_nodes,
    with_derived_placement,
)

__all__ = [
    "BUILD_COMMAND",
    "GPU_MILLI_RESOURCE",
    "GPU_RESOURCE",
    "LABEL_CAPACITY_TYPE",
    "LABEL_COUNT",
    "LABEL_MEMORY",
    "LABEL_POOL",
    "LABEL_PRODUCT",
    "LABEL_ZONE",
    "Binaries",
    "ClusterError",
    "ClusterSettings",
    "ComponentError",
    "LocalCluster",
    "MissingBinaries",
    "NodeCreationError",
    "find_binaries",
    "go_toolchain",
    "manifest",
    "running_cluster",
    "running_processes",
    "stop_directory",
    "synthetic_nodes",
    "with_derived_placement",
]
