"""The corpus as checker calls: every case, its expected verdict, and how to run it on either API.

``CASES`` lists (model, bug) cases. ``run(case, method, G)`` calls the checker module ``G``
(``grusym.gradcheck``) and returns the report or raises; the new API needs no glue beyond what a user
writes for their own code (``book.adapter``), the old one (``G`` without ``check_layer``) gets the
adapters a user had to write for it. ``right(case, method, outcome)`` judges the
outcome against the expectation, which comes from the planted bug, never from a checker's output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import book, layers, lstm, minchar


@dataclass(frozen=True)
class Expect:
    ok: bool
    allowed: frozenset[str] = frozenset()  # every failing entry names one of these
    must: str | None = None  # this one fails
    index: tuple[int, ...] | None = None  # ... at this element
    off_diagonal: bool = False  # ... at an element with i != j (a transposed gradient)
    located: bool = False  # every failing element names the first step where the bug changes it


@dataclass(frozen=True)
class Case:
    model: str
    bug: str | None
    expect: Expect
    refuses: frozenset[str] = frozenset()  # methods that must refuse (complex step through real buffers)
    undecided: frozenset[str] = frozenset()  # methods that may only say "inconclusive" (float32 taylor)

    @property
    def id(self) -> str:
        return f"{self.model}-{self.bug or 'correct'}"


OK = Expect(True)
_RNN_WEIGHTS = {"minchar": ("Wxh", "Whh", "bh"), "layers": ("Wx", "Wh", "b"), "lstm": ("W", "b")}
_RNN_WEIGHTS["book"] = ("params[1]", "params[2]", "params[3]")
_SQUARE = {"minchar": "Whh", "layers": "Wh", "book": "params[2]"}
_MODULE = {"minchar": minchar, "layers": layers, "lstm": lstm, "book": book}
_STATES = {"layers": ("h0", "X"), "lstm": ("h0", "c0", "X"), "minchar": (), "book": ("params[0]",)}


def _recurrent_expect(model: str, bug: str | None) -> Expect:
    """What a planted bug must produce, from how it was planted."""
    weights = _RNN_WEIGHTS[model]
    square = _SQUARE.get(model)
    mod = _MODULE[model]
    wide = frozenset(weights + _STATES[model])
    if bug is None:
        return OK
    if bug == "dropped_step":  # the weights lose step k's term: first wrong at k
        return Expect(False, frozenset(weights), weights[0], located=True)
    if bug == "transposed":
        return Expect(False, frozenset({square}), square, off_diagonal=True)
    if bug == "one_element":
        name = "W" if model == "lstm" else square
        return Expect(False, frozenset({name}), name, index=mod.ELEMENT, located=True)
    if bug == "preactivation":  # every step's local derivative is wrong: from t = 0
        return Expect(False, wide, weights[0], located=True)
    if bug == "carry":  # the gradient carried from step t+1 never arrives: step 0 alone is right
        return Expect(False, wide, weights[0], located=True)
    raise ValueError(bug)


def _recurrent_cases() -> list[Case]:
    out = []
    for model, mod in _MODULE.items():
        for bug in (None, *mod.BUGS):
            refuses = frozenset({"complex"}) if model in ("layers", "book") else frozenset()
            undecided = frozenset({"taylor"}) if model == "book" else frozenset()
            out.append(Case(model, bug, _recurrent_expect(model, bug), refuses, undecided))
    return out


_STEP = ("x", "prev_h", "Wx", "Wh", "b")
_LSTM_STEP = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
_LAYER_CASES = [
    Case("rnn_step", None, OK),
    Case("rnn_step", "transposed", Expect(False, frozenset({"Wh"}), "Wh", off_diagonal=True)),
    Case("rnn_step", "preactivation", Expect(False, frozenset(_STEP), "Wx")),
    Case("lstm_step", None, OK),
    Case("lstm_step", "preactivation", Expect(False, frozenset(_LSTM_STEP) - {"prev_c"}, "Wx")),
    Case("lstm_step", "carry", Expect(False, frozenset({"prev_c"}), "prev_c")),
    Case("rnn_layer", None, OK, frozenset({"complex"})),
    Case(
        "rnn_layer", "dropped_step", Expect(False, frozenset({"Wx", "Wh", "b"}), "Wx"), frozenset({"complex"})
    ),
    Case(
        "rnn_layer",
        "one_element",
        Expect(False, frozenset({"Wh"}), "Wh", index=layers.ELEMENT),
        frozenset({"complex"}),
    ),
    Case(
        "rnn_layer",
        "carry",
        Expect(False, frozenset(("x", "h0", "Wx", "Wh", "b")), "Wx"),
        frozenset({"complex"}),
    ),
    Case("softmax_loss", None, OK),
    Case("minchar_positional", None, OK),
    Case(
        "minchar_positional", "one_element", Expect(False, frozenset({"Whh"}), "Whh", index=minchar.ELEMENT)
    ),
    Case("float32_cell", None, OK),
    Case("float32_cell", "preactivation", Expect(False, frozenset(("x", "h_prev", "Wx", "Wh", "b")), "Wx")),
]
CASES: list[Case] = _recurrent_cases() + _LAYER_CASES


# running a case ------------------------------------------------------------------------------------


def _new_api(G: Any) -> bool:
    return hasattr(G, "check_layer")


def float32_cell():
    rng = np.random.default_rng(8)
    N, D, H = 3, 4, 5
    return tuple(
        a.astype(np.float32)
        for a in (
            rng.normal(size=(N, D)),
            rng.normal(size=(N, H)),
            rng.normal(0, 0.5, (D, H)),
            rng.normal(0, 0.5, (H, H)),
            rng.normal(0, 0.2, H),
        )
    )


def float32_cell_pair(bug=None):
    """The book's RNN cell object as a layer pair: forward -> (h_next, the cell), backward -> all grads."""

    def forward(x, h_prev, Wx, Wh, b):
        cell = book.RNN(Wx, Wh, b, bug=bug)
        return cell.forward(x, h_prev), cell

    def backward(dh_next, cell):
        dx, dh_prev = cell.backward(dh_next)
        return (dx, dh_prev, *cell.grads)

    return forward, backward


def _layer_pair(case: Case):
    bug = case.bug
    if case.model == "rnn_step":
        return (
            layers.rnn_step_forward,
            functools.partial(layers.rnn_step_backward, bug=bug),
            layers.step_inputs(),
        )
    if case.model == "lstm_step":

        def lstm_backward(dnext_h, dnext_c, cache):
            return layers.lstm_step_backward(dnext_h, dnext_c, cache, bug=bug)

        return layers.lstm_step_forward, lstm_backward, layers.lstm_step_inputs()
    if case.model == "rnn_layer":
        p, x, _, h0 = layers.init()
        return (
            layers.rnn_forward,
            functools.partial(layers.rnn_backward, bug=bug),
            (x, h0, p["Wx"], p["Wh"], p["b"]),
        )
    if case.model == "float32_cell":
        return (*float32_cell_pair(bug), float32_cell())
    raise KeyError(case.model)


def _run_new(G: Any, case: Case, method: str) -> Any:
    if case.model == "minchar":
        p, X, Y, h = minchar.init()
        lag = functools.partial(minchar.lossFun, bug=case.bug)
        return G.check_recurrent(None, lag, p, X, Y, h, method=method, reduction="sum", exclude=["h0"])
    if case.model == "layers":
        p, X, Y, h = layers.init()
        lag = functools.partial(layers.model_loss_and_grads, bug=case.bug)
        return G.check_recurrent(
            layers.model_loss, lag, p, X, Y, h, method=method, reduction="sum", batch_first=True
        )
    if case.model == "lstm":
        p, X, Y, h0, c0 = lstm.init()
        lag = functools.partial(lstm.loss_and_grads, bug=case.bug)
        return G.check_recurrent(lstm.loss, lag, p, X, Y, (h0, c0), method=method)
    if case.model == "book":
        model = book.SimpleRnnlm(bug=case.bug)
        loss, lag = book.adapter(model)
        params = [q.copy() for q in model.params]
        xs, ts = book.data()
        return G.check_recurrent(loss, lag, params, xs, ts, None, method=method, batch_first=True)
    if case.model == "softmax_loss":
        scores = np.random.default_rng(9).normal(size=(2, 3, 5))
        y = np.random.default_rng(10).integers(0, 5, (2, 3))
        return G.check_gradients(None, layers.temporal_softmax_loss, (scores, y), method=method)
    if case.model == "minchar_positional":
        p, X, Y, h = minchar.init()
        lag = minchar.positional_loss(X, Y, h, bug=case.bug)
        return G.check_gradients(None, lag, tuple(p.values()), method=method)
    forward, backward, inputs = _layer_pair(case)
    return G.check_layer(forward, backward, inputs, method=method)


# the old API: dict inputs, time-major recurrent losses with one h0; everything else is a user's adapter


def _old_scalar(G: Any, fun, grad, inputs: tuple, names: tuple, method: str) -> Any:
    floats = [n for n, v in zip(names, inputs, strict=True) if np.asarray(v).dtype.kind == "f"]

    def call(d):
        return tuple(d[n] if n in floats else v for n, v in zip(names, inputs, strict=True))

    return G.check_gradients(
        lambda d: fun(*call(d)),
        lambda d: dict(zip(names, grad(*call(d)), strict=True)),
        {n: v for n, v in zip(names, inputs, strict=True) if n in floats},
        method=method,
    )


def _old_layer(G: Any, forward, backward, inputs, names, method):
    outs = forward(*inputs)[:-1]
    rng = np.random.default_rng(7919)
    ws = [rng.standard_normal(np.shape(o)) for o in outs]

    def fun(*args):
        return sum(np.sum(w * o) for w, o in zip(ws, forward(*args)[:-1], strict=True))

    def grad(*args):
        return backward(*ws, forward(*args)[-1])

    return _old_scalar(G, fun, grad, tuple(inputs), names, method)


def _run_old(G: Any, case: Case, method: str) -> tuple[Any, dict[str, str]]:
    """(report, old name -> corpus name) through the glue the old API needed."""
    if case.model == "minchar":
        p, X, Y, h = minchar.init()
        lag = functools.partial(minchar.lossFun, bug=case.bug)
        return G.check_recurrent(lambda *a: lag(*a)[0], lag, p, X, Y, h, method=method, wrt=list(p)), {}
    if case.model == "layers":
        p, X, Y, h = layers.init()
        lag = functools.partial(layers.model_loss_and_grads, bug=case.bug)

        def loss_tm(p, Xt, Yt, h0):
            return layers.model_loss(p, Xt.transpose(1, 0, 2), Yt.T, h0)

        def lag_tm(p, Xt, Yt, h0):
            value, g = lag(p, Xt.transpose(1, 0, 2), Yt.T, h0)
            return value, {**g, "X": g["X"].transpose(1, 0, 2)}, None

        return G.check_recurrent(loss_tm, lag_tm, p, X.transpose(1, 0, 2), Y.T, h, method=method), {}
    if case.model == "lstm":
        p, X, Y, h0, c0 = lstm.init()
        H = h0.shape[1]
        lag = functools.partial(lstm.loss_and_grads, bug=case.bug)

        def loss_hc(p, X, Y, hc):
            return lstm.loss(p, X, Y, hc[:, :H], hc[:, H:])

        def lag_hc(p, X, Y, hc):
            value, g = lag(p, X, Y, hc[:, :H], hc[:, H:])
            rest = {k: v for k, v in g.items() if k not in ("h0", "c0")}
            return value, {**rest, "h0": np.concatenate([g["h0"], g["c0"]], axis=1)}, None

        hc = np.concatenate([h0, c0], axis=1)
        return G.check_recurrent(loss_hc, lag_hc, p, X, Y, hc, method=method), {}
    if case.model == "book":
        model = book.SimpleRnnlm(bug=case.bug)
        loss, lag = book.adapter(model)
        names = [f"p{i}" for i in range(len(model.params))]
        params = {n: q.copy() for n, q in zip(names, model.params, strict=True)}
        xs, ts = book.data()

        def loss_d(p, Xt, Yt, h0):
            return loss([p[n] for n in names], Xt.T, Yt.T)

        def lag_d(p, Xt, Yt, h0):
            value, g = lag([p[n] for n in names], Xt.T, Yt.T)
            return value, dict(zip(names, g, strict=True)), None

        rename = {n: f"params[{i}]" for i, n in enumerate(names)}
        report = G.check_recurrent(loss_d, lag_d, params, xs.T, ts.T, np.zeros(1), method=method, wrt=names)
        return report, rename
    if case.model == "softmax_loss":
        scores = np.random.default_rng(9).normal(size=(2, 3, 5))
        y = np.random.default_rng(10).integers(0, 5, (2, 3))
        return _old_scalar(
            G,
            lambda x, y: layers.temporal_softmax_loss(x, y)[0],
            lambda x, y: (layers.temporal_softmax_loss(x, y)[1], None),
            (scores, y),
            ("x", "y"),
            method,
        ), {}
    if case.model == "minchar_positional":
        p, X, Y, h = minchar.init()
        lag = minchar.positional_loss(X, Y, h, bug=case.bug)
        names = tuple(p)
        return _old_scalar(
            G, lambda *a: lag(*a)[0], lambda *a: lag(*a)[1], tuple(p.values()), names, method
        ), {}
    forward, backward, inputs = _layer_pair(case)
    names = {"rnn_step": _STEP, "lstm_step": _LSTM_STEP, "rnn_layer": ("x", "h0", "Wx", "Wh", "b")}
    names["float32_cell"] = ("x", "h_prev", "Wx", "Wh", "b")
    return _old_layer(G, forward, backward, inputs, names.get(case.model, _STEP), method), {}


@dataclass
class Outcome:
    report: Any = None
    rename: dict[str, str] = field(default_factory=dict)
    refused: str = ""  # an InputError's message
    crashed: str = ""  # any other exception


def run(case: Case, method: str, G: Any) -> Outcome:
    from grusym.errors import InputError

    try:
        if _new_api(G):
            return Outcome(_run_new(G, case, method))
        return Outcome(*_run_old(G, case, method))
    except InputError as exc:
        return Outcome(refused=str(exc))
    except Exception as exc:
        return Outcome(crashed=f"{type(exc).__name__}: {exc}")


def right(case: Case, method: str, outcome: Outcome) -> tuple[bool, str]:
    """Whether the outcome is the right verdict, and why not."""
    if method in case.refuses:
        ok = "complex step refused" in outcome.refused
        return ok, "" if ok else "must refuse the complex step (real buffers)"
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
    if not failed:
        return False, "false pass" + (" (inconclusive)" if failing else "")
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
                t = first_changed_step(case, name, tuple(entry.index))
                if entry.time_step != t:
                    return (
                        False,
                        f"{name}{list(entry.index)} first wrong at t = {entry.time_step}, the bug from {t}",
                    )
    return True, ""


def _prefix_grads(model: str, bug: str | None, L: int) -> dict[str, Any]:
    """The model's own analytic gradients on the first L steps, keyed as the checker names them."""
    if model == "minchar":
        p, X, Y, h = minchar.init()
        return minchar.lossFun(p, X[:L], Y[:L], h, bug)[1]
    if model == "layers":
        p, X, Y, h = layers.init()
        return layers.model_loss_and_grads(p, X[:, :L], Y[:, :L], h, bug)[1]
    if model == "lstm":
        p, X, Y, h0, c0 = lstm.init()
        return lstm.loss_and_grads(p, X[:L], Y[:L], h0, c0, bug)[1]
    m = book.SimpleRnnlm(bug=bug)
    xs, ts = book.data()
    m.forward(xs[:, :L], ts[:, :L])
    m.backward()
    return {f"params[{i}]": g.copy() for i, g in enumerate(m.grads)}


def first_changed_step(case: Case, name: str, index: tuple[int, ...]) -> int | None:
    """The first step t whose prefix X[:t+1] gives element ``name[index]`` a different gradient with the bug
    than without: where the planted bug first shows, found from the model itself, not from a checker."""
    steps = {"minchar": 5, "layers": 4, "lstm": 4, "book": 4}[case.model]
    for L in range(1, steps + 1):
        right, wrong = _prefix_grads(case.model, None, L), _prefix_grads(case.model, case.bug, L)
        a, b = np.asarray(right[name], dtype=np.float64), np.asarray(wrong[name], dtype=np.float64)
        if len(index) != a.ndim or any(i >= s for i, s in zip(index, a.shape, strict=True)):
            continue
        if abs(a[index] - b[index]) > 1e-6 * max(abs(a[index]), abs(b[index]), 1e-30):
            return L - 1
    return None
