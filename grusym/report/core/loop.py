"""Section 5 of a report: the backward pass as a plain loop, one line per equation, before the optimised code.

Contract: :func:`reference_source` writes, from the derivation's own contributions, a short Python function
``reference_backward(p, v, dlogits)`` that runs section 3's lines for t = T, ..., 1 (each line cites its
equation number), carries the messages (B.2), and sums the parameter gradients by the pattern (B.4) after
the loop. It uses no buffer, fusion or private part of the generated module; the test suite executes the
text and compares its gradients with the generated ``loss_and_grads``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

from ...symbolic.cell import INPUT, OUTPUT, prev_name
from ...symbolic.derive import Contribution, adjoint_name
from ...symbolic.primitives import _Primitive
from ..context import Context
from ..render.blocks import Block, Code, CodeBlock, Heading, Math, Para

__all__ = ["NAMESPACE", "loop_section", "reference_source"]

# what the listing calls besides numpy: the primitives by their names in the cell language
NAMESPACE = "import numpy as np\nfrom grusym.runtime import sigmoid, relu, softplus, hard_sigmoid\n"


class _Py(StrPrinter):
    """Plain Python for a scalar SymPy form: primitives by their cell-language names, numpy elsewhere."""

    def _print_Function(self, expr: sp.Function) -> str:
        args = ", ".join(self._print(a) for a in expr.args)
        if isinstance(expr, _Primitive):
            label = expr.label
            if label == "identity":
                return f"({args})"
            return f"np.{label}({args})" if label in ("tanh", "exp") else f"{label}({args})"
        return f"np.{type(expr).__name__.lower()}({args})"  # sign, exp, ...


def _py(expr: sp.Expr) -> str:
    return str(_Py({"order": "none"}).doprint(expr))


def _var(c: Context, value: str) -> str:
    """The adjoint variable of a value in the listing (``dh_prev`` is the message to the previous state)."""
    return adjoint_name(value)


def _line(c: Context, x: Contribution, assigned: set[str]) -> str | None:
    """One contribution as a statement, or None for what the listing leaves to (B.4) or skips (X)."""
    if x.kind in ("matmul_right", "bias"):
        return None  # summed over t after the loop, by (B.4)
    if x.kind == "vector":
        return f'grads["{x.target}"] += ({_py(x.expr)}).sum(axis=0)'
    if x.target == INPUT:
        return None  # token ids: the one-hot rows have no gradient
    src = _var(c, x.source)
    if x.kind in ("mean", "sum"):  # each row's mean (sum) of the adjoint, in every column (reduce.RULES)
        expr = f"{src}.{x.kind}(axis=1, keepdims=True).repeat({src}.shape[1], axis=1)"
    else:
        expr = f'{src} @ p["{x.weight}"].T' if x.kind == "matmul_left" else _py(x.expr)
    target = _var(c, x.target)
    first = x.target not in assigned
    assigned.add(x.target)
    if not first:
        return f"{target} += {expr}"
    if x.target in c.cell.states:
        nxt = f"{target}_next" if x.target != OUTPUT else f'dlogits[t] @ p["W_hq"].T + {target}_next'
        return f"{target} = {nxt} + {expr}"
    return f"{target} = {expr}"


def _wrapped(opening: str, items: list[str], closing: str, width: int = 100) -> list[str]:
    """``opening item, item, ... closing`` in lines of at most ``width`` characters."""
    if len(items) == 1:
        items = [items[0] + ","]  # a tuple of one
    one = opening + ", ".join(items) + closing
    if len(one) <= width:
        return [one]
    lines, current = [opening.rstrip()], "       "
    for item in items:
        if len(current) + len(item) + 2 > width:
            lines.append(current.rstrip())
            current = "       "
        current += f" {item},"
    lines.append(current.rstrip())
    lines.append("    " + closing.lstrip())
    return lines


def reference_source(c: Context) -> str:
    """The text of ``reference_backward`` for the cell of ``c`` (see the module docstring)."""
    steps = c.cell.steps
    states = list(c.cell.states)
    num = c.num
    linear = [s.name for s in steps if s.kind == "linear"]
    values = [prev_name(k) for k in states] + [s.name for s in steps]
    used = sorted(
        {
            str(sym)
            for x in c.der.contributions
            if x.kind in ("elementwise", "vector")
            for sym in x.expr.free_symbols
        }
        - {adjoint_name(v) for v in values}
        - set(c.cell.params)
    )
    # X: a cell that reads it elementwise (SRU); per-step inputs (c.input) are values read like steps
    used = [v for v in [INPUT, *values, *c.cell.inputs] if v in used]
    vectors = [k for k, p in c.cell.params.items() if p.kind == "vector"]
    lines = [
        "def reference_backward(p, v, dlogits):",
        '    """(B.1)-(B.5) as a loop. p: the parameters; v[k][t]: value k at step t = 1..T (X as one-hot '
        "rows;",
        f"    {', '.join(f'v[{prev_name(k)!r}][1] = {k}_0' for k in states)}); "
        f"dlogits[t]: ({num['loss']}.1).",
        '    Returns the gradients of the parameters and of the initial states."""',
        "    T = len(dlogits) - 1",
        "    grads = {k: np.zeros_like(w) for k, w in p.items()}",
        "    da = [None] * (T + 1)  # da[t]: the adjoints of step t's linear steps, for (B.4)",
        "    "
        + ", ".join(f"d{k}_next" for k in states)
        + " = "
        + ", ".join(f'np.zeros_like(v["{prev_name(k)}"][1])' for k in states)
        + "  # (B.2) at t = T: 0",
        "    for t in range(T, 0, -1):",
    ]
    if used or vectors:
        names = [*used, *vectors]
        reads = [f'v["{u}"][t]' for u in used] + [f'p["{w}"]' for w in vectors]
        lines.append(f"        {', '.join(names)} = {', '.join(reads)}")
    assigned: set[str] = set()
    if OUTPUT not in {x.target for x in c.der.contributions}:  # h is read by no step inside its step
        lines.append(f'        dh = dlogits[t] @ p["W_hq"].T + dh_next  # ({num["logits"]}.1), (B.1)')
        assigned.add(OUTPUT)
    for s in reversed(steps):
        for k, x in enumerate(c.der.out_of(s.name), start=1):
            stmt = _line(c, x, assigned)
            if stmt is not None:
                lines.append(f"        {stmt}  # ({num[s.name]}.{k})")
    lines.append(
        "        da[t] = {"
        + ", ".join(f'"{a}": d{a}' for a in [*linear, "logits"]).replace(
            '"logits": dlogits', '"logits": dlogits[t]'
        )
        + "}"
    )
    nexts = [
        (f"d{k}_next", f"d{prev_name(k)}" if prev_name(k) in assigned else f"0 * d{k}_next") for k in states
    ]
    lines.append(f"        {', '.join(a for a, _ in nexts)} = {', '.join(b for _, b in nexts)}  # (B.2)")
    weights, biases = [], []
    for x in [*c.der.contributions, *c.head_der.contributions]:
        if x.kind == "matmul_right":
            left = "h" if x.left == "H" else str(x.left)
            weights.append(f'("{x.target}", "{left}", "{x.source}")')
        elif x.kind == "bias":
            biases.append(f'("{x.target}", "{x.source}")')
    lines += [
        *_wrapped("    for W, u, a in (", weights, "):  # (B.4)"),
        "        grads[W] = sum(v[u][t].T @ da[t][a] for t in range(1, T + 1))",
    ]
    if biases:
        lines += [
            *_wrapped("    for b, a in (", biases, "):  # (B.4)"),
            "        grads[b] = sum(da[t][a].sum(axis=0) for t in range(1, T + 1))",
        ]
    lines.append(
        "    return grads, "
        + ", ".join(f"d{k}_next" for k in states)
        + "  # the gradients of "
        + ", ".join(f"{k}_0" for k in states)
        + " (B.3)"
    )
    return "\n".join(lines)


def loop_section(c: Context) -> list[Block]:
    text = reference_source(c)
    return [
        Heading(2, "5. The backward pass as a plain loop", "loop"),
        Para(
            (
                "Sections 3 and 4 as code, one line per equation (its number in the comment), written for "
                "reading: ",
                Code("v"),
                " holds the forward values, ",
                Code("dv"),
                " is ",
                Math(r"\delta v"),
                ", ",
                Code("dh_next"),
                " the message of (B.2). The generated module (Appendix D) computes the same with the "
                "products of all gates fused, reused buffers and (B.4) as one matrix product over all T n "
                f"rows; {len(text.splitlines())} lines here. The test suite runs this listing and compares "
                "its gradients with the module's.",
            )
        ),
        CodeBlock(text, "python"),
    ]
