"""min-char-rnn style: one sequence of token ids (a list), column vectors (h is (H, 1)), parameters in the
(out, in) orientation, a summed loss, and the loss and every gradient from one function. The code ignores
the initial state's gradient, as the original idiom does."""

from __future__ import annotations

import numpy as np

BUGS = ("dropped_step", "transposed", "one_element", "preactivation", "carry")
DROPPED = 2  # the time step the "dropped_step" bug forgets
ELEMENT = (1, 2)  # the element of Whh the "one_element" bug scales by 1.001


def init(vocab=5, hidden=4, T=5, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "Wxh": rng.normal(0, 0.6, (hidden, vocab)),
        "Whh": rng.normal(0, 0.6, (hidden, hidden)),
        "Why": rng.normal(0, 0.6, (vocab, hidden)),
        "bh": rng.normal(0, 0.2, (hidden, 1)),
        "by": rng.normal(0, 0.2, (vocab, 1)),
    }
    inputs = [int(i) for i in rng.integers(0, vocab, T)]
    targets = [int(i) for i in rng.integers(0, vocab, T)]
    hprev = rng.normal(0, 0.5, (hidden, 1))
    return params, inputs, targets, hprev


def lossFun(params, inputs, targets, hprev, bug=None):
    """(loss, grads, last hidden state); loss = sum over steps of -log p(target)."""
    Wxh, Whh, Why, bh, by = (params[k] for k in ("Wxh", "Whh", "Why", "bh", "by"))
    xs, hs, ps, pre = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0
    for t in range(len(inputs)):
        xs[t] = np.zeros((Wxh.shape[1], 1))
        xs[t][inputs[t]] = 1
        pre[t] = np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh
        hs[t] = np.tanh(pre[t])
        ys = np.dot(Why, hs[t]) + by
        ps[t] = np.exp(ys) / np.sum(np.exp(ys))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        # the "preactivation" bug takes tanh' at its input instead of its output
        dhraw = (1 - pre[t] * pre[t]) * dh if bug == "preactivation" else (1 - hs[t] * hs[t]) * dh
        if not (bug == "dropped_step" and t == DROPPED):
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
        if bug != "carry":
            dhnext = np.dot(Whh.T, dhraw)
    if bug == "transposed":
        dWhh = dWhh.T
    if bug == "one_element":
        dWhh[ELEMENT] *= 1.001
    grads = {"Wxh": dWxh, "Whh": dWhh, "Why": dWhy, "bh": dbh, "by": dby}
    return loss, grads, hs[len(inputs) - 1]


def positional_loss(inputs, targets, hprev, bug=None):
    """The same model as a function of its parameters only: f(Wxh, Whh, Why, bh, by) -> (loss, grads...)."""

    def loss_and_grads(Wxh, Whh, Why, bh, by):
        params = {"Wxh": Wxh, "Whh": Whh, "Why": Why, "bh": bh, "by": by}
        loss, g, _ = lossFun(params, inputs, targets, hprev, bug)
        return loss, (g["Wxh"], g["Whh"], g["Why"], g["bh"], g["by"])

    return loss_and_grads
