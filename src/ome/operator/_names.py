"""Names on the wire: API groups, labels, annotations and the scheduling gate.

These strings are the contract between the operator, the extender and people (docs/operator.md).
"""

from __future__ import annotations

GROUP = "scheduling.ome.io"
VERSION = "v1alpha1"
PLACEMENTS = "modelplacements"
POLICIES = "placementpolicies"
PLACEMENT_KIND = "ModelPlacement"
POLICY_NAME = "default"

OME_GROUP = "ome.io"
OME_VERSION = "v1beta1"
INFERENCE_SERVICES = "inferenceservices"
ACCELERATOR_CLASSES = "acceleratorclasses"

SCHEDULER_NAME = "ome-scheduler"
GATE = "scheduling.ome.io/placement"  # every governed pod is created behind this gate

# Labels on governed pods (selectable).
LABEL_PLACEMENT = "scheduling.ome.io/placement"  # the ModelPlacement's name (same namespace)
LABEL_REPLICA = "scheduling.ome.io/replica"  # replica index, "0".."replicas-1"
LABEL_MEMBER = "scheduling.ome.io/member"  # member index inside a multi-node replica, "0".."k-1"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "ome-operator"

# Annotations on governed pods: the plan the extender honours.
ANN_PLANNED_NODE = "scheduling.ome.io/planned-node"
ANN_GPU_INDEX = "ome.io/gpu-index"  # comma-separated GPU indices on the planned node, e.g. "0,1"
ANN_GPU_MILLI = "scheduling.ome.io/gpu-milli"  # milli-GPU taken on each listed GPU (1000 = whole)
ANN_TIER = "scheduling.ome.io/accelerator"  # which accepted accelerator (tier) the plan used
ANN_GANG = "scheduling.ome.io/gang"  # "<namespace>/<placement>/<replica>" for multi-node replicas
ANN_GANG_SIZE = "scheduling.ome.io/gang-size"

# Labels on ModelPlacements the operator derives from OME InferenceServices.
LABEL_FROM_ISVC = "scheduling.ome.io/inferenceservice"
LABEL_COMPONENT = "scheduling.ome.io/component"

# Node conventions (NVIDIA GPU feature discovery, Karpenter, well-known topology labels).
NODE_GPU_PRODUCT = "nvidia.com/gpu.product"
NODE_GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU
NODE_CAPACITY_TYPE = "karpenter.sh/capacity-type"
NODE_ZONE = "topology.kubernetes.io/zone"
NODE_POOL = "scheduling.ome.io/pool"
NODE_PRICE = "scheduling.ome.io/price-micro-usd-per-hour"  # annotation: whole node, on its market
GPU_RESOURCE = "nvidia.com/gpu"
GPU_MILLI_RESOURCE = "ome.io/gpu-milli"
SPOT_LABELS = (("karpenter.sh/capacity-type", "spot"), ("eks.amazonaws.com/capacityType", "SPOT"),
               ("cloud.google.com/gke-spot", "true"), ("kubernetes.azure.com/scalesetpriority", "spot"))

# Condition types and reasons on ModelPlacement status.
PLACED = "Placed"
DEGRADED = "Degraded"
UNSCHEDULABLE = "Unschedulable"
