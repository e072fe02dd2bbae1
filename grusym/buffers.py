"""Where the generated modules' arrays come from: the workspace of scratch buffers reused across calls,
the fresh arrays of the public functions, ``predict``'s allocator, and weight buffers whose rows stay off
4 KiB strides.

Contract: an allocator is called as ``buf(name, shape, dtype)`` and returns uninitialised memory. Re-exported
by :mod:`grusym.runtime`, which the generated code calls them through (``rt.fresh``, ``rt.Workspace``).
No array a public function returns aliases a :class:`Workspace` buffer.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ALIASING_STRIDE", "Inference", "Workspace", "clear_workspaces", "fresh", "weight_buffer"]

Array = NDArray[Any]


class Workspace:
    """Scratch buffers that live across calls: ``ws(name, shape, dtype)`` returns uninitialised memory.

    A name keeps its array while shape and dtype stay the same, so a training loop touches the same pages
    every step (fresh multi-megabyte arrays are unmapped and page-faulted again on every call, which cost
    a quarter of the d2l step). A generated module holds one; ``acquire`` hands it to one caller at a time
    and a concurrent caller gets a throwaway one, so threads never share buffers.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, Array] = {}
        self._lock = threading.Lock()
        _WORKSPACES.add(self)

    def __call__(self, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a

    def acquire(self) -> Workspace:
        """This workspace, or a fresh one if another caller holds it; pair with :meth:`release`."""
        return self if self._lock.acquire(blocking=False) else Workspace()

    def release(self, ws: Workspace) -> None:
        if ws is self:
            self._lock.release()

    def clear(self) -> None:
        """Drop every buffer (the next call allocates again)."""
        self._arrays.clear()

    def buffers(self) -> dict[str, int]:
        """Bytes held per buffer name."""
        return {name: a.nbytes for name, a in self._arrays.items()}


_WORKSPACES: weakref.WeakSet[Workspace] = weakref.WeakSet()


def clear_workspaces() -> None:
    """Drop the buffers of every workspace (e.g. before measuring the peak memory of a cold step)."""
    for ws in list(_WORKSPACES):
        ws.clear()


def fresh(name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """The allocator of public ``forward``/``backward``: a new array every call (their results escape)."""
    return np.empty(shape, dtype)


# a weight buffer whose rows are a multiple of this many bytes long gets padded rows (weight_buffer)
ALIASING_STRIDE = 4096
_PAD_BYTES = 64  # one cache line


def weight_buffer(buf: Any, name: str, shape: tuple[int, int], dtype: Any) -> Array:
    """``buf(name, shape, dtype)`` for a weight matrix the generated products read as their right operand,
    with its rows padded by a cache line when a row is a multiple of 4 KiB long: a (rows, cols) view.

    OpenBLAS copies (packs) the right operand on every call, reading it across rows; at a stride of 4 KiB
    every row maps to the same cache sets. Measured (2 threads): the LSTM's per-step (32, 256) @ (256, 1024)
    float32 product 145 -> 107 us, (64, 512) @ (512, 2048) 870 -> 740 us; strides that are not a multiple
    of 4 KiB gained nothing. The numbers are the same to the bit: BLAS reads the matrix through its leading
    dimension (tests/test_weight_buffer.py)."""
    rows, cols = shape
    itemsize = np.dtype(dtype).itemsize
    if cols == 0 or (cols * itemsize) % ALIASING_STRIDE:
        return buf(name, shape, dtype)
    return buf(name, (rows, cols + _PAD_BYTES // itemsize), dtype)[:, :cols]


class Inference:
    """The allocator of ``predict``: forward only, nothing kept for a backward pass.

    ``H`` (returned) is new on every call; the per-step values the forward loop saves for backward
    (``saved``, but not the input projections ``A``) share one (n, h) block across all T steps (a
    zero-stride view: each step writes over the last), and everything else comes from the workspace.
    """

    def __init__(self, workspace: Workspace, saved: tuple[str, ...]) -> None:
        self.workspace = workspace
        self.per_step = frozenset(saved) - {"A"}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
        if name == "H":
            return np.empty(shape, dtype)
        if name in self.per_step:
            block = self.workspace(name + "@step", shape[1:], dtype)
            # as_strided's Python took 12 us per buffer, a tenth of a (T 2, n 1) predict's fixed cost
            return np.ndarray(shape, block.dtype, buffer=block, strides=(0, *block.strides))
        return self.workspace(name, shape, dtype)
