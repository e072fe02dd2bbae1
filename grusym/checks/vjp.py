"""Vector-valued functions and layer pairs: check a hand-written vector-Jacobian product.

Contract: :func:`check_vjp` takes ``f(*inputs) -> array or tuple of arrays`` and ``vjp(dout, *inputs) ->
gradients`` (``dout`` an array for one output, a tuple for several; gradients aligned with the inputs as in
:func:`grusym.checks.check_gradients`). It draws random cotangents w (seeded), checks the scalar
sum_k <w_k, f_k> with any method, and for a failing element names the output whose cotangent alone
exposes it. :func:`check_layer` does the same for the course-assignment style pair
``forward(*inputs) -> (*outputs, cache)`` and ``backward(*douts, cache) -> gradients``. A single time step
of a cell is then checkable on its own; a whole sequence layer too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .core import check_gradients
from .inputs import Point, function_label
from .report import GradientReport

__all__ = ["check_layer", "check_vjp"]


def _outputs(out: Any, label: str) -> tuple[Any, ...]:
    outs = out if isinstance(out, tuple) else (out,)
    for k, o in enumerate(outs):
        a = np.asarray(o)
        if a.dtype.kind not in "fc":
            raise InputError(f"{label} output {k} must be a float array, got dtype {a.dtype}")
    return outs


def check_vjp(
    f: Callable[..., Any],
    vjp: Callable[..., Any],
    inputs: Any,
    *,
    method: str = "fd",
    wrt: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    output_names: Sequence[str] | None = None,
) -> GradientReport:
    """Check ``vjp`` against ``f`` along random cotangents; failing entries name the output.

    f: inputs -> one array or a tuple of arrays. vjp(dout, *inputs) (or vjp(dout, inputs) for dict
    inputs) -> gradients of <dout, f(inputs)> aligned with the inputs. output_names: how to call the
    outputs in messages (default out, or out0, out1, ...).
    """
    f_label = function_label(f, "f")
    point = Point.of(inputs, f)
    raw = point.call(f, point.x, native=True)
    outs = _outputs(raw, f_label)
    rng = np.random.default_rng(seed + 7919)
    cotangents = tuple(rng.standard_normal(np.shape(o)) for o in outs)
    names = (
        list(output_names)
        if output_names
        else (["out"] if len(outs) == 1 else [f"out{k}" for k in range(len(outs))])
    )
    if len(names) != len(outs):
        raise InputError(f"output_names has {len(names)} names for {len(outs)} outputs of {f_label}")
    single = not isinstance(raw, tuple)

    def report_for(weights: tuple[Any, ...], chosen: Sequence[str] | None) -> GradientReport:
        dtypes = [np.asarray(o).dtype if np.asarray(o).dtype.kind == "f" else np.float64 for o in outs]
        dout: Any = (
            weights[0].astype(dtypes[0])
            if single
            else tuple(w.astype(d) for w, d in zip(weights, dtypes, strict=True))
        )

        def scalar(*args: Any) -> Any:
            got = f(*args)
            got = got if isinstance(got, tuple) else (got,)
            return sum(np.sum(w * o) for w, o in zip(weights, got, strict=True))

        def grads(*args: Any) -> Any:
            return vjp(dout, *args)

        scalar.__qualname__ = getattr(f, "__qualname__", "f")
        grads.__qualname__ = getattr(vjp, "__qualname__", "vjp")
        fun, grad_fun = scalar, grads
        # the positional names come from f's signature, not from the wrappers'
        named = (
            tuple(point.build(point.x, native=True))
            if point.positional
            else point.build(point.x, native=True)
        )
        return check_gradients(
            _named(fun, f), grad_fun, named, method=method, wrt=chosen, exclude=exclude,
            rtol=rtol, atol=atol, seed=seed, labels=("f", "vjp"),
        )  # fmt: skip

    report = report_for(cotangents, wrt)
    if len(outs) > 1:
        for k, e in enumerate(report.entries):
            if e.ok or e.inconclusive:
                continue
            for j, out_name in enumerate(names):
                alone = tuple(w if i == j else np.zeros_like(w) for i, w in enumerate(cotangents))
                if not report_for(alone, [e.name]).ok:
                    report.entries[k] = dataclasses.replace(e, output=out_name)
                    break
    return report


def _named(fn: Callable[..., Any], like: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` carrying the signature of ``like``, so positional inputs are named by like's parameters."""
    import functools

    return functools.wraps(like)(fn)


def check_layer(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    inputs: Any,
    *,
    method: str = "fd",
    wrt: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    output_names: Sequence[str] | None = None,
) -> GradientReport:
    """Check a layer pair: ``forward(*inputs) -> (*outputs, cache)``, ``backward(*douts, cache) -> grads``.

    inputs: the positional arguments of ``forward`` (x, prev_h, Wx, Wh, b, ...), named by its signature.
    grads: aligned with those arguments (dx, dprev_h, dWx, dWh, db), ``None`` for one without a gradient
    (then pass it in ``exclude``). Cotangents are random; see :func:`check_vjp`.
    """
    label = function_label(forward, "forward")

    def split(result: Any) -> tuple[Any, Any]:
        if not isinstance(result, tuple) or len(result) < 2:
            raise InputError(f"{label} must return (output, ..., cache), got {type(result).__name__}")
        outs = result[:-1]
        return (outs[0] if len(outs) == 1 else outs), result[-1]

    def f(*args: Any) -> Any:
        return split(forward(*args))[0]

    def vjp(dout: Any, *args: Any) -> Any:
        douts = dout if isinstance(dout, tuple) else (dout,)
        return backward(*douts, split(forward(*args))[1])

    vjp.__qualname__ = getattr(backward, "__qualname__", "backward")
    if not isinstance(inputs, tuple | list):
        raise InputError("check_layer: inputs must be the tuple of forward's positional arguments")
    return check_vjp(
        _named(f, forward), vjp, tuple(inputs), method=method, wrt=wrt, exclude=exclude, rtol=rtol,
        atol=atol, seed=seed, output_names=output_names,
    )  # fmt: skip
