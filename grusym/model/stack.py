"""A whole model: one cell module stacked in layers and directions, time- or batch-major, on padded batches.

Contract: the ONE place where structure meets a cell. It calls only the cell module's public API
(``forward(params, X, h0, lengths)``, ``backward``, ``final_states``, ``step``, ``init_params``,
``STATES``, ``OUTPUT``, ``CELL_PARAMS``), so it works the same for every cell, single- or multi-state;
it holds no cell equation. Semantics are torch's ``nn.GRU``/``nn.LSTM`` on packed sequences:

* layer l > 0 reads the concatenated outputs of layer l - 1 (forward direction first);
* the reverse direction reads each sequence backwards from its own last real step, ``lengths[i] - 1``;
* padded steps leave the state unchanged, their outputs are zero and they add nothing to any gradient;
* states are stacked ``(num_layers * num_directions, n, h)`` in torch's order, always time-independent
  (batch-first changes X, H, Y and dH only, as in torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import runtime as rt
from .. import validate
from ..errors import InputError, ShapeError
from ..validate import shape_text
from .structure import HEAD, Structure, check_lengths, mask, reversal, reverse_time

__all__ = ["Model"]

Array = NDArray[Any]
Params = dict[str, Array]


def _child(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


class Model:
    """``cell`` (a generated cell module) arranged by ``structure``; the functions of a cell module.

    Shapes (time-major; with ``batch_first`` swap the first two axes of X, H, dH and Y):
    X (T, n, d) floats or (T, n) token ids; H (T, n, o) with o = num_directions * h, the top layer's
    outputs, forward direction first; Y (T, n) ids; lengths (n,) in [1, T], any order; every state stack
    (num_layers * num_directions, n, h), a tuple of stacks in ``STATES`` order for a multi-state cell.
    """

    def __init__(self, cell: ModuleType, structure: Structure) -> None:
        self.cell = cell
        self.structure = structure
        self.VARIANT: str = cell.VARIANT
        self.STATES: tuple[str, ...] = tuple(cell.STATES)
        self.OUTPUT: str = cell.OUTPUT
        cell_spec = {k: cell.PARAMS[k] for k in cell.CELL_PARAMS}
        self.PARAMS: dict[str, tuple[str, ...]] = structure.spec(cell_spec)
        self.CELL_PARAMS: tuple[str, ...] = tuple(k for k in self.PARAMS if k not in HEAD)
        self._cells = structure.cells

    def __repr__(self) -> str:
        return f"<grusym model: {self.structure.describe()} {self.VARIANT!r}>"

    # ---- parameters

    def init_params(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        seed: Any = 0,
        dtype: Any = np.float64,
        scale: float = 0.01,
    ) -> Params:
        """Every cell's parameters from the cell's own ``init_params``, then the head (o, q).

        One seeded generator feeds the cells in torch's order and then the head; a single forward cell
        gets exactly the cell module's parameters for ``seed``.
        """
        validate.check_init(input_size, hidden_size, output_size, seed, dtype, scale)
        if self.structure.single:
            return dict(self.cell.init_params(input_size, hidden_size, output_size, seed, dtype, scale))
        rng = np.random.default_rng(seed)  # one child seed per cell, then one for the head
        width = len(self.structure.directions) * hidden_size
        params: Params = {}
        for layer, direction in self._cells:
            p = self.cell.init_params(
                input_size if layer == 0 else width, hidden_size, 1, _child(rng), dtype, scale
            )
            suffix = self.structure.suffix(layer, direction)
            params.update({k + suffix: p[k] for k in self.cell.CELL_PARAMS})
        head_spec = {"W_hq": ("h", "q"), "b_q": ("q",)}
        params.update(rt.init_params(head_spec, 1, width, output_size, _child(rng), dtype, scale))
        return params

    def _params(
        self, params: object, allow_complex: bool = True, head: bool = False
    ) -> tuple[Params, dict[str, int], Any]:
        """Check params; the head W_hq, b_q is optional unless ``head`` (head, loss, loss_and_grads)."""
        spec = self.PARAMS
        if not head and isinstance(params, Mapping) and not any(k in params for k in HEAD):
            spec = {k: v for k, v in spec.items() if k not in HEAD}  # a headless model: the cells alone
        self.structure.check_keys(spec, params, self.VARIANT)
        assert isinstance(params, Mapping)
        arrays, dims, dtype = validate.check_params(spec, params, allow_complex=allow_complex)
        width = len(self.structure.directions) * dims["h"]
        if dims.get("o", width) != width:
            raise ShapeError(
                f"params['W_hq'] and the layers above the first must read o = num_directions * h = {width} "
                f"inputs (h = {dims['h']}), got o = {dims['o']}"
            )
        return arrays, dims, dtype

    def _cell_params(self, p: Params, k: int, nh: int, dtype: Any) -> Params:
        layer, direction = self._cells[k]
        suffix = self.structure.suffix(layer, direction)
        # a cell module's params include its own head; the model's head reads o columns, so give it a dummy
        return {
            **{name: p[name + suffix] for name in self.cell.CELL_PARAMS},
            "W_hq": np.zeros((nh, 1), dtype),
            "b_q": np.zeros(1, dtype),
        }

    # ---- layouts and states

    def _time_major(self, name: str, a: Any, min_ndim: int) -> Any:
        if not self.structure.batch_first:
            return a
        arr = np.asarray(a)
        if arr.ndim < min_ndim:
            raise ShapeError(
                f"{name} must be batch-first (n, T, ...) for this batch_first model, "
                f"got {shape_text(arr.shape)}"
            )
        return arr.swapaxes(0, 1)

    def _user_major(self, a: Array) -> Array:
        return np.ascontiguousarray(a.swapaxes(0, 1)) if self.structure.batch_first else a

    def _initial(self, h0: Any, n: int, nh: int) -> list[Any]:
        """Each cell's initial state(s) from the stacked ``h0`` (None: zeros, left to the cell)."""
        K = len(self._cells)
        if h0 is None:
            return [None] * K
        names = self.STATES
        if len(names) == 1:
            stacks = (h0,)
        elif isinstance(h0, (tuple, list)) and len(h0) == len(names):
            stacks = tuple(h0)
        else:
            raise InputError(
                f"h0 of a {self.VARIANT!r} model must be None or a tuple of {len(names)} stacks "
                f"({', '.join(s + '0' for s in names)}), each (num_layers * num_directions, n, h) "
                f"= {(K, n, nh)}"
            )
        arrays = []
        for name, stack in zip(names, stacks, strict=True):
            a = np.asarray(stack)
            if a.shape != (K, n, nh):
                raise ShapeError(
                    f"{name}0 must have shape (num_layers * num_directions = {K}, n = {n}, h = {nh}), one "
                    f"state per layer and direction in torch's order, got {shape_text(a.shape)}"
                )
            arrays.append(a)
        if len(names) == 1:
            return list(arrays[0])
        return [tuple(a[k] for a in arrays) for k in range(K)]

    def _stack(self, per_cell: list[Any]) -> Any:
        if len(self.STATES) == 1:
            return np.stack(per_cell)
        return tuple(np.stack([s[i] for s in per_cell]) for i in range(len(self.STATES)))

    # ---- the functions of a cell module

    def forward(
        self, params: Mapping[str, Any], X: Any, h0: Any = None, lengths: Any = None
    ) -> tuple[Array, Any]:
        """H (T, n, o) (batch-first: (n, T, o)), zero at padded steps, and the cache ``backward`` needs."""
        p, dims, dtype = self._params(params)
        return self._forward(p, dims, dtype, X, h0, lengths)

    def _forward(
        self, p: Params, dims: dict[str, int], dtype: Any, X: Any, h0: Any, lengths: Any
    ) -> tuple[Array, Any]:
        X = self._time_major("X", X, 2)
        Xa = np.asarray(X)
        if Xa.ndim < 2 or 0 in Xa.shape[:2]:
            raise ShapeError(
                f"X must have shape (T, n, d) floats or (T, n) token ids, got {shape_text(Xa.shape)}"
            )
        T, n = Xa.shape[:2]
        lengths = check_lengths(lengths, T, n)
        states = self._initial(h0, n, dims["h"])
        index = reversal(lengths, T, n) if "reverse" in self.structure.directions else None
        caches: list[Any] = []
        inputs: Any = X
        for _layer in range(self.structure.num_layers):
            outs = []
            for direction in self.structure.directions:
                k = len(caches)
                cp = self._cell_params(p, k, dims["h"], dtype)
                x = inputs if direction == "forward" else reverse_time(np.asarray(inputs), index)
                H, cache = self.cell.forward(cp, x, states[k], lengths)
                outs.append(H if direction == "forward" else reverse_time(H, index))
                caches.append(cache)
            inputs = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
        cache = {"model": self, "cells": caches, "lengths": lengths, "index": index, "shape": inputs.shape}
        return self._user_major(inputs), cache

    def _check_cache(self, cache: object) -> dict[str, Any]:
        if not isinstance(cache, dict) or cache.get("model") is not self:
            raise InputError(
                "cache must be what this model's forward returned (a cell module's cache will not do)"
            )
        return cache

    def final_states(self, cache: Any) -> Any:
        """The last state(s) of every layer and direction, stacked as ``h0``, honouring lengths."""
        cache = self._check_cache(cache)
        return self._stack([self.cell.final_states(c) for c in cache["cells"]])

    def backward(self, params: Mapping[str, Any], cache: Any, dH: Any) -> Params:
        """Gradients of sum(dH * H): every key of params (head zeros), the state stacks ``"h0"`` (``"c0"``,
        ...) and ``"X"`` for float inputs (in X's layout). dH at padded steps is ignored."""
        p, dims, dtype = self._params(params, allow_complex=False)
        cache = self._check_cache(cache)
        dH = np.asarray(self._time_major("dH", dH, 3))
        if dH.shape != cache["shape"]:
            want = (
                cache["shape"][1::-1] + cache["shape"][2:] if self.structure.batch_first else cache["shape"]
            )
            raise ShapeError(f"dH must have the shape of H, {shape_text(want)}, got {shape_text(dH.shape)}")
        grads = self._backward(p, cache, dH, dims["h"], dtype)
        if "W_hq" in p:
            grads["W_hq"], grads["b_q"] = np.zeros_like(p["W_hq"]), np.zeros_like(p["b_q"])
        return self._ordered(grads)

    def _backward(self, p: Params, cache: dict[str, Any], dH: Array, nh: int, dtype: Any) -> Params:
        directions, index = self.structure.directions, cache["index"]
        grads: Params = {}
        state_grads: dict[str, list[Array]] = {s: [np.empty(0)] * len(self._cells) for s in self.STATES}
        upstream: Array | None = dH
        for layer in reversed(range(self.structure.num_layers)):
            assert upstream is not None  # every layer above the first reads floats, so it has an X gradient
            below: Array | None = None
            for j, direction in enumerate(directions):
                k = layer * len(directions) + j
                part = upstream[:, :, j * nh : (j + 1) * nh]
                if direction == "reverse":
                    part = reverse_time(part, index)
                if len(directions) > 1:  # a contiguous copy: validating a strided dH costs 10 times more
                    part = np.ascontiguousarray(part)
                g = self.cell.backward(self._cell_params(p, k, nh, dtype), cache["cells"][k], part)
                suffix = self.structure.suffix(layer, direction)
                grads.update({name + suffix: g[name] for name in self.cell.CELL_PARAMS})
                for s in self.STATES:
                    state_grads[s][k] = g[s + "0"]
                if "X" in g:
                    dx = g["X"] if direction == "forward" else reverse_time(g["X"], index)
                    below = dx if below is None else below + dx
            upstream = below
        for s in self.STATES:
            grads[s + "0"] = np.stack(state_grads[s])
        if upstream is not None:
            grads["X"] = self._user_major(upstream)
        return grads

    def _ordered(self, grads: Params) -> Params:
        keys = [*self.PARAMS, *(s + "0" for s in self.STATES), "X"]
        return {k: grads[k] for k in keys if k in grads}

    def head(self, params: Mapping[str, Any], H: Any) -> Array:
        """logits = H @ W_hq + b_q for H (..., o), the cell module's head (9) on the concatenated outputs."""
        p, _, _ = self._params(params, head=True)
        Ha = np.asarray(H)
        width = p["W_hq"].shape[0]
        if Ha.ndim == 0 or Ha.shape[-1] != width:
            raise ShapeError(f"H must have shape (..., o = {width}), got {shape_text(Ha.shape)}")
        return Ha @ p["W_hq"] + p["b_q"]

    def _rows(self, H: Array, Y: Any, lengths: Array | None, q: int) -> tuple[Array, Array, Array | None]:
        """The real positions' outputs (M, o) and targets (M,), M = T*n or sum(lengths)."""
        T, n, o = H.shape
        Ya = np.asarray(self._time_major("Y", Y, 2))
        keep = mask(lengths, T, n)
        if keep is not None and Ya.shape == (T, n):
            Ya = np.where(keep, Ya, 0)  # padded targets may hold anything (e.g. torch's ignore_index)
        Ya = validate.check_targets(Ya, T, n, q)
        if keep is None:
            return H.reshape(T * n, o), Ya.reshape(-1), None
        return H[keep], Ya[keep], keep

    def loss(self, params: Mapping[str, Any], X: Any, Y: Any, h0: Any = None, lengths: Any = None) -> Any:
        """Mean softmax cross-entropy over the real positions (complex-analytic, for checks)."""
        self._params(params, head=True)
        H, cache = self.forward(params, X, h0, lengths)
        rows, targets, _ = self._rows(
            self._time_major("H", H, 3), Y, cache["lengths"], params["W_hq"].shape[1]
        )
        return rt.mean_cross_entropy(rows @ params["W_hq"] + params["b_q"], targets)

    def loss_and_grads(
        self, params: Mapping[str, Any], X: Any, Y: Any, h0: Any = None, lengths: Any = None
    ) -> tuple[float, Params, Any]:
        """The loss, the gradient of every parameter, of the state stacks and of float X, and the last
        states (as ``final_states``)."""
        p, dims, dtype = self._params(params, allow_complex=False, head=True)
        H, cache = self._forward(p, dims, dtype, X, h0, lengths)
        Ht = np.asarray(self._time_major("H", H, 3))
        W_hq, b_q = p["W_hq"], p["b_q"]
        rows, targets, keep = self._rows(Ht, Y, cache["lengths"], W_hq.shape[1])
        value, dlogits = rt.softmax_cross_entropy(rows @ W_hq + b_q, targets, overwrite=True)
        drows = dlogits @ W_hq.T
        if keep is None:
            dH = drows.reshape(Ht.shape)
        else:
            dH = np.zeros(Ht.shape, dtype)
            dH[keep] = drows
        grads = self._backward(p, cache, dH, dims["h"], dtype)
        grads["W_hq"], grads["b_q"] = rows.T @ dlogits, dlogits.sum(axis=0)
        return float(value), self._ordered(grads), self.final_states(cache)

    def step(self, params: Mapping[str, Any], x_t: Any, state: Any = None) -> Any:
        """One time step of every layer, for streaming: x_t (n, d) floats or (n,) ids; state stacked as
        ``h0`` (None: zeros); returns the new state stack(s). The top layer's output is the new
        ``OUTPUT`` state of the last layer (``state[-1]``, or ``state[STATES.index(OUTPUT)][-1]``)."""
        if self.structure.directions != ("forward",):
            raise InputError(
                f"step streams a unidirectional model; this one is {self.structure.describe()} "
                "(a reverse direction needs the whole sequence: use forward)"
            )
        p, dims, dtype = self._params(params)
        x = np.asarray(x_t)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise ShapeError(
                f"x_t must have shape (n, d) floats or (n,) token ids, got {shape_text(x.shape)}"
            )
        states = self._initial(state, x.shape[0], dims["h"])
        out = self.STATES.index(self.OUTPUT)
        new: list[Any] = []
        inputs: Any = x
        for k in range(len(self._cells)):
            s = self.cell.step(self._cell_params(p, k, dims["h"], dtype), inputs, states[k])
            new.append(s)
            inputs = s if len(self.STATES) == 1 else s[out]
        return self._stack(new)
