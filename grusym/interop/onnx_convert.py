"""``from_onnx_gru`` and ``from_onnx_lstm``: one ONNX ``GRU``/``LSTM`` node (:mod:`.onnx_nodes`) or a whole
graph of them (:mod:`.onnx_graph`), the entry points that choose between the two readers."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..model import Model
from ._common import Params
from .onnx_graph import read_onnx
from .onnx_nodes import node_model, single_node

__all__ = ["from_onnx_gru", "from_onnx_lstm"]


def _convert(node: Any, initializers: Any, op: str) -> tuple[ModuleType | Model, Params]:
    if hasattr(getattr(node, "graph", node), "node"):  # a whole graph: place every node and its glue
        found = read_onnx(node, ops=(op,), initializers=initializers)
        if "W_hq" in found.params:  # the graph's own head (a MatMul + Add on its outputs)
            return found.model, found.params
        dtype = next(iter(found.params.values())).dtype
        width = len(found.model.structure.directions) * found.params[next(iter(found.params))].shape[1]
        head = {"W_hq": np.zeros((width, 1), dtype), "b_q": np.zeros(1, dtype)}  # as the node path gives
        return found.model, {**found.params, **head}
    return node_model(single_node(node, initializers, op))


def from_onnx_gru(node: Any, initializers: Any = None) -> tuple[ModuleType | Model, Params]:
    """The grusym model and params that compute what an ONNX ``GRU`` node (or a graph of them) computes.

    node: a ``GRU`` NodeProto with ``initializers`` its weights (a dict name -> array or TensorProto, or an
    iterable of TensorProto such as ``graph.initializer``; ``W`` and ``R`` must be among them, ``B`` too if
    the node has it); or a ModelProto/GraphProto, read whole by :func:`grusym.interop.from_onnx` (its
    Transpose, Squeeze, Reshape, Slice and Concat glue placed: layers, directions, batch-first), which
    must hold GRU nodes only.

    For a node, returns ``(model, params)`` with ``model`` = ``grusym.load(variant)`` for a forward,
    layout-0 node, otherwise a one-layer model with the node's direction and ``batch_first = (layout ==
    1)``. Feed it the node's X; ``lengths`` = ``sequence_lens``; ``h0`` = ``initial_h`` (layout 1:
    ``initial_h.swapaxes(0, 1)``). Its H (.., o = D*h) is the node's Y with the direction axis folded into
    the last: ``Y.transpose(0, 2, 1, 3).reshape(T, n, D*h)`` for layout 0, ``Y.reshape(n, T, D*h)`` for
    layout 1. The node has no head: params hold ``W_hq`` = 0 (o, 1) and ``b_q`` = 0 (1,); replace them.
    """
    return _convert(node, initializers, "GRU")


def from_onnx_lstm(node: Any, initializers: Any = None) -> tuple[ModuleType | Model, Params]:
    """The grusym ``lstm`` model and params that compute what an ONNX ``LSTM`` node (or a graph of them)
    computes.

    As :func:`from_onnx_gru`, with W (D, 4h, d) and R (D, 4h, h) in row blocks i, o, f, c and B (D, 8h);
    ``h0`` = ``(initial_h, initial_c)``. Peepholes ``P`` (unless all zero) and ``input_forget=1`` are
    refused: grusym's lstm has neither.
    """
    return _convert(node, initializers, "LSTM")
