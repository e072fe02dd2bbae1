"""Fuzz: malformed input thrown at the generated modules and the CLI; only grusym errors or clean results
(finite, right dtype) may come out, and the CLI exits 0, 1 or 2 with at most one line on stderr.

Each API example starts from a valid problem and applies one to three mutations (a wrong value, shape,
dtype, NaN, a dropped or extra key, None, a list ...) to the arguments of one entry point; warnings are
errors. The CLI examples build argv from the real options of ``derive`` and ``gradcheck`` with hostile values
(the other commands: ``test_fuzz_commands.py``). ``COUNTS`` tallies the
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
    else:  # bench alone reports its progress on stderr, one "grusym bench [...]" line at a time
        progress = "".join(line for line in err.splitlines(True) if line.startswith("grusym bench ["))
        assert err == (progress if "bench" in argv else ""), f"{argv}: stderr on exit {code}: {err!r}"
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
