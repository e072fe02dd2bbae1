"""Cross-checks against PyTorch autograd (float64), skipped cleanly where torch is not installed.

1. A real nn.GRU + nn.Linear + cross-entropy, converted by grusym.interop, gives the same loss and every
   gradient (all parameters, h0, X) as the generated gru_reset_after module (plain and, with numba, fused),
   to 1e-12 relative; and so does a 2-layer bidirectional batch-first nn.GRU (and nn.LSTM, as grusym's
   lstm) fed a padded batch through pack_padded_sequence, as a grusym model with lengths, for several
   length patterns.
2. The torch round trip reproduces nn.GRU's outputs H and h_T (one cell, and stacks).
3. Every variant's generated gradients agree with torch autograd run on the variant's declared SymPy cell
   steps, interpreted op by op as torch operations (as tests/reference_autograd.py does on a NumPy tape).

"Relative" is norm-wise per array: max|ours - torch| / max|torch|.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
import sympy as sp  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import grusym  # noqa: E402
from grusym.interop import (  # noqa: E402
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)
from grusym.symbolic import cell as cell_dims  # noqa: E402
from grusym.symbolic.primitives import Sigmoid, Tanh  # noqa: E402
from grusym.symbolic.variants import VARIANTS, build, head  # noqa: E402

from .backends import BACKENDS  # noqa: E402

pytestmark = pytest.mark.torch

T, N, D, H, Q = 5, 3, 4, 6, 5
f64 = torch.float64


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours), np.asarray(ref.detach() if torch.is_tensor(ref) else ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def _assert_all_close(ours: dict, ref: dict, rtol: float) -> None:
    errors = {k: _rel(ours[k], ref[k]) for k in ref}
    bad = {k: f"{e:.1e}" for k, e in errors.items() if not e <= rtol}
    assert not bad, f"relative errors above {rtol:.0e}: {bad}"


def _torch_model(seed=0):
    """nn.GRU + nn.Linear in float64 with N(0, 0.5^2) weights and biases: gates well away from linear."""
    gen = torch.Generator().manual_seed(seed)
    gru, lin = torch.nn.GRU(D, H, dtype=f64), torch.nn.Linear(H, Q, dtype=f64)
    with torch.no_grad():
        for p in (*gru.parameters(), *lin.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return gru, lin


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(T, N, D)),
        rng.integers(0, D, (T, N)),
        rng.integers(0, Q, (T, N)),
        rng.normal(0, 0.5, (N, H)),
    )


def _torch_grads_in_our_layout(gru, lin, cells=(("_l0", ""),)) -> dict:
    """PyTorch's parameter gradients under our names. Each bias b_r, b_z is the sum b_i + b_h in torch, so
    dL/db_z is torch's gradient of either of the two (they are equal; the test checks both).
    cells: (torch suffix, our suffix) of every layer and direction."""
    g = {name: p.grad.numpy() for name, p in gru.named_parameters()}
    out = {"W_hq": lin.weight.grad.numpy().T, "b_q": lin.bias.grad.numpy()}
    for theirs, ours in cells:
        w_i, w_h = np.split(g["weight_ih" + theirs], 3), np.split(g["weight_hh" + theirs], 3)
        b_i, b_h = np.split(g["bias_ih" + theirs], 3), np.split(g["bias_hh" + theirs], 3)
        assert _rel(b_i[0], b_h[0]) <= 1e-14  # r: the two summed biases see one gradient (up to rounding)
        assert _rel(b_i[1], b_h[1]) <= 1e-14  # z: likewise
        out.update({k + ours: v for k, v in {
            "W_xr": w_i[0].T, "W_xz": w_i[1].T, "W_xh": w_i[2].T,
            "W_hr": w_h[0].T, "W_hz": w_h[1].T, "W_hh": w_h[2].T,
            "b_r": b_i[0], "b_z": b_i[1], "b_xh": b_i[2], "b_hh": b_h[2],
        }.items()})  # fmt: skip
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token-ids"])
def test_nn_gru_loss_and_every_gradient_match(tokens, backend):
    gru, lin = _torch_model()
    X, ids, Y, h0 = _data()
    x = F.one_hot(torch.from_numpy(ids), D).to(f64) if tokens else torch.from_numpy(X)
    x.requires_grad_(not tokens)
    h0_t = torch.from_numpy(h0[None]).requires_grad_(True)
    out, _ = gru(x, h0_t)
    loss = F.cross_entropy(lin(out).reshape(T * N, Q), torch.from_numpy(Y).reshape(-1))  # mean over T*n
    loss.backward()

    params = from_torch_gru(gru.state_dict(), head=lin.state_dict())
    m = grusym.load("gru_reset_after", backend=backend)
    value, grads, _ = m.loss_and_grads(params, ids if tokens else X, Y, h0)
    assert _rel(value, loss) <= 1e-12
    ref = {**_torch_grads_in_our_layout(gru, lin), "h0": h0_t.grad[0]}
    if not tokens:
        ref["X"] = x.grad
    assert set(grads) == set(ref)
    _assert_all_close(grads, ref, 1e-12)


def test_torch_round_trip_reproduces_nn_gru_outputs():
    m = grusym.load("gru_reset_after")
    rng = np.random.default_rng(2)
    params = m.init_params(D, H, Q, seed=2, scale=0.5)
    params = {k: (v if v.ndim == 2 else rng.normal(0, 0.5, v.shape)) for k, v in params.items()}
    X, _, _, h0 = _data(3)
    H_ours = m.forward(params, X, h0)[0]

    gru_state, lin_state = to_torch_gru(params)  # ours -> torch
    gru = torch.nn.GRU(D, H, dtype=f64)
    gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state.items()})
    with torch.no_grad():
        out, h_T = gru(torch.from_numpy(X), torch.from_numpy(h0[None]))
    assert _rel(H_ours, out) <= 1e-13 and _rel(H_ours[-1], h_T[0]) <= 1e-13
    lin = torch.nn.Linear(H, Q, dtype=f64)
    lin.load_state_dict({k: torch.from_numpy(v) for k, v in lin_state.items()})
    with torch.no_grad():
        assert _rel(m.head(params, H_ours), lin(out)) <= 1e-13

    original, _ = _torch_model(seed=4)  # torch -> ours -> torch: the function survives, the bias split not
    again = torch.nn.GRU(D, H, dtype=f64)
    again.load_state_dict(
        {k: torch.from_numpy(v) for k, v in to_torch_gru(from_torch_gru(original.state_dict()))[0].items()}
    )
    with torch.no_grad():
        x, h = torch.from_numpy(X), torch.from_numpy(h0[None])
        (out_a, hT_a), (out_b, hT_b) = original(x, h), again(x, h)
    assert _rel(out_b, out_a) <= 1e-13 and _rel(hT_b, hT_a) <= 1e-13


LENGTH_PATTERNS = {  # n = 3 sequences of at most T = 5 steps
    "full": [5, 5, 5],
    "mixed-unsorted": [3, 5, 1],
    "sorted": [5, 2, 1],
    "all-length-1": [1, 1, 1],
}
STACKS = [  # (num_layers, bidirectional, batch_first)
    (2, True, True),
    (3, False, False),
    (1, True, False),
]


def _suffixes(num_layers, bidirectional):
    dirs = ["", "_reverse"] if bidirectional else [""]
    return [(f"_l{k}{d}", f"_l{k}{d}") for k in range(num_layers) for d in dirs]


def _lstm_grads_in_our_layout(lstm, lin, cells) -> dict:
    """nn.LSTM's gradients under grusym's lstm names: row blocks i, f, g, o; both bias rows kept."""
    g = {name: p.grad.numpy() for name, p in lstm.named_parameters()}
    out = {"W_hq": lin.weight.grad.numpy().T, "b_q": lin.bias.grad.numpy()}
    for theirs, ours in cells:
        for kind, name, transpose in (
            ("weight_ih", "W_x", True),
            ("weight_hh", "W_h", True),
            ("bias_ih", "b_x", False),
            ("bias_hh", "b_h", False),
        ):
            for gate, block in zip("ifgo", np.split(g[kind + theirs], 4), strict=True):
                out[f"{name}{gate}{ours}"] = block.T if transpose else block
    return out


def _rnn_grads_in_our_layout(rnn, lin, cells) -> dict:
    """nn.RNN's gradients under rnn_tanh's names: b_h is bias_ih + bias_hh, so either's gradient."""
    g = {name: p.grad.numpy() for name, p in rnn.named_parameters()}
    out = {"W_hq": lin.weight.grad.numpy().T, "b_q": lin.bias.grad.numpy()}
    for theirs, ours in cells:
        assert _rel(g["bias_ih" + theirs], g["bias_hh" + theirs]) <= 1e-14
        out |= {"W_xh" + ours: g["weight_ih" + theirs].T, "W_hh" + ours: g["weight_hh" + theirs].T}
        out["b_h" + ours] = g["bias_ih" + theirs]
    return out


RNNS = {  # torch module, grusym cell, converters, torch's gradients in grusym's layout
    "gru": (torch.nn.GRU, "gru_reset_after", from_torch_gru, to_torch_gru, _torch_grads_in_our_layout),
    "lstm": (torch.nn.LSTM, "lstm", from_torch_lstm, to_torch_lstm, _lstm_grads_in_our_layout),
    "rnn": (torch.nn.RNN, "rnn_tanh", from_torch_rnn, to_torch_rnn, _rnn_grads_in_our_layout),
}


def _torch_stack(kind, num_layers, bidirectional, batch_first, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rnn = RNNS[kind][0](D, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=f64)
    lin = torch.nn.Linear(H * (1 + bidirectional), Q, dtype=f64)
    with torch.no_grad():
        for p in (*rnn.parameters(), *lin.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return rnn, lin


def _stack_id(s):
    return f"{s[0]}layer-{'bi' if s[1] else 'uni'}-{'nT' if s[2] else 'Tn'}"


@pytest.mark.parametrize("tokens", [False, True], ids=["floats", "token-ids"])
@pytest.mark.parametrize("pattern", list(LENGTH_PATTERNS))
@pytest.mark.parametrize("stack", STACKS, ids=_stack_id)
@pytest.mark.parametrize("kind", list(RNNS))
def test_packed_stacked_rnn_matches_outputs_states_loss_and_every_gradient(kind, stack, pattern, tokens):
    num_layers, bidirectional, batch_first = stack
    _, cell, from_torch, _, their_grads = RNNS[kind]
    rnn, lin = _torch_stack(kind, *stack)
    lengths = np.array(LENGTH_PATTERNS[pattern])
    X, ids, Y, _ = _data(7)  # time-major (T, n, ...)
    m = grusym.load(cell, num_layers, bidirectional, batch_first)
    rng = np.random.default_rng(8)
    states = tuple(rng.normal(0, 0.5, (num_layers * (1 + bidirectional), N, H)) for _ in m.STATES)
    if batch_first:
        X, ids, Y = X.swapaxes(0, 1).copy(), ids.T.copy(), Y.T.copy()
    x = F.one_hot(torch.from_numpy(ids), D).to(f64) if tokens else torch.from_numpy(X)
    x.requires_grad_(not tokens)
    states_t = tuple(torch.from_numpy(s).requires_grad_(True) for s in states)
    packed = pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False)
    out_packed, last_t = rnn(packed, states_t[0] if len(states) == 1 else states_t)
    out, _ = pad_packed_sequence(out_packed, batch_first=batch_first, total_length=T)
    steps = torch.arange(T)[None, :] if batch_first else torch.arange(T)[:, None]
    real = steps < torch.from_numpy(lengths)[None, :].reshape((-1, 1) if batch_first else (1, -1))
    loss = F.cross_entropy(lin(out)[real], torch.from_numpy(Y)[real])  # mean over the real positions
    loss.backward()

    params = from_torch(rnn.state_dict(), head=lin.state_dict())
    h0 = states[0] if len(states) == 1 else states
    H_ours, cache = m.forward(params, ids if tokens else X, h0, lengths)
    assert _rel(H_ours, out) <= 1e-13
    value, grads, last = m.loss_and_grads(params, ids if tokens else X, Y, h0, lengths)
    for ours, theirs in zip((m.final_states(cache), last), (last_t, last_t), strict=True):
        if len(states) == 1:
            ours, theirs = (ours,), (theirs,)
        assert len(ours) == len(theirs) and all(
            _rel(a, b) <= 1e-13 for a, b in zip(ours, theirs, strict=True)
        )
    assert _rel(value, loss) <= 1e-12
    ref = their_grads(rnn, lin, _suffixes(num_layers, bidirectional))
    ref |= {f"{s}0": t.grad for s, t in zip(m.STATES, states_t, strict=True)}
    if not tokens:
        ref["X"] = x.grad
    assert set(grads) == set(ref)
    _assert_all_close(grads, ref, 1e-12)


@pytest.mark.parametrize("stack", STACKS, ids=_stack_id)
@pytest.mark.parametrize("kind", list(RNNS))
def test_stacked_round_trip_reproduces_the_torch_module(kind, stack):
    num_layers, bidirectional, batch_first = stack
    module, cell, from_torch, to_torch, _ = RNNS[kind]
    m = grusym.load(cell, num_layers, bidirectional, batch_first)
    rng = np.random.default_rng(3)
    params = m.init_params(D, H, Q, seed=3, scale=0.5)
    params = {k: (v if v.ndim == 2 else rng.normal(0, 0.5, v.shape)) for k, v in params.items()}
    X = rng.normal(size=(N, T, D) if batch_first else (T, N, D))
    H_ours, cache = m.forward(params, X)
    state, lin_state = to_torch(params)
    rnn = module(D, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=f64)
    rnn.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # strict: every key
    with torch.no_grad():
        out, last = rnn(torch.from_numpy(X))
    ours = m.final_states(cache)
    ours, last = ((ours,), (last,)) if kind == "gru" else (ours, last)
    assert _rel(H_ours, out) <= 1e-13 and all(_rel(a, b) <= 1e-13 for a, b in zip(ours, last, strict=True))
    back = from_torch(rnn.state_dict(), head=lin_state)
    assert list(back) == list(params) and all(np.array_equal(back[k], params[k]) for k in params)


def _evaluate(expr: sp.Basic, env: dict, sizes: dict):
    """One declared SymPy matrix expression, as torch operations on the tensors in ``env``."""
    if isinstance(expr, sp.MatrixSymbol):
        return env[expr.name]
    if isinstance(expr, sp.OneMatrix):
        return torch.ones(*(int(sp.sympify(s).subs(sizes)) for s in expr.shape), dtype=f64)
    if isinstance(expr, (sp.MatAdd, sp.HadamardProduct)):
        parts = [_evaluate(a, env, sizes) for a in expr.args]
        total = parts[0]
        for p in parts[1:]:
            total = total + p if isinstance(expr, sp.MatAdd) else total * p
        return total
    if isinstance(expr, sp.MatMul):
        coeff = sp.Mul(*(a for a in expr.args if not a.is_Matrix))
        parts = [_evaluate(a, env, sizes) for a in expr.args if a.is_Matrix]
        total = parts[0]
        for p in parts[1:]:
            total = total @ p
        return float(coeff) * total if coeff != 1 else total
    if isinstance(expr, sp.matrices.expressions.applyfunc.ElementwiseApplyFunction):
        fn = {Sigmoid: torch.sigmoid, Tanh: torch.tanh}[type(expr.function(sp.Symbol("x")))]
        return fn(_evaluate(expr.expr, env, sizes))
    raise NotImplementedError(type(expr))


def _torch_loss_and_grads(name, params, X, Y, h0):
    """Torch autograd through the declared cell steps of ``name`` and the declared head step."""
    cell = build(name)
    _, head_step = head()
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {**params, "h0": h0, "X": X}.items()}
    env0 = {k: (v[None, :] if v.ndim == 1 else v) for k, v in leaves.items()}  # biases are (1, h) rows
    dims = cell_dims.n, cell_dims.d, cell_dims.h, cell_dims.q
    sizes = dict(zip(dims, (N, D, H, Q), strict=True))
    h, states = env0["h0"], []
    for t in range(T):
        env = {**env0, "X": env0["X"][t], "h_prev": h}
        for step in cell.steps:
            env[step.name] = _evaluate(step.expr, env, sizes)
        h = env["h"]
        states.append(h)
    rows = torch.cat(states)  # (T*n, h)
    logits = _evaluate(head_step.expr, {**env0, "H": rows}, {**sizes, cell_dims.n: T * N})
    loss = F.cross_entropy(logits, torch.from_numpy(Y).reshape(-1))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in leaves.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_matches_torch_autograd_of_its_declared_equations(name):
    rng = np.random.default_rng(5)
    params = grusym.load(name).init_params(D, H, Q, seed=5, scale=0.5)
    params = {k: (v if v.ndim == 2 else rng.normal(0, 0.5, v.shape)) for k, v in params.items()}
    X, _, Y, h0 = _data(6)
    value, grads, _ = grusym.load(name).loss_and_grads(params, X, Y, h0)
    ref_value, ref = _torch_loss_and_grads(name, params, X, Y, h0)
    assert abs(value - ref_value) <= 1e-9 * abs(ref_value)
    assert set(grads) == set(ref)
    _assert_all_close(grads, ref, 1e-9)


@pytest.mark.parametrize("kind", list(RNNS))
def test_to_torch_with_gradients_true_is_every_torch_grad(kind):
    """Regression: to_torch_gru(grads) left zeros in bias_hh's r and z rows where torch's .grad is not
    zero; with gradients=True every array, both biases included, is torch's .grad."""
    _, cell, from_torch, to_torch, _ = RNNS[kind]
    rnn, lin = _torch_stack(kind, 2, True, True, seed=5)
    lengths = np.array([5, 2, 4])
    X, _, Y, _ = _data(9)
    X, Y = X.swapaxes(0, 1).copy(), Y.T.copy()
    x = torch.from_numpy(X)
    packed = pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=T)
    real = torch.arange(T)[None, :] < torch.from_numpy(lengths)[:, None]
    F.cross_entropy(lin(out)[real], torch.from_numpy(Y)[real]).backward()

    m = grusym.load(cell, 2, True, True)
    _, grads, _ = m.loss_and_grads(from_torch(rnn.state_dict(), head=lin.state_dict()), X, Y, None, lengths)
    g_rnn, g_lin = to_torch(grads, gradients=True)
    assert set(g_rnn) == {k for k, _ in rnn.named_parameters()}
    _assert_all_close(g_rnn, {k: p.grad for k, p in rnn.named_parameters()}, 1e-12)
    _assert_all_close(g_lin, {k: p.grad for k, p in lin.named_parameters()}, 1e-12)
    assert any(np.abs(g_rnn[k][: 2 * H]).max() > 1e-3 for k in g_rnn if k.startswith("bias_hh"))


@pytest.mark.parametrize("pattern", ["full", "mixed-unsorted"])
@pytest.mark.parametrize("stack", STACKS, ids=_stack_id)
@pytest.mark.parametrize("kind", list(RNNS))
def test_a_loss_on_the_last_states_backpropagates_as_in_torch(kind, stack, pattern):
    """An encoder: the loss sits on h_n (and c_n) and on part of the outputs; backward(params, cache, dH,
    dstates) gives torch's gradient of every parameter, X and the initial states (float64, 1e-12)."""
    num_layers, bidirectional, batch_first = stack
    _, cell, from_torch, to_torch, _ = RNNS[kind]
    rnn, _ = _torch_stack(kind, *stack, seed=11)
    m = grusym.load(cell, num_layers, bidirectional, batch_first)
    lengths = np.array(LENGTH_PATTERNS[pattern])
    rng = np.random.default_rng(12)
    X = rng.normal(size=(N, T, D) if batch_first else (T, N, D))
    K = num_layers * (1 + bidirectional)
    states = tuple(rng.normal(0, 0.5, (K, N, H)) for _ in m.STATES)
    weights = tuple(rng.normal(size=(K, N, H)) for _ in m.STATES)  # loss = sum(w * last) + sum(v * out)
    v = rng.normal(size=(N, T, H * (1 + bidirectional)) if batch_first else (T, N, H * (1 + bidirectional)))

    x = torch.from_numpy(X).requires_grad_(True)
    states_t = tuple(torch.from_numpy(s).requires_grad_(True) for s in states)
    packed = pack_padded_sequence(x, torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False)
    out, last_t = rnn(packed, states_t[0] if len(states) == 1 else states_t)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    last_t = (last_t,) if len(states) == 1 else last_t
    loss = sum((torch.from_numpy(w) * s).sum() for w, s in zip(weights, last_t, strict=True))
    (loss + (torch.from_numpy(v) * out).sum()).backward()

    params = from_torch(rnn.state_dict())
    h0 = states[0] if len(states) == 1 else states
    _, cache = m.forward(params, X, h0, lengths)
    grads = m.backward(params, cache, v, weights[0] if len(weights) == 1 else weights)
    g_torch, _ = to_torch({k: g for k, g in grads.items() if k in params}, gradients=True)
    _assert_all_close(g_torch, {k: p.grad for k, p in rnn.named_parameters()}, 1e-12)
    ref = {"X": x.grad, **{f"{s}0": t.grad for s, t in zip(m.STATES, states_t, strict=True)}}
    _assert_all_close(grads, ref, 1e-12)
