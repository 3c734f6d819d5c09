"""The exact packing model over a window of nodes: the building block of the LNS and the repack.

Per window node i the constraints of ``_packing.add_node_packing`` (n[i,s], z[i,g,u], w[i,g]),
plus, across the window,

    sum_i n[i,s] <= available_s                                   (pods exist)

Mode FREE (offline optimum): every pod on a window node joins the pool; any may be dropped,
unless `min_counts` asks for at least so many pods of a shape in the window.
Mode KEEP (rescheduler): a pod p already placed has keep[p] (bool): it stays on its node
and GPUs, or it moves; every moved pod must land again inside the window,

    sum_i n[i,s] >= sum_{p of shape s} (1 - keep[p]),    moves = sum_p (1 - keep[p]) <= budget.

Objective, lexicographic through integer weights: GPU milli placed; then (KEEP) pods placed,
then fewest moves.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from ome.domain import Node, PodRequest

from ._packing import NodeVars, add_node_packing, decode_layout, hint_layout, sorted_layout
from ._shapes import PodShape, shape_of

Placement = tuple[int, tuple[int, ...]]  # node index, GPU indices


class Mode(enum.Enum):
    FREE = "free"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class WindowAnswer:
    """New contents of the window: pod index -> placement; pods of the input not listed are unplaced."""

    placements: dict[int, Placement]
    milli: int  # GPU milli on the window's nodes after this answer
    bound_milli: int  # proven bound on GPU milli placeable in the window with the same pools
    moves: int  # pods whose node or GPUs changed
    status: str  # "OPTIMAL", "FEASIBLE" or "UNKNOWN" (no answer: placements is the input)


class WindowModel:
    """Build, solve and decode the window model. Nothing outside the window is touched."""

    def __init__(
        self,
        nodes: Sequence[Node],
        pods: Sequence[PodRequest],
        window: Sequence[int],
        current: Mapping[int, Placement],
        pool: Sequence[int],
        *,
        mode: Mode = Mode.FREE,
        budget: int | None = None,
        shapes: Sequence[PodShape] | None = None,
        min_counts: Mapping[PodShape, int] | None = None,
    ) -> None:
        """`current`: pod -> placement for every pod on a window node; `pool`: unplaced candidates;
        `shapes`: the shape of every pod, if the caller has them (saves recomputing);
        `min_counts` (FREE): at least this many pods of a shape must be in the window after."""
        shape = (lambda p: shapes[p]) if shapes is not None else (lambda p: shape_of(pods[p]))
        self.nodes, self.pods, self.window, self.mode = nodes, pods, list(window), mode
        self.current = dict(current)
        self.pool = list(pool)
        self.model = m = cp_model.CpModel()
        in_window = set(self.window)
        if any(node not in in_window for node, _ in self.current.values()):
            raise ValueError("a pod in `current` sits outside the window")

        self.shape_pool: dict[PodShape, list[int]] = defaultdict(list)
        self.shape_current: dict[PodShape, list[int]] = defaultdict(list)
        for p in sorted(self.current):
            self.shape_current[shape(p)].append(p)
        for p in self.pool:
            self.shape_pool[shape(p)].append(p)
        kinds = sorted(set(self.shape_pool) | set(self.shape_current))
        available = {s: len(self.shape_pool.get(s, ())) + len(self.shape_current.get(s, ())) for s in kinds}

        keep_mode = mode is Mode.KEEP
        self.keep = {p: m.new_bool_var(f"keep[{pods[p].name}]") for p in sorted(self.current)} if keep_mode else {}
        by_node: dict[int, list[int]] = defaultdict(list)
        for p, (where, _) in self.current.items():
            by_node[where].append(p)
        self.vars: dict[int, NodeVars] = {}
        milli_terms: list[cp_model.LinearExprT] = []
        for i in self.window:
            node = nodes[i]
            kept = by_node.get(i, []) if keep_mode else []
            extra_gpu = [[pods[p].gpu_milli * self.keep[p] for p in kept if g in self.current[p][1]]
                         for g in range(node.gpu_count)]
            nv = add_node_packing(
                m, node, available,
                extra_cpu=sum(pods[p].cpu_milli * self.keep[p] for p in kept),
                extra_mem=sum(pods[p].memory_mib * self.keep[p] for p in kept),
                extra_gpu=extra_gpu, symmetry=not keep_mode,
            )
            self.vars[i] = nv
            milli_terms.append(nv.milli)
            milli_terms += [pods[p].gpu_demand_milli * self.keep[p] for p in kept if pods[p].num_gpu]

        for s in kinds:
            placed = [nv.n[s] for nv in self.vars.values() if s in nv.n]
            if not keep_mode:
                if len(placed) > 0:
                    m.add(sum(placed) <= available[s])
                need = (min_counts or {}).get(s, 0)
                if need > 0:
                    m.add(sum(placed) >= need)
                continue
            cur = self.shape_current.get(s, [])
            moved = sum(1 - self.keep[p] for p in cur)
            if placed:
                m.add(sum(placed) <= len(self.shape_pool.get(s, ())) + moved)
                if cur:
                    m.add(sum(placed) >= moved)
            else:
                for p in cur:  # nowhere else in the window could take it: it stays
                    m.add(self.keep[p] == 1)
        self.moves = sum(1 - k for k in self.keep.values())
        if keep_mode and budget is not None:
            m.add(self.moves <= budget)

        self.milli = sum(milli_terms)
        self._milli_weight, self._slack = 1, 0
        if keep_mode:
            count = sum(v for nv in self.vars.values() for v in nv.n.values()) + sum(self.keep.values())
            weight_count = len(self.current) + 1  # one more pod placed beats any number of moves
            self._milli_weight = (len(self.pool) + len(self.current) + 1) * weight_count  # one milli beats all else
            self._slack = len(self.current)
            m.maximize(self._milli_weight * self.milli + weight_count * count - self.moves)
        else:
            m.maximize(self.milli)
        self._shape = shape
        self._add_hint()

    def _add_hint(self) -> None:
        """The current placement, which is feasible: in KEEP keep everything and place nothing."""
        m = self.model
        if self.mode is Mode.KEEP:
            for v in self.keep.values():
                m.add_hint(v, 1)
            for nv in self.vars.values():
                hint_layout(m, nv, [])
            return
        layouts: dict[int, list[tuple[PodShape, tuple[int, ...]]]] = defaultdict(list)
        for p, (i, gpus) in self.current.items():
            layouts[i].append((self._shape(p), gpus))
        for i, nv in self.vars.items():
            hint_layout(m, nv, sorted_layout(layouts.get(i, []), self.nodes[i].gpu_count))

    def solve(self, solver: cp_model.CpSolver) -> WindowAnswer:
        status = solver.solve(self.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            kept = sum(self.pods[p].gpu_demand_milli for p in self.current)
            return WindowAnswer(dict(self.current), kept, -1, 0, "UNKNOWN")
        placements = self._decode(solver)
        milli = sum(self.pods[p].gpu_demand_milli for p in placements)
        if milli != int(solver.value(self.milli)):
            raise AssertionError("window decode disagrees with the model's GPU milli")
        if status == cp_model.OPTIMAL:
            bound = milli
        else:  # objective = W * milli + rest, rest >= -slack
            bound = int((solver.best_objective_bound + 1e-6 + self._slack) // self._milli_weight)
        moves = sum(1 for p, pl in self.current.items() if placements.get(p) != pl)
        return WindowAnswer(placements, milli, bound, moves, "OPTIMAL" if status == cp_model.OPTIMAL else "FEASIBLE")

    def _decode(self, solver: cp_model.CpSolver) -> dict[int, Placement]:
        out: dict[int, Placement] = {p: self.current[p] for p, var in self.keep.items() if solver.value(var)}
        queue: dict[PodShape, list[int]] = {}
        for s in set(self.shape_pool) | set(self.shape_current):
            queue[s] = [p for p in self.shape_current.get(s, []) if p not in out] + list(self.shape_pool.get(s, []))
        for i, nv in self.vars.items():
            for s, gpus in decode_layout(solver, nv):
                out[self._take(queue[s], i, gpus)] = (i, gpus)
        return out

    def _take(self, queue: list[int], node: int, gpus: tuple[int, ...]) -> int:
        """The pod for one slot: KEEP takes moved pods first (they must land), then pending ones;
        FREE takes a pod that already sits on exactly this slot if there is one."""
        if self.mode is Mode.FREE:
            for k, p in enumerate(queue):
                if self.current.get(p) == (node, gpus):
                    return queue.pop(k)
        return queue.pop(0)
