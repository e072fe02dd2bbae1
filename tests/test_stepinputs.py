"""Per-step inputs without gradient (``c.input``): the language's rules, the generated functions' ``aux``,
the checks and the oracle with the inputs held fixed, models, the fused backend and the report.

The torch comparison of the example zoneout_gru is tests/test_stepinputs_torch.py; the fuzzer draws inputs
in tests/test_cellfuzz.py.
"""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest

import grusym
from grusym.cli import main
from grusym.errors import InputError
from grusym.examples.cells import path
from grusym.gradcheck import check_variant
from grusym.model import build
from grusym.oracle import check_oracle
from grusym.stepinputs import HeldFixed
from grusym.symbolic.cell import CellError, tanh
from grusym.symbolic.codegen import module_source
from grusym.symbolic.usercell import declare, derive_module, load_cell

from .backends import needs_numba

SPEC = path("zoneout_gru")


@pytest.fixture(scope="module")
def zoneout():
    return derive_module(load_cell(SPEC))


def _problem(m, seed=0, T=5, n=3, d=4, h=6, q=5):
    rng = np.random.default_rng(seed)
    p = m.init_params(d, h, q, seed=seed, scale=0.6)
    X = rng.normal(size=(T, n, d))
    Y = rng.integers(0, q, (T, n))
    h0 = rng.normal(0, 0.5, (n, h))
    M = (rng.random((T, n, h)) < 0.4).astype(np.float64)
    return p, X, Y, h0, M


# ---- the language


def _declare(body, name="c_in"):
    def fn(c):
        body(c)

    return declare(fn, name)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (lambda c: (c.vector("m"), c.input("m")), "input 'm' has the name of a parameter"),
        (lambda c: (c.input("m"), c.vector("m")), "parameter 'm' has the name of a per-step input"),
        (lambda c: (c.input("b_h"), c.affine("h")), "parameter 'b_h' has the name of a per-step input"),
        (lambda c: c.affine("h", hidden=c.input("m")), "reads the per-step input 'm'"),
        (lambda c: (c.input("m"), c.let("m", tanh(c.affine("h")))), "value 'm' assigned twice"),
        (lambda c: (c.prev("s"), c.input("s")), "input 's' has the name of a state"),
        (lambda c: (c.input("s"), c.prev("s")), "state 's' has the name of a per-step input"),
        (lambda c: c.input("Mask"), "must be a lowercase identifier"),
        (lambda c: c.input("tmp0"), "reserved for the generated code"),
    ],
    ids=["input after vector", "vector after input", "bias", "matmul", "let", "state", "prev", "name",
         "reserved"],
)  # fmt: skip
def test_misused_inputs_are_refused_in_one_line_naming_cell_and_step(body, fragment):
    with pytest.raises(CellError) as err:
        _declare(lambda c: (body(c), c.let("h", tanh(c.affine("h", name="a_z")))))
    message = str(err.value)
    assert "\n" not in message and "cell 'c_in', step " in message and fragment in message, message


def test_no_adjoint_and_no_gradient_for_an_input(zoneout):
    """The derivation has no contribution to m, and loss_and_grads / backward return no key for it."""
    from grusym.symbolic.derive import derive

    der = derive(load_cell(SPEC))
    assert not der.into("m") and all(ld.wrt != "m" for ld in der.local)
    p, X, Y, h0, M = _problem(zoneout)
    _, grads, _ = zoneout.loss_and_grads(p, X, Y, h0, aux={"m": M})
    H, cache = zoneout.forward(p, X, h0, aux={"m": M})
    back = zoneout.backward(p, cache, np.ones_like(H))
    assert "m" not in grads and "m" not in back and "U_m" not in back


def test_cells_without_inputs_keep_their_signatures():
    """The built-ins' generated functions are as they were: no aux argument, no INPUTS."""
    m = grusym.load("gru")
    assert not hasattr(m, "INPUTS")
    for fn in ("forward", "predict", "step", "loss", "loss_and_grads"):
        assert "aux" not in inspect.signature(getattr(m, fn)).parameters
    assert "stepinputs" not in module_source("gru")


# ---- aux at call time


@pytest.mark.parametrize(
    ("aux", "fragment"),
    [
        (None, "aux is missing"),
        ([1, 2], "aux must be a dict {'m': (T, n, h)}, got list"),
        ({}, "aux has no 'm'"),
        ({"k": 0}, "aux has 'k', which the cell does not read"),
        ("M2", "aux['m'] must have shape (T, n, h) = (5, 3, 6) or (T, n, 1), got (5, 3, 2)"),
        ("M4", "aux['m'] must have shape (T, n, h) = (5, 3, 6) or (T, n, 1), got (4, 3, 6)"),
        ("nan", "aux['m'] holds nan or inf"),
        ("text", "aux['m'] must hold real numbers"),
    ],
)
@pytest.mark.parametrize("fn", ["forward", "predict", "loss", "loss_and_grads"])
def test_bad_aux_is_one_line_naming_the_input_and_its_step(zoneout, aux, fragment, fn):
    p, X, Y, h0, M = _problem(zoneout)
    aux = {
        "M2": {"m": M[:, :, :2]}, "M4": {"m": M[:4]}, "nan": {"m": np.where(M > 0, np.nan, M)},
        "text": {"m": np.full(M.shape, "x")},
    }.get(aux, aux) if isinstance(aux, str) else aux  # fmt: skip
    args = (p, X, Y, h0) if fn.startswith("loss") else (p, X, h0)
    with pytest.raises(InputError) as err:
        getattr(zoneout, fn)(*args, aux=aux)
    message = str(err.value)
    assert "\n" not in message and "cell 'zoneout_gru', step (9) h" in message and fragment in message


def test_step_checks_its_aux_and_streams_as_forward(zoneout):
    p, X, _, h0, M = _problem(zoneout)
    with pytest.raises(InputError, match=r"aux\['m'\] must have shape \(n, h\) = \(3, 6\) or \(n, 1\)"):
        zoneout.step(p, X[0], h0, aux={"m": M})
    with pytest.raises(InputError, match="aux is missing"):
        zoneout.step(p, X[0], h0)
    state = h0
    for t in range(len(X)):
        state = zoneout.step(p, X[t], state, aux={"m": M[t]})
    H, _ = zoneout.forward(p, X, h0, aux={"m": M})
    np.testing.assert_allclose(state, H[-1], rtol=1e-14, atol=1e-15)


def test_the_mask_acts_as_zoneout(zoneout):
    """m = 1 keeps h_prev (every unit zoned out: h = h0 forever); m = 0 is the plain GRU; a (T, n, 1)
    probability broadcasts like the full (T, n, h) array; boolean masks are 0/1."""
    p, X, Y, h0, M = _problem(zoneout)
    H, _ = zoneout.forward(p, X, h0, aux={"m": np.ones((5, 3, 1))})
    # evaluated as h_gru + m*(h_prev - h_gru): h_prev up to one rounding
    np.testing.assert_allclose(H, np.broadcast_to(h0, H.shape), rtol=1e-15, atol=1e-16)
    gru = grusym.load("gru")
    H0, _ = zoneout.forward(p, X, h0, aux={"m": np.zeros((5, 3, 1))})
    np.testing.assert_allclose(H0, gru.forward({k: p[k] for k in gru.CELL_PARAMS}, X, h0)[0], rtol=1e-14)
    P = np.random.default_rng(1).uniform(0, 1, (5, 3, 1))
    a = zoneout.loss_and_grads(p, X, Y, h0, aux={"m": P})
    b = zoneout.loss_and_grads(p, X, Y, h0, aux={"m": np.repeat(P, 6, axis=2)})
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    c = zoneout.loss(p, X, Y, h0, aux={"m": M.astype(bool)})
    assert c == zoneout.loss(p, X, Y, h0, aux={"m": M})


def test_backward_refuses_a_cache_without_its_inputs(zoneout):
    p, X, _, h0, M = _problem(zoneout)
    H, cache = zoneout.forward(p, X, h0, aux={"m": M})
    del cache["U_m"]
    with pytest.raises(InputError, match="missing the per-step input 'U_m'"):
        zoneout.backward(p, cache, np.ones_like(H))


# ---- the checks and the oracle, the inputs held fixed


@pytest.mark.parametrize("method", ["fd", "complex", "taylor", "oracle"])
def test_every_check_method_passes_with_the_inputs_held_fixed(zoneout, method):
    if method == "oracle":  # a user's cell: the oracle reads the declaration
        report = check_oracle(zoneout, cell=load_cell(SPEC), h=3, q=3)
    else:
        report = check_variant(zoneout, method=method)
    assert report.ok, str(report)
    assert {e.name for e in report.entries} >= {"h0", "X", *zoneout.PARAMS}


def test_the_checks_fail_when_the_gradient_used_other_masks(zoneout):
    """The checks can fail: gradients computed with the masks flipped (1 - m) are caught, by name."""

    def wrong(params, X, Y, h0=None, lengths=None, input_grad=None):
        fixed = HeldFixed(zoneout).inputs_at(X, params)
        return zoneout.loss_and_grads(params, X, Y, h0, lengths, input_grad, aux={"m": 1 - fixed["m"]})

    for method in ("fd", "complex"):
        report = check_variant(zoneout, method=method, loss_and_grads=wrong)
        assert not report.ok and "W_hh" in {e.name for e in report.failures}, str(report)
    cell = load_cell(SPEC)
    report = check_oracle(zoneout, cell=cell, h=3, q=3, loss_and_grads=wrong, localize=False)
    assert not report.ok


def test_a_gradient_asked_for_an_input_is_refused(zoneout):
    with pytest.raises(InputError) as err:
        check_variant(zoneout, wrt=["W_xz", "m"])
    assert str(err.value) == (
        "cell 'zoneout_gru', step (9) h: 'm' is a per-step input (c.input), held fixed: it has no gradient "
        "to check or return"
    )
    assert check_variant(zoneout, wrt=["W_xz"]).ok


# ---- models


def test_model_step_streams_as_forward_with_a_mask_per_layer(zoneout):
    model = build(zoneout, num_layers=2)
    rng = np.random.default_rng(3)
    p = model.init_params(4, 6, 5, seed=1, scale=0.6)
    X = rng.normal(size=(5, 3, 4))
    M = (rng.random((2, 5, 3, 6)) < 0.5).astype(float)
    H, cache = model.forward(p, X, aux={"m": M})
    state = None
    for t in range(5):
        state = model.step(p, X[t], state, aux={"m": M[:, t]})
    np.testing.assert_allclose(state, model.final_states(cache), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(state[-1], H[-1], rtol=1e-14, atol=1e-15)
    Hp, last = model.predict(p, X, aux={"m": M})
    np.testing.assert_allclose(Hp, H, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(last, state, rtol=1e-14, atol=1e-15)


def test_model_aux_errors_name_the_layout(zoneout):
    model = build(zoneout, num_layers=2, bidirectional=True)
    p = model.init_params(4, 6, 5, seed=1)
    X = np.zeros((5, 3, 4))
    with pytest.raises(InputError, match=r"\(K = 4, T, n, h\) \(one per layer and direction\)"):
        model.forward(p, X, aux={"m": np.zeros((3, 5, 3, 6))})
    with pytest.raises(InputError, match="aux is missing"):
        model.forward(p, X)
    with pytest.raises(InputError, match="aux has no 'm'"):
        model.forward(p, X, aux={})
    gru = build(grusym.load("gru"), num_layers=2)
    with pytest.raises(InputError, match="cell 'gru' reads no per-step inputs: aux must be None"):
        gru.forward(gru.init_params(4, 6, 5), X, aux={"m": np.zeros((5, 3, 6))})


# ---- the fused backend and the report


@needs_numba
def test_the_fused_module_matches_the_plain_one(zoneout, tmp_path):
    source = module_source(load_cell(SPEC), "tests/test_stepinputs.py", fused=True)
    file = tmp_path / "zoneout_gru_fused.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("zoneout_gru_fused", file)
    assert spec is not None and spec.loader is not None
    fused = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fused)
    p, X, Y, h0, M = _problem(zoneout)
    L = np.array([5, 2, 4])
    a = zoneout.loss_and_grads(p, X, Y, h0, L, aux={"m": M})
    b = fused.loss_and_grads(p, X, Y, h0, L, aux={"m": M})
    assert abs(a[0] - b[0]) <= 1e-12
    for k in a[1]:
        np.testing.assert_allclose(b[1][k], a[1][k], rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(fused.predict(p, X, h0, L, aux={"m": M})[0], a[0] * 0 + zoneout.predict(
        p, X, h0, L, aux={"m": M})[0], rtol=1e-9, atol=1e-12)  # fmt: skip


def test_the_report_renders_with_every_check_passing(tmp_path, capsys):
    assert main(["report", "--cell", SPEC, "--out", str(tmp_path), "--format", "md,tex"]) == 0
    text = (tmp_path / "zoneout_gru" / "README.md").read_text(encoding="utf-8")
    assert "is given for every step (the argument aux of the generated functions)" in text
    assert r"h_{t} = h_{gru,t} \odot \left(1 - m_{t}\right) + h_{t-1} \odot m_{t}" in text
    assert "All checks pass." in text
