"""The checker on foreign-shaped NumPy code (tests/foreign): right verdicts on every corpus case, and every
new API form (positional and nested inputs, wrt/exclude, (loss, grads), check_vjp, layer pairs, recurrent
layouts, float32 codes) exercised on that corpus."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from grusym import gradcheck
from grusym.checks import check_gradients, check_layer, check_recurrent, check_vjp
from grusym.checks.core import METHODS
from grusym.errors import GradientCheckError, InputError

from .foreign import book, layers, lstm, minchar
from .foreign.cases import CASES, float32_cell, float32_cell_pair, run
from .foreign.judge import right


def _params():
    """Correct cases with every method; each buggy case with one method in the quick tier, all in thorough."""
    out = []
    for k, case in enumerate(CASES):
        for j, method in enumerate(METHODS):
            quick = case.bug is None or (k + j) % len(METHODS) == 0
            marks = () if quick else (pytest.mark.slow,)
            out.append(pytest.param(case, method, id=f"{case.id}-{method}", marks=marks))
    return out


@pytest.mark.parametrize(("case", "method"), _params())
def test_corpus_verdicts(case, method):
    good, why = right(case, method, run(case, method, gradcheck))
    assert good, why


# positional, scalar and nested inputs ---------------------------------------------------------------


def test_positional_arguments_scalars_and_zero_d_arrays_are_named_by_the_signature():
    W = np.random.default_rng(1).normal(size=(3, 2))

    def f(x, W, scale, shift):
        return scale * np.sum(np.tanh(x @ W + shift) ** 2)

    def grads(x, W, scale, shift):
        t = np.tanh(x @ W + shift)
        d = scale * 2 * t * (1 - t**2)
        return d @ W.T, x.T @ d, np.sum(t**2), np.sum(d)

    x = np.random.default_rng(2).normal(size=(4, 3))
    for method in METHODS:
        report = check_gradients(f, grads, (x, W, 0.7, np.array(0.2)), method=method)
        assert report.ok and [e.name for e in report.entries] == ["x", "W", "scale", "shift"], str(report)

    def wrong(*args):
        g = list(grads(*args))
        g[3] = g[3] * 1.001
        return tuple(g)

    report = check_gradients(f, wrong, (x, W, 0.7, np.array(0.2)))
    assert [e.name for e in report.failures] == ["shift"]


def test_nested_inputs_lists_of_parameters_and_exclude():
    params, X, Y, h = minchar.init()
    as_list = [params[k] for k in ("Wxh", "Whh", "Why", "bh", "by")]

    def loss_and_grads(weights, hprev):
        p = dict(zip(("Wxh", "Whh", "Why", "bh", "by"), weights, strict=True))
        loss, g, _ = minchar.lossFun(p, X, Y, hprev, bug="one_element")
        return loss, ([g[k] for k in p], None)  # no gradient for the state: the code ignores it

    report = check_gradients(None, loss_and_grads, (as_list, h), exclude=["hprev"])
    assert [e.name for e in report.failures] == ["weights[1]"]
    assert report.worst.index == minchar.ELEMENT
    with pytest.raises(InputError, match=r"grad_fun \(.*loss_and_grads\) returned no gradient for 'hprev'"):
        check_gradients(None, loss_and_grads, (as_list, h))
    with pytest.raises(InputError, match=r"exclude names \['c0'\] are not keys"):
        check_gradients(None, loss_and_grads, (as_list, h), exclude=["c0"])


def test_wrt_selects_a_whole_argument_or_one_leaf():
    params, X, Y, h = minchar.init()
    lag = minchar.positional_loss(X, Y, h)
    report = check_gradients(None, lag, tuple(params.values()), wrt=["Whh", "by"])
    assert [e.name for e in report.entries] == ["Whh", "by"] and report.ok


def test_loss_and_grads_alone_never_runs_complex_unless_asked():
    x0 = np.array([0.3, -0.4, 1.2])

    def loss_and_grads(x):
        assert not np.iscomplexobj(x), "the backward ran on complex input"
        return np.sum(np.sin(x)), np.cos(x)

    for method in ("fd", "directional", "taylor"):
        assert check_gradients(None, loss_and_grads, (x0,), method=method).ok
    with pytest.raises(AssertionError, match="complex input") as info:
        check_gradients(None, loss_and_grads, (x0,), method="complex")
    assert "complex step" in " ".join(info.value.__notes__)


# vector outputs and layer pairs ---------------------------------------------------------------------


def test_check_vjp_names_the_output_whose_cotangent_exposes_the_bug():
    W = np.random.default_rng(3).normal(size=(3, 3))

    def f(x):
        return np.tanh(x @ W), np.sin(x)

    def vjp(douts, x):  # the second output's contribution is taken at the wrong sign
        dt, ds = douts
        t = np.tanh(x @ W)
        return ((dt * (1 - t**2)) @ W.T - ds * np.cos(x),)

    x = np.random.default_rng(4).normal(size=(2, 3))
    report = check_vjp(f, vjp, (x,), output_names=("h", "s"))
    assert [e.name for e in report.failures] == ["x"] and report.worst.output == "s", str(report)
    with pytest.raises(GradientCheckError, match=r"x\[\d, \d\]: analytic .* through output s"):
        report.raise_if_failed()


@pytest.mark.parametrize("method", METHODS)
def test_a_layer_pair_with_a_cache_is_checked_and_located(method):
    inputs = layers.step_inputs()
    assert check_layer(layers.rnn_step_forward, layers.rnn_step_backward, inputs, method=method).ok
    bad = functools.partial(layers.rnn_step_backward, bug="transposed")
    report = check_layer(layers.rnn_step_forward, bad, inputs, method=method)
    assert [e.name for e in report.failures] == ["Wh"]
    i, j = report.worst.index
    assert i != j


def test_an_lstm_step_with_two_outputs_and_three_gradients_of_state():
    inputs = layers.lstm_step_inputs()
    forward = layers.lstm_step_forward
    report = check_layer(forward, layers.lstm_step_backward, inputs, output_names=("next_h", "next_c"))
    assert report.ok and [e.name for e in report.entries] == ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]

    def no_carry(dnext_h, dnext_c, cache):
        return layers.lstm_step_backward(dnext_h, dnext_c, cache, bug="carry")

    report = check_layer(forward, no_carry, inputs, output_names=("next_h", "next_c"))
    assert [e.name for e in report.failures] == ["prev_c"] and report.worst.output == "next_h"


def test_a_layer_whose_backward_returns_too_little_is_named():
    def short_backward(dnext_h, cache):
        return layers.rnn_step_backward(dnext_h, cache)[:3]

    with pytest.raises(InputError, match=r"^vjp \(.*short_backward\) must return one gradient per argument"):
        check_layer(layers.rnn_step_forward, short_backward, layers.step_inputs())


# recurrent layouts ----------------------------------------------------------------------------------


def test_recurrent_layouts_locate_the_first_wrong_step_in_each():
    p, X, Y, h = minchar.init()  # one sequence, column vectors, token list, summed loss
    lag = functools.partial(minchar.lossFun, bug="dropped_step")
    report = check_recurrent(None, lag, p, X, Y, h, reduction="sum", exclude=["h0"])
    # the bug drops the step that reads X[DROPPED]: t = DROPPED + 1, counted from 1
    assert {(e.time_step, e.step_index) for e in report.failures} == {(minchar.DROPPED + 1, minchar.DROPPED)}
    p, X, Y, h = layers.init()  # batch-first
    lag = functools.partial(layers.model_loss_and_grads, bug="dropped_step")
    report = check_recurrent(layers.model_loss, lag, p, X, Y, h, reduction="sum", batch_first=True)
    assert {e.time_step for e in report.failures} == {layers.DROPPED + 1}
    p, X, Y, h0, c0 = lstm.init()  # two initial states
    lag = functools.partial(lstm.loss_and_grads, bug="dropped_step")
    report = check_recurrent(lstm.loss, lag, p, X, Y, (h0, c0))
    assert {e.time_step for e in report.failures} == {lstm.DROPPED + 1}
    assert f"first wrong at t = {lstm.DROPPED + 1} (X[{lstm.DROPPED}])" in report.worst.describe()
    assert [e.name for e in report.entries] == ["W", "b", "Wy", "by", "h0", "c0", "X"]


def test_recurrent_messages_name_the_states_and_the_users_function():
    p, X, Y, h0, c0 = lstm.init()

    def my_lstm_grads(p, X, Y, h0, c0):
        loss, g = lstm.loss_and_grads(p, X, Y, h0, c0)
        return loss, {k: v for k, v in g.items() if k != "c0"}

    with pytest.raises(
        InputError, match=r"^loss_and_grads \(.*my_lstm_grads\) returned no gradient for 'c0'"
    ):
        check_recurrent(lstm.loss, my_lstm_grads, p, X, Y, (h0, c0))
    report = check_recurrent(lstm.loss, my_lstm_grads, p, X, Y, (h0, c0), exclude=["c0"])
    assert report.ok and "c0" not in [e.name for e in report.entries]


def test_recurrent_rtol_atol_reach_the_verdict_monotonically():
    p, X, Y, h0, c0 = lstm.init()
    lag = functools.partial(lstm.loss_and_grads, bug="one_element")
    verdicts = []
    for rtol in (1e-5, 1e-4, 1e-2):
        report = check_recurrent(lstm.loss, lag, p, X, Y, (h0, c0), rtol=rtol, atol=1e-12, localize=False)
        assert report.rtol == rtol and report.atol == 1e-12
        verdicts.append(report.ok)
    assert verdicts == [False, False, True]  # the planted 0.1 % is inside a 1 % tolerance


# float32 codes --------------------------------------------------------------------------------------


def test_a_float32_cell_is_checked_against_itself_run_in_float64():
    forward, backward = float32_cell_pair()  # the book's cell object, float32 inputs
    report = check_layer(forward, backward, float32_cell())
    assert report.ok, str(report)
    assert "float32 tolerances (inputs or gradients are float32)" in report.note
    assert "reference: f (forward) run at float64 copies of the inputs" in report.note


def test_a_float32_model_says_why_it_got_float32_tolerances_and_taylor_passes_it_stating_its_resolution():
    model = book.SimpleRnnlm()
    loss, lag = book.adapter(model)
    xs, ts = book.data()
    params = [q.copy() for q in model.params]
    report = check_recurrent(loss, lag, params, xs, ts, None, batch_first=True)
    assert report.ok and report.note.startswith("float32 tolerances"), str(report)
    assert "resolving only" in report.note and "(float32 inside)" in report.note
    assert report.rtol == gradcheck.TABLE["float32"]["fd"].rtol
    # a sweep that shows the rate of a right gradient passes it, saying how coarse a float32 code leaves it
    taylor = check_recurrent(loss, lag, params, xs, ts, None, batch_first=True, method="taylor")
    assert taylor.ok and all(e.resolution > 1e-4 for e in taylor.entries), str(taylor)
    assert "resolves" in str(taylor), str(taylor)


def test_check_vjp_takes_dict_inputs_too():
    W = np.random.default_rng(5).normal(size=(3, 2))

    def f(d):
        return np.tanh(d["x"] @ d["W"])

    def vjp(dout, d):
        da = dout * (1 - np.tanh(d["x"] @ d["W"]) ** 2)
        return {"x": da @ d["W"].T, "W": d["x"].T @ da}

    inputs = {"x": np.random.default_rng(6).normal(size=(4, 3)), "W": W}
    assert check_vjp(f, vjp, inputs).ok
    report = check_vjp(f, lambda dout, d: {**vjp(dout, d), "W": vjp(dout, d)["W"] * 1.001}, inputs)
    assert [e.name for e in report.failures] == ["W"]


# the package's shape: checks depend on nothing above them, oracle and gradcheck do not import each other


def _imports(path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_checks_import_nothing_above_them_and_the_oracle_only_the_report_side():
    from pathlib import Path

    import grusym

    root = Path(grusym.__file__).parent
    for path in (root / "checks").glob("*.py"):
        above = {m for m in _imports(path) if m.startswith("..") or m.startswith("grusym")}
        assert above <= {"..errors"}, (path.name, above)
    oracle = {m for m in _imports(root / "oracle.py") if m.startswith(".")}
    assert ".gradcheck" not in oracle
    assert {m for m in oracle if m.startswith(".checks")} <= {
        ".checks.report",
        ".checks.tolerance",
        ".checks.recurrent",
    }
