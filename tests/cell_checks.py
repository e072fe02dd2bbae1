"""What the cell fuzzer and the named-cell tests share: derive a declaration (or take its refusal), draw a
problem, run an oracle, and judge the generated module against it.

:func:`check_cell` is the judgment: the module's loss, every gradient (parameters, every initial state, X)
and last states agree at ``TOLERANCE`` (float64, relative to each array's largest entry, at least 1) with the
tape autograd (tests/reference_autograd.py, which interprets the declared SymPy steps) or with torch autograd
running the declaration's own source (tests/torch_cell.py), on float X with unsorted lengths and on token
ids; with torch also ``forward``'s H and ``final_states``. Two exceptions, each counted in ``COUNTS``: where
torch's own float64 evaluation of the source is off, an 80-bit central difference of the source settles it
key by key (:func:`settled_in_80_bits`); nan gradients from a value that overflowed where the loss does not
look are a documented limitation (:func:`overflowed_unread`). Cases whose oracle is not finite are not
compared.
"""

from __future__ import annotations

import collections
import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from grusym.stepinputs import HeldFixed, inputs_of
from grusym.symbolic.cell import Cell, CellError
from grusym.symbolic.steps import unread
from grusym.symbolic.usercell import declare, derive_module

from . import reference_autograd
from .cell_strategies import Declaration

SIZES = {"T": 4, "n": 3, "d": 2, "h": 4, "q": 5}  # all different (d = h where X is read elementwise)
TINY = {"T": 1, "n": 1, "d": 1, "h": 1, "q": 2}  # every axis of length one
TOLERANCE = 1e-9
COUNTS: collections.Counter[str] = collections.Counter()  # outcomes, printed by the fuzzer's tests

# reason -> the fragment of the one-line CellError that names it
REFUSALS = {
    "matmul of a linear step": "reads the linear step",
    "state assigned by a linear step": "is a linear step",
    "state read but never updated": "never updated",
    "left factor not a named value": "must be a named (n, h) value",
    "affine step without a term": "neither an input nor a recurrent term",
    "X read only by unread steps": "no state depends on the steps that read it",
    "X never read": "never reads its input X (declare",
    "a name reserved for the generated code": "reserved for the generated code",
    "two names meet in the generated code": "would share the name",
    "a name given twice": "clashes with a value of the same name",
    "a step named like a parameter": "has the name of a parameter",
    "a value assigned twice": "assigned twice",
    "a parameter declared twice": "declared twice",
    "divisor not provably positive": "the divisor cannot be proved positive",
    "reduction over another axis": "a reduction runs over the hidden units",
    "argument not provably positive": "cannot be proved positive",
    "a per-step input as a matmul's left factor": "reads the per-step input",
}


@dataclass(frozen=True)
class Derived:
    fn: Any
    cell: Cell
    module: Any


def refusal_reason(message: str) -> str:
    return next((r for r, fragment in REFUSALS.items() if fragment in message), f"other: {message}")


@functools.cache
def declared(decl: Declaration) -> tuple[Any, Cell] | str:
    """(the cell function, the declared cell), or the refusal's reason (cached: shrinking re-declares)."""
    source = decl.source()
    name = "drawn_" + hashlib.sha1(source.encode()).hexdigest()[:10]
    fn = decl.function()
    try:
        return fn, declare(fn, name)
    except CellError as exc:
        message = str(exc)
        assert "\n" not in message and f"'{name}'" in message, message
        return refusal_reason(message)


@functools.cache
def outcome(decl: Declaration) -> Derived | str:
    """The derived cell and its in-memory module, or the refusal's reason."""
    got = declared(decl)
    if isinstance(got, str):
        return got
    return Derived(*got, derive_module(got[1]))  # a declared cell must generate: no refusal here


def make_problem(m: Any, seed: int, tokens: bool, lengths: bool, sizes: dict = SIZES) -> tuple[Any, ...]:
    T, n, d, h, q = (sizes[k] for k in "Tndhq")
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed, scale=0.5)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.5, v.shape)) for k, v in p.items()}
    X = rng.integers(0, d, (T, n)) if tokens else rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    initial = {s: rng.normal(0, 0.5, (n, h)) for s in m.STATES}
    # unsorted: a full sequence, one of a single step, one in between (n = 3: a permutation of 3, 1, 4)
    L = rng.permutation(np.resize([max(T - 1, 1), 1, T], n)) if lengths else None
    return p, X, Y, initial, L


def rel_error(ours: Any, ref: Any) -> float:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref), initial=0.0) / max(1.0, float(np.max(np.abs(ref), initial=0.0))))


def all_finite(*arrays: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(a))) for a in arrays)


def errors_of(ours: tuple[float, dict, dict], ref: tuple[float, dict, dict]) -> dict[str, float]:
    """The relative error of the loss, of every gradient and of every last state."""
    (loss, grads, last), (ref_loss, ref_grads, ref_last) = ours, ref
    assert set(grads) == set(ref_grads), f"gradient keys {sorted(grads)} != {sorted(ref_grads)}"
    errors = {"loss": rel_error(loss, ref_loss)}
    errors |= {k: rel_error(grads[k], v) for k, v in ref_grads.items()}
    return errors | {f"last {s}": rel_error(last[s], v) for s, v in ref_last.items()}


def settled_in_80_bits(
    fn: Any, problem: tuple[Any, ...], ours: dict, ref: dict, keys: list[str], aux: dict | None = None
) -> list[str]:
    """The keys among ``keys`` where torch's float64 rounding, not grusym, is off: an 80-bit central
    difference of the source's own loss (tests/source_cell.py) along a random direction of that input
    agrees with grusym's directional derivative to 1e-8 and is closer to it than to torch's.

    Torch evaluates the source as written, so ``v + exp(v) - exp(v)`` loses v's gradient (1 + e - e is
    e - e = 0 in float64 once e is large) and a sum whose terms are 1e7 times its value keeps 1e-9 of
    noise; grusym's SymPy form has neither. The difference shares nothing with either side.
    """
    from . import source_cell

    p, X, Y, initial, L = problem
    inputs = {**p, **{f"{s}0": v for s, v in initial.items()}, "X": X}
    rng = np.random.default_rng(0)
    settled = []
    for key in keys:
        if key not in inputs or not np.issubdtype(inputs[key].dtype, np.floating):
            continue
        v = rng.standard_normal(inputs[key].shape)
        step = 1e-5 / max(1.0, float(np.abs(inputs[key]).max()))

        def loss(sign: int, key: str = key, v: np.ndarray = v, step: float = step) -> np.longdouble:
            moved = {key: inputs[key].astype(np.longdouble) + sign * step * v}
            pp = {k: moved.get(k, a) for k, a in p.items()}
            init = {s: moved.get(f"{s}0", a) for s, a in initial.items()}
            return source_cell.extended_loss(fn, pp, moved.get("X", X), Y, init, L, aux=aux)

        fd = (loss(1) - loss(-1)) / (2 * step)
        mine, theirs = np.sum(ours[key] * v), np.sum(ref[key] * v)
        scale = float(np.sum(np.abs(ours[key] * v)))
        if abs(mine - fd) <= 1e-8 * scale and abs(mine - fd) < abs(theirs - fd):
            settled.append(key)
    return settled


def overflowed_unread(m: Any, problem: tuple[Any, ...], errors: dict[str, float]) -> bool:
    """Whether the only failures are nan gradients and the module's own forward values overflowed.

    The oracle (finite) reads nothing that overflowed; the module's backward multiplies a zero adjoint by
    the overflowed value, e.g. exp of a state at the last step, which only final_states returns: 0*inf.
    The loss and last states must still agree. A known limitation (docs/cells.md), counted, not hidden.
    """
    if not any(np.isnan(e) for e in errors.values()) or any(
        e > TOLERANCE for k, e in errors.items() if k == "loss" or k.startswith("last")
    ):
        return False
    p, X, _, initial, L = problem
    h0 = tuple(initial[s] for s in m.STATES) if len(m.STATES) > 1 else initial["h"]
    with np.errstate(all="ignore"):
        _, cache = m.forward(p, X, h0, L)
    return not all_finite(*(v for v in cache.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"))


def agree(label: str, errors: dict[str, float]) -> None:
    bad = {k: f"{e:.1e}" for k, e in errors.items() if not e <= TOLERANCE}
    assert not bad, f"{label}: differs from the oracle beyond {TOLERANCE:.0e}: {bad}"


def run_module(m: Any, problem: tuple[Any, ...]) -> tuple[float, dict, dict]:
    p, X, Y, initial, L = problem
    h0 = tuple(initial[s] for s in m.STATES) if len(m.STATES) > 1 else initial["h"]
    loss, grads, last = m.loss_and_grads(p, X, Y, h0, L)
    last = last if len(m.STATES) > 1 else (last,)
    return loss, grads, dict(zip(m.STATES, last, strict=True))


def fixed_inputs(m: Any, problem: tuple[Any, ...]) -> dict | None:
    """The per-step inputs a module held fixed (grusym.stepinputs.HeldFixed) reads on ``problem``."""
    p, X = problem[:2]
    return m.inputs_at(X, p) if isinstance(m, HeldFixed) else None


def run_tape(cell: Cell, m: Any, problem: tuple[Any, ...]) -> tuple[float, dict, dict]:
    p, X, Y, initial, L = problem
    h0 = tuple(initial[s] for s in cell.states) if len(cell.states) > 1 else initial["h"]
    with np.errstate(all="ignore"):
        loss, grads, last = reference_autograd.unroll(cell, p, X, Y, h0, L, aux=fixed_inputs(m, problem))
    return loss, grads, dict(zip(cell.states, last, strict=True))


CASES = {"floats, unsorted lengths": (False, True), "token ids": (True, False)}


def check_cell(
    label: str, derived: Derived, seed: int, oracle: str, module: Any = None, sizes: dict = SIZES
) -> None:
    """The module's loss, gradients and last states agree with ``oracle`` ("tape" or "torch") on both
    input kinds; with torch also forward's H and final_states. ``module``: check this one (the fused)."""
    m = module or derived.module
    if inputs_of(m) and not isinstance(m, HeldFixed):  # per-step inputs (c.input): drawn, held fixed
        m = HeldFixed(m, seed=seed)
    if getattr(m, "INPUT_ELEMENTWISE", False):
        sizes = {**sizes, "d": sizes["h"]}  # X read elementwise: only d == h exists
    for case, (tokens, lengths) in CASES.items():
        problem = make_problem(m, seed, tokens, lengths, sizes)
        if oracle == "tape":
            ref = run_tape(derived.cell, m, problem)
        else:
            from . import torch_cell

            p, X, Y, initial, L = problem
            aux = fixed_inputs(m, problem)
            ref_loss, ref_grads, ref_last, ref_H = torch_cell.unroll(derived.fn, p, X, Y, initial, L, aux=aux)
            ref = (ref_loss, ref_grads, ref_last)
        if not all_finite(ref[0], *ref[1].values(), *ref[2].values()):
            COUNTS[f"{oracle}: non-finite values in the oracle (cases not compared)"] += 1
            continue
        ours = run_module(m, problem)
        errors = errors_of(ours, ref)
        if overflowed_unread(m, problem, errors):
            errors = {k: e for k, e in errors.items() if not np.isnan(e)}
            COUNTS["nan gradients from values that overflowed where the loss does not look (limitation)"] += 1
        bad = [k for k, e in errors.items() if not e <= TOLERANCE]
        if oracle == "torch" and bad:  # who is right: an extended-precision difference of the source
            settled = settled_in_80_bits(derived.fn, problem, ours[1], ref[1], bad, fixed_inputs(m, problem))
            errors = {k: e for k, e in errors.items() if k not in settled}
            COUNTS["torch's own rounding, settled by an 80-bit difference of the source"] += bool(settled)
        agree(f"{label}, {case}, vs the {oracle}", errors)
        if oracle == "torch":
            p, X, Y, initial, L = problem
            h0 = tuple(initial[s] for s in m.STATES) if len(m.STATES) > 1 else initial["h"]
            H, cache = m.forward(p, X, h0, L)
            last = m.final_states(cache)
            last = dict(zip(m.STATES, last if len(m.STATES) > 1 else (last,), strict=True))
            assert rel_error(H, ref_H) <= TOLERANCE, f"{label}, {case}: forward's H differs from torch's"
            bad = [s for s in m.STATES if not rel_error(last[s], ref_last[s]) <= TOLERANCE]
            assert not bad, f"{label}, {case}: final_states differ from torch's for {bad}"


def live_features(cell: Cell) -> set[str]:
    """Constructs of the accepted cell: pruned steps, steps only another state than h reads."""
    pruned = set(unread(cell.steps, cell.states))
    reach = {"h"}  # the steps h reads within the step
    for s in reversed(cell.steps):
        if s.name in reach:
            reach |= set(s.inputs)
    others = {s.name for s in cell.steps} - pruned - reach
    flags = {"pruned step": pruned, "step read only through another state": others}
    return {k for k, v in flags.items() if v}
