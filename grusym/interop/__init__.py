"""Parameters in and out of PyTorch, Keras and ONNX, and the exact algebraic relations between variants.

One module per framework, none of which imports its framework (nor SymPy): :mod:`.pytorch` (``nn.GRU``
state dicts, any layers and directions), :mod:`.keras_layers` (``GRU``, stacked and ``Bidirectional``,
``Dense`` heads), :mod:`.onnx_nodes` (``GRU`` nodes, every direction, layout and ``linear_before_reset``)
and :mod:`.relations` (exact identities between variants). Every function returns new arrays, never views
of its arguments, in the dtype it was given (float32 or float64; all arrays must share it). Bad input
raises a :mod:`grusym.errors` exception naming the key or attribute, the expected and the actual value.

Which variant a framework's GRU is: PyTorch and Keras ``reset_after=True`` and ONNX
``linear_before_reset=1`` apply the reset gate after the hidden matmul (``gru_reset_after``); Keras
``reset_after=False`` and ONNX's default before it (``gru``). All compute ``h = z*h_prev + (1-z)*h_tilde``.
"""

from __future__ import annotations

from .keras_layers import from_keras_gru, from_keras_layers, from_keras_lstm, to_keras_gru
from .onnx_graph import OnnxImport, from_onnx, read_onnx
from .onnx_nodes import from_onnx_gru, from_onnx_lstm
from .pytorch import from_torch_gru, from_torch_lstm, to_torch_gru, to_torch_lstm
from .relations import RELATIONS, Relation, convert, pull_back_grads

__all__ = [
    "RELATIONS",
    "OnnxImport",
    "Relation",
    "convert",
    "from_keras_gru",
    "from_keras_layers",
    "from_keras_lstm",
    "from_onnx",
    "from_onnx_gru",
    "from_onnx_lstm",
    "from_torch_gru",
    "from_torch_lstm",
    "pull_back_grads",
    "read_onnx",
    "to_keras_gru",
    "to_torch_gru",
    "to_torch_lstm",
]
