"""``grusym.runtime.weight_buffer``: the weight matrices the generated products read as their right operand
have their rows padded by a cache line when a row is a multiple of 4 KiB long (OpenBLAS's copy of such a
matrix maps every row to the same cache sets: the LSTM's per-step product ran 1.4x slower). The padding
must change no number, and the benchmark's GEMM floors must use the layout the generated step uses."""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym import runtime
from grusym.bench.floor import right_operand, size
from grusym.examples.cells import EXAMPLES, path
from grusym.generated import CELLS
from grusym.symbolic.codegen import gemm_plan
from grusym.symbolic.usercell import load_cell


@pytest.mark.parametrize(
    "dtype, cols, padded",
    [
        (np.float32, 1024, True),  # 4 KiB rows: the LSTM's W_h_all at h = 256
        (np.float32, 2048, True),
        (np.float64, 512, True),
        (np.float32, 768, False),  # 3 KiB: the GRU's
        (np.float32, 512, False),  # 2 KiB: no measured gain, left alone
        (np.complex128, 256, True),  # the complex-step check's arrays
        (np.float32, 0, False),
    ],
)
def test_rows_are_padded_exactly_at_4_kib_strides(dtype, cols, padded):
    w = runtime.weight_buffer(runtime.fresh, "W", (3, cols), dtype)
    assert w.shape == (3, cols) and w.dtype == dtype
    assert (w.strides[0] != cols * w.itemsize) == padded
    if padded:
        assert w.strides[0] % runtime.ALIASING_STRIDE == 64  # one cache line more


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 32])
def test_a_padded_right_operand_gives_the_same_bits(dtype, n):
    """BLAS reads the matrix through its leading dimension: the product is the contiguous one's to the bit
    (gemm, and gemv at one row)."""
    rng = np.random.default_rng(n)
    cols = runtime.ALIASING_STRIDE // np.dtype(dtype).itemsize
    a = rng.standard_normal((n, 96)).astype(dtype)
    b = rng.standard_normal((96, cols)).astype(dtype)
    padded = runtime.weight_buffer(runtime.fresh, "b", b.shape, dtype)
    padded[...] = b
    assert padded.strides[0] != b.strides[0]
    np.testing.assert_array_equal(np.matmul(a, padded), np.matmul(a, b))
    np.testing.assert_array_equal(np.matmul(a, padded.T.T), np.matmul(a, b))


CASES = [("lstm", np.float32, 256)] + [(name, np.float64, 512) for name in [*CELLS, *EXAMPLES]]


@pytest.mark.parametrize(("name", "dtype", "h"), CASES)
def test_the_plan_marks_exactly_the_products_whose_weights_the_step_pads(monkeypatch, name, dtype, h):
    """At these sizes some of the generated step's right operands are padded (lstm float32 at h 256: W_h_all,
    4 KiB rows; every built-in and example cell in float64 at h 512, where even one (h, h) weight's rows
    are 4 KiB): the plan's ``padded`` flag, which the GEMM floors read, says so for every per-step product
    forward and backward pad and for no other (the loops' np.matmul calls logged in order; the products
    after the loops are ``@`` and read no weight buffer)."""
    cell = name if name in CELLS else load_cell(path(name))
    m = grusym.load(name if name in CELLS else path(name))
    T, n = 2, 2
    d = h if getattr(m, "INPUT_ELEMENTWISE", False) else 5  # sru reads X elementwise: d == h
    p = m.init_params(d, h, d, dtype=dtype)
    X = np.random.default_rng(0).integers(0, d, (T, n))
    aux = {k: np.full((T, n, h), 0.5, dtype) for k in getattr(m, "INPUTS", ())}  # zoneout's masks
    log, real = [], np.matmul

    def matmul(a, b, *args, **kwargs):
        log.append((b.shape[1], b.strides[0] != b.shape[1] * b.itemsize))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", matmul)
    H, cache = m.forward(p, X, aux=aux) if aux else m.forward(p, X)
    m.backward(p, cache, np.ones_like(H))
    monkeypatch.undo()
    dims = {"T": T, "n": n, "d": d, "h": h, "q": d}
    plan = [g for g in gemm_plan(cell) if g.when in ("always", "tokens") and g.per_step]
    expected = []
    for phase in ("forward", "backward"):
        products = [g for g in plan if g.phase == phase]
        rows = []
        for g in products:
            cols = size(g.n, dims)
            rows.append((cols, g.padded and cols * np.dtype(dtype).itemsize % runtime.ALIASING_STRIDE == 0))
        expected += rows * T
    assert log == expected
    # mingru, indrnn and sru have no per-step products (their recurrences are elementwise)
    assert any(pad for _, pad in expected) or not plan, "nothing padded: the case does not test the flag"


def test_the_floors_build_the_padded_layout():
    b = right_operand(np.ones((3, 1024), np.float32), True)
    assert b.strides == (1040 * 4, 4) and b.shape == (3, 1024) and b.sum() == 3 * 1024
    assert right_operand(b, False) is b
