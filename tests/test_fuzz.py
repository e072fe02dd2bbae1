"""Fuzz: malformed input thrown at the generated modules and the CLI; only grusym errors or clean results
(finite, right dtype) may come out, and the CLI exits 0, 1 or 2 with at most one line on stderr.

Each API example starts from a valid problem and applies one to three mutations (a wrong value, shape,
dtype, NaN, a dropped or extra key, None, a list ...) to the arguments of one entry point; warnings are
errors. The CLI examples build argv from the real options with hostile values. ``COUNTS`` tallies the
outcomes; run with ``-s`` to see them. Examples per test: 20x the hypothesis profile's max_examples.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grusym
from grusym import cli
from grusym.errors import GrusymError

ROOT = Path(__file__).resolve().parent.parent
NAMES = grusym.variants()
EXAMPLES = 20 * settings.default.max_examples
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
COUNTS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfuzz outcomes:", dict(sorted(COUNTS.items())))


# ---- hostile values
DTYPES = [bool, np.int8, np.int64, np.uint8, np.uint64, np.float16, np.float32, np.float64, np.complex64,
          np.complex128, object, "U3"]  # fmt: skip
SPECIALS = [np.nan, np.inf, -np.inf, 1e30, -1e200, 1e-320, 0.0, -1.0, 7.0, 2**40]


def _retype(a: np.ndarray, dtype: Any) -> Any:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return a.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            return a.astype(object)


@st.composite
def mutated(draw, a: Any) -> Any:
    """A corrupted version of the argument ``a`` (an array, or something an earlier mutation left)."""
    try:
        a = np.asarray(a)
    except (ValueError, TypeError):
        a = np.zeros(3)
    kind = draw(st.sampled_from(["none", "scalar", "text", "list", "ragged", "dtype", "shape", "special",
                                 "empty", "transpose", "extra_axis", "dict", "matrix"]))  # fmt: skip
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.one_of(st.integers(-5, 5), st.floats(), st.booleans(), st.complex_numbers()))
    if kind == "text":
        return draw(st.one_of(st.text(max_size=4), st.binary(max_size=4)))
    if kind == "list":
        return a.tolist()
    if kind == "ragged":
        return [[0, 1], [2]] if a.ndim < 3 else [[[0.0]], [[1.0, 2.0]]]
    if kind == "dtype":
        return _retype(a, draw(st.sampled_from(DTYPES)))
    if kind == "shape":
        axis = draw(st.integers(0, max(a.ndim - 1, 0)))
        if a.ndim == 0:
            return a.reshape(1)
        shape = list(a.shape)
        shape[axis] = max(shape[axis] + draw(st.sampled_from([-1, 1, 5])), 0)
        return np.resize(a, shape) if a.size else np.zeros(shape, a.dtype)
    if kind == "special":
        if a.size == 0:
            return a
        b = _retype(a, a.dtype)
        index = tuple(draw(st.integers(0, s - 1)) for s in b.shape)
        value = draw(st.sampled_from(SPECIALS))
        with contextlib.suppress(ValueError, OverflowError, TypeError), np.errstate(all="ignore"):
            b[index] = value
        return b
    if kind == "empty":
        return np.zeros((0,) * max(a.ndim, 1), a.dtype)
    if kind == "transpose":
        return a.T
    if kind == "extra_axis":
        return a[None]
    if kind == "dict":
        return {"value": a}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asmatrix(a) if a.ndim == 2 else np.ma.masked_array(a)


def _ids(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "i" and a.ndim == 2 and a.size > 0


def _fit(a: np.ndarray, value: int) -> int:
    info = np.iinfo(a.dtype)
    return min(max(value, int(info.min)), int(info.max))


def _not_special(value: Any) -> bool:
    a = value if isinstance(value, np.ndarray) else None
    return a is None or a.dtype.kind not in "fc" or a.size == 0 or bool(np.isfinite(a).all())


def problem(name: str, dtype: Any, tokens: bool) -> dict[str, Any]:
    m = grusym.load(name)
    rng = np.random.default_rng(0)
    p = m.init_params(4, 3, 5, seed=0, dtype=dtype, scale=0.5)
    X = rng.integers(0, 4, (3, 2)) if tokens else rng.normal(size=(3, 2, 4)).astype(dtype)
    h0 = rng.normal(size=(2, 3)).astype(dtype)
    Y = rng.integers(0, 5, (3, 2))
    H, cache = m.forward(p, X, h0)
    return {"m": m, "params": p, "X": X, "h0": h0, "Y": Y, "dH": np.cos(H), "H": H, "cache": cache}


ENTRY = {
    "forward": (("params", "X", "h0"), lambda m, a: m.forward(a["params"], a["X"], a["h0"])),
    "loss": (("params", "X", "Y", "h0"), lambda m, a: m.loss(a["params"], a["X"], a["Y"], a["h0"])),
    "loss_and_grads": (("params", "X", "Y", "h0"),
                       lambda m, a: m.loss_and_grads(a["params"], a["X"], a["Y"], a["h0"])),
    "backward": (("params", "dH"), lambda m, a: m.backward(a["params"], a["cache"], a["dH"])),
}  # fmt: skip


@st.composite
def broken_call(
    draw, targets: tuple[str, ...] = (), entries: tuple[str, ...] = tuple(ENTRY)
) -> tuple[str, dict[str, Any], list[str]]:
    name = draw(st.sampled_from(NAMES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    args = problem(name, dtype, tokens=draw(st.booleans()))
    entry = draw(st.sampled_from(entries))
    names = targets or ENTRY[entry][0]
    done = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(names))
        if target == "params" and isinstance(args["params"], dict):
            params = dict(args["params"])
            how = draw(st.sampled_from(["value", "drop", "add", "whole"]))
            key = draw(st.sampled_from(list(params)))
            if how == "value":
                params[key] = draw(mutated(params[key]))
            elif how == "drop":
                del params[key]
            elif how == "add":
                params[draw(st.sampled_from(["W_extra", "h0", 0, None]))] = params[key]
            else:
                params = draw(st.one_of(st.none(), st.just(list(params.values())), st.integers(), st.text()))
            args["params"] = params
            done.append(f"params:{how}")
        elif target == "X" and _ids(args["X"]) and draw(st.booleans()):
            X = args["X"].copy()
            X[0, 0] = _fit(X, draw(st.sampled_from([-1, 4, 10**6, -(2**62)])))  # out-of-range token ids
            args["X"] = X
            done.append("X:id")
        elif target == "Y" and _ids(args["Y"]) and draw(st.booleans()):
            Y = args["Y"].copy()
            Y[-1, -1] = _fit(Y, draw(st.sampled_from([-1, 5, 2**40])))
            args["Y"] = Y
            done.append("Y:id")
        else:
            args[target] = draw(mutated(args[target]))
            done.append(target)
    return entry, args, done


def _finite(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    a = np.asarray(value)
    return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())


def run_api(entry: str, args: dict[str, Any], done: list[str]) -> None:
    m = args["m"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = ENTRY[entry][1](m, args)
        except GrusymError as exc:
            assert "\n" not in str(exc) and str(exc), f"{entry} {done}: bad message {exc!r}"
            COUNTS[f"api {type(exc).__name__}"] += 1
            return
    assert _finite(result), f"{entry} {done}: accepted input gave a non-finite result"
    COUNTS["api accepted"] += 1


@FUZZ
@given(broken_call())
def test_fuzz_api(call):
    """The entry points with their own arguments mutated (params, X, h0, Y, dH)."""
    run_api(*call)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # hypothesis' failure report imports libcst
@settings(FUZZ)
@given(st.data())
def test_fuzz_api_cache_head_and_init(data):
    """Mutated caches for backward, bad head arguments, hostile init_params arguments."""
    which = data.draw(st.sampled_from(["cache", "head", "init"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if which == "cache":
                _, args, _ = data.draw(broken_call(("cache",), ("backward",)))
                if isinstance(args["cache"], dict) or data.draw(st.booleans()):
                    cache = dict(problem(args["m"].VARIANT, np.float64, True)["cache"])
                    key = data.draw(st.sampled_from(sorted(cache)))
                    # structure only: check_cache does not re-check values forward produced
                    cache[key] = data.draw(mutated(np.asarray(cache[key])).filter(_not_special))
                    args["cache"] = cache
                result = args["m"].backward(args["params"], args["cache"], args["dH"])
            elif which == "head":
                args = problem(data.draw(st.sampled_from(NAMES)), np.float64, True)
                result = args["m"].head(args["params"], data.draw(mutated(args["H"])))
            else:
                kwargs = {"input_size": 3, "hidden_size": 2, "output_size": 3, "seed": 0, "dtype": np.float64,
                          "scale": 0.1}  # fmt: skip
                key = data.draw(st.sampled_from(sorted(kwargs)))
                kwargs[key] = data.draw(st.one_of(
                    st.none(), st.integers(-3, 3), st.floats(), st.text(max_size=3), st.sampled_from(DTYPES),
                    st.just(np.float32), st.just([2])))  # fmt: skip
                result = grusym.load("gru").init_params(**kwargs)
        except GrusymError as exc:
            COUNTS[f"{which} {type(exc).__name__}"] += 1
            return
    assert _finite(result)
    COUNTS[f"{which} accepted"] += 1


@settings(FUZZ, max_examples=EXAMPLES // 3)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=12), st.sampled_from([*NAMES, "GRU", " gru"])))
def test_fuzz_load(name):
    try:
        module = grusym.load(name)
    except GrusymError as exc:
        assert "known variants" in str(exc)
        COUNTS["load error"] += 1
        return
    assert name == module.VARIANT


# ---- the CLI
NUMBERS = ["0", "1", "-1", "1.5", "nan", "inf", "-inf", "1e999", "1e300", "abc", "", " 7", "0x10", "1_000",
           "\u0663", "-0"]  # fmt: skip
METHODS = ["fd", "", ",", "bogus", "fd,fd", "FD", "fd,bogus", "complex", "taylor"]
VARIANTS = [*NAMES, "", "GRU", "nope", "gru ", "../gru"]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """Output folders for derive: fresh, nested, under a file, a file, holding a binary or folder gru.py."""
    base = tmp_path_factory.mktemp("cli_fuzz")
    a_file = base / "a_file"
    a_file.write_text("x")
    binary = base / "binary"
    binary.mkdir()
    (binary / "gru.py").write_bytes(b"\xff\x00\xfe")
    folder = base / "folder"
    (folder / "gru.py").mkdir(parents=True)
    return {"fresh": base / "fresh", "nested": base / "n" / "e" / "s", "under_file": a_file / "sub",
            "file": a_file, "binary": binary, "folder": folder}  # fmt: skip


def argv_strategy(places: dict[str, Path]):
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
    junk = st.sampled_from(["--bogus", "-x", "--", "-", "--check=1", "--seed=", "--out"])
    single = junk.map(lambda j: [j])
    derive = st.lists(st.one_of(st.just(["--check"]), st.just(["--debug"]), single), max_size=3)
    gradcheck = st.lists(
        st.one_of(
            st.tuples(st.just("--variant"), st.one_of(st.sampled_from(VARIANTS), text)).map(list),
            st.tuples(st.just("--method"), st.one_of(st.sampled_from(METHODS), text)).map(list),
            st.tuples(st.sampled_from(["--seed", "--scale"]), st.sampled_from(NUMBERS) | text).map(list),
            st.just(["--debug"]),
            single,
        ),
        max_size=3,
    )

    @st.composite
    def build(draw) -> list[str]:
        head = ["--debug"] if draw(st.booleans()) and draw(st.booleans()) else []
        command = draw(st.sampled_from(["derive", "gradcheck", "gradcheck", "bogus", "--version", "-h"]))
        if command == "derive":
            # never the package's own folder: --out is always one of the scratch places
            flags = [t for group in draw(derive) for t in group]
            out = ["--out", str(places[draw(st.sampled_from(sorted(places)))])]
            return [*head, command, *flags, *out]
        if command == "gradcheck":
            return [*head, command, *(t for group in draw(gradcheck) for t in group)]
        return [*head, command, *(draw(st.lists(text, max_size=2)))]

    return build()


def check_cli_outcome(argv: list[str], code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), f"{argv}: exit code {code}\n{err}"
    debug = "--debug" in argv
    if not debug or code != 2:
        assert "Traceback" not in err, f"{argv}: traceback\n{err}"
    assert "Warning" not in err, f"{argv}: a warning escaped\n{err}"
    if code == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith("grusym") and ": error: " in last, f"{argv}: {err!r}"
        assert debug or len(err.strip().splitlines()) == 1, f"{argv}: more than one line\n{err}"
    else:
        assert err == "", f"{argv}: stderr on exit {code}: {err!r}"
    COUNTS[f"cli exit {code}"] += 1


@given(data=st.data())
@settings(FUZZ, max_examples=EXAMPLES // 3)  # valid argv run a real gradient check (~0.1 s)
def test_fuzz_cli_in_process(places, data):
    argv = data.draw(argv_strategy(places))
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("error")  # a warning would otherwise print to stderr
        code = cli.main(argv)
    check_cli_outcome(argv, code, out.getvalue(), err.getvalue())


SUBPROCESS_ARGV = [
    ["gradcheck", "--seed", "1e999"],
    ["gradcheck", "--variant", "\u00e9", "--method", ","],
    ["derive", "--out"],
    ["--debug", "gradcheck", "--scale", "nan"],
]


@pytest.mark.parametrize("argv", SUBPROCESS_ARGV, ids=[" ".join(a) for a in SUBPROCESS_ARGV])
def test_fuzz_cli_subprocess(argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    run = subprocess.run([sys.executable, "-m", "grusym", *argv], env=env, cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    check_cli_outcome(argv, run.returncode, run.stdout, run.stderr)


# ---- train, sample, report and bench: their options and the files they read and write
SIZES = ["0", "1", "2", "3", "-1", "1.5", "nan", "abc", "", " 2", "0x10", "\u0663", "-0", "1e999"]
FRACTIONS = ["0", "0.1", "0.5", "0.6", "-0.1", "nan", "inf", "abc", "", "1"]
REAL = ["0", "0.5", "1", "2", "-1", "nan", "inf", "1e999", "abc", "", "-0", "1e-300"]
SEEDS = ["0", "1", "-1", "1.5", "abc", "", "1_000", "\u0663"]


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _other_version(good: Path, path: Path) -> str:
    """A checkpoint a later grusym might write: the same arrays, format version 99."""
    import json

    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "version": 99}).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Inputs (texts; checkpoints good, foreign, damaged) and outputs (fresh, unwritable) of the commands."""
    from grusym.train import make_config, train

    base = tmp_path_factory.mktemp("cli_files")
    text = base / "text.txt"
    text.write_text("the cat sat on the mat and the dog sat on the log. " * 20)
    runs = {}
    for name, config in {
        "ckpt_toy": make_config(epochs=2),
        "ckpt_text": make_config(text=str(text), hidden=4, steps=5, batch=3, epochs=1),
        "ckpt_adding": make_config(task="adding", length=4, hidden=3, epochs=1),
    }.items():
        train(config, base / name, log=lambda s: None, write_plots=False)
        runs[name] = str(base / name / "checkpoint.npz")
    good = (base / "ckpt_toy" / "checkpoint.npz").read_bytes()
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghij klmnopqrst .\n", dtype=np.uint8)
    return {
        **runs,
        "text": str(text),
        "missing": str(base / "missing.txt"),
        "empty": _write(base / "empty.txt", b""),
        "binary": _write(base / "binary.bin", bytes(range(256)) * 8),
        "latin1": _write(base / "latin1.txt", "caf\xe9 cr\xe8me br\xfbl\xe9e. ".encode("latin-1") * 30),
        "huge": _write(base / "huge.txt", rng.choice(letters, 1_000_000).tobytes()),
        "folder": str(base),
        "ckpt_truncated": _write(base / "truncated.npz", good[: len(good) // 2]),
        "ckpt_flipped": _write(base / "flipped.npz", good[:200] + bytes(b ^ 0xFF for b in good[200:400])
                               + good[400:]),
        "ckpt_v99": _other_version(base / "ckpt_toy" / "checkpoint.npz", base / "v99.npz"),
        "ckpt_empty": _write(base / "empty.npz", b""),
        "ckpt_pickle": _pickled(base / "pickle.npz"),
        "out_fresh": str(base / "out" / "fresh"),
        "out_file": str(text),
        "out_under_file": str(text / "sub"),
        "out_sysfs": "/sys/grusym-fuzz/out",  # not creatable, even by root
        "json_folder": str(base),
        "json_sysfs": "/sys/grusym-fuzz.json",
        "json_fresh": str(base / "m.json"),
    }  # fmt: skip


def _pickled(path: Path) -> str:
    np.save(path, np.array([{"format": "grusym-train-checkpoint"}], dtype=object), allow_pickle=True)
    return str(path)


def _pick(names: list[str]):
    return st.sampled_from(names)


def command_argv(files: dict[str, str], text_strategy):
    """argv for train, sample, report or bench with hostile option values and files."""
    # the good files drawn as often as all the bad ones: the commands' success paths get fuzzed too
    texts = _pick(["text"]) | _pick(["missing", "empty", "binary", "latin1", "huge", "folder"])
    checkpoints = _pick(["ckpt_toy", "ckpt_text"]) | _pick([k for k in files if k.startswith("ckpt")])
    outs = _pick([k for k in files if k.startswith("out")])
    jsons = _pick([k for k in files if k.startswith("json")])

    def opt(name, values):
        return st.tuples(st.just(name), st.sampled_from(values) | text_strategy).map(list)

    def path_opt(name, keys):
        return st.tuples(st.just(name), keys.map(files.get)).map(list)

    train_opts = st.one_of(
        path_opt("--text", texts),
        path_opt("--resume", checkpoints),
        path_opt("--json", jsons),
        opt("--task", ["lm", "adding", "LM", ""]),
        opt("--variant", [*NAMES, "gru,rnn_tanh", "gru,gru", ",", "lstm"]),
        *(opt(f"--{n}", SIZES) for n in ("hidden", "steps", "batch", "epochs", "length")),
        *(opt(f"--{n}", REAL) for n in ("lr", "clip", "scale", "max-seconds")),
        opt("--valid", FRACTIONS),
        opt("--seed", SEEDS),
        opt("--optimizer", ["sgd", "adam", "rmsprop"]),
        opt("--sampling", ["sequential", "random", "x"]),
        opt("--dtype", ["float32", "float64", "float16"]),
        opt("--primer", ["Ma", "the ", "\u20ac", "", "Mx"]),
    )
    sample_opts = st.one_of(
        opt("--primer", ["Ma", "the ", "\u20ac", "", "hat", "<unk>"]),
        opt("--length", ["0", "1", "30", "-1", "abc", "1.5", ""]),
        opt("--temperature", REAL),
        opt("--top-k", SIZES),
        opt("--seed", SEEDS),
    )
    report_opts = st.one_of(
        opt("--variant", ["rnn_tanh", "nope", "", "GRU", "../gru"]),
        opt("--format", ["md", "bogus", "", ",", "md,bogus", "MD"]),
        st.just(["--all", "--format", "bogus"]),
    )
    bench_opts = st.one_of(
        opt("--config", ["toy", "bogus", "", "TOY"]),
        opt("--dtype", ["float32", "float64", "float16", ""]),
        opt("--variant", [*NAMES, "nope", ""]),
        opt("--repeat", ["1", "2", "0", "-1", "abc", "nan", ""]),
        opt("--pause", ["0", "-1", "nan", "abc", "", "1e999", "-0"]),
        opt("--threads", ["1", "0", "-1", "abc"]),
        st.just(["--phases"]),
    )

    @st.composite
    def build(draw) -> list[str]:
        command = draw(st.sampled_from(["train", "train", "sample", "sample", "report", "bench"]))
        if command == "train":  # a bounded run, always into a scratch folder
            flags = [t for group in draw(st.lists(train_opts, max_size=4)) for t in group]
            out = ["--out", files[draw(outs)]]
            return [command, *flags, *out, "--max-seconds", "0.3"]
        if command == "sample":
            ckpt = draw(checkpoints | st.sampled_from(["missing", "folder", "text"]))
            flags = [t for group in draw(st.lists(sample_opts, max_size=3)) for t in group]
            return [command, files[ckpt], *flags]
        if command == "report":  # never the checkout's derivations/: always --out
            flags = [t for group in draw(st.lists(report_opts, min_size=1, max_size=2)) for t in group]
            return [command, *flags, "--out", files[draw(outs)]]
        flags = [t for group in draw(st.lists(bench_opts, max_size=3)) for t in group]
        return [command, "--config", "toy", *flags, "--no-extras", "--no-torch"]

    return build()


@given(data=st.data())
@settings(FUZZ, max_examples=EXAMPLES // 3)  # a valid train runs for at most 0.3 s plus its setup
def test_fuzz_train_sample_report_bench_in_process(files, tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder either way
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
    argv = data.draw(command_argv(files, text))
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("error")
        code = cli.main(argv)
    check_cli_outcome(argv, code, out.getvalue(), err.getvalue())
    COUNTS[f"{argv[0]} exit {code}"] += 1


COMMAND_SUBPROCESS_ARGV = [
    ["train", "--text", "/dev/null"],
    ["train", "--out", "/sys/grusym-fuzz", "--epochs", "1"],
    ["train", "--json", "/sys/grusym-fuzz.json", "--epochs", "1", "--out", "{tmp}/run"],
    ["train", "--resume", "/proc/self/status"],
    ["sample", "/nonexistent/checkpoint.npz"],
    ["sample", "/dev/null", "--length", "5"],
    ["report", "--variant", "nope", "--out", "{tmp}/rep"],
    ["bench", "--config", "toy", "--repeat", "0"],
]


@pytest.mark.parametrize("argv", COMMAND_SUBPROCESS_ARGV, ids=[" ".join(a) for a in COMMAND_SUBPROCESS_ARGV])
def test_fuzz_commands_subprocess(tmp_path, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"}
    run = subprocess.run([sys.executable, "-m", "grusym", *argv], env=env, cwd=tmp_path,
                         capture_output=True, text=True)  # fmt: skip
    check_cli_outcome(argv, run.returncode, run.stdout, run.stderr)
    assert run.returncode == 2 and not (tmp_path / "runs").exists(), run.stderr
