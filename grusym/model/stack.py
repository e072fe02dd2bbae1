"""A whole model: one cell module stacked in layers and directions, time- or batch-major, on padded batches.

Contract: the ONE place where structure meets a cell. It calls only the cell module's public API
(``forward(params, X, h0, lengths)``, ``predict``, ``backward(params, cache, dH, dstates, input_grad)``,
``final_states``, ``step``, ``init_params``, ``STATES``, ``OUTPUT``, ``CELL_PARAMS``), so it works the same
for every cell, single- or multi-state; it holds no cell equation. Semantics are torch's
``nn.GRU``/``nn.LSTM`` on packed sequences:

* layer l > 0 reads the merged outputs of layer l - 1 (concatenated, forward direction first; Keras'
  sum, ave and mul merge them elementwise);
* the reverse direction reads each sequence backwards from its own last real step, ``lengths[i] - 1``;
* padded steps leave the state unchanged, their outputs are zero and they add nothing to any gradient;
  a boolean mask (Keras) may put them before the real steps too: each sequence's real run is rotated to
  the front, run, and rotated back;
* states are stacked ``(num_layers * num_directions, n, h)`` in torch's order, always time-independent
  (batch-first changes X, H, Y and dH only, as in torch); a one-cell model also takes (n, h).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import runtime as rt
from .. import validate
from ..errors import GrusymError, InputError, ShapeError
from ..stepinputs import inputs_of
from ..validate import shape_text
from .inputs import arranged, per_cell, per_cell_step
from .structure import HEAD, Structure, carried, mask, read_lengths, reversal, reverse_time, rotation

__all__ = ["Model"]

Array = NDArray[Any]
Params = dict[str, Array]
Index = tuple[Array, Array] | None


def _child(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _at(a: Array, index: Index) -> Array:
    return a if index is None else a[index]


class Model:
    """``cell`` (a generated cell module) arranged by ``structure``; the functions of a cell module.

    Shapes (time-major; with ``batch_first`` swap the first two axes of X, H, dH and Y):
    X (T, n, d) floats or (T, n) token ids; H (T, n, o), o = ``structure.width(h)``, the top layer's
    outputs (forward direction first); Y (T, n) ids; lengths (n,) in [1, T], any order, or a boolean mask
    of X's first two axes; every state stack (num_layers * num_directions, n, h), a tuple of stacks in
    ``STATES`` order for a multi-state cell. mask_value: as Keras' ``Masking`` layer, a step whose
    features all equal it is padding (when no lengths are given).
    """

    def __init__(self, cell: ModuleType, structure: Structure, mask_value: float | None = None) -> None:
        self.cell = cell
        self.structure = structure
        self.mask_value = mask_value
        self.VARIANT: str = cell.VARIANT
        self.STATES: tuple[str, ...] = tuple(cell.STATES)
        self.OUTPUT: str = cell.OUTPUT
        cell_spec = {k: cell.PARAMS[k] for k in cell.CELL_PARAMS}
        self.PARAMS: dict[str, tuple[str, ...]] = structure.spec(cell_spec)
        self.CELL_PARAMS: tuple[str, ...] = tuple(k for k in self.PARAMS if k not in HEAD)
        self._cells = structure.cells
        if inputs_of(cell):  # a cell with per-step inputs: the model takes aux (model/inputs.py)
            self.INPUTS: dict[str, str] = inputs_of(cell)

    def __repr__(self) -> str:
        masked = "" if self.mask_value is None else f" masking {self.mask_value!r}"
        return f"<grusym model: {self.structure.describe()} {self.VARIANT!r}{masked}>"

    # ---- parameters

    def init_params(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        seed: Any = 0,
        dtype: Any = np.float64,
        scale: float = 0.01,
        **sizes: Any,
    ) -> Params:
        """Every cell's parameters from the cell's own ``init_params``, then the head (o, q); ``sizes``:
        what the cell's ``init_params`` takes besides (lstmp's ``proj_size``, the width of its output).

        One seeded generator feeds the cells in torch's order and then the head; a single forward cell
        gets exactly the cell module's parameters for ``seed``.
        """
        validate.check_init(input_size, hidden_size, output_size, seed, dtype, scale)
        if sizes and (set(sizes) != {"proj_size"} or not hasattr(self.cell, "STATE_SIZES")):
            raise InputError(f"init_params of a {self.VARIANT!r} model takes no {', '.join(sizes)}")
        if self.structure.single:
            return dict(
                self.cell.init_params(input_size, hidden_size, output_size, seed, dtype, scale, **sizes)
            )
        rng = np.random.default_rng(seed)  # one child seed per cell, then one for the head
        width = self.structure.width(sizes.get("proj_size", hidden_size))
        if getattr(self.cell, "INPUT_ELEMENTWISE", False) and width != hidden_size:
            raise ShapeError(
                f"cell {self.VARIANT!r} reads its input X elementwise (d must equal h = {hidden_size}), but "
                f"the layers above the first read both directions side by side, 2h = {width} inputs: "
                "merge them elementwise (grusym.model.build(..., merge='sum'))"
            )
        params: Params = {}
        for layer, direction in self._cells:
            p = self.cell.init_params(
                input_size if layer == 0 else width, hidden_size, 1, _child(rng), dtype, scale, **sizes
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
        width = self.structure.width(dims["h"])
        if dims.get("o", width) != width:
            what = "num_directions * h" if self.structure.merge == "concat" else "h (merged directions)"
            raise ShapeError(
                f"params['W_hq'] and the layers above the first must read o = {what} = {width} inputs "
                f"(h = {dims['h']}), got o = {dims['o']}"
            )
        return arrays, dims, dtype

    def _cell_params(self, p: Params, k: int) -> Params:
        layer, direction = self._cells[k]
        suffix = self.structure.suffix(layer, direction)
        return {name: p[name + suffix] for name in self.cell.CELL_PARAMS}  # a cell runs headless

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

    def _outward(self, H: Array, unalign: Index) -> Array:
        """The top layer's outputs (T, n, o) as the user sees them: rotated back, flipped, in X's layout."""
        H = _at(H, unalign)
        return self._user_major(H[::-1] if self.structure.flip_output else H)

    def _inward(self, name: str, a: Any, align: Index, output: bool) -> Array:
        """X (output False) or dH, Y (output True) from the user's layout to the aligned time-major one."""
        t = np.asarray(self._time_major(name, a, 2))
        if output and self.structure.flip_output:
            t = t[::-1]
        return _at(t, align)

    def _stacks(self, name: str, value: Any, n: int, dims: Mapping[str, int], T: int) -> list[Array]:
        """A state-shaped argument (h0, dstates): one (K, n, h) stack per state, (n, h) for K = 1 too."""
        K, names = len(self._cells), self.STATES
        if len(names) == 1:
            stacks: tuple[Any, ...] = (value,)
        elif isinstance(value, (tuple, list)) and len(value) == len(names):
            stacks = tuple(value)
        else:
            raise InputError(
                f"{name} of a {self.VARIANT!r} model must be None or a tuple of {len(names)} stacks "
                f"({', '.join(s + '0' for s in names)}), each (num_layers * num_directions, n, h) "
                f"= {(K, n, dims['h'])}"
            )
        out = []
        for state, stack in zip(names, stacks, strict=True):
            label = {"h0": f"{state}0", "dstates": f"dstates (d{state})"}.get(name, f"{name} ({state})")
            label = name if len(names) == 1 and name != "h0" else label
            a = np.asarray(stack)
            size, nh = self._size(state), dims[self._size(state)]
            if K == 1 and a.shape == (n, nh):
                a = a[None]
            if a.shape != (K, n, nh):
                swapped = a.shape == (K, T, nh) and n != T
                raise ShapeError(
                    f"{label} must have shape (num_layers * num_directions = {K}, n = {n}, {size} = {nh}), "
                    f"one state per layer and direction in torch's order, got {shape_text(a.shape)}"
                    + ("; it fits X's other leading axis: is X in the other layout?" if swapped else "")
                )
            out.append(a)
        return out

    def _size(self, state: str) -> str:
        """The dimension of a state: h, or what the cell names (lstmp's c is the cell size c)."""
        return str(getattr(self.cell, "STATE_SIZES", {}).get(state, "h"))

    def _per_cell(self, name: str, value: Any, n: int, dims: Mapping[str, int], T: int) -> list[Any]:
        """Each cell's share of a state stack argument (None: None for every cell)."""
        if value is None:
            return [None] * len(self._cells)
        arrays = self._stacks(name, value, n, dims, T)
        if len(arrays) == 1:
            return list(arrays[0])
        return [tuple(a[k] for a in arrays) for k in range(len(self._cells))]

    def _stack(self, per_cell: list[Any]) -> Any:
        if len(self.STATES) == 1:
            return np.stack(per_cell)
        return tuple(np.stack([s[i] for s in per_cell]) for i in range(len(self.STATES)))

    def _lengths(self, X: Array, lengths: Any) -> tuple[Array | None, Array | None, Index, Index]:
        """Each sequence's length and first step and, for a mask with padding in front, the rotations that
        align the real steps to the front and back."""
        T, n = X.shape[:2]
        batch_first = self.structure.batch_first
        if lengths is None and self.mask_value is not None:
            if X.ndim != 3 or X.dtype.kind != "f":
                raise InputError("a model with a Masking value reads float inputs X (n, T, d)")
            real = np.not_equal(X, self.mask_value).any(axis=-1)  # Keras' Masking, (T, n)
            lengths, batch_first = real, False
        starts, counts = read_lengths(lengths, T, n, batch_first)
        return counts, starts, rotation(starts, T, n), rotation(starts, T, n, inverse=True)

    # ---- running the layers

    def _run(
        self, p: Params, dims: dict[str, int], X: Any, h0: Any, lengths: Any, keep: bool, aux: Any = None
    ) -> tuple[Array, dict[str, Any]]:
        """The top layer's outputs (aligned, time-major) and the run: each cell's cache (keep) or last
        states (predict), the lengths, the reversal and alignment indices."""
        Xa = np.asarray(self._time_major("X", X, 2))
        if Xa.ndim < 2 or 0 in Xa.shape[:2]:
            raise ShapeError(
                f"X must have shape (T, n, d) floats or (T, n) token ids, got {shape_text(Xa.shape)}"
            )
        T, n = Xa.shape[:2]
        counts, starts, align, unalign = self._lengths(Xa, lengths)
        Xa = _at(Xa, align)
        # the per-step inputs of a cell with c.input (model/inputs.py), aligned as X is
        cell_aux = [arranged(a, lambda v: _at(v, align)) for a in per_cell(self, aux, T, n)]
        states = self._per_cell("h0", h0, n, dims, T)
        index = reversal(counts, T, n) if "reverse" in self.structure.directions else None
        carry = self._carry(counts, starts, T)
        results: list[Any] = []
        outputs: list[list[Array]] = []
        inputs: Any = Xa
        for layer in range(self.structure.num_layers):
            outs = []
            for direction in self.structure.directions:
                k = len(results)
                x = inputs if direction == "forward" else reverse_time(np.asarray(inputs), index)
                run = self.cell.forward if keep else self.cell.predict
                a = (
                    cell_aux[k]
                    if direction == "forward"
                    else arranged(cell_aux[k], lambda v: reverse_time(v, index))
                )
                extra = {} if a is None else {"aux": a}
                H, result = run(self._cell_params(p, k), x, states[k], counts, **extra)
                H = H if direction == "forward" else reverse_time(H, index)
                if carry and layer == self.structure.num_layers - 1:  # only the top layer's are seen
                    rows, used = carry[direction]
                    H = np.where(used[:, :, None], H[rows, np.arange(n)], 0)
                outs.append(H)
                results.append(result)
            outputs.append(outs if keep and self.structure.merge == "mul" else [])
            inputs = self._merge(outs)
        run_info = {"model": self, "lengths": counts, "index": index, "shape": inputs.shape, "carry": carry}
        run_info |= {"align": align, "unalign": unalign}
        run_info["cells" if keep else "last"] = results
        run_info["outputs"] = outputs
        return inputs, run_info

    def _carry(self, counts: Array | None, starts: Array | None, T: int) -> dict[str, tuple[Array, Array]]:
        """Per direction, where the top layer's padded outputs read from (``pad_outputs="carry"``)."""
        if counts is None or self.structure.pad_outputs != "carry":
            return {}
        return {d: carried(counts, starts, T, d) for d in self.structure.directions}

    def _merge(self, outs: list[Array]) -> Array:
        if len(outs) == 1:
            return outs[0]
        a, b = outs
        merge = self.structure.merge
        if merge == "concat":
            return np.concatenate(outs, axis=2)
        return a + b if merge == "sum" else (a + b) / 2 if merge == "ave" else a * b

    def _part(self, upstream: Array, j: int, nh: int, outs: list[Array]) -> Array:
        """The gradient on direction j's output from the gradient on the merged output."""
        if len(self.structure.directions) == 1:
            return upstream
        merge = self.structure.merge
        if merge == "concat":
            return np.ascontiguousarray(upstream[:, :, j * nh : (j + 1) * nh])  # strided costs 10x in checks
        return upstream if merge == "sum" else upstream / 2 if merge == "ave" else upstream * outs[1 - j]

    # ---- the functions of a cell module

    def forward(
        self, params: Mapping[str, Any], X: Any, h0: Any = None, lengths: Any = None, aux: Any = None
    ) -> tuple[Array, Any]:
        """H (T, n, o) (batch-first: (n, T, o)), zero at padded steps, and the cache ``backward`` needs.
        aux: a cell's per-step inputs (:mod:`grusym.model.inputs`)."""
        p, dims, _ = self._params(params)
        H, cache = self._run(p, dims, X, h0, lengths, keep=True, aux=aux)
        return self._outward(H, cache["unalign"]), cache

    def predict(
        self, params: Mapping[str, Any], X: Any, h0: Any = None, lengths: Any = None, aux: Any = None
    ) -> tuple[Array, Any]:
        """Forward only, for inference: ``(H, last states)`` as ``forward`` and ``final_states`` give them,
        keeping nothing for a backward pass (each cell's ``predict``)."""
        s = self.structure
        if (
            s.single
            and not (s.batch_first or s.flip_output or self.mask_value is not None)
            and h0 is None
            and lengths is None
            and aux is None
            and not inputs_of(self.cell)
        ):
            try:  # one cell, nothing to lay out: its predict checks the same params (ours cost 30-45 us)
                H, last = self.cell.predict(params, X)
                return H, self._stack([last])
            except GrusymError:
                pass  # the general path below names the problem as this model sees it
        p, dims, _ = self._params(params)
        H, run = self._run(p, dims, X, h0, lengths, keep=False, aux=aux)
        return self._outward(H, run["unalign"]), self._stack(run["last"])

    def _check_cache(self, cache: object) -> dict[str, Any]:
        if not isinstance(cache, dict) or cache.get("model") is not self or "cells" not in cache:
            raise InputError(
                "cache must be what this model's forward returned (a cell module's cache will not do)"
            )
        return cache

    def final_states(self, cache: Any) -> Any:
        """The last state(s) of every layer and direction, stacked as ``h0``, honouring lengths."""
        cache = self._check_cache(cache)
        return self._stack([self.cell.final_states(c) for c in cache["cells"]])

    def backward(
        self,
        params: Mapping[str, Any],
        cache: Any,
        dH: Any = None,
        dstates: Any = None,
        input_grad: Any = None,
    ) -> Params:
        """Gradients of sum(dH * H) + sum(dstates * final_states): every key of params (head zeros), the
        state stacks ``"h0"`` (``"c0"``, ...) and ``"X"`` for float inputs (in X's layout; input_grad as the
        cell modules' ``backward``). dH (H's shape) or None; dstates None or stacked as ``final_states``
        returns the states (None inside a tuple: zero). dH at padded steps is ignored."""
        p, dims, dtype = self._params(params, allow_complex=False)
        cache = self._check_cache(cache)
        T, n = cache["shape"][:2]
        if dH is None:
            dH_int = np.zeros(cache["shape"], dtype)
        else:
            dH_int = self._inward("dH", dH, cache["align"], output=True)
            if dH_int.shape != cache["shape"]:
                want = (
                    cache["shape"][1::-1] + cache["shape"][2:]
                    if self.structure.batch_first
                    else cache["shape"]
                )
                raise ShapeError(
                    f"dH must have the shape of H, {shape_text(want)}, got {shape_text(np.shape(dH))}"
                )
        dlast = self._per_cell_grads(dstates, n, dims, T)
        grads = self._backward(p, cache, dH_int, dlast, dims["h"], input_grad)
        return rt.head_zeros(grads, p, self.PARAMS)

    def _per_cell_grads(self, dstates: Any, n: int, dims: Mapping[str, int], T: int) -> list[Any]:
        if dstates is None or len(self.STATES) == 1:
            return self._per_cell("dstates", dstates, n, dims, T)
        # a multi-state cell: None inside the tuple is a zero gradient on that state
        if not (isinstance(dstates, (tuple, list)) and len(dstates) == len(self.STATES)):
            return self._per_cell("dstates", dstates, n, dims, T)  # raises, naming the expected form
        given = [i for i, d in enumerate(dstates) if d is not None]
        filled = [np.asarray(d) if d is not None else None for d in dstates]
        if not given:
            return [None] * len(self._cells)
        first = np.asarray(dstates[given[0]])
        lead, dt = first.shape[:-1], first.dtype
        zeros = [np.zeros((*lead, dims[self._size(s)]), dt) for s in self.STATES]
        parts = self._per_cell(
            "dstates", tuple(z if d is None else d for z, d in zip(zeros, filled, strict=True)), n, dims, T
        )
        return [tuple(None if d is None else part[i] for i, d in enumerate(filled)) for part in parts]

    def _backward(
        self, p: Params, cache: dict[str, Any], dH: Array, dlast: list[Any], nh: int, input_grad: Any
    ) -> Params:
        directions, index = self.structure.directions, cache["index"]
        grads: Params = {}
        state_grads: dict[str, list[Array]] = {s: [np.empty(0)] * len(self._cells) for s in self.STATES}
        upstream: Array | None = dH
        for layer in reversed(range(self.structure.num_layers)):
            assert upstream is not None  # every layer above the first reads floats, so it has an X gradient
            below: Array | None = None
            for j, direction in enumerate(directions):
                k = layer * len(directions) + j
                part = self._part(upstream, j, nh, cache["outputs"][layer])
                if cache["carry"] and layer == self.structure.num_layers - 1:
                    rows, used = cache["carry"][direction]  # each carried copy's gradient to its source
                    back = np.zeros_like(part)
                    np.add.at(back, (rows[used], np.nonzero(used)[1]), part[used])
                    part = back
                if direction == "reverse":
                    part = reverse_time(part, index)
                wants_x = True if layer else input_grad
                g = self.cell.backward(
                    self._cell_params(p, k), cache["cells"][k], part, dlast[k], input_grad=wants_x
                )
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
            grads["X"] = self._user_major(_at(upstream, cache["unalign"]))
        return grads

    def head(self, params: Mapping[str, Any], H: Any) -> Array:
        """logits = H @ W_hq + b_q for H (..., o), the cell module's head on the merged outputs."""
        p, _, _ = self._params(params, head=True)
        Ha = np.asarray(H)
        width = p["W_hq"].shape[0]
        if Ha.ndim == 0 or Ha.shape[-1] != width:
            raise ShapeError(f"H must have shape (..., o = {width}), got {shape_text(Ha.shape)}")
        return Ha @ p["W_hq"] + p["b_q"]

    def _rows(
        self, H: Array, Y: Any, lengths: Array | None, q: int, align: Index
    ) -> tuple[Array, Array, Any]:
        """The real positions' outputs (M, o) and targets (M,), M = T*n or sum(lengths); H aligned."""
        T, n, o = H.shape
        Ya = self._inward("Y", Y, align, output=True)
        keep = mask(lengths, T, n)
        if keep is not None and Ya.shape == (T, n):
            Ya = np.where(keep, Ya, 0)  # padded targets may hold anything (e.g. torch's ignore_index)
        Ya = validate.check_targets(Ya, T, n, q)
        if keep is None:
            return H.reshape(T * n, o), Ya.reshape(-1), None
        return H[keep], Ya[keep], keep

    def loss(
        self, params: Mapping[str, Any], X: Any, Y: Any, h0: Any = None, lengths: Any = None, aux: Any = None
    ) -> Any:
        """Mean softmax cross-entropy over the real positions (complex-analytic, for checks)."""
        p, dims, _ = self._params(params, head=True)
        H, run = self._run(p, dims, X, h0, lengths, keep=True, aux=aux)
        rows, targets, _ = self._rows(H, Y, run["lengths"], p["W_hq"].shape[1], run["align"])
        return rt.mean_cross_entropy(rows @ p["W_hq"] + p["b_q"], targets)

    def loss_and_grads(
        self,
        params: Mapping[str, Any],
        X: Any,
        Y: Any,
        h0: Any = None,
        lengths: Any = None,
        input_grad: Any = None,
        aux: Any = None,
    ) -> tuple[float, Params, Any]:
        """The loss, the gradient of every parameter, of the state stacks and of float X (input_grad as
        ``backward``), and the last states (as ``final_states``)."""
        p, dims, dtype = self._params(params, allow_complex=False, head=True)
        H, cache = self._run(p, dims, X, h0, lengths, keep=True, aux=aux)
        W_hq, b_q = p["W_hq"], p["b_q"]
        rows, targets, keep = self._rows(H, Y, cache["lengths"], W_hq.shape[1], cache["align"])
        value, dlogits = rt.softmax_cross_entropy(rows @ W_hq + b_q, targets, overwrite=True)
        drows = dlogits @ W_hq.T
        if keep is None:
            dH = drows.reshape(H.shape)
        else:
            dH = np.zeros(H.shape, dtype)
            dH[keep] = drows
        grads = self._backward(p, cache, dH, [None] * len(self._cells), dims["h"], input_grad)
        grads["W_hq"], grads["b_q"] = rows.T @ dlogits, dlogits.sum(axis=0)
        return float(value), rt.ordered(grads, self.PARAMS), self.final_states(cache)

    def step(self, params: Mapping[str, Any], x_t: Any, state: Any = None, aux: Any = None) -> Any:
        """One time step of every layer, for streaming: x_t (n, d) floats or (n,) ids; state stacked as
        ``h0`` (None: zeros); returns the new state stack(s). The top layer's output is the new
        ``OUTPUT`` state of the last layer (``state[-1]``, or ``state[STATES.index(OUTPUT)][-1]``)."""
        if self.structure.directions != ("forward",):
            raise InputError(
                f"step streams a unidirectional model; this one is {self.structure.describe()} "
                "(a reverse direction needs the whole sequence: use forward)"
            )
        p, dims, _ = self._params(params)
        x = np.asarray(x_t)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise ShapeError(
                f"x_t must have shape (n, d) floats or (n,) token ids, got {shape_text(x.shape)}"
            )
        states = self._per_cell("state", state, x.shape[0], dims, 1)
        out = self.STATES.index(self.OUTPUT)
        new: list[Any] = []
        inputs: Any = x
        cell_aux = per_cell_step(self, aux, x.shape[0])
        for k in range(len(self._cells)):
            extra = {} if cell_aux[k] is None else {"aux": cell_aux[k]}
            s = self.cell.step(self._cell_params(p, k), inputs, states[k], **extra)
            new.append(s)
            inputs = s if len(self.STATES) == 1 else s[out]
        return self._stack(new)
