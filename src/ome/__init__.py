"""OME placement engine: GPU packing for model serving on Kubernetes."""

from ome.domain import ClusterState, Node, PodRequest, Status

__version__ = "0.1.0"
__all__ = ["ClusterState", "Node", "PodRequest", "Status", "__version__"]
