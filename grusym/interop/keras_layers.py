"""Keras ``GRU`` layers (stacked, ``Bidirectional``, with a ``Dense`` head) <-> grusym parameters.

Keras ``GRU``: ``kernel`` (d, 3h) and ``recurrent_kernel`` (h, 3h) with column blocks z, r, h; ``bias``
(2, 3h) when ``reset_after=True`` (row 0 input bias, row 1 recurrent bias), else (3h,); ``Dense`` head
``kernel`` (o, q), ``bias`` (q,). Keras computes ``h = z*h_prev + (1-z)*h_tilde`` (z keeps the old state);
``reset_after=True`` (the Keras 3 default) applies the reset gate after the hidden matmul: variant
``gru_reset_after``; ``reset_after=False`` before it: variant ``gru``.

Contract: NumPy only, Keras is never imported: layers are read through ``get_config()`` and
``get_weights()``. Every function returns new arrays in the dtype it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import load
from ..errors import InputError, ShapeError
from ..model.structure import Structure
from ..validate import shape_text
from ._common import (
    Array,
    Cell,
    Params,
    array,
    blocks,
    cell_spec,
    check,
    expect,
    gate_axis,
    join_cells,
    one_dtype,
)

__all__ = ["from_keras_gru", "from_keras_layers", "from_keras_lstm", "to_keras_gru"]

_GATES = ("z", "r", "h")  # Keras column blocks


def _keras_variant(reset_after: object) -> str:
    if not isinstance(reset_after, (bool, np.bool_)):
        raise InputError(f"reset_after must be True or False, got {reset_after!r}")
    return "gru_reset_after" if reset_after else "gru"


def from_keras_gru(
    kernel: Any,
    recurrent_kernel: Any,
    bias: Any,
    reset_after: bool = True,
    head: tuple[Any, Any] | None = None,
) -> Params:
    """Parameters of a Keras ``GRU`` layer (``layer.get_weights()``): ``gru_reset_after`` or ``gru``.

    kernel: (d, 3h); recurrent_kernel: (h, 3h); column blocks z, r, h. bias: (2, 3h) when ``reset_after``
    (row 0 the input bias, row 1 the recurrent bias), else (3h,); None for ``use_bias=False`` (zeros).
    head: an optional Keras ``Dense`` layer's ``(kernel (h, q), bias (q,) or None)``, giving ``W_hq``,
    ``b_q`` unchanged. Assumes the defaults ``activation="tanh"``, ``recurrent_activation="sigmoid"``
    (older standalone Keras and ``tf.compat.v1`` GRU layers default to hard_sigmoid: a different function).

    ``reset_after=True`` (the TF2/Keras 3 default) gives ``gru_reset_after`` with ``b_z`` and ``b_r`` the
    sums of the two bias rows (only the sum matters) and ``b_xh``, ``b_hh`` the rows' h blocks;
    ``reset_after=False`` gives ``gru`` (d2l), whose single bias row is ``b_z``, ``b_r``, ``b_h``.
    """
    variant = _keras_variant(reset_after)
    arrays = {
        "kernel": array("kernel", kernel),
        "recurrent_kernel": array("recurrent_kernel", recurrent_kernel),
    }
    nh = gate_axis("kernel", arrays["kernel"], 1, "(d, 3h)")
    expect(
        "recurrent_kernel", arrays["recurrent_kernel"], (nh, 3 * nh), "(h, 3h)", f" (h = {nh} from kernel)"
    )
    bias_shape = (2, 3 * nh) if reset_after else (3 * nh,)
    if bias is None:
        arrays["bias"] = np.zeros(bias_shape, arrays["kernel"].dtype)
    else:
        arrays["bias"] = array("bias", bias)
        if arrays["bias"].shape != bias_shape:
            other = (
                "(3h,) is a reset_after=False bias" if reset_after else "(2, 3h) is a reset_after=True bias"
            )
            raise ShapeError(
                f"bias must have shape {'(2, 3h)' if reset_after else '(3h,)'} = {shape_text(bias_shape)} "
                f"with h = {nh} from kernel when reset_after={bool(reset_after)}, got "
                f"{shape_text(arrays['bias'].shape)} ({other}: check reset_after)"
            )
    if head is not None:
        if not isinstance(head, (tuple, list)) or len(head) != 2:
            raise InputError("head must be a Dense layer's (kernel, bias) pair; bias may be None")
        arrays["head kernel"] = w = array("head kernel", head[0])
        if w.ndim != 2 or w.shape[0] != nh or w.shape[1] == 0:
            raise ShapeError(f"head kernel must have shape (h = {nh}, q), got {shape_text(w.shape)}")
        if head[1] is not None:
            arrays["head bias"] = array("head bias", head[1])
            expect("head bias", arrays["head bias"], (w.shape[1],), "(q,)")
    one_dtype(arrays)
    k = blocks(arrays["kernel"], 1, _GATES)
    rk = blocks(arrays["recurrent_kernel"], 1, _GATES)
    params = {"W_xz": k["z"].copy(), "W_hz": rk["z"].copy()}
    if reset_after:
        b_in, b_rec = blocks(arrays["bias"][0], 0, _GATES), blocks(arrays["bias"][1], 0, _GATES)
        params["b_z"] = b_in["z"] + b_rec["z"]
        params.update(W_xr=k["r"].copy(), W_hr=rk["r"].copy(), b_r=b_in["r"] + b_rec["r"])
        params.update(W_xh=k["h"].copy(), b_xh=b_in["h"].copy(), W_hh=rk["h"].copy(), b_hh=b_rec["h"].copy())
    else:
        b = blocks(arrays["bias"], 0, _GATES)
        params["b_z"] = b["z"].copy()
        params.update(W_xr=k["r"].copy(), W_hr=rk["r"].copy(), b_r=b["r"].copy())
        params.update(W_xh=k["h"].copy(), W_hh=rk["h"].copy(), b_h=b["h"].copy())
    assert list(params) == list(cell_spec(variant))
    if head is not None:
        w = arrays["head kernel"]
        params["W_hq"] = w
        params["b_q"] = arrays.get("head bias", np.zeros(w.shape[1], w.dtype))
    return params


def to_keras_gru(
    params: Mapping[str, Any], reset_after: bool = True
) -> tuple[list[Array], list[Array] | None]:
    """Keras weights of ``gru_reset_after`` (``reset_after=True``) or ``gru`` (``reset_after=False``) params.

    Returns ``([kernel (d, 3h), recurrent_kernel (h, 3h), bias], dense)`` ready for
    ``gru_layer.set_weights(...)``, with bias (2, 3h) when ``reset_after`` else (3h,), and ``dense`` the
    ``[kernel (h, q), bias (q,)]`` of a ``Dense`` head (None when params has no head). With
    ``reset_after`` the r and z biases go whole into the input row and the recurrent row gets zeros there,
    so params -> Keras -> params is exact and Keras -> params -> Keras keeps the function, not the split.
    """
    variant = _keras_variant(reset_after)
    p, dims, dtype, has_head = check(variant, params)
    kernel = np.concatenate([p["W_xz"], p["W_xr"], p["W_xh"]], axis=1)
    recurrent = np.concatenate([p["W_hz"], p["W_hr"], p["W_hh"]], axis=1)
    if reset_after:
        zeros = np.zeros(dims["h"], dtype)
        bias = np.stack(
            [np.concatenate([p["b_z"], p["b_r"], p["b_xh"]]), np.concatenate([zeros, zeros, p["b_hh"]])]
        )
    else:
        bias = np.concatenate([p["b_z"], p["b_r"], p["b_h"]])
    dense = [p["W_hq"].copy(), p["b_q"].copy()] if has_head else None
    return [kernel, recurrent, bias], dense


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


def from_keras_lstm(kernel: Any, recurrent_kernel: Any, bias: Any) -> Params:
    """``lstm`` parameters of a Keras ``LSTM`` layer (``layer.get_weights()``).

    kernel: (d, 4h); recurrent_kernel: (h, 4h); column blocks i, f, c, o (c is our g); bias (4h,), or None
    for ``use_bias=False``. Keras has one bias row: it becomes ``b_x<g>``, and ``b_h<g>`` is zero.
    """
    arrays = {
        "kernel": array("kernel", kernel),
        "recurrent_kernel": array("recurrent_kernel", recurrent_kernel),
    }
    nh = gate_axis("kernel", arrays["kernel"], 1, "(d, 4h)", 4)
    note = f" (h = {nh} from kernel)"
    expect("recurrent_kernel", arrays["recurrent_kernel"], (nh, 4 * nh), "(h, 4h)", note)
    arrays["bias"] = np.zeros(4 * nh, arrays["kernel"].dtype) if bias is None else array("bias", bias)
    expect("bias", arrays["bias"], (4 * nh,), "(4h,)", note)
    one_dtype(arrays)
    gates = ("i", "f", "g", "o")
    k, rk, b = (
        blocks(arrays[name], a, gates) for name, a in (("kernel", 1), ("recurrent_kernel", 1), ("bias", 0))
    )
    zeros = np.zeros(nh, arrays["kernel"].dtype)
    params: Params = {}
    for g in gates:
        params.update(
            {f"W_x{g}": k[g].copy(), f"W_h{g}": rk[g].copy(), f"b_x{g}": b[g].copy(), f"b_h{g}": zeros.copy()}
        )
    return params


_CELLS = ("GRU", "LSTM")


def _cell(
    layer: Any, kind: str, reset_after: bool | None, backwards: bool
) -> tuple[Params, bool | None, int]:
    """One Keras GRU or LSTM layer's params, its reset_after (GRU) and units; checks the settings grusym
    reproduces."""
    config = _config(layer)
    if type(layer).__name__ != kind:
        raise InputError(f"{_name(layer)}: expected a {kind} layer like the others")
    _activation(layer, config, "activation", "tanh")
    _activation(layer, config, "recurrent_activation", "sigmoid")
    if bool(config.get("go_backwards", False)) != backwards:
        raise InputError(
            f"{_name(layer)} has go_backwards={config.get('go_backwards')!r}; wrap the layer in "
            "Bidirectional instead (a lone go_backwards layer returns its outputs in reversed order)"
        )
    weights = list(layer.get_weights())
    use_bias = bool(config.get("use_bias", True))
    if len(weights) != (3 if use_bias else 2):
        raise InputError(f"{_name(layer)} holds {len(weights)} weight arrays; is it built (called on data)?")
    bias = weights[2] if use_bias else None
    units = int(weights[1].shape[0])
    if kind == "LSTM":
        return from_keras_lstm(weights[0], weights[1], bias), None, units
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


def from_keras_layers(layers: Any, states: bool = False) -> Any:
    """The grusym model and params of a stack of Keras ``GRU``/``LSTM`` or ``Bidirectional`` layers.

    layers: a Keras model (its ``.layers``) or a list of layers: one or more ``GRU`` (or ``LSTM``) layers,
    or one or more ``Bidirectional(GRU(...), merge_mode="concat")`` layers, optionally followed by one
    ``Dense`` head with the linear activation (``InputLayer`` entries are skipped). Every layer but the
    last must have ``return_sequences=True``; all share ``units`` (and ``reset_after``); activations must
    be the defaults tanh and sigmoid. Dropout, being off at inference, is ignored; masks are not read
    (pass ``lengths``).

    Stateful layers (``stateful=True``) start each batch from the states the previous one left, so their
    current states are part of the model: they are refused unless ``states=True``, which returns them as
    a third value ``h0``, stacked as ``model.forward`` takes it ((num_layers * num_directions, n, h), a
    tuple (h0, c0) for LSTM; zeros for layers that are not stateful). Feed ``model.final_states(cache)``
    as the next batch's ``h0``, as Keras does.

    Returns ``(model, params)``: ``model = grusym.load(variant, num_layers, bidirectional, batch_first=True)``
    (Keras is batch-major: X (n, T, d), H (n, T, o)), with variant ``gru_reset_after`` for
    ``reset_after=True``, ``gru`` for ``False``, ``lstm`` for LSTM layers. ``model.forward(params, X)[0]``
    is the last layer's output sequence (the ``Dense`` layer applied to it: ``model.head(params, H)``).
    """
    found = list(getattr(layers, "layers", layers))
    found = [layer for layer in found if type(layer).__name__ != "InputLayer"]
    dense = found.pop() if found and type(found[-1]).__name__ == "Dense" else None
    if not found:
        raise InputError("no recurrent layers given; expected GRU, LSTM or Bidirectional layers, then Dense")
    kinds = {type(layer).__name__ for layer in found}
    if kinds not in ({"GRU"}, {"LSTM"}, {"Bidirectional"}):
        raise InputError(
            "expected only GRU layers, only LSTM layers or only Bidirectional layers (then an optional "
            f"Dense), got {[type(layer).__name__ for layer in found]}"
        )
    bidirectional = kinds == {"Bidirectional"}
    inner = {type(layer.forward_layer).__name__ for layer in found} if bidirectional else kinds
    kind = next(iter(inner))
    if len(inner) != 1 or kind not in _CELLS:
        raise InputError(f"expected GRU or LSTM layers (all of one kind), got {sorted(inner)}")
    if not isinstance(states, (bool, np.bool_)):
        raise InputError(f"states must be True or False, got {states!r}")
    cells: dict[Cell, Params] = {}
    current: dict[Cell, tuple[Array, ...]] = {}
    reset_after: bool | None = None
    units: int | None = None
    for k, layer in enumerate(found):
        config = _config(layer)
        if bidirectional:
            if config.get("merge_mode", "concat") != "concat":
                raise InputError(
                    f"{_name(layer)} has merge_mode={config.get('merge_mode')!r}; grusym concatenates "
                    "the directions (merge_mode='concat') only"
                )
            pairs = [("forward", layer.forward_layer, False), ("reverse", layer.backward_layer, True)]
        else:
            pairs = [("forward", layer, False)]
        for direction, rnn, backwards in pairs:
            last = _config(rnn).get("return_sequences", False)
            if k < len(found) - 1 and not last:
                raise InputError(f"{_name(rnn)} feeds another layer but has return_sequences=False")
            cells[(k, direction)], reset_after, size = _cell(rnn, kind, reset_after, backwards)
            if units is not None and size != units:
                raise ShapeError(f"{_name(rnn)} has units={size} but the layers below have {units}")
            units = size
            if _config(rnn).get("stateful", False):
                if not states:
                    raise InputError(
                        f"{_name(rnn)} has stateful=True: each batch starts from the states the previous "
                        "one left, not from zeros; from_keras_layers(model, states=True) returns them as h0 "
                        "(model, params, h0 = ...)"
                    )
                dtype = cells[(k, direction)]["W_hz" if kind == "GRU" else "W_hi"].dtype
                current[(k, direction)] = _current_states(rnn, kind, size, dtype)
    assert units is not None
    structure = Structure(len(found), ("forward", "reverse") if bidirectional else ("forward",), True)
    head = None
    if dense is not None:
        config = _config(dense)
        _activation(dense, config, "activation", "linear")
        weights = list(dense.get_weights())
        width = len(structure.directions) * units
        w = array(f"{_name(dense)} kernel", weights[0])
        if w.ndim != 2 or w.shape[0] != width:
            raise ShapeError(
                f"{_name(dense)} kernel must have shape (o = {width}, q), got {shape_text(w.shape)}"
            )
        b = array(f"{_name(dense)} bias", weights[1]) if len(weights) > 1 else np.zeros(w.shape[1], w.dtype)
        expect(f"{_name(dense)} bias", b, (w.shape[1],), "(q,)")
        head = {"W_hq": w, "b_q": b}
    variant = "lstm" if kind == "LSTM" else "gru_reset_after" if reset_after else "gru"
    params = join_cells(structure, cells, head)
    one_dtype(params)
    model = load(variant, structure.num_layers, bidirectional, batch_first=True)
    if not states:
        return model, params
    return model, params, _stacked_states(structure, current, len(model.STATES), units, params)


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
