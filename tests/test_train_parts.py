"""The training demo's parts against independent computations: optimisers (closed forms, torch), the
vocabulary (seed 000's dictionary), batching (corpus slices, state carrying), the adding problem (its data,
its 1/6 baseline, its readout gradient) and greedy sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grusym
from grusym.errors import InputError
from grusym.gradcheck import check_gradients
from grusym.train import data, optim, tasks
from grusym.train.config import make_config

# ---- optimisers ------------------------------------------------------------------------------------------


def _quadratic(seed=0, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, shape), rng.normal(size=shape)  # curvature a > 0, start x0


def test_sgd_on_a_quadratic_follows_the_closed_form():
    a, x0 = _quadratic()
    params = {"x": x0.copy()}
    sgd = optim.SGD(params, lr=0.3)
    for _ in range(7):
        sgd.step(params, {"x": a * params["x"]})  # gradient of sum(a x^2 / 2)
    np.testing.assert_allclose(params["x"], (1 - 0.3 * a) ** 7 * x0, rtol=1e-13)


def _adam_textbook(x, grads_of, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
    """Algorithm 1 of Kingma & Ba, written out directly (bias-corrected moments)."""
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grads_of(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        x = x - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return x


def test_adam_matches_the_textbook_algorithm_on_a_quadratic():
    a, x0 = _quadratic(1)
    params = {"x": x0.copy()}
    adam = optim.Adam(params, lr=0.05)
    for _ in range(50):
        adam.step(params, {"x": a * params["x"]})
    expected = _adam_textbook(x0.copy(), lambda x: a * x, 0.05, 50)
    np.testing.assert_allclose(params["x"], expected, rtol=1e-10, atol=1e-14)
    assert np.abs(params["x"]).max() < np.abs(x0).max()  # and it descends


def test_adam_first_step_moves_every_coordinate_by_lr():
    # with m = g and v = g^2 after one bias-corrected step, the update is lr * g / (|g| + eps)
    params = {"x": np.array([1.0, -2.0, 3.0])}
    optim.Adam(params, lr=0.1).step(params, {"x": np.array([5.0, -0.01, 1e3])})
    np.testing.assert_allclose(params["x"], [0.9, -1.9, 2.9], rtol=1e-6)


@pytest.mark.torch
def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    a, x0 = _quadratic(2)
    params = {"x": x0.copy()}
    adam = optim.Adam(params, lr=0.02)
    xt = torch.tensor(x0.copy(), requires_grad=True)
    ref = torch.optim.Adam([xt], lr=0.02)
    for _ in range(20):
        adam.step(params, {"x": a * params["x"]})
        ref.zero_grad()
        (0.5 * torch.tensor(a) * xt**2).sum().backward()
        ref.step()
    np.testing.assert_allclose(params["x"], xt.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_clipping_scales_the_global_norm_to_theta_and_keeps_direction():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    flat = np.concatenate([g.ravel() for g in grads.values()])
    norm = optim.clip_grads(grads, 0.5)
    assert norm == pytest.approx(np.linalg.norm(flat), rel=1e-14)
    clipped = np.concatenate([g.ravel() for g in grads.values()])
    np.testing.assert_allclose(clipped, flat * 0.5 / np.linalg.norm(flat), rtol=1e-14)
    small = {"a": np.array([0.1, 0.2])}
    optim.clip_grads(small, 1.0)
    np.testing.assert_array_equal(small["a"], [0.1, 0.2])  # under theta: unchanged
    big = {"a": np.array([30.0, 40.0])}
    optim.clip_grads(big, 0.0)
    np.testing.assert_array_equal(big["a"], [30.0, 40.0])  # theta 0: clipping off


def test_adam_state_round_trips_and_rejects_foreign_state():
    params = {"x": np.ones(3)}
    adam = optim.Adam(params, lr=0.1)
    adam.step(params, {"x": np.array([1.0, 2.0, 3.0])})
    other = optim.Adam({"x": np.ones(3)}, lr=0.1)
    other.load_state(adam.state())
    assert (
        other.t == 1
        and np.array_equal(other.m["x"], adam.m["x"])
        and np.array_equal(other.v["x"], adam.v["x"])
    )
    with pytest.raises(InputError, match="Adam state"):
        other.load_state({"t": np.array(1)})
    with pytest.raises(InputError, match="SGD has no state"):
        optim.SGD(params, 1.0).load_state(adam.state())


# ---- vocabulary and batches ------------------------------------------------------------------------------


def test_toy_vocabulary_is_the_seeds_dictionary():
    vocab = data.Vocab(data.TOY_VOCAB, unk=False)
    # seed 000: {'h': 0, 'a': 1, 't': 2, 'M': 3}; MathMath = [3, 1, 2, 0, 3, 1, 2, 0]
    assert vocab.encode("MathMath").tolist() == [3, 1, 2, 0, 3, 1, 2, 0]
    assert vocab.decode([3, 1, 2, 0]) == "Math"
    with pytest.raises(InputError, match="'x' is not in the vocabulary"):
        vocab.encode("Max")


def test_text_vocabulary_orders_by_frequency_and_maps_unknowns_to_unk():
    vocab = data.Vocab.from_text("abracadabra")
    assert vocab.tokens == (data.UNK, "a", "b", "r", "c", "d")  # a:5, b:2, r:2, c:1, d:1
    assert vocab.encode("cab?").tolist() == [4, 1, 2, 0]
    assert vocab.decode(vocab.encode("abracadabra")) == "abracadabra"
    assert data.Vocab.from_json(vocab.to_json()) == vocab


def test_one_hot_rows_select_the_ids():
    X = np.array([[0, 2], [1, 1]])
    oh = data.one_hot(X, 3)
    assert oh.shape == (2, 2, 3) and (oh.argmax(-1) == X).all() and oh.sum() == 4


CORPUS = np.arange(1000, 1000 + 203)  # distinct values: every slice is identifiable


@pytest.mark.parametrize("offset", [0, 2])
def test_sequential_batches_continue_each_row_where_the_last_batch_ended(offset):
    batches = data.sequential_batches(CORPUS, batch=4, steps=5, offset=offset)
    assert len(batches) == (len(CORPUS) - offset - 1) // 4 // 5
    rows = np.concatenate([X for X, _ in batches], axis=0).T  # (batch, all steps)
    for row in rows:
        start = int(np.searchsorted(CORPUS, row[0]))
        np.testing.assert_array_equal(row, CORPUS[start : start + len(row)])  # contiguous across batches
    for X, Y in batches:
        assert X.shape == Y.shape == (5, 4)
        np.testing.assert_array_equal(Y, X + 1)  # the next token of the corpus


def test_random_batches_are_corpus_slices_in_random_order():
    batches = data.random_batches(CORPUS, batch=4, steps=5, rng=np.random.default_rng(0))
    starts = []
    for X, Y in batches:
        np.testing.assert_array_equal(X[1:], X[:-1] + 1)  # each column is a contiguous slice
        np.testing.assert_array_equal(Y, X + 1)
        starts += X[0].tolist()
    assert len(set(starts)) == len(starts) and starts != sorted(starts)


def test_carried_state_equals_running_the_whole_row_at_once():
    """Sequential partitioning + carrying h_T: two batches give the states of one 2T-long forward pass."""
    m = grusym.load("gru")
    ids = np.random.default_rng(0).integers(0, 6, 200)
    (X1, _), (X2, _) = data.sequential_batches(ids, batch=3, steps=4)[:2]
    p = m.init_params(6, 5, 6, seed=1, scale=0.5)
    h0 = np.zeros((3, 5))
    H1, _ = m.forward(p, X1, h0)
    H2, _ = m.forward(p, X2, H1[-1])
    H, _ = m.forward(p, np.concatenate([X1, X2]), h0)
    np.testing.assert_allclose(np.concatenate([H1, H2]), H, rtol=1e-13, atol=1e-15)


def _manual_epoch(config, params, batches, carry):
    """d2l's train_epoch_ch8 written out: loss_and_grads, clip, SGD; state carried or fresh."""
    m = grusym.load(config.variant)
    h = np.zeros((config.batch, config.hidden))
    for k, (X, Y) in enumerate(batches):
        h0 = h if (carry and k > 0) else np.zeros_like(h)
        _, g, h = m.loss_and_grads(params, X, Y, h0)
        g = {k2: g[k2] for k2 in params}
        norm = math.sqrt(sum(float((v**2).sum()) for v in g.values()))
        scale = min(1.0, config.clip / norm)
        for k2 in params:
            params[k2] = params[k2] - config.lr * scale * g[k2]
    return params


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_training_loop_is_the_textbook_epoch(tmp_path, sampling):
    """One epoch of ``train`` equals a hand-written loop: sequential carries h_T, random starts fresh."""
    from grusym.train import train

    text = "the quick brown fox jumps over the lazy dog. " * 6
    path = tmp_path / "t.txt"
    path.write_text(text)
    config = make_config(
        text=str(path), hidden=5, steps=4, batch=3, epochs=1, sampling=sampling, dtype="float64"
    )
    result = train(config, tmp_path / "out", log=lambda s: None, write_plots=False)
    task = tasks.LanguageModel(config)
    m = grusym.load("gru")
    expected = _manual_epoch(
        config,
        m.init_params(*task.sizes, seed=0, scale=0.01),
        task.batches(0),
        carry=sampling == "sequential",
    )
    for k, v in expected.items():
        np.testing.assert_allclose(result.params[k], v, rtol=1e-12, atol=1e-15, err_msg=k)
    # and the two partitionings really differ in how they treat the state
    other = _manual_epoch(
        config,
        m.init_params(*task.sizes, seed=0, scale=0.01),
        task.batches(0),
        carry=sampling != "sequential",
    )
    assert not np.allclose(other["W_hq"], result.params["W_hq"], rtol=1e-9, atol=0)


def test_epoch_batches_are_a_pure_function_of_seed_and_epoch():
    a = data.batches_for_epoch(CORPUS, 4, 5, "random", seed=3, epoch=7)
    b = data.batches_for_epoch(CORPUS, 4, 5, "random", seed=3, epoch=7)
    c = data.batches_for_epoch(CORPUS, 4, 5, "random", seed=3, epoch=8)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=False))


# ---- the adding problem ----------------------------------------------------------------------------------


def test_adding_data_marks_one_value_in_each_half_and_sums_them():
    X, y = tasks.adding_batch(np.random.default_rng(0), 10, 500)
    values, marker = X[..., 0], X[..., 1]
    assert X.shape == (10, 500, 2) and ((values >= 0) & (values < 1)).all()
    assert (marker[:5].sum(0) == 1).all() and (marker[5:].sum(0) == 1).all()
    for i in range(0, 500, 50):
        marked = [values[t, i] for t in range(10) if marker[t, i] == 1]
        assert y[i] == pytest.approx(sum(marked), abs=1e-15)


def test_always_predicting_one_scores_a_sixth():
    _, y = tasks.adding_batch(np.random.default_rng(1), 20, 200_000)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.002)


@pytest.mark.parametrize("name", ["gru", "rnn_tanh"])
def test_adding_readout_gradients_pass_the_gradient_check(name):
    m = grusym.load(name)
    rng = np.random.default_rng(0)
    params = m.init_params(2, 4, 1, seed=0, scale=0.7)
    params = {k: (v if v.ndim == 2 else rng.normal(0, 0.3, v.shape)) for k, v in params.items()}
    X, y = tasks.adding_batch(rng, 6, 3)
    inputs = {**params, "h0": rng.normal(0, 0.5, (3, 4)), "X": X}

    def split(x):
        return {k: x[k] for k in params}, x["X"], x["h0"]

    def fun(x):  # the MSE written from forward and head alone
        p, Xx, h0 = split(x)
        H, _ = m.forward(p, Xx, h0)
        return np.mean((m.head(p, H[-1])[:, 0] - y) ** 2)

    def grad_fun(x):
        p, Xx, h0 = split(x)
        return tasks.adding_loss_and_grads(m, p, Xx, y, h0)[1]

    report = check_gradients(fun, grad_fun, inputs)
    assert report.ok, str(report)


def test_gru_learns_a_short_adding_problem(tmp_path):
    from grusym.train import train

    config = make_config(task="adding", length=10, hidden=16, epochs=3)
    result = train(config, tmp_path, log=lambda s: None, write_plots=False)
    assert result.metrics["history"][0]["test_mse"] > 0.05
    assert result.metrics["final_test_mse"] < 0.02


@pytest.mark.slow
def test_gru_solves_length_100_while_rnn_tanh_stays_near_a_sixth(tmp_path):
    """The seeds' long-dependency claim, measured (about 30-60 s per variant on an idle 2-core machine)."""
    from grusym.train import train

    gru = train(
        make_config(task="adding", length=100, variant="gru"),
        tmp_path / "gru",
        log=lambda s: None,
        write_plots=False,
    )
    rnn = train(
        make_config(task="adding", length=100, variant="rnn_tanh"), tmp_path / "rnn", log=lambda s: None
    )
    assert gru.metrics["final_test_mse"] < 0.01
    assert rnn.metrics["final_test_mse"] > 0.12


# ---- sampling --------------------------------------------------------------------------------------------


def test_generate_rejects_a_primer_outside_the_vocabulary_naming_every_character():
    from grusym.train.sample import generate

    m = grusym.load("gru")
    p = m.init_params(4, 2, 4)
    assert len(generate(m, p, data.Vocab(data.TOY_VOCAB, unk=False), "Ma", 5)) == 5
    for vocab in (data.Vocab(data.TOY_VOCAB, unk=False), data.Vocab(data.TOY_VOCAB[:3], unk=True)):
        with pytest.raises(InputError, match=r"--primer: 'x', 'M'|--primer: 'x' is"):
            generate(m, p, vocab, "xMx", 5)
    with pytest.raises(InputError, match="--primer must hold at least one character"):
        generate(m, p, data.Vocab(data.TOY_VOCAB, unk=False), "", 5)
