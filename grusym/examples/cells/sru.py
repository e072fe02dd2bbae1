"""The simple recurrent unit (Lei et al. 2018) with its identity highway: the input itself, used
elementwise, so the input size d must equal the hidden size h."""

from grusym.symbolic.cell import sigmoid


def sru(c):
    """SRU, simple recurrent unit (Lei et al. 2018), identity highway (d == h).

    xt = X W; f = sigmoid(X W_f + v_f*c_prev + b_f); r = sigmoid(X W_r + v_r*c_prev + b_r);
    c = f*c_prev + (1 - f)*xt; h = r*c + (1 - r)*X. The gates read the previous cell state through
    vectors v_f, v_r (one weight per unit); the highway adds the input X itself, elementwise, which is
    why the input size must equal the hidden size. The state is c; h, the output, is not read back (its
    h0 is accepted and unused).
    """
    xt = c.affine("xt", recurrent=False, bias=False, name="xt", weight="W")  # X @ W
    c_prev = c.prev("c")
    a_f = c.affine("f", recurrent=False, weight="W_f")
    f = c.let("f", sigmoid(a_f + c.vector("v_f") * c_prev))
    a_r = c.affine("r", recurrent=False, weight="W_r")
    r = c.let("r", sigmoid(a_r + c.vector("v_r") * c_prev))
    c_new = c.let("c", f * c_prev + (1 - f) * xt)
    c.let("h", r * c_new + (1 - r) * c.X)
