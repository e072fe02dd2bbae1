"""``grusym.runtime.project``: the input projection X @ W + b of all T steps, the bias folded into the GEMM as
a column of ones (one pass over the result) while d < k, added after for wider inputs. Against X @ W + b in
long double, for every kind of ``out`` the generated code passes (none, the whole of A, a column block of
A) and one whose (T, n) axes cannot merge, both sides of d < k; the operands are left as they were."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grusym import runtime


def _expected(X, W, b):
    wide = np.longdouble if X.dtype != np.complex128 else np.clongdouble
    return (np.einsum("tnd,dk->tnk", X.astype(wide), W.astype(wide)) + b.astype(wide)).astype(X.dtype)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    T=st.integers(1, 5), n=st.integers(1, 4), d=st.integers(1, 9), k=st.integers(1, 12),
    where=st.sampled_from(["none", "whole", "block", "unmergeable"]),
    dtype=st.sampled_from([np.float32, np.float64, np.complex128]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_project_is_x_at_w_plus_b_into_any_out(T, n, d, k, where, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, n, d)).astype(dtype)
    W = rng.standard_normal((d, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    if dtype == np.complex128:
        X = X + 1j * rng.standard_normal(X.shape)
    copies = [a.copy() for a in (X, W, b)]
    A = np.full((T, 2 * n, k + 3), np.nan, dtype)
    out = {
        "none": None,
        "whole": np.empty((T, n, k), dtype),
        "block": A[:, :n, 1 : k + 1],  # rows strided, (T, n) mergeable
        "unmergeable": A[:, ::2, :k],  # every other row: the (T, n) axes cannot merge
    }[where]
    got = runtime.project(X, False, W, b, out=out)
    if out is not None:
        assert got is out
    tol = 1e-5 if dtype == np.float32 else 1e-13
    scale = np.abs(_expected(np.abs(X), np.abs(W), np.abs(b)))
    assert np.all(np.abs(got - _expected(X, W, b)) <= tol * (scale + 1))
    for a, c in zip((X, W, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    if where == "block":  # nothing written outside the block
        assert np.isnan(A[:, n:]).all() and np.isnan(A[:, :n, 0]).all() and np.isnan(A[:, :n, k + 1 :]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_project_of_one_hot_rows_is_exact(dtype):
    """One-hot float rows pick a row of W and add b: the same bits as W[ids] + b."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (4, 3))
    W = rng.standard_normal((7, 1024)).astype(dtype)  # 4 KiB rows in float32: a padded weight buffer
    b = rng.standard_normal(1024).astype(dtype)
    X = np.eye(7, dtype=dtype)[ids]
    np.testing.assert_array_equal(runtime.project(X, False, W, b), W[ids] + b)
    np.testing.assert_array_equal(runtime.project(ids, True, W, b), W[ids] + b)
