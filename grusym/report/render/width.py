"""How wide a display equation renders, estimated from its TeX, and where to break it into lines.

Contract: :func:`width` estimates the rendered width of TeX math in ex (MathJax's unit; calibrated against
MathJax 3 SVG output, within about 15 %) from the glyphs it shows: commands that print nothing count zero,
sub- and superscripts count at script size, ``\\frac`` and ``\\underset`` count their wider part.
:func:`break_lines` packs an equation's parts (each after the first starts with an operator) greedily
into lines no wider than :data:`MAX_EX`, and :func:`aligned` writes them as an ``aligned`` environment;
both renderers use it, so Markdown and LaTeX break alike.
"""

from __future__ import annotations

import re

__all__ = ["LABEL_EX", "MAX_EX", "aligned", "break_lines", "numbered", "width"]

# GitHub's Markdown column is about 830 px; MathJax renders 1 ex as about 7.5 px there
MAX_EX = 90.0
_SCRIPT = 0.72
_ZERO = {"left", "right", "mathrm", "operatorname", "mathbf", "tilde", "hat", "bar", "displaystyle", "big"}
_WIDE = {
    "odot": 2.4,
    "times": 2.4,
    "cdot": 1.4,
    "cdots": 3.2,
    "dots": 3.2,
    "ldots": 3.2,
    "quad": 2.3,
    "qquad": 4.6,
    "lVert": 1.2,
    "rVert": 1.2,
    "sum": 3.2,
    "le": 2.8,
    "ge": 2.8,
    "in": 2.6,
    "mathrel": 0.0,
    "top": 1.8,
    "delta": 1.0,
    "sigma": 1.3,
    "tanh": 3.6,
    "log": 2.6,
    "exp": 2.8,
    "epsilon": 1.0,
    "langle": 0.9,
    "rangle": 0.9,
}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}_^&]|\s+|.")


def _group(tokens: list[str], i: int) -> tuple[list[str], int]:
    """The tokens of the group starting at ``i`` (a braced group or one token) and the index after it."""
    if i >= len(tokens):
        return [], i
    if tokens[i] != "{":
        return [tokens[i]], i + 1
    depth, j = 0, i
    while j < len(tokens):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return tokens[i + 1 : j], j + 1
        j += 1
    return tokens[i + 1 :], len(tokens)


def _width(tokens: list[str]) -> float:
    total, i = 0.0, 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("_", "^"):
            group, i = _group(tokens, i + 1)
            total += _SCRIPT * _width(group)
            continue
        if tok in ("\\frac", "\\underset", "\\overset"):
            a, i = _group(tokens, i + 1)
            b, i = _group(tokens, i)
            wa, wb = _width(a), _width(b)
            total += max(wa, wb) + 1.0 if tok == "\\frac" else max(_SCRIPT * wa, wb)
            continue
        if tok in ("\\begin", "\\end", "\\tag", "\\text", "\\mathrm", "\\operatorname"):
            group, i = _group(tokens, i + 1)
            if tok == "\\tag":
                total += 4.0 + _width(group)  # the tag and the space MathJax keeps before it
            elif tok in ("\\text", "\\mathrm", "\\operatorname"):
                total += 1.05 * len("".join(group).replace("\\", ""))
            continue
        i += 1
        if tok in ("{", "}", "&") or tok.isspace():
            continue
        if tok.startswith("\\") and tok[1:].isalpha():
            name = tok[1:]
            total += 0.0 if name in _ZERO else _WIDE.get(name, 1.3)
        elif tok in "=+-":
            total += 2.6  # the glyph and the spaces around a relation or a binary operator
        elif tok in "(),[]|;:.":
            total += 0.9
        elif tok.isupper():  # capitals are wider (MathJax: W, M 2.4 ex; H, N, X 2.0; J 1.4; lower case ~1.2)
            total += 2.4 if tok in "WM" else 2.0
        else:
            total += 1.2
    return total


def width(tex: str) -> float:
    """Estimated rendered width of ``tex`` in ex (one line; ``\\\\`` line breaks are not split)."""
    return _width(_TOKEN.findall(tex))


def break_lines(parts: tuple[str, ...], limit: float = MAX_EX) -> list[str]:
    """``parts`` packed into lines of at most ``limit`` ex (a part wider than that gets a line alone)."""
    lines: list[str] = []
    for part in parts:
        if lines and width(lines[-1] + " " + part) <= limit:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return lines


def aligned(parts: tuple[str, ...]) -> str:
    """``parts`` on one line, or as ``aligned`` lines aligned at the first relation (shared with LaTeX)."""
    lines = break_lines(parts)
    if len(lines) == 1:
        return lines[0]
    lhs, rest = _split_relation(lines[0])
    body = [f"{lhs} & {rest}"] + [rf"& \quad {line}" for line in lines[1:]]
    return "\\begin{aligned} " + " \\\\ ".join(body) + " \\end{aligned}"


LABEL_EX = 9.0  # what a line's label takes at its right, with the gap before it


def numbered(lines: tuple[tuple[str, str], ...]) -> str:
    """Short equations aligned at their first relation, each line ending with its label: one display."""
    body = []
    for tex, label in lines:
        lhs, rest = _split_relation(tex)
        body.append(f"{lhs} & {rest} && ({label})")
    return "\\begin{aligned} " + " \\\\ ".join(body) + " \\end{aligned}"


_RELATION = re.compile(r" (=|\\mathrel\{\+\}=|\\le) ")


def _split_relation(line: str) -> tuple[str, str]:
    """(left side, relation and right side) at the first relation outside braces."""
    depth = 0
    for i, ch in enumerate(line):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            m = _RELATION.match(line, i)
            if m:
                return line[:i], line[i + 1 :]
    return "", line
