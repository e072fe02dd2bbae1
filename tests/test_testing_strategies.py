"""grusym.testing: the hypothesis strategies draw what they promise, and property tests built on them pass for
every variant and for a user's own cell (the README example) in both regimes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import grusym
from grusym.errors import InputError
from grusym.gradcheck import check_recurrent
from grusym.symbolic.variants import VARIANTS
from grusym.testing import REGIMES, float_sequences, parameters, problems, sizes, token_sequences

from .test_gradcheck import ElmanRNN

NAMES = list(VARIANTS)
SMALL = {"T": (1, 3), "n": (1, 2), "d": (1, 3), "h": (1, 3), "q": (2, 4)}


@given(data=st.data())
@pytest.mark.parametrize("name", NAMES)
def test_property_every_variant_well_conditioned(name, data):
    m = grusym.load(name)
    p = data.draw(problems(name, size_ranges=SMALL))
    report = check_recurrent(m.loss, m.loss_and_grads, p.params, p.X, p.Y, p.h0, method="complex")
    assert report.ok, str(report)


@given(p=problems("gru", regime="saturating", size_ranges=SMALL))
def test_property_saturated_gru(p):
    m = grusym.load("gru")
    report = check_recurrent(m.loss, m.loss_and_grads, p.params, p.X, p.Y, p.h0, method="fd")
    assert report.ok, str(report)


# the README example: property-test your own cell
@given(p=problems(ElmanRNN.SPEC, tokens=False, size_ranges=SMALL))
def test_property_a_users_own_cell(p):
    rnn = ElmanRNN()
    report = check_recurrent(rnn.loss, rnn.loss_and_grads, p.params, p.X, p.Y, p.h0, method="taylor")
    assert report.ok, str(report)


@given(dims=sizes(T=(2, 4)), data=st.data())
def test_strategies_draw_the_promised_shapes_and_ranges(dims, data):
    assert 2 <= dims["T"] <= 4 and all(v >= 1 for v in dims.values())
    spec = grusym.load("mgu").PARAMS
    for regime, r in REGIMES.items():
        p = data.draw(parameters(spec, dims, regime=regime))
        assert {k: v.shape for k, v in p.items()} == {
            k: tuple(dims[dn] for dn in dn_) for k, dn_ in spec.items()
        }
        for k, v in p.items():
            assert v.dtype == np.float64 and np.isfinite(v).all()
            lo, hi = r.bias if v.ndim == 1 else r.weight
            k_ = 1 / np.sqrt(v.shape[0]) if (v.ndim == 2 and r.scaled) else 1.0
            assert np.all(np.abs(v) <= hi * k_) and np.all(np.abs(v) >= lo * k_), (regime, k)
    ids = data.draw(token_sequences(dims["T"], dims["n"], dims["d"]))
    assert ids.shape == (dims["T"], dims["n"]) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < dims["d"]
    X = data.draw(float_sequences(dims["T"], dims["n"], dims["d"], bound=0.5))
    assert X.shape == (dims["T"], dims["n"], dims["d"]) and np.abs(X).max() <= 0.5


@given(p=problems("gru", regime="saturating", tokens=True))
def test_saturating_regime_saturates_the_gates(p):
    """The regime's promise: at a token step from h0 = 0 a pre-activation is b + one row of W_x, |a| >= 4."""
    for gate in ("z", "r", "h"):
        a = p.params[f"W_x{gate}"][p.X[0]] + p.params[f"b_{gate}"]
        assert np.all(np.abs(a) >= 4), gate


def test_bad_arguments():
    with pytest.raises(InputError, match="regime must be one of"):
        parameters("gru", {"d": 1, "h": 1, "q": 1}, regime="lukewarm")
    with pytest.raises(InputError, match="lacks \\['q'\\]"):
        parameters({"W": ("h", "q")}, {"h": 2})
    with pytest.raises(InputError, match="spec must be"):
        parameters(42, {"h": 2})
    with pytest.raises(InputError, match="1 <= low <= high"):
        sizes(T=(3, 2))
