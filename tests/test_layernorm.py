"""Reductions over the hidden units and division by a cell value (issue 26, item 1): layer norm.

The layer_norm helper is compared with torch.nn.functional.layer_norm; the layernorm_lstm and layernorm_gru
examples with torch autograd running the same equations written here (float64, 1e-9: loss, every gradient,
the initial states, X, the last states, with lengths) and, without torch, with the tape autograd of
tests/reference_autograd.py; the symbolic oracle and every numeric check run on them; and each misuse of the
new constructs is refused in one line naming the cell and the step.
"""

from __future__ import annotations

import numpy as np
import pytest

from grusym.examples.cells import path
from grusym.gradcheck import check_variant
from grusym.oracle import check_oracle
from grusym.symbolic.cell import CellError, sigmoid, softplus, tanh
from grusym.symbolic.codegen import module_source
from grusym.symbolic.norm import layer_norm
from grusym.symbolic.usercell import declare, derive_module, load_cell

from . import reference_autograd
from .backends import needs_numba

TOL = 1e-9


def ln_rnn(c):
    """A tanh RNN whose pre-activation is layer-normalised: h = tanh(LN(X W_xh + h_prev W_hh + b_h))."""
    a = c.affine("h")
    c.let("h", tanh(layer_norm(c, a, c.vector("g", init=1), c.vector("s"), name="h")))


LN_LSTM = load_cell(path("layernorm_lstm"))
CELLS = {
    "layernorm_lstm": LN_LSTM,
    "layernorm_gru": load_cell(path("layernorm_gru")),
    "ln_rnn": declare(ln_rnn),
}
MODULES = {name: derive_module(cell) for name, cell in CELLS.items()}


def _problem(m, seed=0, T=5, n=3, d=4, h=6, q=5, tokens=False):
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed, scale=0.7)
    p = {k: (v if v.ndim == 2 else v + rng.normal(0, 0.4, v.shape)) for k, v in p.items()}
    X = rng.integers(0, d, (T, n)) if tokens else rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    states = tuple(rng.normal(0, 0.5, (n, h)) for _ in m.STATES)
    return p, X, Y, (states[0] if len(states) == 1 else states)


def _close(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    assert float(np.abs(a - b).max(initial=0.0)) <= TOL * scale, what


# ---- torch: the same equations, written out with torch's own layer norm


def _torch_step(name, P, x, state):
    import torch

    def LN(v, gain, shift):
        return torch.nn.functional.layer_norm(v, (v.shape[-1],), gain, shift, eps=1e-5)

    if name == "ln_rnn":
        return {"h": torch.tanh(LN(x @ P["W_xh"] + state["h"] @ P["W_hh"] + P["b_h"], P["g"], P["s"]))}
    h_prev = state["h"]
    if name == "layernorm_gru":
        z, r = (
            torch.sigmoid(LN(x @ P[f"W_x{k}"] + h_prev @ P[f"W_h{k}"], P[f"g_{k}"], P[f"s_{k}"]))
            for k in "zr"
        )
        h_tilde = torch.tanh(LN(x @ P["W_xh"] + (r * h_prev) @ P["W_hh"], P["g_h"], P["s_h"]))
        return {"h": z * h_prev + (1 - z) * h_tilde}
    a = {k: LN(x @ P[f"W_x{k}"] + state["h"] @ P[f"W_h{k}"], P[f"g_{k}"], P[f"s_{k}"]) for k in "ifgo"}
    c = torch.sigmoid(a["f"]) * state["c"] + torch.sigmoid(a["i"]) * torch.tanh(a["g"])
    return {"h": torch.sigmoid(a["o"]) * torch.tanh(LN(c, P["g_c"], P["s_c"])), "c": c}


def _torch_reference(name, m, p, X, Y, h0, lengths):
    """(loss, grads, last states, H) by torch autograd; X float (T, n, d) or token ids (one-hot rows)."""
    torch = pytest.importorskip("torch")
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    tokens = np.asarray(X).dtype.kind in "iu"
    width = p[next(k for k, dims in m.PARAMS.items() if dims[0] == "d")].shape[0]
    Xt = torch.tensor(np.eye(width)[X] if tokens else X, dtype=torch.float64, requires_grad=not tokens)
    init = (h0,) if len(m.STATES) == 1 else h0
    S0 = {
        s: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for s, v in zip(m.STATES, init, strict=True)
    }
    T, n = Y.shape
    lengths = np.full(n, T) if lengths is None else np.asarray(lengths)
    state, terms, H = dict(S0), [], []
    for t in range(T):
        new = _torch_step(name, P, Xt[t], state)
        valid = torch.tensor(t < lengths)
        state = {s: torch.where(valid[:, None], new[s], state[s]) for s in m.STATES}
        H.append(torch.where(valid[:, None], new["h"], 0))
        logits = new["h"] @ P["W_hq"] + P["b_q"]
        ce = torch.nn.functional.cross_entropy(logits, torch.tensor(Y[t]), reduction="none")
        terms.append((ce * valid).sum())
    loss = sum(terms) / int(lengths.sum())
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in P.items()} | {f"{s}0": v.grad.numpy() for s, v in S0.items()}
    if not tokens:
        grads["X"] = Xt.grad.numpy()
    last = tuple(state[s].detach().numpy() for s in m.STATES)
    return loss.item(), grads, last, torch.stack(H).detach().numpy()


def _compare(m, got, want):
    (loss, grads, last), (loss_w, grads_w, last_w) = got, want[:3]
    _close(loss, loss_w, "loss")
    assert set(grads) == set(grads_w)
    for k in grads_w:
        _close(grads[k], grads_w[k], k)
    last = last if isinstance(last, tuple) else (last,)
    for s, a, b in zip(m.STATES, last, last_w, strict=True):
        _close(a, b, f"last {s}")


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token_ids"])
@pytest.mark.parametrize("name", list(CELLS))
def test_layer_norm_cells_match_torch_autograd_and_its_layer_norm(name, tokens):
    """Loss, every gradient (parameters, initial states, X), last states and H against torch's layer_norm."""
    m = MODULES[name]
    p, X, Y, h0 = _problem(m, seed=3, tokens=tokens)
    lengths = [5, 2, 4]
    want = _torch_reference(name, m, p, X, Y, h0, lengths)
    _compare(m, m.loss_and_grads(p, X, Y, h0, lengths=lengths, input_grad=not tokens), want)
    _close(m.forward(p, X, h0, lengths=lengths)[0], want[3], "H")


@pytest.mark.parametrize("name", list(CELLS))
def test_layer_norm_cells_match_the_tape(name):
    """The same without torch: the tape autograd interprets the declared steps (its own reduction rule)."""
    m = MODULES[name]
    p, X, Y, h0 = _problem(m, seed=4)
    lengths = [3, 5, 1]
    want = reference_autograd.unroll(CELLS[name], p, X, Y, h0, lengths)
    _compare(m, m.loss_and_grads(p, X, Y, h0, lengths=lengths, input_grad=True), want)


def test_the_layer_norm_helper_is_torchs_layer_norm():
    """One step from zero states: h = tanh(LN(X W_xh + b_h)) with torch.nn.functional.layer_norm's LN."""
    torch = pytest.importorskip("torch")
    m = MODULES["ln_rnn"]
    p, X, _, _ = _problem(m, seed=6, T=1, h=7)
    a = torch.tensor(X[0] @ p["W_xh"] + p["b_h"])
    g, s = torch.tensor(p["g"]), torch.tensor(p["s"])
    want = torch.tanh(torch.nn.functional.layer_norm(a, (7,), g, s, eps=1e-5)).numpy()
    _close(m.forward(p, X)[0][0], want, "h")


def test_layernorm_lstm_declares_what_the_issue_gives():
    m = MODULES["layernorm_lstm"]
    names = [f"{w}{k}" for k in "ifgo" for w in ("W_x", "W_h", "g_", "s_")] + ["g_c", "s_c"]
    assert tuple(names) == m.CELL_PARAMS
    assert m.STATES == ("h", "c") and m.OUTPUT == "h"
    p = m.init_params(3, 4, 5)
    assert all((p[f"g_{k}"] == 1).all() and (p[f"s_{k}"] == 0).all() for k in "ifgoc")
    assert {f"g_{k}": 1.0 for k in "ifgoc"} == m.INIT


@pytest.mark.parametrize("method", ["fd", "complex", "taylor"])
def test_every_numeric_check_passes_on_the_layer_norm_examples(method):
    for name in ("layernorm_lstm", "layernorm_gru"):
        assert check_variant(MODULES[name], method=method, seed=1).ok, name


@pytest.mark.parametrize("tokens", [False, True])
def test_the_symbolic_oracle_agrees(tokens):
    for name, cell in CELLS.items():
        report = check_oracle(MODULES[name], cell=cell, T=2, n=2, d=2, h=3, q=2, seed=2, tokens=tokens)
        assert report.ok, name


@needs_numba
def test_the_fused_module_gives_the_plain_modules_numbers(tmp_path):
    """The reductions stay NumPy calls between the kernels: the fused module matches torch too."""
    import importlib.util

    target = tmp_path / "layernorm_lstm_fused.py"
    target.write_text(module_source(LN_LSTM, fused=True), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("layernorm_lstm_fused", target)
    fused = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fused)
    m = MODULES["layernorm_lstm"]
    p, X, Y, h0 = _problem(m, seed=7)
    want = _torch_reference("layernorm_lstm", m, p, X, Y, h0, [5, 3, 4])
    _compare(m, fused.loss_and_grads(p, X, Y, h0, lengths=[5, 3, 4], input_grad=True), want)


def test_a_reduction_is_one_numbered_line_and_its_adjoint_another():
    """The generated code names the reduction and its adjoint, the rule of symbolic/reduce.py."""
    text = module_source(LN_LSTM)
    assert "        # (2) mu_i = mean(a_i), over the hidden units of each row\n" in text
    assert "        rt.row_mean(a_i, out=mu_i)\n" in text
    assert "        # (2) grad of: mu_i = mean(a_i)\n" in text
    assert "rt.row_mean(dmu_i, out=" in text


# ---- refusals: one line naming the cell and the step


def _refusal(fn):
    with pytest.raises(CellError) as info:
        declare(fn)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cell '{fn.__name__}', step ")
    return message


def test_division_by_a_value_that_can_be_zero_is_refused_naming_the_fix():
    def divides_by_h_prev(c):
        c.let("h", tanh(c.affine("h")) / c.h_prev)

    def divides_by_a_variance(c):
        a = c.affine("h")
        xc = c.let("xc", a - c.mean(a))
        c.let("h", tanh(xc / c.mean(c.let("sq", xc * xc))))  # nonnegative, zero for a constant row

    def divides_by_softplus(c):  # softplus underflows to 0: not positive in floating point
        a = c.affine("h")
        c.let("h", tanh(a / softplus(a)))

    for fn in (divides_by_h_prev, divides_by_a_variance, divides_by_softplus):
        message = _refusal(fn)
        assert "the divisor cannot be proved positive" in message and "add an epsilon" in message, message


def test_division_by_a_value_proved_positive_is_accepted():
    def divides(c):
        a = c.affine("h")
        c.let("h", tanh(a / (softplus(a) + 1e-5)) + 1 / (sigmoid(a) + 1))

    m = derive_module(declare(divides))
    assert check_variant(m, method="complex", seed=0).ok


def test_misused_reductions_are_refused_in_one_line():
    def batch_axis(c):
        c.let("h", tanh(c.mean(c.affine("h"), axis=0)))

    def unnamed_expression(c):
        a = c.affine("h")
        c.let("h", tanh(c.mean(a * a)))

    def not_a_value(c):
        c.let("h", tanh(c.affine("h") - c.mean(3.0)))

    def reduced_state(c):
        c.let("u", tanh(c.affine("h")))
        c.mean(c.value("u"), name="h")

    def bad_init(c):
        c.let("h", tanh(c.affine("h") * c.vector("g", init="one")))

    assert "over the hidden units of each row (axis -1 or 1)" in _refusal(batch_axis)
    assert "needs a name, c.mean(v, name='mu')" in _refusal(unnamed_expression)
    assert "c.mean() takes a cell value, got float 3.0" in _refusal(not_a_value)
    assert "init must be a finite number" in _refusal(bad_init)
    with pytest.raises(
        CellError, match=r"^cell 'reduced_state': state 'h' is a row's mean; make it elementwise"
    ):
        declare(reduced_state)


@pytest.mark.parametrize("name", ["layernorm_lstm", "layernorm_gru"])
def test_a_two_layer_bidirectional_model_with_lengths_passes_the_directional_check(name):
    """The examples stack like any cell (grusym.load of the file, 2 layers, both directions, padded)."""
    import grusym

    m = grusym.load(path(name), num_layers=2, bidirectional=True)
    rng = np.random.default_rng(5)
    p = m.init_params(3, 4, 5, seed=5, scale=0.7)
    p = {k: (v if v.ndim > 1 else v + rng.normal(0, 0.4, v.shape)) for k, v in p.items()}
    X, Y, lengths = rng.normal(size=(5, 3, 3)), rng.integers(0, 5, (5, 3)), [5, 2, 4]

    def fun(x):
        return m.loss({k: x[k] for k in p}, x["X"], Y, None, lengths)

    def grad_fun(x):
        return m.loss_and_grads({k: x[k] for k in p}, x["X"], Y, None, lengths, input_grad=True)[1]

    report = grusym.check_gradients(fun, grad_fun, {**p, "X": X}, method="directional")
    report.raise_if_failed()
