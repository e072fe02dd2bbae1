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
    ``mu_<name>`` (the row mean), ``xc_<name>`` (v centred), ``sq_<name>``, ``var_<name>`` (the row
    variance) and ``sd_<name>`` = sqrt(var + eps), which eps > 0 makes provably positive, so the division
    is accepted. Returns the normalised value as an expression (the caller's step applies it). One
    underscore per name keeps the report's subscripts simple: ``name`` is best a gate's letter.
    """
    mu = c.mean(v, name=f"mu_{name}")
    xc = c.let(f"xc_{name}", v - mu)
    var = c.mean(c.let(f"sq_{name}", xc * xc), name=f"var_{name}")
    sd = c.let(f"sd_{name}", sqrt(var + eps))
    return gain * xc / sd + shift
