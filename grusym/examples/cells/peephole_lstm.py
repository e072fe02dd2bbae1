"""A peephole LSTM (Gers & Schmidhuber 2000): the gates also look at the cell state.

Copy this file to declare your own cell; ``grusym derive --cell peephole_lstm.py:peephole_lstm --out .``
writes ``peephole_lstm.py``'s generated module next to it.
"""

from grusym.symbolic.cell import sigmoid, tanh


def peephole_lstm(c):
    """Peephole LSTM (Gers & Schmidhuber 2000).

    The input and forget gates read the previous cell state c_prev, the output gate the new one c,
    through elementwise weight vectors w_ci, w_cf, w_co (one weight per unit, no matrix).
    """
    a_i = c.affine("i")  # reads h_prev: h is the first state
    c_prev = c.prev("c")  # the second state, so initial states are the tuple (h0, c0) as in torch
    i = c.let("i", sigmoid(a_i + c.vector("w_ci") * c_prev))
    f = c.let("f", sigmoid(c.affine("f") + c.vector("w_cf") * c_prev))
    g = c.let("g", tanh(c.affine("g")))
    c_new = c.let("c", f * c_prev + i * g)
    o = c.let("o", sigmoid(c.affine("o") + c.vector("w_co") * c_new))
    tanh_c = c.let("tanh_c", tanh(c_new))
    c.let("h", o * tanh_c)
