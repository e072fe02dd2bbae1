"""The GRU variants: each one a short declaration of its equations, the single source of truth.

Everything else (derivation, generated module, report, tests, README table) reads these declarations.
Conventions users mix up are named, never silently picked: ``reset`` says whether the reset gate acts
before the hidden matmul (d2l, Cho et al.) or after it (cuDNN, PyTorch, Keras ``reset_after=True``), and
``update`` says which of h_prev and h_tilde the update gate keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy import MatrixSymbol, OneMatrix

from ..errors import UnknownVariantError
from .cell import Cell, Param, Step, Term, h, n, q, sigmoid, tanh

__all__ = ["CELLS", "HEAD_PARAMS", "VARIANTS", "Variant", "build", "head"]


@dataclass(frozen=True)
class Variant:
    """A named GRU convention and where it comes from."""

    name: str
    title: str
    declare: Callable[[Cell], None]
    reset: str  # "before the hidden matmul", "after the hidden matmul" or "none"
    update: str  # the interpolation, in words
    sources: str
    used_by: str

    def cell(self) -> Cell:
        doc = f"Reset gate: {self.reset}. Update: {self.update}.\n"
        doc += f"Sources: {self.sources}. Used by: {self.used_by}."
        c = Cell(self.name, title=self.title, doc=doc, builtin=True)
        self.declare(c)
        return c.check()


def _gru(c: Cell) -> None:
    z = c.let("z", sigmoid(c.affine("z")))
    r = c.let("r", sigmoid(c.affine("r")))
    r_h = c.let("r_h", r * c.h_prev)
    h_tilde = c.let("h_tilde", tanh(c.affine("h", hidden=r_h)))
    c.let("h", z * c.h_prev + (1 - z) * h_tilde)


def _gru_reset_after(c: Cell) -> None:
    z = c.let("z", sigmoid(c.affine("z")))
    r = c.let("r", sigmoid(c.affine("r")))
    a_xh = c.affine("h", recurrent=False, bias="b_xh", name="a_xh")
    a_hh = c.affine("h", x=False, bias="b_hh", name="a_hh")
    h_tilde = c.let("h_tilde", tanh(a_xh + r * a_hh))
    c.let("h", z * c.h_prev + (1 - z) * h_tilde)


def _gru_chung(c: Cell) -> None:
    z = c.let("z", sigmoid(c.affine("z")))
    r = c.let("r", sigmoid(c.affine("r")))
    r_h = c.let("r_h", r * c.h_prev)
    h_tilde = c.let("h_tilde", tanh(c.affine("h", hidden=r_h)))
    c.let("h", (1 - z) * c.h_prev + z * h_tilde)


def _mgu(c: Cell) -> None:
    f = c.let("f", sigmoid(c.affine("f")))
    f_h = c.let("f_h", f * c.h_prev)
    h_tilde = c.let("h_tilde", tanh(c.affine("h", hidden=f_h)))
    c.let("h", (1 - f) * c.h_prev + f * h_tilde)


def _gru_reset_only(c: Cell) -> None:
    r = c.let("r", sigmoid(c.affine("r")))
    r_h = c.let("r_h", r * c.h_prev)
    c.let("h", tanh(c.affine("h", hidden=r_h)))


def _gru_update_only(c: Cell) -> None:
    z = c.let("z", sigmoid(c.affine("z")))
    h_tilde = c.let("h_tilde", tanh(c.affine("h")))
    c.let("h", z * c.h_prev + (1 - z) * h_tilde)


def _rnn_tanh(c: Cell) -> None:
    c.let("h", tanh(c.affine("h")))


def _lstm(c: Cell) -> None:
    # torch keeps two bias rows per gate (bias_ih and bias_hh); so does this declaration
    i = c.let("i", sigmoid(c.affine("i", bias=("b_xi", "b_hi"))))
    f = c.let("f", sigmoid(c.affine("f", bias=("b_xf", "b_hf"))))
    g = c.let("g", tanh(c.affine("g", bias=("b_xg", "b_hg"))))
    o = c.let("o", sigmoid(c.affine("o", bias=("b_xo", "b_ho"))))
    c_new = c.let("c", f * c.prev("c") + i * g)
    tanh_c = c.let("tanh_c", tanh(c_new))
    c.let("h", o * tanh_c)


_KEEP_PREV = "h = z*h_prev + (1-z)*h_tilde (z near 1 keeps the old state)"
_TAKE_NEW = "h = (1-z)*h_prev + z*h_tilde (z near 1 takes the candidate)"

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "gru",
            "GRU, reset before the hidden matmul",
            _gru,
            "before the hidden matmul",
            _KEEP_PREV,
            "Dive into Deep Learning 8.8 / seed 003; Cho et al. 2014",
            "d2l; Keras reset_after=False",
        ),
        Variant(
            "gru_reset_after",
            "GRU, reset after the hidden matmul",
            _gru_reset_after,
            "after the hidden matmul",
            _KEEP_PREV,
            "seed 004; cuDNN",
            "cuDNN, PyTorch nn.GRU, Keras reset_after=True (TF2 default)",
        ),
        Variant(
            "gru_chung",
            "GRU, update gate takes the candidate",
            _gru_chung,
            "before the hidden matmul",
            _TAKE_NEW,
            "seed 002; Chung et al. 2014",
            "many tutorials; equals gru with the update gate negated",
        ),
        Variant(
            "mgu",
            "Minimal gated unit (one forget gate)",
            _mgu,
            "before the hidden matmul (f doubles as reset)",
            "h = (1-f)*h_prev + f*h_tilde",
            "Zhou et al. 2016",
            "research baselines",
        ),
        Variant(
            "gru_reset_only",
            "Reset gate only",
            _gru_reset_only,
            "before the hidden matmul",
            "none: h = tanh(...)",
            "d2l exercise 4 / seed 003",
            "ablation",
        ),
        Variant(
            "gru_update_only",
            "Update gate only",
            _gru_update_only,
            "none",
            _KEEP_PREV,
            "d2l exercise 4 / seed 003",
            "ablation",
        ),
        Variant(
            "rnn_tanh",
            "Vanilla tanh RNN",
            _rnn_tanh,
            "none",
            "none: h = tanh(...)",
            "seed 004 (Elman RNN)",
            "baseline whose gradient vanishes; PyTorch nn.RNN",
        ),
    )
}

# every built-in cell: the GRU variants above (the README's variant table, the relations between them)
# and the cells of other families, generated and checked alike
CELLS: dict[str, Variant] = {
    **VARIANTS,
    "lstm": Variant(
        "lstm",
        "LSTM, PyTorch convention (gates i, f, g, o)",
        _lstm,
        "none",
        "c = f*c_prev + i*g; h = o*tanh(c) (two states, h and c)",
        "Hochreiter & Schmidhuber 1997; Gers et al. 2000 (forget gate); PyTorch nn.LSTM docs",
        "PyTorch nn.LSTM (biases b_ih and b_hh kept apart), Keras LSTM",
    ),
}

HEAD_PARAMS = ("W_hq", "b_q")


def head() -> tuple[Cell, Step]:
    """The char-LM head every variant shares (seeds 000/001): ``logits = H @ W_hq + b_q`` for all T*n rows.

    The loss on top, the mean softmax cross-entropy, is a runtime primitive with its own rule.
    """
    c = Cell("head")
    W = c.params["W_hq"] = Param("W_hq", h, q, "weight")
    b = c.params["b_q"] = Param("b_q", q, q, "bias")
    expr = sp.MatAdd(MatrixSymbol("H", n, h) * W.symbol, OneMatrix(n, 1) * b.symbol)
    return c, Step("logits", expr, "linear", (Term("H", W.name),), (b.name,))


def build(name: str) -> Cell:
    """The declared cell of built-in ``name`` (a GRU variant or another of ``CELLS``)."""
    if name not in CELLS:
        raise UnknownVariantError(f"unknown variant {name!r}; known variants: {', '.join(CELLS)}")
    return CELLS[name].cell()
