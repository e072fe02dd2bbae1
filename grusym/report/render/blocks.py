"""The format-neutral pieces a report is made of; ``markdown`` and ``tex`` each render them.

Contract: a :class:`Document` is a title plus a tuple of blocks. Text is a tuple of spans: ``str`` (plain
text), :class:`Math` (inline LaTeX), :class:`Code` (inline code), :class:`Link` or :class:`Break`.
Blocks hold no format-specific markup, so both renderers say the same thing. :class:`Measured` wraps the
only content that may differ between two builds (the verification block); renderers fence it with markers
tests can strip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Block",
    "Break",
    "Bullets",
    "Code",
    "CodeBlock",
    "Diagram",
    "Document",
    "Edge",
    "Equation",
    "Figure",
    "Heading",
    "Lines",
    "Link",
    "Math",
    "Measured",
    "Node",
    "Para",
    "Span",
    "Table",
    "Text",
    "plain",
    "typeset",
]


@dataclass(frozen=True)
class Math:
    tex: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Break:
    """A line break inside a table cell."""


@dataclass(frozen=True)
class Link:
    text: str
    target: str  # a path relative to the document's folder


Span = str | Math | Code | Link | Break
Text = tuple[Span, ...]


@dataclass(frozen=True)
class Heading:
    level: int  # 1 is the document title's level
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    text: Text


@dataclass(frozen=True)
class Bullets:
    items: tuple[Text, ...]


@dataclass(frozen=True)
class Equation:
    """A display equation; ``parts`` are pieces LaTeX may break lines between (each after the first
    starts with an operator), joined with spaces in Markdown."""

    parts: tuple[str, ...]
    label: str = ""  # shown as (label) at the right (a LaTeX tag)

    @property
    def tex(self) -> str:
        return " ".join(self.parts)


@dataclass(frozen=True)
class Lines:
    """Several short equations in one display, aligned at their relations, each with its label at the
    right of its line: ``(tex, label)`` pairs (the adjoint of one forward step, numbered (N.k))."""

    lines: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str | Text, ...]  # a header cell may hold math (Text), like any other cell
    rows: tuple[tuple[Text, ...], ...]


@dataclass(frozen=True)
class CodeBlock:
    text: str
    language: str = "python"
    first_line: int = 0  # line number of the first line in its file (0: not numbered)


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the document's folder
    caption: Text
    width: float = 1.0  # fraction of the text width in LaTeX


@dataclass(frozen=True)
class Node:
    """A node of a :class:`Diagram`: ``tex`` for LaTeX, ``text`` for Mermaid; placed at (x, y) in cm."""

    key: str
    tex: str
    text: str
    x: float
    y: float
    group: str = ""  # nodes of one group are framed together (one time step)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    tex: str = ""
    text: str = ""


@dataclass(frozen=True)
class Diagram:
    """A directed graph (a computational graph): Mermaid in Markdown, TikZ in LaTeX."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    caption: Text
    direction: str = "TD"  # Mermaid's flowchart direction


@dataclass(frozen=True)
class Measured:
    blocks: tuple[Block, ...]


Block = Heading | Para | Bullets | Equation | Lines | Table | CodeBlock | Figure | Diagram | Measured


@dataclass(frozen=True)
class Document:
    title: str
    blocks: tuple[Block, ...]
    regenerate: str  # the command that rewrites this file


def plain(text: str | Text) -> str:
    """The words of a text without markup (math as its TeX, links as their text): for alt texts and widths."""
    if isinstance(text, str):
        return text
    return "".join(s if isinstance(s, str) else getattr(s, "tex", getattr(s, "text", " ")) for s in text)


_SYMBOL = re.compile(r"\bd_h\b")  # the hidden size, in prose


def typeset(text: Text) -> Text:
    """``text`` with the hidden size written in prose (d_h) set as math, as every equation sets it."""
    out: list[Span] = []
    for s in text:
        if isinstance(s, str) and _SYMBOL.search(s):
            pieces = _SYMBOL.split(s)
            for i, piece in enumerate(pieces):
                out += ([Math("d_{h}")] if i else []) + ([piece] if piece else [])
        else:
            out.append(s)
    return tuple(out)
