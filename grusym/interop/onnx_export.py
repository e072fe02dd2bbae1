"""A grusym model written as an ONNX graph that onnxruntime runs: one ``GRU``, ``LSTM`` or ``RNN`` node per
layer in torch.onnx.export's style, so :func:`grusym.interop.from_onnx` reads it back.

Contract: the only module of :mod:`grusym.interop` that imports a framework, ``onnx``, and only when
:func:`to_onnx` is called (the ``onnx`` extra). The graph: input ``X`` (the model's layout, floats), and
when asked ``h0`` (``c0``) (num_layers * num_directions, n, h) and ``lengths`` (n,) int32; outputs ``H``
(the model's H), ``h_n`` (``c_n``) (what ``final_states`` returns) and ``logits`` when params hold the head.
Nodes are layout 0 (onnxruntime refuses layout 1): a batch-first model transposes X and H around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import InputError
from ..model import Model
from ..model.structure import Structure
from ._common import Array, Params, check_model

__all__ = ["to_onnx"]

OPSET = 14  # GRU/LSTM/RNN with layout; onnxruntime runs it


def _gru_weights(p: Params, variant: str) -> tuple[Array, Array, Array]:
    W = np.concatenate([p["W_xz"].T, p["W_xr"].T, p["W_xh"].T])  # ONNX row blocks z, r, h
    R = np.concatenate([p["W_hz"].T, p["W_hr"].T, p["W_hh"].T])
    zeros = np.zeros_like(p["b_z"])
    if variant == "gru":  # h_tilde's bias is one: ONNX adds Wb_h and Rb_h
        B = np.concatenate([p["b_z"], p["b_r"], p["b_h"], zeros, zeros, zeros])
    else:
        B = np.concatenate([p["b_z"], p["b_r"], p["b_xh"], zeros, zeros, p["b_hh"]])
    return W, R, B


def _lstm_weights(p: Params, variant: str) -> tuple[Array, Array, Array]:
    gates = ("i", "o", "f", "g")  # ONNX row blocks i, o, f, c
    W = np.concatenate([p[f"W_x{g}"].T for g in gates])
    R = np.concatenate([p[f"W_h{g}"].T for g in gates])
    B = np.concatenate([*(p[f"b_x{g}"] for g in gates), *(p[f"b_h{g}"] for g in gates)])
    return W, R, B


def _rnn_weights(p: Params, variant: str) -> tuple[Array, Array, Array]:
    return p["W_xh"].T, p["W_hh"].T, np.concatenate([p["b_h"], np.zeros_like(p["b_h"])])


_OPS: dict[str, tuple[str, dict[str, Any], Any]] = {  # variant -> op, extra attributes, weights
    "gru": ("GRU", {"linear_before_reset": 0}, _gru_weights),
    "gru_reset_after": ("GRU", {"linear_before_reset": 1}, _gru_weights),
    "lstm": ("LSTM", {}, _lstm_weights),
    "rnn_tanh": ("RNN", {}, _rnn_weights),
}


def to_onnx(
    model: ModuleType | Model,
    params: Mapping[str, Any],
    path: str | Path | None = None,
    initial_states: bool = False,
    lengths: bool = False,
) -> Any:
    """The ONNX ModelProto of ``model`` with ``params`` (written to ``path`` too when given).

    model: a grusym model or cell module of ``gru`` (ONNX ``linear_before_reset=0``), ``gru_reset_after``
    (``=1``), ``lstm`` or ``rnn_tanh``, any layers and directions, time-major or batch-first, directions
    concatenated (the Keras merge modes, reversed outputs and masking values are refused by name).
    initial_states: the graph takes ``h0`` (and ``c0``) stacks, else it starts from zeros; lengths: it
    takes ``lengths`` (n,) int32 (ONNX ``sequence_lens``: padded steps after each sequence's end). The
    weights keep params' dtype; onnxruntime's recurrent kernels run float32. Needs the ``onnx`` package.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # pragma: no cover - the onnx extra is missing
        raise InputError('to_onnx needs the onnx package: pip install "grusym[onnx]"') from None
    variant = getattr(model, "VARIANT", None)
    if variant not in _OPS:
        raise InputError(
            f"ONNX has no node for grusym's {variant!r} cell; to_onnx writes gru, gru_reset_after, lstm and "
            "rnn_tanh"
        )
    s: Structure = getattr(model, "structure", Structure())
    for what, odd in (
        (f"merge={s.merge!r}", s.merge != "concat" and len(s.directions) == 2),
        ("flip_output=True", s.flip_output),
        (f"pad_outputs={s.pad_outputs!r}", s.pad_outputs != "zeros"),
        (
            f"mask_value={getattr(model, 'mask_value', None)!r}",
            getattr(model, "mask_value", None) is not None,
        ),
    ):
        if odd:
            raise InputError(
                f"the model has {what} (Keras'); ONNX's recurrent nodes concatenate the directions"
            )
    found, cells, head, dims, dtype = check_model(variant, params)
    if (found.num_layers, found.directions) != (s.num_layers, s.directions):
        raise InputError(f"params are a {found.describe()} model's, not a {s.describe()} one's")
    op, attrs, weights = _OPS[variant]
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    states = ("h", "c") if op == "LSTM" else ("h",)
    D, nh = len(s.directions), dims["h"]
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    inputs = [helper.make_tensor_value_info("X", elem, ["n", "T", "d"] if s.batch_first else ["T", "n", "d"])]
    if initial_states:
        inputs += [helper.make_tensor_value_info(f"{k}0", elem, [len(s.cells), "n", nh]) for k in states]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["n"]))
    x = "X"
    if s.batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2]))
        x = "X_time_major"
    last: dict[str, list[str]] = {k: [] for k in states}
    direction = "bidirectional" if D == 2 else s.directions[0]
    for layer in range(s.num_layers):
        stacked = [weights(cells[(layer, d)], variant) for d in s.directions]
        W, R, B = (
            const(f"{name}_l{layer}", np.stack([w[i] for w in stacked])) for i, name in enumerate("WRB")
        )
        node_inputs = [x, W, R, B, "lengths" if lengths else ""]
        for k in states:
            if initial_states:
                rows = [
                    const(f"{k}0_rows_l{layer}_{e}", [v])
                    for e, v in (("start", layer * D), ("end", (layer + 1) * D))
                ]
                nodes.append(
                    helper.make_node(
                        "Slice", [f"{k}0", *rows, const(f"axis0_{k}_l{layer}", [0])], [f"{k}0_l{layer}"]
                    )
                )
                node_inputs.append(f"{k}0_l{layer}")
            else:
                node_inputs.append("")
        outs = [f"Y_l{layer}", *(f"{k}_n_l{layer}" for k in states)]
        nodes.append(
            helper.make_node(
                op, node_inputs, outs, name=f"{op}_l{layer}", hidden_size=nh, direction=direction, **attrs
            )
        )
        for k in states:
            last[k].append(f"{k}_n_l{layer}")
        nodes.append(helper.make_node("Transpose", [f"Y_l{layer}"], [f"Y_l{layer}_t"], perm=[0, 2, 1, 3]))
        nodes.append(
            helper.make_node(
                "Reshape", [f"Y_l{layer}_t", const(f"shape_l{layer}", [0, 0, -1])], [f"out_l{layer}"]
            )
        )
        x = f"out_l{layer}"
    if s.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["H"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["H"]))
    lead = ["n", "T"] if s.batch_first else ["T", "n"]
    outputs = [helper.make_tensor_value_info("H", elem, [*lead, D * nh])]
    for k in states:
        nodes.append(helper.make_node("Concat", last[k], [f"{k}_n"], axis=0))
        outputs.append(helper.make_tensor_value_info(f"{k}_n", elem, [len(s.cells), "n", nh]))
    if head is not None:
        nodes.append(helper.make_node("MatMul", ["H", const("W_hq", head["W_hq"])], ["H_W_hq"]))
        nodes.append(helper.make_node("Add", ["H_W_hq", const("b_q", head["b_q"])], ["logits"]))
        outputs.append(helper.make_tensor_value_info("logits", elem, [*lead, head["W_hq"].shape[1]]))
    graph = helper.make_graph(nodes, f"grusym_{variant}", inputs, outputs, initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="grusym")
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(path))
    return proto
