"""What a newcomer meets in a first hour of ``grusym train`` (issue 29): an earlier run is never silently
overwritten, a finished run is not rewritten by ``--resume``, the curves' epoch axis counts real epochs, the
printed lines say what they mean, and the default dtype is float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grusym.cli import main
from grusym.errors import InputError
from grusym.train import checkpoint, make_config, plots, train
from grusym.train.data import SAMPLE_TEXT


def quiet(_line: str) -> None:
    pass


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (a rewrite with equal bytes shows too)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_train_over_an_earlier_run_is_refused_and_force_trains_over_it(tmp_path, capsys):
    """Regression: `grusym train --out DIR` over an earlier run overwrote it without a word."""
    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(run)]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", "--epochs", "3", "--out", str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"grusym train: error: --out {run} already holds a run; continue it with --resume {run}, or give "
        "--force to train over it (its files are overwritten), or choose another --out\n"
    )
    assert _snapshot(run) == before
    assert main(["train", "--epochs", "3", "--out", str(run), "--force"]) == 0
    assert checkpoint.load(run).epoch == 3 and "after 3 epochs" in capsys.readouterr().out


def test_several_variants_over_earlier_runs_train_none_of_them(tmp_path, capsys):
    base = tmp_path / "cmp"
    (base / "lstm").mkdir(parents=True)
    assert main(["train", "--epochs", "1", "--variant", "lstm", "--out", str(base / "lstm")]) == 0
    capsys.readouterr()
    assert main(["train", "--epochs", "1", "--variant", "gru,lstm", "--out", str(base)]) == 2
    err = capsys.readouterr().err
    assert f"--out {base} already holds runs of lstm; continue one with --resume {base / 'lstm'}" in err
    assert not (base / "gru").exists()  # refused before the first variant trained


def test_resume_into_another_folder_that_holds_a_run_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(a), "--epochs", "2", "--out", str(b)]) == 2
    assert f"--out {b} already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(a), "--epochs", "2"]) == 0  # into its own folder: the point
    assert checkpoint.load(a).epoch == 2


def test_resuming_a_finished_run_says_so_and_writes_nothing(tmp_path, capsys):
    """Regression: `--resume` of a finished run printed "done" again and rewrote the checkpoint."""
    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(run)]) == 0
    before = _snapshot(run)
    capsys.readouterr()
    for given in (run, run / "checkpoint.npz"):
        assert main(["train", "--resume", str(given)]) == 0
        assert capsys.readouterr().out == (
            f"{run / 'checkpoint.npz'} is a finished run (2 of 2 epochs): nothing trained, nothing written; "
            "to train on, resume with --epochs N above 2\n"
        )
    result = train(None, run, resume=run, log=quiet)
    assert result.status == "already finished" and result.metrics["epochs"] == 2
    assert _snapshot(run) == before
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert checkpoint.load(run).epoch == 3


def test_the_curves_epoch_axis_ends_at_the_last_epoch(tmp_path):
    """Regression: the toy's loss.png ran to about 267 for a 200-epoch run (steps divided by the first
    epoch's batch count, while its epochs have 2 or 3 batches). Checked on the series the PNGs draw."""
    result = train(make_config(), tmp_path, log=quiet, write_plots=False)
    m = result.metrics
    assert m["steps"] / len(_first_epoch()) > 250  # the epochs differ in length: the old axis reached 266.5
    assert m["trace"]["columns"] == ["step", "epoch", "loss"]
    drawn = plots.curves(m["history"], "lm", m["trace"]["points"])
    assert set(drawn) == {"loss.png", "perplexity.png"}
    for name, (_, series) in drawn.items():
        for label, points in series.items():
            if not points:
                continue  # the toy holds nothing out
            xs = [x for x, _ in points]
            assert xs == sorted(xs) and 0 < xs[0] <= 1 and xs[-1] == 200, (name, label)
    # the same from the files a finished run leaves: metrics.json holds the points the PNGs are drawn from
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["trace"]["points"][-1][:2] == [m["steps"], 200]


def _first_epoch() -> list:
    from grusym.train.tasks import make_task

    return make_task(make_config()).batches(0)


def test_the_adding_problems_curve_and_log_line(tmp_path):
    """The adding problem's mse.png axis also ends at its last epoch, and each logged line says that its
    pairs are target -> prediction (it printed "0.613 -> 0.882" unexplained)."""
    lines: list[str] = []
    config = make_config(task="adding", length=6, hidden=4, batch=8, epochs=2)
    result = train(config, tmp_path, log=lines.append, write_plots=False)
    ((_, series),) = plots.curves(
        result.metrics["history"], "adding", result.metrics["trace"]["points"]
    ).values()
    assert all(points[-1][0] == 2 for points in series.values() if points)
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert all("test mse" in line and "  target -> prediction: " in line for line in epoch_lines)
    pairs = epoch_lines[-1].split("target -> prediction: ")[1].split(", ")
    assert len(pairs) == 3 and all(len(p.split(" -> ")) == 2 for p in pairs)


def test_an_old_checkpoints_trace_points_get_their_epoch(tmp_path):
    """A version-2 checkpoint stored trace points as [step, loss]; resumed, they are placed as the old
    curves placed them and the new ones carry their epoch."""
    run = tmp_path / "run"
    train(make_config(epochs=2), run, log=quiet, write_plots=False)
    ckpt = checkpoint.load(run)
    ckpt.trace = [[step, loss] for step, _, loss in ckpt.trace]
    checkpoint.save(run / "checkpoint.npz", ckpt)
    result = train(make_config(epochs=3), run, resume=run, log=quiet, write_plots=False)
    points = result.metrics["trace"]["points"]
    assert all(len(p) == 3 for p in points) and points[-1][1] == 3
    assert points[0][1] == pytest.approx(points[0][0] / len(_first_epoch()))


def test_the_header_counts_the_vocabulary_as_the_primer_error_does(tmp_path, capsys):
    """Regression: the header said "vocabulary of 73" (the unknown token included) where a bad primer said
    "vocabulary of 72 characters"; both now count characters, and the header adds the unknown token."""
    text = tmp_path / "t.txt"
    text.write_text("abcab cabca " * 40)
    assert main(["train", "--text", str(text), "--hidden", "3", "--steps", "4", "--batch", "2",
                 "--epochs", "1", "--out", str(tmp_path / "run")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    header = f"on {text} (480 characters, the last 48 held out, vocabulary of 4 characters 'abc ' + <unk>)"
    assert header in out
    assert main(["sample", str(tmp_path / "run"), "--primer", "ax"]) == 2
    assert "'x' is not in the model's vocabulary of 4 characters 'abc '" in capsys.readouterr().err


def test_one_epoch_is_singular(tmp_path, capsys):
    """Regression: "after 1 epochs"."""
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "; 1 epoch; seed 0;" in out and "done: perplexity " in out and " after 1 epoch (" in out


def test_training_defaults_to_float32_and_says_so(tmp_path, capsys):
    """float32 is what frameworks train in and what the README recommends; float64 stays one option away."""
    assert make_config().dtype == make_config(task="adding").dtype == make_config(text="x").dtype == "float32"
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert {v.dtype for v in checkpoint.load(tmp_path / "a").params.values()} == {np.dtype(np.float32)}
    assert main(["train", "--epochs", "1", "--dtype", "float64", "--out", str(tmp_path / "b")]) == 0
    assert {v.dtype for v in checkpoint.load(tmp_path / "b").params.values()} == {np.dtype(np.float64)}
    capsys.readouterr()
    assert main(["train", "--help"]) == 0
    assert "(default: float32)" in " ".join(capsys.readouterr().out.split())


def test_sample_text_header_is_the_readme_header(tmp_path, capsys):
    """The shipped text's header, one step in (--max-seconds), as the README's training block prints it."""
    out = tmp_path / "pride"
    assert main(["train", "--text", str(SAMPLE_TEXT), "--epochs", "10", "--max-seconds", "0.001",
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"training gru (hidden 256) on {SAMPLE_TEXT} (95998 characters, the last 9600 held out, "
        "vocabulary of 72 characters + <unk>)"
    )
    assert printed[1] == (
        f"  batch 32 x 35 steps, sequential sampling; sgd lr 1, clip 1; 10 epochs; seed 0; outputs in {out}"
    )
    with pytest.raises(InputError, match="vocabulary of 72 characters"):
        from grusym.train import load_trained

        load_trained(out).sample("€")
