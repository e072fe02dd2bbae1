"""Algebraic relations between the variants, each checked on the generated code when the index is built.

Contract: a :class:`Relation` says "variant ``a`` with parameters mapped by ``make`` computes exactly what
variant ``b`` computes" and :func:`check` runs both generated ``forward`` passes on one random float problem.
A gate is pinned to 0 or 1 by zero weights and a bias of -+50: float64 sigmoid(+-50) is exactly 1 or 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RELATIONS", "Relation", "check"]

Params = dict[str, np.ndarray]
_SIZES = {"T": 5, "n": 3, "d": 3, "h": 4, "q": 2}
_PIN = 50.0


@dataclass(frozen=True)
class Relation:
    a: str
    b: str
    claim: str  # plain text; variable names in backticks are rendered as code
    why: str
    make: Callable[[Callable[[str], Params]], tuple[Params, Params]]  # draw -> (params of a, params of b)


def _pin(p: Params, gate: str, value: int) -> Params:
    p = dict(p)
    p[f"W_x{gate}"] = np.zeros_like(p[f"W_x{gate}"])
    p[f"W_h{gate}"] = np.zeros_like(p[f"W_h{gate}"])
    p[f"b_{gate}"] = np.full_like(p[f"b_{gate}"], _PIN if value else -_PIN)
    return p


def _take(src: Params, like: Params, rename: dict[str, str] | None = None) -> Params:
    rename = rename or {}
    return {k: src[rename.get(k, k)].copy() for k in like}


def _negate_update(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    gru = draw("gru")
    chung = {k: (-v if k in ("W_xz", "W_hz", "b_z") else v) for k, v in gru.items()}
    return chung, gru


def _update_only(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    gru = _pin(draw("gru"), "r", 1)
    return _take(gru, draw("gru_update_only")), gru


def _reset_only(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    gru = _pin(draw("gru"), "z", 0)
    return _take(gru, draw("gru_reset_only")), gru


def _rnn(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    gru = _pin(_pin(draw("gru"), "z", 0), "r", 1)
    return _take(gru, draw("rnn_tanh")), gru


def _mgu(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    chung = draw("gru_chung")
    for w in ("W_x", "W_h", "b_"):
        chung[f"{w}r"] = chung[f"{w}z"]
    mgu = _take(chung, draw("mgu"), {"W_xf": "W_xz", "W_hf": "W_hz", "b_f": "b_z"})
    return mgu, chung


def _reset_after(draw: Callable[[str], Params]) -> tuple[Params, Params]:
    after = _pin(draw("gru_reset_after"), "r", 1)
    gru = _pin(_take(after, draw("gru"), {"b_h": "b_xh"}), "r", 1)
    gru["b_h"] = after["b_xh"] + after["b_hh"]
    return after, gru


RELATIONS = (
    Relation(
        "gru_chung",
        "gru",
        "`gru_chung` is `gru` with the update gate negated: negate `W_xz`, `W_hz`, `b_z`",
        "sigmoid(-a) = 1 - sigmoid(a) swaps the roles of z and 1 - z",
        _negate_update,
    ),
    Relation(
        "gru_update_only",
        "gru",
        "`gru_update_only` is `gru` with the reset gate fixed at 1",
        "r = 1 makes r * h_prev = h_prev",
        _update_only,
    ),
    Relation(
        "gru_reset_only",
        "gru",
        "`gru_reset_only` is `gru` with the update gate fixed at 0",
        "z = 0 makes h = h_tilde",
        _reset_only,
    ),
    Relation(
        "rnn_tanh",
        "gru",
        "`rnn_tanh` is `gru` with the update gate at 0 and the reset gate at 1 (seed 004)",
        "both gates fixed leave h = tanh(X W_xh + h_prev W_hh + b_h)",
        _rnn,
    ),
    Relation(
        "mgu",
        "gru_chung",
        "`mgu` is `gru_chung` with the reset gate tied to the update gate (one gate `f`)",
        "f plays both roles",
        _mgu,
    ),
    Relation(
        "gru_reset_after",
        "gru",
        "`gru_reset_after` equals `gru` when the reset gate is fixed at 1, with `b_h` = `b_xh` + `b_hh`",
        "with r = 1 the reset position no longer matters; otherwise they differ",
        _reset_after,
    ),
)


def check(rel: Relation, seed: int = 0) -> float:
    """max |H_a - H_b| over one random float64 problem (0.0 when the relation holds exactly)."""
    import grusym

    s = _SIZES
    rng = np.random.default_rng(seed)

    def draw(name: str) -> Params:
        p: dict[str, Any] = grusym.load(name).init_params(s["d"], s["h"], s["q"], seed=seed, scale=1.0)
        return {k: (rng.normal(0.0, 0.5, v.shape) if v.ndim == 1 else v) for k, v in p.items()}

    pa, pb = rel.make(draw)
    X = rng.normal(size=(s["T"], s["n"], s["d"]))
    h0 = rng.uniform(-1, 1, (s["n"], s["h"]))
    Ha = grusym.load(rel.a).forward(pa, X, h0)[0]
    Hb = grusym.load(rel.b).forward(pb, X, h0)[0]
    return float(np.max(np.abs(Ha - Hb)))
