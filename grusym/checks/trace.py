"""Where a complex step lost its imaginary part: the line of the user's code, and the construct on it.

Contract: :func:`locate_loss` runs the user's function three times, at x + i s v (the complex step) and at
x +- h v (real), and records every numeric value bound in the user's own frames (locals, one level of
``self``'s attributes, return values) at each line. Along v, a value's complex-step derivative Im(y) / s
must equal its central difference (y(+h) - y(-h)) / 2h; the first line after which some value breaks
that (or after which the runs take different lines: a branch on values) is where the imaginary part was
lost. The result names the file, the line, its source text, the value and the constructs on the line
that are known to drop an imaginary part (``np.var`` conjugates, ``abs`` drops the phase, a store into a
real array casts). Frames of NumPy, of the standard library and of this package's checks are not the
user's; their effect shows on the user's line that called them. Only used to word a refusal: it never
decides one.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Loss", "describe_line", "locate_loss", "user_frame"]

Array = NDArray[Any]
_MAX_EVENTS = 20_000
_MAX_ELEMENTS = 100_000  # values larger than this are not recorded
# constructs that drop or corrupt the imaginary part, by the name called on the line, and why
KNOWN = {
    "var": ("np.var", "takes |x - mean|^2 with the conjugate: real for complex x"),
    "std": ("np.std", "takes |x - mean|^2 with the conjugate: real for complex x"),
    "abs": ("abs", "drops the phase"),
    "absolute": ("np.absolute", "drops the phase"),
    "norm": ("a norm", "takes |x|"),
    "real": ("np.real", "takes the real part"),
    "float": ("float()", "drops the imaginary part"),
    "maximum": ("np.maximum", "compares real parts only"),
    "minimum": ("np.minimum", "compares real parts only"),
    "max": ("max", "compares real parts only"),
    "min": ("min", "compares real parts only"),
    "where": ("np.where", "picks by a comparison of values"),
    "clip": ("np.clip", "compares real parts only"),
    "sign": ("np.sign", "not the derivative of a complex number"),
    "conj": ("conj", "conjugates"),
    "conjugate": ("conjugate", "conjugates"),
    "vdot": ("np.vdot", "conjugates its first argument"),
    "astype": ("astype", "a cast to a real dtype drops the imaginary part"),
}
_NOT_USER = tuple(
    os.path.normcase(os.path.realpath(p))
    for p in (
        os.path.dirname(np.__file__),
        os.path.dirname(os.path.abspath(__file__)),
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
    )
)


def user_frame(filename: str) -> bool:
    """Whether code in ``filename`` is the user's (not NumPy's, the standard library's or the checks')."""
    if filename.startswith("<frozen") or filename.startswith("<string>"):
        return False
    path = os.path.normcase(os.path.realpath(filename))
    return not any(path == p or path.startswith(p + os.sep) for p in _NOT_USER)


def describe_line(filename: str, lineno: int) -> str:
    """``file:line `source``` with the known constructs on the line: "np.var (why)"."""
    source = linecache.getline(filename, lineno).strip()
    shown = (
        os.path.relpath(filename) if os.path.abspath(filename).startswith(os.getcwd() + os.sep) else filename
    )
    where = f"{shown}:{lineno}" + (f" `{source}`" if source else "")
    found = []
    try:
        tree = ast.parse(source) if source else None
    except SyntaxError:
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in KNOWN:
                found.append("{} ({})".format(*KNOWN[called]))
        elif isinstance(node, ast.Attribute) and node.attr in ("real", "imag"):
            found.append(f".{node.attr} (takes one part)")
        elif isinstance(node, ast.Compare):
            found.append("a comparison (of real parts)")
    return where + (": " + ", ".join(dict.fromkeys(found)) if found else "")


@dataclass(frozen=True)
class Loss:
    """Where the imaginary part went missing."""

    filename: str
    lineno: int
    value: str  # the name of the value that shows it ("" for a branch)
    complex_step: float  # its complex-step derivative (largest disagreeing element)
    central: float  # its central difference there
    branch: bool = False  # the runs took different lines after this one

    def __str__(self) -> str:
        where = describe_line(self.filename, self.lineno)
        if self.branch:
            return f"at {where}, the complex and the real runs took different branches"
        return (
            f"at {where}: after it, {self.value!r} has complex-step derivative {self.complex_step:.6g} "
            f"but central difference {self.central:.6g}"
        )


@dataclass
class _Event:
    key: tuple[str, int, str]  # (file, line, event) the runs must agree on
    executed: int  # the line just executed in that frame
    filename: str
    values: dict[str, Any]


def _numeric(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.dtype.kind in "fc" and v.size <= _MAX_ELEMENTS:
        return v.copy()
    if isinstance(v, float | complex | np.floating | np.complexfloating):
        return np.asarray(v).copy()
    return None


def _snapshot(frame: FrameType, result: Any = None, returning: bool = False) -> dict[str, Any]:
    values = {}
    for name, v in frame.f_locals.items():
        got = _numeric(v)
        if got is not None:
            values[name] = got
        elif name == "self" and hasattr(v, "__dict__"):
            for attr, w in vars(v).items():
                got = _numeric(w)
                if got is not None:
                    values[f"self.{attr}"] = got
    if returning:
        got = _numeric(result)
        if got is None and isinstance(result, tuple) and result:
            got = _numeric(result[0])
        if got is not None:
            values["<return value>"] = got
    return values


def _record(run: Callable[[], Any]) -> list[_Event]:
    events: list[_Event] = []

    def local(frame: FrameType, event: str, arg: Any, state: dict[str, int]) -> Any:
        if len(events) >= _MAX_EVENTS:
            return None
        if event == "line":
            events.append(
                _Event((frame.f_code.co_filename, frame.f_lineno, event), state["line"],
                       frame.f_code.co_filename, _snapshot(frame))
            )  # fmt: skip
            state["line"] = frame.f_lineno
        elif event == "return":
            events.append(
                _Event((frame.f_code.co_filename, frame.f_lineno, event), frame.f_lineno,
                       frame.f_code.co_filename, _snapshot(frame, arg, returning=True))
            )  # fmt: skip
        return lambda f, e, a: local(f, e, a, state)

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or not user_frame(frame.f_code.co_filename):
            return None
        state = {"line": frame.f_lineno}
        return lambda f, e, a: local(f, e, a, state)

    previous = sys.gettrace()
    sys.settrace(start)
    try:
        run()
    except Exception:
        pass  # the events up to the failure are what we need
    finally:
        sys.settrace(previous)
    return events


def locate_loss(
    evaluate: Callable[[dict[str, Array]], Any],
    x: dict[str, Array],
    name: str,
    v: Array,
    h: float,
    s: float = 1e-20,
) -> Loss | None:
    """The first line of the user's code after which the complex step disagrees with central differences.

    evaluate: dict of arrays (complex or real) -> the user's function's result. v: the direction in
    ``x[name]``; h: the central-difference step; s: the complex step. None when no line shows it (the
    loss happened outside the user's frames, or the recording limit was reached).
    """

    def at(shift: complex) -> dict[str, Array]:
        moved = {k: a.astype(np.complex128) if shift.imag else a.copy() for k, a in x.items()}
        moved[name] = moved[name] + (shift if shift.imag else shift.real) * v
        return moved

    def run(shift: complex) -> Callable[[], Any]:
        return lambda: evaluate(at(shift))

    runs = [_record(run(z)) for z in (1j * s, complex(h), complex(-h))]
    for c, p, m in zip(*runs, strict=False):
        if not (c.key == p.key == m.key):
            return Loss(c.filename, c.executed, "", 0.0, 0.0, branch=True)
        for var, yc in c.values.items():
            if var not in p.values or var not in m.values:
                continue
            yp, ym = np.asarray(p.values[var]), np.asarray(m.values[var])
            yc = np.asarray(yc)
            if yp.shape != ym.shape or yc.shape != yp.shape or np.iscomplexobj(yp):
                continue
            d_cs = np.imag(yc) / s
            d_fd = (yp - ym) / (2 * h)
            eps = float(np.finfo(yp.dtype).eps) if yp.dtype.kind == "f" else 2.2e-16
            scale = max(float(np.max(np.abs(d_cs), initial=0.0)), float(np.max(np.abs(d_fd), initial=0.0)))
            noise = 64 * eps * float(np.max(np.abs(yp), initial=0.0)) / h
            gap = np.abs(d_cs - d_fd)
            if gap.size and float(np.max(gap)) > 0.05 * scale + noise:
                k = int(np.argmax(gap))
                return Loss(
                    c.filename, c.executed, var, float(d_cs.reshape(-1)[k]), float(d_fd.reshape(-1)[k])
                )
    return None
