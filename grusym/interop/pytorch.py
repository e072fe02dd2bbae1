"""PyTorch ``nn.GRU`` (any layers and directions) and ``nn.Linear`` state dicts <-> grusym parameters.

Layouts (``@`` is the matrix product; grusym multiplies from the right, PyTorch from the left):

* grusym: ``X @ W_x<g>`` with ``W_x<g>`` (d, h), ``W_h<g>`` (h, h), biases (h,), head ``W_hq`` (o, q),
  ``b_q`` (q,); one cell's keys are ``grusym.load(v).CELL_PARAMS``, a model's add torch's suffixes
  ``_l<k>`` and ``_reverse`` (see :mod:`grusym.model.structure`).
* PyTorch ``nn.GRU``: per layer k and direction, ``weight_ih_l<k>[_reverse]`` (3h, d_k) and
  ``weight_hh_l<k>[_reverse]`` (3h, h) with row blocks r, z, n (n is our h_tilde), ``bias_ih_...`` and
  ``bias_hh_...`` (3h,); d_0 = d, d_k = num_directions * h above. ``nn.Linear`` head ``weight`` (q, o),
  ``bias`` (q,).

``nn.GRU`` computes ``h = z*h_prev + (1-z)*h_tilde`` with the reset gate after the hidden matmul: variant
``gru_reset_after``. Contract: NumPy only, torch is never imported; values may be tensors (detached and
copied here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError, ShapeError
from ..model.structure import Structure
from ..validate import shape_text
from ._common import (
    Array,
    Cell,
    Params,
    array,
    blocks,
    check_model,
    expect,
    gate_axis,
    join_cells,
    mapping,
    one_dtype,
)

__all__ = ["from_torch_gru", "from_torch_lstm", "to_torch_gru", "to_torch_lstm"]

_KEY = re.compile(r"^(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_GATES = ("r", "z", "h")  # nn.GRU row blocks r, z, n


def _suffix(layer: int, direction: str) -> str:
    return f"_l{layer}" + ("_reverse" if direction == "reverse" else "")


def torch_cells(
    state_dict: Mapping[str, Any], gates: int, module: str
) -> tuple[Structure, dict[Cell, dict[str, Array]], int]:
    """Every cell's four arrays ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (biases None-free:
    zeros when the state dict has none), checked; with the structure and the hidden size."""
    sd = mapping("state_dict", state_dict)
    found: dict[Cell, set[str]] = {}
    unexpected = []
    for k in sd:
        m = _KEY.match(str(k))
        if m is None:
            unexpected.append(k)
            continue
        cell = (int(m["layer"]), "reverse" if m["reverse"] else "forward")
        found.setdefault(cell, set()).add(m["kind"])
    if unexpected:
        hint = (
            " (proj_size is not supported)"
            if any(str(k).startswith("weight_hr") for k in unexpected)
            else f" (pass the {module}'s own state_dict, e.g. model.rnn.state_dict())"
        )
        raise ParameterError(
            f"state_dict has unexpected keys {sorted(map(str, unexpected))}; an {module} state_dict has "
            f"weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> (and _reverse ones){hint}"
        )
    if not found:
        raise ParameterError(
            f"state_dict is empty; an {module} state_dict has weight_ih_l0, weight_hh_l0, ..."
        )
    layers = 1 + max(layer for layer, _ in found)
    directions = tuple(d for d in ("forward", "reverse") if any(c[1] == d for c in found))
    if directions == ("reverse",):
        directions = ("forward", "reverse")  # a torch model with reverse cells has forward ones too
    structure = Structure(layers, directions)
    with_bias = any("bias_ih" in kinds or "bias_hh" in kinds for kinds in found.values())
    needed = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if with_bias else [])]
    missing = [
        f"{kind}{_suffix(*c)}" for c in structure.cells for kind in needed if kind not in found.get(c, ())
    ]
    if missing:
        raise ParameterError(
            f"state_dict is missing {missing}; an {module} with {layers} layer(s)"
            f"{' and two directions' if len(directions) == 2 else ''} has every weight_ih, weight_hh "
            "(and both biases, or none for bias=False) for each layer and direction"
        )
    arrays = {f"{kind}{_suffix(*c)}": array(f"state_dict[{kind + _suffix(*c)!r}]", sd[kind + _suffix(*c)])
              for c in structure.cells for kind in needed}  # fmt: skip
    first, hh = arrays["weight_ih_l0"], arrays["weight_hh_l0"]
    ratio = (
        hh.shape[0] // hh.shape[1] if hh.ndim == 2 and hh.shape[1] and hh.shape[0] % hh.shape[1] == 0 else 0
    )
    other = {1: "nn.RNN", 3: "nn.GRU", 4: "nn.LSTM"}.get(ratio)
    if other and ratio != gates:  # the same keys, another module: say which
        raise ShapeError(
            f"state_dict['weight_hh_l0'] must have shape ({gates}h, h) for an {module}, got "
            f"{shape_text(hh.shape)}: the state dict of an {other}?"
        )
    nh = gate_axis("state_dict['weight_ih_l0']", first, 0, f"({gates}h, d)", gates)
    width = len(directions) * nh
    cells: dict[Cell, dict[str, Array]] = {}
    for c in structure.cells:
        s = _suffix(*c)
        note = f" (h = {nh} from weight_ih_l0" + (
            f"; layer {c[0]} reads the {width} outputs below)" if c[0] else ")"
        )
        d = first.shape[1] if c[0] == 0 else width
        expect(
            f"state_dict['weight_ih{s}']", arrays["weight_ih" + s], (gates * nh, d), f"({gates}h, d)", note
        )
        expect(
            f"state_dict['weight_hh{s}']", arrays["weight_hh" + s], (gates * nh, nh), f"({gates}h, h)", note
        )
        zeros = np.zeros(gates * nh, first.dtype)
        for kind in ("bias_ih", "bias_hh"):
            if with_bias:
                expect(f"state_dict['{kind}{s}']", arrays[kind + s], (gates * nh,), f"({gates}h,)", note)
        cells[c] = {
            kind: arrays.get(kind + s, zeros) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
    one_dtype(arrays)
    return structure, cells, nh


def torch_head(head: Mapping[str, Any], width: int, dtype: Any) -> Params:
    """``W_hq`` (o, q) and ``b_q`` from an ``nn.Linear`` state dict ``weight`` (q, o), ``bias`` (q,)."""
    lin = mapping("head", head)
    bad = sorted(set(map(str, lin)) - {"weight", "bias"})
    if bad or "weight" not in lin:
        raise ParameterError(
            f"head must be an nn.Linear state_dict with 'weight' (q, h) and optionally 'bias' (q,), "
            f"got keys {sorted(map(str, lin))}"
        )
    w = array("head['weight']", lin["weight"])
    if w.ndim != 2 or w.shape[1] != width or w.shape[0] == 0:
        raise ShapeError(f"head['weight'] must have shape (q, h = {width}), got {shape_text(w.shape)}")
    b = array("head['bias']", lin["bias"]) if "bias" in lin else np.zeros(w.shape[0], w.dtype)
    expect("head['bias']", b, (w.shape[0],), "(q,)")
    one_dtype({"state_dict": np.empty(0, dtype), "head['weight']": w, "head['bias']": b})
    return {"W_hq": w.T.copy(), "b_q": b}


def from_torch_gru(state_dict: Mapping[str, Any], head: Mapping[str, Any] | None = None) -> Params:
    """``gru_reset_after`` parameters from a ``torch.nn.GRU`` state dict, any layers and directions.

    state_dict: ``weight_ih_l<k>[_reverse]`` (3h, d_k), ``weight_hh_l<k>[_reverse]`` (3h, h), ``bias_ih_...``
    and ``bias_hh_...`` (3h,) (all absent for ``bias=False``: zero biases); values are NumPy arrays or
    tensors. The layers and directions are read from the keys. head: an optional ``nn.Linear`` state dict,
    ``weight`` (q, o) and ``bias`` (q,) (absent for ``bias=False``), giving ``W_hq`` (o, q) and ``b_q``.

    Returns the params of ``grusym.load("gru_reset_after", num_layers, bidirectional)`` (a one-layer
    unidirectional GRU: the cell module's own names; otherwise suffixed ``_l<k>``, ``_reverse``), with the
    head keys only when ``head`` is given. PyTorch keeps two biases where the function has one:
    ``b_r = b_ir + b_hr`` and ``b_z = b_iz + b_hz``, so the split between them is lost (the candidate's
    biases stay apart: ``b_xh = b_in``, ``b_hh = b_hn``, because r multiplies ``b_hn`` alone).
    """
    structure, cells, nh = torch_cells(state_dict, 3, "nn.GRU")
    out: dict[Cell, Params] = {}
    for c, a in cells.items():
        w_i, w_h = blocks(a["weight_ih"], 0, _GATES), blocks(a["weight_hh"], 0, _GATES)
        b_i, b_h = blocks(a["bias_ih"], 0, _GATES), blocks(a["bias_hh"], 0, _GATES)
        out[c] = {
            "W_xz": w_i["z"].T.copy(),
            "W_hz": w_h["z"].T.copy(),
            "b_z": b_i["z"] + b_h["z"],
            "W_xr": w_i["r"].T.copy(),
            "W_hr": w_h["r"].T.copy(),
            "b_r": b_i["r"] + b_h["r"],
            "W_xh": w_i["h"].T.copy(),
            "b_xh": b_i["h"].copy(),
            "W_hh": w_h["h"].T.copy(),
            "b_hh": b_h["h"].copy(),
        }
    dtype = cells[(0, "forward")]["weight_ih"].dtype
    lin = torch_head(head, len(structure.directions) * nh, dtype) if head is not None else None
    return join_cells(structure, out, lin)


_STATE_KEYS = ("h0", "c0", "X")  # what loss_and_grads returns besides the parameters' gradients


def _params_or_grads(params: Mapping[str, Any], gradients: object) -> Mapping[str, Any]:
    if not isinstance(gradients, (bool, np.bool_)):
        raise InputError(f"gradients must be True or False, got {gradients!r}")
    values = mapping("grads" if gradients else "params", params)
    # a gradient dict from backward / loss_and_grads also holds the states' and the input's gradients
    return {k: v for k, v in values.items() if k not in _STATE_KEYS} if gradients else values


def to_torch_gru(
    params: Mapping[str, Any], gradients: bool = False
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.GRU`` and ``nn.Linear`` state dicts of ``gru_reset_after`` parameters (a cell's or a
    model's: the layers and directions are read from the keys), or with ``gradients=True`` the ``.grad`` of
    every torch parameter from grusym's gradients.

    Returns ``(gru_state, linear_state)``: ``gru_state`` has ``weight_ih_l<k>[_reverse]`` (3h, d_k),
    ``weight_hh_...`` (3h, h), ``bias_ih_...``, ``bias_hh_...`` (3h,); ``linear_state`` has ``weight``
    (q, o), ``bias`` (q,), or is None without a head. Values are NumPy arrays: load them with
    ``gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state.items()})``.

    Parameters: the r and z biases go whole into ``bias_ih`` and ``bias_hh`` gets zeros there (PyTorch only
    uses their sum), so params -> torch -> params is exact, while torch -> params -> torch computes the same
    function but moves the r and z parts of ``bias_hh`` into ``bias_ih``. Gradients (``gradients=True``;
    the dict of ``backward``/``loss_and_grads``, whose ``h0``, ``c0``, ``X`` are ignored): torch's r and z
    rows of ``bias_ih`` and ``bias_hh`` enter only through their sum, so both get grusym's ``db_r``,
    ``db_z``: each array is what torch's ``.grad`` holds.
    """
    values = _params_or_grads(params, gradients)
    _, cells, head, dims, dtype = check_model("gru_reset_after", values)
    zeros = np.zeros(dims["h"], dtype)
    gru_state: dict[str, Array] = {}
    for (layer, d), p in cells.items():
        s = _suffix(layer, d)
        gru_state["weight_ih" + s] = np.concatenate([p["W_xr"].T, p["W_xz"].T, p["W_xh"].T])
        gru_state["weight_hh" + s] = np.concatenate([p["W_hr"].T, p["W_hz"].T, p["W_hh"].T])
        gru_state["bias_ih" + s] = np.concatenate([p["b_r"], p["b_z"], p["b_xh"]])
        shared = (p["b_r"], p["b_z"]) if gradients else (zeros, zeros)
        gru_state["bias_hh" + s] = np.concatenate([*shared, p["b_hh"]])
    linear_state = {"weight": head["W_hq"].T.copy(), "bias": head["b_q"].copy()} if head else None
    return gru_state, linear_state


_LSTM_GATES = ("i", "f", "g", "o")  # nn.LSTM row blocks


def from_torch_lstm(state_dict: Mapping[str, Any], head: Mapping[str, Any] | None = None) -> Params:
    """``lstm`` parameters from a ``torch.nn.LSTM`` state dict, any layers and directions (no proj_size).

    state_dict: ``weight_ih_l<k>[_reverse]`` (4h, d_k), ``weight_hh_...`` (4h, h) with row blocks i, f,
    g, o, ``bias_ih_...`` and ``bias_hh_...`` (4h,) (absent for ``bias=False``); head as for
    :func:`from_torch_gru`. grusym's lstm keeps both bias rows (``b_x<g>`` = bias_ih block, ``b_h<g>`` =
    bias_hh block), so the conversion is exact both ways. Returns the params of
    ``grusym.load("lstm", num_layers, bidirectional)``.
    """
    structure, cells, nh = torch_cells(state_dict, 4, "nn.LSTM")
    out: dict[Cell, Params] = {}
    for c, a in cells.items():
        w_i, w_h = blocks(a["weight_ih"], 0, _LSTM_GATES), blocks(a["weight_hh"], 0, _LSTM_GATES)
        b_i, b_h = blocks(a["bias_ih"], 0, _LSTM_GATES), blocks(a["bias_hh"], 0, _LSTM_GATES)
        out[c] = {}
        for g in _LSTM_GATES:
            out[c].update(
                {
                    f"W_x{g}": w_i[g].T.copy(),
                    f"W_h{g}": w_h[g].T.copy(),
                    f"b_x{g}": b_i[g].copy(),
                    f"b_h{g}": b_h[g].copy(),
                }
            )
    dtype = cells[(0, "forward")]["weight_ih"].dtype
    lin = torch_head(head, len(structure.directions) * nh, dtype) if head is not None else None
    return join_cells(structure, out, lin)


def to_torch_lstm(
    params: Mapping[str, Any], gradients: bool = False
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.LSTM`` and ``nn.Linear`` state dicts of ``lstm`` parameters (a cell's or a model's);
    the inverse of :func:`from_torch_lstm`, exactly. ``gradients=True``: grusym's gradients (``h0``, ``c0``,
    ``X`` ignored) as torch's ``.grad`` of every parameter (grusym's lstm keeps torch's two bias rows)."""
    _, cells, head, _, _ = check_model("lstm", _params_or_grads(params, gradients))
    state: dict[str, Array] = {}
    for (layer, d), p in cells.items():
        s = _suffix(layer, d)
        state["weight_ih" + s] = np.concatenate([p[f"W_x{g}"].T for g in _LSTM_GATES])
        state["weight_hh" + s] = np.concatenate([p[f"W_h{g}"].T for g in _LSTM_GATES])
        state["bias_ih" + s] = np.concatenate([p[f"b_x{g}"] for g in _LSTM_GATES])
        state["bias_hh" + s] = np.concatenate([p[f"b_h{g}"] for g in _LSTM_GATES])
    linear_state = {"weight": head["W_hq"].T.copy(), "bias": head["b_q"].copy()} if head else None
    return state, linear_state
