"""Forward emission: the body of a generated module's ``_forward``, one time step inside a loop over t.

Contract: :func:`emit_forward` writes, after the ``_forward`` signature that ``codegen`` emits, the code
that fills ``A`` (the input projections and biases of every linear step for all t at once: one GEMM, or a
row gather for token ids), the state sequences, and then the loop: each state's per-step matmuls, every
elementwise step in its cheapest in-place form, and the per-step matmuls of the values it feeds. It ends by
returning ``(H[1:], cache)``. Where values live is the :class:`~grusym.symbolic.layout.Schedule`'s call.
"""

from __future__ import annotations

import sympy as sp

from .cell import INPUT, OUTPUT, scalar_form
from .emit import InPlace, Writer, cheapest, loop
from .fuse import Fuser
from .inputs import sequence
from .layout import ROW, Schedule, cols, times_h
from .printing import equation, text
from .reduce import REDUCTIONS, RUNTIME

__all__ = ["emit_forward"]


def _projections(w: Writer, g: Schedule) -> None:
    x_runs = g.runs.get(INPUT, [])
    w(f"# input projections and biases of {g.eq_list(g.order)} for all t at once")
    w(f'A = buf("A", (T, n, {times_h(g.G)}), dtype)')
    covered = {s.name for r in x_runs for s in r.steps}
    partial = bool(x_runs) and not (len(x_runs) == 1 and len(covered) == g.G)
    if x_runs:
        # token ids, or float rows that are all one-hot (read as their ids): a row gather, no GEMM
        w("X_ids = rt.one_hot_ids(X, tokens)")
        if partial:
            # one contiguous gather fills every block, a block without an X term gathering its bias
            # alone (a gather into a strided column block of A is several times slower)
            w("if X_ids is not None:")
            first = x_runs[0].weights[0]
            x_weight = {s.name: t.weight for s in g.order for t in s.terms if t.left == INPUT}
            table = ", ".join(x_weight.get(s.name, f"np.zeros_like({first})") for s in g.order)
            bias_row = ", ".join(g.bias_row(s) for s in g.order)
            w(f"    table = np.concatenate(({table}), axis=1)")
            w(f"    rt.project(X, X_ids, table, np.concatenate(({bias_row})), out=A)")
            w("else:")
            w.indent = 2
    for run in x_runs:
        target = "A" if (run.lo, run.hi) == (0, g.G) else f"A[:, :, {g.cols(run.lo, run.hi)}]"
        biases = [g.bias_row(s) for s in run.steps]
        b = biases[0] if len(biases) == 1 else f"np.concatenate(({', '.join(biases)}))"
        ids = "None" if partial else "X_ids"  # partial: the gather is the branch above
        w(f"rt.project(X, {ids}, {g.fused(run)}, {b}, out={target})")
    for s in g.order:
        if s.name not in covered:
            i = g.slot[s.name]
            w(f"A[:, :, {g.cols(i, i + 1)}] = {' + '.join(s.biases) or '0'}")
    w.indent = 1


class _Matmuls:
    """The per-step matmuls of each left operand's runs, each into a contiguous buffer (``<step>_<left>``,
    or ``P_<left>`` for a fused run, with a view per step): inlined steps' readers add it, materialized
    steps add it to their X terms and biases. ``products`` collects the allocations, made before the loop."""

    def __init__(self, g: Schedule) -> None:
        self.g = g
        self.products: list[str] = []
        self.views: dict[str, str] = {}  # name -> its column block of a fused run's product
        self.started: set[str] = set()

    def emit(self, w: Writer, left: str) -> None:
        g = self.g
        for run in g.runs.get(left, []):
            w(f"# {g.eq_list(run.steps)}: {left} terms")
            k = len(run.steps)
            if k == 1:
                out = f"{run.steps[0].name}_{left}"
                self.products.append(
                    f'{out} = buf("{out}", (n, nh), dtype)  # the {left} term of {run.steps[0].name}'
                )
            else:
                out = f"P_{left}" if len(g.runs[left]) == 1 else f"P_{left}{g.runs[left].index(run)}"
                self.products.append(f'{out} = buf("{out}", (n, {times_h(k)}), dtype)')
                for i, s in enumerate(run.steps):
                    self.views[f"{s.name}_{left}"] = f"{out}[:, {cols(i, i + 1, k)}]"
                    view = f"{s.name}_{left} = {self.views[f'{s.name}_{left}']}"
                    self.products.append(f"{view}  # the {left} term of {s.name}")
            w(f"np.matmul({left}, {g.fused(run)}, out={out})")
            for s in run.steps:
                if s.name in g.materialized:
                    base = s.name if s.name in self.started else f"{s.name}_x"
                    w(f"np.add({base}, {s.name}_{left}, out={s.name})")
                    self.started.add(s.name)


def emit_forward(w: Writer, g: Schedule, fuser: Fuser | None = None) -> None:
    """The body of ``_forward(params, X, tokens, <state>0..., dtype, buf)`` (see the module docstring);
    with a fuser, its loop with the elementwise runs as kernels (the fused module)."""
    w.indent = 1
    g.unpack(w, g.live_params)
    g.fused_weights(w, list(g.runs))
    _projections(w, g)
    if g.x_rows:
        w(f"{INPUT}_e = {g.x_rows_code()}  # X read elementwise, row by row (x_t)")
    elif g.x_sized:  # X's elementwise terms cancel, but the cell as declared needs d == h
        w(f"validate.check_elementwise_sizes({g.x_rows_where()!r}, {g.x_width()}, nh)")
    for state in g.states:
        seq = g.seq(state)
        w(f'{seq} = buf("{seq}", (T + 1, n, nh), dtype)  # {seq}[t] is {state}_prev of step t')
        w(f"{seq}[0] = {state}0")
    kept = g.kept()
    for name in g.saved + kept:
        w(f'{name}_all = buf("{name}", (T, n, nh), dtype)')
    w.indent = 2
    body_start = len(w.lines)
    em = InPlace()
    scratch: list[str] = [name for name in g.materialized if name not in kept]
    matmuls = _Matmuls(g)
    for prev in g.prevs:
        matmuls.emit(w, prev)
    for s in g.cell.steps:
        if s.kind == "linear":
            continue
        if s.kind in REDUCTIONS:
            w(f"# ({g.num[s.name]}) {equation(s)}, over the hidden units of each row")
            if s.name not in g.states and s.name not in g.saved:
                scratch.append(s.name)
            w(f"{RUNTIME[s.kind]}({s.inputs[0]}, out={s.name})")
            matmuls.emit(w, s.name)
            continue
        w(f"# ({g.num[s.name]}) {equation(s)}")
        f = scalar_form(s.expr)
        form = cheapest(f, g.forms)
        inline = {
            sp.Symbol(a, real=True): sp.Add(
                sp.Symbol(a, real=True),
                *(sp.Symbol(f"{a}_{t.left}", real=True) for t in g.steps[a].terms if t.left != INPUT),
            )
            for a in s.inputs
            if a in g.inlined
        }
        form = form.xreplace(inline)
        if form != f:
            w(f"# evaluated as: {s.name} = {text(form)}")
        if s.name not in g.states and s.name not in g.saved:
            scratch.append(s.name)
        for line in em.emit(form, s.name):
            w(line)
        matmuls.emit(w, s.name)
    body = w.lines[body_start:]
    del w.lines[body_start:]
    scratch += [f"tmp{i}" for i in range(em.count)]
    w.indent = 1
    em.define_constants(w, "dtype")
    alloc_start = len(w.lines)
    for name in scratch:
        w(f'{name} = buf("{name}", (n, nh), dtype)')
    for line in matmuls.products:
        w(line)
    seqs: dict[str, str] = {}
    for state, prev in zip(g.states, g.prevs, strict=True):
        seqs[prev] = f"{g.seq(state)}[:-1]"
    for state in g.states:
        seqs[state] = f"{g.seq(state)}[1:]"
    for st in g.order:
        seqs[f"{st.name}_x" if st.name in g.materialized else st.name] = g.block("A", "A[:, :, {}]", st)
    seqs |= {name: f"{name}_all" for name in g.saved + kept}
    if g.x_rows:
        seqs[ROW] = f"{INPUT}_e"
    seqs |= {name: sequence(name) for name in g.inputs}
    if fuser is None:
        loop(w, seqs, body)
    else:
        loop_start = len(w.lines)
        fuser.loop(
            w, seqs, body, prefix="_forward", constants=list(em.constants), views=matmuls.views,
            vectors=tuple(g.vectors), saved=tuple(g.saved + kept),
        )  # fmt: skip
        fuser.prune(w, alloc_start, loop_start)
    w.indent = 1
    cache = ['"X": X', '"tokens": tokens', '"H": H']
    cache += [f'"{g.seq(state)}": {g.seq(state)}' for state in g.states if state != OUTPUT]
    cache += [f'"{name}": {"A" if name == "A" else name + "_all"}' for name in g.cached()]
    cache += [f'"{sequence(name)}": {sequence(name)}' for name in g.inputs_backward]
    w("cache = {" + ", ".join(cache) + "}")
    w("return H[1:], cache")
