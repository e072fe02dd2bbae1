"""``grusym report``: write the derivation reports (Markdown, LaTeX, PDF) of one built-in cell or all of
them, or of a cell declared in the user's own file (``--cell FILE.py:NAME``: the same sections, under
``OUT/NAME/``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..report.context import Subject

HELP = "write the BPTT derivation report of one or every built-in cell (Markdown, LaTeX, PDF) in derivations/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--variant", help="this built-in cell only (a GRU variant or lstm; no index page)")
    which.add_argument("--all", action="store_true", help="every built-in cell and the index (the default)")
    which.add_argument(
        "--cell",
        metavar="FILE.py:NAME",
        default=None,
        help="report on the cell NAME declared in your own FILE.py (see docs/cells.md); needs --out",
    )
    p.add_argument(
        "--format",
        default="md,tex",
        help="comma-separated: md, tex, pdf (pdf needs pdflatex or tectonic; default: md,tex)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write to (default: derivations/ of the source checkout, else ./derivations; "
        "with --cell: required)",
    )


def _cell_subject(spec: str) -> Subject:
    """A user's cell, derived in memory: the report quotes the module ``grusym derive --cell`` writes."""
    from ..report.context import cell_subject
    from ..symbolic.codegen import module_source
    from ..symbolic.usercell import derive_module, load_cell

    cell = load_cell(spec)
    derive = f"grusym derive --cell {spec} --out DIR"
    return cell_subject(
        cell,
        derive_module(cell),
        title=cell.title or None,
        source=module_source(cell, derive),
        derive_command=derive,
    )


def _command(args: argparse.Namespace) -> str:
    """The command line that rewrites what this run writes (the reports' headers name it)."""
    parts = ["grusym report"]
    if args.cell is not None:
        parts.append(f"--cell {args.cell}")
    elif args.variant:
        parts.append(f"--variant {args.variant}")
    else:
        parts.append("--all")
    if args.format != "md,tex":
        parts.append(f"--format {args.format}")
    if args.out is not None:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..report.build import default_out, write_reports
    from ..symbolic.variants import CELLS

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if args.cell is not None:
        if args.out is None:  # a user's report never lands among grusym's own committed ones
            raise InputError("--cell needs --out DIR: the folder to write the report of your cell to")
        subjects: list[str | Subject] = [_cell_subject(args.cell)]
    else:
        subjects = [args.variant] if args.variant else list(CELLS)
    out = args.out or default_out()
    written = write_reports(subjects, formats, out, regenerate=_command(args))
    print(f"{len(written.changed)} report file(s) changed in {out}")
    if written.skipped:
        print(
            f"{len(written.skipped)} figure(s) skipped because matplotlib is not installed; "
            "pip install 'grusym[plots]' and rerun to draw them (the text says which)"
        )
    return 0
