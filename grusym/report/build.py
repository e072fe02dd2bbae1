"""Build the derivation reports: the text of every file, and writing them (plus figures and PDFs) to disk.

Contract: :func:`render_files` returns ``{relative path: text}`` for the requested variants and formats
without touching the disk; with every variant it adds the index page (``README.md``) and the combined LaTeX
document (``derivations.tex``). :func:`write_reports` writes those files, the figures (``figures.json``
and PNGs drawn from it) and, for ``pdf``, compiles every LaTeX file. Only the measured verification block
differs between two builds on one machine (see ``markdown.MEASURED_BEGIN``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import atomic_write_text
from . import markdown, tex
from .document import REGENERATE, index_document, variant_document
from .verify import Measurement, measure

__all__ = ["FORMATS", "default_out", "figures_json", "render_files", "write_reports"]

FORMATS = ("md", "tex", "pdf")
COMBINED = "derivations.tex"


def default_out() -> Path:
    """``derivations/`` of the source checkout this package runs from, else of the current folder."""
    root = Path(__file__).resolve().parents[2]
    return root / "derivations" if (root / "pyproject.toml").exists() else Path("derivations")


def figures_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def render_files(
    names: list[str],
    formats: tuple[str, ...] = ("md", "tex"),
    *,
    measured: Callable[[str], Measurement | None] = measure,
    data: dict[str, dict[str, Any]] | None = None,
    index: bool | None = None,
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """({relative path: text}, {variant: figure data}) of the reports of ``names``.

    measured: variant -> Measurement (``verify.measure``; a stub returning None leaves the block empty).
    data: precomputed ``figures.figure_data`` per variant (computed when missing).
    index: also the index page and combined document (default: when ``names`` is every variant).
    """
    from ..symbolic.variants import VARIANTS
    from .figures import figure_data
    from .relations import RELATIONS, check

    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise InputError(f"unknown variant(s) {', '.join(unknown)}; known variants: {', '.join(VARIANTS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InputError(f"unknown format(s) {', '.join(bad)}; known formats: {', '.join(FORMATS)}")
    data = dict(data or {})
    files: dict[str, str] = {}
    docs = []
    for name in names:
        data.setdefault(name, figure_data(name))
        doc = variant_document(name, data[name], measured(name))
        docs.append((doc, f"{name}/"))
        files[f"{name}/figures.json"] = figures_json(data[name])
        if "md" in formats:
            files[f"{name}/README.md"] = markdown.render(doc)
        if "tex" in formats or "pdf" in formats:
            files[f"{name}/{name}.tex"] = tex.render(doc)
    if index is None:
        index = sorted(names) == sorted(VARIANTS)
    if index:
        errors = {i: check(rel) for i, rel in enumerate(RELATIONS)}
        idx = index_document(names, errors)
        if "md" in formats:
            files["README.md"] = markdown.render(idx)
        if "tex" in formats or "pdf" in formats:
            files[COMBINED] = tex.render_combined(
                "grusym: the BPTT derivation of every GRU variant", [(idx, ""), *docs], REGENERATE
            )
    return files, data


def write_reports(
    names: list[str],
    formats: tuple[str, ...] = ("md", "tex"),
    out: Path | None = None,
    *,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write the reports of ``names`` under ``out`` (default: :func:`default_out`); return changed paths."""
    from .figures import plot

    if "pdf" in formats and tex.engine() is None:
        raise InputError("--format pdf needs pdflatex or tectonic on PATH; install TeX Live or drop pdf")
    out = Path(out or default_out())
    files, data = render_files(names, formats)
    changed = []
    for rel, text in files.items():
        path = out / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            changed.append(path)
            log(f"wrote {path}")
    for name in names:
        for path in plot(data[name], out / name):
            log(f"drew {path}")
    if "pdf" in formats:
        for rel in files:
            if rel.endswith(".tex"):
                log(f"compiled {tex.compile_pdf(out / rel)}")
    return changed
