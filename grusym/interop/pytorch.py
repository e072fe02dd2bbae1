"""PyTorch ``nn.GRU``, ``nn.LSTM``, ``nn.RNN`` (any layers and directions), their ``...Cell`` twins and
``nn.Linear`` state dicts <-> grusym parameters.

Layouts (``@`` is the matrix product; grusym multiplies from the right, PyTorch from the left):

* grusym: ``X @ W_x<g>`` with ``W_x<g>`` (d, h), ``W_h<g>`` (h, h), biases (h,), head ``W_hq`` (o, q),
  ``b_q`` (q,); one cell's keys are ``grusym.load(v).CELL_PARAMS``, a model's add torch's suffixes
  ``_l<k>`` and ``_reverse`` (see :mod:`grusym.model.structure`).
* PyTorch: per layer k and direction, ``weight_ih_l<k>[_reverse]`` (G*h, d_k) and ``weight_hh_l<k>[_reverse]``
  (G*h, h), ``bias_ih_...`` and ``bias_hh_...`` (G*h,), with G row blocks: nn.GRU r, z, n (n is our
  h_tilde), nn.LSTM i, f, g, o, nn.RNN one; d_0 = d, d_k = num_directions * h above. A ``GRUCell``,
  ``LSTMCell`` or ``RNNCell`` has the same arrays without the suffix. ``nn.Linear`` head ``weight`` (q, o),
  ``bias`` (q,).

``nn.GRU`` computes ``h = z*h_prev + (1-z)*h_tilde`` with the reset gate after the hidden matmul: variant
``gru_reset_after``; ``nn.LSTM`` is ``lstm``; ``nn.RNN(nonlinearity="tanh")`` is ``rnn_tanh``. Contract:
NumPy only, torch is never imported; values may be tensors (detached and copied here), and a module itself
may be given for its state dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError, ShapeError
from ..model.structure import Structure
from ..validate import shape_text
from ._common import (
    HEAD,
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
    matching_variants,
    one_dtype,
)

__all__ = [
    "from_torch_gru",
    "from_torch_lstm",
    "from_torch_rnn",
    "to_torch_gru",
    "to_torch_lstm",
    "to_torch_rnn",
]

_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_KEY = re.compile(
    r"^(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$"
)
_CELL_KEY = re.compile(r"^(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh)$")
# a key of an RNN anywhere in a bigger module's state dict: its prefix, then the RNN's own key
_NESTED = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?:weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l\d+(?:_reverse)?)?$"
)
_GATES = ("r", "z", "h")  # nn.GRU row blocks r, z, n
_LSTM_GATES = ("i", "f", "g", "o")  # nn.LSTM row blocks
_STATE_KEYS = ("h0", "c0", "X")  # what loss_and_grads returns besides the parameters' gradients


def _suffix(layer: int, direction: str) -> str:
    return f"_l{layer}" + ("_reverse" if direction == "reverse" else "")


def _own_keys(state_dict: Any, prefix: str | None, module: str) -> tuple[dict[str, Any], bool]:
    """The RNN's own state dict (``weight_ih_l0``, ...) from what was given: a module (its
    ``state_dict()``), a state dict, or a bigger module's state dict (the keys under ``prefix``, or under
    the one prefix holding RNN keys). Returns the keys with a layer suffix, and whether they were a
    ``...Cell``'s (no suffix)."""
    if callable(getattr(state_dict, "state_dict", None)):
        state_dict = state_dict.state_dict()
    sd = {str(k): v for k, v in mapping("state_dict", state_dict).items()}
    if prefix is not None:
        if not isinstance(prefix, str):
            raise InputError(f"prefix must be a string such as 'encoder.rnn.', got {prefix!r}")
        sd = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise ParameterError(f"no key of state_dict starts with prefix {prefix!r}")
    elif sd and not all(_KEY.match(k) or _CELL_KEY.match(k) for k in sd):
        prefixes = sorted({m["prefix"] for k in sd if (m := _NESTED.match(k))})
        if len(prefixes) > 1:
            raise ParameterError(
                f"state_dict holds the weights of several RNNs, under {prefixes}; pass prefix= to pick one "
                f"(e.g. from_torch_...(state_dict, prefix={prefixes[-1]!r}))"
            )
        if prefixes and prefixes[0]:  # one RNN inside a bigger module: its keys, the prefix stripped
            sd = {k.removeprefix(prefixes[0]): v for k, v in sd.items() if k.startswith(prefixes[0])}
    cell = bool(sd) and all(_CELL_KEY.match(k) for k in sd)
    if cell:
        sd = {k + "_l0": v for k, v in sd.items()}
    return sd, cell


def torch_cells(
    state_dict: Any, gates: int, module: str, prefix: str | None = None
) -> tuple[Structure, dict[Cell, dict[str, Array]], int]:
    """Every cell's four arrays ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (biases None-free:
    zeros when the state dict has none), and ``weight_hr`` (p, h) for an ``nn.LSTM(proj_size=p)``,
    checked; with the structure and the width of each direction's output (h, or p)."""
    sd, _ = _own_keys(state_dict, prefix, module)
    projected = sorted(k for k in sd if str(k).startswith("weight_hr"))
    if projected and module != "nn.LSTM":
        raise ParameterError(
            f"state_dict has {projected[0]!r}, the projection of an nn.LSTM(proj_size=p); an {module} has "
            "no proj_size (read an LSTM's state dict with from_torch_lstm)"
        )
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
        hint = " (the keys of a bigger module are found by their prefix; pass prefix= if they are not)"
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
    needed += ["weight_hr"] if projected else []
    missing = [
        f"{kind}{_suffix(*c)}" for c in structure.cells for kind in needed if kind not in found.get(c, ())
    ]
    if missing:
        raise ParameterError(
            f"state_dict is missing {missing}; an {module} with {layers} layer(s)"
            f"{' and two directions' if len(directions) == 2 else ''} has every weight_ih, weight_hh "
            "(and both biases, or none for bias=False; weight_hr with proj_size) for each layer and "
            "direction"
        )
    arrays = {f"{kind}{_suffix(*c)}": array(f"state_dict[{kind + _suffix(*c)!r}]", sd[kind + _suffix(*c)])
              for c in structure.cells for kind in needed}  # fmt: skip
    first, hh = arrays["weight_ih_l0"], arrays["weight_hh_l0"]
    ratio = (
        hh.shape[0] // hh.shape[1] if hh.ndim == 2 and hh.shape[1] and hh.shape[0] % hh.shape[1] == 0 else 0
    )
    other = {1: "nn.RNN", 3: "nn.GRU", 4: "nn.LSTM"}.get(ratio)
    if other and ratio != gates and not projected:  # the same keys, another module: say which
        raise ShapeError(
            f"state_dict['weight_hh_l0'] must have shape ({gates}h, h) for an {module}, got "
            f"{shape_text(hh.shape)}: the state dict of an {other}?"
        )
    nh = gate_axis("state_dict['weight_ih_l0']", first, 0, f"({gates}h, d)", gates)
    out = nh
    if projected:  # weight_hr (p, h): the state h and the outputs are p wide
        hr = arrays["weight_hr_l0"]
        out = hr.shape[0] if hr.ndim == 2 and 0 < hr.shape[0] < nh else 0
        if not out:
            raise ShapeError(
                f"state_dict['weight_hr_l0'] must have shape (p, h = {nh}) with 0 < p < h (torch: "
                f"proj_size < hidden_size), got {shape_text(hr.shape)}"
            )
    width = len(directions) * out
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
        hh_form = f"({gates}h, {'p' if projected else 'h'})"
        expect(f"state_dict['weight_hh{s}']", arrays["weight_hh" + s], (gates * nh, out), hh_form, note)
        if projected:
            expect(f"state_dict['weight_hr{s}']", arrays["weight_hr" + s], (out, nh), "(p, h)", note)
        zeros = np.zeros(gates * nh, first.dtype)
        for kind in ("bias_ih", "bias_hh"):
            if with_bias:
                expect(f"state_dict['{kind}{s}']", arrays[kind + s], (gates * nh,), f"({gates}h,)", note)
        cells[c] = {
            kind: arrays.get(kind + s, zeros) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        if projected:
            cells[c]["weight_hr"] = arrays["weight_hr" + s]
    one_dtype(arrays)
    return structure, cells, out


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


def _head(head: Mapping[str, Any] | None, structure: Structure, nh: int, dtype: Any) -> Params | None:
    return torch_head(head, len(structure.directions) * nh, dtype) if head is not None else None


def from_torch_gru(
    state_dict: Any, head: Mapping[str, Any] | None = None, prefix: str | None = None
) -> Params:
    """``gru_reset_after`` parameters from a ``torch.nn.GRU`` (or ``GRUCell``) state dict, any layers and
    directions.

    state_dict: ``weight_ih_l<k>[_reverse]`` (3h, d_k), ``weight_hh_l<k>[_reverse]`` (3h, h), ``bias_ih_...``
    and ``bias_hh_...`` (3h,) (all absent for ``bias=False``: zero biases), or a ``GRUCell``'s
    ``weight_ih``, ... without the suffix; values are NumPy arrays or tensors; the module itself also
    works. The layers and directions are read from the keys. A bigger module's state dict (``encoder.rnn.
    weight_ih_l0``, ...) is read at ``prefix`` (``"encoder.rnn."``), or, without it, at the one prefix whose
    keys are an RNN's (several: refused, naming them). head: an optional ``nn.Linear`` state dict,
    ``weight`` (q, o) and ``bias`` (q,) (absent for ``bias=False``), giving ``W_hq`` (o, q) and ``b_q``.

    Returns the params of ``grusym.load("gru_reset_after", num_layers, bidirectional)`` (a one-layer
    unidirectional GRU: the cell module's own names; otherwise suffixed ``_l<k>``, ``_reverse``), with the
    head keys only when ``head`` is given. PyTorch keeps two biases where the function has one:
    ``b_r = b_ir + b_hr`` and ``b_z = b_iz + b_hz``, so the split between them is lost (the candidate's
    biases stay apart: ``b_xh = b_in``, ``b_hh = b_hn``, because r multiplies ``b_hn`` alone).
    """
    structure, cells, nh = torch_cells(state_dict, 3, "nn.GRU", prefix)
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
    return join_cells(structure, out, _head(head, structure, nh, dtype))


def from_torch_lstm(
    state_dict: Any, head: Mapping[str, Any] | None = None, prefix: str | None = None
) -> Params:
    """``lstm`` parameters from a ``torch.nn.LSTM`` (or ``LSTMCell``) state dict, any layers and
    directions; ``lstmp`` parameters from an ``nn.LSTM(proj_size=p)``'s.

    state_dict: ``weight_ih_l<k>[_reverse]`` (4h, d_k), ``weight_hh_...`` (4h, h) with row blocks i, f,
    g, o, ``bias_ih_...`` and ``bias_hh_...`` (4h,) (absent for ``bias=False``); a cell's without the
    suffix; head and prefix as for :func:`from_torch_gru`. grusym's lstm keeps both bias rows (``b_x<g>`` =
    bias_ih block, ``b_h<g>`` = bias_hh block), so the conversion is exact both ways. Returns the params of
    ``grusym.load("lstm", num_layers, bidirectional)``; with ``weight_hr_l<k>`` (p, h) (``proj_size=p``:
    ``weight_hh`` is then (4h, p) and the layers above read the p-wide outputs), those of
    ``grusym.load("lstmp", ...)``, which adds ``W_hr`` (h, p) = ``weight_hr.T``.
    """
    structure, cells, nh = torch_cells(state_dict, 4, "nn.LSTM", prefix)
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
        if "weight_hr" in a:
            out[c]["W_hr"] = a["weight_hr"].T.copy()
    dtype = cells[(0, "forward")]["weight_ih"].dtype
    return join_cells(structure, out, _head(head, structure, nh, dtype))


_NONLINEARITIES = {"tanh": "rnn_tanh"}


def from_torch_rnn(
    state_dict: Any,
    head: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    nonlinearity: str | None = None,
) -> Params:
    """``rnn_tanh`` parameters from a ``torch.nn.RNN`` (or ``RNNCell``) state dict, any layers and
    directions: ``W_xh`` (d, h), ``W_hh`` (h, h), ``b_h = b_ih + b_hh``; head and prefix as for
    :func:`from_torch_gru`.

    nonlinearity: the module's (read from it when the module itself is given; a state dict does not hold
    it): ``"tanh"`` (torch's default) runs as ``grusym.load("rnn_tanh")``. ``"relu"`` gives the same
    parameters for a relu cell of your own, ``c.let("h", relu(c.affine("h")))`` (docs/models.md), which
    grusym does not ship: ``grusym.load("my_cells.py:rnn_relu", ...)`` runs them.
    """
    module_nonlinearity = getattr(state_dict, "nonlinearity", None)
    if nonlinearity is None:
        nonlinearity = module_nonlinearity or "tanh"
    elif module_nonlinearity is not None and module_nonlinearity != nonlinearity:
        raise InputError(f"nonlinearity={nonlinearity!r} but the module has {module_nonlinearity!r}")
    if nonlinearity not in ("tanh", "relu"):
        raise InputError(f"nonlinearity must be 'tanh' or 'relu' (nn.RNN's), got {nonlinearity!r}")
    structure, cells, nh = torch_cells(state_dict, 1, "nn.RNN", prefix)
    out = {
        c: {
            "W_xh": a["weight_ih"].T.copy(),
            "W_hh": a["weight_hh"].T.copy(),
            "b_h": a["bias_ih"] + a["bias_hh"],
        }
        for c, a in cells.items()
    }
    dtype = cells[(0, "forward")]["weight_ih"].dtype
    return join_cells(structure, out, _head(head, structure, nh, dtype))


# ---- grusym -> torch


def _params_or_grads(params: Any, gradients: object) -> Mapping[str, Any]:
    if not isinstance(gradients, (bool, np.bool_)):
        raise InputError(f"gradients must be True or False, got {gradients!r}")
    values = mapping("grads" if gradients else "params", params)
    # a gradient dict from backward / loss_and_grads also holds the states' and the input's gradients
    return {k: v for k, v in values.items() if k not in _STATE_KEYS} if gradients else values


def _other_variant(values: Mapping[str, Any], variant: str, module: str) -> None:
    """Refuse, by name, the params of another cell than ``variant`` (the only one ``module`` computes)."""
    keys = {re.sub(r"_l\d+(_reverse)?$", "", str(k)) for k in values if str(k) not in HEAD}
    found = matching_variants(keys | set(HEAD))
    if found and variant not in found:
        other = found[0]
        why = (
            "nn.GRU cannot express reset-before (variant gru: the reset gate acts before the hidden matmul); "
            "use gru_reset_after, or export gru to Keras (reset_after=False) or ONNX (linear_before_reset=0)"
            if other == "gru"
            else f"{module} computes {variant} only"
        )
        raise ParameterError(f"params are {other!r} parameters: {why}")


def _to_torch(
    variant: str,
    module: str,
    params: Any,
    gradients: bool,
    bias: bool,
    cell: bool,
    rows: Callable[[Params, bool], tuple[list[Array], list[Array], list[Array], list[Array]]],
    extra: Callable[[Params], dict[str, Array]] | None = None,
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """torch's state dicts of ``variant`` params (or gradients); ``rows(p, gradients)`` gives one cell's
    row blocks of weight_ih, weight_hh, bias_ih, bias_hh in torch's order, ``extra(p)`` its other arrays
    (lstmp's weight_hr)."""
    values = _params_or_grads(params, gradients)
    for flag, name in ((bias, "bias"), (cell, "cell")):
        if not isinstance(flag, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {flag!r}")
    _other_variant(values, variant, module)
    structure, cells, head, _, _ = check_model(variant, values)
    if cell and not structure.single:
        raise InputError(
            f"cell=True gives a {module}Cell's state dict, one cell; these params are a "
            f"{structure.describe()} model"
        )
    state: dict[str, Array] = {}
    for (layer, d), p in cells.items():
        s = "" if cell else _suffix(layer, d)
        w_ih, w_hh, b_ih, b_hh = rows(p, gradients)
        state["weight_ih" + s] = np.concatenate([w.T for w in w_ih])
        state["weight_hh" + s] = np.concatenate([w.T for w in w_hh])
        if bias:
            state["bias_ih" + s] = np.concatenate(b_ih)
            state["bias_hh" + s] = np.concatenate(b_hh)
        elif not gradients:  # bias=False: nothing may be lost
            nonzero = [k for k in p if k.startswith("b_") and np.any(p[k])]
            if nonzero:
                raise InputError(
                    f"params[{nonzero[0] + _suffix(layer, d) * (not structure.single)!r}] is not zero, but "
                    f"an {module}(bias=False) has no bias to hold it"
                )
        state.update({kind + s: a for kind, a in (extra(p) if extra else {}).items()})
    linear_state = {"weight": head["W_hq"].T.copy(), "bias": head["b_q"].copy()} if head else None
    return state, linear_state


def _gru_rows(p: Params, gradients: bool) -> tuple[list[Array], list[Array], list[Array], list[Array]]:
    # torch uses bias_ih's and bias_hh's r and z rows through their sum: params put it whole in bias_ih,
    # and its gradient is the gradient of either row
    zeros = np.zeros_like(p["b_r"])
    shared = [p["b_r"], p["b_z"]] if gradients else [zeros, zeros]
    return (
        [p["W_xr"], p["W_xz"], p["W_xh"]],
        [p["W_hr"], p["W_hz"], p["W_hh"]],
        [p["b_r"], p["b_z"], p["b_xh"]],
        [*shared, p["b_hh"]],
    )


def _lstm_rows(p: Params, gradients: bool) -> tuple[list[Array], list[Array], list[Array], list[Array]]:
    return (
        [p[f"W_x{g}"] for g in _LSTM_GATES],
        [p[f"W_h{g}"] for g in _LSTM_GATES],
        [p[f"b_x{g}"] for g in _LSTM_GATES],
        [p[f"b_h{g}"] for g in _LSTM_GATES],
    )


def _rnn_rows(p: Params, gradients: bool) -> tuple[list[Array], list[Array], list[Array], list[Array]]:
    return [p["W_xh"]], [p["W_hh"]], [p["b_h"]], [p["b_h"] if gradients else np.zeros_like(p["b_h"])]


def to_torch_gru(
    params: Mapping[str, Any], gradients: bool = False, bias: bool = True, cell: bool = False
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.GRU`` and ``nn.Linear`` state dicts of ``gru_reset_after`` parameters (a cell's or a
    model's: the layers and directions are read from the keys), or with ``gradients=True`` the ``.grad`` of
    every torch parameter from grusym's gradients.

    Returns ``(gru_state, linear_state)``: ``gru_state`` has ``weight_ih_l<k>[_reverse]`` (3h, d_k),
    ``weight_hh_...`` (3h, h), ``bias_ih_...``, ``bias_hh_...`` (3h,); ``linear_state`` has ``weight``
    (q, o), ``bias`` (q,), or is None without a head. Values are NumPy arrays: load them with
    ``gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state.items()})``. ``bias=False``: no
    bias keys, for ``nn.GRU(bias=False)`` (nonzero biases are refused: they would be lost); ``cell=True``:
    a ``GRUCell``'s keys (no suffix), for one cell.

    Parameters: the r and z biases go whole into ``bias_ih`` and ``bias_hh`` gets zeros there (PyTorch only
    uses their sum), so params -> torch -> params is exact, while torch -> params -> torch computes the same
    function but moves the r and z parts of ``bias_hh`` into ``bias_ih``. Gradients (``gradients=True``;
    the dict of ``backward``/``loss_and_grads``, whose ``h0``, ``c0``, ``X`` are ignored): torch's r and z
    rows of ``bias_ih`` and ``bias_hh`` enter only through their sum, so both get grusym's ``db_r``,
    ``db_z``: each array is what torch's ``.grad`` holds. Params of another variant are refused by name
    (nn.GRU cannot express ``gru``'s reset-before).
    """
    return _to_torch("gru_reset_after", "nn.GRU", params, gradients, bias, cell, _gru_rows)


def to_torch_lstm(
    params: Mapping[str, Any], gradients: bool = False, bias: bool = True, cell: bool = False
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.LSTM`` (``cell=True``: ``LSTMCell``) and ``nn.Linear`` state dicts of ``lstm``
    parameters (a cell's or a model's); the inverse of :func:`from_torch_lstm`, exactly. ``gradients=True``:
    grusym's gradients (``h0``, ``c0``, ``X`` ignored) as torch's ``.grad`` of every parameter (grusym's
    lstm keeps torch's two bias rows); ``bias`` as :func:`to_torch_gru`. ``lstmp`` parameters (with
    ``W_hr``) give an ``nn.LSTM(proj_size=p)``'s, ``weight_hr_l<k>`` = ``W_hr.T``."""
    keys = {re.sub(r"_l\d+(_reverse)?$", "", str(k)) for k in mapping("params", params)}
    if not {"W_hr", "W_xi"} <= keys:
        return _to_torch("lstm", "nn.LSTM", params, gradients, bias, cell, _lstm_rows)
    if cell:
        raise InputError(
            "cell=True gives an nn.LSTMCell's state dict, but an LSTMCell has no proj_size (W_hr)"
        )
    return _to_torch("lstmp", "nn.LSTM", params, gradients, bias, cell, _lstm_rows, _projection)


def _projection(p: Params) -> dict[str, Array]:
    c, h = p["W_hr"].shape
    if h >= c:
        raise ShapeError(
            f"params['W_hr'] is (c, h) = ({c}, {h}): an nn.LSTM(proj_size=h) needs h < c "
            "(proj_size < hidden_size)"
        )
    return {"weight_hr": p["W_hr"].T.copy()}


def to_torch_rnn(
    params: Mapping[str, Any], gradients: bool = False, bias: bool = True, cell: bool = False
) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.RNN`` (``cell=True``: ``RNNCell``) and ``nn.Linear`` state dicts of ``rnn_tanh``
    parameters: ``b_h`` goes whole into ``bias_ih`` (``gradients=True``: into both); as
    :func:`to_torch_gru` otherwise. A relu cell of your own with these parameter names converts the same
    way: ``to_torch_rnn`` reads only the keys."""
    return _to_torch("rnn_tanh", "nn.RNN", params, gradients, bias, cell, _rnn_rows)
