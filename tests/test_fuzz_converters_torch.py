"""Converter fuzz, PyTorch: hypothesis draws torch configurations (nn.GRU / nn.LSTM / nn.RNN tanh or relu,
or their Cell twins; nn.LSTM's proj_size; layers, directions, batch_first, bias; the state dict as given,
the module itself, nested in a bigger module's with or without prefix=; packed padded batches; initial
states) and each one must be imported exactly or refused by name, never a silent mismatch. Exactly:
outputs, last states and the gradient of every parameter, X and the initial states of a loss on the
outputs and the last states, against torch autograd in float64 to 1e-12, and to_torch_* loads back into
the module (strict). A proj_size state dict given to from_torch_gru or from_torch_rnn is refused, naming
weight_hr. Default tier: the profile's examples, derandomized; --thorough: 20x. Skipped without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

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
T, N, D, H = 5, 3, 4, 3
f64 = torch.float64
KINDS = {  # kind -> (module, cell module, grusym cell, from, to)
    "GRU": (torch.nn.GRU, torch.nn.GRUCell, "gru_reset_after", from_torch_gru, to_torch_gru),
    "LSTM": (torch.nn.LSTM, torch.nn.LSTMCell, "lstm", from_torch_lstm, to_torch_lstm),
    "RNN": (torch.nn.RNN, torch.nn.RNNCell, "rnn_tanh", from_torch_rnn, to_torch_rnn),
}
RELU_CELL = '''
from grusym.symbolic.cell import relu


def rnn_relu(c):
    """Elman RNN with relu, as torch.nn.RNN(nonlinearity="relu") (grusym ships no such cell)."""
    c.let("h", relu(c.affine("h")))
'''


@pytest.fixture(scope="module")
def relu_cell(tmp_path_factory: pytest.TempPathFactory) -> str:
    """'FILE.py:rnn_relu', a relu cell declared in a file, as docs/models.md shows."""
    path = tmp_path_factory.mktemp("cells") / "relu_cell.py"
    path.write_text(RELU_CELL)
    return f"{path}:rnn_relu"


@dataclass(frozen=True)
class Config:
    kind: str
    cell: bool
    layers: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    relu: bool
    given: str  # "state_dict", "module", "nested", "prefix"
    lengths: tuple[int, ...] | None
    initial: bool
    proj: int = 0  # nn.LSTM's proj_size (0: none), read as lstmp
    misread: str = ""  # a proj_size state dict given to this reader: refused by name


@st.composite
def configs(draw: st.DrawFn, projected: bool = False) -> Config:
    """Any configuration; ``projected``: an nn.LSTM with proj_size only."""
    kind = "LSTM" if projected else draw(st.sampled_from(sorted(KINDS)))
    cell = False if projected else draw(st.booleans())
    lengths = None if cell else draw(st.none() | st.tuples(*[st.integers(1, T)] * N))
    proj = draw(st.integers(1 if projected else 0, H - 1)) if kind == "LSTM" and not cell else 0
    return Config(
        kind=kind,
        cell=cell,
        layers=1 if cell else draw(st.integers(1, 3)),
        bidirectional=False if cell else draw(st.booleans()),
        batch_first=False if cell else draw(st.booleans()),
        bias=draw(st.booleans()),
        relu=kind == "RNN" and draw(st.booleans()),
        given=draw(st.sampled_from(["state_dict", "module", "nested", "prefix"])),
        lengths=lengths,
        initial=draw(st.booleans()),
        proj=proj,
        misread=draw(st.sampled_from(["", "", "", "GRU", "RNN"])) if proj else "",
    )


def _module(c: Config, seed: int) -> torch.nn.Module:
    module, cell, *_ = KINDS[c.kind]
    extra = {"nonlinearity": "relu"} if c.relu else {}
    extra |= {"proj_size": c.proj} if c.proj else {}
    if c.cell:
        m = cell(D, H, bias=c.bias, dtype=f64, **extra)
    else:
        m = module(D, H, num_layers=c.layers, bidirectional=c.bidirectional, batch_first=c.batch_first,
                   bias=c.bias, dtype=f64, **extra)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=f64) * 0.5)
    return m


def _torch_run(c: Config, m, X, states):
    """torch's outputs (user layout, zero after each length) and last states, autograd attached."""
    if c.cell:
        s = states[0] if len(states) == 1 else tuple(states)
        outs = []
        for x in X:
            s = m(x, s)
            outs.append(s if len(states) == 1 else s[0])
        return torch.stack(outs), ((s,) if len(states) == 1 else tuple(s))
    h0 = states[0] if len(states) == 1 else tuple(states)
    if c.lengths is None:
        out, last = m(X, h0)
    else:
        packed = pack_padded_sequence(
            X, torch.tensor(c.lengths), batch_first=c.batch_first, enforce_sorted=False
        )
        out, last = m(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=c.batch_first, total_length=T)
    return out, ((last,) if len(states) == 1 else tuple(last))


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b.detach() if torch.is_tensor(b) else b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@settings(max_examples=settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(c=configs(), seed=st.integers(0, 2**16))
def test_every_torch_configuration_is_imported_exactly(relu_cell: str, c: Config, seed: int) -> None:
    _imported_exactly(relu_cell, c, seed)


@settings(max_examples=settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(c=configs(projected=True), seed=st.integers(0, 2**16))
def test_every_proj_size_configuration_is_imported_exactly(relu_cell: str, c: Config, seed: int) -> None:
    """nn.LSTM(proj_size=p) drawn on its own, so the default tier's few examples cover it."""
    _imported_exactly(relu_cell, c, seed)


def _imported_exactly(relu_cell: str, c: Config, seed: int) -> None:
    _, _, cell_name, from_torch, to_torch = KINDS[c.kind]
    m = _module(c, seed)
    rng = np.random.default_rng(seed)
    shape = (T, N, D) if c.cell or not c.batch_first else (N, T, D)
    X = torch.from_numpy(rng.normal(size=shape)).requires_grad_(True)
    n_states = 2 if c.kind == "LSTM" else 1
    K = c.layers * (1 + c.bidirectional)
    leads = [(N, H)] * 2 if c.cell else [(K, N, c.proj or H), (K, N, H)]  # h0 is proj_size wide
    leads = leads[:n_states]
    states = [torch.from_numpy(rng.normal(0, 0.5, lead) if c.initial else np.zeros(lead)).requires_grad_(True)
              for lead in leads]  # fmt: skip
    out, last = _torch_run(c, m, X, states)
    w_out = rng.normal(size=out.shape)
    w_last = [rng.normal(size=s.shape) for s in last]
    loss = (torch.from_numpy(w_out) * out).sum() + sum(
        (torch.from_numpy(w) * s).sum() for w, s in zip(w_last, last, strict=True)
    )
    loss.backward()

    sd = m.state_dict()
    prefix = None
    if c.given == "module":
        source = m
    elif c.given in ("nested", "prefix"):
        source = {"embedding.weight": torch.zeros(7, D), **{f"encoder.rnn.{k}": v for k, v in sd.items()},
                  "fc.weight": torch.zeros(2, H)}  # fmt: skip
        prefix = "encoder.rnn." if c.given == "prefix" else None
    else:
        source = sd
    nonlinearity = {"nonlinearity": "relu"} if c.relu and c.given != "module" else {}
    if c.misread:
        with pytest.raises(
            ParameterError,
            match=rf"'weight_hr_l0', the projection of an nn.LSTM\(proj_size=p\); an nn.{c.misread} has no ",
        ):
            KINDS[c.misread][3](source, prefix=prefix)
        return
    params = from_torch(source, prefix=prefix, **nonlinearity)
    name = "lstmp" if c.proj else relu_cell if c.relu else cell_name
    ours = grusym.load(name) if c.cell else grusym.load(name, c.layers, c.bidirectional, c.batch_first)
    h0 = [s.detach().numpy() for s in states]
    H_ours, cache = ours.forward(params, X.detach().numpy(), h0[0] if n_states == 1 else tuple(h0),
                                 None if c.lengths is None else np.array(c.lengths))  # fmt: skip
    assert _rel(H_ours, out) <= 1e-13
    mine = ours.final_states(cache)
    mine = (mine,) if n_states == 1 else mine
    assert all(_rel(a, b) <= 1e-13 for a, b in zip(mine, last, strict=True))
    grads = ours.backward(params, cache, w_out, w_last[0] if n_states == 1 else tuple(w_last))
    g_torch, _ = to_torch(grads, gradients=True, bias=c.bias, cell=c.cell)
    assert set(g_torch) == {k for k, _ in m.named_parameters()}
    errors = {k: _rel(g_torch[k], p.grad) for k, p in m.named_parameters()}
    errors["X"] = _rel(grads["X"], X.grad)
    errors |= {
        f"state{i}": _rel(grads[s + "0"], t.grad)
        for i, (s, t) in enumerate(zip(ours.STATES, states, strict=True))
    }
    assert max(errors.values()) <= 1e-12, errors
    back = _module(c, seed + 1)  # other weights, then ours loaded: strict, every key
    back.load_state_dict(
        {k: torch.from_numpy(v) for k, v in to_torch(params, bias=c.bias, cell=c.cell)[0].items()}
    )
    with torch.no_grad():
        again, _ = _torch_run(c, back, X.detach(), [s.detach() for s in states])
    assert _rel(again.numpy(), out) <= 1e-13
