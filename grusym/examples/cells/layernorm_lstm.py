"""The layer-normalised LSTM of Ba et al. (2016), one normalisation per gate: a reduction over the hidden
units (each row's mean and variance) and a division by a value the builder proves positive."""

from grusym.symbolic.cell import sigmoid, tanh
from grusym.symbolic.norm import layer_norm


def layernorm_lstm(c):
    """Layer-normalised LSTM (Ba et al. 2016), one layer norm per gate and one on the cell state.

    For k in i, f, g, o: a_k = LN(X W_xk + h_prev W_hk; g_k, s_k), no other bias; i, f, o = sigmoid,
    g = tanh; c = f*c_prev + i*g; h = o*tanh(LN(c; g_c, s_c)). LN(v; gain, shift) = gain*(v -
    mean(v))/sqrt(var(v) + 1e-5) + shift over the hidden units of each row (biased variance); gains start
    at 1, shifts at 0. Unlike TensorFlow's LayerNormBasicLSTMCell, the state is c itself (not LN(c)) and
    there is no forget bias.
    """
    gates = {}
    for k in ("i", "f", "g", "o"):
        a = c.affine(k, bias=False)
        gates[k] = layer_norm(c, a, c.vector(f"g_{k}", init=1), c.vector(f"s_{k}"), name=k)
    i = c.let("i", sigmoid(gates["i"]))
    f = c.let("f", sigmoid(gates["f"]))
    g = c.let("g", tanh(gates["g"]))
    o = c.let("o", sigmoid(gates["o"]))
    c_new = c.let("c", f * c.prev("c") + i * g)
    c.let("h", o * tanh(layer_norm(c, c_new, c.vector("g_c", init=1), c.vector("s_c"), name="c")))
