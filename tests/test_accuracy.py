"""The accuracy rule of rewrites (grusym/symbolic/accuracy.py): a cheaper form that cancels is refused."""

import sympy as sp

from grusym.symbolic.accuracy import Context, as_accurate
from grusym.symbolic.primitives import Absolute, Sigmoid, Softsign, Tanh

s, a, dh = (sp.Symbol(n, real=True) for n in ("s", "a", "dh"))
h_prev, h_tilde, z = (sp.Symbol(n, real=True) for n in ("h_prev", "h_tilde", "z"))
# s is a named value that reaches 1e40 at the probes (a up to 2e20), as the fuzzer's draw did
HUGE = Context({s: a**2}, frozenset({dh}))
GATED = Context({z: Sigmoid(a), h_tilde: Tanh(s)}, frozenset({dh}))


def test_forms_of_the_tanh_adjoint_that_cancel_beyond_1e16_are_refused():
    derived = dh * (2 * s * (1 - Tanh(s) ** 2) + 2 * Tanh(s))
    assert not as_accurate(sp.expand(derived), derived, HUGE)
    assert not as_accurate(-2 * dh * (s * Tanh(s) ** 2 - s - Tanh(s)), derived, HUGE)
    # collected on s, the cancelling pair sits inside the factor of s and is exact where tanh = 1
    assert as_accurate(2 * dh * Tanh(s) + s * (2 * dh - 2 * dh * Tanh(s) ** 2), derived, HUGE)


def test_the_gru_blend_may_be_collected_on_the_bounded_value_only():
    derived = h_prev * z + h_tilde * (1 - z)
    assert as_accurate(h_tilde + z * (h_prev - h_tilde), derived, GATED)  # error: a rounding of h_tilde
    mgu = z * h_tilde + h_prev * (1 - z)
    assert not as_accurate(h_prev + z * (h_tilde - h_prev), mgu, GATED)  # loses h_tilde where z = 1


def test_an_adjoint_may_trade_a_rounding_of_itself():
    assert as_accurate(dh - dh * z, dh * (1 - z), GATED)


def test_equal_forms_are_accurate_and_a_wrong_form_is_not():
    assert as_accurate(dh * (1 - z), dh * (1 - z), GATED)
    assert not as_accurate(dh * (1 + z), dh * (1 - z), GATED)  # not equal: the rule is no identity check


def test_a_named_value_that_is_a_constant_is_evaluated():
    """The thorough fuzzer's draw: v0 = abs(h_prev - h_prev) is abs(0), which the runtime got as an int."""
    v0 = sp.Symbol("v0", real=True)
    ctx = Context({v0: Absolute(sp.Integer(0))}, frozenset({dh}))
    assert as_accurate(dh - dh * Tanh(v0) ** 2, dh * (1 - Tanh(v0) ** 2), ctx)  # tanh(0) = 0: both exact
    ctx = Context({v0: Sigmoid(sp.Integer(0))}, frozenset({dh}))  # sigmoid(0): a 0-d array, out= refused it
    assert as_accurate(dh - dh * Tanh(v0) ** 2, dh * (1 - Tanh(v0) ** 2), ctx)


def test_nested_primitives_are_evaluated_exactly():
    """The thorough fuzzer's draw v0 = softsign(softsign(h_prev - h_prev)): the inner closed form was left
    in the expression mpmath ran (a NameError)."""
    v0 = sp.Symbol("v0", real=True)
    ctx = Context({v0: Softsign(Softsign(a))}, frozenset({dh}))
    derived = dh * (1 - Tanh(v0) ** 2)
    assert as_accurate(dh - dh * Tanh(v0) ** 2, derived, ctx)  # v0 is in (-1, 1): no cancellation
    assert not as_accurate(dh + dh * Tanh(v0) ** 2, derived, ctx)  # and the reference is really computed
