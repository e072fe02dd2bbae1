"""Fused loops: the generated per-step body with each run of elementwise work as one Numba kernel, and the
whole loop as one Numba function that calls the BLAS itself.

Contract: :class:`Fuser` takes the loop body that ``forward_code`` / ``adjoint_code`` emit for the NumPy
module (in-place ufunc calls, matmuls, comments) and writes, instead of :func:`~grusym.symbolic.emit.loop`,
a loop over ``t`` that keeps every matmul (and every call it cannot inline) as the same NumPy call and
replaces each run of elementwise calls between them by one call of an ``@numba.njit`` kernel. A kernel
performs the run's operations in the same order, one element at a time, so each operand is read once and
each result written once instead of once per call. Arithmetic, ``relu``, ``hard_sigmoid`` and ``sign`` give
the same bits as NumPy's calls; ``tanh`` and ``sigmoid`` are :mod:`grusym.fastmath`'s vectorisable ones
(NumPy's SIMD tanh cannot be called from a kernel, and a scalar libm call would cost 50x), which agree bit for
bit with their NumPy twins there and are within ``fastmath.TANH_ULPS`` / ``SIGMOID_ULPS`` of exact. Other
transcendentals (exp, softplus, ...) stay NumPy calls between kernels.

When every statement left in the loop is a matmul, a kernel call or a view of a per-step array, the loop
also becomes one Numba function (``<prefix>_seq``) whose matmuls call the BLAS NumPy's ``np.matmul`` calls
(:func:`grusym.blas.matmul`: the same routine, the same bits), and the module calls it when that BLAS was
found (``_blas.AVAILABLE``): no Python runs per time step, which at batch 1 is most of the time.

Kernels index whole C-contiguous arrays by ``t`` and take one row per batch row, so the inner loop runs
over contiguous memory even for a column block of ``A`` or ``dA`` (a strided 2-D view would not vectorise).
Nothing here knows about cells: it reads only the emitted lines and where each name lives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .emit import Writer

__all__ = ["Fuser"]

# ufunc -> the scalar expression of its operands, for the calls a kernel performs
_ARITH = {
    "np.add": "{0} + {1}",
    "np.subtract": "{0} - {1}",
    "np.multiply": "{0} * {1}",
    "np.divide": "{0} / {1}",
    "np.negative": "-{0}",
    "np.sign": "np.sign({0})",
    "np.tanh": "_fm.tanh({0})",
    "rt.sigmoid": "_fm.sigmoid({0})",
    "rt.relu": "_fm.relu({0})",
    "rt.hard_sigmoid": "_fm.hard_sigmoid({0})",
}
# the statements a whole-loop Numba function can run: a view of a per-step array, a matmul, a kernel call
_VIEW = re.compile(r"\w+ = \w+\[[^\]]*\]")
_MATMUL = re.compile(r"np\.matmul\((?P<a>.+), (?P<b>\w+), out=(?P<out>\w+)\)")
_KERNEL_CALL = re.compile(r"(?P<fn>\w+)\((?P<args>.*)\)")
_CALL = re.compile(r"(?P<fn>(?:np|rt)\.\w+)\((?P<args>.*)\)")
_NAME = re.compile(r"[A-Za-z_]\w*")
# how each per-step sequence of emit.loop advances with t: the time index of its row t
_SHIFT = {":-1": "t", "1:": "t + 1", "T - 1::-1": "t", ":0:-1": "t + 1", "::-1": "t", ":": "t", "": "t"}


def _split(args: str) -> list[str]:
    """Top-level comma-separated arguments (commas inside brackets belong to a slice)."""
    out, depth, cur = [], 0, ""
    for ch in args:
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()] if cur.strip() else out


@dataclass(frozen=True)
class _Where:
    """Where a name's (n, k*h) per-step value lives: ``base[time, i, cols]`` (time None: per-call buffer)."""

    base: str
    time: str | None
    cols: str
    batched: bool = True  # False: an (h,) parameter vector, the same row for every batch row

    def row(self, base: str) -> str:
        if not self.batched:
            return base
        idx = [self.time, "_b"] if self.time else ["_b"]
        return f"{base}[{', '.join(idx + ([self.cols] if self.cols != ':' else []))}]"

    def at_t(self) -> str:
        assert self.time is not None
        cols = f", :, {self.cols}" if self.cols != ":" else ""
        return f"{self.base}[{self.time}{cols}]"


def _where(seq: str) -> _Where:
    m = re.fullmatch(r"(\w+)(?:\[(.*)\])?", seq)
    if m is None:
        raise NotImplementedError(f"cannot fuse a loop over {seq!r}")
    base, index = m.group(1), m.group(2) or ""
    parts = [p.strip() for p in index.split(",")] if index else [""]
    if len(parts) not in (1, 3) or parts[0] not in _SHIFT or (len(parts) == 3 and parts[1] != ":"):
        raise NotImplementedError(f"cannot fuse a loop over {seq!r}")
    return _Where(base, _SHIFT[parts[0]], parts[2] if len(parts) == 3 else ":")


@dataclass
class _Op:
    fn: str
    args: list[str]
    out: str
    notes: list[str] = field(default_factory=list)  # the comment lines above it
    line: str = ""  # the NumPy call it came from

    @property
    def reads(self) -> list[str]:
        return [a for a in self.args if _NAME.fullmatch(a)]


def _parse(line: str) -> _Op | None:
    """An elementwise arithmetic call as an op, or None (a matmul, a transcendental, anything else)."""
    m = _CALL.fullmatch(line)
    if m is None:
        return None
    fn, args = m.group("fn"), _split(m.group("args"))
    if fn == "np.copyto" and len(args) == 2 and all(_NAME.fullmatch(a) for a in args):
        return _Op("np.copyto", [args[1]], args[0])
    if fn not in _ARITH or not args[-1].startswith("out="):
        return None
    ins, out = args[:-1], args[-1].removeprefix("out=")
    if not all(_NAME.fullmatch(a) for a in [*ins, out]):
        return None  # a sliced operand: leave the call to NumPy
    return _Op(fn, ins, out)


def _first_access(kind: str, item: object) -> dict[str, str]:
    """name -> "r" when a segment reads it before writing it, "w" when it only overwrites it."""
    if kind == "ops":
        first: dict[str, str] = {}
        for op in item:  # type: ignore[attr-defined]
            for r in op.reads:
                first.setdefault(r, "r")
            first.setdefault(op.out, "w")
        return first
    line = str(item).partition("  # ")[0]
    if line.startswith("#"):
        return {}
    m = _CALL.fullmatch(line)
    args = _split(m.group("args")) if m else [line]
    outs = [a.removeprefix("out=") for a in args if a.startswith("out=")]
    if m and m.group("fn") == "np.copyto":
        outs, args = [args[0]], args[1:]
    reads = {n for a in args if not a.startswith("out=") for n in _NAME.findall(a)}
    return {n: "r" for n in reads} | {n: "w" for n in outs if n not in reads}


class Fuser:
    """Collects the kernels of one module; :meth:`loop` writes one fused loop and queues its kernels,
    :meth:`emit_kernels` writes them all at the end of the module."""

    def __init__(self) -> None:
        self.kernels: list[str] = []
        self.count: dict[str, int] = {}  # kernels so far per name prefix

    def loop(
        self,
        w: Writer,
        seqs: dict[str, str],
        body: list[str],
        *,
        prefix: str,
        constants: list[str],
        views: dict[str, str],
        vectors: tuple[str, ...] = (),
        live_out: tuple[str, ...] = (),
        reverse: bool = False,
        saved: tuple[str, ...] = (),
    ) -> None:
        """Write ``for t in range(T)`` (reverse: T-1 down to 0) with the body fused (see the module doc).

        prefix: the kernels' name prefix (``_forward``, ``_backward``); constants: the 0-d dtype constants
        defined before the loop (``one``, ``half``, ...), which kernels take as arguments; seqs: the
        per-step sequences of emit.loop (name -> e.g. ``H[:-1]``, ``dA[::-1, :, :nh]``); views: per-call
        column views of buffers (name -> e.g. ``P_h_prev[:, :nh]``); vectors: the cell's (h,) parameter
        vectors, broadcast over the batch; live_out: per-call buffers read after the loop (the gradients
        of the initial states); saved: the per-step values of ``seqs`` kept only for backward (forward's
        loop): a second whole-loop function, ``_predict_seq``, keeps them in registers (or in one (n, h)
        block of their array when a matmul reads them), and runs when the allocator ``buf`` is predict's
        :class:`~grusym.runtime.Inference`.
        """
        where = {name: _where(seq) for name, seq in seqs.items()}
        for name, view in views.items():
            m = re.fullmatch(r"(\w+)\[:, (.+)\]", view)
            if m is None:
                raise NotImplementedError(f"cannot fuse over the view {name} = {view}")
            where[name] = _Where(m.group(1), None, m.group(2))
        where |= {v: _Where(v, None, ":", batched=False) for v in vectors}
        lines = [raw.strip() for raw in body]
        # segments: ("py", line) or ("ops", [ops]); comments travel with the op after them
        segments: list[tuple[str, object]] = []
        notes: list[str] = []
        for s in lines:
            if s.startswith("#"):
                notes.append(s)
                continue
            code, _, comment = s.partition("  # ")
            op = _parse(code)
            if op is not None:
                op.line = s
            if op is None:
                segments += [("py", n) for n in notes]
                segments.append(("py", s))
            else:
                op.notes, last = notes + [f"# {comment}"] * bool(comment), segments[-1] if segments else None
                if last is not None and last[0] == "ops":
                    last[1].append(op)  # type: ignore[attr-defined]
                else:
                    segments.append(("ops", [op]))
            notes = []
        segments += [("py", n) for n in notes]
        py_lines = [
            str(x).partition("  # ")[0] for kind, x in segments if kind == "py" and not str(x).startswith("#")
        ]
        py_text = "\n".join(py_lines)
        access = [_first_access(kind, item) for kind, item in segments]
        steps = f"range({'T - 1, -1, -1' if reverse else 'T'})"
        stmts, kernels = self._build(prefix, where, segments, access, py_text, live_out, constants)
        whole = self._whole_loop(f"{prefix}_seq", steps, stmts, kernels)
        inference = None
        if saved and whole is not None:  # the same loop keeping the saved values in registers
            kept = {name: loc for name, loc in where.items() if name not in saved}
            built = self._build("_predict", kept, segments, access, py_text, live_out, constants)
            buffers = {name: f"{seqs[name]}[0]" for name in saved}  # (n, h): the allocator's one block
            inference = self._whole_loop("_predict_seq", steps, *built, buffers)
        if inference is not None:
            w("if _blas.AVAILABLE and isinstance(buf, rt.Inference):  # predict: nothing kept for backward")
            w(f"    {inference}")
        if whole is not None:
            w(f"{'el' * (inference is not None)}if _blas.AVAILABLE:  # the whole loop in one Numba call")
            w(f"    {whole}")
            w("else:")
            w.indent += 1
        w(f"for t in {steps}:")
        w.indent += 1
        for line in stmts:
            w(line)
        w.indent -= 1 + (whole is not None)

    def _build(
        self,
        prefix: str,
        where: dict[str, _Where],
        segments: list[tuple[str, object]],
        access: list[dict[str, str]],
        py_text: str,
        live_out: tuple[str, ...],
        constants: list[str],
    ) -> tuple[list[str], set[str]]:
        """Queue the kernels of one pass over the segments; return the loop's statements and the kernels'
        names."""
        stmts = [f"{name} = {loc.at_t()}" for name, loc in where.items() if loc.time is not None
                 and re.search(rf"\b{name}\b", py_text)]  # fmt: skip
        kernels: set[str] = set()
        for k, (kind, item) in enumerate(segments):
            if kind == "py":
                stmts.append(str(item))
                continue
            ops: list[_Op] = item  # type: ignore[assignment]
            later = access[k + 1 :] + access[: k + 1]  # the loop repeats: step t-1 follows step t

            def live(n: str) -> bool:
                if n in live_out:
                    return True
                return next((a[n] for a in later if n in a), "w") == "r"  # noqa: B023 - used in this pass

            self.count[prefix] = self.count.get(prefix, -1) + 1
            name = f"{prefix}_k{self.count[prefix]}"
            kernels.add(name)
            args = self._kernel(name, ops, where, live, constants)
            nums = sorted({int(x) for op in ops for c in op.notes for x in re.findall(r"^# \((\d+)\)", c)})
            what = ", ".join(f"({x})" for x in nums)
            calls = f"{len(ops)} elementwise call{'s' * (len(ops) > 1)}"
            stmts.append(f"{name}({', '.join(args)})  # {what + ': ' if what else ''}{calls} in one pass")
        return stmts, kernels

    def _whole_loop(
        self, name: str, steps: str, stmts: list[str], kernels: set[str], passed: dict[str, str] | None = None
    ) -> str | None:
        """Queue ``name``, the loop of ``stmts`` as one Numba function, and return the call of it (the
        arguments ``passed`` maps replaced by its expressions); None when a statement is none of a view of
        a per-step array, a matmul and a kernel call."""
        body, assigned, free = [], set(), []
        for line in stmts:
            code = line.partition("  # ")[0]
            if code.startswith("#"):
                body.append(line)
                continue
            m, call = _MATMUL.fullmatch(code), _KERNEL_CALL.fullmatch(code)
            if m is not None:
                body.append(f"_blas.matmul({m['a']}, {m['b']}, {m['out']})")
                used = f"{m['a']} {m['b']} {m['out']}"
            elif _VIEW.fullmatch(code):
                body.append(line)
                target, _, used = code.partition(" = ")
                assigned.add(target)
            elif call is not None and call["fn"] in kernels:
                body.append(line)
                used = call["args"]
            else:
                return None
            free += [x for x in _NAME.findall(used) if x not in assigned]
        known = {"t", "n", "nh", "T"}
        args = [x for x in dict.fromkeys(free) if x not in known]
        text = Writer()
        text('@numba.njit(cache=_CACHE, nogil=True, error_model="numpy")')
        text(f"def {name}(T, n, nh, {', '.join(args)}):")
        text(f"    for t in {steps}:")
        text.indent = 2
        for line in body:
            text(line)
        self.kernels.append("\n".join(text.lines))
        passed = passed or {}
        return f"{name}(T, n, nh, {', '.join(passed.get(a, a) for a in args)})"

    def _kernel(
        self,
        name: str,
        ops: list[_Op],
        where: dict[str, _Where],
        live: Callable[[str], bool],
        constants: list[str],
    ) -> list[str]:
        """Queue kernel ``name`` for ``ops``; return the arguments of its call.

        Inside it, a value keeps its generated name as a scalar; ``R_<name>`` is the row of batch row ``_b``
        it lives in, ``B_<name>`` a per-call buffer, ``K_<name>`` a 0-d constant (cell names are lowercase).
        """

        def place(n: str) -> _Where:
            return where.get(n) or _Where(n, None, ":")

        # one scalar per memory location: two names for the same block (rnn_tanh's dA_t and da_h) share it
        canon: dict[str, str] = {}
        by_place: dict[_Where, str] = {}
        for op in ops:
            for n in [*op.reads, op.out]:
                if n in constants or n in canon:
                    continue
                p = place(n)
                for other, o in by_place.items():
                    same_rows = (other.base, other.time) == (p.base, p.time)
                    if same_rows and other != p and ":" in (other.cols, p.cols):
                        raise NotImplementedError(f"{n} and {o} overlap in one kernel")
                canon[n] = by_place.setdefault(p, n)

        scalars = {n for op in ops for n in [*op.reads, op.out]}

        def param(base: str) -> str:  # an array named like a scalar of the kernel (a buffer, a vector)
            return f"B_{base}" if base in scalars else base

        seen: set[str] = set()
        loads: set[str] = set()  # read before the kernel writes them: from memory
        for op in ops:
            loads |= {canon[r] for r in op.reads if r in canon and canon[r] not in seen}
            seen.add(canon.get(op.out, op.out))
        # written values go to memory when a cache keeps them or something after the kernel reads them
        stores = {canon[n] for n in canon if canon[n] in seen and (place(n).time is not None or live(n))}
        kept = [c for c in dict.fromkeys(canon.values()) if c in loads or c in stores]
        arrays = list(dict.fromkeys(place(c).base for c in kept))
        used_consts = [c for c in constants if any(c in op.reads for op in ops)]
        body: list[str] = []
        loaded: set[str] = set()
        written: list[str] = []
        for op in ops:
            body += op.notes
            for r in op.reads:
                c = canon.get(r)
                if c in loads and c not in loaded:
                    body.append(f"{c} = R_{c}[_j]")
                    loaded.add(c)
            ins = [canon.get(r, r) for r in op.reads]
            rhs = ins[0] if op.fn == "np.copyto" else _ARITH[op.fn].format(*ins)
            out = canon.get(op.out, op.out)
            body.append(f"{out} = {rhs}")
            if out in stores and out not in written:
                written.append(out)
        text = Writer()
        text('@numba.njit(cache=_CACHE, nogil=True, error_model="numpy")')
        params = [param(a) for a in arrays] + [f"K_{c}" for c in used_consts]
        text(f"def {name}(t, n, nh, {', '.join(params)}):")
        text.indent = 1
        for c in used_consts:
            text(f"{c} = K_{c}[()]")
        text("for _b in range(n):")
        text.indent = 2
        for c in kept:
            text(f"R_{c} = {place(c).row(param(place(c).base))}")
        text("for _j in range(nh):")
        text.indent = 3
        for line in body:
            text(line)
        for c in written:
            text(f"R_{c}[_j] = {c}")
        self.kernels.append("\n".join(text.lines))
        return ["t", "n", "nh", *arrays, *used_consts]

    @staticmethod
    def prune(w: Writer, start: int, loop_start: int) -> None:
        """Drop the buffers and views allocated in ``w.lines[start:loop_start]`` that the fused loop after
        them no longer names (values the kernels keep in registers)."""
        used = set(_NAME.findall("\n".join(w.lines[loop_start:])))
        alloc = re.compile(r"\s*(\w+) = (buf\(|\w+\[:, )")
        w.lines[start:loop_start] = [
            ln for ln in w.lines[start:loop_start] if not ((m := alloc.match(ln)) and m.group(1) not in used)
        ]

    def emit_kernels(self, w: Writer) -> None:
        """The queued kernels, after the module's functions (they are looked up when called)."""
        for k in self.kernels:
            w()
            w()
            w.lines.extend(k.split("\n"))
