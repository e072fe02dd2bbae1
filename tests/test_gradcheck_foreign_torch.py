"""The corpus's correct models against torch autograd, so a corpus verdict rests on more than the checker.

The checker is scored on tests/foreign; this file shows, independently of the checker, that the versions
called correct there are correct: their hand-written gradients equal torch's autograd of the same loss
written in torch."""

from __future__ import annotations

import numpy as np
import pytest

from .foreign import layers, lstm, minchar

torch = pytest.importorskip("torch")


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def test_minchar_gradients_equal_torch_autograd():
    p, X, Y, h = minchar.init()
    _, grads, _ = minchar.lossFun(p, X, Y, h)
    tp = {k: _t(v) for k, v in p.items()}
    hs = torch.tensor(h)
    loss = 0
    for x, y in zip(X, Y, strict=True):
        hs = torch.tanh(tp["Wxh"][:, x : x + 1] + tp["Whh"] @ hs + tp["bh"])
        logits = (tp["Why"] @ hs + tp["by"])[:, 0]
        loss = loss - torch.log_softmax(logits, 0)[y]
    loss.backward()
    for k in p:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


def test_lstm_gradients_equal_torch_autograd():
    p, X, Y, h0, c0 = lstm.init()
    _, grads = lstm.loss_and_grads(p, X, Y, h0, c0)
    tp = {k: _t(v) for k, v in p.items()}
    th0, tc0, tX = _t(h0), _t(c0), _t(X)
    H = h0.shape[1]
    h, c, total = th0, tc0, 0
    for t in range(X.shape[0]):
        a = torch.cat([h, tX[t]], 1) @ tp["W"] + tp["b"]
        i, f, o = (torch.sigmoid(a[:, k * H : (k + 1) * H]) for k in range(3))
        c = f * c + i * torch.tanh(a[:, 3 * H :])
        h = o * torch.tanh(c)
        logits = h @ tp["Wy"] + tp["by"]
        total = total - torch.log_softmax(logits, 1)[torch.arange(len(Y[t])), torch.tensor(Y[t])].sum()
    (total / Y.size).backward()
    reference = {**{k: v.grad for k, v in tp.items()}, "h0": th0.grad, "c0": tc0.grad, "X": tX.grad}
    for k, g in reference.items():
        np.testing.assert_allclose(grads[k], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


def test_course_layers_model_gradients_equal_torch_autograd():
    p, X, Y, h0 = layers.init()
    _, grads = layers.model_loss_and_grads(p, X, Y, h0)
    tp = {k: _t(v) for k, v in p.items()}
    th0, tX = _t(h0), _t(X)
    h, hs = th0, []
    for t in range(X.shape[1]):
        h = torch.tanh(tX[:, t] @ tp["Wx"] + h @ tp["Wh"] + tp["b"])
        hs.append(h)
    scores = torch.stack(hs, 1) @ tp["W_out"] + tp["b_out"]
    logp = torch.log_softmax(scores, 2)
    loss = -torch.gather(logp, 2, torch.tensor(Y)[..., None]).sum() / X.shape[0]
    loss.backward()
    reference = {**{k: v.grad for k, v in tp.items()}, "h0": th0.grad, "X": tX.grad}
    for k, g in reference.items():
        np.testing.assert_allclose(grads[k], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)
