"""The PyTorch converters against real torch 2.13 modules beyond nn.GRU/nn.LSTM stacks (those are in
test_torch_crosscheck.py): GRUCell, LSTMCell and RNNCell stepped over a sequence, bias=False modules, a
relu nn.RNN run by a relu cell declared in a file, and the RNN found inside a bigger module's state dict.
Outputs, last states and every gradient to 1e-12 in float64. Skipped without torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import grusym  # noqa: E402
from grusym.errors import ParameterError  # noqa: E402
from grusym.interop import (  # noqa: E402
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)

pytestmark = pytest.mark.torch
T, N, D, H = 5, 3, 4, 6
f64 = torch.float64


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours), np.asarray(ref.detach() if torch.is_tensor(ref) else ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def _randomized(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return module


CELLS = {  # torch cell, grusym cell, from, to
    "GRUCell": (torch.nn.GRUCell, "gru_reset_after", from_torch_gru, to_torch_gru),
    "LSTMCell": (torch.nn.LSTMCell, "lstm", from_torch_lstm, to_torch_lstm),
    "RNNCell": (torch.nn.RNNCell, "rnn_tanh", from_torch_rnn, to_torch_rnn),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_a_torch_cell_stepped_over_a_sequence_is_the_grusym_cell(kind, bias):
    """Regression: GRUCell/LSTMCell state dicts were refused ("pass the nn.GRU's own state_dict")."""
    make, cell, from_torch, to_torch = CELLS[kind]
    module = _randomized(make(D, H, bias=bias, dtype=f64), seed=1)
    rng = np.random.default_rng(2)
    X = torch.from_numpy(rng.normal(size=(T, N, D))).requires_grad_(True)
    m = grusym.load(cell)
    states = [torch.from_numpy(rng.normal(0, 0.5, (N, H))).requires_grad_(True) for _ in m.STATES]
    state = states[0] if len(states) == 1 else tuple(states)
    outs = []
    for x in X:
        state = module(x, state)
        outs.append(state if len(states) == 1 else state[0])
    w_out = rng.normal(size=(T, N, H))
    w_last = [rng.normal(size=(N, H)) for _ in states]
    last = (state,) if len(states) == 1 else state
    loss = (torch.from_numpy(w_out) * torch.stack(outs)).sum()
    loss = loss + sum((torch.from_numpy(w) * s).sum() for w, s in zip(w_last, last, strict=True))
    loss.backward()

    params = from_torch(module.state_dict())
    h0 = [s.detach().numpy() for s in states]
    Hs, cache = m.forward(params, X.detach().numpy(), h0[0] if len(h0) == 1 else tuple(h0))
    assert _rel(Hs, torch.stack(outs)) <= 1e-13
    grads = m.backward(params, cache, w_out, w_last[0] if len(w_last) == 1 else tuple(w_last))
    g_torch, _ = to_torch(grads, gradients=True, bias=bias, cell=True)
    assert set(g_torch) == {k for k, _ in module.named_parameters()}
    errors = {k: _rel(g_torch[k], p.grad) for k, p in module.named_parameters()}
    errors |= {"X": _rel(grads["X"], X.grad), **{s + "0": _rel(grads[s + "0"], t.grad) for s, t in
                                                   zip(m.STATES, states, strict=True)}}  # fmt: skip
    assert max(errors.values()) <= 1e-12, errors
    again = make(D, H, bias=bias, dtype=f64)
    again.load_state_dict(
        {k: torch.from_numpy(v) for k, v in to_torch(params, bias=bias, cell=True)[0].items()}
    )
    with torch.no_grad():
        s0 = tuple(torch.from_numpy(a) for a in h0)
        s0 = s0[0] if len(s0) == 1 else s0
        ref, back = module(X[0].detach(), s0), again(X[0].detach(), s0)
    ref, back = ((ref,), (back,)) if len(h0) == 1 else (ref, back)
    assert all(_rel(b.numpy(), r) <= 1e-13 for b, r in zip(back, ref, strict=True))


MODULES = {  # nn module, grusym cell, from, to
    "GRU": (torch.nn.GRU, "gru_reset_after", from_torch_gru, to_torch_gru),
    "LSTM": (torch.nn.LSTM, "lstm", from_torch_lstm, to_torch_lstm),
    "RNN": (torch.nn.RNN, "rnn_tanh", from_torch_rnn, to_torch_rnn),
}


@pytest.mark.parametrize("kind", list(MODULES))
def test_a_module_without_bias_round_trips_strictly(kind):
    """to_torch_*(params, bias=False) loads into nn.X(bias=False) with load_state_dict(strict=True)
    (regression: biases were always emitted); its gradients are torch's .grad of every parameter."""
    make, cell, from_torch, to_torch = MODULES[kind]
    module = _randomized(make(D, H, num_layers=2, bidirectional=True, bias=False, dtype=f64), seed=3)
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(T, N, D)))
    out = module(x)[0]
    out.sum().backward()
    params = from_torch(module)  # the module itself
    again = make(D, H, num_layers=2, bidirectional=True, bias=False, dtype=f64)
    again.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch(params, bias=False)[0].items()})
    with torch.no_grad():
        assert _rel(again(x)[0], out) <= 1e-13
    m = grusym.load(cell, 2, True)
    Hs, cache = m.forward(params, x.numpy())
    assert _rel(Hs, out) <= 1e-13
    g, _ = to_torch(m.backward(params, cache, np.ones_like(Hs)), gradients=True, bias=False)
    assert max(_rel(g[k], p.grad) for k, p in module.named_parameters()) <= 1e-12


RELU_CELL = '''
from grusym.symbolic.cell import relu


def rnn_relu(c):
    """Elman RNN with relu, as torch.nn.RNN(nonlinearity="relu")."""
    c.let("h", relu(c.affine("h")))
'''


def test_a_relu_rnn_runs_as_a_relu_cell_of_your_own(tmp_path):
    """grusym ships no relu RNN cell: nn.RNN(nonlinearity="relu")'s parameters run in a two-line cell
    declared in a file and loaded by FILE.py:NAME, as docs/models.md shows."""
    (tmp_path / "cells.py").write_text(RELU_CELL)
    module = _randomized(
        torch.nn.RNN(D, H, num_layers=2, nonlinearity="relu", batch_first=True, dtype=f64), 5
    )
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(N, T, D))).requires_grad_(True)
    out, h_n = module(x)
    (out.sum() + (2 * h_n).sum()).backward()
    params = from_torch_rnn(module)  # reads nonlinearity="relu" from the module
    with pytest.raises(Exception, match="nonlinearity"):
        from_torch_rnn(module, nonlinearity="tanh")
    m = grusym.load(f"{tmp_path / 'cells.py'}:rnn_relu", num_layers=2, batch_first=True)
    Hs, cache = m.forward(params, x.detach().numpy())
    assert _rel(Hs, out) <= 1e-13 and _rel(m.final_states(cache), h_n) <= 1e-13
    grads = m.backward(params, cache, np.ones_like(Hs), 2 * np.ones(h_n.shape))
    g, _ = to_torch_rnn(grads, gradients=True)
    assert max(_rel(g[k], p.grad) for k, p in module.named_parameters()) <= 1e-12
    assert _rel(grads["X"], x.grad) <= 1e-12


class _Encoder(torch.nn.Module):
    def __init__(self, two: bool = False) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(7, D, dtype=f64)
        self.rnn = torch.nn.GRU(D, H, num_layers=2, dtype=f64)
        self.fc = torch.nn.Linear(H, 3, dtype=f64)
        if two:
            self.other = torch.nn.LSTM(D, H, dtype=f64)


def test_the_rnn_inside_a_bigger_module_is_found_by_its_prefix():
    enc = _Encoder()
    want = from_torch_gru(enc.rnn.state_dict())
    for got in (from_torch_gru(enc.state_dict()), from_torch_gru(enc.state_dict(), prefix="rnn.")):
        assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(ParameterError, match=r"several RNNs.*'other\.'.*'rnn\.'"):
        from_torch_gru(_Encoder(two=True).state_dict())
    assert list(from_torch_lstm(_Encoder(two=True).state_dict(), prefix="other.")) == list(
        grusym.load("lstm").CELL_PARAMS
    )
