"""``grusym report``: write the derivation reports (Markdown, LaTeX, PDF) of one or every variant."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the BPTT derivation report of one or every variant (Markdown, LaTeX, PDF) under derivations/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--variant", help="report on this variant only (no index page)")
    which.add_argument("--all", action="store_true", help="every variant plus the index page (the default)")
    p.add_argument(
        "--format",
        default="md,tex",
        help="comma-separated: md, tex, pdf (pdf needs pdflatex or tectonic; default: md,tex)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write to (default: derivations/ of the source checkout, else ./derivations)",
    )


def run(args: argparse.Namespace) -> int:
    from ..report.build import default_out, write_reports
    from ..symbolic.variants import VARIANTS

    names = [args.variant] if args.variant else list(VARIANTS)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    out = args.out or default_out()
    written = write_reports(list(names), formats, out)
    print(f"{len(written.changed)} report file(s) changed in {out}")
    if written.skipped:
        print(
            f"{len(written.skipped)} figure(s) skipped because matplotlib is not installed; "
            "pip install 'grusym[plots]' and rerun to draw them (the text says which)"
        )
    return 0
