"""The symbolic layer: every rule the derivation uses is proved by SymPy, declarations are checked."""

from __future__ import annotations

import pytest
import sympy as sp

from grusym.symbolic.cell import Cell, sigmoid
from grusym.symbolic.derive import LINEAR_RULES, derive
from grusym.symbolic.primitives import verify_rules
from grusym.symbolic.variants import VARIANTS


def test_primitive_rules_equal_sympy_derivatives_of_their_closed_forms():
    proofs = verify_rules()
    assert {p.name for p in proofs} == {"sigmoid", "tanh"}
    assert all(p.holds for p in proofs)


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


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_value_gets_an_adjoint_and_every_parameter_a_gradient(name):
    cell = VARIANTS[name].cell()
    der = derive(cell)
    for step in cell.steps[:-1]:
        assert der.into(step.name), f"{name}: {step.name} receives no adjoint"
    for param in cell.params:
        assert der.into(param), f"{name}: {param} receives no gradient"
    assert der.into("h_prev")


def test_declaration_errors_are_caught():
    c = Cell("bad")
    with pytest.raises(ValueError, match="assigned twice"):
        z = c.let("z", sigmoid(c.affine("z")))
        c.let("z", z * z)
    c = Cell("bad")
    with pytest.raises(ValueError, match="last step must assign"):
        c.let("z", sigmoid(c.affine("z")))
        c.check()
    c = Cell("bad")
    with pytest.raises(ValueError, match="not an elementwise expression"):
        c.let("y", c.h_prev @ c.h_prev)
