"""The corpus as checker calls: every case, its expected verdict, and how to run it on either API.

``CASES`` lists (model, bug) cases. ``run(case, method, G)`` calls the checker module ``G``
(``grusym.gradcheck``) and returns the report or raises; the new API needs no glue beyond what a user
writes for their own code (``book.adapter``), the old one (``G`` without ``check_layer``) gets the
adapters a user had to write for it (only for the first corpus: the models added later need the new API).
``foreign.judge.right(case, method, outcome)`` judges the outcome against the expectation, which comes from
the planted bug and from the model's own right and buggy gradients, never from a checker's output:

* a right case passes under every method (no FAIL, no inconclusive);
* a buggy case fails naming only affected inputs, the planted element, and for recurrent code the first
  step where the bug changes that element (t counted from 1);
* every input the bug changes by more than the method can resolve fails: under fd and complex (one element
  at a time) any input off by more than 1e-3 relative; under directional and taylor, an input whose row
  says ok must state a resolution at least as coarse as its actual error (a pass means what it says);
* a method that must refuse (the complex step through real buffers, np.var) refuses naming the construct's
  line in the user's code (``file:line``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import book, book_gated, captioning, layers, lstm, minchar, norm


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
    undecided: frozenset[str] = frozenset()  # methods that may only say "inconclusive"
    # what a refusal must name: (module, line anchor, source snippet): the file:line of the snippet's
    # first occurrence after the anchor, and the snippet itself
    cause: tuple[tuple[Any, str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.model}-{self.bug or 'correct'}"


OK = Expect(True)
_RNN_WEIGHTS = {"minchar": ("Wxh", "Whh", "bh"), "layers": ("Wx", "Wh", "b"), "lstm": ("W", "b")}
_RNN_WEIGHTS["book"] = ("params[1]", "params[2]", "params[3]")
for _cell in ("book_lstm", "book_gru"):
    _RNN_WEIGHTS[_cell] = ("params[1]", "params[2]", "params[3]")
_SQUARE = {"minchar": "Whh", "layers": "Wh", "book": "params[2]"}
_MODULE = {"minchar": minchar, "layers": layers, "lstm": lstm, "book": book, "book_lstm": book_gated}
_MODULE["book_gru"] = book_gated
_BUGS = {**{m: mod.BUGS for m, mod in _MODULE.items()}, "book_gru": book_gated.BUGS[:-2]}  # LSTM bias bugs
_STATES = {"layers": ("h0", "X"), "lstm": ("h0", "c0", "X"), "minchar": (), "book": ("params[0]",)}
_STATES["book_lstm"] = _STATES["book_gru"] = ("params[0]",)
# what the complex step must name when it refuses a code with real (or float32) buffers
_BUFFER = {
    "layers": ((layers, "def rnn_forward", "h[:, t, :] = prev_h"),),
    # the book's models keep float32 parameters: the first store that drops the imaginary part is the
    # user's own glue loading the parameters into them
    "book": ((book, "def adapter", "p[...] = value"),),
    "book_lstm": ((book, "def adapter", "p[...] = value"),),
    "book_gru": ((book, "def adapter", "p[...] = value"),),
}


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
        name = {"lstm": "W", "book_lstm": "params[3]", "book_gru": "params[3]"}.get(model, square)
        index = mod.ELEMENT[model.split("_")[1]] if mod is book_gated else mod.ELEMENT
        return Expect(False, frozenset({name}), name, index=index, located=True)
    if bug in ("gate_bias", "bias_scale"):  # one gate's bias gradient wrong: b alone
        return Expect(False, frozenset({"params[3]"}), "params[3]", located=True)
    if bug == "preactivation":  # every step's local derivative is wrong: from t = 0
        return Expect(False, wide, weights[0], located=True)
    if bug == "carry":  # the gradient carried from step t+1 never arrives: step 0 alone is right
        return Expect(False, wide, weights[0], located=True)
    raise ValueError(bug)


def _recurrent_cases() -> list[Case]:
    out = []
    for model in _MODULE:
        for bug in (None, *_BUGS[model]):
            refuses = frozenset({"complex"}) if model in _BUFFER else frozenset()
            out.append(Case(model, bug, _recurrent_expect(model, bug), refuses, cause=_BUFFER.get(model, ())))
    return out


def _captioning_cases() -> list[Case]:
    """The captioning model in float32, its vanilla RNN and its LSTM; the complex step must name the
    preallocated real buffer its sequence layer writes into."""
    out = []
    for cell in ("rnn", "lstm"):
        forward = "def lstm_forward" if cell == "lstm" else "def rnn_forward"
        snippet = "h[:, t, :] = prev_h" if cell == "lstm" else "h[:, t, :] = next_h"
        cause = ((captioning, forward, snippet),)
        every = frozenset(captioning.CaptioningRNN(cell).params)
        expects = {
            None: OK,
            "one_element": Expect(False, frozenset({"b_vocab"}), "b_vocab", index=captioning.ELEMENT),
            "mask": Expect(False, every, "b_vocab"),
            "dropped_step": Expect(False, frozenset({"Wx", "Wh", "b"}), "Wx"),
        }
        if cell == "rnn":  # Wh is square only in the vanilla RNN
            expects["transposed"] = Expect(False, frozenset({"Wh"}), "Wh", off_diagonal=True)
        for bug, expect in expects.items():
            out.append(Case(f"captioning_{cell}", bug, expect, frozenset({"complex"}), cause=cause))
    return out


_BN = ("x", "gamma", "beta")
_NORM_CASES = [
    Case(
        "batchnorm",
        None,
        OK,
        frozenset({"complex"}),
        cause=((norm, "def batchnorm_forward", "np.var(x, axis=0)"),),
    ),
    Case(
        "batchnorm",
        "dbeta_mean",
        Expect(False, frozenset({"beta"}), "beta"),
        frozenset({"complex"}),
        cause=((norm, "def batchnorm_forward", "np.var(x, axis=0)"),),
    ),
    Case(
        "batchnorm",
        "var_term",
        Expect(False, frozenset({"x"}), "x"),
        frozenset({"complex"}),
        cause=((norm, "def batchnorm_forward", "np.var(x, axis=0)"),),
    ),
    Case(
        "layernorm",
        None,
        OK,
        frozenset({"complex"}),
        cause=((norm, "def layernorm_forward", "np.var(x, axis=1"),),
    ),
    Case("max_pool", None, OK),
    # the silent store comes first, then the in-place += raises: the refusal names both lines
    Case(
        "pooled_classifier",
        None,
        OK,
        frozenset({"complex"}),
        cause=(
            (norm, "def classifier_loss", "h[:, t, :] = next_h"),
            (norm, "def classifier_loss", "pooled += next_h / T"),
        ),
    ),
]


_STEP = ("x", "prev_h", "Wx", "Wh", "b")
_LSTM_STEP = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
_LAYER_CASES = [
    Case("rnn_step", None, OK),
    Case("rnn_step", "transposed", Expect(False, frozenset({"Wh"}), "Wh", off_diagonal=True)),
    Case("rnn_step", "preactivation", Expect(False, frozenset(_STEP), "Wx")),
    Case("lstm_step", None, OK),
    Case("lstm_step", "preactivation", Expect(False, frozenset(_LSTM_STEP) - {"prev_c"}, "Wx")),
    Case("lstm_step", "carry", Expect(False, frozenset({"prev_c"}), "prev_c")),
    Case("rnn_layer", None, OK, frozenset({"complex"}), cause=_BUFFER["layers"]),
    Case(
        "rnn_layer",
        "dropped_step",
        Expect(False, frozenset({"Wx", "Wh", "b"}), "Wx"),
        frozenset({"complex"}),
        cause=_BUFFER["layers"],
    ),
    Case(
        "rnn_layer",
        "one_element",
        Expect(False, frozenset({"Wh"}), "Wh", index=layers.ELEMENT),
        frozenset({"complex"}),
        cause=_BUFFER["layers"],
    ),
    Case(
        "rnn_layer",
        "carry",
        Expect(False, frozenset(("x", "h0", "Wx", "Wh", "b")), "Wx"),
        frozenset({"complex"}),
        cause=_BUFFER["layers"],
    ),
    Case("softmax_loss", None, OK),
    Case("minchar_positional", None, OK),
    Case(
        "minchar_positional", "one_element", Expect(False, frozenset({"Whh"}), "Whh", index=minchar.ELEMENT)
    ),
    Case("float32_cell", None, OK),
    Case("float32_cell", "preactivation", Expect(False, frozenset(("x", "h_prev", "Wx", "Wh", "b")), "Wx")),
]
CASES: list[Case] = _recurrent_cases() + _LAYER_CASES + _captioning_cases() + _NORM_CASES


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


def _book_model(model: str, bug: str | None) -> tuple[Any, tuple[Any, Any]]:
    if model == "book":
        return book.SimpleRnnlm(bug=bug), book.data()
    return book_gated.Rnnlm(model.split("_")[1], bug=bug), book_gated.data()


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
    if case.model in ("book", "book_lstm", "book_gru"):
        model, (xs, ts) = _book_model(case.model, case.bug)
        loss, lag = book.adapter(model)
        params = [q.copy() for q in model.params]
        return G.check_recurrent(loss, lag, params, xs, ts, None, method=method, batch_first=True)
    if case.model.startswith("captioning_"):
        model = captioning.CaptioningRNN(case.model.split("_")[1], bug=case.bug)
        loss, grads = captioning.adapter(model, *captioning.data())
        return G.check_gradients(loss, grads, {k: v.copy() for k, v in model.params.items()}, method=method)
    if case.model == "pooled_classifier":
        p, x, y = norm.classifier_init()
        return G.check_gradients(
            lambda q: norm.classifier_loss(q, x, y),
            lambda q: norm.classifier_grads(q, x, y),
            p,
            method=method,
        )
    if case.model == "batchnorm":
        backward = functools.partial(norm.batchnorm_backward, bug=case.bug)
        return G.check_layer(
            norm.batchnorm_forward, backward, norm.bn_inputs(), method=method, exclude=["bn_param"]
        )
    if case.model == "layernorm":
        x, gamma, beta, _ = norm.bn_inputs()
        return G.check_layer(
            norm.layernorm_forward, norm.layernorm_backward, (x, gamma, beta, {"eps": 1e-5}), method=method,
            exclude=["ln_param"],
        )  # fmt: skip
    if case.model == "max_pool":
        return G.check_layer(
            norm.temporal_max_pool_forward, norm.temporal_max_pool_backward, norm.pool_inputs(), method=method
        )
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

_OLD_MODELS = {"minchar", "layers", "lstm", "book", "softmax_loss", "minchar_positional"}
_OLD_MODELS |= {"rnn_step", "lstm_step", "rnn_layer", "float32_cell"}


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
    if case.model not in _OLD_MODELS:
        raise NotImplementedError(f"{case.model} needs the new API (check_layer, positional inputs)")
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
