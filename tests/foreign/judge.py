"""Whether a checker's outcome on a corpus case is the right verdict: the rules of ``foreign.cases``'s
docstring, applied from the planted bug and the model's own right and buggy gradients, never from a
checker's output."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from . import captioning, layers, lstm, minchar, norm
from .cases import _MODULE, Case, Outcome, _book_model, _layer_pair

__all__ = ["causes", "changed_steps", "first_changed_step", "model_gradients", "right"]


def causes(case: Case) -> list[str]:
    """The ``file:line `snippet``` texts a refusal of ``case`` must contain."""
    import inspect
    import os

    out = []
    for module, anchor, snippet in case.cause:
        lines = inspect.getsource(module).splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(anchor))
        k = next(i for i in range(start, len(lines)) if snippet in lines[i])
        out.append(f"{os.path.basename(module.__file__)}:{k + 1} `{lines[k].strip()}")
    return out


def right(case: Case, method: str, outcome: Outcome) -> tuple[bool, str]:
    """Whether the outcome is the right verdict, and why not."""
    if method in case.refuses:
        if "complex step refused" not in outcome.refused:
            return False, "must refuse the complex step (real buffers)"
        missing = [c for c in causes(case) if c not in outcome.refused]
        return not missing, f"the refusal does not name {missing}" if missing else ""
    if outcome.refused or outcome.crashed:
        return False, outcome.refused or outcome.crashed
    report = outcome.report
    failing = [e for e in report.entries if not e.ok]
    if method in case.undecided and all(getattr(e, "inconclusive", "") for e in failing):
        hard = [e for e in failing if not getattr(e, "inconclusive", "")]
        if not hard and (failing or not case.expect.ok):
            return True, ""  # inconclusive is the honest answer where the method cannot resolve
    failed = [e for e in failing if not getattr(e, "inconclusive", "")]
    names = {outcome.rename.get(e.name, e.name): e for e in failed}
    x = case.expect
    if x.ok:
        return (not failing), "" if not failing else f"false FAIL: {sorted(names)}"
    passes = _passes_beyond_resolution(case, method, report, outcome.rename)
    if passes:
        return False, f"ok beyond its stated resolution: {passes}"
    if not failed:
        if failing:
            return False, "false pass (inconclusive)"
        return True, "below the stated resolution"  # every changed input passed within what it states
    if not set(names) <= x.allowed | ({"h0"} if "c0" in x.allowed else set()):
        return False, f"blames {sorted(set(names) - x.allowed)}"
    if x.must not in names:
        return False, f"does not fail {x.must}"
    e = names[x.must]
    if x.index is not None and tuple(e.index) != tuple(x.index):
        return False, f"{x.must} at {e.index}, planted at {x.index}"
    if x.off_diagonal and (len(e.index) != 2 or e.index[0] == e.index[1]):
        return False, f"{x.must} at {e.index}: a transpose is wrong off the diagonal only"
    if x.located:
        for name, entry in names.items():
            if entry.index and not getattr(entry, "projected", False):
                first, clear = changed_steps(case, name, tuple(entry.index), entry.bound or 0.0)
                # the checker before the one-based convention held the array index
                got = entry.time_step if hasattr(type(entry), "step_index") else _plus_one(entry.time_step)
                upper = got if clear is None else clear
                if got is None or first is None or not first <= got <= upper:
                    return False, (
                        f"{name}{list(entry.index)} first wrong at t = {got}, the bug from t = {first}"
                        + (f" (clearly from t = {clear})" if clear != first else "")
                    )
    return True, ""


def _plus_one(t: int | None) -> int | None:
    return None if t is None else t + 1


def _passes_beyond_resolution(case: Case, method: str, report: Any, rename: dict[str, str]) -> list[str]:
    """Inputs the bug changes that the report passes although the change exceeds what the row resolves."""
    right_g, wrong_g = model_gradients(case, None), model_gradients(case, case.bug)
    out = []
    for e in report.entries:
        name = rename.get(e.name, e.name)
        if not e.ok or name not in right_g:
            continue
        a = np.asarray(right_g[name], dtype=np.float64)
        d = np.abs(np.asarray(wrong_g[name], dtype=np.float64) - a)
        if not d.size or float(np.max(d)) == 0.0:
            continue
        # as the row states its resolution: relative to the element, or to the array's average element
        # where the element is smaller (a projection sees an error by its absolute size)
        average = max(float(np.mean(np.abs(a))), 1e-300)
        error = float(np.max(d / np.maximum(np.abs(a), average)))
        if getattr(e, "projected", False):
            error = float(np.max(d)) / average
        stated = getattr(e, "resolution", None)
        if stated is None:  # an old checker, or a projection at noise level: the method's tolerance
            stated = 0.0 if getattr(e, "projected", False) else report.rtol
        if error > stated:
            out.append(f"{name} off by {error:.1e}, resolves {stated:.1e}")
    return out


def _recurrent_grads(model: str, bug: str | None, L: int | None = None) -> dict[str, Any]:
    """The model's own analytic gradients on the first L steps (all with None), keyed as the checker names
    them."""
    if model == "minchar":
        p, X, Y, h = minchar.init()
        L = len(X) if L is None else L
        return minchar.lossFun(p, X[:L], Y[:L], h, bug)[1]
    if model == "layers":
        p, X, Y, h = layers.init()
        L = X.shape[1] if L is None else L
        return layers.model_loss_and_grads(p, X[:, :L], Y[:, :L], h, bug)[1]
    if model == "lstm":
        p, X, Y, h0, c0 = lstm.init()
        L = len(X) if L is None else L
        return lstm.loss_and_grads(p, X[:L], Y[:L], h0, c0, bug)[1]
    m, (xs, ts) = _book_model(model, bug)
    L = xs.shape[1] if L is None else L
    m.forward(xs[:, :L], ts[:, :L])
    m.backward()
    return {f"params[{i}]": g.copy() for i, g in enumerate(m.grads)}


def model_gradients(case: Case, bug: str | None) -> dict[str, Any]:
    """The code's own analytic gradients at the check point, with ``bug`` (None: the right code), keyed as
    the checker names its inputs; for layer pairs along one fixed random cotangent."""
    import inspect

    if case.model in _MODULE:
        return _recurrent_grads(case.model, bug)
    if case.model.startswith("captioning_"):
        model = captioning.CaptioningRNN(case.model.split("_")[1], bug=bug)
        return dict(model.loss(*captioning.data())[1])
    if case.model == "minchar_positional":
        p, X, Y, h = minchar.init()
        return dict(zip(p, minchar.positional_loss(X, Y, h, bug=bug)(*p.values())[1], strict=True))
    if case.model == "batchnorm":
        forward, inputs = norm.batchnorm_forward, norm.bn_inputs()
        backward = functools.partial(norm.batchnorm_backward, bug=bug)
    elif case.model in ("rnn_step", "lstm_step", "rnn_layer", "float32_cell"):
        forward, backward, inputs = _layer_pair(dataclasses.replace(case, bug=bug))
    else:
        return {}  # a case with no planted bug
    result = forward(*inputs)
    rng = np.random.default_rng(404)
    douts = [rng.standard_normal(np.shape(o)) for o in result[:-1]]
    grads = backward(*douts, result[-1])
    names = list(inspect.signature(forward).parameters)
    return {n: g for n, g in zip(names, grads, strict=False) if g is not None}


def changed_steps(
    case: Case, name: str, index: tuple[int, ...], bound: float = 0.0
) -> tuple[int | None, int | None]:
    """(first, clear): the first step t (counted from 1) whose prefix X[:t] gives element ``name[index]`` a
    different gradient with the bug than without (by 1e-6 relative), and the first where the difference
    exceeds 1e-2 of the element's largest prefix gradient and 3 times ``bound`` (what the check allowed
    at that element): where the planted bug first shows, found from the model itself, not from a checker.
    A code that rounds through float32 cannot show a change below its resolution, so a located step
    between the two is right."""
    steps = {"minchar": 5, "layers": 4, "lstm": 4, "book": 4, "book_lstm": 5, "book_gru": 5}[case.model]
    pairs = []
    for L in range(1, steps + 1):
        right, wrong = _recurrent_grads(case.model, None, L), _recurrent_grads(case.model, case.bug, L)
        a, b = np.asarray(right[name], dtype=np.float64), np.asarray(wrong[name], dtype=np.float64)
        if len(index) != a.ndim or any(i >= s for i, s in zip(index, a.shape, strict=True)):
            pairs.append((L, 0.0, 0.0))
        else:
            pairs.append((L, float(a[index]), float(b[index])))
    largest = max(max(abs(a), abs(b)) for _, a, b in pairs)
    first = next((L for L, a, b in pairs if abs(a - b) > 1e-6 * max(abs(a), abs(b), 1e-30)), None)
    clear = next((L for L, a, b in pairs if abs(a - b) > max(1e-2 * largest, 3 * bound, 1e-30)), None)
    return first, clear


def first_changed_step(case: Case, name: str, index: tuple[int, ...]) -> int | None:
    """The first step t (counted from 1) at which the bug changes element ``name[index]``."""
    return changed_steps(case, name, index)[0]
