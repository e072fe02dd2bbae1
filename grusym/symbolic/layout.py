"""Layout and fusion: where every value of a derived cell lives in the generated code, and which matmuls fuse.

Contract: :class:`Schedule` reads a cell and its :class:`~grusym.symbolic.derive.Derivation` and decides
everything the forward and adjoint emitters share (what the derivation does not decide):

* the steps no state depends on (``steps.unread``) are pruned: the module neither computes nor
  differentiates them, and a parameter only they read gets an exact zero gradient (it stays in ``PARAMS``);
  the steps only states the loss never reads depend on (outside ``steps.loss_reach``: ``constant``) are
  computed but not differentiated, their adjoints being zero;
* every linear step owns an h-wide column block of one pre-activation buffer ``A`` (T, n, G); blocks are
  ordered so that the steps sharing a left operand (X, h_prev, ...) are as contiguous as possible, so each
  operand needs one fused matmul per contiguous run, forward and backward;
* each recurrent state s has a (T + 1, n, h) sequence (``H`` for the output state, ``S_<s>`` for the
  others) whose row t is s_prev of step t;
* the forward values the backward reads are cached (``saved``), the others live in (n, h) scratch;
* a linear step read by one elementwise step only keeps its per-step matmul terms out of ``A``: the reader
  adds them (``sigmoid(a_z + a_z_h_prev)``), so no strided column of ``A`` is updated and read back; the
  other linear steps with per-step terms are completed in contiguous buffers of their own.

:func:`gemm_plan` lists the matmuls of one generated step, read off the same runs (the benchmark's floor).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

import sympy as sp
from sympy import MatrixSymbol

from .accuracy import Context
from .cell import INPUT, OUTPUT, Cell, Step, h, n, prev_name
from .derive import Derivation, adjoint_name, derive, derive_head
from .emit import Writer
from .steps import loss_reach, params_of, scalar_form, unread

__all__ = [
    "ROW",
    "Gemm",
    "Run",
    "Schedule",
    "cols",
    "gemm_plan",
    "numbered",
    "pruning",
    "pruning_note",
    "times_h",
]

_LAYOUT_SEARCH = 7  # up to this many linear steps every block order is tried; beyond, declaration order


def numbered(cell: Cell) -> dict[str, int]:
    """Equation number of each step (and of the head's two equations), as the reports number them."""
    numbers = {s.name: i + 1 for i, s in enumerate(cell.steps)}
    numbers["logits"] = len(cell.steps) + 1
    numbers["loss"] = len(cell.steps) + 2
    return numbers


def pruning(cell: Cell) -> tuple[list[str], list[str]]:
    """(the steps no state depends on, the parameters only they read), in declaration order."""
    pruned = unread(cell.steps, cell.states)
    read = {p for s in cell.steps if s.name not in pruned for p in params_of(s)}
    return pruned, [p for p in cell.params if p not in read]


def pruning_note(cell: Cell) -> str:
    """What the generated module leaves out of ``cell`` and why, in one sentence ("" when nothing)."""
    pruned, unused = pruning(cell)
    if not pruned:
        return ""
    num = numbered(cell)
    it = "it" if len(pruned) == 1 else "them"
    steps = ", ".join(f"({num[name]}) {name}" for name in pruned)
    note = (
        f"Pruned: no state depends on {steps} (nothing reads {it}, or the terms that read {it} cancel), "
        f"so the module does not compute {it}"
    )
    if unused:
        note += (
            f"; {', '.join(unused)}, read by nothing else, get{'s' * (len(unused) == 1)} exact zero gradients"
        )
    return note + "."


ROW = "x_t"  # the input row of one time step, as elementwise steps read it


def _row(s: Step) -> Step:
    """An elementwise step reading X itself reads the loop's row x_t (both (n, h), since d == h)."""
    if s.kind != "elementwise" or INPUT not in s.inputs:
        return s
    return replace(s, expr=s.expr.xreplace({MatrixSymbol(INPUT, n, h): MatrixSymbol(ROW, n, h)}))


@dataclass(frozen=True)
class Run:
    """A contiguous block of linear steps that share one left operand: one fused matmul."""

    left: str
    steps: tuple[Step, ...]
    lo: int  # first block index in A
    weights: tuple[str, ...]

    @property
    def hi(self) -> int:
        return self.lo + len(self.steps)


def _layout(linear: list[Step]) -> list[Step]:
    """Order the linear steps so each left operand's steps form as few contiguous runs as possible."""

    def cost(order: Iterable[Step]) -> int:
        order = tuple(order)
        runs = 0
        lefts = {t.left for s in order for t in s.terms}
        for left in lefts:
            inside = [any(t.left == left for t in s.terms) for s in order]
            runs += sum(1 for i, v in enumerate(inside) if v and (i == 0 or not inside[i - 1]))
        return runs

    if len(linear) > _LAYOUT_SEARCH:
        return list(linear)
    return list(min(itertools.permutations(linear), key=cost))  # first minimum: declaration order wins ties


def _runs(order: list[Step], left: str) -> list[Run]:
    runs: list[Run] = []
    for i, s in enumerate(order):
        term = next((t for t in s.terms if t.left == left), None)
        if term is None:
            continue
        if runs and runs[-1].hi == i:
            last = runs[-1]
            runs[-1] = Run(left, (*last.steps, s), last.lo, (*last.weights, term.weight))
        else:
            runs.append(Run(left, (s,), i, (term.weight,)))
    return runs


def times_h(k: int) -> str:
    return "nh" if k == 1 else f"{k}*nh"


def cols(lo: int, hi: int, width: int) -> str:
    """The slice of h-wide column blocks lo..hi out of ``width`` (``:`` for all of them)."""

    def at(k: int) -> str:
        return "" if k == 0 else times_h(k)

    return ":" if (lo, hi) == (0, width) else f"{at(lo)}:{at(hi)}"


class Schedule:
    """The shared decisions of code generation for one cell (see the module docstring)."""

    def __init__(self, cell: Cell) -> None:
        self.declared = cell
        # the steps no state depends on are not computed; only they read ``unused``: zero gradients
        self.pruned, self.unused = pruning(cell)
        cell = replace(cell, steps=[_row(s) for s in cell.steps if s.name not in self.pruned])
        self.cell = cell
        # X read elementwise (d == h): the loops read its row x_t (of X_e, X or the one-hot rows of token
        # ids), and backward adds d[x_t] into dx_t, the row of dX_e
        self.x_rows = any(ROW in s.inputs for s in cell.steps)
        self.x_sized = bool(self.declared.x_steps)  # d == h required (also where X's terms cancel)
        self.der: Derivation = derive(cell)
        # what the symbols of the scalar expressions are: rewrites must be as accurate (accuracy.py)
        self.forms = Context(
            {
                sp.Symbol(s.name, real=True): scalar_form(s.expr)
                for s in cell.steps
                if s.kind == "elementwise"
            },
            frozenset(sp.Symbol(adjoint_name(s.name), real=True) for s in cell.steps),
        )
        # backward differentiates only the steps the loss depends on; the others' adjoints are zero
        reach = loss_reach(cell.steps, cell.states)
        self.constant = [s.name for s in cell.steps if s.name not in reach]
        self.head_step, self.head = derive_head()
        self.num = numbered(self.declared)  # the declared numbers: the reports number the same equations
        self.steps = {s.name: s for s in cell.steps}
        self.states = list(cell.states)
        self.prevs = [prev_name(s) for s in self.states]
        linear = [s for s in cell.steps if s.kind == "linear"]
        self.order = _layout(linear)
        self.G = len(self.order)
        self.slot = {s.name: i for i, s in enumerate(self.order)}
        lefts = list(dict.fromkeys(t.left for s in cell.steps if s.kind == "linear" for t in s.terms))
        self.runs = {left: _runs(self.order, left) for left in lefts}
        # forward values the backward reads: free symbols of the elementwise adjoints, left operands of
        # parameter products
        needed: set[str] = set()
        for c in self.der.contributions:
            if c.source in self.constant:
                continue
            if c.kind in ("elementwise", "vector"):
                needed |= {s.name for s in c.expr.free_symbols}
            elif c.kind == "matmul_right":
                needed.add(str(c.left))
        # per-step inputs (c.input): every declared one is checked at call time; the loops read those a
        # computed step reads, backward those an adjoint reads
        self.inputs = list(cell.inputs)
        self.inputs_backward = [name for name in cell.inputs if name in needed]
        self.saved = [
            s.name
            for s in cell.steps
            if s.name in needed and s.kind != "linear" and s.name not in self.states
        ]
        self.saved_linear = [s.name for s in self.order if s.name in needed]
        self.cell_params = list(cell.params)
        self.live_params = [p for p in cell.params if p not in self.unused]
        self.vectors = [p.name for p in cell.params.values() if p.kind == "vector"]
        readers = {s.name: [e for e in cell.steps if s.name in e.inputs] for s in self.order}
        self.inlined = {
            s.name
            for s in self.order
            if s.name not in self.saved_linear
            and len(readers[s.name]) == 1
            and readers[s.name][0].kind == "elementwise"  # a reduction reads a value, not a sum of terms
            and any(t.left != INPUT for t in s.terms)
        }
        self.materialized = [
            s.name for s in self.order if s.name not in self.inlined and any(t.left != INPUT for t in s.terms)
        ]

    # ---- names
    def x_rows_where(self) -> str:
        """The cell and the steps that read X elementwise, as its d != h error names them."""
        steps = self.declared.steps
        where = ", ".join(f"({k}) {steps[k - 1].name}" for k in self.declared.x_steps if k <= len(steps))
        return f"cell {self.cell.name!r}, step {where}"

    def x_rows_code(self) -> str:
        """The code of X_e, the (T, n, h) rows of X that elementwise steps read (one-hot for token ids)."""
        return f"validate.elementwise_rows(X, tokens, {self.x_width()}, nh, dtype, {self.x_rows_where()!r})"

    def x_width(self) -> str:
        """The code of d, the width of X (or of its one-hot rows): an input weight's rows."""
        return f'params["{self.runs[INPUT][0].weights[0]}"].shape[0]'

    def seq(self, state: str) -> str:
        """The (T + 1, n, h) array holding state ``state`` at every step (row t = its prev at step t)."""
        return "H" if state == OUTPUT else f"S_{state}"

    def state_of(self, prev: str) -> str:
        return self.states[self.prevs.index(prev)]

    def fused(self, run: Run) -> str:
        if len(run.weights) == 1:
            return run.weights[0]
        if run.left == INPUT:
            base = "W_x_all"
        elif run.left == prev_name(OUTPUT):
            base = "W_h_all"
        else:
            base = f"W_{run.left}_all"
        runs = self.runs[run.left]
        return base if len(runs) == 1 else f"{base}{runs.index(run)}"

    def cols(self, lo: int, hi: int) -> str:
        return cols(lo, hi, self.G)

    def kept(self) -> list[str]:
        """Linear steps backward reads that forward keeps in their own arrays rather than in A."""
        return [name for name in self.materialized if name in self.saved_linear]

    def cached(self) -> list[str]:
        """The per-step arrays forward caches for backward besides X, tokens and the state sequences."""
        kept = self.kept()
        linear = ["A"] if set(self.saved_linear) - set(kept) else []
        return linear + self.saved + kept

    def block(self, whole: str, part: str, s: Step) -> str:
        """The per-step sequence of step s's column block of A or dA (``whole`` when it is all of it)."""
        i = self.slot[s.name]
        return whole if self.G == 1 else part.format(self.cols(i, i + 1))

    def eq_list(self, steps: list[Step] | tuple[Step, ...]) -> str:
        return ", ".join(f"({self.num[s.name]})" for s in steps)

    def recurrent_lefts(self) -> list[str]:
        """The left operands of per-step matmuls, states' prevs first (the loop computes them first)."""
        return [left for left in [*self.prevs, *self.steps] if left in self.runs]

    # ---- shared emission
    def unpack(self, w: Writer, names: list[str]) -> None:
        for i in range(0, len(names), 6):
            chunk = names[i : i + 6]
            w(", ".join(chunk) + " = " + ", ".join(f'params["{p}"]' for p in chunk))

    def fused_weights(self, w: Writer, lefts: list[str]) -> None:
        for left in lefts:
            for run in self.runs[left]:
                if len(run.weights) > 1:
                    name, parts = self.fused(run), ", ".join(run.weights)
                    shape = f"({run.weights[0]}.shape[0], {times_h(len(run.weights))})"
                    out = f'rt.weight_buffer(buf, "{name}", {shape}, dtype)'
                    w(f"{name} = np.concatenate(({parts}), axis=1, out={out})")

    def bias_row(self, s: Step) -> str:
        """The code of step s's bias row: its one bias, the sum of several, or zeros."""
        if not s.biases:
            return "np.zeros(nh, dtype)"
        return " + ".join(s.biases)

    def fused_x(self, run: Run) -> str:
        if len(run.weights) == 1:
            return f'params["{run.weights[0]}"]'
        return f"np.concatenate(({', '.join(f'params[{wn!r}]' for wn in run.weights)}), axis=1)".replace(
            "'", '"'
        )


@dataclass(frozen=True)
class Gemm:
    """One matrix product a generated ``loss_and_grads`` runs: (m, k) @ (k, n), T times or once.

    Sizes are products of the dimension names T, n, d, h, q and integers (``"T*n"``, ``"2*h"``). ``when``
    is ``"always"``, ``"floats"`` (float X only), ``"tokens"`` (token ids: the one-hot GEMM of the
    input-weight gradient, used while d <= 512) or ``"dX"`` (the input gradient: float X, when asked for).
    """

    phase: str  # "forward", "head", "backward" or "gradients" (after the loop)
    label: str
    m: str
    k: str
    n: str
    per_step: bool = False
    when: str = "always"
    padded: bool = False  # the right operand is a buffer of rt.weight_buffer (rows padded at 4 KiB strides)
    bias_column: bool = False  # rt.project: X may get a column of ones (k + 1 where rt.bias_column(k, n))


def gemm_plan(cell: Cell | str) -> list[Gemm]:
    """Every matmul of one training step of ``cell`` (or built-in name), in the order the generated code
    runs them.

    Read off the same fused runs the generator schedules from, so it is the exact matmul sequence of the
    generated module (the benchmark's GEMM floor replays it).
    """
    if isinstance(cell, str):
        from .variants import build

        cell = build(cell)
    g = Schedule(cell)

    def width(run: Run) -> str:
        return times_h(len(run.steps)).replace("nh", "h")

    plan = [
        Gemm(
            "forward",
            f"X @ {g.fused(run)}",
            "T*n",
            "d",
            width(run),
            when="floats",
            padded=True,
            bias_column=True,
        )
        for run in g.runs.get(INPUT, [])
    ]
    for left in g.recurrent_lefts():
        for run in g.runs[left]:
            label, concat = f"{left} @ {g.fused(run)}", len(run.weights) > 1
            plan.append(Gemm("forward", label, "n", "h", width(run), per_step=True, padded=concat))
    lg = g.head_step.terms[0].weight
    plan.append(Gemm("head", f"H @ {lg}", "T*n", "h", "q"))
    plan.append(Gemm("head", f"dlogits @ {lg}.T", "T*n", "q", "h"))
    for s in reversed(g.cell.steps):
        for c in g.der.out_of(s.name):
            if c.kind == "matmul_left" and c.target != INPUT and c.target not in g.prevs:
                label = f"d{s.name} @ {c.weight}.T"
                plan.append(Gemm("backward", label, "n", "h", "h", per_step=True, padded=True))
    for prev in g.prevs:  # backward's transposed weights are copies in weight buffers
        for run in g.runs.get(prev, []):
            label = f"dA_t @ {g.fused(run)}.T"
            plan.append(Gemm("backward", label, "n", width(run), "h", per_step=True, padded=True))
    for left, runs in g.runs.items():
        for run in runs:
            if left == INPUT:
                for when, lhs in (("tokens", "onehot(X)"), ("floats", "X")):
                    label = f"{lhs}.T @ dA -> d{g.fused(run)}"
                    plan.append(Gemm("gradients", label, "d", "T*n", width(run), when=when))
            else:
                stacked = "H" if left == prev_name(OUTPUT) else left
                plan.append(Gemm("gradients", f"{stacked}.T @ dA -> d{g.fused(run)}", "h", "T*n", width(run)))
    plan.append(Gemm("gradients", f"H.T @ dlogits -> d{lg}", "h", "T*n", "q"))
    for run in g.runs.get(INPUT, []):
        plan.append(Gemm("gradients", f"dA @ {g.fused(run)}.T -> dX", "T*n", width(run), "d", when="dX"))
    return plan
