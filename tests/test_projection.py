"""``grusym.runtime.project``: the input projection X @ W + b of all T steps, the bias folded into the GEMM as
a column of ones (one pass over the result) while d < k, added after for wider inputs. Against X @ W + b in
long double, for every kind of ``out`` the generated code passes (none, the whole of A, a column block of
A) and one whose (T, n) axes cannot merge, both sides of d < k; the operands are left as they were."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grusym
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
    got = runtime.project(X, None, W, b, out=out)
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
    np.testing.assert_array_equal(runtime.project(X, None, W, b), W[ids] + b)
    np.testing.assert_array_equal(runtime.project(ids, ids, W, b), W[ids] + b)


def _one_hot_oracle(X):
    """Every row of X has one entry equal to 1 and all others equal to 0 (Python's comparisons, per row)."""
    rows = X.reshape(-1, X.shape[-1]).tolist()
    return all(sum(v == 1 for v in r) == 1 and sum(v == 0 for v in r) == len(r) - 1 for r in rows)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    T=st.integers(1, 4), n=st.integers(1, 4), d=st.integers(1, 6),
    change=st.sampled_from([None, 0.0, -0.0, 1.0, 0.5, 2.0, -1.0, 1 + 2**-20, 1 - 2**-20, 1e-30, np.inf]),
    where=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 5)),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_one_hot_ids_takes_exactly_the_one_hot_rows_and_projects_them_to_the_same_values(
    T, n, d, change, where, dtype, seed
):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, d, (T, n))
    X = np.eye(d, dtype=dtype)[ids]
    if change is not None:  # one entry set to a value: some keep the rows one-hot (0 where 0, 1 where 1)
        X[where[0] % T, where[1] % n, where[2] % d] = change
    before = X.copy()
    got = runtime.one_hot_ids(X, False)
    np.testing.assert_array_equal(X, before)
    assert (got is not None) == _one_hot_oracle(X)
    if got is None:
        return
    np.testing.assert_array_equal(got, X.argmax(axis=2))
    assert got.shape == (T, n)
    for k in (d + 3, max(d - 1, 1)):  # both sides of rt.bias_column's d < k
        W = rng.standard_normal((d, k)).astype(dtype)
        b = rng.standard_normal(k).astype(dtype)
        np.testing.assert_array_equal(runtime.project(X, got, W, b), runtime.project(X, None, W, b))


def test_one_hot_ids_leaves_token_ids_dense_and_complex_inputs_alone():
    ids = np.array([[0, 2], [1, 1]])
    assert runtime.one_hot_ids(ids, True) is ids
    X = np.eye(3)[ids]
    for dense in (X + 0.5, X.astype(np.complex128), X[:, :, :2]):  # the last: a row of zeros
        assert runtime.one_hot_ids(dense, False) is None


@pytest.mark.parametrize("backend", ["numpy", "fused"])
@pytest.mark.parametrize("name", grusym.variants())
def test_generated_forward_of_one_hot_rows_is_the_gemm_path_to_the_bit(monkeypatch, name, backend):
    """Every built-in module, plain and fused, gives one-hot float rows (which it gathers) exactly the H
    and last state of the GEMM path (rt.one_hot_ids told to decline), in forward and predict."""
    if backend == "fused" and not grusym.fused_available():
        pytest.skip("numba is not installed")
    m = grusym.load(name, backend=backend)
    T, n, d, h = 3, 2, 5, 4
    p = m.init_params(d, h, d, seed=1, dtype=np.float32, scale=0.5)
    X = np.eye(d, dtype=np.float32)[np.random.default_rng(0).integers(0, d, (T, n))]
    gathered = [m.forward(p, X)[0], *m.predict(p, X)]
    calls = []

    def decline(X, tokens):
        calls.append(tokens)
        return X if tokens else None

    monkeypatch.setattr(runtime, "one_hot_ids", decline)
    gemm = [m.forward(p, X)[0], *m.predict(p, X)]
    assert calls == [False, False]  # the GEMM path really ran
    for a, b in zip(gathered, gemm, strict=True):
        np.testing.assert_array_equal(a, b)
