"""``grusym train`` on bad input: one line on stderr naming the problem, exit code 2, no traceback;
and damaged checkpoints never get past ``checkpoint.load`` as anything but an InputError."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grusym.cli import main
from grusym.errors import InputError
from grusym.train import checkpoint, make_config, train


def _run_bad(capsys, argv, expected):
    code = main(["train", *argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("grusym train: error:") and expected in lines[0], lines[0]


def _files(tmp: Path) -> dict[str, Path]:
    paths = {
        "empty": b"",
        "blank": b"  \n\t\n",
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "latin1": "caf\xe9 au lait, na\xefve".encode("latin-1"),
        "short": b"tiny",
    }
    out = {}
    for name, data in paths.items():
        out[name] = tmp / f"{name}.txt"
        out[name].write_bytes(data)
    out["a_file"] = tmp / "plain.txt"
    out["a_file"].write_text("x" * 100)
    return out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--text", "{tmp}/missing.txt"], "missing.txt does not exist"),
        (["--text", "{empty}"], "empty.txt is empty"),
        (["--text", "{blank}"], "blank.txt is empty"),
        (["--text", "{binary}"], "binary.txt looks binary"),
        (["--text", "{latin1}"], "is not UTF-8 text (byte 0xe9 at offset 3"),
        (["--text", "{tmp}"], "is a folder"),
        (["--text", ""], "--text must name a file, got ''"),
        (["--text", "{short}"], "too few for --batch 32 x --steps 35"),
        (["--out", "{a_file}"], "exists and is not a folder"),
        (["--out", "{a_file}/sub"], "--out: cannot create folder"),
        (["--json", "{tmp}/no/such/m.json"], "--json: folder"),
        (["--hidden", "0"], "--hidden must be an integer >= 1, got 0"),
        (["--hidden", "abc"], "--hidden must be an integer, got 'abc'"),
        (["--epochs", "1.5"], "--epochs must be an integer, got '1.5'"),
        (["--batch", "-3"], "--batch must be an integer >= 1"),
        (["--seed", "-1"], "--seed must be an integer >= 0"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--lr", "inf"], "--lr must be a finite number > 0"),
        (["--clip", "-0.5"], "--clip must be a finite number >= 0"),
        (["--scale", "0"], "--scale must be a finite number > 0"),
        (["--optimizer", "rmsprop"], "--optimizer must be one of sgd, adam"),
        (["--sampling", "shuffled"], "--sampling must be one of sequential, random"),
        (["--task", "copy"], "--task must be one of lm, adding"),
        (["--dtype", "float16"], "--dtype must be one of float64, float32"),
        (["--variant", "lstn"], "unknown variant 'lstn'; known variants: gru"),
        (["--variant", "gru,gru"], "distinct variant names"),
        (["--primer", "Mx"], "--primer: 'x' is not in the model's vocabulary of 4 characters 'hatM'"),
        (["--primer", "xyx"], "--primer: 'x', 'y' are not in the model's vocabulary"),
        (["--valid", "0.6"], "--valid must be a fraction in [0, 0.5], got 0.6"),
        (["--valid", "nan"], "--valid must be a fraction in [0, 0.5]"),
        (["--valid", "0.01"], "--valid 0.01 holds out 0 of 20 characters; need at least 2"),
        (["--task", "adding", "--valid", "0.2"], "--valid only applies to --task lm"),
        (["--max-seconds", "0"], "--max-seconds must be a positive number"),
        (["--task", "adding", "--length", "1"], "--length must be an integer >= 2"),
        (["--length", "50"], "--length only applies to --task adding, not lm"),
        (["--task", "adding", "--steps", "5", "--primer", "x"], "--steps, --primer only applies to --task"),
        (["--resume", "{tmp}/none.npz"], "no such file"),
        (["--resume", "{a_file}"], "not an .npz file"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    files = {k: str(v) for k, v in _files(tmp_path).items()}
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    _run_bad(capsys, [*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv, expected)


def test_unwritable_working_folder_gives_a_clean_error(capsys, monkeypatch):
    """`grusym train` with no --out writes to ./runs: a folder nobody may create files in must not crash."""
    sysfs = Path("/sys")
    if not sysfs.is_dir() or _can_mkdir(sysfs):
        pytest.skip("needs a read-only folder (sysfs) to stand in for a read-only working folder")
    monkeypatch.chdir(sysfs)
    _run_bad(capsys, [], "--out: cannot create folder runs/toy-gru")


def _can_mkdir(folder: Path) -> bool:
    try:
        (folder / "grusym-probe").mkdir()
    except OSError:
        return False
    (folder / "grusym-probe").rmdir()
    return True


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    train(make_config(epochs=2, optimizer="adam", lr=0.01), out, log=lambda s: None, write_plots=False)
    return (out / "checkpoint.npz").read_bytes()


@given(
    offset=st.floats(0, 1),
    length=st.integers(1, 200),
    mode=st.sampled_from(["flip", "zero", "cut", "junk"]),
)
def test_fuzzed_checkpoints_load_or_raise_input_error(
    good_checkpoint, tmp_path_factory, offset, length, mode
):
    data = bytearray(good_checkpoint)
    start = int(offset * (len(data) - 1))
    end = min(len(data), start + length)
    if mode == "flip":
        data[start:end] = bytes(b ^ 0x5A for b in data[start:end])
    elif mode == "zero":
        data[start:end] = bytes(end - start)
    elif mode == "cut":
        del data[start:end]
    else:
        data[start:start] = np.random.default_rng(length).bytes(length)
    path = tmp_path_factory.mktemp("f") / "c.npz"
    path.write_bytes(bytes(data))
    try:
        checkpoint.load(path)
    except InputError as exc:
        assert str(path) in str(exc)
        return
    # damage only in bytes the loader does not need: the run goes on or stops with a grusym error
    with contextlib.suppress(InputError):
        train(None, path.parent / "out", resume=path, log=lambda s: None, write_plots=False)


def test_the_default_learning_rate_follows_the_optimizer():
    assert make_config().lr == 1.0 and make_config(optimizer="adam").lr == 0.01
    assert make_config(task="adding").lr == 0.01 and make_config(task="adding", optimizer="sgd").lr == 1.0
    assert make_config(optimizer="adam", lr=0.5).lr == 0.5


def test_a_damaged_checkpoint_leaves_no_file_open(good_checkpoint, tmp_path):
    """Regression (CLI fuzz): np.load(path) left the file of a truncated zip open (a ResourceWarning)."""
    import gc
    import warnings

    path = tmp_path / "truncated.npz"
    path.write_bytes(good_checkpoint[: len(good_checkpoint) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(InputError, match="corrupted"):
            checkpoint.load(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught
