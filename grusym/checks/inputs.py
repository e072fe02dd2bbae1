"""The point a check runs at: the caller's inputs flattened to named float64 arrays, and back.

Contract: ``inputs`` is a dict (``fun(inputs)``, the original form) or a tuple/list of positional arguments
(``fun(*inputs)``); either may nest dicts, lists and tuples. Float arrays and Python or NumPy float scalars
are the leaves that get gradients; integers (token ids), booleans and other objects are passed through
untouched. Leaves are named by their path: a dict key ``W``, a positional argument by the function's
parameter name (``x``, ``prev_h``; ``arg2`` without one), nested parts as ``params[0]`` and ``cache.h``.
The caller's arrays are never modified: every call gets fresh copies, in float64 (or complex128 for the
complex step) regardless of the caller's dtype, which is remembered for the tolerance table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError, ShapeError

__all__ = ["Point", "function_label"]

Array = NDArray[Any]


def function_label(fn: Any, role: str) -> str:
    """``role`` and the function's own name, for messages: "loss_and_grads (MyLSTM.backward)"."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name:
        name = name.rsplit("<locals>.", 1)[-1]  # a nested function: its own name, not its enclosing path
    return f"{role} ({name})" if name and name != "<lambda>" and name != role else role


def _is_float_leaf(v: Any) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, float | np.floating):
        return True
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _arg_names(fn: Callable[..., Any] | None, count: int) -> list[str]:
    names: list[str] = []
    try:
        sig = inspect.signature(fn) if fn is not None else None
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
    return [names[i] if i < len(names) else f"arg{i}" for i in range(count)]


@dataclass
class Point:
    """Named float64 leaves of the inputs, the structure to rebuild them and what was passed through."""

    positional: bool
    tree: Any  # the caller's inputs with every float leaf replaced by its name
    x: dict[str, Array]
    dtypes: dict[str, np.dtype[Any]]
    scalars: set[str] = field(default_factory=set)
    roots: list[str] = field(default_factory=list)  # top-level names, in order

    @classmethod
    def of(cls, inputs: Any, fn: Callable[..., Any] | None) -> Point:
        positional = not isinstance(inputs, Mapping)
        if positional and not isinstance(inputs, Sequence | np.ndarray):
            raise InputError(
                "inputs must be a dict of arrays or a tuple of positional arguments, "
                f"got {type(inputs).__name__}"
            )
        if positional and isinstance(inputs, np.ndarray):
            inputs = (inputs,)
        if len(inputs) == 0:
            raise InputError("inputs is empty: give a dict of float arrays or a tuple of arguments")
        point = cls(positional, None, {}, {})
        if positional:
            point.roots = _arg_names(fn, len(inputs))
            point.tree = tuple(point._flatten(v, r) for v, r in zip(inputs, point.roots, strict=True))
        else:
            point.roots = [str(k) for k in inputs]
            point.tree = {k: point._flatten(v, str(k)) for k, v in inputs.items()}
        if not point.x:
            raise InputError("inputs hold no float array or float scalar to differentiate")
        return point

    def _flatten(self, v: Any, path: str) -> Any:
        if isinstance(v, Mapping):
            return {k: self._flatten(w, f"{path}.{k}") for k, w in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(self._flatten(w, f"{path}[{i}]") for i, w in enumerate(v))
        if (isinstance(v, np.ndarray) and v.dtype.kind == "c") or isinstance(v, complex | np.complexfloating):
            raise InputError(f"inputs {path} is complex; check gradients at a real point")
        if isinstance(v, np.ndarray) and v.dtype.kind == "O":
            raise InputError(f"inputs {path} is an object array; give float arrays")
        if not _is_float_leaf(v):
            return _Fixed(v)
        a = np.array(v, dtype=np.float64, order="C", copy=True)  # C order: flat views write through
        if not np.isfinite(a).all():
            raise InputError(
                f"inputs[{path!r}] holds NaN or infinity; gradients can only be checked at finite points"
            )
        self.x[path] = a
        self.dtypes[path] = np.asarray(v).dtype
        if not isinstance(v, np.ndarray):
            self.scalars.add(path)
        return _Leaf(path)

    def select(self, wrt: Sequence[str] | None, exclude: Sequence[str] | None) -> list[str]:
        """The leaf names to check: all, or those under ``wrt``, minus those under ``exclude``."""

        def under(leaf: str, name: str) -> bool:
            return leaf == name or leaf.startswith((name + "[", name + "."))

        names = list(self.x)
        for label, chosen in (("wrt", wrt), ("exclude", exclude)):
            if chosen is None:
                continue
            if isinstance(chosen, str):
                raise InputError(f"{label} must be a list of names, got the string {chosen!r}")
            unknown = [c for c in chosen if not any(under(n, c) for n in names)]
            if unknown:
                raise InputError(f"{label} names {unknown} are not keys of inputs ({sorted(self.x)})")
        if wrt is not None:
            names = [n for n in names if any(under(n, c) for c in wrt)]
        if exclude is not None:
            names = [n for n in names if not any(under(n, c) for c in exclude)]
        if not names:
            raise InputError("wrt/exclude leave nothing to check")
        return names

    def build(self, x: Mapping[str, Array], native: bool = False) -> Any:
        """The caller's structure with fresh copies of ``x`` in place of its float leaves.

        native: cast each leaf back to the caller's dtype (float32 stays float32), else keep x's dtype.
        """

        def rebuild(t: Any) -> Any:
            if isinstance(t, _Leaf):
                a = np.array(x[t.name], dtype=self.dtypes[t.name] if native else None, copy=True)
                return a[()] if t.name in self.scalars else a
            if isinstance(t, _Fixed):
                return t.value
            if isinstance(t, Mapping):
                return {k: rebuild(w) for k, w in t.items()}
            return type(t)(rebuild(w) for w in t)

        return rebuild(self.tree)

    def call(self, fn: Callable[..., Any], x: Mapping[str, Array], native: bool = False) -> Any:
        built = self.build(x, native)
        return fn(*built) if self.positional else fn(built)

    def gradients(self, result: Any, names: list[str], label: str) -> tuple[dict[str, Array], Any]:
        """Match ``result`` (grads in the inputs' structure, or (loss, grads, ...)) to leaf names.

        Positional gradients may come one per argument, one per float argument, or one per checked
        argument (those ``names`` reaches: an argument left out by ``exclude``, e.g. a configuration dict
        holding floats, needs no slot). Returns (gradients by name, the loss if ``result`` carried one).
        """
        loss, grads = None, result
        pair = isinstance(result, tuple) and len(result) >= 2 and self._matches(result[1], names)
        if pair and (not self._matches(result, names) or self._loss_first(result)):
            loss, grads = result[0], result[1]
        if not self._matches(grads, names):
            want, hint = self._wanted(names)
            raise InputError(f"{label} must return {want}, got {_describe(result)}{hint}")
        found: dict[str, Any] = {}
        items = self._align(grads, names) or []
        for root, g in items:
            _collect(g, root, found)
        out = {}
        for name in names:
            if name not in found or found[name] is None:
                returned = sorted(k for k, v in found.items() if v is not None)
                raise InputError(f"{label} returned no gradient for {name!r} (it returned {returned})")
            g = np.asarray(found[name])
            if np.iscomplexobj(g) or g.dtype.kind not in "fiu":
                raise InputError(f"the gradient of {name!r} must be a real float array, got dtype {g.dtype}")
            if g.shape != self.x[name].shape:
                if g.size == self.x[name].size and g.ndim + self.x[name].ndim <= 1:
                    g = g.reshape(self.x[name].shape)  # a scalar input's gradient as a 1-element array
                else:
                    raise ShapeError(
                        f"gradient of {name!r} has shape {g.shape}, "
                        f"but {name!r} has shape {self.x[name].shape}"
                    )
            out[name] = g
        return out, loss

    def _wanted(self, names: list[str]) -> tuple[str, str]:
        """What a gradient result may look like, naming the arguments, and the remedy."""
        if not self.positional:
            return "a dict of gradients (or (loss, gradients))", ""
        floats, checked = self._float_roots(), self._checked_roots(names)
        counts = [f"one gradient per argument ({', '.join(self.roots)}: {len(self.roots)})"]
        if floats != self.roots:
            counts.append(f"per float argument ({', '.join(floats)}: {len(floats)})")
        if checked != floats:
            counts.append(f"per checked argument ({', '.join(checked)}: {len(checked)})")
        want = ", ".join(counts[:-1]) + " or " + counts[-1] if len(counts) > 1 else counts[0]
        extra = [r for r in floats if r not in checked]
        held = [r for r in checked if isinstance(self._root(r), Mapping)]
        hint = ""
        if held:  # a container of floats (a configuration dict) counts as a float argument
            leaves = ", ".join(n for n in self.x if n.startswith((held[0] + ".", held[0] + "[")))
            hint = (
                f"; {held[0]} holds floats ({leaves}), so it counts as a float argument: return None in "
                f"its place or pass exclude=[{held[0]!r}]"
            )
        elif extra:
            hint = f" ({', '.join(extra)} excluded)"
        return f"{want} (or (loss, gradients))", hint

    def _root(self, root: str) -> Any:
        return self.tree[self.roots.index(root)] if self.positional else self.tree[root]

    def _loss_first(self, result: tuple[Any, ...]) -> bool:
        """Both readings fit: (loss, grads) if result[0] is a scalar but the first input is not."""
        first = self.tree[0] if self.positional else None
        return np.ndim(result[0]) == 0 and not (isinstance(first, _Leaf) and self.x[first.name].ndim == 0)

    def _float_roots(self) -> list[str]:
        return [r for r in self.roots if any(n == r or n.startswith((r + "[", r + ".")) for n in self.x)]

    def _checked_roots(self, names: list[str]) -> list[str]:
        return [r for r in self.roots if any(n == r or n.startswith((r + "[", r + ".")) for n in names)]

    def _align(self, result: Any, names: list[str]) -> list[tuple[str, Any]] | None:
        """Pair ``result`` with the top-level inputs: one gradient per argument, float or checked argument."""
        if not self.positional:
            return [(str(k), v) for k, v in result.items()] if isinstance(result, Mapping) else None
        floats = self._float_roots()
        if isinstance(result, list | tuple):
            for roots in (self.roots, floats, self._checked_roots(names)):
                if len(result) == len(roots):
                    return list(zip(roots, result, strict=True))
            return None
        for roots in (floats, self._checked_roots(names)):
            if len(roots) == 1 and isinstance(result, np.ndarray | float | np.floating):
                return [(roots[0], result)]
        return None

    def _matches(self, result: Any, names: list[str]) -> bool:
        return self._align(result, names) is not None


@dataclass(frozen=True)
class _Leaf:
    name: str


@dataclass(frozen=True)
class _Fixed:
    value: Any


def _collect(g: Any, path: str, found: dict[str, Any]) -> None:
    if isinstance(g, Mapping):
        for k, v in g.items():
            _collect(v, f"{path}.{k}", found)
    elif isinstance(g, list | tuple):
        for i, v in enumerate(g):
            _collect(v, f"{path}[{i}]", found)
    else:
        found[path] = g


def _describe(result: Any) -> str:
    if isinstance(result, list | tuple):
        return f"a {type(result).__name__} of {len(result)}"
    return type(result).__name__
