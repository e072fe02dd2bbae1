"""Every mathematical claim a report makes, computed numerically and compared with an independent value:
finite differences of the loss, a hand-written LSTM, the generated module's own backward. Never the report's
text against itself (issue 27)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

import grusym
from grusym.report.analysis.jacobian import SIGN, within_step
from grusym.report.analysis.limits import limits
from grusym.report.build import default_out
from grusym.report.context import Context, subject
from grusym.report.core.bptt import state_totals
from grusym.report.core.loop import NAMESPACE, reference_source
from grusym.report.numbers.escape import ESCAPE
from grusym.report.numbers.problem import toy_tokens
from grusym.report.numbers.values import initial_state, step_values
from grusym.symbolic.cell import OUTPUT, prev_name
from grusym.symbolic.variants import CELLS

OUT = default_out()
NAMES = list(CELLS)


def _worked(name: str) -> dict:
    return json.loads((OUT / name / "figures.json").read_text(encoding="utf-8"))["worked"]


def _arrays(d: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- section 5: the plain loop computes the generated module's gradients


def run_reference(sub, params: dict, X: np.ndarray, Y: np.ndarray, h0) -> tuple[dict, list[np.ndarray]]:
    """Execute the report's listing on (X, Y): its gradients and the gradients of the initial states."""
    namespace: dict = {}
    exec(NAMESPACE + reference_source(Context(sub)), namespace)
    values = step_values(sub.cell, params, X, h0, sub.module)
    T, n = X.shape
    q = params["W_hq"].shape[1]
    x_weight = next(t.weight for st in sub.cell.steps for t in st.terms if t.left == "X")  # sru's is W
    onehot = np.eye(params[x_weight].shape[0])[X]
    v = {k: [None, *a] for k, a in values.items()} | {"X": [None, *onehot]}
    logits = values[OUTPUT] @ params["W_hq"] + params["b_q"]
    dlogits = [None, *((_softmax(logits) - np.eye(q)[Y]) / (T * n))]  # the loss rule, typed here
    grads, *initial = namespace["reference_backward"](params, v, dlogits)
    return grads, initial


def _check_reference(sub) -> None:
    m = sub.module
    X, Y = toy_tokens(5, 3)
    h = 4 if getattr(m, "INPUT_ELEMENTWISE", False) else 3  # sru reads X elementwise: h == d == 4 ids
    params = m.init_params(4, h, 4, seed=2, scale=0.7)
    params = {k: p + 0.3 if p.ndim == 1 else p for k, p in params.items()}  # biases and vectors nonzero
    rng = np.random.default_rng(1)
    h0 = initial_state(sub.cell, 3, h, rng.uniform(-0.5, 0.5, (3, h * len(sub.cell.states))))
    grads, initial = run_reference(sub, params, X, Y, h0)
    _, want, _ = m.loss_and_grads(params, X, Y, h0)
    for k in params:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-10, atol=1e-13, err_msg=f"{sub.name}: {k}")
    for k, got in zip(sub.cell.states, initial, strict=True):
        np.testing.assert_allclose(got, want[f"{k}0"], rtol=1e-10, atol=1e-13, err_msg=f"{sub.name}: {k}0")


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_loop_computes_the_generated_gradients(name):
    _check_reference(subject(name))


LITERATURE = (
    "min_lstm",
    "nested_lstm",
    "recurrent_highway",
    "light_gru",
    "irnn",
    "multiplicative_integration",
)


def _user(spec: str):
    from grusym.report.context import cell_subject
    from grusym.symbolic.usercell import derive_module, load_cell

    cell = load_cell(spec)
    return cell_subject(cell, derive_module(cell))


def _user_specs() -> list[str]:
    from pathlib import Path

    from grusym.examples.cells import EXAMPLES, path

    here = Path(__file__).resolve().parent / "literature_cells.py"
    return [path(e) for e in EXAMPLES] + [f"{here}:{n}" for n in LITERATURE]


@pytest.mark.parametrize("spec", _user_specs(), ids=lambda s: s.rsplit(":", 1)[1])
def test_the_reference_loop_of_a_users_cell_computes_its_gradients(spec):
    """Every example cell and every literature cell that derives right: three states (nested LSTM),
    parameter vectors (multiplicative integration), relu, a softplus gate, a second layer within a step."""
    _check_reference(_user(spec))


@pytest.mark.parametrize("spec", _user_specs(), ids=lambda s: s.rsplit(":", 1)[1])
def test_the_message_of_a_users_cell_is_linear_in_what_reaches_its_state(spec):
    """(J.1) for the states of users' cells: the derivation's messages against (outside adjoints) J_t, with
    J_t a finite difference of the generated step (not the closed form)."""
    sub = _user(spec)
    m, cell = sub.module, sub.cell
    rng = np.random.default_rng(3)
    n, h, k = 2, 3, len(cell.states)
    h = 4 if getattr(m, "INPUT_ELEMENTWISE", False) else h  # sru reads X elementwise: h == d == 4 ids
    params = m.init_params(4, h, 4, seed=3, scale=0.6)
    params = {q: rng.normal(0, 0.5, p.shape) if p.ndim == 1 else p for q, p in params.items()}
    X, Y = toy_tokens(4, n)
    s0 = rng.uniform(-0.5, 0.5, (n, k * h))
    from grusym.report.numbers.adjoints import bptt_values

    run = bptt_values(sub, params, X, Y, initial_state(cell, n, h, s0))
    adj = run["adjoints"]
    states = [s0]
    for t in range(X.shape[0]):
        new = m.step(params, X[t], initial_state(cell, n, h, states[-1]))
        states.append(np.concatenate(new if isinstance(new, tuple) else [new], axis=1))
    T = X.shape[0]
    for t in range(T):
        Jt = np.zeros((n, k * h, k * h))
        for j in range(k * h):
            e = np.zeros((n, k * h))
            e[:, j] = 1e-6

            def step(full: np.ndarray, t: int = t) -> np.ndarray:
                new = m.step(params, X[t], initial_state(cell, n, h, full))
                return np.concatenate(new if isinstance(new, tuple) else [new], axis=1)

            Jt[:, :, j] = (step(states[t] + e) - step(states[t] - e)) / 2e-6
        # a state no step reads back (sru's h) sends no message: zero, as its columns of J_t are
        zero = np.zeros_like(adj["dh"])
        outside = np.concatenate(
            [
                adj["dh"][t]
                if s == OUTPUT
                else (adj.get(f"d{prev_name(s)}", zero)[t + 1] if t + 1 < T else 0 * adj["dh"][t])
                for s in cell.states
            ],
            axis=1,
        )
        message = np.concatenate([adj.get(f"d{prev_name(s)}", zero)[t] for s in cell.states], axis=1)
        np.testing.assert_allclose(np.einsum("ni,nij->nj", outside, Jt), message, rtol=1e-5, atol=1e-9)


def test_a_wrong_line_in_the_reference_loop_is_caught(monkeypatch_free=None):
    """The comparison above can fail: the listing with one message line dropped gives other gradients."""
    sub = subject("gru")
    text = reference_source(Context(sub))
    broken = text.replace('        dh_prev += da_r @ p["W_hr"].T  # (3.3)\n', "")
    assert broken != text
    namespace: dict = {}
    exec(NAMESPACE + broken, namespace)
    X, Y = toy_tokens(5, 3)
    params = sub.module.init_params(4, 3, 4, seed=2, scale=0.7)
    h0 = np.zeros((3, 3))
    values = step_values(sub.cell, params, X, h0, sub.module)
    v = {k: [None, *a] for k, a in values.items()} | {"X": [None, *np.eye(4)[X]]}
    logits = values["h"] @ params["W_hq"] + params["b_q"]
    dlogits = [None, *((_softmax(logits) - np.eye(4)[Y]) / 15)]
    grads, _ = namespace["reference_backward"](params, v, dlogits)
    _, want, _ = sub.module.loss_and_grads(params, X, Y, h0)
    assert not np.allclose(grads["W_hr"], want["W_hr"], rtol=1e-6)


# ---- (B.1.c): the LSTM's cell-state adjoint, against finite differences of an LSTM written here


def _lstm_loss(p: dict, X: np.ndarray, Y: np.ndarray, bump: tuple[int, np.ndarray] | None = None) -> float:
    """The mean cross-entropy of an LSTM (torch's i, f, g, o), written here; ``bump``: (t, e) adds e to c_t
    right after it is computed (t counted from 1)."""
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    T, n = X.shape
    h = c = np.zeros((n, p["W_hi"].shape[0]))
    total = 0.0
    for t in range(1, T + 1):
        x = np.eye(p["W_xi"].shape[0])[X[t - 1]]
        gate = lambda k, x=x, h=h: x @ p[f"W_x{k}"] + h @ p[f"W_h{k}"] + p[f"b_x{k}"] + p[f"b_h{k}"]  # noqa: E731
        i, f, g, o = sig(gate("i")), sig(gate("f")), np.tanh(gate("g")), sig(gate("o"))
        c = f * c + i * g
        if bump is not None and bump[0] == t:
            c = c + bump[1]
        h = o * np.tanh(c)
        z = h @ p["W_hq"] + p["b_q"]
        total += float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), Y[t - 1]]))
    return total / (T * n)


def _fd_in_c(p: dict, X: np.ndarray, Y: np.ndarray, t: int, eps: float = 1e-6) -> np.ndarray:
    n, h = X.shape[1], p["W_hi"].shape[0]
    out = np.zeros((n, h))
    for i in range(n):
        for j in range(h):
            e = np.zeros((n, h))
            e[i, j] = eps
            out[i, j] = (_lstm_loss(p, X, Y, (t, e)) - _lstm_loss(p, X, Y, (t, -e))) / (2 * eps)
    return out


def test_lstm_cell_state_adjoint_is_the_carry_plus_the_path_through_h():
    """(B.1.c) delta c_t = delta^next c_t + delta h_t o_t (1 - tanh^2 c_t): the report's formula, evaluated
    from its own objects, and the worked table's delta c_t both equal dL/dc_t of an LSTM written here."""
    w, c = _worked("lstm"), Context(subject("lstm"))
    p, X, Y = _arrays(w["params"]), np.asarray(w["X"]), np.asarray(w["Y"])
    assert _lstm_loss(p, X, Y) == pytest.approx(w["loss"], rel=1e-12)
    adj = {k: np.asarray(v) for k, v in w["adjoints"].items()}
    values = {k: np.asarray(v) for k, v in w["values"].items()}
    ((j, J),) = state_totals(c)["c"]  # what reaches c_t inside its step: through h_t only
    assert j == "h"
    T = X.shape[0]
    for t in range(1, T + 1):
        fd = _fd_in_c(p, X, Y, t)
        nxt = adj["dc_prev"][t] if t < T else np.zeros_like(fd)  # the message step t+1 sent back
        dJ = J.evaluate({k: v[t - 1] for k, v in values.items()}, p)  # (n, h, h): dh_t/dc_t
        formula = nxt + np.einsum("ni,nij->nj", adj["dh"][t - 1], dJ)
        np.testing.assert_allclose(formula, fd, rtol=1e-6, atol=1e-10, err_msg=f"(B.1.c) at t = {t}")
        np.testing.assert_allclose(adj["dc"][t - 1], fd, rtol=1e-6, atol=1e-10, err_msg=f"table at t = {t}")
        # the half the old text printed (the carry alone, or the in-step part alone) is not dL/dc_t
        assert not np.allclose(formula - nxt, fd, rtol=1e-3) or not np.any(nxt)
        assert not np.allclose(nxt, fd, rtol=1e-3)


def test_lstm_cell_state_adjoint_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    w = _worked("lstm")
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w["params"].items()}
    X, Y = np.asarray(w["X"]), np.asarray(w["Y"])
    T, n = X.shape
    h = c = torch.zeros((n, p["W_hi"].shape[0]), dtype=torch.float64)
    cells, loss = [], 0
    for t in range(T):
        x = torch.nn.functional.one_hot(torch.tensor(X[t]), 4).double()
        gate = lambda k, x=x, h=h: x @ p[f"W_x{k}"] + h @ p[f"W_h{k}"] + p[f"b_x{k}"] + p[f"b_h{k}"]  # noqa: E731
        i, f, g, o = (
            torch.sigmoid(gate("i")),
            torch.sigmoid(gate("f")),
            torch.tanh(gate("g")),
            torch.sigmoid(gate("o")),
        )
        c = f * c + i * g
        c.retain_grad()
        cells.append(c)
        h = o * torch.tanh(c)
        loss = loss + torch.nn.functional.cross_entropy(
            h @ p["W_hq"] + p["b_q"], torch.tensor(Y[t]), reduction="sum"
        )
    (loss / (T * n)).backward()
    for t in range(T):
        np.testing.assert_allclose(w["adjoints"]["dc"][t], cells[t].grad.numpy(), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_each_states_total_adjoint_is_its_formula(name):
    """(B.1), (B.1.k): every state's total adjoint in the worked table is its message plus what reaches it
    inside its step, evaluated from the report's objects (a cell of one state: the head part too)."""
    w, c = _worked(name), Context(subject(name))
    p = _arrays(w["params"])
    adj = {k: np.asarray(v) for k, v in w["adjoints"].items()}
    values = {k: np.asarray(v) for k, v in w["values"].items()}
    T = np.asarray(w["X"]).shape[0]
    for k, parts in state_totals(c).items():
        for t in range(T):
            message = adj[f"d{prev_name(k)}"][t + 1] if t + 1 < T else 0.0
            total = message + (adj["dH"][t] if k == OUTPUT else 0.0)
            for j, J in parts:
                outside = (
                    adj["dh"][t] if j == OUTPUT else (adj[f"d{prev_name(j)}"][t + 1] if t + 1 < T else 0.0)
                )
                total = total + np.einsum(
                    "ni,nij->nj",
                    np.broadcast_to(outside, adj["dH"][t].shape),
                    J.evaluate({x: v[t] for x, v in values.items()}, p),
                )
            np.testing.assert_allclose(
                total, adj[f"d{k}"][t], rtol=1e-10, atol=1e-14, err_msg=f"{k} at t = {t + 1}"
            )


# ---- (J.1), (J.2): what the message is linear in, and the product for the loss of one step


@pytest.mark.parametrize("name", NAMES)
def test_the_message_is_linear_in_what_reaches_the_state_from_outside(name):
    """(J.1): (delta^next s_{t-1}) = (delta h_t, delta^next c_t, ...) J_t with the worked J; for several
    states the vector of totals (delta h_t, delta c_t) would not give it."""
    w, cell = _worked(name), CELLS[name].cell()
    adj = {k: np.asarray(v) for k, v in w["adjoints"].items()}
    J = np.asarray(w["J"])  # (T, n, S h, S h)
    T = J.shape[0]
    for t in range(T):
        outside = np.concatenate(
            [
                adj["dh"][t]
                if k == OUTPUT
                else (adj[f"d{prev_name(k)}"][t + 1] if t + 1 < T else 0 * adj["dh"][t])
                for k in cell.states
            ],
            axis=1,
        )
        message = np.concatenate([adj[f"d{prev_name(k)}"][t] for k in cell.states], axis=1)
        np.testing.assert_allclose(np.einsum("ni,nij->nj", outside, J[t]), message, rtol=1e-9, atol=1e-14)
        if len(cell.states) > 1 and t + 1 < T:
            totals = np.concatenate([adj[f"d{k}"][t] for k in cell.states], axis=1)
            assert not np.allclose(np.einsum("ni,nij->nj", totals, J[t]), message, rtol=1e-6)


@pytest.mark.parametrize("name", ["gru", "lstm", "rnn_tanh"])
def test_the_loss_of_one_step_reaches_back_through_a_product_of_jacobians(name):
    """(J.2): d l_t / d s_0 from the generated backward (dH nonzero at step t only) equals
    d l_t / d s_t J_t ... J_1, each J_t a finite difference of the generated step."""
    m, cell = grusym.load(name), CELLS[name].cell()
    rng = np.random.default_rng(4)
    n, h, k = 2, 3, len(cell.states)
    params = m.init_params(3, h, 2, seed=4, scale=0.8)
    X = rng.normal(size=(4, n, 3))
    s0 = rng.uniform(-0.5, 0.5, (n, k * h))

    def step(t: int, full: np.ndarray) -> np.ndarray:
        new = m.step(params, X[t], initial_state(cell, n, h, full))
        return np.concatenate(new if isinstance(new, tuple) else [new], axis=1)

    states = [s0]
    for t in range(X.shape[0]):
        states.append(step(t, states[-1]))
    g = rng.normal(size=(n, h))
    T = X.shape[0]
    dH = np.zeros((T, n, h))
    dH[-1] = g
    _, cache = m.forward(params, X, initial_state(cell, n, h, s0))
    grads = m.backward(params, cache, dH)
    want = np.concatenate([grads[f"{s}0"] for s in cell.states], axis=1)
    row = np.concatenate([g, np.zeros((n, (k - 1) * h))], axis=1)  # d l_T / d s_T: the head reads h only
    for t in reversed(range(T)):
        Jt = np.zeros((n, k * h, k * h))
        for j in range(k * h):
            e = np.zeros((n, k * h))
            e[:, j] = 1e-6
            Jt[:, :, j] = (step(t, states[t] + e) - step(t, states[t] - e)) / 2e-6
        row = np.einsum("ni,nij->nj", row, Jt)
    np.testing.assert_allclose(row, want, rtol=1e-6, atol=1e-10)


# ---- the limits: each classified over the whole J, checked by pinning the gate in the generated module


def _pinnable(cell, value: str) -> str | None:
    """The linear step whose bias alone can pin ``value`` (a primitive of it), or None."""
    step = next(s for s in cell.steps if s.name == value)
    if len(step.inputs) != 1:
        return None  # a primitive of several values (gru_reset_after's h_tilde): no one bias pins it
    lin = next((s for s in cell.steps if s.name == step.inputs[0] and s.kind == "linear" and s.biases), None)
    return lin.name if lin is not None else None


def _limit_cases():
    for name in NAMES:
        cell = CELLS[name].cell()
        c = Context(subject(name))
        for lim in limits(cell, c.jac_full):
            if _pinnable(cell, lim.value):
                yield pytest.param(name, lim.value, str(lim.at), id=f"{name}-{lim.value}={lim.at}")


@pytest.mark.parametrize(("name", "value", "at"), list(_limit_cases()))
def test_each_limit_is_what_the_generated_step_does_there(name, value, at):
    """A gate pinned at 0 or 1 (a tanh output at +1) by zero weights and a bias of -+60: the finite-difference
    Jacobian of the generated step equals J there, the blocks said to vanish vanish, and the kind holds:
    'weights only' means zeroing every weight on J's paths zeroes J, 'weight-free' that something is left."""
    m, cell = grusym.load(name), CELLS[name].cell()
    c = Context(subject(name))
    lim = next(x for x in limits(cell, c.jac_full) if x.value == value and str(x.at) == at)
    lin = next(s for s in cell.steps if s.name == _pinnable(cell, value))
    n, h, k = 3, 4, len(cell.states)
    rng = np.random.default_rng(7)
    params = m.init_params(3, h, 2, seed=7, scale=0.8)
    params = {q: rng.normal(0, 0.5, p.shape) if p.ndim == 1 else p for q, p in params.items()}
    for term in lin.terms:
        params[term.weight] = np.zeros_like(params[term.weight])
    target = 1.0 if lim.at is SIGN else float(lim.at)  # SIGN: the +1 side
    bias = 60.0 if target == 1 else -60.0
    for b in lin.biases:
        params[b] = np.full_like(params[b], bias / len(lin.biases))
    X = rng.normal(size=(1, n, 3))
    s = rng.uniform(-0.8, 0.8, (n, k * h))

    def fd(p: dict) -> np.ndarray:
        def step(full: np.ndarray) -> np.ndarray:
            new = m.step(p, X[0], initial_state(cell, n, h, full))
            return np.concatenate(new if isinstance(new, tuple) else [new], axis=1)

        out = np.zeros((n, k * h, k * h))
        for j in range(k * h):
            e = np.zeros((n, k * h))
            e[:, j] = 1e-6
            out[:, :, j] = (step(s + e) - step(s - e)) / 2e-6
        return out

    numeric = fd(params)
    values = {q: v[0] for q, v in step_values(cell, params, X, initial_state(cell, n, h, s), m).items()}
    assert np.allclose(values[value], target, atol=1e-12)
    there = {key: B for key, B in lim.blocks.items()}
    closed = np.concatenate(
        [
            np.concatenate(
                [
                    there[(a, b)].evaluate(values | {"sign": np.ones_like(values[value])}, params)
                    for b in cell.states
                ],
                axis=2,
            )
            for a in cell.states
        ],
        axis=1,
    )
    np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-8)
    index = {st: i for i, st in enumerate(cell.states)}
    for a, b in lim.zero:
        block = numeric[:, index[a] * h : (index[a] + 1) * h, index[b] * h : (index[b] + 1) * h]
        assert np.allclose(block, 0, atol=1e-8), (a, b)
    if lim.kind == "cut":
        assert np.allclose(numeric, 0, atol=1e-8)
    if lim.kind == "copy":
        assert np.allclose(numeric, np.eye(k * h), atol=1e-8)
    if lim.kind in ("weights only", "weight-free"):
        on_paths = {f.weight for B in c.blocks.values() for t in B.terms for f in t if f.weight}
        cut = {q: (np.zeros_like(p) if q in on_paths else p) for q, p in params.items()}
        left = fd(cut)
        if lim.kind == "weights only":
            assert np.allclose(left, 0, atol=1e-8)
        else:
            assert not np.allclose(left, 0, atol=1e-6)


def test_the_lstms_output_gate_at_zero_cuts_h_but_not_the_carry():
    """Issue 27: o_t = 0 was said to cut the gradient to the previous state; dc_t/dc_{t-1} = diag(f) stays."""
    c = Context(subject("lstm"))
    (lim,) = [x for x in limits(c.cell, c.jac_full) if x.value == "o" and x.at == 0]
    assert set(lim.zero) == {("h", "h"), ("h", "c")} and lim.kind == "weight-free"


# ---- the ranges the bound (J.3) uses, and the state's range


@pytest.mark.parametrize("name", NAMES)
def test_the_ranges_the_bound_states_hold_along_random_runs(name):
    from grusym.report.analysis.jacobian import value_ranges

    m, cell = grusym.load(name), CELLS[name].cell()
    ranges = value_ranges(cell)
    rng = np.random.default_rng(5)
    params = m.init_params(3, 4, 2, seed=5, scale=2.0)
    params = {k: rng.normal(0, 2, p.shape) if p.ndim == 1 else p for k, p in params.items()}
    s0 = rng.uniform(-1, 1, (6, 4 * len(cell.states)))
    values = step_values(cell, params, rng.normal(0, 3, size=(20, 6, 3)), initial_state(cell, 6, 4, s0), m)
    for v, (lo, hi) in ranges.items():
        assert lo <= values[v].min() and values[v].max() <= hi, v


# ---- Appendix B: the training run starts where the run it is compared with starts, and trains


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_the_training_run_is_compared_with_its_own_start(name):
    data = json.loads((OUT / name / "figures.json").read_text(encoding="utf-8"))
    curves = data["escape"]["curves"][name]
    trained = next(e for e in curves if e["label"] == "after training")
    m, cell = grusym.load(name), CELLS[name].cell()
    X, Y = toy_tokens(ESCAPE["train_T"], ESCAPE["train_n"])
    params = m.init_params(4, 16, 4, seed=0, scale=ESCAPE["scale"])  # the first run's parameters (b = 0)
    h0 = initial_state(cell, ESCAPE["train_n"], 16)
    before = m.loss(params, X, Y, h0)
    for _ in range(ESCAPE["train_steps"]):
        _, g, _ = m.loss_and_grads(params, X, Y, h0)
        params = {k: p - ESCAPE["lr"] * g[k] for k, p in params.items()}
    assert trained["loss"] == pytest.approx([before, m.loss(params, X, Y, h0)], rel=1e-9)
    assert trained["loss"][1] < 0.5 * trained["loss"][0]  # it trained: the text may say so
    assert curves[0]["bias"] in (None, 0.0)


def test_within_step_dh_dc_of_the_lstm_is_its_finite_difference():
    """The in-step derivative (B.1.c) uses, dh_t/dc_t = diag(o_t (1 - tanh^2 c_t)), against h(c) here."""
    J = within_step(CELLS["lstm"].cell(), "h", "c")
    rng = np.random.default_rng(0)
    o, cval = rng.uniform(0, 1, (2, 3)), rng.normal(size=(2, 3))
    got = J.evaluate({"o": o, "c": cval, "tanh_c": np.tanh(cval)}, {})
    eps = 1e-6
    fd = np.stack(
        [
            (o * np.tanh(cval + eps * np.eye(3)[j]) - o * np.tanh(cval - eps * np.eye(3)[j])) / (2 * eps)
            for j in range(3)
        ],
        axis=2,
    )
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-10)
    assert sp.Symbol("o", real=True) in J.terms[0][0].expr.free_symbols
