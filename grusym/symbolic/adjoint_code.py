"""Adjoint emission: the body of a generated module's ``_backward``, one step's adjoint in a loop over t
backwards, then the parameter gradients as sums over t.

Contract: :func:`emit_backward` writes, after the ``_backward`` signature that ``codegen`` emits:

* adjoints in reverse step order, each value's adjoint as the sum of its contributions (first one
  assigned, the others added); shared subexpressions of one step's contributions named once (``g0``...);
* at the top of each step the upstream gradient of the output state plus what step t+1 sent back through
  ``h_prev``, and for every other state what came back through its prev plus that state's own upstream
  gradient at step t (``dS_c``: the gradient on a last state, at its sequence's last step; zeros when
  there is none);
* the matmuls into a state's prev of all gates fused into one product at the end of the step;
* parameter gradients after the loop: one large matmul per fused run over all T*n rows, bias gradients as
  column sums, parameter vectors as row sums of their per-step accumulators.
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import MatrixSymbol, OneMatrix

from .accuracy import Context, as_accurate
from .cell import INPUT, OUTPUT, n
from .derive import adjoint_name
from .emit import InPlace, Writer, cheapest, cost, loop, same_functions
from .fuse import Fuser
from .inputs import sequence
from .layout import ROW, Schedule, times_h
from .printing import equation
from .reduce import REDUCTIONS, RUNTIME, reduction

__all__ = ["emit_backward"]


class _Adjoints:
    def __init__(self, w: Writer, g: Schedule) -> None:
        self.w, self.g = w, g
        self.em = InPlace()
        self.assigned: set[str] = set()
        self.buffers: list[str] = []  # per-step adjoints that are not column blocks of dA (reused every step)
        self.transposed: list[str] = []  # contiguous copies of the weights the per-step matmuls transpose

    def target(self, name: str) -> str:
        """Where contributions to d[name] go: its adjoint, or a parameter vector's per-row accumulator."""
        return f"d{name}_rows" if name in self.g.vectors else adjoint_name(name)

    def note_buffer(self, target: str) -> None:
        g = self.g
        if (
            target not in g.slot
            and target != ROW  # dx_t is the row of dX_e
            and target not in g.prevs
            and target not in g.states
            and target not in g.vectors
        ):
            self.buffers.append(adjoint_name(target))

    def accumulate(self, target: str, e: sp.Expr) -> None:
        """d[target] = e for its first contribution in a step, d[target] += e for the others."""
        w, em, d = self.w, self.em, self.target(target)
        if target in self.assigned:
            for line in em.fold("np.add", e, d):
                w(line)
        elif target in self.g.slot and len(em.emit(e, d)) > 1:
            # a column block of dA is strided, and a ufunc touching a strided (n, h) view costs about twice
            # a contiguous one: work in a contiguous scratch buffer, only the last call writes the block
            t = em.scratch()
            lines = em.emit(e, t)
            em.free.append(t)
            lines[-1] = lines[-1].removesuffix(f"out={t})") + f"out={d})"
            for line in lines:
                w(line)
        else:
            self.note_buffer(target)
            for line in em.emit(e, d):
                w(line)
        self.assigned.add(target)

    def accumulate_matmul(self, target: str, left: str, weight: str | None) -> None:
        d = adjoint_name(target)
        wt = f"{weight}_T"  # the weight transposed once per call (see emit_backward)
        if wt not in self.transposed:
            self.transposed.append(wt)
        self._into(target, d, f"np.matmul({left}, {wt}")

    def accumulate_reduction(self, target: str, source: str, kind: str) -> None:
        """d[target] (+)= the reduction of d[source] (``reduce.RULES``: a mean's adjoint is the mean of its
        adjoint, broadcast over the units it averaged)."""
        self._into(target, self.target(target), f"{RUNTIME[kind]}({adjoint_name(source)}")

    def _into(self, target: str, d: str, call: str) -> None:
        """``call`` (a ufunc call without its ``out=``) written into ``d``, the buffer of d[target], or
        added to it through scratch when d[target] has a value: ``d += f(...)`` would allocate every step."""
        if target in self.assigned:
            t = self.em.scratch()
            self.w(f"{call}, out={t})")
            self.w(f"np.add({d}, {t}, out={d})")
            self.em.free.append(t)
        else:
            self.note_buffer(target)
            self.w(f"{call}, out={d})")
        self.assigned.add(target)

    def step(self, s_name: str) -> None:
        """The adjoint of one step: its elementwise contributions (shared parts once) and its matmuls."""
        g, w, em = self.g, self.w, self.em
        s = g.steps[s_name]
        emitted = [
            c
            for c in g.der.out_of(s.name)
            if c.kind in ("elementwise", "vector", *REDUCTIONS)
            or (c.kind == "matmul_left" and c.target != INPUT and c.target not in g.prevs)
        ]
        if not emitted:
            return
        w(f"# ({g.num[s.name]}) grad of: {equation(s)}")
        scalar = [c for c in emitted if c.kind in ("elementwise", "vector")]
        temps, reduced = _shared_forms([c.expr for c in scalar], g.forms)
        it = iter(reduced)
        rhs = {id(c): (next(it) if c.kind in ("elementwise", "vector") else None) for c in emitted}
        alias: dict[sp.Symbol, sp.Symbol] = {}
        for sym, e in temps:
            e = e.xreplace(alias)
            # a shared subexpression that is itself a first contribution is computed into its target,
            # unless that is a column block of dA (strided: every later read of it would be slower)
            host = next(
                (
                    c
                    for c in emitted
                    if rhs[id(c)] == sym
                    and c.kind == "elementwise"
                    and c.target not in self.assigned
                    and c.target not in g.slot
                ),
                None,
            )
            if host is not None:
                out = adjoint_name(host.target)
                rhs[id(host)] = None
                self.note_buffer(host.target)
                self.assigned.add(host.target)
            else:
                out = str(sym)
                self.buffers.append(out)
            alias[sym] = sp.Symbol(out, real=True)
            for line in em.emit(e, out):
                w(line)
        for c in emitted:
            e = rhs[id(c)]
            if c.kind in ("elementwise", "vector"):
                if e is not None:
                    self.accumulate(c.target, e.xreplace(alias))
            elif c.kind in REDUCTIONS:
                self.accumulate_reduction(c.target, c.source, c.kind)
            else:
                self.accumulate_matmul(c.target, f"{adjoint_name(c.source)}", c.weight)


def _calls(temps: list[tuple[sp.Symbol, sp.Expr]], reduced: list[sp.Expr]) -> int:
    """The ufunc calls of a step's contributions after CSE (a bare shared name is computed into its host)."""
    return sum(cost(e)[0] for _, e in temps) + sum(0 if e.is_Symbol else cost(e)[0] for e in reduced)


def _shared_forms(
    exprs: list[sp.Expr], ctx: Context
) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """CSE of one step's contributions, each in its cheapest form or expanded, whichever pair of choices
    needs the fewest calls: ``dh*z`` and ``dh*(1 - z)`` share ``dh*z`` once the second is expanded, so
    d[h_tilde] becomes ``dh - dh_prev`` (one call instead of two)."""
    forms = [(cheapest(e, ctx), _expanded(e, ctx)) for e in exprs]
    best = sp.cse([f for f, _ in forms], sp.numbered_symbols("g"), optimizations=None)
    if len(exprs) > 4:  # 2^k CSE runs: keep derivation fast for wide steps
        return best
    for pick in itertools.product((0, 1), repeat=len(exprs)):
        if any(pick) and all(forms[i][0] != forms[i][1] or not k for i, k in enumerate(pick)):
            trial = sp.cse([f[k] for f, k in zip(forms, pick, strict=True)], sp.numbered_symbols("g"),
                           optimizations=None)  # fmt: skip
            if _calls(*trial) < _calls(*best):
                best = trial
    return best


def _expanded(e: sp.Expr, ctx: Context) -> sp.Expr:
    """``e`` expanded, unless that applies a new function or loses accuracy (then ``e``)."""
    x = sp.expand(e)
    return x if same_functions(x, e) and as_accurate(x, e, ctx) else e


def _templates_follow_the_rules(g: Schedule) -> None:
    """The matmul adjoints are written below as templates (``d[left] = d[step] @ W.T``, ``dW = left.T @
    d[step]``, bias gradients as column sums); every contribution the derivation made from
    ``LINEAR_RULES`` must be exactly that, so a changed rule cannot leave the templates silently behind."""
    for der in (g.der, g.head):
        for c in der.contributions:
            if c.kind in REDUCTIONS:  # the template applies the reduction itself to d[source]
                expected = reduction(c.kind, MatrixSymbol(adjoint_name(c.source), n, c.expr.shape[1]))
                if c.expr != expected:
                    raise NotImplementedError(
                        f"reduce.RULES[{c.kind!r}] gives {c.expr} for {c.target}, but the generated code "
                        f"computes {expected}: change rt.row_{c.kind} with the rule"
                    )
            if c.kind not in ("matmul_left", "matmul_right", "bias"):
                continue
            rows, cols = c.expr.shape
            if c.kind == "matmul_left":
                W = der.cell.params[str(c.weight)].symbol
                expected = MatrixSymbol(adjoint_name(c.source), rows, W.shape[1]) * W.T
            elif c.kind == "matmul_right":
                dY = MatrixSymbol(adjoint_name(c.source), n, cols)
                expected = MatrixSymbol(str(c.left), n, rows).T * dY
            else:
                expected = OneMatrix(1, n) * MatrixSymbol(adjoint_name(c.source), n, cols)
            if c.expr != expected:
                raise NotImplementedError(
                    f"LINEAR_RULES[{c.kind!r}] gives {c.expr} for {c.target}, but the generated code "
                    f"computes {expected}: change the matmul templates of adjoint_code.py with the rule"
                )


def emit_backward(w: Writer, g: Schedule, fuser: Fuser | None = None) -> None:
    """The body of ``_backward(params, cache, dH, buf, input_grad, upstream)`` (see the module docstring);
    with a fuser, its loop with the elementwise runs as kernels (the fused module)."""
    _templates_follow_the_rules(g)
    w.indent = 1
    for state in g.states:
        if state != OUTPUT:
            w(f'{g.seq(state)} = cache["{g.seq(state)}"]')
    for name in g.cached():
        w(f'{name if name == "A" else name + "_all"} = cache["{name}"]')
    for name in g.inputs_backward:
        w(f'{sequence(name)} = cache["{sequence(name)}"]  # the per-step input {name}: no gradient')
    recurrent = [lf for lf in g.runs if lf != INPUT]
    g.unpack(w, [wn for lf in recurrent for run in g.runs[lf] for wn in run.weights] + g.vectors)
    g.fused_weights(w, recurrent)
    w(f'dA = buf("dA", (T, n, {times_h(g.G)}), dtype)  # adjoints of the linear steps, all t')
    for lin in g.order:
        if lin.name in g.constant:  # backward skips it: its block stays zero
            block = g.cols(g.slot[lin.name], g.slot[lin.name] + 1)
            w(f"dA[:, :, {block}] = 0  # the loss does not depend on {lin.name}")
    for state, prev in zip(g.states, g.prevs, strict=True):
        note = f"not from buf: it is returned as the gradient of {state}0"
        w(f"{adjoint_name(prev)} = np.zeros((n, nh), dtype=dtype)  # {note}")
    for v in g.vectors:
        w(f"d{v}_rows = np.zeros((n, nh), dtype=dtype)  # d{v} summed over t, per batch row")
    for state in g.states:
        if state != OUTPUT:  # the gradient on a last state enters at its sequence's last step
            w(f'{_upstream(g, state)} = rt.state_upstream(upstream, "{state}", dH, buf)')
    if g.x_rows:
        w(f"{INPUT}_e = {g.x_rows_code()}")
        # every step assigns its row, unless the loss depends on no step that reads X elementwise
        new = "np.zeros((T, n, nh), dtype=dtype)" if _x_rows_constant(g) else 'buf("dX_e", (T, n, nh), dtype)'
        w(f"d{INPUT}_e = {new}  # the elementwise part of dX, row t is dx_t")
    w.indent = 2
    body_start = len(w.lines)
    adj = _Adjoints(w, g)
    adj.assigned |= set(g.vectors)
    d_out = adjoint_name(OUTPUT)
    adj.buffers.append(d_out)
    w(f"# BPTT: the upstream gradient of step t plus what step t+1 sent back through {OUTPUT}_prev")
    w(f"np.add(dH_t, {adjoint_name(g.prevs[g.states.index(OUTPUT)])}, out={d_out})")
    adj.assigned.add(OUTPUT)
    for state, prev in zip(g.states, g.prevs, strict=True):
        if state != OUTPUT:
            note = f"what step t+1 sent back through {prev}, plus step t's upstream"
            w(f"np.add({_upstream(g, state)}_t, {adjoint_name(prev)}, out={adjoint_name(state)})  # {note}")
            adj.buffers.append(adjoint_name(state))
            adj.assigned.add(state)
    for step in reversed(g.cell.steps):
        if step.name not in g.constant:
            adj.step(step.name)
    for prev in g.prevs:
        runs = g.runs.get(prev, [])
        if runs:
            w(f"# {g.eq_list([r for run in runs for r in run.steps])} grad of the {prev} terms, fused")
        for run in runs:
            t = "dA_t" if (run.lo, run.hi) == (0, g.G) else f"dA_t[:, {g.cols(run.lo, run.hi)}]"
            adj.accumulate_matmul(prev, t, g.fused(run))
    body = w.lines[body_start:]
    del w.lines[body_start:]
    w.indent = 1
    adj.em.define_constants(w, "dtype")
    alloc_start = len(w.lines)
    for name in dict.fromkeys(adj.buffers + [f"tmp{i}" for i in range(adj.em.count)]):
        w(f'{name} = buf("{name}", (n, nh), dtype)')
    for wt in adj.transposed:
        # a transposed view as the right BLAS operand costs ~1.5x at n = 32 rows: copy it once per call
        w(f'{wt} = rt.weight_buffer(buf, "{wt}", {wt[:-2]}.shape[::-1], dtype)  # a .T operand is slower')
        w(f"np.copyto({wt}, {wt[:-2]}.T)")
    seqs: dict[str, str] = {}
    for state, prev in zip(g.states, g.prevs, strict=True):
        seqs[prev] = f"{g.seq(state)}[T - 1::-1]"
    for state in g.states:
        seqs[state] = f"{g.seq(state)}[:0:-1]"
    seqs |= {"dH_t": "dH[::-1]", "dA_t": "dA[::-1]"}
    seqs |= {f"{_upstream(g, s)}_t": f"{_upstream(g, s)}[::-1]" for s in g.states if s != OUTPUT}
    seqs |= {name: f"{name}_all[::-1]" for name in g.saved}
    seqs |= {name: f"{sequence(name)}[::-1]" for name in g.inputs_backward}
    if g.x_rows:
        seqs |= {ROW: f"{INPUT}_e[::-1]", adjoint_name(ROW): f"d{INPUT}_e[::-1]"}
    kept = g.kept()
    for lin in g.order:
        seqs[adjoint_name(lin.name)] = g.block("dA[::-1]", "dA[::-1, :, {}]", lin)
        if lin.name in kept:
            seqs[lin.name] = f"{lin.name}_all[::-1]"
        elif lin.name in g.saved_linear:
            seqs[lin.name] = g.block("A[::-1]", "A[::-1, :, {}]", lin)
    if fuser is None:
        loop(w, seqs, body)
    else:
        returned = tuple(adjoint_name(p) for p in g.prevs) + tuple(f"d{v}_rows" for v in g.vectors)
        loop_start = len(w.lines)
        fuser.loop(
            w, seqs, body, prefix="_backward", constants=list(adj.em.constants), views={},
            vectors=tuple(g.vectors), live_out=returned, reverse=True,
        )  # fmt: skip
        fuser.prune(w, alloc_start, loop_start)
    w.indent = 1
    _parameter_gradients(w, g)


def _x_rows_constant(g: Schedule) -> bool:
    """Whether no step that reads X elementwise is differentiated (dx_t is then never written)."""
    return all(s.name in g.constant for s in g.cell.steps if ROW in s.inputs)


def _upstream(g: Schedule, state: str) -> str:
    """The per-step upstream gradient of a state other than the output (``dS_c`` for LSTM's c)."""
    return f"d{g.seq(state)}"


def _parameter_gradients(w: Writer, g: Schedule) -> None:
    w("# parameter gradients: each is a sum over t, computed as one matmul over all T*n rows")
    grads: dict[str, str] = {}
    dW = "_dW" if "W" in g.cell.params else "dW"  # a parameter W (SRU's) has the adjoint dW
    w(f"dA_rows = dA.reshape(T * n, {times_h(g.G)})  # column blocks of it are strided BLAS operands")
    x_runs = g.runs.get(INPUT, [])
    # token ids send each row of dA to exactly one row of dW: the bias gradient of the columns the X run
    # covers, a sum of T*n rows, is the sum of dW's V rows (one run: a pass over V rows, not T*n)
    token_db = len(x_runs) == 1
    if token_db:
        lo, hi = x_runs[0].lo, x_runs[0].hi
        parts = [f"dA_rows[:, {g.cols(0, lo)}].sum(axis=0)"] if lo > 0 else []
        parts.append(f"{dW}.sum(axis=0)")
        parts += [f"dA_rows[:, {g.cols(hi, g.G)}].sum(axis=0)"] if hi < g.G else []
        token_sum = parts[0] if len(parts) == 1 else f"np.concatenate(({', '.join(parts)}))"
    for left, runs in g.runs.items():
        for run in runs:
            rows = "dA_rows" if (run.lo, run.hi) == (0, g.G) else f"dA_rows[:, {g.cols(run.lo, run.hi)}]"
            if left != INPUT and all(s.name in g.constant for s in run.steps):
                continue  # zero gradients (below): its left factor may hold what overflowed, 0*inf is nan
            if left == INPUT:
                w("if tokens:")
                w(f'    {dW} = rt.token_weight_grad(X, {rows}, params["{run.weights[0]}"].shape[0])')
                if token_db:
                    w(f"    db = {token_sum}")
                w("else:")
                w(f"    {dW} = X.reshape(T * n, -1).T @ {rows}")
                if token_db:
                    w("    db = dA_rows.sum(axis=0)")
            else:
                if left in g.prevs:
                    stacked = f"{g.seq(g.state_of(left))}[:-1]"
                elif left in g.states:  # a state's new value (two layers in one step): rows 1..T
                    stacked = f"{g.seq(left)}[1:]"
                else:
                    stacked = f"{left}_all"
                w(f"{dW} = {stacked}.reshape(T * n, nh).T @ {rows}")
            if len(run.weights) == 1:
                w(f"d{run.weights[0]} = {dW}")
            else:
                for k, name in enumerate(run.weights):
                    w(f"d{name} = {dW}[:, {g.cols(k, k + 1)}]")
            for name in run.weights:
                grads[name] = f"d{name}"
    if not token_db:
        w("db = dA_rows.sum(axis=0)")
    for s in g.order:
        i = g.slot[s.name]
        for k, bias in enumerate(s.biases):
            view = f"db[{g.cols(i, i + 1) if g.G > 1 else ':'}]"
            grads[bias] = view if k == 0 else f"{view}.copy()"  # one array per key: callers update in place
    for v in g.vectors:
        grads[v] = f"d{v}_rows.sum(axis=0)"
    for name in g.unused:
        grads[name] = f'np.zeros_like(params["{name}"])'  # read only by pruned steps
    for s in g.order:
        if s.name in g.constant:  # the loss does not depend on it
            for name in (*(t.weight for t in s.terms), *s.biases):
                grads[name] = f'np.zeros_like(params["{name}"])'

    missing = set(g.cell_params) - set(grads)
    assert not missing, missing
    w("grads = {")
    for name in g.cell_params:
        w(f'    "{name}": {grads[name]},')
    for state, prev in zip(g.states, g.prevs, strict=True):
        w(f'    "{state}0": {adjoint_name(prev)},')
    w("}")
    w("if input_grad:  # asked for by the caller (validate.check_input_grad)")
    w.indent = 2
    terms = [
        f"{'dA' if (r.lo, r.hi) == (0, g.G) else f'dA[:, :, {g.cols(r.lo, r.hi)}]'} @ {g.fused_x(r)}.T"
        for r in x_runs
    ]
    if g.x_rows:
        terms.append(f"d{INPUT}_e")
    w(f'grads["X"] = {" + ".join(terms)}')
    w.indent = 1
    w("return grads")
