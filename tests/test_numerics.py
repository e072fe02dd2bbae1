"""Extreme values stay finite and accurate: saturated gates (pre-activations of +-30 and +-1000), huge
logits (1e4), float32 throughout; no overflow/invalid/divide warnings; the FD check still passes where the
function is smooth; results are bit-identical across processes.

The special values are a table (STYLE.md): each row sets every cell bias to +-``bias`` (random signs), draws
the cell weights from N(0, ``weight``^2) and the head from N(0, ``logit``^2), so the gate pre-activations sit
near +-bias (or spread over +-weight * sqrt(width)) and the logits near +-logit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import grusym
from grusym import runtime
from grusym.gradcheck import check_gradients
from grusym.symbolic.variants import CELLS

from . import reference_autograd

NAMES = list(CELLS)  # the GRU variants and lstm
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Special:
    label: str
    bias: float
    weight: float
    logit: float
    fd: bool  # smooth at the FD step (a relative step of 7e-4): the FD check must pass
    f32_tol: float  # |g32 - g64| / max|g64|; large weights amplify rounding by about weight * sqrt(h)


SPECIAL = [
    Special("gates +-8", 8, 1, 1, fd=True, f32_tol=1e-4),
    Special("gates +-30", 30, 0.1, 1, fd=True, f32_tol=1e-4),
    Special("gates +-1000", 1000, 0.1, 1, fd=True, f32_tol=1e-4),
    Special("weights x30", 30, 30, 1, fd=False, f32_tol=1e-2),
    Special("weights x1000", 1000, 1000, 1, fd=False, f32_tol=1e-3),
    Special("logits 1e4", 1, 1, 1e4, fd=True, f32_tol=1e-4),
    Special("all extreme", 1000, 1000, 1e4, fd=False, f32_tol=1e-3),
]
RAISE = {"over": "raise", "invalid": "raise", "divide": "raise"}  # underflow to 0 is fine


def special_problem(name: str, row: Special, dtype: Any = np.float64, T=6, n=3, d=5, h=16, q=6, seed=0):
    m = grusym.load(name)
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed + 1, scale=row.weight)
    for key, value in p.items():
        if key in ("W_hq", "b_q"):
            p[key] = rng.normal(0.0, row.logit, value.shape)
        elif value.ndim == 1:
            p[key] = row.bias * rng.choice([-1.0, 1.0], value.shape)
    for step in CELLS[name].cell().steps:  # a step's several bias rows share its +-bias: none cancels
        if len(step.biases) > 1:
            share = p[step.biases[0]] / len(step.biases)
            for b in step.biases:
                p[b] = share.copy()
    p = {k: v.astype(dtype) for k, v in p.items()}
    ids = rng.integers(0, d, (T, n))
    X = rng.normal(size=(T, n, d)).astype(dtype)
    Y = rng.integers(0, q, (T, n))
    h0 = rng.uniform(-1, 1, (n, h)).astype(dtype)
    if len(m.STATES) > 1:  # lstm: a cell state of the same spread
        h0 = (h0, *(rng.uniform(-1, 1, (n, h)).astype(dtype) for _ in m.STATES[1:]))
    return m, p, ids, X, Y, h0


def _states(h0: Any) -> tuple[np.ndarray, ...]:
    return h0 if isinstance(h0, tuple) else (h0,)


def _all_finite(*arrays: Any) -> bool:
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("row", SPECIAL, ids=[r.label for r in SPECIAL])
def test_special_values_stay_finite_silent_and_in_dtype(row, name, dtype):
    m, p, ids, X, Y, h0 = special_problem(name, row, dtype)
    with warnings.catch_warnings(), np.errstate(**RAISE):
        warnings.simplefilter("error")
        for inputs in (ids, X):
            loss, grads, h_T = m.loss_and_grads(p, inputs, Y, h0)
            assert np.isfinite(loss) and _all_finite(*_states(h_T), *grads.values())
            assert all(s.dtype == dtype for s in _states(h_T)) and all(
                g.dtype == dtype for g in grads.values()
            )
            H, cache = m.forward(p, inputs, h0)
            back = m.backward(p, cache, np.ones_like(H))
            assert H.dtype == dtype and _all_finite(H, *back.values())
            assert all(a.dtype == dtype for a in back.values())
            assert np.isfinite(m.loss(p, inputs, Y, h0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("row", SPECIAL, ids=[r.label for r in SPECIAL])
def test_special_values_match_the_independent_autograd(row, name):
    """Agreement to 1e-10 of the largest gradient, absolutely: the sigmoid is 0.5 + 0.5 tanh(x/2), exact to
    eps absolutely but not relatively in its lower tail (sigmoid(-30) = 9e-14 carries a 1e-3 relative
    error), which no gradient step can see; weights of 30 amplify rounding to ~2e-12."""
    m, p, _, X, Y, h0 = special_problem(name, row)
    loss, grads, _ = m.loss_and_grads(p, X, Y, h0)
    with np.errstate(over="ignore"):  # the tape's 1 / (1 + exp(-x)) overflows harmlessly at x = -1000
        ref_loss, ref = reference_autograd.loss_and_grads(CELLS[name].cell(), p, X, Y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    scale = max(np.abs(g).max() for g in ref.values())
    for key in ref:
        err = np.abs(grads[key] - ref[key]).max() / scale
        assert err < 1e-10, f"{name}/{row.label}: d{key} off by {err:.1e} of the largest gradient"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("row", SPECIAL, ids=[r.label for r in SPECIAL])
def test_float32_tracks_float64(row, name):
    m, p, ids, _, Y, h0 = special_problem(name, row)
    loss64, g64, _ = m.loss_and_grads(p, ids, Y, h0)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    h32 = tuple(s.astype(np.float32) for s in _states(h0))
    loss32, g32, _ = m.loss_and_grads(p32, ids, Y, h32 if len(h32) > 1 else h32[0])
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    scale = max(np.abs(g).max() for g in g64.values())
    worst = max(np.abs(g32[k] - g64[k]).max() for k in g64) / scale
    assert worst < row.f32_tol, f"{name}/{row.label}: float32 gradients off by {worst:.1e} of the largest"


SMOOTH = [r for r in SPECIAL if r.fd]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("row", SMOOTH, ids=[r.label for r in SMOOTH])
def test_fd_check_passes_where_smooth(row, name):
    m, p, _, X, Y, h0 = special_problem(name, row, T=3, n=2, d=3, h=4, q=5)
    names = [f"{s}0" for s in m.STATES]

    def split(x):
        states = tuple(x[k] for k in names)
        return {k: x[k] for k in p}, x["X"], states if len(states) > 1 else states[0]

    def fun(x):
        params, X_, h0_ = split(x)
        return m.loss(params, X_, Y, h0_)

    def grad_fun(x):
        params, X_, h0_ = split(x)
        return m.loss_and_grads(params, X_, Y, h0_)[1]

    with warnings.catch_warnings(), np.errstate(**RAISE):
        warnings.simplefilter("error")
        report = check_gradients(fun, grad_fun, {**p, "X": X, **dict(zip(names, _states(h0), strict=True))})
    assert report.ok, f"{name}/{row.label}:\n{report}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cross_entropy_of_huge_logits_against_logaddexp(dtype):
    """rt.softmax_cross_entropy against np.logaddexp.reduce (a different algorithm) in float64."""
    logits = np.array(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 3e4 - 1, -3e4], [0.0, 1e-3, -1e-3]], dtype=dtype
    )
    targets = np.array([1, 0, 1, 2])
    with warnings.catch_warnings(), np.errstate(**RAISE):
        warnings.simplefilter("error")
        loss, dlogits = runtime.softmax_cross_entropy(logits, targets)
        plain = runtime.mean_cross_entropy(logits, targets)
    wide = logits.astype(np.float64)
    lse = np.logaddexp.reduce(wide, axis=1)
    want = np.mean(lse - wide[np.arange(4), targets])
    assert loss.dtype == dtype and dlogits.dtype == dtype
    assert float(loss) == pytest.approx(want, rel=1e-6) and float(plain) == pytest.approx(want, rel=1e-6)
    probs = np.exp(wide - lse[:, None])
    probs[np.arange(4), targets] -= 1
    np.testing.assert_allclose(dlogits, probs / 4, atol=1e-7)


# ---- determinism: same inputs, bit-identical outputs, in any process
DIGEST = """
import hashlib
import numpy as np
import grusym

def digest():
    out = hashlib.sha256()
    for name in grusym.variants():
        m = grusym.load(name)
        rng = np.random.default_rng(11)
        for dtype in (np.float32, np.float64):
            p = m.init_params(7, 24, 7, seed=3, dtype=dtype, scale=0.5)
            ids, Y = rng.integers(0, 7, (20, 5)), rng.integers(0, 7, (20, 5))
            X = rng.normal(size=(20, 5, 7)).astype(dtype)
            h0 = rng.normal(size=(5, 24)).astype(dtype)
            loss, grads, h_T = m.loss_and_grads(p, ids, Y, h0)
            H, cache = m.forward(p, X, h0)
            back = m.backward(p, cache, np.cos(H))
            for a in (np.float64(loss), h_T, H, *grads.values(), *back.values()):
                out.update(np.ascontiguousarray(a).tobytes())
    return out.hexdigest()
"""


def _digest_here() -> str:
    scope: dict[str, Any] = {}
    exec(DIGEST, scope)
    return scope["digest"]()


def test_results_are_bit_identical_across_processes():
    here = _digest_here()
    assert here == _digest_here()
    for hashseed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
        run = subprocess.run(
            [sys.executable, "-c", DIGEST + "\nprint(digest())"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert run.stdout.strip() == here, f"PYTHONHASHSEED={hashseed} gave different bits"
    assert hashlib.sha256(b"").hexdigest() != here  # the digest saw data
