"""A GRU with zoneout (Krueger et al. 2017), its masks per-step inputs without gradient (``c.input``)."""

from grusym.symbolic.cell import sigmoid, tanh


def zoneout_gru(c):
    """GRU with zoneout (Krueger et al. 2017), the zoneout mask a per-step input.

    The d2l GRU gives h_gru = z*h_prev + (1 - z)*h_tilde; zoneout keeps each unit's previous value where the
    mask m is 1: h = m*h_prev + (1 - m)*h_gru. The mask is no parameter: it is supplied for every step as
    aux={"m": M}, M (T, n, h). Training: M drawn 0/1, each unit kept with probability p
    ((rng.random((T, n, h)) < p).astype(float)); inference: its expectation, M = p everywhere (a (T, n, 1)
    array is broadcast over the units: np.full((T, n, 1), p)). M gets no gradient.
    """
    z = c.let("z", sigmoid(c.affine("z")))
    r = c.let("r", sigmoid(c.affine("r")))
    r_h = c.let("r_h", r * c.h_prev)
    h_tilde = c.let("h_tilde", tanh(c.affine("h", hidden=r_h)))
    h_gru = c.let("h_gru", z * c.h_prev + (1 - z) * h_tilde)
    m = c.input("m")
    c.let("h", m * c.h_prev + (1 - m) * h_gru)
