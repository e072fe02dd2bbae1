"""IndRNN (Li et al. 2018): each unit recurs only on itself, through an elementwise weight vector."""

from grusym.symbolic.cell import relu


def indrnn(c):
    """IndRNN (Li et al. 2018).

    h = relu(X @ W_xh + u * h_prev + b_h): the recurrent weight is a vector u, one weight per unit, so
    the units are independent of each other through time. relu'(0) is taken as 0, as torch does.
    """
    a = c.affine("h", recurrent=False)
    c.let("h", relu(a + c.vector("u") * c.h_prev))
