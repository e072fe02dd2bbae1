"""The open cell language: users' own cells, several states, parameter vectors, new primitives.

Every built-in and example cell is checked against the independent tape autograd and by FD, complex step,
Taylor and the symbolic oracle; the new primitives against torch and Keras 2's formula; bad declarations
against the messages they must give; ``grusym derive/gradcheck --cell`` end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import grusym
from grusym import runtime as rt
from grusym.cli import main
from grusym.examples.cells import EXAMPLES, path
from grusym.gradcheck import check_variant
from grusym.oracle import check_oracle
from grusym.stepinputs import HeldFixed, inputs_of
from grusym.symbolic.cell import (
    CellError,
    apply,
    exp,
    hard_sigmoid,
    identity,
    relu,
    sigmoid,
    softplus,
    tanh,
)
from grusym.symbolic.usercell import declare, derive_module, load_cell
from grusym.symbolic.variants import CELLS

from . import reference_autograd


def _every_primitive(c):
    """A test cell that uses every primitive, a vector, a constant, a bias-free step, a second state whose
    prev is the left factor of a matmul, and a step without an input term."""
    a = c.affine("a", bias=False)
    s_prev = c.prev("s")
    u = c.let("u", softplus(a) * 0.5 + exp(-1 * s_prev * s_prev))
    k = c.let("k", hard_sigmoid(c.affine("k", hidden=s_prev)) * identity(c.vector("w") * c.h_prev))
    m = c.let("m", tanh(c.affine("m", x=False, hidden=u)))
    c.let("s", relu(c.affine("s", recurrent=False) + s_prev) - 0.25 * u + 0.1 * m)
    c.let("h", tanh(u + k) * sigmoid(c.value("s")))


def _cells():
    """(label, module, declared cell) of every built-in, every example and the every-primitive cell."""
    out = [(name, grusym.load(name), CELLS[name].cell()) for name in CELLS]
    for name in EXAMPLES:
        cell = load_cell(path(name))
        m = derive_module(cell)
        out.append((name, HeldFixed(m) if inputs_of(m) else m, cell))  # zoneout_gru's masks: drawn, fixed
    cell = declare(_every_primitive, "every_primitive")
    out.append(("every_primitive", derive_module(cell), cell))
    return out


CELL_CASES = _cells()
IDS = [label for label, _, _ in CELL_CASES]


def _problem(m, seed=0, T=4, n=2, d=3, h=4, q=5):
    rng = np.random.default_rng(seed)
    d = h if getattr(m, "INPUT_ELEMENTWISE", False) else d  # sru reads X elementwise: d == h
    p = m.init_params(d, h, q, seed=seed, scale=0.8)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.4, v.shape)) for k, v in p.items()}
    X = rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    states = tuple(rng.normal(0, 0.5, (n, h)) for _ in m.STATES)
    return p, X, Y, (states[0] if len(states) == 1 else states)


@pytest.mark.parametrize(("label", "m", "cell"), CELL_CASES, ids=IDS)
def test_generated_gradients_equal_the_independent_tape(label, m, cell):
    p, X, Y, h0 = _problem(m)
    loss, grads, _ = m.loss_and_grads(p, X, Y, h0)
    aux = m.inputs_at(X, p) if isinstance(m, HeldFixed) else None
    ref_loss, ref, _ = reference_autograd.unroll(cell, p, X, Y, h0, aux=aux)
    assert abs(loss - ref_loss) <= 1e-13 * abs(ref_loss)
    assert set(grads) == set(ref)
    for k, v in ref.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-11, atol=1e-14, err_msg=f"{label}: {k}")


@pytest.mark.parametrize("method", ["fd", "complex", "taylor"])
@pytest.mark.parametrize(("label", "m", "cell"), CELL_CASES, ids=IDS)
def test_numeric_checks_pass(label, m, cell, method):
    report = check_variant(m, method=method, seed=1)
    assert report.ok, str(report)
    assert {e.name for e in report.entries} >= {f"{s}0" for s in m.STATES} | set(m.PARAMS)


@pytest.mark.parametrize(("label", "m", "cell"), CELL_CASES, ids=IDS)
def test_token_ids_take_the_gather_path_and_still_check(label, m, cell):
    """Token ids replace the input GEMM by a row gather (blocks without an X term gather their bias)."""
    report = check_variant(m, method="complex", seed=3, tokens=True)
    assert report.ok and "X" not in {e.name for e in report.entries}, str(report)


@pytest.mark.parametrize(("label", "m", "cell"), CELL_CASES, ids=IDS)
def test_symbolic_oracle_agrees(label, m, cell):
    report = check_oracle(m, cell=cell, T=2, n=2, d=2, h=2, q=2, seed=2)
    assert report.ok, str(report)


def test_a_planted_wrong_gradient_fails_every_check():
    """The checks above can fail: a multi-state cell's c0 gradient scaled by 1.001 is caught."""
    m = grusym.load("lstm")

    def wrong(params, X, Y, h0=None, lengths=None):
        value, grads, last = m.loss_and_grads(params, X, Y, h0, lengths)
        return value, {**grads, "c0": grads["c0"] * 1.001}, last

    for method in ("fd", "complex"):
        report = check_variant("lstm", method=method, loss_and_grads=wrong)
        assert not report.ok and [e.name for e in report.failures] == ["c0"]
    report = check_oracle("lstm", T=2, n=1, d=2, h=2, q=2, loss_and_grads=wrong)
    assert [e.name for e in report.failures] == ["c0"]


def test_a_multi_state_failure_is_located_in_time():
    """Localisation works with several states: W_hf[0, 0] 1 % off is wrong from the first step, t = 1."""
    m = grusym.load("lstm")

    def wrong(params, X, Y, h0=None, lengths=None):
        value, grads, last = m.loss_and_grads(params, X, Y, h0, lengths)
        dW = grads["W_hf"].copy()
        dW[0, 0] *= 1.01
        return value, {**grads, "W_hf": dW}, last

    report = check_variant("lstm", method="fd", loss_and_grads=wrong)
    assert [(e.name, e.index, e.time_step) for e in report.failures] == [("W_hf", (0, 0), 1)]
    report = check_oracle("lstm", T=2, n=1, d=2, h=2, q=2, loss_and_grads=wrong)
    assert [(e.name, e.index, e.time_step) for e in report.failures] == [("W_hf", (0, 0), 1)]


# ---- the primitives against the outside world


def test_new_primitives_match_torch_and_keras_formulas():
    torch = pytest.importorskip("torch")
    x = np.array([-800.0, -3, -2.5, -1, -1e-9, 0, 1e-9, 1, 2.5, 3, 30, 800])
    t = torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(rt.relu(x), torch.relu(t).detach().numpy(), rtol=0, atol=0)
    # torch's softplus returns x itself above its threshold 20; logaddexp(0, x) is the exact function
    np.testing.assert_allclose(rt.softplus(x), torch.logaddexp(0 * t, t).detach().numpy(), rtol=1e-15)
    small = np.abs(x) < 20
    np.testing.assert_allclose(rt.softplus(x)[small], torch.nn.functional.softplus(t).detach().numpy()[small])
    # Keras 2 backend hard_sigmoid: clip(0.2 * x + 0.5, 0, 1), written out here by hand
    np.testing.assert_allclose(rt.hard_sigmoid(x), np.clip(0.2 * x + 0.5, 0.0, 1.0), rtol=1e-15, atol=0)
    torch.relu(t).sum().backward()
    assert t.grad[x == 0].item() == 0.0  # the convention the rule table declares, relu'(0) = 0: torch's


@pytest.mark.parametrize("fn", [rt.sigmoid, rt.relu, rt.softplus, rt.hard_sigmoid, np.exp, np.tanh])
def test_runtime_primitives_are_complex_step_differentiable(fn):
    """The complex step through each forward primitive gives its derivative (away from kinks)."""
    x = np.array([-4.0, -2.0, -0.3, 0.2, 1.7, 3.1])
    step = 1e-20
    numeric = fn(x + 1j * step).imag / step
    central = (fn(x + 1e-6) - fn(x - 1e-6)) / 2e-6
    np.testing.assert_allclose(numeric, central, rtol=1e-7, atol=1e-9)


# ---- bad declarations: one line naming the step and the problem, never a SymPy traceback


def _fails(declare_fn, *fragments):
    with pytest.raises(CellError) as info:
        declare(declare_fn, "bad")
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


def test_x_times_a_hidden_value_reads_x_elementwise():
    """Once refused as a shape mismatch; since issue 26 X next to an (n, h) value is read elementwise and
    its module requires d == h (tests/test_input_elementwise.py)."""
    cell = declare(lambda c: c.let("h", tanh(c.affine("h")) + c.X * c.h_prev), "uses_x")
    assert "X" in cell.steps[-1].inputs
    with pytest.raises(grusym.InputError, match=r"cell 'uses_x', step \(2\) h reads the input X elementwise"):
        derive_module(cell).init_params(3, 4, 5)


def test_use_before_definition():
    _fails(lambda c: c.let("h", c.value("r") * c.h_prev), "step 1", "'r' is used before it is defined")


def test_unknown_primitive_and_foreign_functions():
    _fails(
        lambda c: c.let("h", apply("swish", c.h_prev)),
        "step 1",
        "unknown primitive 'swish'",
        "sigmoid",
        "gelu",
    )
    _fails(lambda c: c.let("h", np.tanh(c.h_prev)), "numpy", "primitives")  # numpy refuses the value
    _fails(lambda c: c.let("h", max(c.h_prev, 0)), "relu")


def test_state_never_updated_and_missing_output():
    def forgot_c(c):
        c.let("h", tanh(c.affine("h") + c.prev("c")))

    _fails(forgot_c, "state 'c' is read as c_prev but never updated")
    _fails(lambda c: c.let("z", sigmoid(c.affine("z"))), "no step assigns the output state 'h'")


def test_cells_the_generator_cannot_take_are_refused_at_declaration():
    _fails(lambda c: c.let("h", tanh(c.h_prev)), "never reads its input X")
    _fails(lambda c: c.affine("h", name="h"), "state 'h' is a linear step", "identity")

    def matmul_of_linear(c):
        a = c.affine("a")
        c.let("h", tanh(c.affine("h", hidden=a)))

    _fails(matmul_of_linear, "reads the linear step 'a_a'", "identity")


def test_names_that_clash():
    def clash(c):
        c.affine("z")
        c.let("b_z", tanh(c.h_prev))

    _fails(clash, "'b_z' has the name of a parameter")
    _fails(lambda c: c.let("np", c.h_prev), "'np' is reserved")
    _fails(lambda c: (c.let("h", c.h_prev), c.let("h", c.h_prev)), "'h' assigned twice")
    _fails(lambda c: c.let("Bad Name", c.h_prev), "lowercase identifier")


def test_an_error_inside_the_declaration_names_its_line(tmp_path):
    f = tmp_path / "cells.py"
    f.write_text("def broken(c):\n    z = c.let('z', c.h_prev)\n    return z.missing_attribute\n")
    with pytest.raises(CellError, match=r"cells\.py:3.*AttributeError"):
        load_cell(f"{f}:broken")


def test_missing_files_names_and_syntax_errors(tmp_path):
    with pytest.raises(CellError, match="does not exist"):
        load_cell(f"{tmp_path / 'nope.py'}:x")
    f = tmp_path / "cells.py"
    f.write_text("def a(c):\n    pass\n\ndef b(c):\n    pass\n")
    with pytest.raises(CellError, match="has no cell function 'x'; it defines: a, b"):
        load_cell(f"{f}:x")
    with pytest.raises(CellError, match=r"expected FILE\.py:NAME"):
        load_cell(str(f))
    f.write_text("def a(c):\n    c.let('h' c.h_prev)\n")
    with pytest.raises(CellError, match=r"cells.py:2: syntax error"):
        load_cell(f"{f}:a")


# ---- the user's side: derive --cell to a file, --check, gradcheck --cell, import without SymPy


def test_derive_cell_writes_a_module_with_the_api_and_a_drift_check(tmp_path, capsys):
    src = tmp_path / "mycells.py"
    src.write_text(Path(path("mingru").split(":")[0]).read_text())
    spec, out = f"{src}:mingru", tmp_path / "gen"
    assert main(["derive", "--cell", spec, "--out", str(out)]) == 0
    target = out / "mingru.py"
    text = target.read_text()
    assert text.startswith(
        f"# Generated by grusym - do not edit. Regenerate with: grusym derive --cell {spec}"
    )
    assert "    (4) h = h_prev*(1 - z) + h_tilde*z\n" in text  # the numbered equations, as for built-ins
    assert main(["derive", "--cell", spec, "--out", str(out), "--check"]) == 0
    target.write_text(text + "# hand edit\n")
    assert main(["derive", "--cell", spec, "--out", str(out), "--check"]) == 1
    assert "drifted" in capsys.readouterr().out
    assert main(["derive", "--cell", spec, "--out", str(out)]) == 0 and target.read_text() == text

    code = textwrap.dedent(f"""
        import importlib.util, sys
        sys.modules["sympy"] = None  # any import of sympy now raises ImportError
        import numpy as np
        spec = importlib.util.spec_from_file_location("mingru", {str(target)!r})
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        p = m.init_params(4, 3, 4, seed=0)
        ids, Y = np.array([[0, 1], [2, 3]]), np.array([[1, 2], [3, 0]])
        loss, grads, h = m.loss_and_grads(p, ids, Y, lengths=[2, 1])
        assert m.STATES == ("h",) and np.isfinite(loss) and set(grads) >= set(m.PARAMS) | {{"h0"}}
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(grusym.__file__).resolve().parent.parent)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "ok"


def test_in_memory_module_equals_the_written_file(tmp_path):
    cell = load_cell(path("peephole_lstm"))
    m = derive_module(cell)
    assert main(["derive", "--cell", path("peephole_lstm"), "--out", str(tmp_path)]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        import peephole_lstm as on_disk  # the file the command just wrote
    finally:
        sys.path.remove(str(tmp_path))
    p, X, Y, h0 = _problem(m)
    a, b = m.loss_and_grads(p, X, Y, h0), on_disk.loss_and_grads(p, X, Y, h0)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert m.STATES == ("h", "c") and set(m.PARAMS) >= {"w_ci", "w_cf", "w_co"}


def test_gradcheck_cell_runs_every_method(capsys):
    assert (
        main(["gradcheck", "--cell", path("indrnn"), "--method", "fd,directional,complex,taylor,oracle"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("all gradients agree") == 5 and "[indrnn]" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["derive", "--cell", "nope.py:x"], "cell file 'nope.py' does not exist"),
        (["derive", "--cell", "nope"], "expected FILE.py:NAME"),
        (["gradcheck", "--cell", "nope.py:x"], "cell file 'nope.py' does not exist"),
    ],
)
def test_cli_errors_are_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_multi_state_api_shapes_and_errors():
    m = grusym.load("lstm")
    p, X, Y, (h0, c0) = _problem(m)
    with pytest.raises(grusym.InputError, match=r"tuple \(h0, c0\) of 2 arrays"):
        m.forward(p, X, h0)
    with pytest.raises(grusym.ShapeError, match=r"c0 must have shape \(n=2, h=4\)"):
        m.forward(p, X, (h0, c0[:1]))
    _, grads, last = m.loss_and_grads(p, X, Y, [h0, c0])
    assert isinstance(last, tuple) and len(last) == 2 and {"h0", "c0"} <= set(grads)
    assert isinstance(m.step(p, X[0]), tuple)


def test_vector_parameter_gradient_is_summed_over_batch_and_time():
    """IndRNN's u: its gradient is the sum over t and rows of dh * relu'(.) * h_prev, not one row's."""
    m = derive_module(load_cell(path("indrnn")))
    report = check_variant(m, method="fd", T=5, n=3)
    assert report.ok and m.PARAMS["u"] == ("h",)
