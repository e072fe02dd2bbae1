"""X read elementwise when d == h (issue 26, item 2): SRU's identity highway and residual connections.

Each cell is compared with torch autograd running the same equations written here (float64, 1e-9: loss,
every gradient, the initial states, X, the last states) and, without torch, with the tape autograd of
tests/reference_autograd.py; a 2-layer bidirectional model of sru with lengths against torch; and every way
the input's width can disagree with h is refused in one line naming the cell, the step and both sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym.errors import InputError, ShapeError
from grusym.examples.cells import path
from grusym.gradcheck import check_variant
from grusym.model import build
from grusym.oracle import check_oracle
from grusym.symbolic.cell import CellError, tanh
from grusym.symbolic.usercell import declare, derive_module, load_cell

from . import reference_autograd
from .backends import fastmath_twin, needs_numba

TOL = 1e-9


def residual_rnn(c):
    """A tanh RNN with a residual connection: h = tanh(X W_xh + h_prev W_hh + b_h) + X."""
    c.let("h", tanh(c.affine("h")) + c.X)


def scaled_residual(c):
    """A residual scaled and shifted, and X in a product: h = tanh(a_h)*X + 0.5*X - 1/4."""
    c.let("h", tanh(c.affine("h")) * c.X + 0.5 * c.X - 0.25)


SRU = load_cell(path("sru"))
CELLS = {
    "sru": SRU,
    "residual_rnn": declare(residual_rnn),
    "scaled_residual": declare(scaled_residual),
}
MODULES = {name: derive_module(cell) for name, cell in CELLS.items()}


def _problem(m, seed=0, T=5, n=3, h=4, q=6, tokens=False):
    rng = np.random.default_rng(seed)
    p = m.init_params(h, h, q, seed=seed, scale=0.7)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.4, v.shape)) for k, v in p.items()}
    X = rng.integers(0, h, (T, n)) if tokens else rng.normal(size=(T, n, h))
    Y = rng.integers(0, q, (T, n))
    states = tuple(rng.normal(0, 0.5, (n, h)) for _ in m.STATES)
    return p, X, Y, (states[0] if len(states) == 1 else states)


def _close(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    assert float(np.abs(a - b).max(initial=0.0)) <= TOL * scale, what


# ---- torch: the same equations, written out


def _torch_step(name, P, x, state):
    """One step of cell ``name`` on torch tensors; state and the result: dict of state -> (n, h)."""
    import torch

    if name == "sru":
        c_prev = state["c"]
        xt = x @ P["W"]
        f = torch.sigmoid(x @ P["W_f"] + P["v_f"] * c_prev + P["b_f"])
        r = torch.sigmoid(x @ P["W_r"] + P["v_r"] * c_prev + P["b_r"])
        c = f * c_prev + (1 - f) * xt
        return {"c": c, "h": r * c + (1 - r) * x}
    a = x @ P["W_xh"] + state["h"] @ P["W_hh"] + P["b_h"]
    if name == "residual_rnn":
        return {"h": torch.tanh(a) + x}
    return {"h": torch.tanh(a) * x + 0.5 * x - 0.25}


def _torch_reference(name, m, p, X, Y, h0, lengths):
    """(loss, grads, last states) by torch autograd; X float (T, n, h) or token ids (one-hot rows)."""
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
    state, last, terms = dict(S0), {}, []
    for t in range(T):
        new = _torch_step(name, P, Xt[t], state)
        valid = torch.tensor(t < lengths)
        state = {s: torch.where(valid[:, None], new[s], state[s]) for s in m.STATES}
        logits = new["h"] @ P["W_hq"] + P["b_q"]
        ce = torch.nn.functional.cross_entropy(logits, torch.tensor(Y[t]), reduction="none")
        terms.append((ce * valid).sum())
    loss = sum(terms) / int(lengths.sum())
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in P.items()}
    grads |= {f"{s}0": _grad(v) for s, v in S0.items()}  # sru's h0 is unread: zeros
    if not tokens:
        grads["X"] = Xt.grad.numpy()
    last = tuple(state[s].detach().numpy() for s in m.STATES)
    return loss.item(), grads, last


def _grad(v):
    return np.zeros(tuple(v.shape)) if v.grad is None else v.grad.numpy()


def _compare(m, got, want):
    (loss, grads, last), (loss_w, grads_w, last_w) = got, want
    _close(loss, loss_w, "loss")
    assert set(grads) == set(grads_w)
    for k in grads_w:
        _close(grads[k], grads_w[k], k)
    last = last if isinstance(last, tuple) else (last,)
    for s, a, b in zip(m.STATES, last, last_w, strict=True):
        _close(a, b, f"last {s}")


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token_ids"])
@pytest.mark.parametrize("name", list(CELLS))
def test_x_elementwise_matches_torch_autograd(name, tokens):
    """sru and residual cells: loss, every gradient (parameters, initial states, X), last states vs torch."""
    m = MODULES[name]
    p, X, Y, h0 = _problem(m, seed=3, tokens=tokens)
    lengths = [5, 2, 4]
    want = _torch_reference(name, m, p, X, Y, h0, lengths)
    _compare(m, m.loss_and_grads(p, X, Y, h0, lengths=lengths), want)


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token_ids"])
@pytest.mark.parametrize("name", list(CELLS))
def test_x_elementwise_matches_the_tape(name, tokens):
    """The same without torch: the tape autograd interprets the declared steps."""
    m = MODULES[name]
    p, X, Y, h0 = _problem(m, seed=4, tokens=tokens)
    lengths = [3, 5, 1]
    want = reference_autograd.unroll(CELLS[name], p, X, Y, h0, lengths)
    _compare(m, m.loss_and_grads(p, X, Y, h0, lengths=lengths), want)


def test_sru_declares_the_names_the_issue_gives():
    m = MODULES["sru"]
    assert m.CELL_PARAMS == ("W", "W_f", "b_f", "v_f", "W_r", "b_r", "v_r")
    assert {k: m.PARAMS[k] for k in ("W", "W_f", "W_r")} == dict.fromkeys(("W", "W_f", "W_r"), ("d", "h"))
    assert all(m.PARAMS[k] == ("h",) for k in ("v_f", "v_r", "b_f", "b_r"))
    assert m.STATES == ("c", "h") and m.OUTPUT == "h" and m.INPUT_ELEMENTWISE


def test_sru_step_and_predict_agree_with_forward():
    m = MODULES["sru"]
    p, X, _, h0 = _problem(m, seed=5)
    H, _ = m.forward(p, X, h0)
    state = h0
    for t in range(X.shape[0]):
        state = m.step(p, X[t], state)
        _close(state[1], H[t], f"step {t}")
    _close(m.predict(p, X, h0)[0], H, "predict")


@pytest.mark.parametrize("method", ["fd", "complex", "taylor"])
def test_every_numeric_check_passes_on_residual_cells(method):
    for name in ("residual_rnn", "scaled_residual"):
        assert check_variant(MODULES[name], method=method, seed=1).ok, name


@pytest.mark.parametrize("tokens", [False, True])
def test_the_symbolic_oracle_agrees(tokens):
    for name, cell in CELLS.items():
        report = check_oracle(MODULES[name], cell=cell, T=2, n=2, d=2, h=2, q=2, seed=2, tokens=tokens)
        assert report.ok, name


def _torch_model(p, X, Y, states, lengths, layers=2):
    """A 2-layer bidirectional sru, directions summed (merge "sum"), padded steps skipped, in torch."""
    torch = pytest.importorskip("torch")
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    c0 = torch.tensor(states[0], dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor(states[1], dtype=torch.float64, requires_grad=True)
    T, n = Y.shape
    lengths = np.asarray(lengths)
    inputs, lasts = Xt, {"c": [], "h": []}
    for layer in range(layers):
        outs = []
        for k, reverse in enumerate((False, True)):
            sfx = f"_l{layer}" + "_reverse" * reverse
            cell_p = {name: P[name + sfx] for name in ("W", "W_f", "b_f", "v_f", "W_r", "b_r", "v_r")}
            idx = 2 * layer + k
            state = {"c": c0[idx], "h": h0[idx]}
            H = [None] * T
            order = range(T - 1, -1, -1) if reverse else range(T)
            for t in order:
                new = _torch_step("sru", cell_p, inputs[t], state)
                valid = torch.tensor(t < lengths)[:, None]
                state = {s: torch.where(valid, new[s], state[s]) for s in state}
                H[t] = torch.where(valid, new["h"], torch.zeros_like(new["h"]))
            outs.append(torch.stack(H))
            lasts["c"].append(state["c"])
            lasts["h"].append(state["h"])
        inputs = outs[0] + outs[1]
    logits = inputs @ P["W_hq"] + P["b_q"]
    valid = torch.tensor(np.arange(T)[:, None] < lengths[None, :])
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(T * n, -1), torch.tensor(Y.reshape(-1)), reduction="none"
    )
    loss = (ce * valid.reshape(-1)).sum() / int(lengths.sum())
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in P.items()} | {"c0": _grad(c0), "h0": _grad(h0)}
    grads["X"] = Xt.grad.numpy()
    last = tuple(torch.stack(lasts[s]).detach().numpy() for s in ("c", "h"))
    return loss.item(), grads, last


def test_two_layer_bidirectional_sru_with_lengths_matches_torch():
    """Layer 2 reads layer 1's summed directions (o = h, so d == h there too), sequences of unsorted
    lengths; every gradient, the state stacks' and X's included, and the last states."""
    model = build(MODULES["sru"], 2, True, merge="sum")
    T, n, h, q = 6, 3, 4, 5
    rng = np.random.default_rng(7)
    p = model.init_params(h, h, q, seed=7, scale=0.6)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.4, v.shape)) for k, v in p.items()}
    X = rng.normal(size=(T, n, h))
    Y = rng.integers(0, q, (T, n))
    states = (rng.normal(0, 0.5, (4, n, h)), rng.normal(0, 0.5, (4, n, h)))
    lengths = [4, 6, 2]
    want = _torch_model(p, X, Y, states, lengths)
    _compare(model, model.loss_and_grads(p, X, Y, states, lengths=lengths), want)


# ---- refusals: one line naming the cell, the step and both sizes


def test_init_params_refuses_d_other_than_h():
    with pytest.raises(
        ShapeError, match=r"cell 'sru', step \(7\) h reads the input X elementwise.*d = 5, h = 4"
    ):
        MODULES["sru"].init_params(5, 4, 3)


def test_forward_refuses_float_x_and_weights_of_another_width():
    m = MODULES["residual_rnn"]
    p = m.init_params(4, 4, 3)
    p["W_xh"] = np.zeros((5, 4))
    message = r"cell 'residual_rnn', step \(2\) h reads the input X elementwise.*got d = 5, h = 4"
    for call in (
        lambda: m.forward(p, np.zeros((2, 1, 5))),
        lambda: m.step(p, np.zeros((1, 5))),
        lambda: m.loss_and_grads(p, np.zeros((2, 1, 5)), np.zeros((2, 1), int)),
    ):
        with pytest.raises(ShapeError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_token_ids_need_a_vocabulary_of_h():
    """Token ids are one-hot rows of width d = V: read elementwise only when V == h (else refused)."""
    m = MODULES["sru"]
    p = m.init_params(4, 4, 3)
    p |= {k: np.zeros((6, 4)) for k in ("W", "W_f", "W_r")}
    with pytest.raises(ShapeError, match=r"got d = 6, h = 4"):
        m.loss_and_grads(p, np.zeros((2, 1), int), np.zeros((2, 1), int))


def test_concatenated_bidirectional_layers_are_refused_at_init():
    """Layer 2 of a concatenating bidirectional model reads 2h inputs, which sru cannot add to h."""
    with pytest.raises(ShapeError, match=r"cell 'sru' reads its input X elementwise.*2h = 8 inputs.*merge"):
        grusym.load(MODULES["sru"], num_layers=2, bidirectional=True).init_params(4, 4, 3)
    with pytest.raises(ShapeError, match=r"d = 3, h = 4"):
        grusym.load(MODULES["sru"], num_layers=2).init_params(3, 4, 3)


def test_x_in_a_matmul_or_of_another_shape_is_still_refused():
    def matmul_of_x(c):
        c.let("h", tanh(c.affine("h")) + c.X @ c.X)

    def x_with_a_vector_only(c):
        c.let("h", tanh(c.affine("h")) * c.X)  # accepted: a product with an (n, h) value

    with pytest.raises(CellError, match=r"cell 'matmul_of_x', step 2.*'@' between cell values"):
        declare(matmul_of_x)
    assert declare(x_with_a_vector_only).steps[-1].inputs == ("X", "a_h")
    with pytest.raises(InputError):
        declare(lambda c: c.let("h", tanh(c.affine("h")) + c.X.expr), "raw")


@needs_numba
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token_ids"])
@pytest.mark.parametrize("name", list(CELLS))
def test_the_fused_module_gives_the_plain_modules_numbers(name, tokens, tmp_path):
    """The fused backend reads x_t and writes dx_t inside its kernels: the same bits as the plain module
    with fastmath's tanh and sigmoid (the kernels' activations; tests/test_fused.py bounds the difference)."""
    import importlib.util

    from grusym.symbolic.codegen import module_source

    target = tmp_path / f"{name}_fused.py"
    target.write_text(module_source(CELLS[name], "tests", fused=True), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"{name}_fused_x", target)
    fused = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fused)
    m = fastmath_twin(module_source(CELLS[name], "tests"), name)
    p, X, Y, h0 = _problem(m, seed=8, tokens=tokens)
    (la, ga, sa), (lb, gb, sb) = (mod.loss_and_grads(p, X, Y, h0, lengths=[5, 1, 3]) for mod in (m, fused))
    assert la == lb and set(ga) == set(gb)
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k], err_msg=k)
    for a, b in zip(sa, sb, strict=True) if isinstance(sa, tuple) else [(sa, sb)]:
        np.testing.assert_array_equal(a, b)


def test_x_terms_that_cancel_still_require_d_equal_h():
    """The declaration as written reads X next to (n, h) values: the module refuses d != h even where
    SymPy cancels the terms (the fuzzer's draw; torch of the source cannot run it at d != h)."""
    cell = declare(lambda c: c.let("h", tanh(c.affine("h")) + (c.X - c.X)), "cancels")
    assert not any("X" in s.inputs for s in cell.steps if s.kind == "elementwise")
    m = derive_module(cell)
    assert m.INPUT_ELEMENTWISE
    with pytest.raises(ShapeError, match=r"cell 'cancels', step \(2\) h reads the input X elementwise"):
        m.init_params(3, 4, 2)
    p = m.init_params(4, 4, 2)
    p["W_xh"] = np.zeros((3, 4))
    with pytest.raises(ShapeError, match=r"got d = 3, h = 4"):
        m.forward(p, np.zeros((2, 1, 3)))


def test_gradcheck_cli_runs_every_method_on_sru(capsys):
    """``grusym gradcheck --cell sru.py:sru`` draws d == h and every method agrees (exit 0)."""
    from grusym.cli import main

    methods = "fd,directional,complex,taylor,oracle"
    assert main(["gradcheck", "--cell", path("sru"), "--method", methods]) == 0
    assert capsys.readouterr().out.count("all gradients agree") == 5


def test_a_stacked_sru_streams_step_by_step_like_its_forward():
    """Layer 2 reads layer 1's h (d == h): ``step`` of a 2-layer model gives forward's H row by row."""
    model = grusym.load(MODULES["sru"], num_layers=2)
    rng = np.random.default_rng(9)
    p = model.init_params(4, 4, 3, seed=9, scale=0.6)
    X = rng.normal(size=(4, 2, 4))
    H, _ = model.forward(p, X)
    state = None
    for t in range(X.shape[0]):
        state = model.step(p, X[t], state)
        _close(state[model.STATES.index("h")][-1], H[t], f"step {t}")


def test_the_report_counts_parameters_at_d_equal_h(tmp_path):
    """The report's parameter counts are for sizes the cell runs at (d == h): it once quoted d2l's d = 28
    next to h = 256, a configuration sru refuses. The count is the module's own init_params at d = h."""
    from grusym.cli import main

    assert main(["report", "--cell", path("sru"), "--format", "md", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "sru" / "README.md").read_text(encoding="utf-8")
    m = MODULES["sru"]
    count = sum(a.size for a in m.init_params(256, 256, 28).values())
    assert f"{count} for the character language model" in text and "d = q = 28" not in text
    assert f"| total | $`3 d d_{{h}} + d_{{h}} q + 4 d_{{h}} + q`$ |  | 32 | {count} |" in text
