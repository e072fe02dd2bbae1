"""Parameters in and out of PyTorch, Keras and ONNX, and the exact algebraic relations between variants.

One module per framework and concern, none of which imports its framework (nor SymPy): :mod:`.pytorch`
(``nn.GRU``/``nn.LSTM``/``nn.RNN`` and their cells' state dicts, any layers and directions, nested in a
bigger module or not), :mod:`.keras_cells` (one Keras layer's weights) and :mod:`.keras_layers` (whole
Keras stacks: ``Bidirectional`` merge modes, ``go_backwards``, masks, stateful layers, ``Dense`` heads),
:mod:`.onnx_nodes` (one ``GRU``/``LSTM``/``RNN`` node), :mod:`.onnx_graph` with :mod:`.onnx_glue` (whole
graphs and the glue around their nodes), :mod:`.onnx_convert` (``from_onnx_gru``/``from_onnx_lstm``: a
node or a graph), :mod:`.onnx_export` (models written as ONNX graphs) and
:mod:`.relations` (exact identities between variants). Every function returns new arrays, never views
of its arguments, in the dtype it was given (float32 or float64; all arrays must share it). Bad input
raises a :mod:`grusym.errors` exception naming the key or attribute, the expected and the actual value.

Which variant a framework's GRU is: PyTorch and Keras ``reset_after=True`` and ONNX
``linear_before_reset=1`` apply the reset gate after the hidden matmul (``gru_reset_after``); Keras
``reset_after=False`` and ONNX's default before it (``gru``). All compute ``h = z*h_prev + (1-z)*h_tilde``.
"""

from __future__ import annotations

from .keras_cells import (
    from_keras_gru,
    from_keras_lstm,
    from_keras_rnn,
    to_keras_gru,
    to_keras_lstm,
    to_keras_rnn,
)
from .keras_layers import from_keras_layers, to_keras
from .onnx_convert import from_onnx_gru, from_onnx_lstm
from .onnx_export import to_onnx
from .onnx_graph import OnnxImport, from_onnx, read_onnx
from .pytorch import (
    from_torch_gru,
    from_torch_lstm,
    from_torch_rnn,
    to_torch_gru,
    to_torch_lstm,
    to_torch_rnn,
)
from .relations import RELATIONS, Relation, convert, pull_back_grads

__all__ = [
    "RELATIONS",
    "OnnxImport",
    "Relation",
    "convert",
    "from_keras_gru",
    "from_keras_layers",
    "from_keras_lstm",
    "from_keras_rnn",
    "from_onnx",
    "from_onnx_gru",
    "from_onnx_lstm",
    "from_torch_gru",
    "from_torch_lstm",
    "from_torch_rnn",
    "pull_back_grads",
    "read_onnx",
    "to_keras",
    "to_keras_gru",
    "to_keras_lstm",
    "to_keras_rnn",
    "to_onnx",
    "to_torch_gru",
    "to_torch_lstm",
    "to_torch_rnn",
]
