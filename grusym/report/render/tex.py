"""Render report documents as standalone LaTeX, and compile them to PDF when a TeX engine is installed.

Contract: :func:`render` returns one standalone document (``article``; packages from TeX Live's
latex-base/recommended sets and PGF/TikZ: amsmath, amssymb, graphicx, geometry, listings, booktabs,
longtable, hyperref, tikz);
:func:`render_combined` puts several documents in one, each a part of its own. Long equations break between
their ``parts`` into ``aligned`` lines exactly as in the Markdown (:func:`grusym.report.width.aligned`);
diagrams are TikZ pictures, shrunk to the text width when wider. Tables short enough for a page are
``tabular`` (``longtable`` ignores floats at the top of a page and overfills it). The measured block is
fenced by ``% measured:begin`` / ``% measured:end``.
:func:`compile_pdf` runs pdflatex (or tectonic) in a scratch folder and raises a GrusymError naming the
first TeX error; :func:`engine` says which one is available.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import InputError
from .blocks import (
    Block,
    Break,
    Bullets,
    Code,
    CodeBlock,
    Diagram,
    Document,
    Equation,
    Figure,
    Heading,
    Lines,
    Link,
    Math,
    Measured,
    Para,
    Table,
    Text,
    typeset,
)
from .width import aligned, numbered, width

__all__ = ["MEASURED_BEGIN", "MEASURED_END", "compile_pdf", "engine", "render", "render_combined"]

MEASURED_BEGIN = "% measured:begin (differs between builds)"
MEASURED_END = "% measured:end"
_PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{longtable}
\usepackage{listings}
\usepackage{tikz}
\usetikzlibrary{fit}
\usepackage[hidelinks]{hyperref}
\lstset{language=Python, basicstyle=\ttfamily\scriptsize, breaklines=true, columns=fullflexible,
  numbers=left, numberstyle=\tiny, keepspaces=true, showstringspaces=false}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5em}
\setlength{\emergencystretch}{3em}  % a long path or name (the cell file's, machine-dependent) never overfills
% a display wider than the line (room left for its tag) or taller than the page is scaled down to fit:
% the derived equations of a cell with many terms (a layer norm's Jacobian) have no shorter form
\newsavebox{\grusymeq}
\newlength{\grusymroom}
\newcommand{\fitdisplay}[1]{\setlength{\grusymroom}{\dimexpr\linewidth-5em\relax}%
  \sbox{\grusymeq}{$\displaystyle #1$}%
  \ifdim\wd\grusymeq>\grusymroom\sbox{\grusymeq}{\resizebox{\grusymroom}{!}{\usebox{\grusymeq}}}\fi
  \ifdim\dimexpr\ht\grusymeq+\dp\grusymeq\relax>0.85\textheight
    \sbox{\grusymeq}{\resizebox*{!}{0.85\textheight}{\usebox{\grusymeq}}}\fi
  \usebox{\grusymeq}}
"""
_ESCAPE = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\^{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\~{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_LONG_ROWS = 24
_FONTS = ((r"\small", 100), (r"\footnotesize", 112), (r"\scriptsize", 128))  # characters per line
_SECTIONS = ("part", "section", "subsection", "subsubsection", "paragraph")


def escape(text: str) -> str:
    return "".join(_ESCAPE.get(ch, ch) for ch in text)


def _code(text: str) -> str:
    # no -- ligature in code; paths and names may break after / _ . (long ones overfill table columns)
    body = escape(text).replace("-", "-{}")
    body = re.sub(r"(/|\\_|\.)", lambda m: m.group(1) + r"\allowbreak{}", body)
    return r"\texttt{" + body + "}"


def _span(s: object, prefix: str) -> str:
    if isinstance(s, str):
        return escape(s)
    if isinstance(s, Math):
        return f"${s.tex}$"
    if isinstance(s, Code):
        return _code(s.text)
    if isinstance(s, Link):
        target = s.target if "://" in s.target else prefix + s.target
        return r"\href{" + target.replace("#", r"\#").replace("%", r"\%") + "}{" + escape(s.text) + "}"
    if isinstance(s, Break):
        return r"\newline "
    raise TypeError(s)


def _text(t: Text, prefix: str) -> str:
    return "".join(_span(s, prefix) for s in typeset(t))


def _span_len(s: object) -> float:
    if isinstance(s, str):
        return len(s)
    if isinstance(s, Math):
        return 0.8 * width(s.tex)  # one character of text is about 1.25 ex of math
    if isinstance(s, Code):
        return 1.2 * len(s.text)  # typewriter characters are wider than the text's average
    return len(getattr(s, "text", ""))


def _tokens(s: object) -> list[float]:
    """Lengths of the pieces of a span that cannot be broken across lines."""
    if isinstance(s, str):
        return [len(w) for w in s.split()]
    if isinstance(s, Code):
        return [len(w) + 1 for w in re.split(r"[/_. ]", s.text)]  # _code allows breaks there
    return [_span_len(s)]


def _cell_size(t: Text) -> tuple[float, float]:
    """(natural width, narrowest possible width) of a table cell, in characters."""
    lines, current = [], 0.0
    for s in t:
        if isinstance(s, Break):
            lines.append(current)
            current = 0.0
        else:
            current += _span_len(s)
    lines.append(current)
    return max(lines), max([0.0, *(x for s in t for x in _tokens(s))])


def _table(b: Table, prefix: str) -> str:
    # short columns keep their natural width; long ones share what is left in proportion to their content,
    # but never get narrower than their longest unbreakable piece
    header = [(h,) if isinstance(h, str) else h for h in b.header]
    sizes = [[_cell_size(r[i]) for r in b.rows] + [_cell_size(h)] for i, h in enumerate(header)]
    natural = [max(x for x, _ in col) for col in sizes]
    narrow = [max(y for _, y in col) for col in sizes]
    breaks = [any(isinstance(x, Break) for r in b.rows for x in r[i]) for i in range(len(b.header))]
    need = sum(w if w <= 16 and not brk else m + 1 for w, m, brk in zip(natural, narrow, breaks, strict=True))
    # a smaller font where the unbreakable pieces (rows of numbers) would not fit side by side
    font, per_line = next(((f, c) for f, c in _FONTS if need <= c - 2 * len(natural)), _FONTS[-1])
    chars = per_line - 2 * len(natural)  # characters on one line of the page, less the column gaps
    if sum(natural) <= chars and not any(breaks):
        spec = "l" * len(natural)
    else:
        short = [w <= 16 and not brk for w, brk in zip(natural, breaks, strict=True)]
        left = max(chars - sum(w for w, s in zip(natural, short, strict=True) if s), 20)
        wide = sum(w for w, s in zip(natural, short, strict=True) if not s)
        share = {i: max(left * w / wide, narrow[i] + 1) for i, w in enumerate(natural) if not short[i]}
        # columns raised to their narrowest width take it from the others' slack
        excess = sum(share.values()) - left
        slack = {i: share[i] - narrow[i] - 1 for i in share}
        room = sum(slack.values())
        if excess > 0 and room > 0:
            share = {i: share[i] - slack[i] * min(1.0, excess / room) for i in share}
        spec = "".join(
            "l" if s else f"p{{{share[i] / per_line:.2f}\\linewidth}}" for i, s in enumerate(short)
        )
    # longtable breaks across pages but ignores floats at the top of a page (it then overfills the page,
    # into the page number): only tables too long for a page use it
    env = "longtable" if len(b.rows) > _LONG_ROWS else "tabular"
    lines = [rf"{{{font}\setlength{{\tabcolsep}}{{3pt}}"]
    lines += (
        [r"\begin{longtable}{" + spec + "}"]
        if env == "longtable"
        else [r"\par\noindent\begin{tabular}{" + spec + "}"]
    )
    lines.append(r"\toprule")
    lines.append(
        " & ".join(_text(h, prefix) for h in header)
        + r" \\ \midrule"
        + (r"\endhead" if env == "longtable" else "")
    )
    lines += [" & ".join(_text(c, prefix) for c in row) + r" \\" for row in b.rows]
    lines += [r"\bottomrule", rf"\end{{{env}}}" + ("}" if env == "longtable" else r"\par}")]
    return "\n".join(lines)


def _equation(b: Equation) -> str:
    tag = rf" \tag{{{b.label}}}" if b.label else ""
    return f"\\begin{{equation*}}\n\\fitdisplay{{{aligned(b.parts)}}}{tag}\n\\end{{equation*}}"


def _tikz_name(key: str) -> str:
    return key.replace("_", "-")


_LABEL_CM_PER_EX = 0.14  # \\scriptsize: about 0.14 cm per ex of math (the width estimate is for MathJax)
_LABEL_HEIGHT_CM = 0.5


def _label_pos(
    tex: str,
    a: tuple[float, float],
    b: tuple[float, float],
    placed: list[tuple[float, float, float]],
    bent: bool,
) -> float:
    """Where along its edge a label goes: the first of a few positions whose box overlaps no label placed
    before it (edges that cross or fan out of one node would otherwise print their labels on each other)."""
    half = width(tex) * _LABEL_CM_PER_EX / 2 + 0.1
    best, best_gap = 0.5, -1.0
    for pos in (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8):
        x, y = a[0] + pos * (b[0] - a[0]), a[1] + pos * (b[1] - a[1])
        if bent:  # the bend moves the middle sideways; a rough but consistent estimate
            x += 0.35 * abs(b[1] - a[1]) * 4 * pos * (1 - pos)
        gap = min(
            (max(abs(x - px) - (half + ph), abs(y - py) - _LABEL_HEIGHT_CM) for px, py, ph in placed),
            default=1.0,
        )
        if gap > 0:
            placed.append((x, y, half))
            return pos
        if gap > best_gap:
            best, best_gap = pos, gap
    x, y = a[0] + best * (b[0] - a[0]), a[1] + best * (b[1] - a[1])
    placed.append((x, y, half))
    return best


def _tikz(b: Diagram) -> str:
    lines = [
        r"\begin{figure}[tbp]",
        r"\centering",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",  # shrink, never enlarge
        r"\begin{tikzpicture}[every node/.style={font=\small}, >=stealth]",
    ]
    for n in b.nodes:
        lines.append(
            rf"\node[draw, rounded corners, inner sep=3pt] ({_tikz_name(n.key)}) at "
            rf"({n.x:.2f}, {n.y:.2f}) {{${n.tex}$}};"
        )
    groups: dict[str, list[str]] = {}
    for n in b.nodes:
        if n.group:
            groups.setdefault(n.group, []).append(f"({_tikz_name(n.key)})")
    for group, members in groups.items():
        lines.append(
            rf"\node[draw, dashed, gray, inner sep=8pt, fit={' '.join(members)}, "
            rf"label=above:{{{escape(group)}}}] {{}};"
        )
    at = {n.key: (n.x, n.y) for n in b.nodes}
    style = r"fill=white, fill opacity=0.85, text opacity=1, inner sep=1pt, font=\scriptsize"
    placed: list[tuple[float, float, float]] = []  # labels drawn so far: (x, y, half width) in cm
    for e in b.edges:
        (xa, ya), (xb, yb) = at[e.source], at[e.target]
        # an edge down its own column would cross the nodes between: bend it around them
        bent = abs(xa - xb) < 0.01 and abs(ya - yb) > 3.0
        path = "to[bend right=35]" if bent else "--"
        label = ""
        if e.tex:
            pos = _label_pos(e.tex, (xa, ya), (xb, yb), placed, bent)
            label = rf" node[pos={pos:.2f}, {style}] {{${e.tex}$}}"
        lines.append(rf"\draw[->] ({_tikz_name(e.source)}) {path}{label} ({_tikz_name(e.target)});")
    lines += [r"\end{tikzpicture}}", rf"\caption{{{_text(b.caption, '')}}}", r"\end{figure}"]
    return "\n".join(lines)


def _block(b: Block, offset: int, prefix: str) -> str:
    if isinstance(b, Heading):
        level = min(b.level + offset, len(_SECTIONS)) - 1
        counted = re.match(r"\d+\. ", b.text)  # "1. Forward equations": LaTeX numbers it itself
        text = b.text[counted.end() :] if counted else b.text
        star = "" if counted else "*"  # "Notation", "Appendix A. ...": the title says what it is
        entry = (
            ""
            if counted or level > 2
            else f"\n\\addcontentsline{{toc}}{{{_SECTIONS[level]}}}{{{escape(text)}}}"
        )
        return f"\\{_SECTIONS[level]}{star}{{{escape(text)}}}{entry}"
    if isinstance(b, Para):
        return _text(b.text, prefix)
    if isinstance(b, Bullets):
        items = "\n".join(r"\item " + _text(i, prefix) for i in b.items)
        return f"\\begin{{itemize}}\n{items}\n\\end{{itemize}}"
    if isinstance(b, Lines):
        return f"\\begin{{equation*}}\n\\fitdisplay{{{numbered(b.lines)}}}\n\\end{{equation*}}"
    if isinstance(b, Equation):
        return _equation(b)
    if isinstance(b, Diagram):
        return _tikz(b)
    if isinstance(b, Table):
        return _table(b, prefix)
    if isinstance(b, CodeBlock):
        first = f", firstnumber={b.first_line}" if b.first_line else ", numbers=none"
        return f"\\begin{{lstlisting}}[language=Python{first}]\n{b.text}\n\\end{{lstlisting}}"
    if isinstance(b, Figure):
        return (
            "\\begin{figure}[tbp]\n\\centering\n"
            f"\\includegraphics[width={b.width:g}\\textwidth,height=0.3\\textheight,keepaspectratio]"
            f"{{{prefix}{b.path}}}\n"
            f"\\caption{{{_text(b.caption, prefix)}}}\n\\end{{figure}}"
        )
    if isinstance(b, Measured):
        return "\n\n".join([MEASURED_BEGIN, *(_block(x, offset, prefix) for x in b.blocks), MEASURED_END])
    raise TypeError(b)


def _header(doc: Document) -> str:
    return f"% generated by grusym - do not edit; regenerate with: {doc.regenerate}\n"


def _body(doc: Document, offset: int, prefix: str) -> list[str]:
    # the first level-1 heading is the title; the rest of the document is numbered by its own headings
    blocks = list(doc.blocks)
    if blocks and isinstance(blocks[0], Heading) and blocks[0].level == 1:
        blocks = blocks[1:]
    return [_block(b, offset, prefix) for b in blocks]


def render(doc: Document) -> str:
    """A standalone LaTeX document; figures and links are relative to the document's folder."""
    parts = [
        _header(doc) + _PREAMBLE,
        "\\title{" + escape(doc.title) + "}\n\\date{}\n\\begin{document}\n\\maketitle",
        *_body(doc, 0, ""),
        "\\end{document}",
    ]
    return "\n\n".join(parts) + "\n"


def render_combined(title: str, docs: list[tuple[Document, str]], regenerate: str) -> str:
    """One LaTeX document holding ``docs``, each (document, folder prefix for its figures and links)."""
    parts = [
        f"% generated by grusym - do not edit; regenerate with: {regenerate}\n" + _PREAMBLE,
        "\\title{" + escape(title) + "}\n\\date{}\n\\begin{document}\n\\maketitle\n\\tableofcontents",
    ]
    for doc, prefix in docs:
        parts.append("\\clearpage\n\\section{" + escape(doc.title) + "}")
        parts += _body(doc, 1, prefix)
    parts.append("\\end{document}")
    return "\n\n".join(parts) + "\n"


def engine() -> str | None:
    """``pdflatex`` or ``tectonic`` when one is on PATH, else None."""
    return next((e for e in ("pdflatex", "tectonic") if shutil.which(e)), None)


def compile_pdf(tex_path: Path, pdf_path: Path | None = None, *, runs: int = 2) -> Path:
    """Compile ``tex_path`` (figures resolved from its folder) to ``pdf_path`` (default: next to it)."""
    tool = engine()
    if tool is None:
        raise InputError("--format pdf needs pdflatex or tectonic on PATH; install TeX Live or drop pdf")
    tex_path = Path(tex_path).resolve()
    pdf_path = Path(pdf_path or tex_path.with_suffix(".pdf"))
    with tempfile.TemporaryDirectory(prefix="grusym-tex-") as tmp:
        if tool == "pdflatex":
            cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"-output-directory={tmp}"]
            cmds = [[*cmd, tex_path.name]] * runs
        else:
            cmds = [["tectonic", "--outdir", tmp, tex_path.name]]
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
        for c in cmds:
            proc = subprocess.run(
                c, cwd=tex_path.parent, capture_output=True, text=True, env=env, check=False
            )
            if proc.returncode != 0:
                log = proc.stdout + proc.stderr
                first = next((ln for ln in log.splitlines() if ln.startswith("!")), log.strip()[-300:])
                raise InputError(f"{tool} failed on {tex_path}: {first}")
        built = Path(tmp) / tex_path.with_suffix(".pdf").name
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, pdf_path)
    return pdf_path
