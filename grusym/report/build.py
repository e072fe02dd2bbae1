"""Build the derivation reports: the text of every file, and writing them (plus figures and PDFs) to disk.

Contract: :func:`render_files` returns ``{relative path: text}`` for the requested variants and formats
without touching the disk; with every built-in cell it adds the index page (``README.md``) and the combined
LaTeX document (``derivations.tex``). :func:`write_reports` writes those files, the figures (``figures.json``
and PNGs drawn from it) and, for ``pdf``, compiles every LaTeX file. Only the measured verification block
differs between two builds on one machine (see ``markdown.MEASURED_BEGIN``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import atomic_write_text
from .context import Subject, subject
from .document import REGENERATE, Links, index_document, variant_document
from .numbers.verify import Measurement, measure
from .render import markdown, tex
from .render.plots import FIGURES, INSTALL_HINT, available

__all__ = ["FORMATS", "Written", "default_out", "figures_json", "render_files", "write_reports"]

FORMATS = ("md", "tex", "pdf")
COMBINED = "derivations.tex"


def default_out() -> Path:
    """``derivations/`` of the source checkout this package runs from, else of the current folder."""
    root = Path(__file__).resolve().parents[2]
    return root / "derivations" if (root / "pyproject.toml").exists() else Path("derivations")


def figures_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def _links(sub: Subject, out: Path, formats: tuple[str, ...], index: bool) -> Links:
    """What the report of ``sub`` written under ``out`` can link to: only what is there."""
    root = Path(__file__).resolve().parents[2]
    folder = (out / sub.name).resolve()
    module = root / sub.module_file if sub.module_file else None
    inside = folder.is_relative_to(root) and module is not None and module.is_file()
    return Links(
        index="../README.md" if index or _is_index(out / "README.md") else None,
        latex="tex" in formats or "pdf" in formats,
        module=Path(os.path.relpath(module, folder)).as_posix() if inside and module is not None else None,
    )


def _is_index(path: Path) -> bool:
    """True when ``path`` is an index page a build wrote (not some other README.md)."""
    return path.is_file() and "# grusym derivations" in path.read_text(encoding="utf-8")[:400]


def render_files(
    names: list[str | Subject],
    formats: tuple[str, ...] = ("md", "tex"),
    *,
    measured: Callable[[Any], Measurement | None] = measure,
    data: dict[str, dict[str, Any]] | None = None,
    index: bool | None = None,
    missing: dict[str, frozenset[str]] | None = None,
    out: Path | None = None,
    regenerate: str | None = None,
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """({relative path: text}, {cell name: figure data}) of the reports of ``names``.

    names: built-in variant names or :class:`~grusym.report.context.Subject` objects (any declared cell).
    measured: a built-in's name, or the Subject of any other cell -> Measurement (``verify.measure``; a
    stub returning None leaves the block empty).
    data: precomputed ``figures.figure_data`` per cell name (computed when missing).
    index: also the index page and combined document (default: when ``names`` is every built-in cell).
    missing: per cell name, the figures that will not exist (the text says so instead of linking them).
    out: the folder the files are for (default :func:`default_out`): a report links only to what is there.
    regenerate: the command that rewrites these files, for their headers (default: the subject's own, else
    ``grusym report --all``).
    """
    from ..symbolic.variants import CELLS
    from .numbers.figures import figure_data
    from .numbers.relations import RELATIONS, check

    unknown = [n for n in names if isinstance(n, str) and n not in CELLS]
    if unknown:
        raise InputError(f"unknown variant(s) {', '.join(unknown)}; known variants: {', '.join(CELLS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InputError(f"unknown format(s) {', '.join(bad)}; known formats: {', '.join(FORMATS)}")
    data = dict(data or {})
    missing = missing or {}
    out = Path(out or default_out())
    files: dict[str, str] = {}
    docs = []
    subjects = [subject(n) if isinstance(n, str) else n for n in names]
    plain = [s.name for s in subjects]
    if index is None:
        index = sorted(plain) == sorted(CELLS) and all(s.builtin for s in subjects)
    for sub in subjects:
        name = sub.name
        if name not in data:
            data[name] = figure_data(sub)
        doc = variant_document(
            sub,
            data[name],
            measured(name if sub.builtin else sub),
            missing.get(name, frozenset()),
            _links(sub, out, formats, index),
            regenerate,
        )
        docs.append((doc, f"{name}/"))
        files[f"{name}/figures.json"] = figures_json(data[name])
        if "md" in formats:
            files[f"{name}/README.md"] = markdown.render(doc)
        if "tex" in formats or "pdf" in formats:
            files[f"{name}/{name}.tex"] = tex.render(doc)
    if index:
        errors = {i: check(rel) for i, rel in enumerate(RELATIONS)}
        idx = index_document(plain, errors)
        if "md" in formats:
            files["README.md"] = markdown.render(idx)
        if "tex" in formats or "pdf" in formats:
            files[COMBINED] = tex.render_combined(
                "grusym: the BPTT derivation of every built-in cell", [(idx, ""), *docs], REGENERATE
            )
    return files, data


@dataclass(frozen=True)
class Written:
    """What :func:`write_reports` did: files changed, figures drawn, figures skipped (no matplotlib)."""

    changed: list[Path]
    drawn: list[Path]
    skipped: list[Path]


def write_reports(
    names: list[str | Subject],
    formats: tuple[str, ...] = ("md", "tex"),
    out: Path | None = None,
    *,
    log: Callable[[str], None] = print,
    regenerate: str | None = None,
) -> Written:
    """Write the reports of ``names`` under ``out`` (default: :func:`default_out`); ``regenerate`` is the
    command their headers name (see :func:`render_files`).

    Figures need matplotlib (the ``plots`` extra). Without it the text and ``figures.json`` are written
    all the same, a PNG left by an earlier build is kept (its data is the same, seeded), and the text of
    a report whose PNG does not exist says so instead of linking it; the log names every skipped figure.
    """
    from .render.plots import plot

    if "pdf" in formats and tex.engine() is None:
        raise InputError("--format pdf needs pdflatex or tectonic on PATH; install TeX Live or drop pdf")
    out = Path(out or default_out())
    subjects = [subject(n) if isinstance(n, str) else n for n in names]
    can_draw = available()
    missing = {
        s.name: frozenset(f for f in FIGURES if not can_draw and not (out / s.name / f).exists())
        for s in subjects
    }
    files, data = render_files(
        list(subjects), formats, missing=missing, index=_is_all(subjects), out=out, regenerate=regenerate
    )
    changed = []
    for rel, text in files.items():
        path = out / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            changed.append(path)
            log(f"wrote {path}")
    drawn, skipped = [], []
    for s in subjects:
        if can_draw:
            for path in plot(data[s.name], out / s.name):
                drawn.append(path)
                log(f"drew {path}")
            continue
        for f in FIGURES:
            path = out / s.name / f
            if f in missing[s.name]:
                skipped.append(path)
                log(f"skipped {path}: matplotlib is not installed ({INSTALL_HINT} draws it)")
            else:
                log(f"kept {path} from an earlier build (matplotlib is not installed, so it was not redrawn)")
    if "pdf" in formats:
        for rel in files:
            if rel.endswith(".tex"):
                log(f"compiled {tex.compile_pdf(out / rel)}")
    return Written(changed, drawn, skipped)


def _is_all(subjects: list[Subject]) -> bool:
    from ..symbolic.variants import CELLS

    return sorted(s.name for s in subjects) == sorted(CELLS) and all(s.builtin for s in subjects)
