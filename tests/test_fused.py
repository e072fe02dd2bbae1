"""The fused backend (``grusym/generated/fused/``): every built-in's module with each run of elementwise work
of its loops as one Numba kernel, and each loop as one Numba function calling NumPy's BLAS. Skipped cleanly
without numba, except the tests of what the generator writes and of the errors a user without numba sees.

1. Text: outside ``_forward``, ``_backward`` and the kernels a fused module is its plain module; inside its
   loops only matmuls, kernel calls and views of per-step arrays remain, fewer calls per step than the
   plain loops, and every loop of a built-in also runs as one Numba function (``_forward_seq``, ...).
2. Numbers: the same loss and gradients as the plain module to the activations' rounding (a measured
   tolerance), and to the last bit as the plain module with grusym.fastmath's tanh
   and sigmoid in place of NumPy's (``backends.fastmath_twin``: the kernels do the plain module's arithmetic
   in the same order, and fastmath's twins are proved against float32 rounding in tests/test_fastmath.py),
   for every cell, float64 and float32, token ids and floats, lengths, given initial states; with the whole
   loops in Numba and with the Python loops; predict equal to forward.
3. Independently of the plain module: the finite-difference, complex-step and Taylor checks pass on the fused
   module's own loss and gradients (tests/test_torch_crosscheck.py and test_lstm_torch.py compare it with
   torch's nn.GRU and nn.LSTM).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import grusym
from grusym.cli import main
from grusym.examples.cells import EXAMPLES, path
from grusym.generated import CELLS
from grusym.gradcheck import check_variant
from grusym.stepinputs import HeldFixed, inputs_of
from grusym.symbolic.codegen import module_source
from grusym.symbolic.generate import default_dir
from grusym.symbolic.usercell import load_cell

from .backends import fastmath_twin, needs_numba

NAMES = list(CELLS)
KERNEL = re.compile(r"_(forward|backward|predict)_(k\d+|seq)")


def _twin(name):
    """The plain module of built-in ``name`` with fastmath's tanh and sigmoid: what its fused module is."""
    return fastmath_twin(module_source(name), name)


def _functions(source: str) -> dict[str, str]:
    tree = ast.parse(source)
    return {node.name: ast.dump(node) for node in tree.body if isinstance(node, ast.FunctionDef)}


def _loop_calls(source: str, function: str) -> list[str]:
    """The calls in the body of the first ``for`` loop of ``function`` (one time step)."""
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function)
    loop = next(n for n in ast.walk(fn) if isinstance(n, ast.For))
    return [
        ast.unparse(n.value.func)
        for n in loop.body
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_fused_module_is_the_plain_module_outside_its_loops(name):
    plain, fused = module_source(name), module_source(name, fused=True)
    a, b = _functions(plain), _functions(fused)
    kernels = [k for k in b if KERNEL.fullmatch(k)]
    assert kernels, "no kernels generated"
    assert set(b) - set(kernels) == set(a)
    for fn in set(a) - {"_forward", "_backward"}:
        assert a[fn] == b[fn], f"{fn} differs between the plain and the fused module"
    for kernel in kernels:
        assert f"def {kernel}" in fused and fused.count(f"{kernel}(") >= 2  # defined and called


@pytest.mark.parametrize("name", NAMES)
def test_fused_loops_keep_only_matmuls_and_kernel_calls(name):
    """Every elementwise call of a built-in's loops is inlined into a kernel (its tanh and sigmoid are
    fastmath's), so a time step is matmuls and kernel calls, fewer calls than the plain loop's; and each
    loop also exists as one Numba function, run when NumPy's BLAS was found (forward's twice where forward
    keeps values for backward: predict's keeps nothing)."""
    plain, fused = module_source(name), module_source(name, fused=True)
    for function in ("_forward", "_backward"):
        calls = _loop_calls(fused, function)
        assert set(calls) <= {"np.matmul"} | {c for c in calls if KERNEL.fullmatch(c)}, calls
        passes = sum(4 if c == "rt.sigmoid" else 1 for c in _loop_calls(plain, function))  # 4 ufunc calls
        assert len(calls) < passes, function
        assert f"def {function}_seq(" in fused and f"        {function}_seq(T, n, nh, " in fused
    saves = grusym.load(name).SAVED != ()  # rnn_tanh's backward reads H alone: forward already keeps nothing
    assert ("def _predict_seq(" in fused) == saves
    assert ("if _blas.AVAILABLE and isinstance(buf, rt.Inference):" in fused) == saves


def test_fused_gru_step_counts():
    """gru per time step: forward 2 matmuls + 2 kernels (one before, one after the reset gate's matmul),
    where the plain loop makes 2 matmuls and 16 ufunc calls (a sigmoid is 4); backward 2 matmuls + 3
    kernels, where the plain loop makes 2 + 21."""
    fused = module_source("gru", fused=True)
    fwd, bwd = _loop_calls(fused, "_forward"), _loop_calls(fused, "_backward")
    assert fwd == ["np.matmul", "_forward_k0", "np.matmul", "_forward_k1"]
    assert bwd == ["_backward_k0", "np.matmul", "_backward_k1", "np.matmul", "_backward_k2"]


def test_committed_fused_modules_are_the_generator_output():
    folder = default_dir() / "fused"
    for name in NAMES:
        text = (folder / f"{name}.py").read_text(encoding="utf-8")
        assert text == module_source(name, fused=True), f"{name}: run grusym derive"
        assert text.startswith("# Generated by grusym - do not edit. Regenerate with: grusym derive\n")


def _problem(m, dt, floats, seed=0, T=6, n=3, d=5, h=4):
    rng = np.random.default_rng(seed)
    d = h if getattr(m, "INPUT_ELEMENTWISE", False) else d  # sru reads X elementwise: d == h
    p = m.init_params(d, h, d, seed=seed, dtype=dt, scale=0.7)
    p = {k: (v if v.ndim == 2 else rng.normal(0, 0.3, v.shape).astype(dt)) for k, v in p.items()}
    X = rng.standard_normal((T, n, d)).astype(dt) if floats else rng.integers(0, d, (T, n))
    Y = rng.integers(0, d, (T, n))
    states = tuple(rng.normal(0, 0.5, (n, h)).astype(dt) for _ in m.STATES)
    return p, X, Y, (states if len(states) > 1 else states[0])


def _assert_identical(a, b):
    (value_a, grads_a, last_a), (value_b, grads_b, last_b) = a, b
    assert value_a == value_b
    assert set(grads_a) == set(grads_b)
    for key in grads_a:
        assert grads_a[key].dtype == grads_b[key].dtype
        np.testing.assert_array_equal(grads_a[key], grads_b[key], err_msg=key)
    lasts = [x if isinstance(x, tuple) else (x,) for x in (last_a, last_b)]
    for x, y in zip(*lasts, strict=True):
        np.testing.assert_array_equal(x, y)


def _assert_same_module(fused, twin, p, X, Y, h0, lengths):
    for kw in ({}, {"lengths": lengths}):
        _assert_identical(twin.loss_and_grads(p, X, Y, h0, **kw), fused.loss_and_grads(p, X, Y, h0, **kw))
    H, cache = twin.forward(p, X, h0, lengths)
    Hf, cache_f = fused.forward(p, X, h0, lengths)
    np.testing.assert_array_equal(H, Hf)
    Hp, last = fused.predict(p, X, h0, lengths)  # the predict kernels: nothing kept, the same numbers
    np.testing.assert_array_equal(Hp, Hf)
    lasts = [x if isinstance(x, tuple) else (x,) for x in (last, fused.final_states(cache_f))]
    for x, y in zip(*lasts, strict=True):
        np.testing.assert_array_equal(x, y)
    dH = np.random.default_rng(1).standard_normal(H.shape).astype(H.dtype)
    g, gf = twin.backward(p, cache, dH), fused.backward(p, cache_f, dH)
    for key in g:
        np.testing.assert_array_equal(g[key], gf[key], err_msg=key)
    np.testing.assert_array_equal(twin.step(p, X[0], h0)[0], fused.step(p, X[0], h0)[0])


@needs_numba
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dt", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("floats", [False, True], ids=["ids", "floats"])
def test_fused_equals_plain_with_fastmath_to_the_last_bit(name, dt, floats):
    """Whole loops in Numba (NumPy's BLAS found here) and, below, the Python loops of the fallback."""
    fused = grusym.load(name, backend="fused")
    p, X, Y, h0 = _problem(fused, dt, floats)
    _assert_same_module(fused, _twin(name), p, X, Y, h0, np.array([6, 2, 4]))


@needs_numba
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dt", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("floats", [False, True], ids=["ids", "floats"])
def test_fused_equals_plain_to_the_activations_rounding(name, dt, floats):
    """Against the plain module as it ships (NumPy's tanh and the runtime's sigmoid): the loss and every
    gradient agree to a small multiple of the dtype's rounding, relative to each array's largest entry.
    Measured over every cell, 5 seeds, ids and floats: 2.9e-15 (float64) and 1.2e-6 (float32); asserted
    to 3e-14 and 1e-5."""
    tol = 3e-14 if dt == np.float64 else 1e-5
    fused, plain = grusym.load(name, backend="fused"), grusym.load(name)
    for seed in (0, 1):
        p, X, Y, h0 = _problem(fused, dt, floats, seed=seed)
        (loss_a, grads_a, _), (loss_b, grads_b, _) = (
            plain.loss_and_grads(p, X, Y, h0),
            fused.loss_and_grads(p, X, Y, h0),
        )
        assert abs(loss_a - loss_b) <= tol * abs(loss_a)
        assert set(grads_a) == set(grads_b)
        for key, a in grads_a.items():
            assert np.max(np.abs(a - grads_b[key])) <= tol * np.max(np.abs(a)), key


@needs_numba
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_the_python_loops_without_blas_give_the_same_bits(name, monkeypatch):
    """Where NumPy's BLAS is not OpenBLAS (no whole-loop functions), the Python loops over the same
    kernels run: the same numbers (blas.AVAILABLE switched off for this test only)."""
    from grusym import blas

    assert blas.AVAILABLE, "NumPy's OpenBLAS not found: the whole-loop functions are not tested"
    fused = grusym.load(name, backend="fused")
    p, X, Y, h0 = _problem(fused, np.float32, True)
    monkeypatch.setattr(blas, "AVAILABLE", False)
    _assert_same_module(fused, _twin(name), p, X, Y, h0, np.array([6, 2, 4]))


@needs_numba
@given(
    T=st.integers(1, 7), n=st.integers(1, 5), h=st.integers(1, 9), seed=st.integers(0, 2**16),
    name=st.sampled_from(["gru", "gru_reset_after", "lstm"]),
)  # fmt: skip
def test_fused_equals_plain_with_fastmath_at_any_size(T, n, h, seed, name):
    """Sizes the kernels' loops and the BLAS calls must handle: one row (NumPy's gemv), one unit, widths
    that are no multiple of a vector."""
    fused = grusym.load(name, backend="fused")
    p, X, Y, h0 = _problem(fused, np.float64, True, seed=seed, T=T, n=n, d=3, h=h)
    _assert_identical(_twin(name).loss_and_grads(p, X, Y, h0), fused.loss_and_grads(p, X, Y, h0))
    np.testing.assert_array_equal(fused.predict(p, X, h0)[0], fused.forward(p, X, h0)[0])


@needs_numba
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["fd", "complex", "taylor"])
def test_fused_module_passes_the_gradient_checks_on_its_own(name, method):
    """The fused module's loss against its own gradients (the complex step runs its kernels on complex
    arrays): no reference to the plain module."""
    report = check_variant(grusym.load(name, backend="fused"), method=method, seed=3, T=4)
    assert report.ok, str(report)


@needs_numba
def test_a_wrong_kernel_fails_the_check(monkeypatch):
    """The check on the fused module can fail: the second backward kernel fed a 0.1 % too large gradient
    of r_h (planted by rebinding the kernel, which the Python loops call: the whole-loop functions are
    switched off) is caught, and the reset gate's gradients are named."""
    from grusym import blas

    monkeypatch.setattr(blas, "AVAILABLE", False)
    fused = grusym.load("gru", backend="fused")
    good = fused._backward_k1

    def wrong(t, n, nh, dr_h, *rest):
        good(t, n, nh, dr_h * 1.001, *rest)  # the gradient of r_h, 0.1 % too large

    monkeypatch.setattr(fused, "_backward_k1", wrong)
    report = check_variant(fused, method="fd", seed=3)
    assert not report.ok
    failed = {e.name for e in report.failures}
    assert {"W_hr", "b_r", "h0"} <= failed  # through BPTT every earlier step's gradients are off too


def test_load_rejects_an_unknown_backend():
    with pytest.raises(grusym.InputError, match=r"unknown backend 'jax'; known backends: numpy, fused"):
        grusym.load("gru", backend="jax")


def test_fused_without_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    with pytest.raises(grusym.InputError, match=r'needs numba: pip install "grusym\[fused\]"'):
        grusym.load("gru", backend="fused")


# ---- users' cells: grusym derive --cell FILE.py:NAME --fused


@needs_numba
@pytest.mark.parametrize("name", EXAMPLES)
def test_derive_cell_fused_writes_a_module_equal_to_the_plain_one_with_fastmath(name, tmp_path, capsys):
    """The shipped example cells (a parameter vector, a peephole LSTM's per-row accumulators, minGRU) fuse
    too; the fused file gives the numbers of the plain module with fastmath's tanh and sigmoid to the last
    bit and passes the FD check."""
    spec, out = path(name), tmp_path / "gen"
    assert main(["derive", "--cell", spec, "--out", str(out), "--fused"]) == 0
    target = out / f"{name}_fused.py"
    text = target.read_text(encoding="utf-8")
    assert text.startswith(
        f"# Generated by grusym - do not edit. Regenerate with: grusym derive --cell {spec}"
    )
    assert text.splitlines()[0].endswith(f"--out {out} --fused")
    assert main(["derive", "--cell", spec, "--out", str(out), "--fused", "--check"]) == 0
    assert not (out / f"{name}.py").exists()  # --fused writes the fused module only
    spec_obj = importlib.util.spec_from_file_location(f"{name}_fused", target)
    fused = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(fused)
    twin = fastmath_twin(module_source(load_cell(spec)), name)
    if inputs_of(twin):  # zoneout_gru's masks: drawn, held fixed, the same for both
        twin, fused = HeldFixed(twin), HeldFixed(fused)
    p, X, Y, h0 = _problem(twin, np.float64, True, seed=2)
    _assert_identical(twin.loss_and_grads(p, X, Y, h0), fused.loss_and_grads(p, X, Y, h0))
    assert check_variant(fused, method="fd", seed=1).ok


def test_derive_fused_without_cell_and_gradcheck_cell_fused_are_one_line_errors(capsys):
    assert main(["derive", "--fused"]) == 2
    assert "--fused goes with --cell" in capsys.readouterr().err
    assert main(["gradcheck", "--cell", path("indrnn"), "--backend", "fused"]) == 2
    assert "grusym derive --cell ... --fused" in capsys.readouterr().err


@needs_numba
def test_gradcheck_backend_fused_checks_the_fused_module(capsys):
    assert main(["gradcheck", "--variant", "mgu", "--backend", "fused", "--method", "fd,complex,oracle"]) == 0
    out = capsys.readouterr().out
    assert out.count("[mgu, fused]") == 3 and out.count("all gradients agree") == 3


@needs_numba
def test_a_fused_model_equals_the_plain_model_with_fastmath():
    """load(..., backend="fused") with layers and directions: the model composes the fused cell module
    (equal to the model of the plain module with fastmath's tanh and sigmoid)."""
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True}
    plain, fused = grusym.load(_twin("gru"), **kw), grusym.load("gru", backend="fused", **kw)
    rng = np.random.default_rng(4)
    p = plain.init_params(3, 4, 5, seed=4, scale=0.6)
    X, Y = rng.standard_normal((2, 5, 3)), rng.integers(0, 5, (2, 5))
    a, b = plain.loss_and_grads(p, X, Y, lengths=[5, 3]), fused.loss_and_grads(p, X, Y, lengths=[5, 3])
    assert a[0] == b[0] and set(a[1]) == set(b[1])
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=key)


@needs_numba
def test_training_with_the_fused_backend_gives_the_same_run_to_rounding(tmp_path):
    """grusym train --backend fused: the plain run up to the activations' rounding (fastmath's tanh and
    sigmoid within its TANH_ULPS / SIGMOID_ULPS of exact): after 30 epochs of float32 SGD every parameter
    agrees to 3e-7 of its largest entry here; asserted to 1e-5 (a checkpoint resumes on either backend)."""
    from grusym.train import make_config, train

    config = make_config(epochs=30, dtype="float32")
    runs = [
        train(config, tmp_path / b, backend=b, log=lambda _: None, write_plots=False)
        for b in ("numpy", "fused")
    ]
    assert set(runs[0].params) == set(runs[1].params)
    for key, a in runs[0].params.items():
        b = runs[1].params[key]
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a)), key
    plain, fused = (r.metrics["final_perplexity"] for r in runs)
    assert abs(fused - plain) <= 1e-5 * plain


def test_the_fuser_refuses_what_it_cannot_place():
    """A per-step sequence or an overlap the fuser does not know is a generation-time error, never a wrong
    kernel."""
    from grusym.symbolic.emit import Writer
    from grusym.symbolic.fuse import Fuser

    def fuse(seqs, body):
        Fuser().loop(Writer(), seqs, body, prefix="_f", constants=[], views={})

    with pytest.raises(NotImplementedError, match=r"cannot fuse a loop over 'H\[2:\]'"):
        fuse({"h": "H[2:]"}, ["np.add(h, h, out=h)"])
    body = ["np.add(a, b, out=tmp0)", "np.multiply(tmp0, a, out=b)"]
    with pytest.raises(NotImplementedError, match="overlap in one kernel"):
        fuse({"a": "dA[::-1]", "b": "dA[::-1, :, :nh]"}, body)


_LOAD_BY_PATH = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("by_path", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
X = np.random.default_rng(0).standard_normal((6, 2, 5))
print(repr(m.loss_and_grads(m.init_params(5, 4, 3), X, np.zeros((6, 2), int))[0]))
"""


@needs_numba
def test_a_fused_module_loaded_by_path_runs_in_every_process(tmp_path):
    """numba reloads a cached kernel by importing its module by name: a `derive --cell --fused` file loaded
    with spec_from_file_location ran in the first process and crashed the next one on the cache
    (ModuleNotFoundError: '<dynamic>'); such a module now compiles instead of caching."""
    import subprocess

    out = tmp_path / "gen"
    assert main(["derive", "--cell", path("mingru"), "--out", str(out), "--fused"]) == 0
    target = str(out / "mingru_fused.py")
    runs = [
        subprocess.run([sys.executable, "-c", _LOAD_BY_PATH, target], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr[-500:]
    assert runs[0].stdout == runs[1].stdout != ""
