"""Layer normalisation written in the cell language: a helper users call inside a declaration.

Contract: :func:`layer_norm` declares the steps of LN over the hidden units of each row (Ba et al. 2016)
from the language's own constructs (``c.mean``, ``-``, ``*``, ``sqrt``, ``/``) and returns the normalised
expression, so its derivative is derived like any other step's: nothing here is differentiated by hand.
"""

from __future__ import annotations

from .cell import Cell, Value, sqrt

__all__ = ["layer_norm"]


def layer_norm(c: Cell, v: Value, gain: Value, shift: Value, eps: float = 1e-5, *, name: str) -> Value:
    """``gain*(v - mean(v))/sqrt(var(v) + eps) + shift`` over the hidden units of each row.

    v: an (n, h) value; gain, shift: (h,) vectors (``c.vector(..., init=1)``, ``c.vector(...)``); the
    variance is biased (divides by h), as torch.nn.functional.layer_norm's. Declares the steps
    ``<name>_mu`` (the row mean), ``<name>_xc`` (v centred), ``<name>_sq``, ``<name>_var`` (the row
    variance) and ``<name>_sd`` = sqrt(var + eps), which eps > 0 makes provably positive, so the division
    is accepted. Returns the normalised value as an expression (the caller's step applies it).
    """
    mu = c.mean(v, name=f"{name}_mu")
    xc = c.let(f"{name}_xc", v - mu)
    var = c.mean(c.let(f"{name}_sq", xc * xc), name=f"{name}_var")
    sd = c.let(f"{name}_sd", sqrt(var + eps))
    return gain * xc / sd + shift
