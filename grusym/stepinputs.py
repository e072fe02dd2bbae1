"""The per-step inputs of a cell (``c.input``), as its generated module and the models receive them.

Contract: a cell module with inputs has ``INPUTS``, a dict from each input's name to the steps that read it
(``"cell 'zoneout_gru', step (5) h"``), and its functions take ``aux``, a dict of one array per input:
(T, n, h), or (T, n, 1) broadcast over the hidden units (``step``: (n, h) or (n, 1)), finite numbers of any
real dtype, cast to the parameters'. :func:`check_aux` returns them as contiguous (T, n, h) arrays in
``INPUTS`` order; every problem (no dict, a missing or unknown name, a wrong shape, a nan) is an
:class:`~grusym.errors.InputError` in one line naming the input and the steps that read it. Inputs get no
gradient: :func:`refuse_gradient` refuses a check that asks for one, and the checks run a cell with
inputs as :class:`HeldFixed` (the inputs drawn once by :func:`draw`, then constants). Imports only NumPy
and the errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "HeldFixed",
    "check_aux",
    "check_cached",
    "check_step_aux",
    "draw",
    "inputs_of",
    "refuse_gradient",
]


def inputs_of(module: Any) -> dict[str, str]:
    """A cell module's (or model's) per-step inputs and their readers; {} for a cell without any."""
    return dict(getattr(module, "INPUTS", None) or {})


def _mapping(aux: object, inputs: Mapping[str, str], shape: str) -> Mapping[str, Any]:
    names = ", ".join(f"{k!r}: {shape}" for k in inputs)
    first = next(iter(inputs.values()))
    if aux is None:
        raise InputError(f"{first}: aux is missing; this cell reads per-step inputs: aux={{{names}}}")
    if not isinstance(aux, Mapping):
        raise InputError(f"{first}: aux must be a dict {{{names}}}, got {type(aux).__name__}")
    extra = [k for k in aux if k not in inputs]
    if extra:
        raise InputError(
            f"{first}: aux has {', '.join(map(repr, extra))}, which the cell does not read; its per-step "
            f"inputs are {', '.join(map(repr, inputs))}"
        )
    missing = [k for k in inputs if k not in aux]
    if missing:
        name = missing[0]
        raise InputError(f"{inputs[name]}: aux has no {name!r} ({shape}), a per-step input it reads")
    return aux


def _array(name: str, value: object, where: str, lead: tuple[int, ...], nh: int, dtype: Any) -> np.ndarray:
    dims = ", ".join(("T", "n")[-len(lead) :] if len(lead) == 2 else ("n",))
    want = f"({dims}, h) = {(*lead, nh)} or ({dims}, 1)"
    try:
        a = np.asarray(value)
    except Exception:
        a = np.asarray(None, dtype=object)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{where}: aux[{name!r}] must hold real numbers {want}, got dtype {a.dtype}")
    if a.shape not in ((*lead, nh), (*lead, 1)):
        got = "(" + ", ".join(map(str, a.shape)) + ")"
        raise InputError(f"{where}: aux[{name!r}] must have shape {want}, got {got}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise InputError(f"{where}: aux[{name!r}] holds nan or inf; a per-step input must be finite")
    return np.ascontiguousarray(np.broadcast_to(a, (*lead, nh)), dtype=dtype)


def check_aux(
    aux: object, inputs: Mapping[str, str], Tn: tuple[int, int], nh: int, dtype: Any
) -> tuple[np.ndarray, ...]:
    """The per-step inputs as (T, n, h) arrays of ``dtype`` in ``inputs`` order (see the module doc)."""
    given = _mapping(aux, inputs, "(T, n, h)")
    return tuple(_array(k, given[k], where, tuple(Tn), nh, dtype) for k, where in inputs.items())


def check_step_aux(
    aux: object, inputs: Mapping[str, str], Tn: tuple[int, int], nh: int, dtype: Any
) -> tuple[np.ndarray, ...]:
    """One step's inputs, each (n, h) or (n, 1), as (1, n, h) arrays (``Tn`` is the one step's (1, n))."""
    given = _mapping(aux, inputs, "(n, h)")
    return tuple(_array(k, given[k], where, (Tn[1],), nh, dtype)[None] for k, where in inputs.items())


def check_cached(cache: object, names: Sequence[str]) -> None:
    """backward's check that ``cache`` holds the per-step inputs (``U_m``...) its loop reads."""
    missing = [k for k in names if not isinstance(cache, Mapping) or k not in cache]
    if missing:
        raise InputError(f"cache is not from this cell's forward: missing the per-step input {missing[0]!r}")


def refuse_gradient(module: Any, wrt: object) -> None:
    """Refuse a gradient asked for a per-step input (``wrt``: a name or names), in one line naming the
    cell and the steps that read it."""
    inputs = inputs_of(module)
    names = [wrt] if isinstance(wrt, str) else list(wrt) if isinstance(wrt, (list, tuple, set)) else []
    for name in names:
        if name in inputs:
            raise InputError(
                f"{inputs[name]}: {name!r} is a per-step input (c.input), held fixed: it has no gradient to "
                "check or return"
            )


class HeldFixed:
    """A cell module (or model) with its per-step inputs held fixed: ``forward``, ``predict``, ``loss`` and
    ``loss_and_grads`` take no ``aux`` and read :meth:`inputs_at` (``step`` takes its step's ``aux``, by
    default the first step's); every other name is the module's. The checks, the oracle and the reports
    run a cell with inputs through this view as a cell without any.

    aux: the inputs, (T, n, h) arrays (an X of fewer steps, a check's prefix, gets their first steps); None:
    drawn for each call's (T, n, h) by :func:`draw` from ``numpy.random.default_rng(seed)``, the same
    values for the same sizes; constant: drawn for one step and used at every step (the reports: a step
    run alone, as their Jacobian checks run it, then reads what the whole run read).
    """

    def __init__(
        self, module: Any, aux: Mapping[str, np.ndarray] | None = None, seed: int = 0, constant: bool = False
    ) -> None:
        self.module = module
        self.AUX = None if aux is None else dict(aux)
        self.seed = seed
        self.constant = constant

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def inputs_at(self, X: Any, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The inputs a run over ``X`` (T, n, ...) reads."""
        T, n = (len(X), len(X[0])) if isinstance(X, (list, tuple)) else np.shape(X)[:2]
        if self.AUX is not None:
            return {k: v[:T] for k, v in self.AUX.items()}
        spec = self.module.PARAMS
        nh = next(np.shape(params[k])[-1] for k, dims in spec.items() if dims[-1] == "h" and k in params)
        drawn = draw(
            self.module, 1 if self.constant else int(T), int(n), int(nh), np.random.default_rng(self.seed)
        )
        return {k: np.broadcast_to(v, (int(T), *v.shape[1:])) for k, v in drawn.items()}

    def forward(self, params: Any, X: Any, h0: Any = None, lengths: Any = None) -> Any:
        return self.module.forward(params, X, h0, lengths, aux=self.inputs_at(X, params))

    def predict(self, params: Any, X: Any, h0: Any = None, lengths: Any = None) -> Any:
        return self.module.predict(params, X, h0, lengths, aux=self.inputs_at(X, params))

    def step(self, params: Any, x_t: Any, state: Any = None, aux: Any = None) -> Any:
        """One step; aux None: the inputs of a run's first step (those of the run's draw at t = 0)."""
        if aux is None:
            aux = {k: v[0] for k, v in self.inputs_at(np.asarray(x_t)[None], params).items()}
        return self.module.step(params, x_t, state, aux=aux)

    def loss(self, params: Any, X: Any, Y: Any, h0: Any = None, lengths: Any = None) -> Any:
        return self.module.loss(params, X, Y, h0, lengths, aux=self.inputs_at(X, params))

    def loss_and_grads(
        self, params: Any, X: Any, Y: Any, h0: Any = None, lengths: Any = None, input_grad: Any = None
    ) -> Any:
        aux = self.inputs_at(X, params)
        return self.module.loss_and_grads(params, X, Y, h0, lengths, input_grad, aux=aux)


def draw(module: Any, T: int, n: int, nh: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random per-step inputs for the checks: multiples of 1/4096 in [0, 1] (exact in float64 and as the
    oracle's rationals), covering a mask's 0 and 1 and a probability between."""
    return {k: rng.integers(0, 4097, (T, n, nh)) / 4096 for k in inputs_of(module)}
