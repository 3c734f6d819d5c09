"""One node's packing constraints as CP-SAT terms (shared by the window and pricing models).

For node i with G GPUs, shapes s with upper bounds ub_s:

    n[s]     pods of shape s on the node                       (integer, 0..ub_s)
    z[g,u]   single-GPU pods of milli class u on GPU g          (integer)
    w[g]     GPU g held whole by a multi-GPU pod                (bool)

    sum_g z[g,u] = sum_{s single, u_s = u} n[s]
    sum_{s multi} k_s n[s] = sum_g w[g]
    sum_u u z[g,u] + 1000 w[g] + extra_g <= 1000                 for every GPU g
    sum_s c_s n[s] + extra_cpu <= C,   sum_s m_s n[s] + extra_mem <= M
    load[g] >= load[g+1]                  (optional symmetry breaking between GPUs)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from ome.domain import MILLI, Node

from ._shapes import PodShape


@dataclass(slots=True)
class NodeVars:
    n: dict[PodShape, cp_model.IntVar]
    z: dict[tuple[int, int], cp_model.IntVar]  # (gpu, milli class)
    w: dict[int, cp_model.IntVar]  # gpu -> held by a multi-GPU pod
    milli: cp_model.LinearExprT  # GPU milli of the new pods
    cpu: cp_model.LinearExprT  # CPU of the new pods plus extra_cpu


def per_node_limit(shape: PodShape, node: Node) -> int:
    """Most pods of `shape` one empty node can hold (by each resource alone)."""
    limit = 1 << 30
    if shape.num_gpu:
        limit = node.gpu_count // shape.num_gpu if shape.is_multi else node.gpu_count * (MILLI // shape.gpu_milli)
    if shape.cpu_milli:
        limit = min(limit, node.cpu_milli // shape.cpu_milli)
    if shape.memory_mib:
        limit = min(limit, node.memory_mib // shape.memory_mib)
    return limit


def add_node_packing(
    model: cp_model.CpModel,
    node: Node,
    ubs: Mapping[PodShape, int],
    *,
    extra_cpu: cp_model.LinearExprT = 0,
    extra_mem: cp_model.LinearExprT = 0,
    extra_gpu: Sequence[Sequence[cp_model.LinearExprT]] | None = None,
    symmetry: bool = False,
) -> NodeVars:
    """Add the constraints above for `node`; shapes with ub 0 or that cannot run there get no variable."""
    n: dict[PodShape, cp_model.IntVar] = {}
    for s, ub in sorted(ubs.items()):
        ub = min(ub, per_node_limit(s, node))
        if ub > 0:
            n[s] = model.new_int_var(0, ub, f"n[{node.name},{s.cpu_milli}c,{s.memory_mib}Mi,{s.num_gpu}x{s.gpu_milli}]")
    model.add(sum(s.cpu_milli * v for s, v in n.items()) + extra_cpu <= node.cpu_milli)
    model.add(sum(s.memory_mib * v for s, v in n.items()) + extra_mem <= node.memory_mib)
    z: dict[tuple[int, int], cp_model.IntVar] = {}
    w: dict[int, cp_model.IntVar] = {}
    classes: dict[int, list[cp_model.IntVar]] = defaultdict(list)
    for s, v in n.items():
        if s.is_single:
            classes[s.gpu_milli].append(v)
    multi = [(s, v) for s, v in n.items() if s.is_multi]
    loads: list[cp_model.LinearExprT] = []
    for g in range(node.gpu_count):
        load: list[cp_model.LinearExprT] = []
        for u in sorted(classes):
            z[g, u] = model.new_int_var(0, MILLI // u, f"z[{node.name},{g},{u}]")
            load.append(u * z[g, u])
        if multi:
            w[g] = model.new_bool_var(f"w[{node.name},{g}]")
            load.append(MILLI * w[g])
        if extra_gpu is not None:
            load += list(extra_gpu[g])
        total = sum(load)
        if load:
            model.add(total <= MILLI)
        loads.append(total)
    for u, vs in classes.items():
        model.add(sum(z[g, u] for g in range(node.gpu_count)) == sum(vs))
    if multi:
        model.add(sum(s.num_gpu * v for s, v in multi) == sum(w.values()))
    if symmetry:
        for g in range(node.gpu_count - 1):
            model.add(loads[g] >= loads[g + 1])
    milli = sum(s.demand_milli * v for s, v in n.items() if s.num_gpu)
    cpu = sum(s.cpu_milli * v for s, v in n.items()) + extra_cpu
    return NodeVars(n, z, w, milli, cpu)


def decode_layout(solver: cp_model.CpSolver, nv: NodeVars) -> list[tuple[PodShape, tuple[int, ...]]]:
    """One (shape, GPU indices) per pod the solution puts on the node."""
    slots: dict[int, list[int]] = defaultdict(list)
    for (g, u), var in sorted(nv.z.items()):
        slots[u] += [g] * int(solver.value(var))
    whole = [g for g, var in sorted(nv.w.items()) if solver.value(var)]
    out: list[tuple[PodShape, tuple[int, ...]]] = []
    for s, var in sorted(nv.n.items()):
        for _ in range(int(solver.value(var))):
            if s.is_multi:
                out.append((s, tuple(whole[: s.num_gpu])))
                del whole[: s.num_gpu]
            elif s.is_single:
                out.append((s, (slots[s.gpu_milli].pop(0),)))
            else:
                out.append((s, ()))
    return out


def hint_layout(model: cp_model.CpModel, nv: NodeVars, layout: Sequence[tuple[PodShape, tuple[int, ...]]]) -> None:
    """Hint a known packing of this node (GPU indices as given; call only without symmetry breaking
    or with a layout whose GPU loads are non-increasing)."""
    counts: dict[PodShape, int] = defaultdict(int)
    per_gpu: dict[tuple[int, int], int] = defaultdict(int)
    held: set[int] = set()
    for s, gpus in layout:
        counts[s] += 1
        if s.is_single:
            per_gpu[gpus[0], s.gpu_milli] += 1
        elif s.is_multi:
            held.update(gpus)
    for s, v in nv.n.items():
        model.add_hint(v, counts.get(s, 0))
    for key, v in nv.z.items():
        model.add_hint(v, per_gpu.get(key, 0))
    for g, v in nv.w.items():
        model.add_hint(v, int(g in held))


def sorted_layout(layout: Sequence[tuple[PodShape, tuple[int, ...]]], gpu_count: int) -> list[tuple[PodShape, tuple[int, ...]]]:
    """Renumber GPUs so multi-GPU-held ones come first, then single-GPU loads in decreasing order."""
    load = [0] * gpu_count
    held = [False] * gpu_count
    for s, gpus in layout:
        for g in gpus:
            if s.is_multi:
                held[g] = True
            load[g] += s.gpu_milli
    order = sorted(range(gpu_count), key=lambda g: (not held[g], -load[g], g))
    new_index = {old: new for new, old in enumerate(order)}
    return [(s, tuple(sorted(new_index[g] for g in gpus))) for s, gpus in layout]
