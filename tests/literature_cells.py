"""Cells from the literature and their ablations, as researchers declare them: the cells that went wrong.

Each is a plain cell function (``declare(fn, name)``), written the way a user's own file would be. The
names in ``CELLS`` are what tests refer to; the generator, checker and report tests all read this one list.
"""

from __future__ import annotations

from grusym.symbolic.cell import relu, sigmoid, softplus, tanh

BETA = 0  # an ablation switch left in the declaration: the term it scales cancels


def lstm_no_output_gate(c):
    """LSTM with its output gate ablated, but the gate's affine step left declared (nothing reads it)."""
    a_i = c.affine("i")
    c_prev = c.prev("c")
    i = c.let("i", sigmoid(a_i))
    f = c.let("f", sigmoid(c.affine("f")))
    g = c.let("g", tanh(c.affine("g")))
    c.affine("o")  # left over from the full LSTM: unread
    c_new = c.let("c", f * c_prev + i * g)
    c.let("h", tanh(c_new))


def beta_zero(c):
    """A tanh RNN with a second input path scaled by an ablation constant BETA = 0 (the term cancels)."""
    a = c.affine("h")
    b = c.affine("u")
    c.let("h", tanh(a + BETA * b))


def cancelling_term(c):
    """A tanh RNN whose second path is written as ``b - b`` (it cancels)."""
    a = c.affine("h")
    b = c.affine("u")
    c.let("h", tanh(a + b - b))


def unread_elementwise(c):
    """A tanh RNN with an elementwise step nothing reads (a diagnostic left in)."""
    a = c.affine("h")
    c.let("probe", sigmoid(a))
    c.let("h", tanh(a))


def two_layers_in_one_step(c):
    """Two stacked tanh layers inside one step: the second layer's matmul reads the first's *new* state."""
    s_new = c.let("s", tanh(c.affine("s", hidden=c.prev("s"))))
    c.let("h", tanh(c.affine("h", x=False, hidden=s_new) + c.affine("r", x=False, bias=False)))


def min_lstm(c):
    """minLSTM (Feng et al. 2024) with its gates normalised in log space through softplus.

    f' = exp(-softplus(softplus(-a_f) - softplus(-a_i))) = f/(f + i) for f = sigmoid(a_f), i = sigmoid(a_i);
    the gates and the candidate read only the input.
    """
    a_f = c.affine("f", recurrent=False)
    a_i = c.affine("i", recurrent=False)
    h_tilde = c.affine("h", recurrent=False, name="h_tilde")
    diff = c.let("diff", softplus(-1 * a_f) - softplus(-1 * a_i))
    f = c.let("f", sigmoid(-1 * diff))
    c.let("h", f * c.h_prev + (1 - f) * h_tilde)


def nested_lstm(c):
    """Nested LSTM (Moniz & Krueger 2018): the outer cell state is the hidden state of an inner LSTM.

    The inner LSTM reads i*g as its input and f*c_prev as its previous hidden state; its own cell state
    is ``m``; the inner output uses the identity activation, as in the paper.
    """
    a_i = c.affine("i")
    c_prev = c.prev("c")
    m_prev = c.prev("m")
    i = c.let("i", sigmoid(a_i))
    f = c.let("f", sigmoid(c.affine("f")))
    g = c.let("g", tanh(c.affine("g")))
    o = c.let("o", sigmoid(c.affine("o")))
    x_in = c.let("x_in", i * g)
    h_in = c.let("h_in", f * c_prev)

    def inner(gate):
        return c.affine(f"{gate}x", x=False, hidden=x_in) + c.affine(
            f"{gate}h", x=False, hidden=h_in, bias=False
        )

    ii = c.let("ii", sigmoid(inner("ii")))
    fi = c.let("fi", sigmoid(inner("fi")))
    gi = c.let("gi", tanh(inner("gi")))
    oi = c.let("oi", sigmoid(inner("oi")))
    m_new = c.let("m", fi * m_prev + ii * gi)
    c_new = c.let("c", oi * m_new)
    c.let("h", o * tanh(c_new))


def recurrent_highway(c):
    """Recurrent highway network (Zilly et al. 2017), recurrence depth 2, coupled carry gate (c = 1 - t)."""
    h1 = c.let("h1", tanh(c.affine("h1")))
    t1 = c.let("t1", sigmoid(c.affine("t1")))
    s1 = c.let("s1", h1 * t1 + c.h_prev * (1 - t1))
    h2 = c.let("h2", tanh(c.affine("h2", x=False, hidden=s1)))
    t2 = c.let("t2", sigmoid(c.affine("t2", x=False, hidden=s1)))
    c.let("h", h2 * t2 + s1 * (1 - t2))


def light_gru(c):
    """Light GRU (Ravanelli et al. 2018) without its batch normalisation: no reset gate, a relu candidate."""
    z = c.let("z", sigmoid(c.affine("z")))
    h_tilde = c.let("h_tilde", relu(c.affine("h")))
    c.let("h", z * c.h_prev + (1 - z) * h_tilde)


def irnn(c):
    """IRNN (Le et al. 2015): a relu RNN (meant to start from an identity recurrent matrix)."""
    c.let("h", relu(c.affine("h")))


def multiplicative_integration(c):
    """Multiplicative-integration tanh RNN (Wu et al. 2016).

    h = tanh(alpha * Wx * Uh + beta1 * Uh + beta2 * Wx + b): the input and recurrent projections meet
    in a Hadamard product, with learned (h,) vectors alpha, beta1, beta2.
    """
    wx = c.affine("w", recurrent=False, bias=False)
    uh = c.affine("u", x=False, bias=False)
    alpha, beta1, beta2 = c.vector("alpha"), c.vector("beta1"), c.vector("beta2")
    c.let("h", tanh(alpha * wx * uh + beta1 * uh + beta2 * wx + c.vector("b_h")))


CELLS = {
    fn.__name__: fn
    for fn in (
        lstm_no_output_gate,
        beta_zero,
        cancelling_term,
        unread_elementwise,
        two_layers_in_one_step,
        min_lstm,
        nested_lstm,
        recurrent_highway,
        light_gru,
        irnn,
        multiplicative_integration,
    )
}
