"""Keras stacks (``GRU``, ``LSTM``, ``SimpleRNN`` layers, ``Bidirectional`` ones with any merge mode, a
``Masking`` layer in front and a ``Dense`` head) <-> a grusym model and its parameters.

What Keras does and the model reproduces: ``Bidirectional`` merge modes concat/sum/ave/mul
(``Structure.merge``); a lone ``go_backwards`` layer, which returns its outputs last step first
(``flip_output``); masks (a ``Masking`` layer, the model's ``mask_value``, or a boolean mask passed as
``lengths``), padded before the real steps (``pad_sequences``' default) or after; the outputs at masked
steps (``pad_outputs``: a layer with ``zero_output_for_mask=False`` carries its last output on); stateful
layers' current states. Contract: NumPy only, Keras is never imported: layers are read through
``get_config()``, ``get_weights()`` and ``states``; every function returns new arrays in the dtype it was
given. One layer's weights: :mod:`.keras_cells`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any, Literal, overload

import numpy as np

from .. import load
from ..errors import InputError, ShapeError
from ..model import Model, build
from ..model.structure import MERGES, Structure
from ..validate import shape_text
from ._common import Array, Cell, Params, array, check_model, expect, join_cells, mapping, one_dtype
from .keras_cells import (
    from_keras_gru,
    from_keras_lstm,
    from_keras_rnn,
    to_keras_gru,
    to_keras_lstm,
    to_keras_rnn,
)

__all__ = ["from_keras_layers", "to_keras"]

_KINDS = {"GRU": None, "LSTM": "lstm", "SimpleRNN": "rnn_tanh"}  # GRU: by reset_after
_KIND_OF = {"gru": "GRU", "gru_reset_after": "GRU", "lstm": "LSTM", "rnn_tanh": "SimpleRNN"}


def _config(layer: Any) -> dict[str, Any]:
    get = getattr(layer, "get_config", None)
    if not callable(get):
        raise InputError(
            f"expected a Keras layer (with get_config and get_weights), got {type(layer).__name__}"
        )
    return dict(get())


def _name(layer: Any) -> str:
    return f"{type(layer).__name__} layer {getattr(layer, 'name', '?')!r}"


def _activation(layer: Any, config: Mapping[str, Any], key: str, default: str) -> None:
    value = config.get(key, default)
    if value != default:
        raise InputError(f"{_name(layer)} has {key}={value!r}; grusym's cells compute {key}={default!r} only")


def _cell(layer: Any, kind: str, reset_after: bool | None) -> tuple[Params, bool | None, int]:
    """One Keras GRU, LSTM or SimpleRNN layer's params, its reset_after (GRU) and units; checks the
    settings grusym reproduces."""
    config = _config(layer)
    if type(layer).__name__ != kind:
        raise InputError(f"{_name(layer)}: expected a {kind} layer like the others")
    _activation(layer, config, "activation", "tanh")
    if kind != "SimpleRNN":
        _activation(layer, config, "recurrent_activation", "sigmoid")
    weights = list(layer.get_weights())
    use_bias = bool(config.get("use_bias", True))
    if len(weights) != (3 if use_bias else 2):
        raise InputError(f"{_name(layer)} holds {len(weights)} weight arrays; is it built (called on data)?")
    bias = weights[2] if use_bias else None
    units = int(weights[1].shape[0])
    if kind == "LSTM":
        return from_keras_lstm(weights[0], weights[1], bias), None, units
    if kind == "SimpleRNN":
        return from_keras_rnn(weights[0], weights[1], bias), None, units
    ra = config.get("reset_after", True)
    if reset_after is not None and ra != reset_after:
        raise InputError(
            f"{_name(layer)} has reset_after={ra!r} but the layers below have reset_after={reset_after!r}"
        )
    return from_keras_gru(weights[0], weights[1], bias, reset_after=ra), ra, units


def _current_states(rnn: Any, kind: str, units: int, dtype: Any) -> tuple[Array, ...]:
    """A stateful layer's states now, (n, h) each in Keras' order (h, or h and c): where its next batch
    starts."""
    held = list(getattr(rnn, "states", None) or [])
    if len(held) != (2 if kind == "LSTM" else 1) or any(s is None for s in held):
        raise InputError(f"{_name(rnn)} is stateful but holds no states yet; call it on a batch first")
    arrays = tuple(array(f"{_name(rnn)} state", s).astype(dtype) for s in held)
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != units:
            raise ShapeError(
                f"{_name(rnn)} holds a state of shape {shape_text(a.shape)}, expected (n, {units})"
            )
    return arrays


def _stack(layers: Any) -> tuple[list[Any], Any, Any]:
    """The recurrent layers, the Masking layer in front (or None) and the Dense head (or None)."""
    found = [layer for layer in getattr(layers, "layers", layers) if type(layer).__name__ != "InputLayer"]
    masking = found.pop(0) if found and type(found[0]).__name__ == "Masking" else None
    dense = found.pop() if found and type(found[-1]).__name__ == "Dense" else None
    if not found:
        raise InputError(
            "no recurrent layers given; expected GRU, LSTM, SimpleRNN or Bidirectional layers (after an "
            "optional Masking layer), then an optional Dense"
        )
    kinds = {type(layer).__name__ for layer in found}
    if kinds not in ({"GRU"}, {"LSTM"}, {"SimpleRNN"}, {"Bidirectional"}):
        raise InputError(
            "expected only GRU layers, only LSTM layers, only SimpleRNN layers or only Bidirectional layers "
            "(after an optional Masking, then an optional Dense), got "
            f"{[type(layer).__name__ for layer in found]}"
        )
    return found, masking, dense


@overload
def from_keras_layers(layers: Any, states: Literal[False] = False) -> tuple[Model, Params]: ...


@overload
def from_keras_layers(layers: Any, states: Literal[True]) -> tuple[Model, Params, Any]: ...


def from_keras_layers(layers: Any, states: bool = False) -> tuple[Model, Params] | tuple[Model, Params, Any]:
    """The grusym model and params of a stack of Keras ``GRU``/``LSTM``/``SimpleRNN`` or ``Bidirectional``
    layers.

    layers: a Keras model (its ``.layers``) or a list of layers: an optional ``Masking`` layer, one or more
    ``GRU`` (or ``LSTM``, or ``SimpleRNN``) layers, or one or more ``Bidirectional`` ones (one merge mode:
    concat, sum, ave or mul), optionally followed by one ``Dense`` head with the linear activation
    (``InputLayer`` entries are skipped). Every layer but the last must have ``return_sequences=True``; all
    share ``units`` (and ``reset_after``); activations must be the defaults tanh and sigmoid. A lone
    layer may have ``go_backwards=True``. Dropout, being off at inference, is ignored.

    Masks: with a ``Masking`` layer the model treats a step whose features all equal its ``mask_value``
    as padding; or pass Keras' boolean mask (n, T) as ``lengths``. Each sequence's real steps must be one
    run, before or after the padding (``pad_sequences`` pads in front by default). The outputs at masked
    steps are Keras': zeros, or a unidirectional layer's last output carried on (``zero_output_for_mask
    =False``, its default).

    Stateful layers (``stateful=True``) start each batch from the states the previous one left, so their
    current states are part of the model: they are refused unless ``states=True``, which returns them as
    a third value ``h0``, stacked as ``model.forward`` takes it ((num_layers * num_directions, n, h), a
    tuple (h0, c0) for LSTM; zeros for layers that are not stateful; None when no layer is). Feed
    ``model.final_states(cache)`` as the next batch's ``h0``, as Keras does.

    Returns ``(model, params)``: ``model`` is batch-first like Keras (X (n, T, d), H (n, T, o)), variant
    ``gru_reset_after`` for ``reset_after=True``, ``gru`` for ``False``, ``lstm``, ``rnn_tanh`` for
    SimpleRNN. ``model.forward(params, X)[0]`` is the last layer's output sequence (the ``Dense`` layer
    applied to it: ``model.head(params, H)``); a last layer with ``return_sequences=False`` returns
    ``final_states``' top rows (merged as its merge mode says).
    """
    if not isinstance(states, (bool, np.bool_)):
        raise InputError(f"states must be True or False, got {states!r}")
    found, masking, dense = _stack(layers)
    bidirectional = type(found[0]).__name__ == "Bidirectional"
    inner = (
        {type(layer.forward_layer).__name__ for layer in found}
        if bidirectional
        else {type(found[0]).__name__}
    )
    kind = next(iter(inner))
    if len(inner) != 1 or kind not in _KINDS:
        raise InputError(f"expected GRU, LSTM or SimpleRNN layers (all of one kind), got {sorted(inner)}")
    merges = {_config(layer).get("merge_mode", "concat") for layer in found} if bidirectional else {"concat"}
    if len(merges) != 1 or next(iter(merges)) not in MERGES:
        raise InputError(
            f"{_name(found[0])}: merge_mode {sorted(map(str, merges))}; grusym merges the directions as "
            f"one of {', '.join(MERGES)}, the same in every layer (merge_mode=None returns two outputs)"
        )
    merge = merges.pop()
    cells: dict[Cell, Params] = {}
    current: dict[Cell, tuple[Array, ...]] = {}
    reset_after: bool | None = None
    units: int | None = None
    backwards = False
    for k, layer in enumerate(found):
        top = k == len(found) - 1
        if bidirectional:
            pairs = [("forward", layer.forward_layer, False), ("reverse", layer.backward_layer, True)]
        else:
            backwards = bool(_config(layer).get("go_backwards", False))
            if backwards and len(found) > 1:
                raise InputError(
                    f"{_name(layer)} has go_backwards=True in a stack: the layers above would read its "
                    "outputs last step first; grusym places a lone go_backwards layer, or Bidirectional"
                )
            pairs = [("reverse" if backwards else "forward", layer, backwards)]
        for direction, rnn, want_backwards in pairs:
            config = _config(rnn)
            if bool(config.get("go_backwards", False)) != want_backwards:
                raise InputError(
                    f"{_name(rnn)} has go_backwards={config.get('go_backwards')!r} inside Bidirectional; "
                    "grusym reads a forward layer and its backward twin"
                )
            if not top and not config.get("return_sequences", False):
                raise InputError(f"{_name(rnn)} feeds another layer but has return_sequences=False")
            if top and config.get("zero_output_for_mask") and not config.get("return_sequences", False):
                raise InputError(
                    f"{_name(rnn)} has zero_output_for_mask=True and return_sequences=False: for a masked "
                    "last step Keras returns zeros, not the last state"
                )
            cells[(k, direction)], reset_after, size = _cell(rnn, kind, reset_after)
            if units is not None and size != units:
                raise ShapeError(f"{_name(rnn)} has units={size} but the layers below have {units}")
            units = size
            if config.get("stateful", False):
                if not states:
                    raise InputError(
                        f"{_name(rnn)} has stateful=True: each batch starts from the states the previous "
                        "one left, not from zeros; from_keras_layers(model, states=True) returns them as h0 "
                        "(model, params, h0 = ...)"
                    )
                dtype = next(iter(cells[(k, direction)].values())).dtype
                current[(k, direction)] = _current_states(rnn, kind, size, dtype)
    assert units is not None
    directions = ("forward", "reverse") if bidirectional else (("reverse",) if backwards else ("forward",))
    top_config = _config(found[-1].forward_layer if bidirectional else found[-1])
    carry = not top_config.get("zero_output_for_mask", False) and not (
        bidirectional and top_config.get("return_sequences", False)  # Bidirectional forces zeros then
    )
    structure = Structure(len(found), directions, True, merge, backwards, "carry" if carry else "zeros")
    head = _dense_head(dense, structure.width(units)) if dense is not None else None
    variant = _KINDS[kind] or ("gru_reset_after" if reset_after else "gru")
    params = join_cells(structure, cells, head)
    one_dtype(params)
    mask_value = None
    if masking is not None:
        mask_value = float(_config(masking).get("mask_value", 0.0))
    model = build(
        load(variant), structure.num_layers, directions, True, merge=merge, flip_output=backwards,
        pad_outputs=structure.pad_outputs, mask_value=mask_value,
    )  # fmt: skip
    if not states:
        return model, params
    return model, params, _stacked_states(structure, current, len(model.STATES), units, params)


def _dense_head(dense: Any, width: int) -> Params:
    config = _config(dense)
    _activation(dense, config, "activation", "linear")
    weights = list(dense.get_weights())
    w = array(f"{_name(dense)} kernel", weights[0])
    if w.ndim != 2 or w.shape[0] != width:
        raise ShapeError(f"{_name(dense)} kernel must have shape (o = {width}, q), got {shape_text(w.shape)}")
    b = array(f"{_name(dense)} bias", weights[1]) if len(weights) > 1 else np.zeros(w.shape[1], w.dtype)
    expect(f"{_name(dense)} bias", b, (w.shape[1],), "(q,)")
    return {"W_hq": w, "b_q": b}


def _stacked_states(
    structure: Structure, current: dict[Cell, tuple[Array, ...]], count: int, units: int, params: Params
) -> Any:
    """The states of every cell stacked as torch stacks them (zeros for cells that are not stateful)."""
    if not current:
        return None  # no layer is stateful: every batch starts from zeros
    sizes = {a.shape[0] for held in current.values() for a in held}
    if len(sizes) > 1:
        raise ShapeError(f"the stateful layers hold states of different batch sizes {sorted(sizes)}")
    n = sizes.pop()
    dtype = next(iter(params.values())).dtype
    stacks = [
        np.stack([current[c][i] if c in current else np.zeros((n, units), dtype) for c in structure.cells])
        for i in range(count)
    ]
    return stacks[0] if count == 1 else tuple(stacks)


def _cell_weights(variant: str, p: Params, use_bias: bool, gradients: bool) -> list[Array]:
    if variant in ("gru", "gru_reset_after"):
        return to_keras_gru(p, variant == "gru_reset_after", use_bias, gradients)[0]
    if variant == "lstm":
        return to_keras_lstm(p, use_bias, gradients)[0]
    return to_keras_rnn(p, use_bias, gradients)[0]


def to_keras(
    model: ModuleType | Model, params: Mapping[str, Any], layers: Any = None, gradients: bool = False
) -> list[list[Array]]:
    """Keras weights of a whole grusym model: one list per Keras layer with weights, in order (each
    recurrent layer, a ``Bidirectional`` one's forward then backward weights, as its ``get_weights()``
    orders them; then the ``Dense`` head when params hold one).

    model: a grusym model (or cell module) of ``gru_reset_after`` (Keras ``GRU(reset_after=True)``),
    ``gru`` (``reset_after=False``), ``lstm`` (``LSTM``: one bias row, the sum of grusym's two) or
    ``rnn_tanh`` (``SimpleRNN``); the layers are batch-first in Keras, merged as ``model.structure.merge``.
    layers: optionally the Keras model (or list of layers) to load them into: its recurrent layers and
    Dense head are checked against the model (kind, reset_after, direction, merge, units, use_bias) and
    set with ``set_weights``. gradients=True: grusym's gradients laid out as Keras' variables (as those
    of ``layers`` when given, which are then only read: a layer without bias gets no bias gradient).
    """
    variant = getattr(model, "VARIANT", None)
    if variant not in _KIND_OF:
        raise InputError(
            f"Keras has no layer for grusym's {variant!r} cell; to_keras converts gru_reset_after, gru, "
            "lstm and rnn_tanh"
        )
    structure = getattr(model, "structure", Structure())
    values = mapping("params", params)
    if gradients:
        values = {k: v for k, v in values.items() if k not in ("h0", "c0", "X")}
    found_structure, cells, head, dims, _ = check_model(variant, values, structure.merge)
    if (found_structure.num_layers, found_structure.directions) != (
        structure.num_layers,
        structure.directions,
    ):
        raise InputError(
            f"params are a {found_structure.describe()} model's, not a {structure.describe()} one's"
        )
    targets = (
        _targets(layers, structure, variant, dims["h"], head is not None) if layers is not None else None
    )
    out: list[list[Array]] = []
    for layer in range(structure.num_layers):
        weights: list[Array] = []
        for d in structure.directions:
            use_bias = True if targets is None else targets[layer][1][structure.directions.index(d)]
            weights += _cell_weights(variant, cells[(layer, d)], use_bias, bool(gradients))
        out.append(weights)
    if head is not None:
        out.append([head["W_hq"].copy(), head["b_q"].copy()])
    if targets is not None and not gradients:
        for (keras_layer, _), weights in zip(targets, out, strict=True):
            keras_layer.set_weights(weights)
    return out


def _targets(
    layers: Any, structure: Structure, variant: str, units: int, head: bool
) -> list[tuple[Any, list[bool]]]:
    """The Keras layers to load, each with its directions' use_bias, checked against the model."""
    found, _, dense = _stack(layers)
    kind = _KIND_OF[variant]
    if len(found) != structure.num_layers:
        raise InputError(
            f"the Keras stack has {len(found)} recurrent layers; the model {structure.num_layers}"
        )
    out: list[tuple[Any, list[bool]]] = []
    for layer in found:
        config = _config(layer)
        bidirectional = type(layer).__name__ == "Bidirectional"
        if bidirectional != (len(structure.directions) == 2):
            raise InputError(f"{_name(layer)} does not match the model's directions {structure.directions}")
        if bidirectional and config.get("merge_mode", "concat") != structure.merge:
            raise InputError(
                f"{_name(layer)} has merge_mode={config.get('merge_mode')!r}; the model merges by "
                f"{structure.merge!r}"
            )
        inner = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
        biases = []
        for rnn in inner:
            c = _config(rnn)
            if type(rnn).__name__ != kind or int(c.get("units", units)) != units:
                raise InputError(f"{_name(rnn)} is not a {kind}(units={units}) layer like the model's cells")
            if kind == "GRU" and bool(c.get("reset_after", True)) != (variant == "gru_reset_after"):
                raise InputError(
                    f"{_name(rnn)} has reset_after={c.get('reset_after')!r}; the model is {variant!r}"
                )
            if not bidirectional and bool(c.get("go_backwards", False)) != (
                structure.directions == ("reverse",)
            ):
                raise InputError(
                    f"{_name(rnn)} has go_backwards={c.get('go_backwards')!r}; the model runs "
                    f"{structure.directions}"
                )
            biases.append(bool(c.get("use_bias", True)))
        out.append((layer, biases))
    if head:
        if dense is None:
            raise InputError("params hold a head (W_hq, b_q) but the Keras stack has no Dense layer")
        out.append((dense, [True]))
    return out
