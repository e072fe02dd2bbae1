"""End-to-end training: the toy ("MathMath...") learns, resuming is bit-exact, checkpoints are safe to load,
divergence keeps the last good checkpoint, and Ctrl-C saves one."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import grusym
from grusym.cli import main
from grusym.errors import InputError
from grusym.train import checkpoint, make_config, plots, train
from grusym.train.data import TOY_TEXT

REPO = Path(__file__).resolve().parents[1]


def quiet(_line: str) -> None:
    pass


def test_toy_default_learns_the_next_characters(tmp_path):
    result = train(make_config(), tmp_path, log=quiet, write_plots=False)
    history = result.metrics["history"]
    assert result.status == "finished" and len(history) == 200
    # untrained (N(0, 0.01) weights): every character about equally likely, loss ln 4
    assert history[0]["loss"] == pytest.approx(math.log(4), abs=0.02)
    assert history[-1]["loss"] < 0.05 and history[-1]["perplexity"] < 1.05
    # after the primer "Ma" the text goes on "thMath..."
    expected = (TOY_TEXT * 2)[2 : 2 + 16]
    assert result.metrics["samples"][-1] == f"epoch 200: 'Ma' -> {expected!r}"
    assert result.metrics["samples"][0] != result.metrics["samples"][-1]  # epoch 1 had not learnt it yet


def test_cli_without_arguments_trains_the_toy_into_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    out = capsys.readouterr().out
    assert "vocabulary of 4 characters 'hatM')" in out and "done: perplexity" in out
    run = tmp_path / "runs" / "toy-gru"
    names = sorted(p.name for p in run.iterdir())
    assert {"checkpoint.npz", "metrics.json", "samples.txt"} <= set(names)
    assert f"wrote {Path('runs') / 'toy-gru'}/: {', '.join(names)}" in out  # the files it names are there
    if plots.available():
        assert {"loss.png", "perplexity.png"} <= set(names) and "no curves drawn" not in out
    else:  # the core install: no figures, and it says so once
        assert not any(n.endswith(".png") for n in names)
        assert "no curves drawn: matplotlib is not installed (pip install 'grusym[plots]')" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"] == make_config().to_dict()
    assert metrics["final_perplexity"] < 1.05 and metrics["tokens_per_second"] > 0
    assert metrics["epochs"] == 200 and metrics["wall_time_s"] > 0
    assert checkpoint.load(run / "checkpoint.npz").epoch == 200


def test_curves_are_png_files_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    train(make_config(epochs=3), tmp_path, log=quiet)
    for name in ("loss.png", "perplexity.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 12},  # toy: SGD, sequential, carried state
        {"epochs": 12, "optimizer": "adam", "lr": 0.05, "sampling": "random", "dtype": "float32"},
        {"epochs": 12, "variant": "lstm"},  # two carried states, h and c
    ],
    ids=["sgd-sequential", "adam-random-float32", "lstm"],
)
def test_resume_is_bit_exact(tmp_path, options):
    straight = train(make_config(**options), tmp_path / "a", log=quiet, write_plots=False)
    half = train(make_config(**{**options, "epochs": 6}), tmp_path / "b", log=quiet, write_plots=False)
    assert half.metrics["epochs"] == 6
    resumed = train(
        make_config(**options), tmp_path / "b", resume=tmp_path / "b" / "checkpoint.npz", log=quiet
    )
    assert resumed.metrics["epochs"] == 12 and resumed.metrics["steps"] == straight.metrics["steps"]
    for k, v in straight.params.items():
        assert np.array_equal(v, resumed.params[k]), k
    a, b = (checkpoint.load(r.checkpoint) for r in (straight, resumed))
    assert a.optimizer.keys() == b.optimizer.keys()
    assert all(np.array_equal(a.optimizer[k], b.optimizer[k]) for k in a.optimizer)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


@pytest.mark.parametrize("variant", ["gru", "lstm"])
def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_bit_exact(tmp_path, variant):
    text = tmp_path / "t.txt"
    text.write_text("a stitch in time saves nine; " * 20)
    config = make_config(text=str(text), hidden=6, steps=5, batch=4, epochs=4, variant=variant)
    straight = train(config, tmp_path / "a", log=quiet, write_plots=False)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job

    def press_ctrl_c(step):
        if step == 11:  # epochs have 28 or 29 batches: step 11 is mid-epoch
            signal.raise_signal(signal.SIGINT)

    lines = []
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", on_step=press_ctrl_c, log=lines.append)
    assert "continue with --resume" in lines[-1]
    saved = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    assert (saved.epoch, saved.batch, saved.step) == (0, 11, 11) and saved.hidden is not None
    assert len(saved.hidden) == len(grusym.load(variant).STATES)  # every carried state (lstm: h and c)
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["status"] == "interrupted"
    resumed = train(
        None, tmp_path / "b", resume=tmp_path / "b" / "checkpoint.npz", log=quiet, write_plots=False
    )
    for k, v in straight.params.items():
        assert np.array_equal(v, resumed.params[k]), k
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored


def test_sigint_to_the_cli_process_saves_and_exits_130(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("all work and no play makes jack a dull boy. " * 40)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "grusym",
        "train",
        "--text",
        str(text),
        "--hidden",
        "8",
        "--epochs",
        "100000",
    ]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        for _ in range(3):  # header (2 lines) and epoch 1: training is under way
            proc.stdout.readline()
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr and b"interrupted" in stderr
    assert b"checkpoint saved to" in stdout
    saved = checkpoint.load(out / "checkpoint.npz")
    assert saved.step > 0 and np.isfinite(saved.params["W_hh"]).all()


def test_diverging_training_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    config = make_config(lr=1e300, clip=0.0, epochs=5)
    result = train(config, tmp_path, log=quiet, write_plots=False)
    assert result.status == "diverged" and "diverged" in result.message
    saved = checkpoint.load(tmp_path / "checkpoint.npz")  # still a valid file: the untrained start
    init = grusym.load("gru").init_params(4, 2, 4, seed=0, scale=0.01, dtype=np.dtype(config.dtype))
    assert all(np.array_equal(saved.params[k], init[k]) for k in init)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"
    code = main(["train", "--lr", "1e300", "--clip", "0", "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "last good checkpoint" in err[0]


def test_time_limit_stops_with_a_resumable_checkpoint(tmp_path):
    result = train(make_config(epochs=100_000), tmp_path, max_seconds=0.3, log=quiet, write_plots=False)
    assert result.status == "time limit"
    saved = checkpoint.load(result.checkpoint)
    assert saved.step == result.metrics["steps"] > 0


# ---- checkpoints -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(make_config(epochs=3, optimizer="adam", lr=0.01), out, log=quiet, write_plots=False)
    return out / "checkpoint.npz"


def test_checkpoint_round_trips_exactly(saved, tmp_path):
    ckpt = checkpoint.load(saved)
    checkpoint.save(tmp_path / "copy.npz", ckpt)
    again = checkpoint.load(tmp_path / "copy.npz")
    assert again.config == ckpt.config and again.vocab == ckpt.vocab and again.history == ckpt.history
    for field in ("params", "optimizer"):
        a, b = getattr(ckpt, field), getattr(again, field)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert set(ckpt.optimizer) >= {"t", "m/W_xz", "v/b_q"} and (again.epoch, again.step) == (3, ckpt.step)
    with zipfile.ZipFile(saved) as z:  # plain arrays only: nothing that needs pickle
        assert all(name.endswith(".npy") for name in z.namelist())


def _corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


def _foreign(path: Path) -> None:
    np.savez(path, weights=np.ones(3))


def _pickled(path: Path) -> None:
    np.savez(path, meta=np.array([{"format": "grusym-train-checkpoint"}], dtype=object))


def _other_meta(path: Path) -> None:
    np.savez(path, meta=np.frombuffer(b'{"format": "something-else"}', dtype=np.uint8))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p, d: p.write_bytes(d[: len(d) // 2]), "corrupted|not a readable"),
        (lambda p, d: p.write_bytes(_corrupt_middle(d)), "corrupted|not a readable|inconsistent|unreadable"),
        (lambda p, d: p.write_bytes(b""), "corrupted|not a readable"),
        (lambda p, d: p.write_text("hello, I am text"), "corrupted|not a readable"),
        (lambda p, d: _foreign(p), "not a grusym training checkpoint"),
        (lambda p, d: _pickled(p), "pickled"),
        (lambda p, d: _other_meta(p), "not a grusym training checkpoint"),
    ],
    ids=["truncated", "flipped-bytes", "empty", "text", "foreign-npz", "pickled", "other-format"],
)
def test_damaged_or_foreign_checkpoints_give_a_clear_error(saved, tmp_path, damage, message):
    path = tmp_path / "bad.npz"
    damage(path, saved.read_bytes())
    with pytest.raises(InputError, match=message) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


def test_checkpoint_with_parameters_that_do_not_fit_is_rejected(saved, tmp_path):
    ckpt = checkpoint.load(saved)
    ckpt.params["W_hh"] = np.zeros((3, 3))
    checkpoint.save(tmp_path / "bad.npz", ckpt)
    with pytest.raises(InputError, match="inconsistent"):
        checkpoint.load(tmp_path / "bad.npz")
    ckpt = checkpoint.load(saved)
    ckpt.optimizer.pop("m/W_hh")
    checkpoint.save(tmp_path / "bad2.npz", ckpt)
    with pytest.raises(InputError, match="Adam state"):
        train(None, tmp_path / "out", resume=tmp_path / "bad2.npz", log=quiet, write_plots=False)


def test_checkpoint_missing_one_of_the_cells_states_is_rejected(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a stitch in time saves nine; " * 20)
    config = make_config(text=str(text), hidden=3, steps=5, batch=2, epochs=1, variant="lstm")
    stop = {"at": 3}

    def interrupt(step):
        if step == stop["at"]:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", on_step=interrupt, log=quiet, write_plots=False)
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    assert ckpt.hidden is not None and len(ckpt.hidden) == 2  # h and c, each (batch, hidden)
    ckpt.hidden = ckpt.hidden[:1]  # as a checkpoint written for a one-state cell would be
    checkpoint.save(tmp_path / "bad.npz", ckpt)
    with pytest.raises(InputError, match=r"lstm carries 2 state\(s\), the checkpoint holds 1"):
        checkpoint.load(tmp_path / "bad.npz")


def test_resume_refuses_changed_settings_or_a_changed_text(saved, tmp_path, capsys):
    code = main(["train", "--resume", str(saved), "--hidden", "8", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--hidden 8 disagrees with the checkpoint's 2" in err[0]
    code = main(["train", "--resume", str(saved), "--epochs", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--epochs 2 is fewer than the 3" in err[0]
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh" * 20)
    train(
        make_config(text=str(text), hidden=3, steps=4, batch=2, epochs=1),
        tmp_path / "r",
        log=quiet,
        write_plots=False,
    )
    text.write_text("hgfedcba" * 20)
    with pytest.raises(InputError, match="not the text the checkpoint was trained on"):
        train(None, tmp_path / "r", resume=tmp_path / "r" / "checkpoint.npz", log=quiet, write_plots=False)


def test_compare_variants_writes_a_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["train", "--variant", "gru,rnn_tanh", "--epochs", "30", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "comparison.json").read_text())
    assert set(summary["runs"]) == {"gru", "rnn_tanh"} and (out / "rnn_tanh" / "checkpoint.npz").is_file()
    # it names exactly the comparison files it wrote: no PNG claimed on the core install
    drawn = "comparison.png and " if plots.available() else ""
    assert f"comparison written to {out}/: {drawn}comparison.json" in printed
    assert (out / "comparison.png").is_file() == plots.available()
