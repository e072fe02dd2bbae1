"""The exact algebraic relations between variants, as linear maps of their parameters.

The relations (:data:`RELATIONS`) are exact identities of the functions computed, not approximations:
``convert`` maps parameters along them and ``pull_back_grads`` maps gradients back by the chain rule (each
relation is linear in the parameters, so the gradient map is its transpose). Contract: NumPy only; every
function returns new arrays in the dtype it was given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import load
from ..errors import InputError
from ._common import HEAD, Params, array, cell_spec, check, mapping

__all__ = ["RELATIONS", "Relation", "convert", "pull_back_grads"]


@dataclass(frozen=True)
class Relation:
    """``target(convert(p)) == source(p)`` exactly, by a linear parameter map.

    ``rules`` gives each target cell parameter as ``((coefficient, source key), ...)``; an empty tuple
    means zeros. The head (``W_hq``, ``b_q``) is copied unchanged.
    """

    source: str
    target: str
    rules: Mapping[str, tuple[tuple[float, str], ...]]
    why: str


def _same(*keys: str) -> dict[str, tuple[tuple[float, str], ...]]:
    return {k: ((1.0, k),) for k in keys}


_NEGATED_Z = {k: ((-1.0, k),) for k in ("W_xz", "W_hz", "b_z")}
# r = sigmoid(0) = 1/2 exactly, so (r*h_prev) @ (2 W_hh) == h_prev @ W_hh: a reset gate that does nothing
_HALF_RESET = {"W_xr": (), "W_hr": (), "b_r": (), "W_hh": ((2.0, "W_hh"),)}
_WHY_NEGATE = "sigmoid(-a) = 1 - sigmoid(a): negate the update gate's weights and bias"
_WHY_HALF = "zero reset weights and bias give r = sigmoid(0) = 1/2 everywhere; W_hh doubled compensates"

RELATIONS: tuple[Relation, ...] = (
    Relation(
        "gru", "gru_chung", {**_NEGATED_Z, **_same("W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")}, _WHY_NEGATE
    ),
    Relation(
        "gru_chung", "gru", {**_NEGATED_Z, **_same("W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")}, _WHY_NEGATE
    ),
    Relation(
        "mgu",
        "gru_chung",
        {
            **{f"W_{s}{g}": ((1.0, f"W_{s}f"),) for s in "xh" for g in "zr"},
            "b_z": ((1.0, "b_f"),),
            "b_r": ((1.0, "b_f"),),
            **_same("W_xh", "W_hh", "b_h"),
        },
        "mgu is gru_chung with both gates tied to the forget gate: z = r = f",
    ),
    Relation("rnn_tanh", "gru_reset_only", {**_HALF_RESET, **_same("W_xh", "b_h")}, _WHY_HALF),
    Relation(
        "gru_update_only", "gru", {**_HALF_RESET, **_same("W_xz", "W_hz", "b_z", "W_xh", "b_h")}, _WHY_HALF
    ),
    Relation(
        "gru_update_only",
        "gru_reset_after",
        {**_HALF_RESET, **_same("W_xz", "W_hz", "b_z", "W_xh"), "b_xh": ((1.0, "b_h"),), "b_hh": ()},
        _WHY_HALF + "; b_xh = b_h, b_hh = 0",
    ),
)


def _path(source: str, target: str) -> list[Relation]:
    """The shortest chain of relations from ``source`` to ``target`` (breadth-first)."""
    for name in (source, target):
        load(name)  # UnknownVariantError for a bad name
    previous: dict[str, Relation | None] = {source: None}
    queue = deque([source])
    while queue:
        v = queue.popleft()
        for rel in RELATIONS:
            if rel.source == v and rel.target not in previous:
                previous[rel.target] = rel
                queue.append(rel.target)
    if target not in previous:
        reachable = [v for v in previous if v != source]
        raise InputError(
            f"no exact relation from {source!r} to {target!r}"
            + (
                " (the reset gate acts on different sides of W_hh: not equivalent in general)"
                if {source, target} >= {"gru", "gru_reset_after"}
                else ""
            )
            + f"; {source!r} converts exactly to: {', '.join(map(repr, reachable)) or 'nothing'}"
        )
    chain: list[Relation] = []
    v = target
    while (last := previous[v]) is not None:
        chain.append(last)
        v = last.source
    return chain[::-1]


def convert(params: Mapping[str, Any], from_variant: str, to_variant: str) -> Params:
    """Parameters of ``to_variant`` computing exactly the function ``params`` compute in ``from_variant``.

    params: ``from_variant`` parameters, with or without the head (copied unchanged). Follows the
    shortest chain of :data:`RELATIONS`; raises InputError when no exact relation exists (e.g. ``gru`` and
    ``gru_reset_after``). Every output array is new; shapes follow ``grusym.load(to_variant).PARAMS``.
    """
    chain = _path(from_variant, to_variant)
    p, dims, dtype, has_head = check(from_variant, params)
    for rel in chain:
        p = {
            **{
                key: sum(
                    (c * p[src] for c, src in rel.rules[key]),
                    start=np.zeros(tuple(dims[dn] for dn in spec), dtype),
                )
                for key, spec in cell_spec(rel.target).items()
            },
            **{k: p[k] for k in HEAD if has_head},
        }
    return {k: v.copy() for k, v in p.items()}


def pull_back_grads(grads: Mapping[str, Any], from_variant: str, to_variant: str) -> Params:
    """Gradients for ``from_variant`` at ``params`` from those of ``to_variant`` at ``convert(params, ...)``.

    grads: gradients of ``to_variant``'s loss (a dict like ``loss_and_grads`` returns; ``"h0"`` and
    ``"X"`` pass through unchanged, the head too). Since ``convert`` is linear, p' = A p, the chain rule
    gives dL/dp = A^T dL/dp': a negated block's gradient is negated, a doubled one doubled, and a
    parameter copied into several places (mgu's f into z and r) sums their gradients.
    """
    chain = _path(from_variant, to_variant)
    grads = mapping("grads", grads)
    rest = {k: array(f"grads[{k!r}]", v) for k, v in grads.items() if k in ("h0", "X")}
    g, dims, dtype, has_head = check(to_variant, {k: v for k, v in grads.items() if k not in rest}, "grads")
    for rel in reversed(chain):
        back = {
            key: np.zeros(tuple(dims[dn] for dn in spec), dtype)
            for key, spec in cell_spec(rel.source).items()
        }
        for key, terms in rel.rules.items():
            for c, src in terms:
                back[src] += c * g[key]
        g = {**back, **{k: g[k] for k in HEAD if has_head}}
    return {**{k: v.copy() for k, v in g.items()}, **rest}
