"""grusym.fastmath: the tanh and sigmoid of the fused kernels, against references that share no code with it.

1. Error bounds (``TANH_ULPS``, ``SIGMOID_ULPS``) in units in the last place of the exact result. float32
   against float64 NumPy (whose own error is 2^-29 of a float32 ulp): a strided sweep over the float32 bit
   patterns plus dense blocks where the method switches (k = 0/-1, the clamps, the subnormals) in the default
   tier, every float32 in the thorough tier. float64 against long double NumPy (64-bit significand, skipped
   where long double is plain double) on a derandomized dense sample.
2. Special arguments: NaN, +-inf, +-0, huge, the smallest subnormals.
3. The NumPy twin equals the Numba kernel bit for bit (the contract the fused modules' tests rely on).
"""

from __future__ import annotations

import numpy as np
import pytest

from grusym import fastmath as fm

from .backends import needs_numba

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _ulp(exact, nmant, emin):
    """One ulp of the exact values (float64 or long double) in a format of nmant fraction bits."""
    _, e = np.frexp(np.abs(exact))
    return np.ldexp(np.ones_like(exact), np.maximum(e.astype(np.int64) - 1 - nmant, emin - nmant))


def _ulps32(got, exact):
    return np.abs(got.astype(np.float64) - exact) / _ulp(exact, 23, -126)


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf below -709: the reference 0
        return 1 / (1 + np.exp(-x))


def _bits32(start, stop, step=1):
    x = np.arange(start, stop, step, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return x[np.isfinite(x)]


def _sweep32(step):
    """Every step-th float32 bit pattern (finite), plus dense blocks around the switch points."""
    parts = [_bits32(0, 1 << 32, step)]
    centres = (0.0, np.log(2) / 4, np.log(2) / 2, 0.35, 1.0, 9.0, 9.1, 16.6, 17.0, 86.9, 87.0, 87.1, 104.0)
    for centre in centres:
        c = int(np.float32(centre).view(np.uint32))
        for sign in (0, 1 << 31):
            lo = max(c - 20000, 0)
            parts.append(_bits32(lo + sign, c + 20000 + sign))
    return np.concatenate(parts)


def _check32(x, tanh, sigmoid):
    """The worst errors of tanh and sigmoid on x; below -87 (where exp(-|x|) is clamped at the smallest
    normal's neighbourhood) sigmoid is bounded absolutely instead: its result is below 2^-125."""
    xd = x.astype(np.float64)
    t = tanh(x)
    assert t.dtype == F32
    ref = np.tanh(xd)
    err_t = np.where(ref == 0, np.where(t == 0, 0.0, np.inf), _ulps32(t, ref))
    s = sigmoid(x)
    assert s.dtype == F32
    ref = _sigmoid_ref(xd)
    normal = xd >= -87
    err_s = _ulps32(s[normal], ref[normal])
    low_abs = np.abs(s[~normal].astype(np.float64) - ref[~normal])
    assert low_abs.size == 0 or low_abs.max() < 2.0**-125
    return err_t.max(), err_s.max()


def test_float32_error_bounds_on_a_strided_sweep():
    """Every 2039th float32 and 40,000 consecutive ones around each switch point (about 3.1M arguments):
    within the stated bounds (the thorough tier checks every float32)."""
    x = _sweep32(2039)
    worst_t, worst_s = _check32(x, fm.tanh, fm.sigmoid)
    assert worst_t <= fm.TANH_ULPS[F32], worst_t
    assert worst_s <= fm.SIGMOID_ULPS[F32], worst_s


@pytest.mark.slow
@needs_numba
def test_float32_error_bounds_over_every_float32():
    """The proof of the float32 bounds: all 2^32 bit patterns (the Numba kernels, equal bit for bit to the
    twins, evaluate them; the twins are checked on every 16th)."""
    tanh, sigmoid = _kernels()
    worst = [0.0, 0.0]
    chunk = 1 << 24
    for start in range(0, 1 << 32, chunk):
        x = _bits32(start, start + chunk)
        if x.size == 0:
            continue
        worst = [max(a, b) for a, b in zip(worst, _check32(x, tanh, sigmoid), strict=True)]
        sample = x[::16]
        np.testing.assert_array_equal(tanh(sample).view(np.uint32), fm.tanh(sample).view(np.uint32))
        np.testing.assert_array_equal(sigmoid(sample).view(np.uint32), fm.sigmoid(sample).view(np.uint32))
    assert worst[0] <= fm.TANH_ULPS[F32], worst
    assert worst[1] <= fm.SIGMOID_ULPS[F32], worst


def _sample64():
    """A derandomized dense float64 sample: uniform over the ranges where the result changes, log-uniform
    magnitudes down to 1e-300, and every 2^-20 step around the switch points."""
    rng = np.random.default_rng(28)
    parts = [
        rng.uniform(-20, 20, 400_000),
        rng.uniform(-745, 40, 400_000),
        np.copysign(10.0 ** rng.uniform(-300, 2.9, 200_000), rng.standard_normal(200_000)),
    ]
    for centre in (0.0, np.log(2) / 4, np.log(2) / 2, 1.0, 19.0, 19.1, 36.7, 708.0):
        parts.append(centre + np.arange(-20_000, 20_000) * 2.0**-20)
        parts.append(-centre + np.arange(-20_000, 20_000) * 2.0**-20)
    return np.concatenate(parts)


def test_float64_error_bounds_on_a_dense_sample():
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("long double is no wider than double here: no float64 reference")
    x = _sample64()
    xl = x.astype(np.longdouble)
    t = fm.tanh(x)
    ref = np.tanh(xl)
    err = np.where(ref == 0, np.where(t == 0, 0, np.inf), np.abs(t - ref) / _ulp(ref, 52, -1022))
    assert err.max() <= fm.TANH_ULPS[F64], err.max()
    s = fm.sigmoid(x)
    ref = _sigmoid_ref(xl)
    normal = x >= -708
    err = np.abs(s[normal] - ref[normal]) / _ulp(ref[normal], 52, -1022)
    assert err.max() <= fm.SIGMOID_ULPS[F64], err.max()
    assert np.all(np.abs(s[~normal] - ref[~normal]) < 2.0**-1021)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_arguments(dt):
    """NaN stays NaN; +-inf give the limits (sigmoid(-inf): at most the clamp's tiny value); the sign of
    zero survives tanh; huge and subnormal arguments are finite and right."""
    tiny = np.finfo(dt).smallest_subnormal
    big = np.finfo(dt).max
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, big, -big, tiny, -tiny, 1e30, -1e30], dtype=dt)
    t, s = fm.tanh(x), fm.sigmoid(x)
    assert np.isnan(t[:2]).all() and np.isnan(s[:2]).all()
    np.testing.assert_array_equal(t[2:4], [1, -1])
    assert np.signbit(t[4]) == np.False_ and t[4] == 0
    assert np.signbit(t[5]) == np.True_ and t[5] == 0
    np.testing.assert_array_equal(t[6:8], [1, -1])
    np.testing.assert_array_equal(t[8:10], [tiny, -tiny])  # tanh(x) = x to rounding there
    np.testing.assert_array_equal(t[10:], [1, -1])
    assert s[2] == 1 and 0 <= s[3] < np.finfo(dt).tiny * 2
    np.testing.assert_array_equal(s[4:6], [0.5, 0.5])
    assert s[6] == 1 and 0 <= s[7] < np.finfo(dt).tiny * 2
    np.testing.assert_array_equal(s[8:10], [0.5, 0.5])
    assert t.dtype == s.dtype == np.dtype(dt)


def test_twins_take_other_reals_as_float64_complex_as_numpy_and_write_out():
    np.testing.assert_array_equal(fm.tanh(np.arange(3)), fm.tanh(np.arange(3.0)))
    z = np.array([0.3 + 1e-20j, -1.2 + 1e-20j])
    np.testing.assert_allclose(fm.tanh(z), np.tanh(z), rtol=1e-15)
    np.testing.assert_allclose(fm.sigmoid(z).imag, 1e-20 * _sigmoid_ref(z.real) * (1 - _sigmoid_ref(z.real)))
    out = np.empty(2, np.float32)
    assert fm.sigmoid(np.float32([0, 1]), out=out) is out and out[0] == 0.5


def _kernels():
    """The scalar overloads Numba inlines into fused kernels, mapped over a 1-D array."""
    import numba

    @numba.njit
    def tanh(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fm.tanh(x[i])
        return out

    @numba.njit
    def sigmoid(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fm.sigmoid(x[i])
        return out

    @numba.njit
    def relu(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fm.relu(x[i])
        return out

    @numba.njit
    def hard_sigmoid(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fm.hard_sigmoid(x[i])
        return out

    tanh.relu, tanh.hard_sigmoid = relu, hard_sigmoid  # type: ignore[attr-defined]
    return tanh, sigmoid


@needs_numba
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_the_numba_kernels_equal_the_numpy_twins_bit_for_bit(dt):
    """The contract of the fused modules' bit-for-bit tests: the same operations in the same order, on the
    strided sweep (float32) or the dense sample (float64) plus the special arguments; relu and hard_sigmoid
    equal grusym.runtime's."""
    tanh, sigmoid = _kernels()
    x = (_sweep32(4093) if dt == np.float32 else _sample64()[::7]).astype(dt)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], dtype=dt)
    x = np.concatenate([x, special, np.finfo(dt).smallest_subnormal * np.arange(-3, 4, dtype=dt)])
    view = np.uint32 if dt == np.float32 else np.uint64
    np.testing.assert_array_equal(tanh(x).view(view), fm.tanh(x).view(view))
    np.testing.assert_array_equal(sigmoid(x).view(view), fm.sigmoid(x).view(view))
    np.testing.assert_array_equal(tanh.relu(x).view(view), fm.relu(x).view(view))
    np.testing.assert_array_equal(tanh.hard_sigmoid(x).view(view), fm.hard_sigmoid(x).view(view))
