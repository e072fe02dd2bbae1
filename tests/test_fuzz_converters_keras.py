"""Converter fuzz, Keras 3: hypothesis draws Keras stacks (GRU with reset_after True or False, LSTM or
SimpleRNN layers; one or two; Bidirectional with each merge mode, None included; use_bias;
return_sequences of the top layer; a go_backwards layer; stateful layers; a Masking layer with batches
padded before, after or around the real steps; zero_output_for_mask; activations; a Dense head) and each
one must be imported exactly or refused by name, never a silent mismatch. Exactly: Keras' output and the
gradient of every Keras variable and of X, in float64 to 1e-12 (tests/keras_harness.py: Keras told to
compute in float64, gradients through torch autograd). A refusal must name what the draw holds that grusym
does not reproduce. Default tier: the profile's examples, derandomized; --thorough: 20x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from grusym.errors import InputError
from grusym.interop import from_keras_layers

from .keras_harness import N, T, bi, check, data, float64, rnn, stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass(frozen=True)
class Config:
    kind: str
    reset_after: bool
    layers: int
    bidirectional: bool
    merge: str | None
    use_bias: bool
    top_sequences: bool
    go_backwards: bool
    stateful: bool
    padding: str | None  # None: no Masking layer; "none", "pre", "post", "both": its batches
    zero_output_for_mask: bool
    activation: str
    head: str | None  # None, "linear", "softmax"


@st.composite
def configs(draw: st.DrawFn) -> Config:
    bidirectional = draw(st.booleans())
    return Config(
        kind=draw(st.sampled_from(["GRU", "LSTM", "SimpleRNN"])),
        reset_after=draw(st.booleans()),
        layers=draw(st.integers(1, 2)),
        bidirectional=bidirectional,
        merge=draw(st.sampled_from(["concat", "sum", "ave", "mul"] * 2 + [None]))
        if bidirectional
        else "concat",
        use_bias=draw(st.booleans()),
        top_sequences=draw(st.booleans()),
        go_backwards=not bidirectional and draw(st.sampled_from([False, False, True])),
        stateful=draw(st.sampled_from([False, False, False, True])),
        padding=draw(st.sampled_from([None, "none", "pre", "post", "both"])),
        zero_output_for_mask=not bidirectional and draw(st.sampled_from([False, False, True])),
        activation=draw(st.sampled_from(["tanh"] * 7 + ["relu"])),
        head=draw(st.sampled_from([None, "linear"] * 3 + ["softmax"])),
    )


PADDINGS = {  # (starts, lengths) of the real steps, n = 3, T = 6
    "none": (np.array([0, 0, 0]), np.array([T, T, T])),
    "pre": (np.array([2, 0, 5]), np.array([4, 6, 1])),
    "post": (np.array([0, 0, 0]), np.array([3, 6, 1])),
    "both": (np.array([1, 0, 2]), np.array([3, 5, 2])),
}


def _keras_stack(c: Config):
    layers = []
    for k in range(c.layers):
        top = k == c.layers - 1
        kw = {
            "return_sequences": c.top_sequences if top else True,
            "use_bias": c.use_bias,
            "stateful": c.stateful,
            "activation": c.activation if k == 0 else "tanh",
        }
        if c.kind == "GRU":
            kw["reset_after"] = c.reset_after
        if top and c.zero_output_for_mask:
            kw["zero_output_for_mask"] = True
        if c.go_backwards:
            kw["go_backwards"] = True
        layer = rnn(c.kind, **kw)
        layers.append(bi(layer, c.merge) if c.bidirectional else layer)
    masking = 0.0 if c.padding is not None else None
    return stack(layers, head=c.head is not None, masking=masking, batch_size=N if c.stateful else None,
                 activation=None if c.head == "linear" else c.head)  # fmt: skip


def _refusals(c: Config) -> list[str]:
    """What in the draw grusym refuses, each as a phrase its message must hold (one of them)."""
    reasons = []
    if c.bidirectional and c.merge is None:
        reasons.append("merge_mode")
    if c.activation != "tanh":
        reasons.append(f"activation={c.activation!r}")
    if c.head == "softmax":
        reasons.append("activation='softmax'")
    if c.go_backwards and c.layers > 1:
        reasons.append("go_backwards=True in a stack")
    if c.zero_output_for_mask and not c.top_sequences:
        reasons.append("zero_output_for_mask=True")
    if c.stateful:
        reasons.append("stateful=True")
    return reasons


@settings(max_examples=settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(c=configs(), seed=st.integers(0, 2**16))
def test_every_keras_configuration_is_imported_exactly_or_refused_by_name(c: Config, seed: int) -> None:
    with float64():
        try:
            model = _keras_stack(c)
            X = data(seed, PADDINGS[c.padding] if c.padding else None)
            model(X)  # builds it; a stateful stack now holds the states this batch left
        except (ValueError, TypeError):  # Keras' own refusal (a merge_mode=None pair into Dense, ...)
            assume(False)
        reasons = _refusals(c)
        try:
            imported = from_keras_layers(model)
        except InputError as error:
            assert reasons, f"refused a configuration grusym reproduces: {error}"
            assert any(r in str(error) for r in reasons), (reasons, str(error))
            if reasons != ["stateful=True"]:
                event("refused by name")
                return
            ours, params, h0 = from_keras_layers(model, states=True)
            imported = (ours, params)
        else:
            assert not reasons, f"imported what it should refuse ({reasons})"
            h0 = None
        event("imported" + (" stateful" if c.stateful else "") + (" masked" if c.padding else ""))
        X2 = data(seed + 1, PADDINGS[c.padding] if c.padding else None)
        check(
            model, X2, last=not c.top_sequences, h0=h0, imported=imported, seed=seed, gradients=not c.stateful
        )
        if c.stateful:  # the next batch starts where this one ended, in Keras and in grusym
            ours, params = imported
            _, cache = ours.forward(params, X2, h0)
            X3 = data(seed + 2, PADDINGS[c.padding] if c.padding else None)
            last = ours.final_states(cache)
            check(model, X3, last=not c.top_sequences, h0=last, imported=imported, seed=seed, gradients=False)
