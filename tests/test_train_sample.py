"""Sampling from a trained model: greedy equals re-reading the whole prefix, draws follow softmax(logits / T)
restricted to the top k, seeds repeat, <unk> never comes out, bad primers name every unknown character,
and ``grusym sample`` reads only the checkpoint (no retraining, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest

import grusym
from grusym.cli import main
from grusym.errors import InputError
from grusym.train import generate, load_trained, make_config, train
from grusym.train.data import UNK, Vocab


def quiet(_line: str) -> None:
    pass


class FixedLogits:
    """A model that ignores its input: every position gets the same logits (exposes forward and head only)."""

    def __init__(self, logits):
        self.logits = np.asarray(logits, dtype=np.float64)

    def forward(self, params, X, h0):
        return np.zeros((X.shape[0], X.shape[1], 1)), None

    def head(self, params, H):
        return np.broadcast_to(self.logits, (*H.shape[:-1], self.logits.size))


PARAMS = {"W_hq": np.zeros((1, 4))}
VOCAB = Vocab(["a", "b", "c"], unk=True)  # <unk>, a, b, c


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    result = train(make_config(), out, log=quiet, write_plots=False)
    return out / "checkpoint.npz", result


def test_greedy_continuation_equals_rereading_the_whole_prefix_each_time(toy_run):
    """The carried state of generate against the plain definition: argmax after the full prefix."""
    model = load_trained(toy_run[0])
    m, p, vocab = grusym.load("gru"), model.params, model.vocab
    text = "Mat"
    for _ in range(12):
        ids = np.array([vocab.tokens.index(c) for c in text])[:, None]
        H, _ = m.forward(p, ids, np.zeros((1, 2), dtype=p["W_hh"].dtype))
        text += vocab.tokens[int(np.argmax(m.head(p, H[-1])[0]))]
    assert generate(m, p, vocab, "Mat", 12) == text[3:]
    assert text == "MathMathMathMat"  # and it learnt the toy text


def test_the_cli_repeats_the_last_logged_sample_without_touching_the_checkpoint(toy_run, capsys):
    path, result = toy_run
    before = path.read_bytes()
    files = sorted(p.name for p in path.parent.iterdir())
    assert main(["sample", str(path), "--length", "16"]) == 0
    printed = capsys.readouterr().out
    logged = result.metrics["samples"][-1]  # "epoch 200: 'Ma' -> 'thMath...'"
    assert logged == f"epoch 200: 'Ma' -> {printed.strip()[2:]!r}" and printed.startswith("Ma")
    assert main(["sample", str(path), "--primer", "th", "--length", "5"]) == 0
    assert capsys.readouterr().out == "thMathM\n"
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == files


def test_python_and_cli_give_the_same_sample(toy_run, capsys):
    """Regression: Trained.sample returned the continuation alone while `grusym sample` printed the primer
    too; both are now primer + continuation (generate alone returns the continuation)."""
    path, _ = toy_run
    model = load_trained(path)
    py = model.sample("aM", 30, temperature=1.5, top_k=3, seed=7)
    assert main(["sample", str(path), "--primer", "aM", "--length", "30", "--temperature", "1.5",
                 "--top-k", "3", "--seed", "7"]) == 0  # fmt: skip
    assert capsys.readouterr().out == py + "\n"
    tail = generate(model.module, model.params, model.vocab, "aM", 30, temperature=1.5, top_k=3, seed=7)
    assert py == "aM" + tail and len(tail) == 30
    assert main(["sample", str(path), "--length", "7"]) == 0  # the default primer, also printed first
    assert capsys.readouterr().out == model.sample(length=7) + "\n" == model.primer + "thMathM\n"


def test_sample_takes_the_folder_train_printed(toy_run, capsys):
    """Regression: `grusym sample RUNDIR` said "checkpoint RUNDIR is not a file"."""
    path, _ = toy_run
    assert main(["sample", str(path.parent), "--length", "12"]) == 0
    from_folder = capsys.readouterr().out
    assert main(["sample", str(path), "--length", "12"]) == 0
    assert capsys.readouterr().out == from_folder == "MathMathMathMa\n"
    assert load_trained(path.parent).sample(length=12) == from_folder.strip()


def test_a_folder_of_several_runs_lists_them_and_an_empty_one_says_so(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["train", "--variant", "gru,lstm", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"grusym sample: error: checkpoint {out} is a folder of 2 runs, each in a subfolder (--variant a,b "
        f"trains one per variant); give one of them: {out / 'gru'}, {out / 'lstm'}\n"
    )
    assert main(["sample", str(out / "lstm"), "--length", "3"]) == 0
    assert capsys.readouterr().out.startswith("Ma")
    (tmp_path / "empty").mkdir()
    assert main(["sample", str(tmp_path / "empty")]) == 2
    assert "is a folder without a checkpoint.npz" in capsys.readouterr().err


def test_top_k_without_a_temperature_is_refused_naming_both(toy_run, capsys):
    """Regression: --top-k 5 at the default temperature 0 was silently ignored (greedy output)."""
    message = "--top-k 5 needs --temperature T > 0: at temperature 0 (the default) the most likely character"
    for extra in ([], ["--temperature", "0"]):
        assert main(["sample", str(toy_run[0]), "--top-k", "5", *extra]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"grusym sample: error: {message}") and err.count("\n") == 1
    with pytest.raises(InputError, match="--top-k 5 needs --temperature T > 0"):
        load_trained(toy_run[0]).sample("Ma", 10, top_k=5)
    assert main(["sample", str(toy_run[0]), "--top-k", "5", "--temperature", "1", "--length", "4"]) == 0


def test_draws_follow_softmax_of_logits_over_temperature():
    logits = [0.0, 1.0, 0.5, -1.0]  # <unk>, a, b, c
    for temperature in (0.5, 1.0, 2.0):
        drawn = generate(FixedLogits(logits), PARAMS, VOCAB, "a", 6000, temperature=temperature, seed=1)
        counts = np.array([drawn.count(c) for c in "abc"]) / len(drawn)
        z = np.exp(np.array(logits[1:]) / temperature)
        np.testing.assert_allclose(counts, z / z.sum(), atol=0.02)  # 6000 draws: sd <= 0.0065


def test_top_k_keeps_only_the_k_most_likely_and_zero_temperature_is_the_argmax():
    model = FixedLogits([0.0, 0.1, 2.0, 1.9])
    assert set(generate(model, PARAMS, VOCAB, "a", 500, temperature=5.0, top_k=2, seed=0)) == {"b", "c"}
    assert set(generate(model, PARAMS, VOCAB, "a", 500, temperature=5.0, top_k=1, seed=0)) == {"b"}
    assert generate(model, PARAMS, VOCAB, "a", 20) == "b" * 20
    assert generate(model, PARAMS, VOCAB, "a", 5, temperature=1e-300) == "b" * 5  # no overflow


def test_unk_is_never_produced_even_when_most_likely():
    model = FixedLogits([9.0, 0.0, 0.0, 0.0])
    assert UNK not in generate(model, PARAMS, VOCAB, "a", 300, temperature=1.0, seed=3)
    assert UNK not in generate(model, PARAMS, VOCAB, "a", 10)


def test_a_seed_repeats_a_sample_and_another_seed_differs():
    model = FixedLogits([0.0, 0.0, 0.0, 0.0])
    one = generate(model, PARAMS, VOCAB, "a", 50, temperature=1.0, seed=11)
    assert one == generate(model, PARAMS, VOCAB, "a", 50, temperature=1.0, seed=11)
    assert one != generate(model, PARAMS, VOCAB, "a", 50, temperature=1.0, seed=12)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": -1}, "--length must be an integer >= 0"),
        ({"length": 2.5}, "--length must be an integer >= 0"),
        ({"temperature": -0.1}, "--temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "--temperature must be a finite number >= 0"),
        ({"top_k": 0, "temperature": 1.0}, "--top-k must be an integer >= 1"),
        ({"top_k": 2}, "--top-k 2 needs --temperature T > 0"),
        ({"seed": -2}, "--seed must be an integer >= 0"),
        (
            {"primer": "aZz!"},
            "--primer: 'Z', 'z', '!' are not in the model's vocabulary of 3 characters 'abc'",
        ),
        ({"primer": UNK}, "not in the model's vocabulary"),
    ],
)
def test_bad_options_name_the_problem(options, message):
    args = {"primer": "ab", "length": 3, **options}
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        generate(FixedLogits([0, 0, 0, 0]), PARAMS, VOCAB, args.pop("primer"), args.pop("length"), **args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--primer", "Mq"], "--primer: 'q' is not in the model's vocabulary of 4 characters 'hatM'"),
        (["--primer", ""], "--primer must hold at least one character"),
        (["--length", "-1"], "argument --length: expected an integer >= 0"),
        (["--temperature", "inf"], "argument --temperature: expected a finite number >= 0"),
        (["--top-k", "0"], "argument --top-k: expected a positive integer"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(toy_run, capsys, argv, message):
    assert main(["sample", str(toy_run[0]), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grusym sample: error:") and message in err[0], err


def test_sampling_an_adding_problem_run_is_refused(tmp_path, capsys):
    train(make_config(task="adding", length=4, hidden=3, epochs=1), tmp_path, log=quiet, write_plots=False)
    assert main(["sample", str(tmp_path / "checkpoint.npz")]) == 2
    err = capsys.readouterr().err
    assert "is a --task adding run; only a language model (--task lm) generates text" in err


@pytest.mark.parametrize(
    ("name", "options"),
    [("gru", {"num_layers": 2}), ("lstm", {}), ("lstm", {"num_layers": 2}), ("gru_reset_after", {})],
    ids=["gru-2-layers", "lstm", "lstm-2-layers", "gru_reset_after"],
)
def test_streaming_generation_of_other_models_equals_rereading_the_prefix(name, options):
    """generate steps any model with ``step`` (layers, several states); the plain definition re-runs
    ``forward`` over the whole prefix from zeros and takes the argmax of the head at the last position."""
    model = grusym.load(name, **options)
    params = model.init_params(4, 5, 4, seed=2, scale=0.8)
    vocab, ids = Vocab(["a", "b", "c"], unk=True), [1, 2]
    for _ in range(8):
        H, _ = model.forward(params, np.array(ids)[:, None], None)
        logits = model.head(params, H[-1])[0].copy()
        logits[0] = -np.inf  # <unk> is never produced
        ids.append(int(np.argmax(logits)))
    assert generate(model, params, vocab, "ab", 8) == vocab.decode(ids[2:])
    drawn = generate(model, params, vocab, "ab", 40, temperature=1.0, seed=4)
    assert len(drawn) == 40 and set(drawn) <= set("abc")
