"""The computational graph of a cell, generated from its declaration: one step, and T steps unrolled.

Contract: :func:`one_step` and :func:`unrolled` return a :class:`~grusym.report.blocks.Diagram` whose nodes
are the values of the declared steps (labelled with their equation numbers), the inputs ``X_t`` and
``h_{t-1}``, the head's ``logits`` and the loss, and whose edges carry the local derivative of the target
with respect to the source: ``W^T`` for a matrix product (as section 3 uses it), the SymPy derivative of the
step for an elementwise one (the unrolled graph leaves the labels to the one-step graph). The layout is
computed here, top to bottom: a node's depth is its longest path from the inputs, so no layout tool is
needed; the renderers draw it as Mermaid (GitHub) or TikZ.
"""

from __future__ import annotations

import re

import sympy as sp

from ...symbolic.cell import INPUT, OUTPUT, Cell, prev_name
from ...symbolic.derive import Derivation
from ..render import latex
from ..render.blocks import Diagram, Edge, Node

__all__ = ["one_step", "unrolled"]

DX, DY = 4.0, 2.1  # cm between lanes and between depths


def _plain(expr: sp.Expr) -> str:
    """A local derivative as short plain text for Mermaid: ``z·(1 - z)``, ``1 - h_tilde²``."""
    text = str(expr).replace("**2", "²").replace("*", "·")
    return re.sub(r"\s+", " ", text)


def _depths(cell: Cell) -> dict[str, int]:
    depth = {INPUT: 0} | {prev_name(k): 0 for k in cell.states}
    for s in cell.steps:  # a step reading parameters only (sigmoid(w)) sits just below the inputs
        depth[s.name] = 1 + max((depth[u] for u in s.inputs), default=0)
    return depth


def _at(t: int, tex: str) -> str:
    """``tex`` at time step t instead of t (``h_{t-1}`` -> ``h_{1}`` at t = 2)."""
    return tex.replace("_{t-1}", f"_{{{t - 1}}}").replace(",t}", f",{t}}}").replace("_{t}", f"_{{{t}}}")


def _step(cell: Cell, der: Derivation, num: dict[str, int], t: int, x0: float, labels: bool):
    """Nodes (keys suffixed with t when t > 0), edges and the depth of the step's last value."""
    params = frozenset(cell.params)
    local = {(ld.step, ld.wrt): ld.used for ld in der.local}
    depth = _depths(cell)
    lanes: dict[int, int] = {}
    sfx = f"_{t}" if t else ""
    group = f"t = {t}" if t else ""
    at = (lambda tex: _at(t, tex)) if t else (lambda tex: tex)

    def node(value: str, tex: str, text: str) -> Node:
        lane = lanes.get(depth[value], 0)
        lanes[depth[value]] = lane + 1
        return Node(value + sfx, at(tex), text, x0 + DX * lane, -DY * depth[value], group)

    nodes = [node(INPUT, latex.name(INPUT), f"X_{t}" if t else "X_t")]
    if not t:
        nodes += [node(prev_name(k), latex.name(prev_name(k)), f"{k}_(t-1)") for k in cell.states]
    edges = []
    for s in cell.steps:
        nodes.append(node(s.name, rf"{latex.name(s.name)}\ ({num[s.name]})", f"({num[s.name]}) {s.name}"))
        if s.kind == "linear":
            for term in s.terms:
                w = latex.name(term.weight, params=params)
                tex, text = (f"{w}^{{\\top}}", f"{term.weight}ᵀ") if labels else ("", "")
                edges.append(Edge(term.left + sfx, s.name + sfx, tex, text))
        else:
            for u in s.inputs:
                d = local[(s.name, u)]
                tex, text = (latex.elementwise(d, params=params), _plain(d)) if labels else ("", "")
                edges.append(Edge(u + sfx, s.name + sfx, tex, text))
    return nodes, edges, depth[OUTPUT]


def one_step(cell: Cell, der: Derivation, num: dict[str, int]) -> Diagram:
    """The graph of one step t, with the head and the loss of that step."""
    nodes, edges, last = _step(cell, der, num, 0, 0.0, True)
    nodes.append(
        Node(
            "logits",
            rf"\mathrm{{logits}}_{{t}}\ ({num['logits']})",
            f"({num['logits']}) logits",
            0.0,
            -DY * (last + 1),
        )
    )
    nodes.append(Node("loss", rf"L\ ({num['loss']})", f"({num['loss']}) L", 0.0, -DY * (last + 2)))
    edges.append(Edge("h", "logits", r"W_{hq}^{\top}", "W_hqᵀ"))
    edges.append(Edge("logits", "loss", r"\delta \mathrm{logits}_{t}", "(softmax - onehot) / (T n)"))
    return Diagram(
        tuple(nodes),
        tuple(edges),
        "One step: the values (equation numbers in brackets); each edge carries the local derivative of its "
        "target with respect to its source.",
    )


def unrolled(cell: Cell, der: Derivation, num: dict[str, int], T: int = 3) -> Diagram:
    """T steps side by side: h_t of step t is the h_{t-1} of step t+1; every logits_t feeds L."""
    lanes = 1 + max(
        sum(1 for v, k in _depths(cell).items() if k == depth) for depth in set(_depths(cell).values())
    )
    nodes: list[Node] = [
        Node(f"{k}0", f"{k}_{{0}}", f"{k}_0", -DX, -DY * i + 0.0) for i, k in enumerate(cell.states)
    ]
    edges: list[Edge] = []
    prev, last = {k: f"{k}0" for k in cell.states}, 0
    for t in range(1, T + 1):
        x0 = (t - 1) * lanes * DX
        step_nodes, step_edges, last = _step(cell, der, num, t, x0, False)
        nodes += step_nodes
        into = {f"{prev_name(k)}_{t}": prev[k] for k in cell.states}  # state k of step t-1 feeds step t
        edges += [Edge(into.get(e.source, e.source), e.target) for e in step_edges]
        nodes.append(
            Node(
                f"logits_{t}", rf"\mathrm{{logits}}_{{{t}}}", f"logits_{t}", x0, -DY * (last + 1), f"t = {t}"
            )
        )
        edges.append(Edge(f"h_{t}", f"logits_{t}"))
        prev = {k: f"{k}_{t}" for k in cell.states}
    mid = (T - 1) * lanes * DX / 2
    nodes.append(Node("loss", rf"L\ ({num['loss']})", f"({num['loss']}) L", mid, -DY * (last + 2.5)))
    edges += [Edge(f"logits_{t}", "loss") for t in range(1, T + 1)]
    return Diagram(
        tuple(nodes),
        tuple(edges),
        f"{T} steps unrolled (edge labels as in the one-step graph): h_t of step t is the h_(t-1) of step "
        "t+1, and BPTT walks these edges backwards from L.",
    )
