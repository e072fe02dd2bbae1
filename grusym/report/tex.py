"""Render report documents as standalone LaTeX, and compile them to PDF when a TeX engine is installed.

Contract: :func:`render` returns one standalone document (``article``; packages from TeX Live's
latex-base/recommended sets only: amsmath, amssymb, graphicx, geometry, listings, booktabs, longtable,
hyperref);
:func:`render_combined` puts several documents in one, each a part of its own. Long equations break between
their ``parts`` (``multline*``). The measured block is fenced by ``% measured:begin`` / ``% measured:end``.
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

from ..errors import InputError
from .blocks import (
    Block,
    Break,
    Bullets,
    Code,
    CodeBlock,
    Document,
    Equation,
    Figure,
    Heading,
    Link,
    Math,
    Measured,
    Para,
    Table,
    Text,
)

__all__ = ["MEASURED_BEGIN", "MEASURED_END", "compile_pdf", "engine", "render", "render_combined"]

MEASURED_BEGIN = "% measured:begin (differs between builds)"
MEASURED_END = "% measured:end"
_BREAK_AT = 140  # characters of TeX source above which an equation is broken between its parts
_PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{longtable}
\usepackage{listings}
\usepackage[hidelinks]{hyperref}
\lstset{language=Python, basicstyle=\ttfamily\scriptsize, breaklines=true, columns=fullflexible,
  numbers=left, numberstyle=\tiny, keepspaces=true, showstringspaces=false}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5em}
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
_SECTIONS = ("part", "section", "subsection", "subsubsection", "paragraph")


def escape(text: str) -> str:
    return "".join(_ESCAPE.get(ch, ch) for ch in text)


def _code(text: str) -> str:
    return r"\texttt{" + escape(text).replace("-", "-{}") + "}"  # no -- ligature in code


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
    return "".join(_span(s, prefix) for s in t)


def _plain_len(t: Text) -> int:
    return sum(len(s) if isinstance(s, str) else len(getattr(s, "tex", getattr(s, "text", ""))) for s in t)


def _table(b: Table, prefix: str) -> str:
    # short columns keep their natural width; long ones share what is left in proportion to their content
    widths = [max([len(h)] + [_plain_len(r[i]) for r in b.rows]) for i, h in enumerate(b.header)]
    chars = 100  # characters of \small text on one line of the page
    if sum(widths) + 2 * len(widths) <= chars:
        spec = "l" * len(widths)
    else:
        fixed = sum(w + 2 for w in widths if w <= 16)
        wide = sum(w for w in widths if w > 16)
        share = max(chars - fixed - 2 * len(widths), 20) / chars
        spec = "".join("l" if w <= 16 else f"p{{{share * w / wide:.2f}\\linewidth}}" for w in widths)
    lines = [r"{\small\setlength{\tabcolsep}{3pt}", r"\begin{longtable}{" + spec + "}", r"\toprule"]
    lines.append(" & ".join(escape(h) for h in b.header) + r" \\ \midrule\endhead")
    lines += [" & ".join(_text(c, prefix) for c in row) + r" \\" for row in b.rows]
    lines += [r"\bottomrule", r"\end{longtable}}"]
    return "\n".join(lines)


def _equation(b: Equation) -> str:
    tag = rf" \tag{{{b.label}}}" if b.label else ""
    if len(b.tex) > _BREAK_AT and len(b.parts) > 1:
        body = " \\\\\n".join(b.parts)
        return f"\\begin{{multline*}}\n{body}{tag}\n\\end{{multline*}}"
    return f"\\begin{{equation*}}\n{b.tex}{tag}\n\\end{{equation*}}"


def _block(b: Block, offset: int, prefix: str) -> str:
    if isinstance(b, Heading):
        level = min(b.level + offset, len(_SECTIONS)) - 1
        numbered = re.match(r"\d+\. ", b.text)  # "1. Forward equations": LaTeX numbers it itself
        text = b.text[numbered.end() :] if numbered else b.text
        star = "" if numbered else "*"
        return f"\\{_SECTIONS[level]}{star}{{{escape(text)}}}"
    if isinstance(b, Para):
        return _text(b.text, prefix)
    if isinstance(b, Bullets):
        items = "\n".join(r"\item " + _text(i, prefix) for i in b.items)
        return f"\\begin{{itemize}}\n{items}\n\\end{{itemize}}"
    if isinstance(b, Equation):
        return _equation(b)
    if isinstance(b, Table):
        return _table(b, prefix)
    if isinstance(b, CodeBlock):
        first = f", firstnumber={b.first_line}" if b.first_line else ", numbers=none"
        return f"\\begin{{lstlisting}}[language=Python{first}]\n{b.text}\n\\end{{lstlisting}}"
    if isinstance(b, Figure):
        return (
            "\\begin{figure}[!htb]\n\\centering\n"
            f"\\includegraphics[width={b.width:g}\\textwidth]{{{prefix}{b.path}}}\n"
            f"\\caption{{{escape(b.caption)}}}\n\\end{{figure}}"
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
