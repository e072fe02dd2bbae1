"""Where the generated module implements each numbered equation, read from its own comments.

Contract: the code generator writes ``# (N) <equation>`` above forward lines and ``# (N) grad of: ...``
above backward blocks (fused blocks list several numbers). :func:`markers` finds every comment that cites an
equation number and the function it sits in; :func:`function_source` cuts a function out of the module text
with its first line number. Nothing here imports the module: it reads the text.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["Marker", "function_source", "markers"]

_COMMENT = re.compile(r"^\s*#\s?(?P<text>.*)$")
_NUMBER = re.compile(r"\((\d+)\)")


@dataclass(frozen=True)
class Marker:
    line: int  # 1-based line number in the module
    numbers: tuple[int, ...]
    text: str  # the comment without "# "
    function: str

    @property
    def backward(self) -> bool:
        return "grad of" in self.text


def _functions(source: str) -> list[tuple[str, int, int]]:
    tree = ast.parse(source)
    return [
        (node.name, node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    ]


def markers(source: str) -> list[Marker]:
    """Every comment line inside a function that cites equation numbers, in file order."""
    funcs = _functions(source)
    out = []
    for i, line in enumerate(source.splitlines(), start=1):
        m = _COMMENT.match(line)
        if not m:
            continue
        numbers = tuple(int(x) for x in _NUMBER.findall(m["text"]))
        owner = next((name for name, lo, hi in funcs if lo <= i <= hi), None)
        if numbers and owner:
            out.append(Marker(i, numbers, m["text"], owner))
    return out


def function_source(source: str, name: str) -> tuple[str, int]:
    """The text of top-level function ``name`` and its first line number."""
    lines = source.splitlines()
    for fname, lo, hi in _functions(source):
        if fname == name:
            return "\n".join(lines[lo - 1 : hi]), lo
    raise KeyError(name)
