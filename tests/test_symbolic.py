"""The symbolic layer: every rule the derivation uses is proved by SymPy, declarations are checked."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sympy as sp

from grusym.symbolic.adjoint_code import emit_backward
from grusym.symbolic.cell import Cell, CellError, sigmoid
from grusym.symbolic.derive import LINEAR_RULES, derive
from grusym.symbolic.emit import Writer
from grusym.symbolic.layout import Schedule
from grusym.symbolic.primitives import PRIMITIVES, RULES, verify_rules
from grusym.symbolic.variants import CELLS


def test_primitive_rules_equal_sympy_derivatives_of_their_closed_forms():
    proofs = {p.name: p for p in verify_rules()}
    assert set(proofs) == {
        *("sigmoid", "tanh", "relu", "softplus", "exp", "identity", "hard_sigmoid"),
        *("softsign", "abs", "sqrt", "log", "leaky_relu", "elu", "gelu", "silu"),
    }
    assert all(p.holds for p in proofs.values()), [p.name for p in proofs.values() if not p.holds]
    # the non-differentiable ones say what they do at their kinks; the smooth ones have nothing to say
    assert "relu'(0) = 0" in proofs["relu"].convention and "torch" in proofs["relu"].convention
    assert "+-5/2) = 0" in proofs["hard_sigmoid"].convention
    assert not proofs["sigmoid"].convention and not proofs["softplus"].convention


WRONG_RULES = [
    ("relu", lambda y, x: sp.Integer(1)),  # right for x > 0 only
    ("relu", lambda y, x: sp.sign(y) + 1 - sp.sign(y) ** 2),  # right off the kink, 1 at it (y = 0)
    ("hard_sigmoid", lambda y, x: sp.sign(y) / 5),  # wrong where the output saturates at 1
    ("sigmoid", lambda y, x: y * (1 - y) * sp.Rational(1001, 1000)),
    ("softplus", lambda y, x: 1 - sp.exp(y)),
]


@pytest.mark.parametrize(
    ("name", "rule"), WRONG_RULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WRONG_RULES)]
)
def test_a_planted_wrong_rule_fails_its_proof(name, rule):
    """The proof can fail: a rule wrong on one interval, or only at a kink, is caught."""
    table = {**RULES, PRIMITIVES[name]: rule}
    proofs = {p.name: p.holds for p in verify_rules(table)}
    assert not proofs[name]
    assert all(ok for other, ok in proofs.items() if other != name)


def test_linear_rules_on_explicit_matrices():
    """Y = A B and Y = 1 b: the table's adjoints equal d/dA of sum(G * Y), element by element."""
    A = sp.Matrix(2, 3, sp.symbols("a:6"))
    B = sp.Matrix(3, 2, sp.symbols("b:6"))
    G = sp.Matrix(2, 2, sp.symbols("g:4"))
    L = sum(G.multiply_elementwise(A * B))
    dA = sp.Matrix(2, 3, lambda i, j: sp.diff(L, A[i, j]))
    dB = sp.Matrix(3, 2, lambda i, j: sp.diff(L, B[i, j]))
    assert sp.simplify(dA - LINEAR_RULES["matmul_left"](G, A, B)) == sp.zeros(2, 3)
    assert sp.simplify(dB - LINEAR_RULES["matmul_right"](G, A, B)) == sp.zeros(3, 2)
    b = sp.Matrix(1, 2, sp.symbols("c:2"))
    Lb = sum(G.multiply_elementwise(sp.ones(2, 1) * b))
    db = sp.Matrix(1, 2, lambda i, j: sp.diff(Lb, b[i, j]))
    assert db == sp.ones(1, 2) * G  # the column sums


def test_softmax_cross_entropy_rule():
    """d/dlogits of log-sum-exp(logits) - logits[y] is softmax(logits) - onehot(y): the runtime's rule."""
    z = sp.symbols("z:3")
    for y in range(3):
        ce = sp.log(sum(sp.exp(v) for v in z)) - z[y]
        for j in range(3):
            rule = sp.exp(z[j]) / sum(sp.exp(v) for v in z) - (1 if j == y else 0)
            assert sp.simplify(sp.diff(ce, z[j]) - rule) == 0


@pytest.mark.parametrize("name", list(CELLS))
def test_every_value_gets_an_adjoint_and_every_parameter_a_gradient(name):
    cell = CELLS[name].cell()
    der = derive(cell)
    for step in cell.steps[:-1]:
        assert der.into(step.name), f"{name}: {step.name} receives no adjoint"
    for param in cell.params:
        assert der.into(param), f"{name}: {param} receives no gradient"
    for state in cell.states:
        assert der.into(f"{state}_prev"), f"{name}: {state}_prev receives no adjoint"


def test_declaration_errors_are_caught():
    c = Cell("bad")
    with pytest.raises(ValueError, match="assigned twice"):
        z = c.let("z", sigmoid(c.affine("z")))
        c.let("z", z * z)
    c = Cell("bad")
    with pytest.raises(CellError, match="no step assigns the output state 'h'"):
        c.let("z", sigmoid(c.affine("z")))
        c.check()
    c = Cell("bad")
    with pytest.raises(CellError, match=r"'@' between cell values: .* c\.affine"):
        c.let("y", c.h_prev @ c.h_prev)


def test_the_matmul_templates_implement_linear_rules():
    """Generated code writes matmul adjoints from templates (``d[left] = d[step] @ W.T``): a derivation
    whose LINEAR_RULES contribution differs from them (a planted sign flip) stops generation, by name."""
    g = Schedule(CELLS["gru"].cell())
    flip = next(c for c in g.der.contributions if c.kind == "matmul_left")
    wrong = tuple(replace(c, expr=-c.expr) if c is flip else c for c in g.der.contributions)
    g.der = replace(g.der, contributions=wrong)
    with pytest.raises(NotImplementedError, match=r"LINEAR_RULES\['matmul_left'\] gives -"):
        emit_backward(Writer(), g)
