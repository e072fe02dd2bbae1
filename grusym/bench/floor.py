"""The GEMM floor of a generated training step: its exact matmul sequence (read off the generator's
:func:`~grusym.symbolic.codegen.gemm_plan`) run alone on preallocated operands, and the dense FLOP count
every row's GFLOP/s divides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import load, runtime
from .problems import Config

__all__ = ["Floor", "gemm_floor", "model_flops", "right_operand", "size"]


def size(expr: str, dims: Mapping[str, int]) -> int:
    """The value of a plan's size expression such as ``"T*n"`` for the given dimensions."""
    total = 1
    for factor in expr.split("*"):
        total *= int(factor) if factor.isdigit() else dims[factor]
    return total


def right_operand(values: np.ndarray, padded: bool) -> np.ndarray:
    """A product's right operand laid out as the generated code holds it: in a
    :func:`~grusym.runtime.weight_buffer` (rows padded at 4 KiB strides) where the plan says so."""
    if not padded:
        return values
    out = runtime.weight_buffer(runtime.fresh, "b", values.shape, values.dtype)
    out[...] = values
    return out


@dataclass(frozen=True)
class Floor:
    """The GEMM floor of one variant: its matmuls as (label, m, k, n, calls) and their FLOPs."""

    step: Callable[[], None]
    shapes: list[tuple[str, int, int, int, int]]
    flops: int
    phases: dict[str, Callable[[], None]] = field(default_factory=dict)  # the same matmuls, per phase


def gemm_floor(
    variant: str,
    cfg: Config,
    dtype: Any,
    tokens: bool = True,
    seed: int = 0,
    input_grad: bool | None = None,
    onehot: bool = False,
) -> Floor:
    """The exact matmul sequence of the variant's generated step alone, on preallocated operands.

    Per-step products run inside a loop over T, in the generated order (forward loop, head, backward
    loop, parameter gradients), each as ``np.matmul(a, b, out=c)``. input_grad: include the dX GEMM
    (default: for float inputs, as ``loss_and_grads`` does by default). onehot: the float inputs are
    one-hot rows, which the forward gathers (:func:`~grusym.runtime.one_hot_ids`): no input projection.
    """
    from ..symbolic.codegen import gemm_plan

    dims = {"T": cfg.T, "n": cfg.n, "d": cfg.V, "h": cfg.h, "q": cfg.V}
    keep = {"always", "tokens" if tokens else "floats"}
    keep |= {"dX"} if (not tokens if input_grad is None else input_grad) else set()
    rng = np.random.default_rng(seed)
    phases: dict[tuple[str, bool], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    shapes, flops = [], 0
    if ".py:" in variant:  # a cell of a user's file (FILE.py:NAME)
        from ..symbolic.usercell import load_cell

        variant = load_cell(variant)  # type: ignore[assignment]
    for g in gemm_plan(variant):
        if g.when not in keep or (g.when == "tokens" and cfg.V > runtime.ONE_HOT_MAX):
            continue
        if onehot and not tokens and g.when == "floats" and g.phase == "forward":
            continue
        m, k, n = (size(s, dims) for s in (g.m, g.k, g.n))
        calls = cfg.T if g.per_step else 1
        flops += 2 * m * k * n * calls  # the model's FLOPs: rt.project's bias column not counted
        k += g.bias_column and runtime.bias_column(k, n)
        a = (rng.standard_normal((m, k)) * 0.01).astype(dtype)
        b = right_operand((rng.standard_normal((k, n)) * 0.01).astype(dtype), g.padded)
        phases.setdefault((g.phase, g.per_step), []).append((a, b, np.empty((m, n), dtype)))
        shapes.append((g.label, m, k, n, calls))
    order = list(phases)  # plan order: forward, head, backward, gradients

    def runner(keys: list[tuple[str, bool]]) -> Callable[[], None]:
        def step() -> None:
            for key in keys:
                products = phases[key]
                for _ in range(cfg.T if key[1] else 1):
                    for a, b, c in products:
                        np.matmul(a, b, out=c)

        return step

    names = {p for p, _ in order}
    return Floor(runner(order), shapes, flops, {p: runner([k for k in order if k[0] == p]) for p in names})


def model_flops(variant: str, cfg: Config) -> int:
    """Matmul FLOPs of one dense step, 6 * T * n * (number of weights): every weight is used once per
    position forward (2 FLOPs per weight) and twice backward (input and weight gradient)."""
    sizes = {"d": cfg.V, "h": cfg.h, "q": cfg.V}
    weights = sum(sizes[r] * sizes[c] for r, c in (s for s in load(variant).PARAMS.values() if len(s) == 2))
    return 6 * cfg.T * cfg.n * weights
