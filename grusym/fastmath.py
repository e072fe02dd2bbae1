"""Vectorisable tanh and sigmoid for the fused kernels (float32 and float64), and their NumPy twins.

Contract: :func:`tanh` and :func:`sigmoid` perform, in the dtype of their argument, the same IEEE operations
in the same order whether they run here on NumPy arrays or inside a Numba kernel on scalars (the overloads
registered below when numba imports): the two agree bit for bit (tests/test_fastmath.py), so a fused
module's kernels compute exactly what the plain module computes with these twins in place of NumPy's
``np.tanh`` and ``grusym.runtime.sigmoid``. They call no libm function, so LLVM vectorises the kernels that
inline them (a scalar libm ``tanhf`` in a kernel ran 50x slower than NumPy's SIMD tanh).

Method, per dtype (float32: table K = 126, Taylor degree N = 7; float64: K = 1021, N = 13)::

    y = -2|x| (tanh) or -|x| (sigmoid), |x| clamped where the result no longer changes
    y = k*ln2 + r,  k = round(y / ln2) in [-K, 0],  |r| <= ln2/2   (Cody-Waite: ln2 = LN2_HI + LN2_LO,
                                                                       k*LN2_HI exact)
    expm1(r) = r + r^2/2! + ... + r^N/N!   (truncation below a tenth of an ulp relative)
    expm1(y) = 2^k*expm1(r) + (2^k - 1),   2^k built in the exponent bits (k + bias)
    tanh(x) = copysign(-expm1(y) / (expm1(y) + 2), x)                 (no cancellation near 0)
    sigmoid(x) = 1/(1 + e) for x >= 0, e/(1 + e) for x < 0,  e = exp(-|x|) = 2^k + 2^k*expm1(r)

NaN propagates (every clamp keeps it; a NaN's k is clamped to K, so its 2^k is a normal number). The error
bounds are ``TANH_ULPS`` and ``SIGMOID_ULPS``, in ulps of the exact result (sigmoid below -87 / -708, where
e is clamped: absolutely, under the smallest normal number); tests/test_fastmath.py checks them on a strided
sweep of float32 and a dense float64 sample, and over every float32 in the thorough tier. The worst cases
sit where k turns from 0 to -1 (tanh near ln2/4: 1.95 ulp in float32, where NumPy's tanh is within 1.34).
Complex arguments (the complex-step check runs the kernels on complex arrays) take ``cmath.tanh``, and
the sigmoid 0.5 + 0.5*tanh(x/2) as ``grusym.runtime.sigmoid``.
"""

from __future__ import annotations

import cmath
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SIGMOID_ULPS", "TANH_ULPS", "hard_sigmoid", "relu", "sigmoid", "tanh"]

Array = NDArray[Any]

# the largest error in units in the last place of the exact result (tests/test_fastmath.py). Measured:
# float32 tanh 1.95, sigmoid 2.36 (strided sweep); float64 tanh 1.99, sigmoid 2.28 (dense sample)
TANH_ULPS = {np.dtype(np.float32): 2.0, np.dtype(np.float64): 2.5}
SIGMOID_ULPS = {np.dtype(np.float32): 2.5, np.dtype(np.float64): 2.5}

_F, _D = np.float32, np.float64

# float32
F_INV_LN2 = _F(1 / math.log(2))
F_LN2_HI = _F(0.693145751953125)  # 15 significant bits: k*F_LN2_HI is exact for |k| < 2^9
F_LN2_LO = _F(math.log(2) - 0.693145751953125)
F_C = tuple(_F(1 / math.factorial(i)) for i in range(8))  # 1/i!, i = 0..7
F_TANH_CLAMP = _F(9.1)  # tanh(x) rounds to 1 in float32 from 9.02 on
F_SIG_CLAMP = _F(87.0)  # exp(-87) is still a normal float32; sigmoid(x) rounds to 1 from 16.7 on
F_K = _F(-126.0)  # the smallest k: round(-87 / ln2)
F_ZERO, F_HALF, F_ONE, F_TWO, F_NEG_TWO, F_FIFTH = _F(0), _F(0.5), _F(1), _F(2), _F(-2), _F(0.2)

# float64 (fdlibm's split of ln2)
D_INV_LN2 = _D(1 / math.log(2))
D_LN2_HI = _D(6.93147180369123816490e-01)  # 32 significant bits: k*D_LN2_HI is exact for |k| < 2^21
D_LN2_LO = _D(1.90821492927058770002e-10)
D_C = tuple(_D(1 / math.factorial(i)) for i in range(14))  # 1/i!, i = 0..13
D_TANH_CLAMP = _D(19.1)  # tanh(x) rounds to 1 in float64 from 19.06 on
D_SIG_CLAMP = _D(708.0)  # exp(-708) is still a normal float64; sigmoid(x) rounds to 1 from 36.8 on
D_K = _D(-1021.0)  # round(-708 / ln2)
D_ZERO, D_HALF, D_ONE, D_TWO, D_NEG_TWO, D_FIFTH = _D(0), _D(0.5), _D(1), _D(2), _D(-2), _D(0.2)


# ---- the NumPy twins (arrays; the same operations as the scalar kernels below)


def _expm1_poly(r: Array, c: tuple[Any, ...]) -> Array:
    """r + r^2/2! + ... as r + r*(r*P(r)), P by Horner: the exact leading term carries most of it."""
    p = c[-1]
    for ck in reversed(c[2:-1]):
        p = ck + r * p
    return r + r * (r * p)


def _core(y: Array, dtype: Any) -> tuple[Array, Array]:
    """(2^k, expm1(r)) with y = k*ln2 + r, y in [K*ln2, 0] (or NaN)."""
    if dtype == np.float32:
        inv, hi, lo, c, kmin, half = F_INV_LN2, F_LN2_HI, F_LN2_LO, F_C, F_K, F_HALF
    else:
        inv, hi, lo, c, kmin, half = D_INV_LN2, D_LN2_HI, D_LN2_LO, D_C, D_K, D_HALF
    kf = np.floor(y * inv + half)
    kf = np.where(kf >= kmin, kf, kmin)  # a NaN's k: kmin, a valid index
    r = (y - kf * hi) - kf * lo
    return _pow2(kf), _expm1_poly(r, c)


def _pow2(kf: Array) -> Array:
    """2^k for the integral floats kf >= K (normal numbers): k + bias in the exponent bits."""
    if kf.dtype == np.float32:
        return ((kf.astype(np.int32) + np.int32(127)) << np.int32(23)).view(np.float32)
    return ((kf.astype(np.int64) + np.int64(1023)) << np.int64(52)).view(np.float64)


def _real(x: Any) -> tuple[Array, Any]:
    a = np.asarray(x)
    if a.dtype.kind != "c" and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return a, a.dtype.type


def tanh(x: Any, out: Array | None = None) -> Any:
    """tanh of a float32 or float64 array as the fused kernels compute it (other reals: as float64;
    complex: NumPy's), written into ``out`` when given (as ``np.tanh(x, out=out)``)."""
    a, t = _real(x)
    if a.dtype.kind == "c":  # the kernels' cmath.tanh, to rounding
        return _into(np.tanh(a), out)
    clamp = F_TANH_CLAMP if t is _F else D_TANH_CLAMP
    m = np.abs(a)
    m = np.where(m > clamp, clamp, m)
    two_k, q = _core(m * t(-2), a.dtype)
    s = two_k * q
    return _into(np.copysign(((t(1) - two_k) - s) / ((t(1) + two_k) + s), a), out)


def sigmoid(x: Any, out: Array | None = None) -> Any:
    """The logistic sigmoid of a float32 or float64 array as the fused kernels compute it, written into
    ``out`` when given (as ``grusym.runtime.sigmoid(x, out=out)``)."""
    a, t = _real(x)
    if a.dtype.kind == "c":  # the kernels' 0.5 + 0.5*tanh(x/2), to rounding
        return _into(0.5 + 0.5 * np.tanh(0.5 * a), out)
    clamp = F_SIG_CLAMP if t is _F else D_SIG_CLAMP
    m = np.abs(a)
    m = np.where(m > clamp, clamp, m)
    two_k, q = _core(-m, a.dtype)
    s = two_k * q
    num = np.where(a >= t(0), t(1), two_k + s)
    return _into(num / ((t(1) + two_k) + s), out)


def _into(y: Array, out: Array | None) -> Array:
    if out is None:
        return y
    np.copyto(out, y)
    return out


def relu(x: Any, out: Array | None = None) -> Any:
    """grusym.runtime.relu; in a kernel, the same values (NaN kept, complex as the runtime's)."""
    from .runtime import relu

    return relu(np.asarray(x), out)


def hard_sigmoid(x: Any, out: Array | None = None) -> Any:
    """grusym.runtime.hard_sigmoid; in a kernel, the same values (x*0.2 + 0.5 clipped to [0, 1])."""
    from .runtime import hard_sigmoid

    return hard_sigmoid(np.asarray(x), out)


# ---- the scalar versions Numba inlines into kernels (registered only when numba imports)


def _register() -> None:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload, register_jitable

    def pow2_typer(typingctx: Any, kf: Any) -> Any:
        """2^k of an integral float k >= K, as _pow2: k + bias shifted into the exponent bits."""
        if not isinstance(kf, types.Float):
            return None
        width, bias, shift = (32, 127, 23) if kf.bitwidth == 32 else (64, 1023, 52)
        real = ir.FloatType() if width == 32 else ir.DoubleType()

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            k = builder.fptosi(args[0], ir.IntType(width))
            biased = builder.add(k, ir.Constant(ir.IntType(width), bias))
            return builder.bitcast(builder.shl(biased, ir.Constant(ir.IntType(width), shift)), real)

        return kf(kf), codegen

    pow2: Any = intrinsic(pow2_typer)

    @register_jitable(inline="always")
    def tanh32(x: Any) -> Any:
        a = abs(x)
        a = F_TANH_CLAMP if a > F_TANH_CLAMP else a
        y = F_NEG_TWO * a
        kf = np.floor(y * F_INV_LN2 + F_HALF)
        kf = kf if kf >= F_K else F_K
        r = (y - kf * F_LN2_HI) - kf * F_LN2_LO
        c = F_C
        q = r + r * (r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * c[7]))))))
        two_k = pow2(kf)
        s = two_k * q
        return math.copysign(((F_ONE - two_k) - s) / ((F_ONE + two_k) + s), x)

    @register_jitable(inline="always")
    def sigmoid32(x: Any) -> Any:
        a = abs(x)
        a = F_SIG_CLAMP if a > F_SIG_CLAMP else a
        y = -a
        kf = np.floor(y * F_INV_LN2 + F_HALF)
        kf = kf if kf >= F_K else F_K
        r = (y - kf * F_LN2_HI) - kf * F_LN2_LO
        c = F_C
        q = r + r * (r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * c[7]))))))
        two_k = pow2(kf)
        s = two_k * q
        num = F_ONE if x >= F_ZERO else two_k + s
        return num / ((F_ONE + two_k) + s)

    @register_jitable(inline="always")
    def _expm1_64(r: Any) -> Any:
        c = D_C
        p = c[12] + r * c[13]
        p = c[11] + r * p
        p = c[10] + r * p
        p = c[9] + r * p
        p = c[8] + r * p
        p = c[7] + r * p
        p = c[6] + r * p
        p = c[5] + r * p
        p = c[4] + r * p
        p = c[3] + r * p
        p = c[2] + r * p
        return r + r * (r * p)

    @register_jitable(inline="always")
    def tanh64(x: Any) -> Any:
        a = abs(x)
        a = D_TANH_CLAMP if a > D_TANH_CLAMP else a
        y = D_NEG_TWO * a
        kf = np.floor(y * D_INV_LN2 + D_HALF)
        kf = kf if kf >= D_K else D_K
        r = (y - kf * D_LN2_HI) - kf * D_LN2_LO
        q = _expm1_64(r)
        two_k = pow2(kf)
        s = two_k * q
        return math.copysign(((D_ONE - two_k) - s) / ((D_ONE + two_k) + s), x)

    @register_jitable(inline="always")
    def sigmoid64(x: Any) -> Any:
        a = abs(x)
        a = D_SIG_CLAMP if a > D_SIG_CLAMP else a
        y = -a
        kf = np.floor(y * D_INV_LN2 + D_HALF)
        kf = kf if kf >= D_K else D_K
        r = (y - kf * D_LN2_HI) - kf * D_LN2_LO
        q = _expm1_64(r)
        two_k = pow2(kf)
        s = two_k * q
        num = D_ONE if x >= D_ZERO else two_k + s
        return num / ((D_ONE + two_k) + s)

    def pick(x: Any, f32: Any, f64: Any, complex_: Any) -> Any:
        if isinstance(x, types.Float):
            return f32 if x.bitwidth == 32 else f64
        if isinstance(x, types.Complex):
            return complex_
        return None

    # the implementations' parameters must read exactly as the overloaded functions' (annotations too)
    def tanh_f32(x: Any, out: Array | None = None) -> Any:
        return tanh32(x)

    def tanh_f64(x: Any, out: Array | None = None) -> Any:
        return tanh64(x)

    def tanh_c(x: Any, out: Array | None = None) -> Any:
        return cmath.tanh(x)

    def sigmoid_f32(x: Any, out: Array | None = None) -> Any:
        return sigmoid32(x)

    def sigmoid_f64(x: Any, out: Array | None = None) -> Any:
        return sigmoid64(x)

    def sigmoid_c(x: Any, out: Array | None = None) -> Any:
        return 0.5 + 0.5 * cmath.tanh(0.5 * x)

    def relu_f32(x: Any, out: Array | None = None) -> Any:
        return x if x > F_ZERO or x != x else F_ZERO  # NaN stays NaN, as np.maximum keeps it

    def relu_f64(x: Any, out: Array | None = None) -> Any:
        return x if x > D_ZERO or x != x else D_ZERO

    def relu_c(x: Any, out: Array | None = None) -> Any:
        return x if x.real > 0 else x * 0

    def hard_sigmoid_f32(x: Any, out: Array | None = None) -> Any:
        y = x * F_FIFTH + F_HALF
        y = F_ZERO if y < F_ZERO else y
        return F_ONE if y > F_ONE else y

    def hard_sigmoid_f64(x: Any, out: Array | None = None) -> Any:
        y = x * D_FIFTH + D_HALF
        y = D_ZERO if y < D_ZERO else y
        return D_ONE if y > D_ONE else y

    def hard_sigmoid_c(x: Any, out: Array | None = None) -> Any:
        y = x * 0.2 + 0.5
        return 0j * y if y.real <= 0 else (1 + 0j * y if y.real >= 1 else y)

    @overload(relu, inline="always")
    def _relu(x: Any, out: Array | None = None) -> Any:
        return pick(x, relu_f32, relu_f64, relu_c)

    @overload(hard_sigmoid, inline="always")
    def _hard_sigmoid(x: Any, out: Array | None = None) -> Any:
        return pick(x, hard_sigmoid_f32, hard_sigmoid_f64, hard_sigmoid_c)

    @overload(tanh, inline="always")
    def _tanh(x: Any, out: Array | None = None) -> Any:
        return pick(x, tanh_f32, tanh_f64, tanh_c)

    @overload(sigmoid, inline="always")
    def _sigmoid(x: Any, out: Array | None = None) -> Any:
        return pick(x, sigmoid_f32, sigmoid_f64, sigmoid_c)


try:
    import numba  # noqa: F401
except ImportError:  # the NumPy twins still work; the fused modules need numba anyway
    pass
else:
    _register()
