"""The extender's state and decisions, free of HTTP and of the Kubernetes client.

State (all under one lock; the watch threads and the HTTP handlers share it):

- `nodes`: name -> ome.domain.Node, from the node watch;
- `pods`: uid -> PodInfo for every pod that is not terminal, from the pod watch;
- `entries`: uid -> _Entry, one per pod that holds resources in `arrays`:
  `reserved` (a filter chose node and GPUs; no bind yet), `binding` (bind in flight),
  `bound` (the pod has spec.nodeName). Reserved and binding entries expire (reservation_ttl_s,
  bind_ttl_s), so a scheduling cycle that failed after our filter gives its GPUs back;
- `arrays`: ome.solver.ClusterArrays over the nodes sorted by name, equal at all times to
  nodes minus the resources of every entry. Node changes rebuild it from the entries.

Decisions use ome.solver.place_one with the configured policy, exactly as `ome simulate`
does, with two choices that make a decision a pure function of the cluster state and the pod:
nodes in name order, and the tie-break a hash of (seed, namespace/name) rather than drawn
from one random stream (a restart or a retried filter must not change later choices).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from ome.domain import MILLI, Assignment, InvalidInput, InvariantViolation, Node, PodRequest
from ome.solver import (
    NEEDS_TARGET,
    Bind,
    ClusterArrays,
    FragModel,
    OmePolicy,
    Policy,
    SlotPlan,
    TargetWorkload,
    make_policy,
    place_one,
    pod_kind,
)

from ._scores import MAX_SHAPES, RecordingPolicy, is_node_local
from ._settings import FILTER_CHOSEN, PLANNED_POLICY, ExtenderSettings
from ._target import target_from_pods
from ._translate import ANNOTATION_GPU_INDEX, PodInfo, format_gpu_index, node_from_v1, pod_from_v1
from ._wire import MAX_EXTENDER_SCORE, NodeRows, rows_in

log = logging.getLogger("ome.scheduler")

RESERVED, BINDING, BOUND = "reserved", "binding", "bound"
OTHERS_MAX_SCORE = 4  # feasible but not chosen: 0..4, so the choice leads by >= 6 x weight x 10
MAX_DECISIONS = 4096
MAX_REQUEST_PODS = 256  # pods translated for requests (not from the watch) kept by fingerprint


def tie_break_rng(seed: int, pod_key: str) -> PodTieBreak:
    """The tie-break place_one uses for one pod: a function of (seed, "namespace/name")."""
    return PodTieBreak(seed, pod_key)


class PodTieBreak:
    """place_one's rng for one pod: integers(n) is a keyed hash of (seed, pod key) mod n, the
    same for every call, so a retried filter or a restarted extender picks the same among equal
    nodes. (A seeded numpy Generator cost 30-50 us to build, more than the rest of a tie.)"""

    __slots__ = ("_value",)

    def __init__(self, seed: int, key: str) -> None:
        digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=8).digest()
        self._value = int.from_bytes(digest, "little")

    def integers(self, high: int) -> int:
        return self._value % int(high)


def canonical_order(nodes: Iterable[Node]) -> list[Node]:
    """The node order of the extender's arrays (by name); an in-process replay must use it too."""
    return sorted(nodes, key=lambda n: n.name)


try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover
    _dumps = None  # type: ignore[assignment]

_FP_ANNOTATIONS = (ANNOTATION_GPU_INDEX, "ome.io/gpu-models", "ome.io/gpu-memory-mib")


def fingerprint(obj: Mapping[str, Any]) -> int | None:
    """A hash of everything pod_from_v1 and the PDB matching read (spec, phase, labels, OME's
    annotations): kwok's status updates and the scheduler's repeated Pod bodies leave it alone,
    so the pod is not translated again. None without orjson (always translate)."""
    if _dumps is None:
        return None
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    try:
        return hash((_dumps(obj.get("spec")), (obj.get("status") or {}).get("phase"), _dumps(meta.get("labels")),
                     meta.get("namespace"), meta.get("name"), tuple(ann.get(k) for k in _FP_ANNOTATIONS)
                     if isinstance(ann, Mapping) else None))
    except (TypeError, AttributeError):
        return None


class Refused(Exception):
    """A request the extender cannot act on: `status` is the HTTP code to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Entry:
    uid: str
    key: str
    request: PodRequest
    node: str
    gpus: tuple[int, ...] | None  # None: a bound pod without a readable annotation (resolved on apply)
    state: str
    deadline: float = 0.0
    applied: Assignment | None = None


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    nodes: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]
    chosen: str = ""
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class BindPlan:
    node: str
    gpus: tuple[int, ...]
    annotations: dict[str, str]
    already_bound: bool = False


@dataclass(frozen=True, slots=True)
class _NameSet:
    """One NodeNames list against the arrays: rows in request order (len(arrays) for a name not
    in the cache), the mask of the known ones, the unknown names."""

    rows: np.ndarray
    mask: np.ndarray
    unknown: tuple[str, ...]


@dataclass(slots=True)
class _Decision:
    generation: int
    chosen: int
    nodes: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True, slots=True)
class Pdb:
    namespace: str
    match_labels: tuple[tuple[str, str], ...]
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...]
    disruptions_allowed: int
    selects_none: bool = False

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.selects_none or namespace != self.namespace:
            return False
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


def pdb_from_v1(obj: Mapping[str, Any]) -> Pdb:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector")
    exprs = tuple((str(e.get("key")), str(e.get("operator")), tuple(str(v) for v in e.get("values") or ()))
                  for e in (selector or {}).get("matchExpressions") or ())
    return Pdb(
        namespace=str(meta.get("namespace") or "default"),
        match_labels=tuple(sorted((str(k), str(v)) for k, v in ((selector or {}).get("matchLabels") or {}).items())),
        match_expressions=exprs,
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        selects_none=selector is None,
    )


class Extender:
    """Cache + reservations + decisions. Thread-safe; no I/O."""

    def __init__(self, settings: ExtenderSettings, target: TargetWorkload | None = None,
                 clock: Callable[[], float] = time.monotonic, warm_shapes: Sequence[PodRequest] = ()) -> None:
        self.settings = settings
        self.warm_shapes = tuple(warm_shapes)  # extra pod shapes to pre-score (e.g. every shape of the target file)
        self.clock = clock
        self._lock = threading.RLock()
        self._fixed_target = target
        self._target: TargetWorkload | None = target
        self._target_built = 0.0
        self._planned = settings.policy == PLANNED_POLICY
        base = "ome" if self._planned else settings.policy
        make_policy(base, seed=settings.seed, target=target or target_from_pods(()))  # fail fast
        self._slot_plan: SlotPlan | None = None
        self._plan_wanted = self._planned  # a plan for the current target is still to be solved
        self._planned_from: object = None  # the nodes and workload mix the current plan was solved from
        self.nodes: dict[str, Node] = {}
        self.bad_nodes: dict[str, str] = {}
        self.pods: dict[str, PodInfo] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.pdbs: dict[tuple[str, str], Pdb] = {}
        self.entries: dict[str, _Entry] = {}
        self._pending: dict[str, _Entry] = {}  # the reserved and binding subset of entries
        self._decisions: OrderedDict[str, _Decision] = OrderedDict()
        self._next_deadline = float("inf")
        self._fingerprints: dict[str, tuple[int, PodInfo]] = {}
        self._request_pods: OrderedDict[str, tuple[int, PodInfo]] = OrderedDict()
        self._names = np.empty(0, object)
        self._dirty = True
        self.generation = 0
        self.synced: set[str] = set()
        self.conflicts = 0  # bound pods whose resources could not be applied (over-commit seen)
        self.unreadable_pods = 0
        self.arrays = ClusterArrays([])
        self.version = np.zeros(0, np.int64)
        self.policy = self._new_policy()

    # ------------------------------------------------------------------ policy and arrays

    def _new_policy(self) -> RecordingPolicy:
        name = self.settings.policy
        target = None
        if name in NEEDS_TARGET or self._planned:
            if self._target is None:
                self._target = target_from_pods(p.request for p in self.pods.values())
                self._target_built = self.clock()
            target = self._target
        inner: Policy
        if self._planned:
            assert target is not None
            inner = OmePolicy(target, plan=self._slot_plan)
        else:
            inner = make_policy(name, seed=self.settings.seed, target=target)
        return RecordingPolicy(inner, self.version, cache=is_node_local(inner))

    # ------------------------------------------------------------------ the placement plan

    @property
    def plan(self) -> SlotPlan | None:
        return self._slot_plan

    def plan_inputs(self) -> tuple[tuple[Node, ...], tuple[PodRequest, ...]] | None:
        """What a plan is solved from, if one is wanted now: the nodes, and the workload (with a
        fixed target, the target file's pods, which `ome extender serve` also passes as
        warm_shapes; else the pods seen). None when no plan is wanted or there is nothing to
        plan (no GPU node, no GPU pod)."""
        with self._lock:
            if not self._plan_wanted:
                return None
            nodes = tuple(canonical_order(self.nodes.values()))
            pods = self.warm_shapes if self._fixed_target is not None else tuple(p.request for p in self.pods.values())
            if not any(n.gpu_count for n in nodes) or not any(p.num_gpu for p in pods):
                return None
            self._plan_wanted = False
            # A plan depends on the nodes and the workload's kinds and counts only: the same
            # inputs again keep the plan (and its slots already counted) instead of a re-solve.
            solved_from = (nodes, frozenset(Counter(pod_kind(p) for p in pods).items()))
            if solved_from == self._planned_from:
                return None
            self._planned_from = solved_from
            return nodes, tuple(pods)

    def set_plan(self, plan: SlotPlan | None) -> None:
        """Install a solved plan (None: keep the old one and ask again at the next sweep); the
        arrays and the policy are rebuilt with it before the next decision."""
        with self._lock:
            if plan is None:
                self._plan_wanted = self._planned
                self._planned_from = None
                return
            self._slot_plan = plan
            self._dirty = True

    @property
    def target(self) -> TargetWorkload | None:
        return self._target

    def refresh_target(self) -> bool:
        """Rebuild the observed target workload (no-op with a fixed target). True if rebuilt."""
        with self._lock:
            if self._fixed_target is not None or (self.settings.policy not in NEEDS_TARGET and not self._planned):
                return False
            if self._target is not None and self.clock() - self._target_built < self.settings.target_refresh_s:
                return False
            self._target = None
            self._dirty = True
            self._plan_wanted = self._planned  # the workload changed: plan it again
            return True

    def _ensure(self) -> None:
        if self._dirty:
            self._rebuild()

    def _rebuild(self) -> None:
        started = time.perf_counter()
        self.arrays = ClusterArrays(canonical_order(self.nodes.values()))
        self.version = np.zeros(len(self.arrays), np.int64)
        self.generation += 1
        self._decisions.clear()
        self._names = np.array(self.arrays.names, dtype=object)
        self.policy = self._new_policy()
        self.conflicts = 0
        for entry in sorted(self.entries.values(), key=lambda e: (e.state != BOUND, e.key)):
            entry.applied = None
            self._apply(entry)
        self._dirty = False
        log.info("rebuilt arrays: %d nodes, %d entries in %.1f ms", len(self.arrays), len(self.entries),
                 1000 * (time.perf_counter() - started))

    def _apply(self, entry: _Entry) -> bool:
        """Allocate the entry in the arrays; False (and counted) if it does not fit."""
        i = self.arrays.index.get(entry.node)
        if i is None:
            return False  # its node is unknown for now; applied when the node appears
        pod = entry.request
        if entry.gpus is None or len(entry.gpus) != pod.num_gpu or any(
                g >= self.arrays.gpu_count[i] for g in entry.gpus):
            entry.gpus = self.policy.choose_gpus(self.arrays, pod, i) if self.arrays.fits_mask_one(pod, i) else None
            if entry.gpus is None:
                entry.gpus = ()
        try:
            entry.applied = self.arrays.allocate(pod, i, entry.gpus)
        except InvariantViolation as exc:  # the cluster holds more than the node has
            self.conflicts += 1
            log.error("cannot account %s on %s GPUs %s: %s", entry.key, entry.node, entry.gpus, exc)
            return False
        self.version[i] += 1
        self.policy.observe(self.arrays, pod, i, entry.gpus)
        return True

    def _unapply(self, entry: _Entry) -> None:
        if entry.applied is not None:
            self.arrays.release(entry.applied)
            self.version[entry.applied.node] += 1
            self.policy.released(self.arrays, entry.applied.pod, entry.applied.node)
            entry.applied = None

    def _add(self, entry: _Entry) -> bool:
        self.entries[entry.uid] = entry
        if entry.state != BOUND:
            self._pending[entry.uid] = entry
            self._next_deadline = min(self._next_deadline, entry.deadline)
        return self._apply(entry) if not self._dirty else True

    def _drop(self, uid: str) -> _Entry | None:
        entry = self.entries.pop(uid, None)
        self._pending.pop(uid, None)
        if entry is not None and not self._dirty:
            self._unapply(entry)
        return entry

    def _mark_bound(self, entry: _Entry) -> None:
        entry.state = BOUND
        self._pending.pop(entry.uid, None)

    def warm(self, stop: threading.Event | None = None) -> int:
        """Score the target's shapes, the shapes of the pods seen and `warm_shapes` on every node
        where they fit, one shape per lock hold (a request waits for one at most): all nodes after
        a rebuild, only the nodes changed since otherwise. Stops when the arrays are rebuilt.
        Returns the number of shapes visited."""
        with self._lock:
            self._ensure()
            generation, policy = self.generation, self.policy
            target = self._target
            seen = [info.request for info in self.pods.values()]
        if not policy.cache:
            return 0
        shapes: dict[Any, PodRequest] = {}
        if target is not None:
            for s in target.shapes:
                pod = PodRequest("warm-up", s.cpu_milli, 0, s.num_gpu, s.gpu_milli if s.num_gpu else 0, s.gpu_models)
                shapes.setdefault(policy.key(pod), pod)
        for pod in (*self.warm_shapes, *seen):
            shapes.setdefault(policy.key(pod), pod)
        done = 0
        for pod in list(shapes.values())[:MAX_SHAPES]:
            if stop is not None and stop.is_set():
                break
            with self._lock:
                if self._dirty or self.generation != generation:
                    break
                nodes = np.flatnonzero(self.arrays.fits_mask(pod))
                if nodes.size:
                    self.policy.score(self.arrays, pod, nodes)
                    done += 1
        return done

    # ------------------------------------------------------------------ watch input

    def replace_nodes(self, items: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.nodes.clear()
            self.bad_nodes.clear()
            for obj in items:
                self._node_upsert(obj)
            self._dirty = True
            self.synced.add("nodes")

    def node_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                name = (obj.get("metadata") or {}).get("name")
                if self.nodes.pop(name, None) is not None:
                    self._dirty = True
                self.bad_nodes.pop(name, None)
            else:
                self._node_upsert(obj)

    def _node_upsert(self, obj: Mapping[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            node = node_from_v1(obj)
        except InvalidInput as exc:
            self.bad_nodes[name] = str(exc)
            if self.nodes.pop(name, None) is not None:
                self._dirty = True
            return
        if self.nodes.get(name) != node:
            self.nodes[name] = node
            self._dirty = True

    def replace_pods(self, items: Sequence[Mapping[str, Any]]) -> None:
        """A full list: bound entries follow it; reservations of pods still pending are kept."""
        with self._lock:
            self.pods.clear()
            self.labels.clear()
            self._fingerprints.clear()
            old = self.entries
            self.entries, self._pending = {}, {}
            self._dirty = True
            for obj in items:
                self._pod_upsert(obj, old)
            for uid, entry in old.items():
                info = self.pods.get(uid)
                if entry.state != BOUND and uid not in self.entries and info is not None and not info.node_name:
                    self.entries[uid] = entry
                    self._pending[uid] = entry
            if "pods" not in self.synced and self._fixed_target is None:
                self._target = None  # an observed target: build it from this first list
            self.synced.add("pods")

    def pod_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                uid = str((obj.get("metadata") or {}).get("uid") or "")
                self._fingerprints.pop(uid, None)
                self.pods.pop(uid, None)
                self.labels.pop(uid, None)
                self._drop(uid)
                self._decisions.pop(uid, None)
            else:
                self._pod_upsert(obj, self.entries)

    def pod_info(self, obj: Mapping[str, Any], remember: bool = True) -> PodInfo:
        """pod_from_v1, or the cached PodInfo when the pod's fingerprint has not changed.
        Requests pass remember=False: only the watch adds entries to that cache (and deletes
        them), so callers cannot grow it with made-up pods; a request's pod goes to a small LRU
        of its own instead (filter and prioritize of one pod send the same Pod)."""
        meta = obj.get("metadata")
        raw_uid = meta.get("uid") if isinstance(meta, Mapping) else None
        uid = raw_uid if isinstance(raw_uid, str) else ""
        fp = fingerprint(obj) if uid else None
        if fp is not None:
            known = self._fingerprints.get(uid)
            if known is None and not remember:
                known = self._request_pods.get(uid)
            if known is not None and known[0] == fp:
                return known[1]
        info = pod_from_v1(obj)
        if fp is not None:
            with self._lock:
                if remember:
                    self._fingerprints[uid] = (fp, info)
                else:
                    self._request_pods[uid] = (fp, info)
                    self._request_pods.move_to_end(uid)
                    while len(self._request_pods) > MAX_REQUEST_PODS:
                        self._request_pods.popitem(last=False)
        return info

    def request_pod_info(self, obj: Mapping[str, Any]) -> PodInfo:
        return self.pod_info(obj, remember=False)

    def _pod_upsert(self, obj: Mapping[str, Any], entries: Mapping[str, _Entry]) -> None:
        try:
            info = self.pod_info(obj)
        except InvalidInput as exc:
            self.unreadable_pods += 1
            log.warning("ignoring unreadable pod: %s", exc)
            return
        uid = info.uid
        if entries is self.entries and self.pods.get(uid) is info and (
                not info.node_name or (uid in self.entries and self.entries[uid].state == BOUND)):
            return  # nothing we read changed (a kwok status update, a relist of the same pod)
        if info.terminal:
            self._fingerprints.pop(uid, None)
            self.pods.pop(uid, None)
            self.labels.pop(uid, None)
            if entries is self.entries:
                self._drop(uid)
            return
        self.pods[uid] = info
        labels = (obj.get("metadata") or {}).get("labels")
        self.labels[uid] = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}
        if not info.node_name:
            return
        entry = entries.get(uid)
        if entry is not None and entry.node == info.node_name and (
                info.gpu_index is None or info.gpu_index == entry.gpus):
            if entries is self.entries:
                self._mark_bound(entry)
            else:
                entry.state = BOUND
                self.entries[uid] = entry
            return
        if entries is self.entries:
            self._drop(uid)
        self._add(_Entry(uid, info.key, info.request, info.node_name, info.gpu_index, BOUND))

    def replace_pdbs(self, items: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.pdbs = {}
            for obj in items:
                self.pdb_event("ADDED", obj)
            self.synced.add("pdbs")

    def pdb_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            if kind == "DELETED":
                self.pdbs.pop(key, None)
            else:
                try:
                    self.pdbs[key] = pdb_from_v1(obj)
                except (TypeError, ValueError, AttributeError):
                    log.warning("ignoring unreadable PodDisruptionBudget %s/%s", *key)

    @property
    def ready(self) -> bool:
        return {"nodes", "pods"} <= self.synced

    # ------------------------------------------------------------------ reservations

    def expire(self) -> int:
        """Drop reservations and unresolved binds past their deadline; return how many."""
        now = self.clock()
        dropped = 0
        with self._lock:
            if now < self._next_deadline:
                return 0
            self._next_deadline = float("inf")
            for uid, entry in list(self._pending.items()):
                if entry.deadline > now:
                    self._next_deadline = min(self._next_deadline, entry.deadline)
                    continue
                info = self.pods.get(uid)
                if entry.state == BINDING and info is not None and info.node_name == entry.node:
                    self._mark_bound(entry)
                    continue
                self._drop(uid)
                dropped += 1
        return dropped

    # ------------------------------------------------------------------ verbs

    @property
    def index(self) -> Mapping[str, int]:
        """Node name -> row of the current arrays (replaced, never changed, by a rebuild): the
        wire layer looks the requested names up in it while validating them."""
        return self.arrays.index

    def _candidates(self, names: Sequence[str], hint: NodeRows | None = None) -> _NameSet:
        """Rows of the named nodes, a mask of them and the names not in the cache. `hint`: the
        lookups the wire layer made, used if they were made in the current index."""
        index, size = self.arrays.index, len(self.arrays)
        if hint is not None and hint[0] is index and len(hint[1]) == len(names):
            rows = hint[1]
        else:
            rows = rows_in(index, names)
        missing = rows < 0
        unknown: tuple[str, ...] = ()
        if missing.any():
            unknown = tuple(names[i] for i in np.flatnonzero(missing).tolist())
            rows = np.where(missing, size, rows)
        mask = np.zeros(size + 1, np.bool_)
        mask[rows] = True
        return _NameSet(rows, mask[:size], unknown)

    def filter(self, pod: PodInfo, names: Sequence[str], rows: NodeRows | None = None) -> FilterOutcome:
        """Choose a node and GPUs among `names`, reserve them, say why the other nodes fail."""
        with self._lock:
            self.expire()
            self._ensure()
            entry = self.entries.get(pod.uid) if pod.uid else None
            if entry is not None and entry.state != RESERVED:
                # Bound or being bound already: only its node will do.
                ok = entry.node in names
                return FilterOutcome([entry.node] if ok else [], {} if ok else dict.fromkeys(
                    names, f"pod is already placed on {entry.node}"), {}, entry.node, entry.gpus or ())
            if entry is not None:
                self._drop(pod.uid)
            candidates = self._candidates(names, rows)
            mask, unknown = candidates.mask, candidates.unknown
            arrays, request = self.arrays, pod.request
            self.policy.forget()
            rng = PodTieBreak(self.settings.seed, pod.key)
            decision = place_one(arrays, request, self.policy, rng, mask, tie_break=self.settings.tie_break)
            failed: dict[str, str] = {n: "node is not (yet) in the OME extender's cache" for n in unknown}
            unresolvable: dict[str, str] = {}
            if isinstance(decision, Bind):
                feasible = self.policy.last_nodes
                chosen = arrays.names[decision.node]
                if pod.uid:
                    self._add(_Entry(pod.uid, pod.key, request, chosen, decision.gpus, RESERVED,
                                     self.clock() + self.settings.reservation_ttl_s))
                    self._remember(pod.uid, _Decision(self.generation, decision.node, feasible, self.policy.last_scores))
                if self.settings.filter_mode == FILTER_CHOSEN:
                    return FilterOutcome([chosen], failed, {}, chosen, decision.gpus)
                rejected = mask.copy()
                rejected[feasible] = False
                self._explain(request, rejected, failed, unresolvable)
                names_out = self._names[feasible].tolist()
                return FilterOutcome(names_out, failed, unresolvable, chosen, decision.gpus)
            self._explain(request, mask, failed, unresolvable)
            return FilterOutcome([], failed, unresolvable)

    def _remember(self, uid: str, decision: _Decision) -> None:
        self._decisions[uid] = decision
        self._decisions.move_to_end(uid)
        while len(self._decisions) > MAX_DECISIONS:
            self._decisions.popitem(last=False)

    def _explain(self, pod: PodRequest, rejected: np.ndarray, failed: dict[str, str],
                 unresolvable: dict[str, str]) -> None:
        """Per-node reasons for the nodes in `rejected` (vectorised; one string per reason)."""
        if not rejected.any():
            return
        a = self.arrays
        never = rejected & ~a.accepts_mask(pod)
        names = self._names  # object array: a mask picks the names in C, not a loop per node
        if never.any():
            why = (f"can never hold {pod.num_gpu} GPU(s) x {pod.gpu_milli} milli"
                   f"{' of ' + ','.join(sorted(pod.gpu_models)) if pod.gpu_models else ''}"
                   f" with {pod.cpu_milli}m CPU / {pod.memory_mib}Mi (GPU model, count, memory or node size)")
            unresolvable.update(zip(names[never].tolist(), repeat(why)))
        rest = rejected & ~never
        if not rest.any():
            return
        cpu = rest & (a.cpu_free < pod.cpu_milli)
        mem = rest & ~cpu & (a.mem_free < pod.memory_mib)
        gpu = rest & ~cpu & ~mem
        for m, why in ((cpu, "insufficient cpu"), (mem, "insufficient memory"),
                       (gpu, f"no {pod.num_gpu} GPU(s) with {pod.gpu_milli} milli free")):
            failed.update(zip(names[m].tolist(), repeat(why)))

    def prioritize(self, pod: PodInfo, names: Sequence[str]) -> list[tuple[str, int]]:
        """10 for the node the filter chose, 0..4 (the policy's score / 25) for the other feasible nodes."""
        scores, _, _ = self.prioritize_rows(pod, names)
        return list(zip(names, scores.tolist()))

    def prioritize_rows(self, pod: PodInfo, names: Sequence[str],
                        rows: NodeRows | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """prioritize's scores as an array in the order of `names`, with the row of each name in
        the node list also returned (len(node list) for a name not in the cache) and that list."""
        with self._lock:
            self._ensure()
            d = self._decisions.get(pod.uid) if pod.uid else None
            candidates = self._candidates(names, rows)
            if d is None or d.generation != self.generation:
                entry = self.entries.get(pod.uid) if pod.uid else None
                if entry is not None:
                    chosen = self.arrays.index.get(entry.node, -1)
                    d = _Decision(self.generation, chosen, np.empty(0, np.int64), np.empty(0, np.int64))
                else:
                    self.policy.forget()
                    rng = PodTieBreak(self.settings.seed, pod.key)
                    decision = place_one(self.arrays, pod.request, self.policy, rng, candidates.mask,
                                         tie_break=self.settings.tie_break)
                    chosen = decision.node if isinstance(decision, Bind) else -1
                    d = _Decision(self.generation, chosen, self.policy.last_nodes, self.policy.last_scores)
            values = np.zeros(len(self.arrays) + 1, np.int64)  # the last slot stands for unknown nodes
            values[d.nodes] = d.scores * OTHERS_MAX_SCORE // 100
            if d.chosen >= 0:
                values[d.chosen] = MAX_EXTENDER_SCORE
            return values[candidates.rows], candidates.rows, self.arrays.names

    def begin_bind(self, uid: str, namespace: str, name: str, node: str,
                   pod: PodInfo | None = None) -> BindPlan | None:
        """Reserve (or confirm) GPUs on `node` for the pod; None if the pod is not known yet
        (the caller fetches it and calls again with `pod`). Raises Refused."""
        with self._lock:
            self.expire()
            self._ensure()
            i = self.arrays.index.get(node)
            if i is None:
                raise Refused(404, f"node {node!r} is not in the OME extender's cache")
            entry = self.entries.get(uid)
            if entry is not None and entry.key != f"{namespace}/{name}":
                raise Refused(409, f"uid {uid} belongs to {entry.key}, not {namespace}/{name}")
            if entry is not None and entry.state != RESERVED:
                if entry.node != node:
                    raise Refused(409, f"{entry.key} is already placed on {entry.node}")
                if entry.state == BINDING:
                    entry.deadline = self.clock() + self.settings.bind_ttl_s
                    self._next_deadline = min(self._next_deadline, entry.deadline)
                return self._plan(entry, already_bound=entry.state == BOUND)
            if entry is not None and entry.node == node and entry.applied is not None:
                entry.state = BINDING
                entry.deadline = self.clock() + self.settings.bind_ttl_s
                self._next_deadline = min(self._next_deadline, entry.deadline)
                return self._plan(entry)
            request = entry.request if entry is not None else None
            if request is None:
                info = pod if pod is not None else self.pods.get(uid)
                if info is None:
                    return None
                if info.uid != uid or info.key != f"{namespace}/{name}":
                    raise Refused(409, f"pod {namespace}/{name} has uid {info.uid}, not {uid}")
                if info.node_name:
                    if info.node_name == node:
                        return BindPlan(node, info.gpu_index or (), {}, already_bound=True)
                    raise Refused(409, f"{info.key} is already bound to {info.node_name}")
                request = info.request
            if entry is not None:
                self._drop(uid)
            if not self.arrays.fits_mask_one(request, i):
                failed: dict[str, str] = {}
                mask = np.zeros(len(self.arrays), np.bool_)
                mask[i] = True
                self._explain(request, mask, failed, failed)
                raise Refused(409, f"{namespace}/{name} does not fit on {node}: {failed.get(node, 'no room')}")
            gpus = self.policy.choose_gpus(self.arrays, request, i)
            new = _Entry(uid, f"{namespace}/{name}", request, node, gpus, BINDING,
                         self.clock() + self.settings.bind_ttl_s)
            self._add(new)
            return self._plan(new)

    @staticmethod
    def _plan(entry: _Entry, already_bound: bool = False) -> BindPlan:
        gpus = entry.gpus or ()
        annotations = {ANNOTATION_GPU_INDEX: format_gpu_index(gpus)} if entry.request.num_gpu else {}
        return BindPlan(entry.node, gpus, annotations, already_bound)

    def end_bind(self, uid: str, node: str, outcome: bool | None) -> None:
        """True: bound (the watch confirms later). False: refused, release. None: unknown, keep
        until the watch tells or bind_ttl_s passes."""
        with self._lock:
            entry = self.entries.get(uid)
            if entry is None or entry.node != node:
                return
            if outcome is True:
                self._mark_bound(entry)
            elif outcome is False and entry.state != BOUND:
                self._drop(uid)

    # ------------------------------------------------------------------ preemption

    def preempt(self, pod: PodInfo, proposals: Mapping[str, tuple[list[str], int]]) -> dict[str, tuple[list[str], int]]:
        """Per node, the victims we would evict: fewest PDB violations, then fewest pods, then the
        lowest highest priority, then the lowest priority sum. Nodes where the pod cannot fit
        even with every lower-priority pod gone are left out. A node where it fits already (the
        scheduler saw something we do not) keeps the scheduler's proposal."""
        out: dict[str, tuple[list[str], int]] = {}
        with self._lock:
            self._ensure()
            by_node: dict[str, list[_Entry]] = {}
            wanted = set(proposals)
            for entry in self.entries.values():
                if entry.node in wanted and entry.state == BOUND and entry.applied is not None \
                        and entry.request.priority < pod.request.priority and entry.uid != pod.uid:
                    by_node.setdefault(entry.node, []).append(entry)
            for node, proposal in proposals.items():
                i = self.arrays.index.get(node)
                if i is None:
                    continue
                if self.arrays.fits_mask_one(pod.request, i):
                    if proposal[0]:
                        out[node] = proposal
                    continue
                victims = self._victims(pod.request, i, sorted(by_node.get(node, []), key=lambda e: e.key))
                if victims is not None:
                    out[node] = victims
        return out

    def _victims(self, pod: PodRequest, i: int, cands: list[_Entry]) -> tuple[list[str], int] | None:
        a = self.arrays
        if not cands or not pod.accepts(a.nodes[i]) or pod.cpu_milli > a.cpu_cap[i] or pod.memory_mib > a.mem_cap[i]:
            return None
        n, width = len(cands), a.gpu_free.shape[1]
        cpu = np.array([e.request.cpu_milli for e in cands], np.int64)
        mem = np.array([e.request.memory_mib for e in cands], np.int64)
        prio = np.array([e.request.priority for e in cands], np.int64)
        gpu = np.zeros((n, width), np.int64)
        for k, e in enumerate(cands):
            for g in e.applied.gpus if e.applied else ():
                gpu[k, g] += e.request.gpu_milli
        pdbs = [p for p in self.pdbs.values() if any(p.matches(e.key.split("/", 1)[0], self.labels.get(e.uid, {}))
                                                    for e in cands)]
        match = np.array([[p.matches(e.key.split("/", 1)[0], self.labels.get(e.uid, {})) for p in pdbs]
                          for e in cands], np.int64).reshape(n, len(pdbs))
        allowed = np.array([p.disruptions_allowed for p in pdbs], np.int64)

        def evaluate(subsets: np.ndarray) -> np.ndarray:
            """Objective rows (violations, count, max prio, sum prio) or -1 where it does not fit."""
            free = a.gpu_free[i][None, :] + subsets @ gpu
            ok = (a.cpu_free[i] + subsets @ cpu >= pod.cpu_milli) & (a.mem_free[i] + subsets @ mem >= pod.memory_mib)
            if pod.num_gpu:
                ok &= (free >= pod.gpu_milli).sum(axis=1) >= pod.num_gpu
            violations = np.maximum(subsets @ match - allowed, 0).sum(axis=1) if pdbs else np.zeros(len(subsets), np.int64)
            top = np.where(subsets > 0, prio[None, :], np.iinfo(np.int64).min).max(axis=1)
            return np.where(ok, 1, 0), np.stack([violations, subsets.sum(axis=1), top, subsets @ prio], axis=1)

        if n <= self.settings.exact_preempt_max:
            subsets = ((np.arange(1, 1 << n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.int64)
        else:
            # Greedy reprieve, kube-scheduler style: evict all, then keep back the pods we most want
            # to keep (PDB-protected, then higher priority, then smaller) while the pod still fits.
            chosen = np.ones(n, np.int64)
            order = sorted(range(n), key=lambda k: (-int(match[k].any()) if pdbs else 0, -prio[k], cpu[k] + gpu[k].sum()))
            if not evaluate(chosen[None, :])[0][0]:
                return None
            for k in order:
                chosen[k] = 0
                if not evaluate(chosen[None, :])[0][0]:
                    chosen[k] = 1
            subsets = chosen[None, :]
        ok, objective = evaluate(subsets)
        if not ok.any():
            return None
        rows = np.flatnonzero(ok)
        obj = objective[rows]
        best = rows[np.lexsort((obj[:, 3], obj[:, 2], obj[:, 1], obj[:, 0]))[0]]
        picked = [cands[k] for k in np.flatnonzero(subsets[best]).tolist()]
        return [e.uid for e in picked], int(objective[best, 0])

    # ------------------------------------------------------------------ read-outs

    def stats(self) -> dict[str, float]:
        with self._lock:
            self._ensure()
            a = self.arrays
            cap = a.gpu_cap
            free = a.gpu_free
            allocated = float((cap - free).sum()) / MILLI
            partial = int(((free > 0) & (free < cap)).sum())
            frag = 0.0
            if self._target is not None and len(a):
                model = FragModel(self._target, a)
                frag = float(model.node_frag(free, a.cpu_free, a.model_id).sum()) / MILLI
            states = {RESERVED: 0, BINDING: 0, BOUND: 0}
            for e in self.entries.values():
                states[e.state] += 1
            return {
                "nodes": len(self.nodes), "bad_nodes": len(self.bad_nodes), "pods": len(self.pods),
                "gpus": float(a.gpu_count.sum()), "gpus_allocated": allocated, "gpus_partially_allocated": partial,
                "gpus_fragmented": frag, "reserved": states[RESERVED], "binding": states[BINDING],
                "bound": states[BOUND], "conflicts": self.conflicts, "unreadable_pods": self.unreadable_pods,
            }

    def snapshot(self) -> dict[str, Any]:
        """Per-node free resources and every entry, for /debug/state and the tests."""
        with self._lock:
            self._ensure()
            a = self.arrays
            return {
                "generation": self.generation,
                "nodes": {name: {"cpu_free": int(a.cpu_free[i]), "memory_free": int(a.mem_free[i]),
                                 "gpu_free": a.gpu_free[i, :a.gpu_count[i]].tolist()}
                          for i, name in enumerate(a.names)},
                "entries": {e.uid: {"pod": e.key, "node": e.node, "gpus": list(e.gpus or ()), "state": e.state}
                            for e in self.entries.values()},
                "policy": self.policy.name,
                "plan_adopted": None if self._slot_plan is None else self._slot_plan.adopted,
                # The plan's slots per node, "cpu/mem/GPUs/milli" -> count (ome-plan; None without one).
                "plan": None if self._slot_plan is None else {
                    name: {f"{k[0]}/{k[1]}/{k[2]}/{k[3]}": n for k, n in kinds.items()}
                    for name, kinds in self._slot_plan.slots.items()},
            }
