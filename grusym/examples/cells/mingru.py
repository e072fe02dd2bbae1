"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): gates from the input only, a linear candidate."""

from grusym.symbolic.cell import sigmoid


def mingru(c):
    """minGRU (Feng et al. 2024).

    The update gate z and the candidate h_tilde read only the input (no h_prev inside them), so the
    recurrence is an elementwise interpolation: h = (1 - z)*h_prev + z*h_tilde.
    """
    z = c.let("z", sigmoid(c.affine("z", recurrent=False)))
    h_tilde = c.affine("h", recurrent=False, name="h_tilde")  # a linear step: no nonlinearity
    c.let("h", (1 - z) * c.h_prev + z * h_tilde)
