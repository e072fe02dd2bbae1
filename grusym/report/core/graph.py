"""The computational graph of a cell, generated from its declaration: one step, and T steps unrolled.

Contract: :func:`one_step` returns a :class:`~grusym.report.render.blocks.Diagram` whose nodes are the
values of the declared steps (labelled with their equation numbers), the inputs ``X_t`` and ``h_{t-1}``,
the head's ``logits`` and the loss, and whose edges carry the local derivative of the target with respect
to the source: ``W^T`` for a matrix product (as section 3 uses it), the SymPy derivative of the step for an
elementwise one. :func:`unrolled` draws T steps as one node each, with the states between them. The layout is
computed here, top to bottom: a node's depth is its longest path from the inputs, so no layout tool is
needed; the renderers draw it as Mermaid (GitHub) or TikZ.
"""

from __future__ import annotations

import re

import sympy as sp

from ...symbolic.cell import INPUT, OUTPUT, Cell, prev_name
from ...symbolic.derive import Derivation
from ..render import latex
from ..render.blocks import Diagram, Edge, Math, Node

__all__ = ["at_step", "one_step", "unrolled"]

DX, DY = 4.0, 2.1  # cm between lanes and between depths
DX_STEP = 1.9  # cm between the columns of the unrolled graph


def _plain(expr: sp.Expr) -> str:
    """A local derivative as short plain text for Mermaid: ``z·(1 - z)``, ``1 - h_tilde²``."""
    text = str(expr).replace("**2", "²").replace("*", "·")
    return re.sub(r"\s+", " ", text)


def _depths(cell: Cell) -> dict[str, int]:
    depth = {INPUT: 0} | {prev_name(k): 0 for k in cell.states} | {k: 0 for k in cell.inputs}
    for s in cell.steps:  # a step reading parameters only (sigmoid(w)) sits just below the inputs
        depth[s.name] = 1 + max((depth[u] for u in s.inputs), default=0)
    return depth


def at_step(t: int, tex: str) -> str:
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
    at = (lambda tex: at_step(t, tex)) if t else (lambda tex: tex)

    def node(value: str, tex: str, text: str) -> Node:
        lane = lanes.get(depth[value], 0)
        lanes[depth[value]] = lane + 1
        return Node(value + sfx, at(tex), text, x0 + DX * lane, -DY * depth[value], group)

    nodes = [node(INPUT, latex.name(INPUT), f"X_{t}" if t else "X_t")]
    if not t:
        nodes += [node(prev_name(k), latex.name(prev_name(k)), f"{k}_(t-1)") for k in cell.states]
    nodes += [node(k, latex.name(k), f"{k}_{t}" if t else f"{k}_t") for k in cell.inputs]  # c.input
    edges = []
    for s in cell.steps:
        nodes.append(node(s.name, rf"{latex.name(s.name)}\ ({num[s.name]})", f"({num[s.name]}) {s.name}"))
        if s.kind == "linear":
            for term in s.terms:
                w = latex.name(term.weight, params=params)
                tex, text = (f"{w}^{{\\top}}", f"{term.weight}ᵀ") if labels else ("", "")
                edges.append(Edge(term.left + sfx, s.name + sfx, tex, text))
        elif s.kind in ("mean", "sum"):  # a row's mean (sum): the matrix 11^T (/ d_h), symmetric
            tex = latex.name(f"<{s.kind}>") if labels else ""
            text = ("11ᵀ/h" if s.kind == "mean" else "11ᵀ") if labels else ""
            edges.append(Edge(s.inputs[0] + sfx, s.name + sfx, tex, text))
        else:
            for u in s.inputs:
                if u in cell.inputs:  # a per-step input: held fixed, no derivative to carry
                    edges.append(Edge(u + sfx, s.name + sfx, "", ""))
                    continue
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
        (
            "One step: the values (equation numbers in brackets); each edge carries the local derivative of "
            "its target with respect to its source.",
        ),
    )


def unrolled(cell: Cell, num: dict[str, int], T: int = 3) -> Diagram:
    """T steps in a row, each one node: state k_{t-1} and X_t enter step t, which gives k_t; h_t feeds
    logits_t, and every logits_t feeds L. The one-step graph shows what is inside a step."""
    last = num[OUTPUT]
    states = list(cell.states)
    nodes: list[Node] = [Node(f"{k}0", f"{k}_{{0}}", f"{k}_0", 0.0, -1.1 * i) for i, k in enumerate(states)]
    edges: list[Edge] = []
    for t in range(1, T + 1):
        x = 2 * t * DX_STEP
        nodes.append(Node(f"X{t}", f"X_{{{t}}}", f"X_{t}", x - DX_STEP, 1.6))
        nodes.append(
            Node(
                f"step{t}",
                rf"\text{{step }} {t}: (1)\text{{--}}({last})",
                f"step {t}: (1)-({last})",
                x - DX_STEP,
                0.0,
            )
        )
        edges.append(Edge(f"X{t}", f"step{t}"))
        for i, k in enumerate(states):
            nodes.append(Node(f"{k}{t}", f"{k}_{{{t}}}", f"{k}_{t}", x, -1.1 * i))
            edges += [Edge(f"{k}{t - 1}", f"step{t}"), Edge(f"step{t}", f"{k}{t}")]
        nodes.append(
            Node(f"logits{t}", rf"\mathrm{{logits}}_{{{t}}}", f"logits_{t}", x, -1.1 * len(states) - 0.6)
        )
        edges.append(Edge(f"h{t}", f"logits{t}"))
    nodes.append(
        Node("loss", rf"L\ ({num['loss']})", f"({num['loss']}) L", T * DX_STEP, -1.1 * len(states) - 2.0)
    )
    edges += [Edge(f"logits{t}", "loss") for t in range(1, T + 1)]
    return Diagram(
        tuple(nodes),
        tuple(edges),
        (
            f"{T} steps unrolled, each step one node (the one-step graph shows its inside): ",
            Math("h_{t}"),
            " leaves step t, feeds its logits and enters step t+1, and BPTT walks these edges backwards "
            "from L.",
        ),
        "LR",
    )
