"""A layer-normalised GRU: each gate's pre-activation normalised over the hidden units of each row, as
layernorm_lstm normalises its gates (Ba et al. 2016 apply layer norm to GRUs the same way)."""

from grusym.symbolic.cell import sigmoid, tanh
from grusym.symbolic.norm import layer_norm


def layernorm_gru(c):
    """Layer-normalised GRU (after Ba et al. 2016), one layer norm per pre-activation, no other bias.

    z = sigmoid(LN(X W_xz + h_prev W_hz; g_z, s_z)); r = sigmoid(LN(X W_xr + h_prev W_hr; g_r, s_r));
    h_tilde = tanh(LN(X W_xh + (r*h_prev) W_hh; g_h, s_h)); h = z*h_prev + (1 - z)*h_tilde (the d2l
    GRU, the reset applied before the recurrent product). LN(v; gain, shift) = gain*(v - mean(v))/
    sqrt(var(v) + 1e-5) + shift over the hidden units of each row (biased variance); gains start at 1,
    shifts at 0, and the shifts take the place of the biases.
    """
    z = c.let(
        "z",
        sigmoid(layer_norm(c, c.affine("z", bias=False), c.vector("g_z", init=1), c.vector("s_z"), name="z")),
    )
    r = c.let(
        "r",
        sigmoid(layer_norm(c, c.affine("r", bias=False), c.vector("g_r", init=1), c.vector("s_r"), name="r")),
    )
    r_h = c.let("r_h", r * c.h_prev)
    a_h = c.affine("h", hidden=r_h, bias=False)
    h_tilde = c.let("h_tilde", tanh(layer_norm(c, a_h, c.vector("g_h", init=1), c.vector("s_h"), name="h")))
    c.let("h", z * c.h_prev + (1 - z) * h_tilde)
