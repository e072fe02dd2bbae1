"""Bad input to the generated modules and grusym.load gets a grusym error naming the argument, the expected
and the actual value; good-but-unusual input (lists, float64 dH for float32 H) is accepted.

Each row of the tables is (label, call on a Case, error class, fragments the message must contain).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grusym
from grusym import validate
from grusym.errors import (
    DTypeError,
    GrusymError,
    InputError,
    NonFiniteError,
    ParameterError,
    ShapeError,
    UnknownVariantError,
)

NAMES = grusym.variants()


@dataclass
class Case:
    """A valid float64 problem (T=3, n=2, d=5, h=4, q=6) that each row breaks in one way."""

    m: Any
    p: dict[str, np.ndarray]
    X: np.ndarray  # token ids
    Xf: np.ndarray  # floats
    Y: np.ndarray
    h0: np.ndarray

    def with_param(self, key: str, value: Any) -> dict[str, Any]:
        return {**self.p, key: value}

    def cache(self, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
        return self.m.forward(kw.get("p", self.p), kw.get("X", self.X), kw.get("h0", self.h0))


def make(name: str = "gru", dtype: Any = np.float64) -> Case:
    m = grusym.load(name)
    rng = np.random.default_rng(0)
    p = m.init_params(5, 4, 6, seed=0, dtype=dtype, scale=0.5)
    return Case(
        m,
        p,
        rng.integers(0, 5, (3, 2)),
        rng.normal(size=(3, 2, 5)).astype(dtype),
        rng.integers(0, 6, (3, 2)),
        rng.normal(size=(2, 4)).astype(dtype),
    )


def nan_at(a: np.ndarray, index: tuple[int, ...], value: float = np.nan) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


def expect(call, error: type[Exception], fragments: tuple[str, ...]) -> None:
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, GrusymError) and isinstance(info.value, (ValueError, TypeError))
    text = str(info.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


# ---- params, X and h0: every row runs through forward, loss and loss_and_grads
PARAM_ROWS = [
    ("None", lambda c: None, ParameterError, ("params", "dict", "NoneType")),
    ("list", lambda c: list(c.p.values()), ParameterError, ("params", "dict", "list")),
    ("missing key", lambda c: {k: v for k, v in c.p.items() if k != "W_hz"}, ParameterError,
     ("missing ['W_hz']", "expected exactly")),
    ("extra key", lambda c: c.with_param("W_extra", c.p["W_hz"]), ParameterError,
     ("unexpected ['W_extra']",)),
    ("inconsistent h", lambda c: c.with_param("W_hz", np.zeros((4, 5))), ShapeError,
     ("params['W_hz']", "h = 5", "(4, 5)", "other parameters have h = 4")),
    ("bias 2-D", lambda c: c.with_param("b_z", np.zeros((1, 4))), ShapeError,
     ("params['b_z']", "(h,)", "(1, 4)")),
    ("weight 1-D", lambda c: c.with_param("W_xz", np.zeros(5)), ShapeError,
     ("params['W_xz']", "(d, h)", "(5,)")),
    ("empty axis", lambda c: c.with_param("W_xz", np.zeros((0, 4))), ShapeError,
     ("params['W_xz']", "empty", "(0, 4)")),
    ("int weights", lambda c: c.with_param("W_xz", np.zeros((5, 4), int)), DTypeError,
     ("params['W_xz']", "int64", "float32 or float64")),
    ("bool weights", lambda c: c.with_param("W_hh", np.zeros((4, 4), bool)), DTypeError,
     ("params['W_hh']", "bool")),
    ("object weights", lambda c: c.with_param("b_q", np.zeros(6, object)), DTypeError,
     ("params['b_q']", "object")),
    ("string weights", lambda c: c.with_param("b_q", np.array(["a"] * 6)), DTypeError,
     ("params['b_q']", "<U1")),
    ("float16 weights", lambda c: c.with_param("b_q", np.zeros(6, np.float16)), DTypeError,
     ("params['b_q']", "float16")),
    ("list value", lambda c: c.with_param("W_xz", c.p["W_xz"].tolist()), DTypeError,
     ("params['W_xz']", "numpy.ndarray", "list")),
    ("scalar value", lambda c: c.with_param("b_z", 0.0), DTypeError,
     ("params['b_z']", "numpy.ndarray", "float")),
    ("mixed dtypes", lambda c: c.with_param("b_q", c.p["b_q"].astype(np.float32)), DTypeError,
     ("params['b_q']", "float32", "float64", "one dtype")),
    ("NaN weight", lambda c: c.with_param("W_hh", nan_at(c.p["W_hh"], (1, 2))), NonFiniteError,
     ("params['W_hh']", "NaN", "(1, 2)")),
    ("inf bias", lambda c: c.with_param("b_h", nan_at(c.p["b_h"], (3,), np.inf)), NonFiniteError,
     ("params['b_h']", "(3,)")),
    ("huge weight", lambda c: c.with_param("W_xz", nan_at(c.p["W_xz"], (0, 0), -1e200)), NonFiniteError,
     ("params['W_xz']", "-1e+200", "beyond")),
    ("masked array", lambda c: c.with_param("W_xz", np.ma.masked_array(c.p["W_xz"])), DTypeError,
     ("params['W_xz']", "MaskedArray")),
]  # fmt: skip

X_ROWS = [
    ("None", lambda c: None, DTypeError, ("X", "None", "(T, n, d=5)")),
    ("floats, wrong d", lambda c: c.Xf[:, :, :4], ShapeError, ("X", "d=5", "(3, 2, 4)")),
    ("floats 4-D", lambda c: c.Xf[None], ShapeError, ("X", "(1, 3, 2, 5)")),
    ("ids 1-D", lambda c: c.X[:, 0], ShapeError, ("token ids", "(T, n)", "(3,)")),
    ("ids 3-D", lambda c: np.zeros((3, 2, 5), int), ShapeError, ("token ids", "(3, 2, 5)", "floats")),
    ("bool", lambda c: c.X > 2, DTypeError, ("X", "bool")),
    ("object", lambda c: c.Xf.astype(object), DTypeError, ("X", "object")),
    ("string", lambda c: "abc", DTypeError, ("X", "<U3")),
    ("ragged list", lambda c: [[0, 1], [2]], InputError, ("X", "not an array")),
    ("id = d", lambda c: nan_at(c.X, (2, 1), 5), InputError, ("token id 5", "X[2, 1]", "[0, 5)")),
    ("negative id", lambda c: nan_at(c.X, (0, 1), -1), InputError, ("token id -1", "X[0, 1]", "[0, 5)")),
    ("huge unsigned id", lambda c: np.full((3, 2), 2**63, np.uint64), InputError,
     ("token id 9223372036854775808",)),
    ("T = 0 floats", lambda c: c.Xf[:0], ShapeError, ("T = 0", "(0, 2, 5)")),
    ("T = 0 ids", lambda c: c.X[:0], ShapeError, ("T = 0", "(0, 2)")),
    ("n = 0", lambda c: c.X[:, :0], ShapeError, ("n = 0", "(3, 0)")),
    ("float32 vs float64", lambda c: c.Xf.astype(np.float32), DTypeError, ("X", "float32", "float64")),
    ("complex", lambda c: c.Xf.astype(complex), DTypeError, ("X", "complex128", "float64")),
    ("NaN", lambda c: nan_at(c.Xf, (1, 0, 2)), NonFiniteError, ("X", "NaN", "(1, 0, 2)")),
    ("-inf", lambda c: nan_at(c.Xf, (0, 0, 0), -np.inf), NonFiniteError, ("X", "(0, 0, 0)")),
]  # fmt: skip

H0_ROWS = [
    ("wrong h", lambda c: c.h0[:, :3], ShapeError, ("h0", "(n=2, h=4)", "(2, 3)")),
    ("wrong n", lambda c: np.zeros((3, 4)), ShapeError, ("h0", "(n=2, h=4)", "(3, 4)")),
    ("1-D", lambda c: np.zeros(4), ShapeError, ("h0", "(4,)")),
    ("int", lambda c: np.zeros((2, 4), int), DTypeError, ("h0", "int64", "float64")),
    ("float32 vs float64", lambda c: c.h0.astype(np.float32), DTypeError, ("h0", "float32", "float64")),
    ("inf", lambda c: nan_at(c.h0, (1, 1), np.inf), NonFiniteError, ("h0", "(1, 1)")),
]  # fmt: skip

Y_ROWS = [
    ("None", lambda c: None, DTypeError, ("Y", "None", "(T=3, n=2)")),
    ("floats", lambda c: c.Y.astype(float), DTypeError, ("Y", "float64", "integer")),
    ("bool", lambda c: c.Y > 1, DTypeError, ("Y", "bool")),
    ("wrong shape", lambda c: c.Y.T, ShapeError, ("Y", "(T=3, n=2)", "(2, 3)")),
    ("scalar", lambda c: 3, ShapeError, ("Y", "(T=3, n=2)", "()")),
    ("id = q", lambda c: nan_at(c.Y, (1, 0), 6), InputError, ("target 6", "Y[1, 0]", "[0, 6)")),
    ("negative", lambda c: nan_at(c.Y, (2, 1), -3), InputError, ("target -3", "Y[2, 1]")),
]  # fmt: skip

ENTRY_POINTS = {
    "forward": lambda c, p, X, Y, h0: c.m.forward(p, X, h0),
    "loss": lambda c, p, X, Y, h0: c.m.loss(p, X, Y, h0),
    "loss_and_grads": lambda c, p, X, Y, h0: c.m.loss_and_grads(p, X, Y, h0),
}


def _ids(rows):
    return [r[0] for r in rows]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("label", "bad", "error", "fragments"), PARAM_ROWS, ids=_ids(PARAM_ROWS))
def test_bad_params(entry, label, bad, error, fragments):
    c = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect(lambda: ENTRY_POINTS[entry](c, bad(c), c.X, c.Y, c.h0), error, fragments)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("label", "bad", "error", "fragments"), X_ROWS, ids=_ids(X_ROWS))
def test_bad_X(entry, label, bad, error, fragments):
    c = make()
    expect(lambda: ENTRY_POINTS[entry](c, c.p, bad(c), c.Y, c.h0), error, fragments)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("label", "bad", "error", "fragments"), H0_ROWS, ids=_ids(H0_ROWS))
def test_bad_h0(entry, label, bad, error, fragments):
    c = make()
    expect(lambda: ENTRY_POINTS[entry](c, c.p, c.X, c.Y, bad(c)), error, fragments)


@pytest.mark.parametrize("entry", ["loss", "loss_and_grads"])
@pytest.mark.parametrize(("label", "bad", "error", "fragments"), Y_ROWS, ids=_ids(Y_ROWS))
def test_bad_Y(entry, label, bad, error, fragments):
    c = make()
    expect(lambda: ENTRY_POINTS[entry](c, c.p, c.X, bad(c), c.h0), error, fragments)


def test_loss_and_grads_refuses_complex_parameters():
    """Guards against a silently dropped imaginary part: only loss() is for the complex step."""
    c = make()
    pc = {k: v.astype(complex) for k, v in c.p.items()}
    assert np.isfinite(c.m.loss(pc, c.X, c.Y, c.h0))  # accepted where it is meant to be
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect(lambda: c.m.loss_and_grads(pc, c.X, c.Y, c.h0), DTypeError, ("params['W_xz']", "complex128"))


# ---- backward: dH and the cache
DH_ROWS = [
    ("wrong shape", lambda c, H: np.zeros((3, 2, 5)), ShapeError, ("dH", "(3, 2, 4)", "(3, 2, 5)")),
    ("int", lambda c, H: np.zeros(H.shape, int), DTypeError, ("dH", "int64")),
    ("complex", lambda c, H: H.astype(complex), DTypeError, ("dH", "complex128")),
    ("NaN", lambda c, H: nan_at(H, (2, 1, 3)), NonFiniteError, ("dH", "(2, 1, 3)")),
]  # fmt: skip


@pytest.mark.parametrize(("label", "bad", "error", "fragments"), DH_ROWS, ids=_ids(DH_ROWS))
def test_bad_dH(label, bad, error, fragments):
    c = make()
    H, cache = c.cache()
    expect(lambda: c.m.backward(c.p, cache, bad(c, H)), error, fragments)


def test_backward_refuses_complex_parameters():
    c = make()
    H, cache = c.cache()
    pc = {k: v.astype(complex) for k, v in c.p.items()}
    expect(lambda: c.m.backward(pc, cache, H), DTypeError, ("params['W_xz']", "complex128"))


def test_float64_dH_for_float32_states_is_converted_or_refused_when_out_of_range():
    c = make(dtype=np.float32)
    H, cache = c.cache()
    dH = np.random.default_rng(1).normal(size=H.shape)
    got = c.m.backward(c.p, cache, dH)
    want = c.m.backward(c.p, cache, dH.astype(np.float32))
    assert all(got[k].dtype == np.float32 and np.array_equal(got[k], want[k]) for k in want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cast must not be what finds 1e300 (overflow warning)
        expect(
            lambda: c.m.backward(c.p, cache, nan_at(dH, (0, 0, 0), 1e300)), NonFiniteError, ("dH", "1e+300")
        )


def test_float16_dH_is_converted_without_overflow_warnings():
    """Guards a fuzz finding: comparing a float16 dH with the float32 limit overflowed in the cast."""
    c = make(dtype=np.float32)
    H, cache = c.cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = c.m.backward(c.p, cache, np.ones(H.shape, np.float16))
        assert got["h0"].dtype == np.float32
        inf16 = np.full(H.shape, np.inf, np.float16)
        expect(lambda: c.m.backward(c.p, cache, inf16), NonFiniteError, ("dH", "(0, 0, 0)"))


def _other_variant_cache(c: Case) -> dict[str, Any]:
    other = make("gru_update_only")
    return other.m.forward(other.p, c.X, c.h0)[1]


CACHE_ROWS = [
    ("None", lambda c: None, InputError, ("cache", "dict", "NoneType")),
    ("empty dict", lambda c: {}, InputError, ("cache", "missing", "'H'")),
    ("a tuple", lambda c: c.cache(), InputError, ("cache", "tuple")),
    ("other variant", _other_variant_cache, InputError, ("cache", "missing", "'r'")),
    ("other h", lambda c: grusym.load("gru").forward(make().m.init_params(5, 3, 6), c.X, c.h0[:, :3])[1],
     ShapeError, ("cache", "h = 3", "h = 4")),
    ("other d, floats", lambda c: c.m.forward(c.m.init_params(7, 4, 6), np.zeros((3, 2, 7)), c.h0)[1],
     ShapeError, ("cache['X']", "(3, 2, 7)", "d = 5")),
    ("other d, token ids", lambda c: c.m.forward(c.m.init_params(9, 4, 6), nan_at(c.X, (0, 0), 8), c.h0)[1],
     InputError, ("token id 8", "cache['X']", "[0, 5)")),
    ("float32 forward", lambda c: c.cache(p={k: v.astype(np.float32) for k, v in c.p.items()},
                                          h0=c.h0.astype(np.float32))[1],
     DTypeError, ("cache", "float32", "float64")),
    ("complex forward", lambda c: c.cache(p={k: v.astype(complex) for k, v in c.p.items()})[1],
     DTypeError, ("cache", "complex128", "float64")),
]  # fmt: skip


@pytest.mark.parametrize(("label", "bad", "error", "fragments"), CACHE_ROWS, ids=_ids(CACHE_ROWS))
def test_bad_cache(label, bad, error, fragments):
    c = make()
    H, _ = c.cache()
    expect(lambda: c.m.backward(c.p, bad(c), H), error, fragments)


HEAD_ROWS = [
    ("params None", lambda c, H: (None, H), ParameterError, ("params", "NoneType")),
    ("missing W_hq", lambda c, H: ({k: v for k, v in c.p.items() if k != "W_hq"}, H), ParameterError,
     ("'W_hq'",)),
    ("H None", lambda c, H: (c.p, None), DTypeError, ("H", "None", "h=4")),
    ("H wrong h", lambda c, H: (c.p, np.zeros((3, 2, 7))), ShapeError, ("H", "h=4", "(3, 2, 7)")),
    ("H float32", lambda c, H: (c.p, H.astype(np.float32)), DTypeError, ("H", "float32", "float64")),
    ("H NaN", lambda c, H: (c.p, nan_at(H, (0, 1, 2))), NonFiniteError, ("H", "(0, 1, 2)")),
]  # fmt: skip


@pytest.mark.parametrize(("label", "bad", "error", "fragments"), HEAD_ROWS, ids=_ids(HEAD_ROWS))
def test_bad_head_arguments(label, bad, error, fragments):
    c = make()
    H, _ = c.cache()
    expect(lambda: c.m.head(*bad(c, H)), error, fragments)


# ---- init_params and load
INIT_ROWS = [
    ("size 0", {"input_size": 0}, InputError, ("input_size", "positive integer", "0")),
    ("size float", {"hidden_size": 2.5}, InputError, ("hidden_size", "2.5")),
    ("size bool", {"output_size": True}, InputError, ("output_size", "True")),
    ("size str", {"input_size": "4"}, InputError, ("input_size", "'4'")),
    ("dtype int", {"dtype": np.int32}, DTypeError, ("dtype", "float32 or float64", "int32")),
    ("dtype complex", {"dtype": complex}, DTypeError, ("dtype", "complex128")),
    ("dtype structured", {"dtype": "f8,i4"}, DTypeError, ("dtype", "f0")),
]  # fmt: skip
INIT_ROWS_CODEGEN = [
    ("dtype unknown", {"dtype": "float99"}, DTypeError, ("dtype", "'float99'")),
    ("dtype unreadable", {"dtype": "9K"}, DTypeError, ("dtype", "'9K'")),  # numpy: ValueError (fuzz finding)
    ("seed negative", {"seed": -1}, InputError, ("seed", "non-negative", "-1")),
    ("seed str", {"seed": "x"}, InputError, ("seed", "'x'")),
    ("seed float", {"seed": 1.5}, InputError, ("seed", "1.5")),
    ("scale NaN", {"scale": float("nan")}, InputError, ("scale", "nan")),
    ("scale inf", {"scale": float("inf")}, InputError, ("scale", "inf")),
    ("scale negative", {"scale": -0.1}, InputError, ("scale", "-0.1")),
    ("scale str", {"scale": "a"}, InputError, ("scale", "'a'")),
]  # fmt: skip


def _init(name: str, **bad: Any) -> Any:
    args = {"input_size": 5, "hidden_size": 4, "output_size": 6, **bad}
    return grusym.load(name).init_params(**args)


@pytest.mark.parametrize(("label", "bad", "error", "fragments"), INIT_ROWS, ids=_ids(INIT_ROWS))
def test_bad_init_params(label, bad, error, fragments):
    expect(lambda: _init("gru", **bad), error, fragments)


@pytest.mark.parametrize(
    ("label", "bad", "error", "fragments"), INIT_ROWS_CODEGEN, ids=_ids(INIT_ROWS_CODEGEN)
)
def test_bad_init_params_through_check_init(label, bad, error, fragments):
    expect(lambda: _init("gru", **bad), error, fragments)


@pytest.mark.parametrize(("label", "bad", "error", "fragments"), INIT_ROWS + INIT_ROWS_CODEGEN,
                         ids=_ids(INIT_ROWS + INIT_ROWS_CODEGEN))  # fmt: skip
def test_check_init_itself(label, bad, error, fragments):
    args = {
        "input_size": 5,
        "hidden_size": 4,
        "output_size": 6,
        "seed": 0,
        "dtype": np.float64,
        "scale": 0.01,
    }
    expect(lambda: validate.check_init(**{**args, **bad}), error, fragments)


def test_check_init_accepts_what_numpy_accepts():
    rng = np.random.default_rng(3)
    for seed in (None, 0, np.int64(7), 2**70, np.random.SeedSequence(1), rng):
        assert validate.check_init(2, 3, 4, seed, "float32", 0) == (2, 3, 4, np.dtype(np.float32))


@pytest.mark.parametrize("name", ["nope", "GRU", "", None, 3, ["gru"]])
def test_unknown_variant_lists_the_known_ones(name):
    expect(lambda: grusym.load(name), UnknownVariantError, (repr(name), *NAMES))


# ---- every variant: the checks come from one place, but each module must call them
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_validates(name):
    c = make(name)
    H, cache = c.cache()
    some = next(k for k in c.p if k not in ("W_hq", "b_q"))
    fewer = {k: v for k, v in c.p.items() if k != some}
    expect(lambda: c.m.forward(fewer, c.X, c.h0), ParameterError, (some,))
    expect(lambda: c.m.loss_and_grads(c.p, nan_at(c.X, (0, 0), 5), c.Y, c.h0), InputError, ("token id 5",))
    expect(lambda: c.m.loss(c.p, c.Xf[:0], c.Y, c.h0), ShapeError, ("T = 0",))
    expect(lambda: c.m.loss_and_grads(c.p, c.X, c.Y[:, :1], c.h0), ShapeError, ("Y",))
    expect(lambda: c.m.backward(c.p, cache, H[:, :, :2]), ShapeError, ("dH",))
    expect(lambda: _init(name, hidden_size=0), InputError, ("hidden_size",))


# ---- accepted inputs
def test_lists_of_numbers_are_accepted_for_X_Y_h0_and_dH():
    """Documented: X, Y, h0 and dH go through np.asarray; float lists become float64."""
    c = make()
    loss, grads, h_T = c.m.loss_and_grads(c.p, c.Xf.tolist(), c.Y.tolist(), c.h0.tolist())
    want = c.m.loss_and_grads(c.p, c.Xf, c.Y, c.h0)
    assert loss == want[0] and np.array_equal(h_T, want[2])
    assert all(np.array_equal(grads[k], want[1][k]) for k in grads)
    H, cache = c.cache(X=c.X.tolist())
    assert np.array_equal(c.m.backward(c.p, cache, H.tolist())["h0"], c.m.backward(c.p, cache, H)["h0"])


def test_validation_leaves_the_callers_arrays_alone():
    c = make()
    before = {k: v.copy() for k, v in c.p.items()}
    c.m.loss_and_grads(c.p, c.X, c.Y, c.h0)
    assert all(np.array_equal(before[k], c.p[k]) for k in before)


def test_largest_accepted_magnitude_keeps_products_finite():
    for dtype in (np.float32, np.float64):
        big = np.asarray(validate.limit(dtype), dtype=dtype)
        with np.errstate(over="raise"):
            assert np.isfinite(big * big * 1e6)


# ---- the fast path of check_params accepts nothing the full check refuses
@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    dtype=st.sampled_from([np.float32, np.float64]),
    key=st.sampled_from(["W_hh", "b_z", "W_hq", "b_q"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf, 1e200, -3e15, 1e15, 0.0, 1.0]),
    corrupt=st.sampled_from(["value", "dtype", "shape", "none"]),
)
def test_params_fast_path_agrees_with_the_full_check(name, dtype, key, value, corrupt):
    m = grusym.load(name)
    p = m.init_params(3, 2, 4, seed=0, dtype=dtype)
    key = key if key in p else "W_hq"
    if corrupt == "value":
        with np.errstate(over="ignore"):
            p[key] = p[key].copy()
            p[key].flat[-1] = value
    elif corrupt == "dtype":
        p[key] = p[key].astype(np.float32 if dtype == np.float64 else np.float64)
    elif corrupt == "shape":
        p[key] = p[key][..., :1]
    fast = validate._params_fast_path(m.PARAMS, p)
    try:
        full = validate.check_params(m.PARAMS, p)
    except GrusymError:
        assert fast is None
    else:
        assert fast is None or (fast[1:] == full[1:] and fast[0].keys() == full[0].keys())
