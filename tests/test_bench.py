"""The benchmark machinery at toy size (no timing is asserted): the training-step and inference runs, their
progress lines and machine line, the GEMM floor's matmul sequence against what the generated code really runs,
the package's one-way imports, and the workspace the fast path reuses across calls."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import grusym
from grusym import bench, runtime
from grusym.bench import costs, machine
from grusym.bench.elementwise import elementwise_bound, record
from grusym.bench.floor import size
from grusym.cli import main
from grusym.symbolic.codegen import gemm_plan

from .backends import needs_numba

NAMES = grusym.variants()
TOY = bench.CONFIGS["toy"]


def test_run_without_torch_prints_the_table_and_a_note():
    printed: list[str] = []
    result = bench.run("toy", "float64", ["gru", "rnn_tanh"], repeat=2, torch=None, extras=False,
                       pause=0, out=printed.append, fused=False)  # fmt: skip
    assert printed == [result.report]
    text = result.report
    assert "nn.GRU comparison was not asked for" in text
    for row in ("grusym gru |", "GEMM floor of gru |", "grusym rnn_tanh |", "of which validation (gru) |"):
        assert row in text
    assert set(result.times) == {"gru", "floor:gru", "rnn_tanh", "floor:rnn_tanh", "validation"}
    assert all(len(ts) == 2 and min(ts) > 0 for ts in result.times.values())


@needs_numba
def test_run_times_the_fused_modules_when_numba_is_installed():
    result = bench.run("toy", "float32", ["gru"], repeat=1, torch=None, extras=False, pause=0,
                       out=lambda s: None)  # fmt: skip
    assert {"gru", "fused:gru", "floor:gru"} <= set(result.times)
    assert "| grusym gru, fused (Numba kernels) |" in result.report
    assert not any("numba" in note for note in result.notes)


def _child(code: str) -> str:
    """stdout of ``code`` in a fresh interpreter that imports this checkout's grusym."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=costs._child_env()).stdout  # fmt: skip


def test_run_notes_an_absent_numba():
    """Guards the default path on machines without numba: a child process in which importing numba fails."""
    out = _child(
        "import sys; sys.modules['numba'] = None\n"
        "from grusym import bench\n"
        "r = bench.run('toy', 'float32', ['gru'], repeat=1, torch=None, extras=False, out=lambda s: None)\n"
        "print(any(k.startswith('fused:') for k in r.times)); print(r.report)\n"
    )
    assert out.startswith("False")
    assert 'numba is not installed: the fused rows are skipped; pip install "grusym[fused]"' in out


def test_run_notes_an_absent_torch():
    """Guards the default path on machines without torch: a child process in which importing torch fails."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from grusym import bench\n"
        "r = bench.run('toy', repeat=1, variants=['rnn_tanh'], extras=False, pause=0, out=lambda s: None)\n"
        "print('torch' in r.times, r.notes)\n"
    )
    out = _child(code)
    assert out.startswith("False") and "torch is not installed" in out


def test_phases_time_the_parts_of_the_step_and_of_its_floor():
    result = bench.run("toy", "float32", ["gru"], 1, phases=True, torch=None, extras=False, pause=0,
                       out=lambda s: None)  # fmt: skip
    parts = {k for k in result.times if k.startswith("part:")}
    assert parts == {"part:forward", "part:backward", "part:floor forward", "part:floor backward",
                     "part:floor gradients", "part:floor head", "part:elementwise"}  # fmt: skip
    assert "of which BPTT loop + weight gradients (gru)" in result.report
    assert result.elementwise_calls > 0
    calls = result.elementwise_calls
    assert f"replays the {calls:,} elementwise ufunc calls of one gru step" in result.report


def test_run_with_torch_compares_against_nn_gru():
    torch = pytest.importorskip("torch")
    result = bench.run(
        "toy", "float32", ["gru"], repeat=1, torch=torch, extras=False, pause=0, out=lambda s: None
    )
    assert "torch" in result.times and "torch nn.GRU" in result.report
    assert "| 1.00 |" in result.report  # the torch row is the reference


def test_torch_step_trains_the_same_model_shape():
    torch = pytest.importorskip("torch")
    step = bench.torch_step(torch, TOY, np.float64)
    loss = step()
    assert loss == pytest.approx(np.log(TOY.V), abs=0.5)  # near-uniform softmax at init


def test_cli_bench_runs_and_rejects_bad_options(capsys):
    assert main(["bench", "--config", "toy", "--repeat", "1", "--no-extras", "--no-torch"]) == 0
    assert "| grusym gru_reset_after |" in capsys.readouterr().out
    assert main(["bench", "--repeat", "0"]) == 2
    assert main(["bench", "--config", "huge"]) == 2
    with pytest.raises(grusym.InputError, match="config must be one of"):
        bench.run("huge", torch=None, out=lambda s: None)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tokens", [True, False])
def test_floor_flops_equal_the_dense_model_count(name, tokens):
    """Independent count: each weight is used once per position forward and twice backward (6*T*n*|W|);
    token ids replace the input GEMM by a gather and skip dX (4*T*n*d*width of the X weights less)."""
    floor = bench.gemm_floor(name, TOY, np.float64, tokens=tokens)
    params = grusym.load(name).PARAMS
    x_cols = sum(1 for dims in params.values() if dims == ("d", "h")) * TOY.h
    expected = bench.model_flops(name, TOY) - (4 * TOY.T * TOY.n * TOY.V * x_cols if tokens else 0)
    assert floor.flops == expected


@pytest.mark.parametrize("name", NAMES)
def test_floor_replays_the_matmuls_the_generated_step_runs(name):
    """Guards the floor against drifting from the generator: the generated forward and BPTT, run on arrays
    that log every matmul, perform exactly the plan's products (head products are loss_and_grads')."""
    cfg = bench.Config("odd", T=3, n=2, V=5, h=4, repeat=1, Ts=())  # distinct sizes: no coincidences
    m = grusym.load(name)
    p = m.init_params(cfg.V, cfg.h, cfg.V, seed=0)
    X, _, h0 = bench.problem(cfg, np.float64)
    states = tuple(h0 for _ in m.STATES)
    calls = record(m, p, X, True, states, np.dtype(np.float64))
    log = [(s[0][1][-2], s[0][1][-1], s[1][1][-1]) for u, s, _ in calls if u is np.matmul]
    dims = {"T": cfg.T, "n": cfg.n, "d": cfg.V, "h": cfg.h, "q": cfg.V}
    expected = []
    plan = [g for g in gemm_plan(name) if g.when in ("always", "tokens") and "W_hq" not in g.label]
    for phase in ("forward", "backward", "gradients"):
        products = [tuple(size(s, dims) for s in (g.m, g.k, g.n)) for g in plan if g.phase == phase]
        per_step = [g.per_step for g in plan if g.phase == phase]
        assert len(set(per_step)) <= 1
        expected += products * (cfg.T if per_step and per_step[0] else 1)
    assert log == expected


def _loop_calls(source: str) -> int:
    """Elementwise ufunc calls per time step, read off the generated text: the statements of the loops of
    _forward and _backward (a sigmoid is 4 calls: x/2, tanh, /2, + 1/2)."""
    count, in_loop = 0, False
    for line in source.splitlines():
        stripped = line.strip()
        if line.startswith("    for ") and "zip(" in line:
            in_loop = True
        elif in_loop and not line.startswith("        "):
            in_loop = False
        if in_loop and stripped.startswith("np.") and not stripped.startswith(("np.matmul(", "np.copyto(")):
            count += 1
        elif in_loop and stripped.startswith("rt.sigmoid("):
            count += 4
    return count


@pytest.mark.parametrize("name", NAMES)
def test_elementwise_bound_replays_every_elementwise_call_of_the_loops(name):
    """The recorded calls grow by the generated loops' elementwise statements per extra time step, and the
    replay runs each recorded call once (matmuls excluded)."""
    m = grusym.load(name)
    source = (Path(grusym.__file__).parent / "generated" / f"{name}.py").read_text()
    counts = {}
    for T in (3, 4):
        cfg = bench.Config("odd", T=T, n=2, V=5, h=4, repeat=1, Ts=())
        p = m.init_params(cfg.V, cfg.h, cfg.V, seed=0)
        X, _, h0 = bench.problem(cfg, np.float64)
        calls = record(m, p, X, True, (h0,), np.dtype(np.float64))
        counts[T] = sum(u is not np.matmul for u, _, _ in calls)
        bound = elementwise_bound(m, p, X, True, (h0,), np.float64)
        assert bound.calls == counts[T]
        bound.step()
    assert counts[4] - counts[3] == _loop_calls(source) > 0


def test_memory_grows_linearly_with_T():
    mem = bench.memory_vs_T("gru", TOY, np.float64, Ts=(4, 8, 16, 32))
    assert mem.slope > 0 and mem.worst_residual < 0.05
    assert mem.peaks[-1] < 40 * mem.peaks[0]  # linear, not quadratic, from T=4 to T=32
    assert {"A", "H", "dA"} <= set(mem.workspace_per_step)


def test_subprocess_extras_report_their_fields():
    imp = bench.import_time("rnn_tanh", repeat=1)
    assert 0 < imp["import_load"] < imp["process"]
    gen = bench.codegen_time(["rnn_tanh"])
    assert set(gen["derive"]) == set(gen["module_source"]) == {"rnn_tanh"}
    assert 0 < gen["total"] < gen["process"]


def test_loss_and_grads_returns_nothing_that_aliases_its_workspace():
    """Guards the reused scratch buffers: results of one call survive the next call on other inputs."""
    for name in NAMES:
        m = grusym.load(name)
        p = m.init_params(5, 4, 5, seed=1, scale=0.5)
        rng = np.random.default_rng(0)
        X1, X2 = rng.integers(0, 5, (3, 2)), rng.integers(0, 5, (3, 2))
        Y, h0 = rng.integers(0, 5, (3, 2)), np.zeros((2, 4))
        loss1, g1, h1 = m.loss_and_grads(p, X1, Y, h0)
        kept = {k: v.copy() for k, v in g1.items()}, h1.copy()
        m.loss_and_grads(p, X2, Y, h0)
        assert all(np.array_equal(g1[k], kept[0][k]) for k in g1), name
        assert np.array_equal(h1, kept[1])
        assert m.loss_and_grads(p, X1, Y, h0)[0] == loss1


def test_workspace_reuses_buffers_and_never_shares_them_between_callers():
    ws = runtime.Workspace()
    a = ws("A", (3, 4), np.float32)
    assert ws("A", (3, 4), np.float32) is a
    assert ws("A", (3, 5), np.float32).shape == (3, 5)
    assert ws("A", (3, 5), np.float64).dtype == np.float64
    mine = ws.acquire()
    assert mine is ws
    other: list[runtime.Workspace] = []
    threading.Thread(target=lambda: other.append(ws.acquire())).start()
    while not other:
        pass
    assert other[0] is not ws
    ws.release(other[0])  # releasing a throwaway one leaves the lock held by `mine`
    assert ws.acquire() is not ws
    ws.release(mine)
    assert ws.acquire() is ws
    ws.release(ws)
    runtime.clear_workspaces()
    assert ws.buffers() == {}


def test_cli_rerun_command_line_repeats_the_options():
    """--threads re-runs the command in a child process: the rebuilt command line must parse the same."""
    from grusym.cli import _parser
    from grusym.commands.bench import _argv

    for argv in (
        ["bench", "--config", "toy", "--dtype", "float64", "--variant", "mgu", "--repeat", "3",
         "--pause", "0.5", "--no-extras", "--threads", "1", "--phases"],
        ["bench", "--inference", "--threads", "1", "--no-fused"],
    ):  # fmt: skip
        args = _parser().parse_args(argv)
        again = _parser().parse_args(_argv(args))
        assert {k: v for k, v in vars(again).items() if k != "_run"} == {
            k: v for k, v in vars(args).items() if k != "_run"
        }


def test_a_race_where_no_epoch_finished_says_so():
    """Guards the race's verdict on a loaded machine: held-out figures of models trained for part of one
    epoch are printed with a note that no epoch finished, naming the side."""
    report = bench.Race([], [(50.0, 9.0)], (30, 60), (23.2, 9.1)).report()
    assert "does not reach" in report and "No epoch finished within the budget for grusym:" in report
    assert "No epoch finished" not in bench.Race([(20.0, 9.0)], [(50.0, 9.0)], (30, 60), (9.0, 9.1)).report()


def test_train_race_torch_side_is_the_same_training_as_grusym_train(tmp_path):
    """Guards the race's fairness: same init, batches, clipping and SGD give the same perplexities."""
    torch = pytest.importorskip("torch")
    from grusym.bench import race

    text = tmp_path / "text.txt"
    text.write_text(("It is a truth universally acknowledged, that a single man. " * 60)[:2500])
    lines = []
    result = race(text, 100, 100, "float64", torch=torch, threads=1, epochs=3, out=lines.append)
    assert len(result.grusym) == len(result.torch) == 3
    ours, theirs = [p for _, p in result.grusym], [p for _, p in result.torch]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    # both final models scored on the held-out tail by the same evaluator: the same training, the same score
    np.testing.assert_allclose(*result.held_out, rtol=1e-5)
    assert all(np.isfinite(result.held_out)) and ours[-1] < ours[0] and "grusym reaches" in lines[0]


# ---- progress, the machine line, the package's imports


def test_cli_prints_progress_to_stderr_and_only_the_report_to_stdout(capsys):
    """Guards the silent minute: the command says what it measures as it goes, without touching the table."""
    assert main(["bench", "--config", "toy", "--repeat", "3", "--no-extras", "--no-torch", "--no-fused"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("## grusym bench: toy") and "grusym bench [" not in out
    steps = [line for line in err.splitlines() if line.startswith("grusym bench [")]
    assert any("setting up the contenders" in line for line in steps)
    assert any("round 3/3 of" in line for line in steps)  # the last round is always said


def test_progress_throttles_round_counters_off_a_terminal():
    stream = io.StringIO()
    say = bench.Progress(stream, every=60)
    say("first")
    for k in range(5):
        say(f"round {k}", transient=True)  # within 60 s of "first": not written
    say("last")
    lines = stream.getvalue().splitlines()
    assert [line.split("] ")[1] for line in lines] == ["first", "last"]
    bench.Progress(None)("nothing to say")  # no stream: silent, no error


def test_machine_line_names_the_blas_kernel_and_its_threads():
    """The kernel is read from the loaded library (threadpoolctl when installed, else OpenBLAS's own API)."""
    info = machine.blas()
    if "openblas" not in info.name.lower():
        pytest.skip(f"NumPy runs on {info.name}, not OpenBLAS: no kernel to read without threadpoolctl")
    assert info.kernel not in ("", "?") and info.threads and info.threads >= 1
    assert f"kernel {info.kernel}" in machine.describe()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = next(i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
    assert (info.kernel, info.threads) == (blas["architecture"], blas["num_threads"])


def test_machine_line_reads_the_blas_variables_it_does_not_set():
    info = machine.blas()
    assert info.environment == {k: os.environ[k] for k in machine.BLAS_VARIABLES if k in os.environ}
    forced = machine.Blas(
        "scipy-openblas", "0.3", "Haswell", "pthreads", 2, "test", {"OPENBLAS_CORETYPE": "Haswell"}
    )
    text = forced.describe()
    assert "set: OPENBLAS_CORETYPE=Haswell" in text and "about 2x slower" in text
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE" in text
    plain = machine.Blas("scipy-openblas", "0.3", "SkylakeX", "pthreads", 2, "test", {"OMP_NUM_THREADS": "2"})
    assert "slower" not in plain.describe()


def _relative_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module} if node.module else {a.name for a in node.names}
    return names


def test_bench_package_imports_flow_one_way():
    """Guards against the old bench <-> bench_report circle: the modules of the package import in a DAG."""
    folder = Path(bench.__file__).parent
    graph = {p.stem: _relative_imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    assert set().union(*graph.values()) <= set(graph)  # every relative import names a module of the package
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import circle: {' -> '.join((*path, node))}"
        if node not in done:
            for child in graph[node]:
                visit(child, (*path, node))
            done.add(node)

    for node in graph:
        visit(node, ())


# ---- inference


def test_inference_without_the_frameworks_times_grusym_alone_and_names_the_extras():
    lines: list[str] = []
    result = bench.run_inference("toy", repeat=2, torch=None, onnxruntime=None, fused=False, out=lines.append)
    assert lines == [result.report] and len(result.times) == len(bench.CASES["toy"])
    assert all(set(row) == {"grusym", "floor"} and len(row["grusym"]) == 2 for row in result.times.values())
    assert "pip install 'grusym[torch]'" in result.report and "pip install 'grusym[onnx]'" in result.report
    assert "| nn.LSTM, 2 layers, T 3, n 2, d 4 one-hot, h 2 |" in result.report


def test_inference_times_the_same_model_in_every_column():
    """The imported H equals torch's and onnxruntime's (float32): the table never compares two models."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    result = bench.run_inference("toy", repeat=1, torch=torch, onnxruntime=ort, out=lambda s: None)
    for case, errors in result.errors.items():
        assert set(errors) >= {"grusym", "onnxruntime", "torch"}, case
        assert max(errors.values()) < 1e-5, (case, errors)
    entry = result.entry[bench.CASES["toy"][0].name]
    assert entry in ("predict", "forward") and f"grusym: `{entry}`" in result.report
    assert "grusym / onnxruntime" in result.report and "grusym / torch no_grad" in result.report
    assert "(min " in result.report  # the ratio of the fastest calls beside that of the medians
    assert "grusym fused / GEMM floor" in result.report and "onnxruntime / GEMM floor" in result.report
    assert f"on {result.threads} threads" in result.report


@pytest.mark.parametrize("onehot", [False, True])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_inference_floor_is_the_products_predict_runs(monkeypatch, cell, onehot):
    """Guards the inference floor against drifting from the generator: a 2-layer plain model's predict,
    with np.matmul logging its operands, performs exactly the floor's products, in order (one-hot rows:
    the first layer gathers, no input projection)."""
    case = bench.Case(cell, 2, T=3, n=2, d=5, h=4, onehot=onehot)  # distinct sizes: no coincidences
    run, shapes = bench.inference_floor(case)
    m = grusym.load(case.variant, num_layers=2)
    p = m.init_params(case.d, case.h, 1, dtype=np.float32)
    X = bench.inference._inputs(case, 0)
    log, real = [], np.matmul

    def matmul(a, b, *args, **kwargs):  # rt.project's input projection too: X with its column of ones
        log.append((a.shape[0], a.shape[1], b.shape[1]))
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", matmul)
    m.predict(p, X)
    monkeypatch.undo()
    assert log == [(rows, k, cols) for _, rows, k, cols, calls in shapes for _ in range(calls)]
    layer = ["X @ W_x_all", "h_prev @ W_h_all"]
    assert [label for label, *_ in shapes] == [*layer[onehot:], *layer]
    run()  # the floor itself runs (in Numba when grusym.blas found NumPy's BLAS)


def test_inference_case_sizes_are_the_issue_rows():
    d2l = {(c.cell, c.layers, c.T, c.n, c.d, c.h, c.onehot) for c in bench.CASES["d2l"]}
    assert d2l == {(c, k, 35, 32, 28, 256, True) for c in ("gru", "lstm") for k in (1, 2)}
    big = {(c.cell, c.n, c.T, c.d, c.h) for c in bench.CASES["big"]}
    assert big == {(c, 1, 100, 64, 256) for c in ("gru", "lstm")} | {
        (c, 64, 100, 128, 512) for c in ("gru", "lstm")
    }


def test_cli_inference_runs_and_rejects_what_does_not_apply(capsys):
    assert main(["bench", "--inference", "--config", "toy", "--repeat", "1", "--no-torch", "--no-fused"]) == 0
    assert "## grusym bench --inference" in capsys.readouterr().out
    assert main(["bench", "--inference", "--dtype", "float64"]) == 2
    assert "do not apply" in capsys.readouterr().err
    with pytest.raises(grusym.InputError, match="config must be one of"):
        bench.run_inference("huge", out=lambda s: None)


def test_inference_without_onnxruntime_names_its_extra():
    pytest.importorskip("torch")
    out = _child(
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from grusym import bench\n"
        "r = bench.run_inference('toy', repeat=1, fused=False, out=lambda s: None)\n"
        "print(sorted(next(iter(r.times.values())))); print(r.report)\n"
    )
    assert out.startswith("['floor', 'grusym', 'torch']") and "onnxruntime is not installed" in out
    assert "pip install 'grusym[onnx]'" in out
