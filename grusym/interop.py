"""Parameters in and out of PyTorch and Keras, and the exact algebraic relations between variants.

Contract: NumPy only (torch, TensorFlow and SymPy are never imported). Every function returns new arrays,
never views of its arguments, in the dtype it was given (float32 or float64; all arrays must share it).
Bad input raises a :mod:`grusym.errors` exception naming the key, the expected and the actual shape.

Layouts (``@`` is the matrix product; grusym multiplies from the right, PyTorch from the left):

* grusym: ``X @ W_x<g>`` with ``W_x<g>`` (d, h), ``W_h<g>`` (h, h), biases (h,), head ``W_hq`` (h, q),
  ``b_q`` (q,); the keys of variant v are ``grusym.load(v).PARAMS``.
* PyTorch ``nn.GRU`` (one layer, one direction): ``weight_ih_l0`` (3h, d) and ``weight_hh_l0`` (3h, h)
  with row blocks r, z, n (n is our h_tilde), ``bias_ih_l0`` and ``bias_hh_l0`` (3h,); ``nn.Linear``
  head ``weight`` (q, h), ``bias`` (q,).
* Keras ``GRU``: ``kernel`` (d, 3h) and ``recurrent_kernel`` (h, 3h) with column blocks z, r, h;
  ``bias`` (2, 3h) when ``reset_after=True`` (row 0 input bias, row 1 recurrent bias), else (3h,);
  ``Dense`` head ``kernel`` (h, q), ``bias`` (q,).

Both libraries compute ``h = z*h_prev + (1-z)*h_tilde`` (z keeps the old state), PyTorch and Keras
``reset_after=True`` with the reset gate after the hidden matmul: variant ``gru_reset_after``; Keras
``reset_after=False`` applies it before: variant ``gru``.

The relations between variants (:data:`RELATIONS`) are exact identities of the functions computed, not
approximations: ``convert`` maps parameters along them and ``pull_back_grads`` maps gradients back by the
chain rule (each relation is linear in the parameters, so the gradient map is its transpose).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import load, validate, variants
from .errors import DTypeError, InputError, ParameterError, ShapeError
from .validate import shape_text

__all__ = [
    "RELATIONS",
    "Relation",
    "convert",
    "from_keras_gru",
    "from_torch_gru",
    "pull_back_grads",
    "to_keras_gru",
    "to_torch_gru",
]

Array = NDArray[Any]
Params = dict[str, Array]

HEAD = ("W_hq", "b_q")
_TORCH_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
_TORCH_GATES = ("r", "z", "h")  # nn.GRU row blocks r, z, n
_KERAS_GATES = ("z", "r", "h")  # Keras column blocks


def _array(name: str, value: object) -> Array:
    """A float NumPy copy of ``value``: an ndarray, a tensor (``.detach().cpu().numpy()``) or array-like."""
    v = value
    try:
        if not isinstance(v, np.ndarray):
            for method in ("detach", "cpu", "numpy"):  # torch.Tensor, tf.Variable, ... without importing them
                if callable(getattr(v, method, None)):
                    v = getattr(v, method)()
        a = np.array(v, copy=True)
    except TypeError as exc:
        raise DTypeError(f"{name} cannot be converted to a NumPy float array: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{name} cannot be converted to a NumPy array: {exc}") from None
    if a.dtype.type not in (np.float32, np.float64):
        raise DTypeError(f"{name} has dtype {a.dtype}; expected float32 or float64 (cast it first)")
    return a


def _expect(name: str, a: Array, shape: tuple[int, ...], symbolic: str, note: str = "") -> None:
    if a.shape != shape:
        raise ShapeError(
            f"{name} must have shape {symbolic} = {shape_text(shape)}{note}, got {shape_text(a.shape)}"
        )


def _gate_axis(name: str, a: Array, axis: int, symbolic: str) -> int:
    """The hidden size h of a weight whose ``axis`` stacks three gate blocks of h each."""
    if a.ndim != 2 or a.shape[axis] == 0 or a.shape[axis] % 3 or a.shape[1 - axis] == 0:
        raise ShapeError(
            f"{name} must have shape {symbolic} (three gate blocks of h on axis {axis}), "
            f"got {shape_text(a.shape)}"
        )
    return a.shape[axis] // 3


def _one_dtype(arrays: Mapping[str, Array]) -> None:
    first, a = next(iter(arrays.items()))
    for name, b in arrays.items():
        if b.dtype != a.dtype:
            raise DTypeError(
                f"{name} has dtype {b.dtype} but {first} has {a.dtype}; all must share one dtype"
            )


def _blocks(a: Array, axis: int, gates: tuple[str, ...]) -> dict[str, Array]:
    return dict(zip(gates, np.split(a, len(gates), axis=axis), strict=True))


def _mapping(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParameterError(f"{name} must be a dict (a state_dict), got {type(value).__name__}")
    return value


def _cell_spec(variant: str) -> dict[str, tuple[str, ...]]:
    m = load(variant)
    return {k: m.PARAMS[k] for k in m.CELL_PARAMS}


def _matching_variants(keys: set[str]) -> list[str]:
    return [v for v in variants() if set(_cell_spec(v)) == keys - set(HEAD)]


def _check(
    variant: str, values: Mapping[str, Any], arg: str = "params"
) -> tuple[Params, dict[str, int], np.dtype[Any], bool]:
    """Check ``values`` against the variant's parameters, head optional; return arrays, dims, dtype, head."""
    if not isinstance(values, Mapping):
        raise ParameterError(f"{arg} must be a dict of arrays, got {type(values).__name__}")
    m = load(variant)
    present = [k for k in HEAD if k in values]
    if len(present) == 1:
        raise ParameterError(
            f"{arg} has {present[0]!r} but not its partner: give both W_hq and b_q or neither"
        )
    has_head = bool(present)
    spec = {k: v for k, v in m.PARAMS.items() if has_head or k not in HEAD}
    missing = [k for k in spec if k not in values]
    extra = [k for k in values if k not in spec]
    if missing or extra:
        hint = _matching_variants(set(values))
        raise ParameterError(
            f"{arg} are not {variant!r} parameters: "
            + "; ".join(p for p in (missing and f"missing {missing}", extra and f"unexpected {extra}") if p)
            + f" (expected {list(spec)}"
            + (f"; the keys match {', '.join(map(repr, hint))})" if hint else ")")
        )
    arrays, dims, dtype = validate.check_params(spec, values, allow_complex=False)
    return arrays, dims, dtype, has_head


def from_torch_gru(state_dict: Mapping[str, Any], head: Mapping[str, Any] | None = None) -> Params:
    """``gru_reset_after`` parameters from a one-layer, one-direction ``torch.nn.GRU`` state dict.

    state_dict: ``weight_ih_l0`` (3h, d), ``weight_hh_l0`` (3h, h), ``bias_ih_l0`` and ``bias_hh_l0``
    (3h,) (both absent for ``bias=False``: zero biases); values are NumPy arrays or tensors (detached and
    copied to the CPU here; torch itself is never imported). head: an optional ``nn.Linear`` state dict,
    ``weight`` (q, h) and ``bias`` (q,) (absent for ``bias=False``), giving ``W_hq`` (h, q) and ``b_q``.

    Returns the params dict (``W_x<g>`` = transposed row block of g, gates r, z, n -> r, z, h), with the
    head keys only when ``head`` is given. PyTorch keeps two biases where the function has one:
    ``b_r = b_ir + b_hr`` and ``b_z = b_iz + b_hz``, so the split between them is lost (the candidate's
    biases stay apart: ``b_xh = b_in``, ``b_hh = b_hn``, because r multiplies ``b_hn`` alone).
    """
    sd = _mapping("state_dict", state_dict)
    unexpected = sorted(k for k in sd if k not in _TORCH_KEYS)
    if unexpected:
        deep = [k for k in unexpected if ("_l" in k and not k.endswith("_l0")) or k.endswith("_reverse")]
        raise ParameterError(
            f"state_dict has unexpected keys {unexpected}; expected {list(_TORCH_KEYS)}"
            + (
                " (only a single-layer, unidirectional nn.GRU is supported)"
                if deep
                else " (pass the nn.GRU's own state_dict, e.g. model.gru.state_dict())"
            )
        )
    missing = [k for k in _TORCH_KEYS[:2] if k not in sd]
    biases = [k for k in _TORCH_KEYS[2:] if k in sd]
    if missing or len(biases) == 1:
        gone = missing + [k for k in _TORCH_KEYS[2:] if biases and k not in sd]
        raise ParameterError(
            f"state_dict is missing {gone}; an nn.GRU state_dict has {list(_TORCH_KEYS)} "
            "(the two biases both present, or both absent for bias=False)"
        )
    arrays = {k: _array(f"state_dict[{k!r}]", sd[k]) for k in _TORCH_KEYS if k in sd}
    w_ih, w_hh = arrays["weight_ih_l0"], arrays["weight_hh_l0"]
    nh = _gate_axis("state_dict['weight_ih_l0']", w_ih, 0, "(3h, d)")
    note = f" (h = {nh} from weight_ih_l0)"
    _expect("state_dict['weight_hh_l0']", w_hh, (3 * nh, nh), "(3h, h)", note)
    for k in biases:
        _expect(f"state_dict[{k!r}]", arrays[k], (3 * nh,), "(3h,)", note)
    if head is not None:
        lin = _mapping("head", head)
        bad = sorted(set(lin) - {"weight", "bias"})
        if bad or "weight" not in lin:
            raise ParameterError(
                f"head must be an nn.Linear state_dict with 'weight' (q, h) and optionally 'bias' (q,), "
                f"got keys {sorted(lin)}"
            )
        arrays["head.weight"] = _array("head['weight']", lin["weight"])
        w = arrays["head.weight"]
        if w.ndim != 2 or w.shape[1] != nh or w.shape[0] == 0:
            raise ShapeError(f"head['weight'] must have shape (q, h = {nh}), got {shape_text(w.shape)}")
        if "bias" in lin:
            arrays["head.bias"] = _array("head['bias']", lin["bias"])
            _expect("head['bias']", arrays["head.bias"], (w.shape[0],), "(q,)")
    _one_dtype(arrays)
    zeros = np.zeros(3 * nh, w_ih.dtype)
    b_i = _blocks(arrays.get("bias_ih_l0", zeros), 0, _TORCH_GATES)
    b_h = _blocks(arrays.get("bias_hh_l0", zeros), 0, _TORCH_GATES)
    w_i, w_h = _blocks(w_ih, 0, _TORCH_GATES), _blocks(w_hh, 0, _TORCH_GATES)
    params = {
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
    if head is not None:
        w = arrays["head.weight"]
        params["W_hq"] = w.T.copy()
        params["b_q"] = arrays.get("head.bias", np.zeros(w.shape[0], w.dtype))
    return params


def to_torch_gru(params: Mapping[str, Any]) -> tuple[dict[str, Array], dict[str, Array] | None]:
    """The ``torch.nn.GRU`` and ``nn.Linear`` state dicts of ``gru_reset_after`` parameters.

    params: ``gru_reset_after`` parameters, with or without the head ``W_hq``, ``b_q``. Returns
    ``(gru_state, linear_state)``: ``gru_state`` has ``weight_ih_l0`` (3h, d), ``weight_hh_l0`` (3h, h),
    ``bias_ih_l0``, ``bias_hh_l0`` (3h,); ``linear_state`` has ``weight`` (q, h), ``bias`` (q,), or is
    None without a head. Values are NumPy arrays: load them with
    ``gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state.items()})``.

    The r and z biases go whole into ``bias_ih_l0`` and ``bias_hh_l0`` gets zeros there (PyTorch only
    uses their sum). So params -> torch -> params is exact, while torch -> params -> torch computes the
    same function but moves the r and z parts of ``bias_hh_l0`` into ``bias_ih_l0``.
    """
    p, dims, dtype, has_head = _check("gru_reset_after", params)
    zeros = np.zeros(dims["h"], dtype)
    gru_state = {
        "weight_ih_l0": np.concatenate([p["W_xr"].T, p["W_xz"].T, p["W_xh"].T]),
        "weight_hh_l0": np.concatenate([p["W_hr"].T, p["W_hz"].T, p["W_hh"].T]),
        "bias_ih_l0": np.concatenate([p["b_r"], p["b_z"], p["b_xh"]]),
        "bias_hh_l0": np.concatenate([zeros, zeros, p["b_hh"]]),
    }
    linear_state = {"weight": p["W_hq"].T.copy(), "bias": p["b_q"].copy()} if has_head else None
    return gru_state, linear_state


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
        "kernel": _array("kernel", kernel),
        "recurrent_kernel": _array("recurrent_kernel", recurrent_kernel),
    }
    nh = _gate_axis("kernel", arrays["kernel"], 1, "(d, 3h)")
    _expect(
        "recurrent_kernel", arrays["recurrent_kernel"], (nh, 3 * nh), "(h, 3h)", f" (h = {nh} from kernel)"
    )
    bias_shape = (2, 3 * nh) if reset_after else (3 * nh,)
    if bias is None:
        arrays["bias"] = np.zeros(bias_shape, arrays["kernel"].dtype)
    else:
        arrays["bias"] = _array("bias", bias)
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
        arrays["head kernel"] = w = _array("head kernel", head[0])
        if w.ndim != 2 or w.shape[0] != nh or w.shape[1] == 0:
            raise ShapeError(f"head kernel must have shape (h = {nh}, q), got {shape_text(w.shape)}")
        if head[1] is not None:
            arrays["head bias"] = _array("head bias", head[1])
            _expect("head bias", arrays["head bias"], (w.shape[1],), "(q,)")
    _one_dtype(arrays)
    k = _blocks(arrays["kernel"], 1, _KERAS_GATES)
    rk = _blocks(arrays["recurrent_kernel"], 1, _KERAS_GATES)
    params = {"W_xz": k["z"].copy(), "W_hz": rk["z"].copy()}
    if reset_after:
        b_in, b_rec = _blocks(arrays["bias"][0], 0, _KERAS_GATES), _blocks(arrays["bias"][1], 0, _KERAS_GATES)
        params["b_z"] = b_in["z"] + b_rec["z"]
        params.update(W_xr=k["r"].copy(), W_hr=rk["r"].copy(), b_r=b_in["r"] + b_rec["r"])
        params.update(W_xh=k["h"].copy(), b_xh=b_in["h"].copy(), W_hh=rk["h"].copy(), b_hh=b_rec["h"].copy())
    else:
        b = _blocks(arrays["bias"], 0, _KERAS_GATES)
        params["b_z"] = b["z"].copy()
        params.update(W_xr=k["r"].copy(), W_hr=rk["r"].copy(), b_r=b["r"].copy())
        params.update(W_xh=k["h"].copy(), W_hh=rk["h"].copy(), b_h=b["h"].copy())
    assert list(params) == list(_cell_spec(variant))
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
    p, dims, dtype, has_head = _check(variant, params)
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


@dataclass(frozen=True)
class Relation:
    """``target(convert(p)) == source(p)`` exactly, by a linear parameter map.

    ``rules`` gives each target cell parameter as ``((coefficient, source key), ...)``; an empty tuple
    means zeros. The head (``W_hq``, ``b_q``) is copied unchanged.
    """

    source: str
    target: str
    rules: Mapping[str, tuple[tuple[float, str], ...]]
    why: str


def _same(*keys: str) -> dict[str, tuple[tuple[float, str], ...]]:
    return {k: ((1.0, k),) for k in keys}


_NEGATED_Z = {k: ((-1.0, k),) for k in ("W_xz", "W_hz", "b_z")}
# r = sigmoid(0) = 1/2 exactly, so (r*h_prev) @ (2 W_hh) == h_prev @ W_hh: a reset gate that does nothing
_HALF_RESET = {"W_xr": (), "W_hr": (), "b_r": (), "W_hh": ((2.0, "W_hh"),)}
_WHY_NEGATE = "sigmoid(-a) = 1 - sigmoid(a): negate the update gate's weights and bias"
_WHY_HALF = "zero reset weights and bias give r = sigmoid(0) = 1/2 everywhere; W_hh doubled compensates"

RELATIONS: tuple[Relation, ...] = (
    Relation(
        "gru", "gru_chung", {**_NEGATED_Z, **_same("W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")}, _WHY_NEGATE
    ),
    Relation(
        "gru_chung", "gru", {**_NEGATED_Z, **_same("W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")}, _WHY_NEGATE
    ),
    Relation(
        "mgu",
        "gru_chung",
        {
            **{f"W_{s}{g}": ((1.0, f"W_{s}f"),) for s in "xh" for g in "zr"},
            "b_z": ((1.0, "b_f"),),
            "b_r": ((1.0, "b_f"),),
            **_same("W_xh", "W_hh", "b_h"),
        },
        "mgu is gru_chung with both gates tied to the forget gate: z = r = f",
    ),
    Relation("rnn_tanh", "gru_reset_only", {**_HALF_RESET, **_same("W_xh", "b_h")}, _WHY_HALF),
    Relation(
        "gru_update_only", "gru", {**_HALF_RESET, **_same("W_xz", "W_hz", "b_z", "W_xh", "b_h")}, _WHY_HALF
    ),
    Relation(
        "gru_update_only",
        "gru_reset_after",
        {**_HALF_RESET, **_same("W_xz", "W_hz", "b_z", "W_xh"), "b_xh": ((1.0, "b_h"),), "b_hh": ()},
        _WHY_HALF + "; b_xh = b_h, b_hh = 0",
    ),
)


def _path(source: str, target: str) -> list[Relation]:
    """The shortest chain of relations from ``source`` to ``target`` (breadth-first)."""
    for name in (source, target):
        load(name)  # UnknownVariantError for a bad name
    previous: dict[str, Relation | None] = {source: None}
    queue = deque([source])
    while queue:
        v = queue.popleft()
        for rel in RELATIONS:
            if rel.source == v and rel.target not in previous:
                previous[rel.target] = rel
                queue.append(rel.target)
    if target not in previous:
        reachable = [v for v in previous if v != source]
        raise InputError(
            f"no exact relation from {source!r} to {target!r}"
            + (
                " (the reset gate acts on different sides of W_hh: not equivalent in general)"
                if {source, target} >= {"gru", "gru_reset_after"}
                else ""
            )
            + f"; {source!r} converts exactly to: {', '.join(map(repr, reachable)) or 'nothing'}"
        )
    chain: list[Relation] = []
    v = target
    while (last := previous[v]) is not None:
        chain.append(last)
        v = last.source
    return chain[::-1]


def convert(params: Mapping[str, Any], from_variant: str, to_variant: str) -> Params:
    """Parameters of ``to_variant`` computing exactly the function ``params`` compute in ``from_variant``.

    params: ``from_variant`` parameters, with or without the head (copied unchanged). Follows the
    shortest chain of :data:`RELATIONS`; raises InputError when no exact relation exists (e.g. ``gru`` and
    ``gru_reset_after``). Every output array is new; shapes follow ``grusym.load(to_variant).PARAMS``.
    """
    chain = _path(from_variant, to_variant)
    p, dims, dtype, has_head = _check(from_variant, params)
    for rel in chain:
        p = {
            **{
                key: sum(
                    (c * p[src] for c, src in rel.rules[key]),
                    start=np.zeros(tuple(dims[dn] for dn in spec), dtype),
                )
                for key, spec in _cell_spec(rel.target).items()
            },
            **{k: p[k] for k in HEAD if has_head},
        }
    return {k: v.copy() for k, v in p.items()}


def pull_back_grads(grads: Mapping[str, Any], from_variant: str, to_variant: str) -> Params:
    """Gradients for ``from_variant`` at ``params`` from those of ``to_variant`` at ``convert(params, ...)``.

    grads: gradients of ``to_variant``'s loss (a dict like ``loss_and_grads`` returns; ``"h0"`` and
    ``"X"`` pass through unchanged, the head too). Since ``convert`` is linear, p' = A p, the chain rule
    gives dL/dp = A^T dL/dp': a negated block's gradient is negated, a doubled one doubled, and a
    parameter copied into several places (mgu's f into z and r) sums their gradients.
    """
    chain = _path(from_variant, to_variant)
    grads = _mapping("grads", grads)
    rest = {k: _array(f"grads[{k!r}]", v) for k, v in grads.items() if k in ("h0", "X")}
    g, dims, dtype, has_head = _check(to_variant, {k: v for k, v in grads.items() if k not in rest}, "grads")
    for rel in reversed(chain):
        back = {
            key: np.zeros(tuple(dims[dn] for dn in spec), dtype)
            for key, spec in _cell_spec(rel.source).items()
        }
        for key, terms in rel.rules.items():
            for c, src in terms:
                back[src] += c * g[key]
        g = {**back, **{k: g[k] for k in HEAD if has_head}}
    return {**{k: v.copy() for k, v in g.items()}, **rest}
