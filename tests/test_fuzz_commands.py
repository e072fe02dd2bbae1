"""Fuzz the commands that read and write files: ``train``, ``sample``, ``report`` and ``bench``, with hostile
option values and hostile files (missing, empty, binary, not UTF-8, 1 MB; checkpoints good, truncated,
byte-flipped, pickled, of another format version, of the other task; outputs into files, under files and
into uncreatable places). Only exit 0, 1 or 2 with at most one stderr line may come out (the same judge as
``test_fuzz.py``), and nothing may land in the working folder."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grusym import cli

from .test_fuzz import COUNTS, EXAMPLES, FUZZ, NAMES, ROOT, check_cli_outcome

COMMANDS = ("train", "sample", "report", "bench")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\ncommand fuzz outcomes:", {k: v for k, v in sorted(COUNTS.items()) if k.startswith(COMMANDS)})


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
    text.write_text("the cat sat on the mat and the dog sat on the log. " * 60)  # enough for 32 x 35
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
        "ckpt_run_folder": str(base / "ckpt_toy"),  # what `grusym train` prints: the checkpoint's folder
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
    outs = _pick(["out_fresh"]) | _pick([k for k in files if k.startswith("out")])
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
        opt("--variant", [*NAMES, "gru,rnn_tanh", "gru,gru", ",", "lstm", "lstn"]),
        *(opt(f"--{n}", SIZES) for n in ("hidden", "steps", "batch", "epochs", "length")),
        *(opt(f"--{n}", REAL) for n in ("lr", "clip", "scale", "max-seconds")),
        opt("--valid", FRACTIONS),
        opt("--seed", SEEDS),
        opt("--optimizer", ["sgd", "adam", "rmsprop"]),
        opt("--sampling", ["sequential", "random", "x"]),
        opt("--dtype", ["float32", "float64", "float16"]),
        opt("--primer", ["Ma", "the ", "\u20ac", "", "Mx"]),
        st.just(["--force"]),  # an out folder that holds an earlier run: refused without it
    )
    sample_opts = st.one_of(
        opt("--primer", ["a", "at", "Ma", "the ", "\u20ac", "", "hat", "<unk>"]),  # "a", "at": in both vocabs
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
            flags = [t for group in draw(st.lists(train_opts, max_size=3)) for t in group]
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
@settings(FUZZ, max_examples=EXAMPLES // 5)  # a valid train runs for at most 0.3 s plus its setup
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
