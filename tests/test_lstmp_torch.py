"""LSTM with projection against a real torch nn.LSTM(proj_size=p) in float64: from_torch_lstm, the lstmp
model (layers, directions, batch-first, packed lengths), every gradient, and to_torch_lstm back.

A loss on the outputs (a linear head and cross-entropy over the real steps) and on h_n (p wide) and c_n
(h wide): outputs, last states, loss and the gradient of every torch parameter (weight_hr included), h0,
c0 and X agree to 1e-12, norm-wise per array. One test maps the weights by hand, sharing nothing with
grusym.interop. Skipped without torch.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import grusym  # noqa: E402
from grusym.errors import InputError, ParameterError, ShapeError  # noqa: E402
from grusym.interop import from_torch_gru, from_torch_lstm, from_torch_rnn, to_torch_lstm  # noqa: E402

pytestmark = pytest.mark.torch
T, N, D, C, P, Q = 6, 3, 4, 5, 2, 7  # C: torch's hidden_size (the cell), P: proj_size
GATES = ("i", "f", "g", "o")
f64 = torch.float64


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours), ref.detach().numpy() if torch.is_tensor(ref) else np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def _lstm(layers, bidirectional, batch_first, seed=0, proj=P):
    m = torch.nn.LSTM(D, C, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                      proj_size=proj, dtype=f64)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return m


def _run(m, X, h0, c0, lengths, batch_first):
    if lengths is None:
        return m(X, (h0, c0))
    packed = pack_padded_sequence(X, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, last = m(packed, (h0, c0))
    return pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0], last


CONFIGS = [  # layers, bidirectional, batch_first, lengths
    (1, False, False, None),
    (1, False, True, [6, 2, 4]),
    (1, True, False, [1, 6, 3]),
    (2, False, False, None),
    (2, False, True, [6, 1, 1]),
    (2, True, False, None),
    (2, True, True, [6, 1, 4]),
    (3, True, True, [2, 5, 6]),
]


@pytest.mark.parametrize(("layers", "bidirectional", "batch_first", "lengths"), CONFIGS)
def test_lstmp_model_matches_torch(layers, bidirectional, batch_first, lengths):
    m = _lstm(layers, bidirectional, batch_first)
    K, width = layers * (1 + bidirectional), P * (1 + bidirectional)
    lin = torch.nn.Linear(width, Q, dtype=f64)
    rng = np.random.default_rng(layers + 2 * bidirectional)
    X = torch.tensor(rng.normal(size=(N, T, D) if batch_first else (T, N, D)), requires_grad=True)
    h0 = torch.tensor(rng.normal(0, 0.5, (K, N, P)), requires_grad=True)
    c0 = torch.tensor(rng.normal(0, 0.5, (K, N, C)), requires_grad=True)
    Y = rng.integers(0, Q, (N, T) if batch_first else (T, N))
    w_h, w_c = rng.normal(size=(K, N, P)), rng.normal(size=(K, N, C))
    out, (h_n, c_n) = _run(m, X, h0, c0, lengths, batch_first)
    real = np.ones((T, N), bool) if lengths is None else np.arange(T)[:, None] < np.array(lengths)[None]
    real = torch.tensor(real.T if batch_first else real)
    ce = torch.nn.functional.cross_entropy(lin(out)[real], torch.tensor(Y)[real])
    loss = ce + (torch.tensor(w_h) * h_n).sum() + (torch.tensor(w_c) * c_n).sum()
    loss.backward()

    params = from_torch_lstm(m, head=lin.state_dict())
    model = grusym.load("lstmp", layers, bidirectional, batch_first)
    assert model.STATES == ("h", "c") and set(params) == set(model.PARAMS)
    x, s0 = X.detach().numpy(), (h0.detach().numpy(), c0.detach().numpy())
    L = None if lengths is None else np.array(lengths)
    H, cache = model.forward(params, x, s0, L)
    assert _rel(H, out) <= 1e-12
    h, c = model.final_states(cache)
    assert h.shape == (K, N, P) and c.shape == (K, N, C)
    assert _rel(h, h_n) <= 1e-12 and _rel(c, c_n) <= 1e-12
    Hp, (hp, cp) = model.predict(params, x, s0, L)
    assert np.array_equal(Hp, H) and np.array_equal(hp, h) and np.array_equal(cp, c)

    value, grads, _ = model.loss_and_grads(params, x, Y, s0, L)
    assert abs(value - ce.item()) <= 1e-12 * abs(ce.item())
    on_states = model.backward(params, cache, None, (w_h, w_c))  # the loss's h_n, c_n terms
    total = {k: grads[k] + on_states[k] for k in grads}
    g_lstm, g_lin = to_torch_lstm(total, gradients=True)
    assert set(g_lstm) == {k for k, _ in m.named_parameters()}
    assert any(k.startswith("weight_hr") for k in g_lstm)
    errors = {k: _rel(g_lstm[k], p.grad) for k, p in m.named_parameters()}
    errors |= {"head." + k: _rel(g_lin[k], p.grad) for k, p in lin.named_parameters()}
    errors |= {
        "h0": _rel(total["h0"], h0.grad),
        "c0": _rel(total["c0"], c0.grad),
        "X": _rel(total["X"], X.grad),
    }
    bad = {k: f"{e:.1e}" for k, e in errors.items() if not e <= 1e-12}
    assert not bad, bad


@pytest.mark.parametrize("lengths", [None, [6, 1, 3]])
def test_lstmp_module_by_hand(lengths):
    """The bare lstmp module against nn.LSTM(proj_size), the weights mapped here, not by grusym.interop."""
    m = _lstm(1, False, False, seed=3)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    params = {"W_hr": sd["weight_hr_l0"].T.copy()}
    for k, gate in enumerate(GATES):
        rows = slice(k * C, (k + 1) * C)
        params[f"W_x{gate}"] = sd["weight_ih_l0"][rows].T.copy()
        params[f"W_h{gate}"] = sd["weight_hh_l0"][rows].T.copy()
        params[f"b_x{gate}"] = sd["bias_ih_l0"][rows].copy()
        params[f"b_h{gate}"] = sd["bias_hh_l0"][rows].copy()
    rng = np.random.default_rng(4)
    X = torch.tensor(rng.normal(size=(T, N, D)), requires_grad=True)
    h0 = torch.tensor(rng.normal(size=(1, N, P)), requires_grad=True)
    c0 = torch.tensor(rng.normal(size=(1, N, C)), requires_grad=True)
    out, (h_n, c_n) = _run(m, X, h0, c0, lengths, False)
    w = rng.normal(size=out.shape)
    ((torch.tensor(w) * out).sum() + h_n.sum() + (c_n**2).sum()).backward()

    lstmp = grusym.load("lstmp")
    L = None if lengths is None else np.array(lengths)
    H, cache = lstmp.forward(params, X.detach().numpy(), (h0.detach().numpy()[0], c0.detach().numpy()[0]), L)
    h, c = lstmp.final_states(cache)
    assert _rel(H, out) <= 1e-12 and _rel(h, h_n[0]) <= 1e-12 and _rel(c, c_n[0]) <= 1e-12
    g = lstmp.backward(params, cache, w, (np.ones_like(h), 2 * c))
    grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    want = {"W_hr": grads["weight_hr_l0"].T, "h0": h0.grad[0], "c0": c0.grad[0], "X": X.grad}
    for k, gate in enumerate(GATES):
        rows = slice(k * C, (k + 1) * C)
        want[f"W_x{gate}"] = grads["weight_ih_l0"][rows].T
        want[f"W_h{gate}"] = grads["weight_hh_l0"][rows].T
        want[f"b_x{gate}"] = grads["bias_ih_l0"][rows]
        want[f"b_h{gate}"] = grads["bias_hh_l0"][rows]
    assert set(g) == set(want)
    bad = {k: f"{_rel(g[k], v):.1e}" for k, v in want.items() if not _rel(g[k], v) <= 1e-12}
    assert not bad, bad


@pytest.mark.parametrize(
    ("layers", "bidirectional", "bias"), [(1, False, True), (2, True, True), (2, False, False)]
)
def test_to_torch_lstm_loads_into_nn_lstm_proj(layers, bidirectional, bias):
    m = torch.nn.LSTM(D, C, num_layers=layers, bidirectional=bidirectional, bias=bias, proj_size=P, dtype=f64)
    params = from_torch_lstm(m.state_dict())
    back = from_torch_lstm(to_torch_lstm(params, bias=bias)[0])
    assert back.keys() == params.keys() and all(np.array_equal(back[k], params[k]) for k in params)
    doubled = {k: 2 * v for k, v in params.items()}  # e.g. after training in grusym
    m.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_lstm(doubled, bias=bias)[0].items()})
    X = np.random.default_rng(0).normal(size=(T, N, D))
    with torch.no_grad():
        out, (h_n, c_n) = m(torch.tensor(X))
    H, (h, c) = grusym.load("lstmp", layers, bidirectional).predict(doubled, X)
    assert _rel(H, out) <= 1e-13 and _rel(h, h_n) <= 1e-13 and _rel(c, c_n) <= 1e-13


def test_proj_size_refusals():
    sd = _lstm(2, True, False).state_dict()
    with pytest.raises(
        ParameterError, match=r"'weight_hr_l0', the projection of an nn.LSTM\(proj_size=p\); an nn.GRU"
    ):
        from_torch_gru(sd)
    with pytest.raises(ParameterError, match=r"an nn.RNN has no proj_size"):
        from_torch_rnn(sd)
    with pytest.raises(InputError, match="an LSTMCell has no proj_size"):
        to_torch_lstm(from_torch_lstm(_lstm(1, False, False).state_dict()), cell=True)
    with pytest.raises(ParameterError, match=r"missing \['weight_hr_l1_reverse'\]"):
        from_torch_lstm({k: v for k, v in sd.items() if k != "weight_hr_l1_reverse"})
    wide = {**sd, "weight_hr_l0": torch.zeros(C, C, dtype=f64)}
    with pytest.raises(ShapeError, match=r"weight_hr_l0'\] must have shape \(p, h = 5\) with 0 < p < h"):
        from_torch_lstm(wide)


def test_the_interop_doc_example_prints_what_it_shows():
    """docs/interop.md's LSTM-with-projection example runs and prints its lines, each difference <= 1e-12."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "interop.md").read_text()
    rest = text[text.index("## LSTM with projection") :]
    code = re.search(r"```python\n(.*?)```", rest, re.S)
    assert code is not None
    shown = re.search(r"```text\n(.*?)```", rest[code.end() :], re.S)
    assert shown is not None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.group(1), "docs/interop.md", "exec"), {"__name__": "__doc_example__"})
    sci = re.compile(r"\d\.\de[-+]\d\d")
    got, want = printed.getvalue().splitlines(), shown.group(1).splitlines()
    assert [sci.sub("#", line) for line in got] == [sci.sub("#", line) for line in want]
    assert len(sci.findall(printed.getvalue())) == 5
    assert all(float(x) <= 1e-12 for x in sci.findall(printed.getvalue()))
