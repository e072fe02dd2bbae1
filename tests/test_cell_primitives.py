"""The primitives and operators of cell language 2 (issue 26 item 5), one named case per construct.

softsign, abs, integer powers, sqrt, log, leaky_relu, elu, gelu (tanh form), silu; NumPy scalars as
numbers; the refusals (sqrt/log of an argument not provably positive, a negative power of a base not
provably nonzero, every other operand type, an unknown primitive) in one line naming cell and step.
Oracles: the tape autograd (tests/reference_autograd.py), torch autograd of the declaration's source
(tests/torch_cell.py), torch's own functions for the runtime's values and derivatives, and the symbolic
oracle. Rule proofs (planted wrong rules fail) are here too.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import sympy as sp

from grusym import runtime as rt
from grusym.oracle import check_oracle
from grusym.symbolic import cell as lang
from grusym.symbolic import primitives as prims
from grusym.symbolic.cell import CellError
from grusym.symbolic.codegen import module_source
from grusym.symbolic.usercell import declare, derive_module

from .backends import needs_numba
from .cell_checks import Derived, check_cell

NEW = ("softsign", "abs", "sqrt", "log", "leaky_relu", "elu", "gelu", "silu")


SOURCE = """
from grusym.symbolic.cell import apply, log, sigmoid, softplus, sqrt, tanh


def uses_{name}(c):
    a = c.affine("h")
    v = c.let("v", {value})
    g = c.let("g", sigmoid(c.affine("g")))
    c.let("h", g * c.h_prev + (1 - g) * tanh(v))
"""
VALUES = {"sqrt": "sqrt(softplus(a) + 0.25)", "log": "log(sigmoid(a) + 0.25)", "abs": "abs(a)"}


def _cell_using(name: str):
    """A cell (as a user's source: torch re-runs it) whose candidate goes through primitive ``name``."""
    namespace: dict = {}
    exec(SOURCE.format(name=name, value=VALUES.get(name, f'apply("{name}", a)')), namespace)
    return namespace[f"uses_{name}"]


def _derived(fn) -> Derived:
    cell = declare(fn)
    return Derived(fn, cell, derive_module(cell))


@pytest.mark.parametrize("name", NEW)
def test_each_new_primitive_derives_like_the_tape_autograd(name):
    """Loss, every gradient and the last states against the tape (floats with lengths, token ids)."""
    check_cell(name, _derived(_cell_using(name)), seed=3, oracle="tape")


@pytest.mark.torch
@pytest.mark.parametrize("name", NEW)
def test_each_new_primitive_derives_like_torch_autograd(name):
    """The same cells against torch autograd running the declaration's source on torch's own functions
    (F.softsign, torch.abs, torch.sqrt, torch.log, F.leaky_relu, F.elu, F.gelu(approximate="tanh"),
    F.silu)."""
    pytest.importorskip("torch")
    check_cell(name, _derived(_cell_using(name)), seed=5, oracle="torch")


@pytest.mark.parametrize("name", NEW)
def test_each_new_primitive_agrees_with_the_symbolic_oracle(name):
    m = _derived(_cell_using(name)).module
    report = check_oracle(m, cell=declare(_cell_using(name)))
    assert report.ok, report


@pytest.mark.parametrize("name", [p.label for p in prims.RULES if p.label in NEW])
def test_each_new_rule_is_proved(name):
    proof = next(p for p in prims.verify_rules() if p.name == name)
    assert proof.holds, proof


# one planted wrong rule per new primitive (a changed constant, or wrong only on one side of a kink)
PLANTS = {
    "softsign": lambda y, x: (1 - sp.Abs(y)) ** 3,
    "abs": lambda y, x: sp.sign(x) + prims._step(-x) * 0,
    "sqrt": lambda y, x: 1 / (3 * y),
    "log": lambda y, x: 1 / (x + 1),
    "leaky_relu": lambda y, x: prims._step(y) + (1 - prims._step(y)) / 10,
    "elu": lambda y, x: prims._step(y) + (1 - prims._step(y)) * (y + 2),
    "gelu": lambda y, x: prims.RULES[prims.Gelu](y, x) + x**2 / 1000,
    "silu": lambda y, x: prims.Sigmoid(x) * (1 + x * (1 - 2 * prims.Sigmoid(x))),
}
PLANTS["abs"] = lambda y, x: sp.sign(x) + sp.Rational(1, 2) - sp.sign(x) ** 2 / 2  # 1/2 at the kink only


@pytest.mark.parametrize("name", NEW)
def test_a_planted_wrong_new_rule_fails_its_proof(name):
    fn = prims.PRIMITIVES[name]
    proofs = {p.name: p.holds for p in prims.verify_rules({**prims.RULES, fn: PLANTS[name]})}
    assert not proofs[name]


KINKS = [("abs", 0.0), ("leaky_relu", 0.01), ("softsign", 1.0), ("elu", 1.0)]


@pytest.mark.parametrize(("name", "slope"), KINKS)
def test_the_derivative_at_the_kink_is_torchs(name, slope):
    """At an argument exactly 0 (zero input weights and bias) the bias gradient is f'(0) times the
    upstream the head sends (computed here by hand): abs 0, leaky_relu 0.01, as torch's autograd gives."""

    def at_zero(c):
        c.let("h", lang.apply(name, c.affine("h", recurrent=False)))

    m = _derived(at_zero).module
    p = m.init_params(2, 3, 4, seed=0, scale=0.5)
    p["W_xh"][:] = 0
    p["b_q"] = np.array([0.1, -0.2, 0.3, 0.0])
    X = np.ones((2, 2, 2))
    Y = np.array([[0, 1], [2, 3]])
    _, grads, _ = m.loss_and_grads(p, X, Y)
    probs = np.exp(p["b_q"]) / np.exp(p["b_q"]).sum()  # H = f(0) = 0: the logits are b_q everywhere
    dlogits = (probs - np.eye(4)[Y]) / Y.size
    upstream = (dlogits @ p["W_hq"].T).sum(axis=(0, 1))
    assert np.allclose(grads["b_h"], slope * upstream, rtol=1e-12, atol=1e-16)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    {"abs": torch.abs, "leaky_relu": F.leaky_relu, "softsign": F.softsign, "elu": F.elu}[name](
        z
    ).sum().backward()
    assert np.allclose(z.grad.numpy(), slope)


# ---- runtime: stable values and complex-step derivatives against torch

RUNTIME = {
    "softsign": rt.softsign,
    "abs": rt.absolute,
    "leaky_relu": rt.leaky_relu,
    "elu": rt.elu,
    "gelu": rt.gelu,
    "silu": rt.silu,
}


@pytest.mark.parametrize("name", sorted(RUNTIME))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runtime_primitives_are_finite_and_silent_at_extreme_arguments(name, dtype):
    x = np.array([-3e38, -1e30, -1e4, -50.5, -1, -1e-30, 0, 1e-30, 1, 50.5, 1e4, 1e30, 3e38], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = RUNTIME[name](x)
        out = np.empty_like(x)
        RUNTIME[name](x, out=out)
        x_again = x.copy()
        RUNTIME[name](x_again, out=x_again)  # in place: out may be the argument
    assert y.dtype == dtype and np.all(np.isfinite(y))
    assert np.array_equal(y, out) and np.array_equal(y, x_again)


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_runtime_primitives_match_torch_values_and_complex_step_derivatives(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ref = {
        "softsign": F.softsign,
        "abs": torch.abs,
        "leaky_relu": F.leaky_relu,
        "elu": F.elu,
        "gelu": lambda t: F.gelu(t, approximate="tanh"),
        "silu": F.silu,
    }[name]
    x = np.concatenate([np.linspace(-8, 8, 161), [-60.0, -30.0, -1e-3, 1e-3, 30.0, 60.0]])
    t = torch.tensor(x, requires_grad=True)
    ref(t).sum().backward()
    y = RUNTIME[name](x)
    assert np.allclose(y, ref(torch.tensor(x)).numpy(), rtol=1e-14, atol=1e-15)
    step = 1e-30
    derivative = RUNTIME[name](x + 1j * step).imag / step
    assert np.allclose(derivative, t.grad.numpy(), rtol=1e-12, atol=1e-14)


# ---- the builder: refusals in one line, NumPy scalars as numbers


def _refusal(fn) -> str:
    with pytest.raises(CellError) as info:
        declare(fn)
    message = str(info.value)
    assert "\n" not in message and f"cell '{fn.__name__}', step " in message, message
    return message


def test_sqrt_of_an_argument_not_provably_positive_is_refused_by_name():
    def sqrt_of_tanh(c):
        v = c.let("v", lang.tanh(c.affine("h")))
        c.let("h", lang.sqrt(v) * c.h_prev)

    assert "sqrt(v): the argument cannot be proved positive" in _refusal(sqrt_of_tanh)


def test_log_of_a_state_is_refused_by_name():
    def log_of_state(c):
        c.let("h", lang.log(c.h_prev) + lang.tanh(c.affine("h")))

    assert "log(h_prev): the argument cannot be proved positive" in _refusal(log_of_state)


def test_sqrt_and_log_of_provably_positive_arguments_are_accepted():
    def positive(c):
        a = c.affine("h")
        v = c.let("v", lang.sigmoid(a) * 0.5 + 0.25 + lang.relu(a))  # a positive number + nonnegatives
        c.let(
            "h",
            lang.sqrt(lang.softplus(a) + 1e-5) + lang.log(lang.sigmoid(a) + 1e-5) + lang.log(v) * c.h_prev,
        )

    check_cell("positive", _derived(positive), seed=1, oracle="tape")


def test_integer_powers_and_a_negative_power_of_a_positive_base_derive_right():
    def powers(c):
        s = c.let("s", lang.sigmoid(c.affine("h")))
        c.let("h", lang.tanh(s**2 - c.h_prev**3 / 4 + (s + 1) ** -2 + (lang.exp(s) + 0.5) ** -1))

    check_cell("powers", _derived(powers), seed=2, oracle="tape")


def test_a_negative_power_of_a_base_not_provably_nonzero_is_refused():
    def inverse_tanh(c):
        c.let("h", lang.tanh(c.affine("h")) ** -1)

    assert "** -1': the base cannot be proved positive" in _refusal(inverse_tanh)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("v ** 2.5", "'**' raises a cell value to a nonzero integer power only, got float 2.5"),
        ("v ** 0", "nonzero integer power only, got int 0"),
        ("v ** '2'", "got str '2'"),
        ("v ** v", "got Value"),
        ("2 ** v", "'**' with a cell value as the exponent (int 2 ** value)"),
        ("1 / v", "'1 / (tanh(a_h))': the divisor cannot be proved positive"),
        ("v // 2", "'//' does not apply to a cell value and int 2"),
        ("v % 2", "'%' does not apply to a cell value and int 2"),
        ("v + None", "'+' of a cell value and NoneType None"),
        ("v * [1]", "'*' of a cell value and list [1]"),
        ("v * np.float64('nan')", "'*' of a cell value and float64 np.float64(nan)"),
        (
            "v / np.bool_(True)",
            "'/' divides a cell value by a cell value or a nonzero number, got bool np.True_",
        ),
    ],
)
def test_every_other_operand_is_a_cell_error_naming_operator_and_type(expression, fragment):
    def bad_operand(c):
        v = lang.tanh(c.affine("h"))
        c.let("h", eval(expression, {"v": v, "np": np}))

    assert fragment in _refusal(bad_operand)


def test_an_unknown_primitive_names_the_cell_and_the_step():
    def unknown(c):
        a = c.affine("h")
        c.let("h", lang.apply("swish", a))

    message = _refusal(unknown)
    assert "cell 'unknown', step 2 (after 'a_h'): unknown primitive 'swish'; known: sigmoid" in message


def test_numpy_scalars_are_the_numbers_they_print_as():
    """np.float32(0.1) is 1/10 (the decimal it prints as), np.int64(3) an integer power; on either side."""

    def python(c):
        v = lang.tanh(c.affine("h"))
        c.let("h", 2 * v + 1 - 0.5 * c.h_prev * 0.1 + v**3 / 4)

    def numpy(c):
        v = lang.tanh(c.affine("h"))
        half, tenth = np.float64(0.5), np.float32(0.1)
        c.let(
            "h", np.float32(2) * v + np.int64(1) - half * c.h_prev * tenth + v ** np.int32(3) / np.float32(4)
        )

    assert [s.expr for s in declare(python).steps] == [s.expr for s in declare(numpy).steps]


ALL_NEW = """
import numpy as np

from grusym.symbolic.cell import elu, gelu, leaky_relu, log, sigmoid, silu, softplus, softsign, sqrt, tanh


def all_new(c):
    a = c.affine("h")
    s = c.let("s", softsign(a) + abs(a) * np.float32(0.5) + leaky_relu(a) + elu(a) - gelu(a))
    g = c.let("g", sigmoid(c.affine("g")))
    v = c.let("v", sqrt(softplus(s) + 1e-5) + log(g + 1e-5) + silu(s) * g**2 - (g + 1) ** -1)
    c.let("h", g * c.h_prev + (1 - g) * tanh(v))
"""


def _all_new():
    namespace: dict = {}
    exec(ALL_NEW, namespace)
    return namespace["all_new"]


@needs_numba
def test_the_fused_module_of_every_new_construct_matches_the_tape(tmp_path):
    """The fused backend keeps the new primitives' calls (and the recomputed x of gelu, silu, abs, log)."""
    derived = _derived(_all_new())
    path = tmp_path / "all_new_fused.py"
    path.write_text(
        module_source(derived.cell, "tests/test_cell_primitives.py", fused=True), encoding="utf-8"
    )
    spec = importlib.util.spec_from_file_location("all_new_fused", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check_cell("all new, fused", derived, seed=7, oracle="tape", module=module)


def test_every_new_construct_together_agrees_with_the_oracle_and_torch():
    derived = _derived(_all_new())
    check_cell("all new", derived, seed=8, oracle="tape")
    # the smallest sizes: each primitive has its own oracle test above; this one is about them together
    assert check_oracle(derived.module, cell=derived.cell, T=2, n=1, d=2, h=2, q=2).ok
    if importlib.util.find_spec("torch") is not None:
        check_cell("all new", derived, seed=8, oracle="torch")


@pytest.mark.parametrize("guard", ["sigmoid", "softplus", "exp"])
def test_log_sqrt_and_inverse_of_a_primitive_that_underflows_to_zero_are_refused(guard):
    """sigmoid, softplus and exp underflow to 0 in float64 (sigmoid near -37 in the runtime's form), where
    log is -inf and sqrt's and 1/x's derivatives are infinite: the thorough fuzzer drew sqrt(sigmoid(v**3))
    and got nan gradients. Without a positive number beside them they are refused, naming the rewrite."""
    fn = getattr(lang, guard)

    def log_of(c):
        c.let("h", lang.log(fn(c.affine("h"))))

    def inverse_of(c):
        c.let("h", fn(c.affine("h")) ** -1)

    assert "underflow to 0 in floating point" in _refusal(log_of)
    assert "underflow to 0 in floating point" in _refusal(inverse_of)
