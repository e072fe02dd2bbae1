"""A run as a user meets it: the held-out tail is never trained on and its perplexity is reported, a run
resumes from any folder with the same text at any path, refused runs leave no folder, the default primer is
readable, and "time limit" is said only when the limit stopped training."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

import grusym
from grusym.cli import main
from grusym.errors import InputError
from grusym.train import SAMPLE_TEXT, checkpoint, make_config, train
from grusym.train.data import default_primer

BODY = "the cat sat on the mat; the dog sat on the log. " * 12  # 576 characters
TAIL = "a bird sat on the wire, and the cat ran off. " * 2  # held out with --valid 0.15 (90 of 666)


def quiet(_line: str) -> None:
    pass


def _text(tmp_path: Path, tail: str = TAIL, name: str = "t.txt") -> Path:
    path = tmp_path / name
    path.write_text(BODY + tail)
    return path


def _config(path: Path, **options):
    return make_config(**{"text": str(path), "hidden": 6, "steps": 5, "batch": 4, "epochs": 3, "valid": 0.15,
                          **options})  # fmt: skip


def test_the_held_out_tail_is_never_trained_on(tmp_path):
    """Two texts that differ only in the order of the held-out tail's characters (same vocabulary) give
    bit-identical parameters and different validation figures."""
    a = train(_config(_text(tmp_path)), tmp_path / "a", log=quiet, write_plots=False)
    b = train(_config(_text(tmp_path, TAIL[::-1], "u.txt")), tmp_path / "b", log=quiet, write_plots=False)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert a.metrics["data"]["held_out"] == 100 and a.metrics["data"]["trained_on"] == 566
    assert a.metrics["final_valid_perplexity"] != b.metrics["final_valid_perplexity"]


def test_held_out_perplexity_is_the_mean_cross_entropy_on_the_tail(tmp_path):
    """Recomputed by hand from the final parameters: rows of the tail read from zeros, NumPy log-softmax."""
    result = train(_config(_text(tmp_path), dtype="float64"), tmp_path / "a", log=quiet, write_plots=False)
    ckpt = checkpoint.load(result.checkpoint)
    tokens = ckpt.vocab["tokens"]
    tail = np.array([tokens.index(c) for c in (BODY + TAIL)[-100:]])
    rows = min(4, 99 // 5)
    T = 99 // rows
    m = grusym.load("gru")
    losses = []
    for r in range(rows):
        x, y = tail[r * T : (r + 1) * T], tail[r * T + 1 : (r + 1) * T + 1]
        H, _ = m.forward(result.params, x[:, None], np.zeros((1, 6)))
        logits = H[:, 0] @ result.params["W_hq"] + result.params["b_q"]
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        logp -= logits.max(1, keepdims=True)
        losses.extend(-logp[np.arange(T), y])
    expected = math.exp(float(np.mean(losses)))
    assert result.metrics["final_valid_perplexity"] == pytest.approx(expected, rel=1e-12)
    history = result.metrics["history"]
    assert all("valid_perplexity" in h and "valid_loss" in h for h in history)  # every logged epoch
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["final_valid_perplexity"] == result.metrics["final_valid_perplexity"]


def test_the_toy_holds_out_nothing_and_reports_no_valid_figure(tmp_path):
    result = train(make_config(epochs=2), tmp_path, log=quiet, write_plots=False)
    assert result.metrics["final_valid_perplexity"] is None and result.metrics["data"]["held_out"] == 0
    assert make_config(text="x.txt").valid == 0.1 and make_config().valid == 0.0


def test_resume_from_another_folder_with_a_relative_text(tmp_path, monkeypatch, capsys):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    _text(home)
    straight = train(_config(home / "t.txt", epochs=4), tmp_path / "straight", log=quiet, write_plots=False)
    monkeypatch.chdir(home)
    assert main(["train", "--text", "t.txt", "--hidden", "6", "--steps", "5", "--batch", "4",
                 "--epochs", "2", "--valid", "0.15", "--out", "run"]) == 0  # fmt: skip
    monkeypatch.chdir(elsewhere)  # "t.txt" means nothing here: the stored absolute path is used
    ckpt = str(home / "run" / "checkpoint.npz")
    assert main(["train", "--resume", ckpt, "--epochs", "3"]) == 0
    copy = elsewhere / "copy.txt"  # the same text at another path is accepted
    copy.write_text((home / "t.txt").read_text())
    assert main(["train", "--resume", ckpt, "--epochs", "4", "--text", str(copy)]) == 0
    capsys.readouterr()
    resumed = checkpoint.load(ckpt)
    assert all(np.array_equal(resumed.params[k], straight.params[k]) for k in straight.params)
    other = elsewhere / "other.txt"
    other.write_text(BODY.upper() + TAIL)
    assert main(["train", "--resume", ckpt, "--epochs", "5", "--text", str(other)]) == 2
    assert "is not the text the checkpoint was trained on (sha256" in capsys.readouterr().err


def test_resume_says_how_to_find_a_text_that_moved(tmp_path, monkeypatch, capsys):
    path = _text(tmp_path)
    train(_config(path, epochs=1), tmp_path / "run", log=quiet, write_plots=False)
    path.rename(tmp_path / "moved.txt")
    assert main(["train", "--resume", str(tmp_path / "run" / "checkpoint.npz"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist; the checkpoint was trained on a text with sha256" in err[0]
    assert "give its path with --text" in err[0]
    with pytest.raises(InputError, match="built-in toy text"):
        train(make_config(text=str(tmp_path / "moved.txt")), tmp_path / "x", resume=_toy(tmp_path), log=quiet)


def _toy(tmp_path: Path) -> Path:
    train(make_config(epochs=1), tmp_path / "toy", log=quiet, write_plots=False)
    return tmp_path / "toy" / "checkpoint.npz"


def test_resume_may_change_the_primer(tmp_path):
    path = _text(tmp_path)
    train(_config(path, epochs=1), tmp_path / "run", log=quiet, write_plots=False)
    result = train(_config(path, epochs=2, primer="the dog"), tmp_path / "run",
                   resume=tmp_path / "run" / "checkpoint.npz", log=quiet, write_plots=False)  # fmt: skip
    assert result.metrics["samples"][-1].startswith("epoch 2: 'the dog' -> ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--text", "/nonexistent.txt"],
        ["--text", "{short}"],
        ["--text", "{text}", "--primer", "\u20ac"],
        ["--text", "{text}", "--valid", "0.001"],
        ["--variant", "gru,lstn"],
        ["--resume", "{tmp}/missing.npz"],
    ],
)
def test_a_refused_run_leaves_no_folder(tmp_path, monkeypatch, capsys, argv):
    (tmp_path / "short.txt").write_text("tiny text")
    _text(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path, short=tmp_path / "short.txt", text=tmp_path / "t.txt") for a in argv]
    assert main(["train", *argv, "--out", str(tmp_path / "out" / "run")]) == 2
    assert main(["train", *argv]) == 2  # the default folder, runs/...
    capsys.readouterr()
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("text", "primer"),
    [
        ("\n\n   \n\tIt is a truth universally acknowledged\n", "It is a truth "),
        ("PRIDE AND PREJUDICE\n\nBy Jane Austen\n", "PRIDE AND "),
        ("----\n\n  Copyright 2024 Someone\nbody", "Copyright 2024 "),
        ("Supercalifragilisticexpialidocious!", "Supercalifragili"),
        ("ab", "ab"),
    ],
)
def test_the_default_primer_is_the_first_words_of_the_first_line_with_letters(text, primer):
    assert default_primer(text) == primer


def test_the_shipped_text_gives_a_readable_primer(tmp_path):
    result = train(
        make_config(text=str(SAMPLE_TEXT), hidden=4, epochs=1), tmp_path, max_seconds=0.5, log=quiet,
        write_plots=False,
    )  # fmt: skip
    assert result.metrics["data"]["primer"] == "PRIDE AND "
    assert result.metrics["data"]["characters"] == len(SAMPLE_TEXT.read_text()) < 100_000


def test_time_limit_is_reported_only_when_it_stopped_training(tmp_path, capsys):
    steps = train(make_config(epochs=2), tmp_path / "count", log=quiet, write_plots=False).metrics["steps"]

    def slow_last_step(step):
        if step == steps:  # the limit passes during the very last step: every epoch still ran
            time.sleep(0.3)

    done = train(make_config(epochs=2), tmp_path / "a", max_seconds=0.2, on_step=slow_last_step, log=quiet)
    assert done.status == "finished" and done.message == ""

    def slow_first_step(step):
        if step == 1:
            time.sleep(0.3)

    cut = train(make_config(epochs=2), tmp_path / "b", max_seconds=0.2, on_step=slow_first_step, log=quiet)
    assert cut.status == "time limit" and cut.metrics["steps"] == 1 and "--max-seconds" in cut.message
    assert main(["train", "--epochs", "2", "--max-seconds", "60", "--out", str(tmp_path / "c")]) == 0
    assert "max-seconds" not in capsys.readouterr().out
