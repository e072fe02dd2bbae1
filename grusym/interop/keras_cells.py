"""One Keras ``GRU``, ``LSTM`` or ``SimpleRNN`` layer's weights <-> one grusym cell's parameters.

Keras ``GRU``: ``kernel`` (d, 3h) and ``recurrent_kernel`` (h, 3h) with column blocks z, r, h; ``bias``
(2, 3h) when ``reset_after=True`` (row 0 input bias, row 1 recurrent bias), else (3h,). Keras computes
``h = z*h_prev + (1-z)*h_tilde`` (z keeps the old state); ``reset_after=True`` (the Keras 3 default) applies
the reset gate after the hidden matmul: variant ``gru_reset_after``; ``reset_after=False`` before it:
variant ``gru``. ``LSTM``: column blocks i, f, c, o (c is our g), one bias row (4h,): variant ``lstm``.
``SimpleRNN``: ``kernel`` (d, h), ``recurrent_kernel`` (h, h), ``bias`` (h,), tanh: variant ``rnn_tanh``.
``use_bias=False`` layers hold no bias (zeros here). :mod:`.keras_layers` reads whole stacks.

Contract: NumPy only, Keras is never imported. Every function returns new arrays in the dtype it was
given. ``to_keras_*(..., gradients=True)`` lays grusym's gradients out as Keras' variables: where Keras
keeps two bias rows whose sum grusym keeps (a reset-after GRU's z and r), both rows get that gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, ShapeError
from ..model.structure import structure_of
from ..validate import shape_text
from ._common import Array, Params, array, blocks, cell_spec, check, expect, gate_axis, mapping, one_dtype

__all__ = [
    "from_keras_gru",
    "from_keras_lstm",
    "from_keras_rnn",
    "keras_variant",
    "to_keras_gru",
    "to_keras_lstm",
    "to_keras_rnn",
]

_GATES = ("z", "r", "h")  # Keras GRU column blocks
_LSTM_GATES = ("i", "f", "g", "o")  # Keras LSTM column blocks i, f, c, o
_STATE_KEYS = ("h0", "c0", "X")


def keras_variant(reset_after: object) -> str:
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
    variant = keras_variant(reset_after)
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
    k, rk, b = (
        blocks(arrays[name], a, _LSTM_GATES)
        for name, a in (("kernel", 1), ("recurrent_kernel", 1), ("bias", 0))
    )
    zeros = np.zeros(nh, arrays["kernel"].dtype)
    params: Params = {}
    for g in _LSTM_GATES:
        params.update(
            {f"W_x{g}": k[g].copy(), f"W_h{g}": rk[g].copy(), f"b_x{g}": b[g].copy(), f"b_h{g}": zeros.copy()}
        )
    return params


def from_keras_rnn(kernel: Any, recurrent_kernel: Any, bias: Any) -> Params:
    """``rnn_tanh`` parameters of a Keras ``SimpleRNN`` layer: kernel (d, h), recurrent_kernel (h, h),
    bias (h,) or None (``use_bias=False``)."""
    arrays = {
        "kernel": array("kernel", kernel),
        "recurrent_kernel": array("recurrent_kernel", recurrent_kernel),
    }
    nh = gate_axis("kernel", arrays["kernel"], 1, "(d, h)", 1)
    expect("recurrent_kernel", arrays["recurrent_kernel"], (nh, nh), "(h, h)", f" (h = {nh} from kernel)")
    arrays["bias"] = np.zeros(nh, arrays["kernel"].dtype) if bias is None else array("bias", bias)
    expect("bias", arrays["bias"], (nh,), "(h,)")
    one_dtype(arrays)
    return {"W_xh": arrays["kernel"], "W_hh": arrays["recurrent_kernel"], "b_h": arrays["bias"]}


def _one_cell(
    params: Any, variant: str, gradients: object, what: str
) -> tuple[Params, dict[str, int], Any, bool]:
    """One cell's params (or gradients: states' and input's ignored), checked; a model's are refused."""
    if not isinstance(gradients, (bool, np.bool_)):
        raise InputError(f"gradients must be True or False, got {gradients!r}")
    values = mapping("params", params)
    if gradients:
        values = {k: v for k, v in values.items() if k not in _STATE_KEYS}
    structure = structure_of(map(str, values))
    if not structure.single:
        raise InputError(
            f"{what} converts one cell (one Keras layer); these params are a {structure.describe()} model: "
            "to_keras(model, params) gives every layer's weights"
        )
    return check(variant, values)


def _no_bias(p: Params, use_bias: object, gradients: bool, layer: str) -> bool:
    if not isinstance(use_bias, (bool, np.bool_)):
        raise InputError(f"use_bias must be True or False, got {use_bias!r}")
    if not use_bias and not gradients:
        nonzero = [k for k in p if k.startswith("b_") and k != "b_q" and np.any(p[k])]
        if nonzero:
            raise InputError(f"params[{nonzero[0]!r}] is not zero, but a {layer}(use_bias=False) has no bias")
    return not use_bias


def to_keras_gru(
    params: Mapping[str, Any], reset_after: bool = True, use_bias: bool = True, gradients: bool = False
) -> tuple[list[Array], list[Array] | None]:
    """Keras weights of ``gru_reset_after`` (``reset_after=True``) or ``gru`` (``reset_after=False``) params.

    Returns ``([kernel (d, 3h), recurrent_kernel (h, 3h), bias], dense)`` ready for
    ``gru_layer.set_weights(...)``, with bias (2, 3h) when ``reset_after`` else (3h,) (no bias for
    ``use_bias=False``, which refuses nonzero biases), and ``dense`` the ``[kernel (h, q), bias (q,)]`` of a
    ``Dense`` head (None when params has no head). With ``reset_after`` the r and z biases go whole into
    the input row and the recurrent row gets zeros there, so params -> Keras -> params is exact and Keras ->
    params -> Keras keeps the function, not the split (``gradients=True``: both rows get the gradient).
    One cell: a model's params are refused (:func:`grusym.interop.to_keras` converts stacks).
    """
    variant = keras_variant(reset_after)
    p, dims, dtype, has_head = _one_cell(params, variant, gradients, "to_keras_gru")
    kernel = np.concatenate([p["W_xz"], p["W_xr"], p["W_xh"]], axis=1)
    recurrent = np.concatenate([p["W_hz"], p["W_hr"], p["W_hh"]], axis=1)
    if reset_after:
        zeros = np.zeros(dims["h"], dtype)
        shared = [p["b_z"], p["b_r"]] if gradients else [zeros, zeros]
        bias = np.stack(
            [np.concatenate([p["b_z"], p["b_r"], p["b_xh"]]), np.concatenate([*shared, p["b_hh"]])]
        )
    else:
        bias = np.concatenate([p["b_z"], p["b_r"], p["b_h"]])
    dense = [p["W_hq"].copy(), p["b_q"].copy()] if has_head else None
    drop = _no_bias(p, use_bias, bool(gradients), "GRU")
    return ([kernel, recurrent] if drop else [kernel, recurrent, bias]), dense


def to_keras_lstm(
    params: Mapping[str, Any], use_bias: bool = True, gradients: bool = False
) -> tuple[list[Array], list[Array] | None]:
    """Keras ``LSTM`` weights ``[kernel (d, 4h), recurrent_kernel (h, 4h), bias (4h,)]`` (and the Dense head
    or None) of one ``lstm`` cell. Keras keeps one bias row where torch and grusym keep two: it is their sum
    ``b_x<g> + b_h<g>`` (the function is kept, the split is not; ``gradients=True``: the gradient of either,
    which grusym gives equal)."""
    p, _, _, has_head = _one_cell(params, "lstm", gradients, "to_keras_lstm")
    kernel = np.concatenate([p[f"W_x{g}"] for g in _LSTM_GATES], axis=1)
    recurrent = np.concatenate([p[f"W_h{g}"] for g in _LSTM_GATES], axis=1)
    rows = [p[f"b_x{g}"] if gradients else p[f"b_x{g}"] + p[f"b_h{g}"] for g in _LSTM_GATES]
    dense = [p["W_hq"].copy(), p["b_q"].copy()] if has_head else None
    drop = _no_bias(p, use_bias, bool(gradients), "LSTM")
    return ([kernel, recurrent] if drop else [kernel, recurrent, np.concatenate(rows)]), dense


def to_keras_rnn(
    params: Mapping[str, Any], use_bias: bool = True, gradients: bool = False
) -> tuple[list[Array], list[Array] | None]:
    """Keras ``SimpleRNN`` weights ``[kernel (d, h), recurrent_kernel (h, h), bias (h,)]`` (and the Dense head
    or None) of one ``rnn_tanh`` cell."""
    p, _, _, has_head = _one_cell(params, "rnn_tanh", gradients, "to_keras_rnn")
    dense = [p["W_hq"].copy(), p["b_q"].copy()] if has_head else None
    weights = [p["W_xh"].copy(), p["W_hh"].copy()]
    drop = _no_bias(p, use_bias, bool(gradients), "SimpleRNN")
    return (weights if drop else [*weights, p["b_h"].copy()]), dense
