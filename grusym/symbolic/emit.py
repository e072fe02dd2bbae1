"""Elementwise emission: scalar SymPy expressions as NumPy ufunc calls writing into preallocated buffers.

Contract: :class:`InPlace` turns one scalar expression (a step's scalar form, or one adjoint contribution)
into ufunc calls with ``out=``, so a k-operation expression costs k calls and no allocation;
:func:`cheapest` picks the algebraically equal form that needs the fewest calls. :class:`Writer` collects
indented lines of module text. Nothing here knows about cells, steps or time.
"""

from __future__ import annotations

import re

import sympy as sp

from .accuracy import Context, as_accurate
from .primitives import _Primitive
from .printing import code

__all__ = ["InPlace", "Writer", "cheapest", "cost", "loop", "same_functions"]


class Writer:
    """Lines of module text at an indentation level; ``w(line)`` appends one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 0

    def __call__(self, line: str = "") -> None:
        self.lines.append(("    " * self.indent + line) if line else "")

    def block(self, text: str) -> None:
        self.indent = 0
        for line in text.strip("\n").split("\n"):
            self(line)


def loop(w: Writer, seqs: dict[str, str], body: list[str]) -> None:
    """``for <the names the body reads> in zip(<their per-step sequences>):`` and the body."""
    code_lines = "\n".join(ln for ln in body if not ln.lstrip().startswith("#"))
    used = [name for name in seqs if re.search(rf"\b{name}\b", code_lines)]
    if len(used) == 1:  # zip of one sequence would give 1-tuples (a state that is a constant: h = a - a)
        w(f"for {used[0]} in {seqs[used[0]]}:")
    else:
        w(f"for {', '.join(used)} in zip({', '.join(seqs[name] for name in used)}, strict=True):")
    w.lines.extend(body)


# the ufuncs of SymPy's own functions that derivative rules produce (primitives carry their own)
_SYMPY_UFUNC = {sp.exp: "np.exp", sp.sign: "np.sign", sp.Abs: "np.abs", sp.Heaviside: "rt.step"}


def _ufunc(e: sp.Expr) -> str | None:
    if isinstance(e, _Primitive):
        return type(e).ufunc
    return _SYMPY_UFUNC.get(type(e))


def _constant(e: sp.Expr) -> bool:
    """A number, or arithmetic of numbers (gelu's sqrt(2)/sqrt(pi)); tanh(0) is a call, not a constant."""
    return bool(e.is_number and not e.atoms(sp.Function))


def _atom(e: sp.Expr) -> bool:
    return bool(e.is_Symbol or _constant(e))


def _number(e: sp.Expr) -> str:
    """A constant as code: rationals exactly as SymPy prints them, others (gelu's sqrt(2/pi)) as the
    nearest float64."""
    return code(e) if e.is_Rational else repr(float(e))


_CONSTANTS = {sp.Integer(1): "one", sp.Integer(2): "two", sp.Rational(1, 2): "half"}


class InPlace:
    """Emit a scalar expression as NumPy calls writing into an existing buffer ``out`` (``out=``).

    The first operand of every sum and product is computed into ``out`` and the others are folded in, so a
    k-operation expression costs k calls and no allocation; only a second non-trivial operand of one sum
    or product needs a scratch buffer (``tmp0``, ``tmp1``, ...). ``out`` must not be read by the expression.
    Numbers become 0-d arrays of the working dtype named in ``constants`` (a ufunc converts a Python
    scalar on every call, which costs as much as the operation on a small array): ``one``, ``two``,
    ``half``, else ``k0``, ``k1``, ...
    """

    def __init__(self) -> None:
        self.free: list[str] = []
        self.count = 0  # scratch buffers the emitted code needs
        self.constants: dict[str, str] = {}  # name -> value, defined once before the loop

    def lit(self, e: sp.Expr) -> str:
        if e.is_Symbol:
            return str(e.name)
        value = _number(e)
        # one name per value: five layer norms' eps are one k0, not k0..k4
        same = next((k for k, v in self.constants.items() if v == value), None)
        name = _CONSTANTS.get(e) or same or f"k{len(self.constants)}"
        self.constants.setdefault(name, value)
        return name

    def define_constants(self, w: Writer, dtype: str) -> None:
        for name, value in self.constants.items():
            w(f"{name} = np.array({value}, dtype={dtype})")

    def scratch(self) -> str:
        """A free scratch buffer's name (``tmp0``, ...); give it back by appending it to ``free``."""
        if self.free:
            return self.free.pop()
        self.count += 1
        return f"tmp{self.count - 1}"

    def fold(self, op: str, e: sp.Expr, out: str) -> list[str]:
        """The calls that apply ``out = op(out, e)`` in place (``e`` through a scratch buffer if needed)."""
        if _atom(e):
            return [f"{op}({out}, {self.lit(e)}, out={out})"]
        t = self.scratch()
        lines = [*self.emit(e, t), f"{op}({out}, {t}, out={out})"]
        self.free.append(t)
        return lines

    def emit(self, e: sp.Expr, out: str) -> list[str]:
        if e.is_Symbol:
            return [f"np.copyto({out}, {e.name})"]
        if _constant(e):
            return [f"{out}.fill({_number(e)})"]  # once per call: no constant needed
        fn = _ufunc(e)
        if fn == "np.copyto":  # the identity
            return self.emit(e.args[0], out)
        if fn is not None:
            arg = e.args[0]
            if arg.is_Symbol:
                return [f"{fn}({arg.name}, out={out})"]
            return [*self.emit(arg, out), f"{fn}({out}, out={out})"]
        if isinstance(e, sp.Pow):
            src = self.lit(e.base) if e.base.is_Symbol else out
            lines = [] if e.base.is_Symbol else self.emit(e.base, out)
            if e.exp == 2:
                return [*lines, f"np.multiply({src}, {src}, out={out})"]
            if e.exp == -1:
                return [*lines, f"np.reciprocal({src}, out={out})"]
            return [*lines, f"np.power({src}, {code(e.exp)}, out={out})"]
        if isinstance(e, sp.Mul):
            coeff, factors = e.as_coeff_mul()
            coeff *= sp.Mul(*(f for f in factors if _constant(f)))  # sqrt(2)/sqrt(pi): one constant
            factors = tuple(f for f in factors if not _constant(f))
            atoms = [f for f in factors if f.is_Symbol]
            rest = [f for f in factors if not f.is_Symbol]
            if rest:
                lines = self.emit(rest[0], out)
                for f in rest[1:]:
                    lines += self.fold("np.multiply", f, out)
                lines += [f"np.multiply({out}, {a.name}, out={out})" for a in atoms]
            elif len(atoms) >= 2:
                lines = [f"np.multiply({atoms[0].name}, {atoms[1].name}, out={out})"]
                lines += [f"np.multiply({out}, {a.name}, out={out})" for a in atoms[2:]]
            else:
                return [f"np.multiply({atoms[0].name}, {self.lit(coeff)}, out={out})"]
            if coeff == -1:
                lines.append(f"np.negative({out}, out={out})")
            elif coeff != 1:
                lines.append(f"np.multiply({out}, {self.lit(coeff)}, out={out})")
            return lines
        if isinstance(e, sp.Add):
            # (sign, magnitude) terms; ``out`` holds sign * (the sum so far)
            terms = []
            for a in e.args:
                if _constant(a):
                    terms.append((1 if a >= 0 else -1, abs(a)))
                else:
                    terms.append((-1, -a) if a.as_coeff_Mul()[0] < 0 else (1, a))
            compound = [t for t in terms if not _atom(t[1])]
            if compound:
                first = next((t for t in compound if t[0] > 0), compound[0])
                terms.remove(first)
                lines, sign = self.emit(first[1], out), first[0]
            else:
                terms.sort(key=lambda t: t[0] < 0)  # a positive operand first: a - b, not -(b - a)
                (s1, a1), (s2, a2) = terms[:2]
                terms = terms[2:]
                op = "np.add" if s1 == s2 else "np.subtract"
                lines, sign = [f"{op}({self.lit(a1)}, {self.lit(a2)}, out={out})"], s1
            if sign < 0:
                flip = next((t for t in terms if t[0] > 0 and _atom(t[1])), None)
                if flip is not None:
                    terms.remove(flip)
                    lines.append(f"np.subtract({self.lit(flip[1])}, {out}, out={out})")
                    sign = 1
            for s, a in terms:
                lines += self.fold("np.add" if s * sign > 0 else "np.subtract", a, out)
            if sign < 0:
                lines.append(f"np.negative({out}, out={out})")
            return lines
        raise NotImplementedError(f"no in-place emission for {e}")


def cost(e: sp.Expr) -> tuple[int, int]:
    """(in-place NumPy calls, scratch buffers) that emitting ``e`` needs."""
    em = InPlace()
    return len(em.emit(e, "out")), em.count


def same_functions(form: sp.Expr, e: sp.Expr) -> bool:
    """Whether ``form`` applies no function that ``e`` does not: an equal form that does can overflow
    where ``e`` cannot, e.g. ``factor(1 - exp(-y))`` is ``(exp(y) - 1)*exp(-y)``, inf*0 = nan for y > 710
    (softplus' derivative at a large argument)."""
    return bool(form.atoms(sp.Function) <= e.atoms(sp.Function))


def cheapest(e: sp.Expr, ctx: Context) -> sp.Expr:
    """The algebraically equal form of ``e`` that needs the fewest in-place NumPy calls (then buffers)
    and is as accurate in float64 (:func:`~grusym.symbolic.accuracy.as_accurate`; ``ctx``: what its
    symbols are).

    Candidates: ``e`` itself (it wins ties), its expansion, the expansion collected on each symbol, and its
    factorisation. E.g. ``h_prev*z + h_tilde*(1 - z)`` (4 calls, 1 buffer) becomes
    ``h_tilde + z*(h_prev - h_tilde)`` (3 calls, none). A candidate must not apply a function ``e`` does
    not (see :func:`same_functions`), nor lose accuracy: ``2*s*(1 - tanh(s)**2) + 2*tanh(s)`` stays as it
    is, since its expansion cancels to 0 beyond s = 1e16.
    """
    expanded = sp.expand(e)
    candidates = [e, expanded, *(sp.collect(expanded, s) for s in sorted(e.free_symbols, key=str))]
    candidates.append(sp.factor(e))
    for best in sorted(dict.fromkeys(c for c in candidates if same_functions(c, e)), key=cost):
        if best == e or as_accurate(best, e, ctx):
            break
    # a factored denominator (division by a value) expands to unlike fractions: cancel them too
    if sp.expand(best - e) != 0 and sp.cancel(sp.together(best - e)) != 0:  # pragma: no cover
        raise AssertionError(f"rewrite of {e} as {best} is not an identity")
    return best
