"""The content of every report, built from the objects that generate the code.

Contract: :func:`variant_document` turns one variant into a :class:`~grusym.report.blocks.Document` read off
``VARIANTS[name].cell()``, ``derive(cell)``, ``verify_rules()``, ``LINEAR_RULES``, ``numbered(cell)``,
``module_source(name)``, the closed-form Jacobian and the figure data; no equation is typed here except the
loss (a runtime primitive whose rule the tests prove). The sections are fixed: (1) forward equations,
shapes and parameters, (2) local derivatives, (3) the adjoint of one step, (4) BPTT and the Jacobian,
(5) the generated code, (6) the measured verification, (7) figures. :func:`index_document` compares all
variants. Everything but the :class:`~grusym.report.blocks.Measured` block is a pure function of the code.
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp
from sympy import MatrixSymbol

from ..symbolic.cell import INPUT, STATE, Cell, Step, d, h, n, q
from ..symbolic.codegen import module_source, numbered
from ..symbolic.derive import LINEAR_RULES, Contribution, Derivation, adjoint_name, derive, derive_head
from ..symbolic.primitives import PRIMITIVES, verify_rules
from ..symbolic.variants import HEAD_PARAMS, VARIANTS
from . import codemap, latex
from .blocks import (
    Block,
    Break,
    Bullets,
    Code,
    CodeBlock,
    Document,
    Equation,
    Figure,
    Heading,
    Link,
    Math,
    Measured,
    Para,
    Table,
    Text,
)
from .jacobian import SIGN, Jacobian, jacobian, primitive_outputs, value_ranges
from .verify import Measurement

__all__ = ["REGENERATE", "SIZES", "index_document", "variant_document"]

REGENERATE = "grusym report --all"
# example sizes: the toy of seeds 000/001 and the d2l char LM of seed 003
SIZES = {"toy": {n: 2, d: 4, h: 2, q: 4}, "d2l": {n: 32, d: 28, h: 256, q: 28}}
LOSS_TEX = (
    r"L = \frac{1}{T n} \sum_{t=1}^{T} \sum_{i=1}^{n} \left( \log \sum_{k=1}^{q} "
    r"\exp\left(\mathrm{logits}_{t,ik}\right) - \mathrm{logits}_{t,i y_{t,i}} \right)"
)
LOSS_RULE_TEX = (
    r"\delta \mathrm{logits}_{t} = \frac{1}{T n} \left( "
    r"\operatorname{softmax}\left(\mathrm{logits}_{t}\right) - "
    r"\operatorname{onehot}\left(Y_{t}\right) \right)"
)
CODE_DIR = "../../grusym/generated"  # from derivations/<variant>/
RELATION_ATOL = 1e-12


def _m(tex: str) -> Math:
    return Math(tex)


class _Context:
    """Everything one report reads, computed once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.variant = VARIANTS[name]
        self.cell: Cell = self.variant.cell()
        self.der: Derivation = derive(self.cell)
        self.head_step, self.head_der = derive_head()
        self.num = numbered(self.cell)
        self.params = frozenset(self.cell.params) | frozenset(HEAD_PARAMS)
        values = [s.name for s in self.cell.steps] + [INPUT, STATE, "H", "logits"]
        self.adjoints = frozenset(adjoint_name(v) for v in values)
        self.jac: Jacobian = jacobian(self.cell, self.der)
        self.source = module_source(name)
        self.primitives = primitive_outputs(self.cell)

    def eq(self, step: Step) -> str:
        return latex.step_equation(step, self.params)


# ---- (1) forward


def _forward(c: _Context) -> list[Block]:
    v = c.variant
    blocks: list[Block] = [
        Heading(2, "1. Forward equations", "forward"),
        Para(
            (
                "One step of the cell, applied for ",
                _m("t = 1, \\dots, T"),
                " from the given ",
                _m("h_{0}"),
                ". Rows are the n examples of the batch; ",
                _m(r"\odot"),
                " is the elementwise product and ",
                _m(r"\sigma"),
                " the logistic sigmoid, both applied elementwise; a bias row is added to every row. "
                "Reset gate: ",
                v.reset,
                ". Update: ",
                Code(v.update),
                ". The numbers are the ones the generated code cites in its comments.",
            )
        ),
    ]
    for s in c.cell.steps:
        blocks.append(Equation((c.eq(s),), str(c.num[s.name])))
    blocks.append(Equation((latex.step_equation(c.head_step, c.params),), str(c.num["logits"])))
    blocks.append(Equation((LOSS_TEX,), str(c.num["loss"])))
    blocks.append(
        Para(
            (
                "The head ",
                f"({c.num['logits']})",
                " and the loss ",
                f"({c.num['loss']})",
                " are shared by every variant: the mean softmax cross-entropy over all T n positions, ",
                _m("y_{t,i}"),
                " being the target id of example i at step t.",
            )
        )
    )
    rows: list[tuple[Text, ...]] = [
        ((_m("X_{t}"),), ("(n, d)",), ("input of step t; token ids (n,) stand for one-hot rows of width d",)),
        ((_m("h_{t-1}"),), ("(n, h)",), ("state entering step t",)),
    ]
    for s in c.cell.steps:
        what = "new state" if s.name == "h" else ("pre-activation" if s.kind == "linear" else "intermediate")
        if s.name in c.primitives:
            what = "gate" if c.primitives[s.name].__name__ == "Sigmoid" else f"{what} (tanh output)"
        rows.append(
            ((_m(latex.name(s.name)),), ("(n, h)",), (f"({c.num[s.name]}) ", what, " ", Code(s.name)))
        )
    rows.append(
        ((_m(latex.name("logits")),), ("(n, q)",), (f"({c.num['logits']}) scores of the next token",))
    )
    rows.append(((_m("Y_{t}"),), ("(n,)",), ("target ids",)))
    blocks += [Table(("value", "shape", "what"), tuple(rows))]
    dims = ((n, "batch size"), (d, "input width (vocabulary size)"), (h, "hidden size"), (q, "output width"))
    blocks.append(
        Table(
            ("dimension", "meaning", "toy (seeds 000/001)", "d2l char LM (seed 003)"),
            tuple(
                ((_m(str(sym)),), (meaning,), (str(SIZES["toy"][sym]),), (str(SIZES["d2l"][sym]),))
                for sym, meaning in dims
            ),
        )
    )
    blocks.append(_parameter_table(c))
    return blocks


def _param_uses(cell: Cell, head_step: Step, num: dict[str, int]) -> dict[str, list[int]]:
    uses: dict[str, list[int]] = {}
    for s in [*cell.steps, head_step]:
        for p in [t.weight for t in s.terms] + ([s.bias] if s.bias else []):
            uses.setdefault(p, []).append(num[s.name])
    return uses


def _count(shape: tuple[sp.Symbol, ...], size: dict[sp.Symbol, int]) -> int:
    return math.prod(size[s] for s in shape)


def _shapes(cell: Cell) -> dict[str, tuple[sp.Symbol, ...]]:
    out = {p.name: ((p.cols,) if p.kind == "bias" else (p.rows, p.cols)) for p in cell.params.values()}
    return out | {"W_hq": (h, q), "b_q": (q,)}


def _parameter_table(c: _Context) -> Table:
    uses = _param_uses(c.cell, c.head_step, c.num)
    rows: list[tuple[tuple[Any, ...], ...]] = []
    shapes = _shapes(c.cell)
    for p, shape in shapes.items():
        rows.append(
            (
                (Code(p),),
                (_m(latex.name(p, params=c.params)),),
                ("(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")"),),
                (", ".join(f"({k})" for k in uses[p]),),
                (str(_count(shape, SIZES["toy"])),),
                (str(_count(shape, SIZES["d2l"])),),
            )
        )
    total = parameter_count(c.cell)
    rows.append(
        (
            ("total",),
            (_m(sp.latex(total)),),
            ("",),
            ("",),
            (str(total.subs(SIZES["toy"])),),
            (str(total.subs(SIZES["d2l"])),),
        )
    )
    return Table(("parameter", "symbol", "shape", "used in", "toy", "d2l"), tuple(rows))


def parameter_count(cell: Cell) -> sp.Expr:
    """Number of scalars in the cell's and the head's parameters, in d, h, q."""
    return sp.expand(sum((sp.Mul(*s) for s in _shapes(cell).values()), sp.Integer(0)))


# ---- (2) local derivatives


def _local(c: _Context) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "2. Local derivatives", "local"),
        Heading(3, "The primitive rules"),
        Para(
            (
                "Each primitive is defined once by its closed form; SymPy differentiates the closed form and "
                "the generated code uses the rule in terms of the primitive's output ",
                _m("y"),
                ", so the backward pass reuses forward values. SymPy checks that the two agree:",
            )
        ),
    ]
    x = sp.Symbol("x", real=True)
    used = {getattr(fn, "label", "") for fn in c.primitives.values()} | {"sigmoid", "tanh"}  # always those
    for proof in (p for p in verify_rules() if p.name in used):
        closed = PRIMITIVES[proof.name](x).rewrite(sp.exp)
        fn = latex.scalar(PRIMITIVES[proof.name](x), plain=True)
        blocks.append(
            Equation(
                (
                    f"y = {fn} = {latex.scalar(closed, plain=True)}, \\qquad \\frac{{dy}}{{dx}} = "
                    f"{latex.scalar(proof.derived, plain=True)} = {latex.scalar(proof.rule, plain=True)}",
                )
            )
        )
        verdict = "the difference simplifies to 0" if proof.holds else "the difference does NOT simplify to 0"
        blocks.append(Para((Code(proof.name), f": {verdict}.")))
        if proof.convention:  # not differentiable everywhere: say what the rule does at the kinks
            blocks.append(Para((Code(proof.name), f" at its kinks: {proof.convention}.")))
    blocks += [
        Heading(3, "Elementwise steps"),
        Para(
            (
                "An elementwise step acts on each element independently, so its Jacobian is diagonal; the "
                "table lists the derivative of one element. SymPy differentiates the declared step; the code "
                "uses the same expression with the primitive's output substituted by its name.",
            )
        ),
    ]
    rows: list[tuple[tuple[Any, ...], ...]] = []
    by_step: dict[str, list[Any]] = {}
    for ld in c.der.local:
        by_step.setdefault(ld.step, []).append(ld)
    for s in c.cell.steps:
        for ld in sorted(by_step.get(s.name, []), key=lambda ld: s.inputs.index(ld.wrt)):
            partial = rf"\frac{{\partial {latex.name(s.name)}}}{{\partial {latex.name(ld.wrt)}}}"
            rows.append(
                (
                    (f"({c.num[s.name]})",),
                    (_m(partial),),
                    (_m(latex.scalar(ld.derived, params=c.params)),),
                    (_m(latex.scalar(ld.used, params=c.params)),),
                )
            )
    blocks.append(Table(("step", "derivative", "derived by SymPy", "used by the code"), tuple(rows)))
    blocks += [
        Heading(3, "Matrix products and biases"),
        Para(
            (
                "Linear steps use the rules of ",
                Code("LINEAR_RULES"),
                ", one line each (proved on explicit matrices by the tests):",
            )
        ),
    ]
    A, B = MatrixSymbol("A", n, d), MatrixSymbol("B", d, h)
    dY = MatrixSymbol("dY", n, h)
    forward = {"matmul_left": "Y = A B", "matmul_right": "Y = A B", "bias": r"Y = \mathbf{1} b"}
    target = {"matmul_left": r"\delta A", "matmul_right": r"\delta B", "bias": r"\delta b"}
    rows = []
    for rule, adjoint in LINEAR_RULES.items():
        expr = adjoint(dY) if rule == "bias" else adjoint(dY, A, B)
        rows.append(
            (
                (Code(rule),),
                (_m(forward[rule]),),
                (_m(f"{target[rule]} = {latex.matrix(expr, adjoints={'dY'}, plain=True)}"),),
            )
        )
    blocks.append(Table(("rule", "forward", "adjoint"), tuple(rows)))
    return blocks


# ---- (3) adjoint of one step


def _lhs(contrib: Contribution, c: _Context, assigned: set[str]) -> str:
    """``\\delta v =`` for a first contribution within the step, ``+=`` otherwise and for parameters."""
    target = latex.name(contrib.target, params=c.params)
    op = r"\mathrel{+}=" if contrib.target in assigned or contrib.target in c.params else "="
    assigned.add(contrib.target)
    return rf"\delta {target} {op}"


def _rhs(contrib: Contribution, c: _Context) -> str:
    if contrib.kind == "elementwise":
        return latex.elementwise(contrib.expr, params=c.params, adjoints=c.adjoints)
    return latex.matrix(contrib.expr, params=c.params, adjoints=c.adjoints)


def _adjoint(c: _Context) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "3. Adjoint equations of one step", "adjoint"),
        Para(
            (
                "Reverse mode writes ",
                _m(r"\delta v = \partial L / \partial v"),
                " for every value v (the code's ",
                Code("dv"),
                "). Given ",
                _m(r"\delta h_{t}"),
                ", the adjoint of step t visits the forward equations in reverse; equation (N.k) is the k-th "
                "contribution produced by the adjoint of (N), and the code's comment ",
                Code("# (N) grad of: ..."),
                " marks the block that computes it. A value read by several steps sums its contributions (",
                _m(r"\mathrel{+}="),
                "); parameter gradients accumulate over t (section 4).",
            )
        ),
        Para(("The head and the loss come first; they give every ", _m(r"h_{t}"), " its direct part:")),
        Equation((LOSS_RULE_TEX,), f"{c.num['loss']}.1"),
    ]
    assigned: set[str] = set()
    for k, contrib in enumerate(c.head_der.contributions, start=1):
        blocks.append(
            Equation((f"{_lhs(contrib, c, assigned)} {_rhs(contrib, c)}",), f"{c.num['logits']}.{k}")
        )
    assigned = set()
    for s in reversed(c.cell.steps):
        contribs = c.der.out_of(s.name)
        if not contribs:
            continue
        blocks.append(Para((f"Adjoint of ({c.num[s.name]}) ", _m(c.eq(s)), ":")))
        for k, contrib in enumerate(contribs, start=1):
            blocks.append(
                Equation((f"{_lhs(contrib, c, assigned)} {_rhs(contrib, c)}",), f"{c.num[s.name]}.{k}")
            )
    return blocks


# ---- (4) BPTT and the Jacobian


def _sum_over_t(contribs: list[Contribution], c: _Context) -> str:
    return " + ".join(rf"\sum_{{t=1}}^{{T}} {_rhs(k, c)}" for k in contribs)


def _bptt(c: _Context) -> list[Block]:
    into_state = c.der.into(STATE)
    parts = [_rhs(k, c) for k in into_state]
    logits_to_h = next(k for k in c.head_der.contributions if k.target == "H")
    blocks: list[Block] = [
        Heading(2, "4. Backpropagation through time", "bptt"),
        Para(
            (
                "Step t+1 sends ",
                _m(r"\delta h_{t}"),
                " the sum of section 3's contributions to its ",
                _m("h_{t-1}"),
                "; with the head's direct part this is the BPTT recurrence, run for t = T, ..., 1 with "
                "nothing arriving from beyond T (in the code: ",
                Code("dh = dH[t] + dh_prev"),
                "):",
            )
        ),
        Equation(
            (rf"\delta h_{{t}} = {_rhs(logits_to_h, c)}", "+ " + " + ".join(latex.shifted(p) for p in parts)),
            "B.1",
        ),
        Para(
            (
                "The second part is linear in ",
                _m(r"\delta h_{t+1}"),
                ": it equals ",
                _m(r"\delta h_{t+1} J_{t+1}"),
                " with the one-step Jacobian J below, so the code never forms J. After t = 1 the same sum "
                "is the gradient of the initial state, ",
                Code('grads["h0"]'),
                ":",
            )
        ),
        Equation((r"\delta h_{0} = \delta h_{1} J_{1}",), "B.2"),
        Para(
            (
                "Every parameter is shared by all steps, so its gradient is the sum over t of its one-step "
                "contributions (the code computes each sum as one matrix product over all T n rows):",
            )
        ),
    ]
    k = 3
    for p in [*c.cell.params, *HEAD_PARAMS]:
        contribs = c.der.into(p) or [x for x in c.head_der.contributions if x.target == p]
        blocks.append(
            Equation((rf"\delta {latex.name(p, params=c.params)} = {_sum_over_t(contribs, c)}",), f"B.{k}")
        )
        k += 1
    x_parts = [_rhs(x, c) for x in c.der.into(INPUT)]
    blocks.append(Para(("For float inputs the code also returns ", Code('grads["X"]'), ", one per step:")))
    blocks.append(Equation((rf"\delta X_{{t}} = {x_parts[0]}", *("+ " + p for p in x_parts[1:])), f"B.{k}"))
    blocks += _jacobian(c)
    return blocks


def _weights_norm(weights: tuple[str, ...], c: _Context) -> str:
    return " ".join(rf"\lVert {latex.name(w, params=c.params)} \rVert_{{2}}" for w in weights)


def _bound_tex(c: _Context) -> str:
    parts = []
    for coef, free, weights in c.jac.bound():
        factors = [] if coef == 1 and (free or weights) else [latex.scalar(coef, plain=True)]
        factors += [rf"\lVert {latex.name(v)} \rVert_{{\infty}}" if v.isidentifier() else v for v in free]
        if weights:
            factors.append(_weights_norm(weights, c))
        parts.append(" ".join(factors))
    return " + ".join(parts)


def _init_point(c: _Context) -> dict[sp.Symbol, sp.Expr]:
    """Every value at zero weights and biases with h_0 = 0: gates 1/2, everything else 0."""
    pt: dict[sp.Symbol, sp.Expr] = {sp.Symbol(STATE, real=True): sp.Integer(0)}
    for s in c.cell.steps:
        gate = c.primitives.get(s.name) is PRIMITIVES["sigmoid"]
        pt[sp.Symbol(s.name, real=True)] = sp.Rational(1, 2) if gate else sp.Integer(0)
    return pt


def _limit_note(J: Jacobian) -> str:
    if J.is_identity():
        return "the state is copied: the gradient passes unchanged, whatever the weights"
    if not J.terms:
        return "the gradient to the previous state is cut"
    if all(any(f.weight for f in t) for t in J.terms):
        return "only paths through weight matrices remain, as in a plain RNN"
    return "a weight-free path remains next to the weight paths"


def _jacobian(c: _Context) -> list[Block]:
    J = c.jac
    ranges = value_ranges(c.cell)
    direct = [t for t in J.terms if not any(f.weight for f in t)]
    bounded = ", ".join(
        f"{latex.name(v)} \\in [{lo}, {hi}]" for v, (lo, hi) in sorted(ranges.items(), key=lambda kv: kv[0])
    )
    state_note: Text = ()
    if STATE in ranges and c.cell.steps[-1].name not in c.primitives:
        state_note = (
            "; the state's range follows from (",
            str(c.num["h"]),
            ") by induction when ",
            _m(r"\lVert h_{0} \rVert_{\infty} \le 1"),
            " (SymPy finds the supremum of its right-hand side to be at most 1)",
        )
    blocks: list[Block] = [
        Heading(3, "The one-step Jacobian"),
        Para(
            (
                "Chaining the local derivatives of section 2 forward through the steps (a matrix product ",
                _m("a = u W"),
                " contributes ",
                _m(r"W^{\top}"),
                ", an elementwise step a diagonal) gives, for one row of the batch and ",
                _m(r"J_{t}[i, j] = \partial h_{t}[i] / \partial h_{t-1}[j]"),
                ":",
            )
        ),
        Equation(
            (rf"J_{{t}} = {J._term_tex(J.terms[0])}", *("+ " + J._term_tex(t) for t in J.terms[1:])), "J"
        ),
        Para(
            (
                "so a loss at step t reaches the state k steps back through a product of k Jacobians, ",
                _m(r"\delta h_{t-k} = \delta h_{t} J_{t} J_{t-1} \cdots J_{t-k+1}"),
                ". Seed 004 argues that for a plain RNN this product behaves like a power of one matrix and "
                "vanishes or explodes; here is what the closed form says exactly for ",
                Code(c.name),
                ".",
            )
        ),
        Heading(3, "When the gradient vanishes or explodes"),
        Para(
            (
                "Bound. Gates lie in [0, 1] and tanh outputs in [-1, 1]: ",
                _m(bounded),
                *state_note,
                ". Each diagonal factor is bounded by its supremum over these ranges (computed exactly by "
                "SymPy; a factor in an unbounded value keeps its maximum), so",
            )
        ),
        Equation((rf"\lVert J_{{t}} \rVert_{{2}} \le {_bound_tex(c)}",), "J.1"),
    ]
    if direct:
        blocks.append(
            Para(
                (
                    "The term without a weight matrix, ",
                    _m(J._term_tex(direct[0])),
                    ", is a direct path from ",
                    _m("h_{t-1}"),
                    " to ",
                    _m("h_{t}"),
                    ": the bound is at least 1 and does not force the gradient to vanish. Where the gate "
                    "opens that path fully, J is exactly the identity (below), which is how the gated cell "
                    "escapes seed 004's power of a weight matrix.",
                )
            )
        )
    else:
        blocks.append(
            Para(
                (
                    "Every path from ",
                    _m("h_{t-1}"),
                    " to ",
                    _m("h_{t}"),
                    " passes through a weight matrix, so k steps back the gradient is at most the bound to "
                    "the power k: when the bound is below 1 it vanishes at least geometrically (seed 004's ",
                    _m(r"(\partial g U)^{n-1}"),
                    " made exact), and it can grow only where the bound exceeds 1.",
                )
            )
        )
    limits: list[Text] = []
    for g, kind in c.primitives.items():
        sym = sp.Symbol(g, real=True)
        if kind is PRIMITIVES["sigmoid"]:
            for value in (1, 0):
                Jg = J.at({sym: value})
                limits.append(
                    (_m(rf"{latex.name(g)} = {value}: \quad J_{{t}} = {Jg.tex()}"), f" ({_limit_note(Jg)})")
                )
        else:
            Jg = J.at({sym: SIGN})
            limits.append(
                (
                    _m(rf"{latex.name(g)} = \epsilon = \pm 1: \quad J_{{t}} = {Jg.tex()}"),
                    f" (saturated {g}: {_limit_note(Jg)})",
                )
            )
    blocks += [
        Para(("Limits, elementwise (each substituted into the closed form):",)),
        Bullets(tuple(limits)),
    ]
    J0 = J.at(_init_point(c))
    # the values deviate from the init point by O(s): a term with m weights deviates by O(s^(m+1))
    order = min(sum(f.weight is not None for f in t) for t in J.terms) + 1
    error = "O(s)" if order == 1 else f"O(s^{{{order}}})"
    blocks.append(
        Para(
            (
                "At initialisation. With weights drawn from ",
                _m(r"N(0, s^{2})"),
                " and zero biases (",
                Code("init_params"),
                ", ",
                _m("h_{0} = 0"),
                "), every pre-activation is O(s): gates sit at 1/2 and tanh outputs and states at 0, so",
            )
        )
    )
    blocks.append(Equation((rf"J_{{t}} = {J0.tex()} + {error}",), "J.2"))
    blocks.append(
        Para(
            (
                "and the gradient changes by about the norm of this matrix per step until training moves the "
                "gates (an h by h matrix of ",
                _m(r"N(0, s^{2})"),
                " entries has spectral norm close to ",
                _m(r"2 s \sqrt{h}"),
                "). Section 7 measures it.",
            )
        )
    )
    return blocks


# ---- (5) code


def _code(c: _Context) -> list[Block]:
    path = f"grusym/generated/{c.name}.py"
    marks = codemap.markers(c.source)
    rows: list[tuple[tuple[Any, ...], ...]] = []
    labels = {c.num[s.name]: s for s in c.cell.steps}
    for number in sorted(set(c.num.values())):
        fwd = [m for m in marks if number in m.numbers and not m.backward]
        bwd = [m for m in marks if number in m.numbers and m.backward]
        eq = (
            c.eq(labels[number])
            if number in labels
            else (latex.step_equation(c.head_step, c.params) if number == c.num["logits"] else "L")
        )

        def links(ms: list[codemap.Marker]) -> Text:
            out: list[Any] = []
            for i, m in enumerate(ms):
                out += ([", "] if i else []) + [Link(f"L{m.line}", f"{CODE_DIR}/{c.name}.py#L{m.line}")]
            return tuple(out) or ("-",)

        rows.append(((f"({number})",), (_m(eq),), links(fwd), links(bwd)))
    blocks: list[Block] = [
        Heading(2, "5. The generated code", "code"),
        Para(
            (
                "The module ",
                Link(Code(path).text, f"{CODE_DIR}/{c.name}.py"),
                " is generated from the same derivation by ",
                Code("grusym derive"),
                ". Its comments cite the equation numbers above: ",
                Code("# (N) ..."),
                " above the forward lines of (N) and ",
                Code("# (N) grad of: ..."),
                " above the backward block of section 3's (N.k); fused blocks cite several. Lines in "
                "the module:",
            )
        ),
        Table(("equation", "", "forward", "backward"), tuple(rows)),
    ]
    # every function that cites an equation, in file order: robust to how the generator splits its code
    for fn in dict.fromkeys(m.function for m in marks):
        text, first = codemap.function_source(c.source, fn)
        cited = sorted({k for m in marks if m.function == fn for k in m.numbers})
        blocks += [
            Para((Code(fn), f" (line {first}) implements ", ", ".join(f"({k})" for k in cited), ":")),
            CodeBlock(text, "python", first),
        ]
    return blocks


# ---- (6) verification


def _verification(c: _Context, measured: Measurement | None) -> list[Block]:
    head: list[Block] = [
        Heading(2, "6. Verification", "verification"),
        Para(
            (
                "Measured when this report was built (the only part of the report that changes between "
                "builds): every gradient-check method of ",
                Code("grusym.gradcheck"),
                " on the variant's default random float64 problem (T=3, n=2, d=3, h=4, q=5, seed 0; "
                "the symbolic oracle unrolls a smaller one, h = q = 3), the "
                "closed-form Jacobian of section 4 against central differences of the generated forward, and "
                "the committed module against the generator.",
            )
        ),
    ]
    if measured is None:
        return [*head, Measured((Para(("Not measured in this build.",)),))]
    rows: list[tuple[tuple[Any, ...], ...]] = []
    for k in measured.checks:
        err = "-" if math.isnan(k.error) else f"{k.error:.2e}"
        elements = str(k.elements) if k.elements else "-"
        rows.append(
            (
                (Code(k.method),),
                (k.what,),
                (f"{k.rtol:.0e}" if k.rtol else "exact",),
                (elements,),
                (Code(k.worst),),
                (err,),
                (k.verdict,),
            )
        )
    versions = ", ".join(f"{name} {ver}" for name, ver in measured.versions)
    body: tuple[Block, ...] = (
        Table(
            ("check", "compares", "tolerance", "elements", "worst at", "worst error", "verdict"), tuple(rows)
        ),
        Para(
            (
                f"Built {measured.date} with {versions}. ",
                "All checks pass." if measured.ok else "SOME CHECKS FAILED.",
            )
        ),
    )
    return [*head, Measured(body)]


# ---- (7) figures


def _sig(x: float) -> str:
    return f"{x:.3g}"


def _figures(c: _Context, data: dict[str, Any]) -> list[Block]:
    gn = data["gradient_norms"]
    cfg = gn["config"]
    T = cfg["T"]
    names = list(gn["norms"])
    show = sorted({1, 5, 10, 20, T})
    rows: list[tuple[tuple[Any, ...], ...]] = []
    for v in names:
        for scale, norms in gn["norms"][v].items():
            rate = (norms[T] / norms[0]) ** (1 / T) if norms[T] > 0 else 0.0
            rows.append(
                (
                    (Code(v),),
                    (scale,),
                    (_sig(gn["W_hh_spectral_norm"][v][scale]),),
                    *((_sig(norms[k]),) for k in show),
                    (_sig(rate),),
                )
            )
    act = data["activations"]
    acfg = act["config"]
    arows = []
    for step, entry in act["steps"].items():
        arows.append(
            (
                (Code(step),),
                (entry["kind"],),
                *((f"{_sig(entry[p]['mean'])} / {_sig(entry[p]['std'])}",) for p in ("init", "trained")),
                *((f"{entry[p]['saturated']:.0%}",) for p in ("init", "trained")),
            )
        )
    return [
        Heading(2, "7. Figures", "figures"),
        Para(
            (
                "Both figures come from the generated code with fixed seeds (",
                Code("grusym.report.figures"),
                "); their numbers are in ",
                Link("figures.json", "figures.json"),
                ". Gradient norms: the loss is ",
                _m(r"\langle g, h_{T} \rangle"),
                " for a fixed unit vector g on the last step only; the adjoint of each earlier state is the ",
                Code('grads["h0"]'),
                " of the generated backward run on the suffix of the sequence that starts from that state. ",
                f"Toy text 'Math...', T = {T}, n = {cfg['n']}, h = {cfg['hidden']}, weights N(0, scale^2) "
                f"from init_params (seed {cfg['seed']}), zero biases.",
            )
        ),
        Figure("gradient_norms.png", f"Gradient norm against distance to the loss: {' vs '.join(names)}."),
        Table(
            (
                "variant",
                "weight scale",
                "spectral norm of W_hh",
                *(f"k = {k}" for k in show),
                "per-step factor",
            ),
            tuple(rows),
        ),
        Para(
            (
                "The per-step factor is ",
                _m(r"(\lVert \delta h_{0} \rVert / \lVert \delta h_{T} \rVert)^{1/T}"),
                "; at the smallest scale compare it with the norm of (J.2).",
            )
        ),
        Para(
            (
                f"Activations: {acfg['steps']} full-batch SGD steps (learning rate {acfg['lr']}) of the "
                "generated ",
                Code("loss_and_grads"),
                f" on the toy text (T = {acfg['T']}, n = {acfg['n']}, h = {acfg['hidden']}, init scale "
                f"{acfg['scale']}); the loss goes from {act['loss']['init']:.4f} to "
                f"{act['loss']['trained']:.4f} (uniform guessing: log 4 = 1.3863). Histograms of every "
                "sigmoid and tanh step over all T n h values, before and after.",
            )
        ),
        Figure(
            "activations.png", "Activations of every sigmoid/tanh step at initialisation and after training."
        ),
        Table(
            (
                "step",
                "kind",
                "mean / std (init)",
                "mean / std (trained)",
                "saturated (init)",
                "saturated (trained)",
            ),
            tuple(arows),
        ),
        Para(("Saturated: within 5% of the range's ends (0 or 1 for gates, -1 or 1 for tanh).",)),
    ]


# ---- documents


def variant_document(name: str, data: dict[str, Any], measured: Measurement | None) -> Document:
    """The full report of variant ``name``; ``data`` from ``figures.figure_data(name)``."""
    c = _Context(name)
    v = c.variant
    intro: list[Block] = [
        Heading(1, f"{v.title} ({name})"),
        Para(
            (
                "The backpropagation-through-time derivation of the variant ",
                Code(name),
                ", written from the objects that generate its code. Sources: ",
                v.sources,
                ". Used by: ",
                v.used_by,
                ". ",
                Link("All variants", "../README.md"),
                "; this report as ",
                Link("LaTeX", f"{name}.tex"),
                ".",
            )
        ),
    ]
    blocks = intro + _forward(c) + _local(c) + _adjoint(c) + _bptt(c) + _code(c)
    blocks += _verification(c, measured) + _figures(c, data)
    return Document(f"{v.title} ({name})", tuple(blocks), REGENERATE)


def _compact(cell: Cell) -> Text:
    """A variant's forward equations for a table cell, one per line."""
    params = frozenset(cell.params)
    out: list[Any] = []
    for i, s in enumerate(cell.steps):
        out += ([Break()] if i else []) + [_m(latex.step_equation(s, params))]
    return tuple(out)


def index_document(names: list[str], relation_errors: dict[int, float]) -> Document:
    """The comparison page: conventions, equations, sizes, users and the checked relations of the variants."""
    from .relations import RELATIONS

    cells = {name: VARIANTS[name].cell() for name in names}
    rows, eqs, users = [], [], []
    for name in names:
        v, cell = VARIANTS[name], cells[name]
        total = parameter_count(cell)
        link = (Link(name, f"{name}/README.md"),)
        rows.append(
            (
                link,
                (v.title,),
                (v.reset,),
                (Code(v.update),),
                (_m(sp.latex(total)),),
                (str(total.subs(SIZES["toy"])),),
                (str(total.subs(SIZES["d2l"])),),
            )
        )
        eqs.append((link, _compact(cell)))
        users.append((link, (v.used_by,), (v.sources,)))
    rel_rows = []
    for i, rel in enumerate(RELATIONS):
        if rel.a not in names or rel.b not in names:
            continue
        err = relation_errors[i]
        verdict = "holds" if err <= RELATION_ATOL else f"FAILS (max difference {err:.1e})"
        claim: list[Any] = []
        for j, piece in enumerate(rel.claim.split("`")):
            if piece:
                claim.append(Code(piece) if j % 2 else piece)
        rel_rows.append((tuple(claim), (rel.why,), (verdict,)))
    blocks: list[Block] = [
        Heading(1, "grusym derivations: every GRU variant, derived"),
        Para(
            (
                "One report per variant: the forward equations, the local derivatives SymPy derives, the "
                "adjoint of one step, BPTT with the one-step Jacobian in closed form and when the gradient "
                "vanishes or explodes, the generated code labelled with the equation numbers, the gradient "
                "checks measured when the report was built, and figures. All of it is rendered from the "
                "objects that generate the code (",
                Code("grusym.symbolic"),
                "); regenerate with ",
                Code(REGENERATE),
                ". LaTeX: one standalone file per variant and ",
                Link("derivations.tex", "derivations.tex"),
                " with everything (",
                Code("grusym report --format pdf"),
                " compiles them when pdflatex or tectonic is installed).",
            )
        ),
        Heading(2, "Conventions and sizes"),
        Para(
            (
                "Parameter counts include the head ",
                Code("W_hq"),
                ", ",
                Code("b_q"),
                "; toy: d = q = 4, h = 2 (seeds 000/001); d2l: d = q = 28, h = 256 (seed 003).",
            )
        ),
        Table(("variant", "title", "reset gate", "update", "parameters", "toy", "d2l"), tuple(rows)),
        Heading(2, "Equations side by side"),
        Table(("variant", "one step"), tuple(eqs)),
        Heading(2, "Who uses which"),
        Table(("variant", "used by", "sources"), tuple(users)),
        Heading(2, "Relations between the variants"),
        Para(
            (
                "Each relation is checked when this page is built: both generated forward passes on one "
                "random float64 problem, with the parameters mapped as stated (a gate is pinned by zero "
                "weights and a bias of +-50, where float64 sigmoid is exactly 0 or 1); it holds when the "
                f"hidden states agree to {RELATION_ATOL:.0e}.",
            )
        ),
        Table(("relation", "why", "check"), tuple(rel_rows)),
        Heading(2, "What each report contains"),
        Bullets(
            (
                ("1. Forward equations, numbered as in the code's comments; shapes; parameters, counted.",),
                (
                    "2. Local derivatives: the primitive rules proved by SymPy, each elementwise step's "
                    "derivative as derived and as used, the linear rules.",
                ),
                ("3. The adjoint of one step in matrix form, numbered (N.k) after forward equation (N).",),
                (
                    "4. The BPTT recurrence, parameter gradients as sums over t, the one-step Jacobian in "
                    "closed form with a bound, its limits and its value at initialisation.",
                ),
                ("5. The generated functions, with a table from equation numbers to code lines.",),
                ("6. Gradient checks measured at build time (every method available), versions and date.",),
                (
                    "7. Figures: gradient norm against distance next to rnn_tanh at several weight scales; "
                    "activation histograms on the toy text.",
                ),
            )
        ),
    ]
    return Document("grusym derivations", tuple(blocks), REGENERATE)
