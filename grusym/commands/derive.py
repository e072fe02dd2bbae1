"""``grusym derive``: regenerate every generated module, or check that the committed ones are current."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "regenerate the NumPy modules from the variant equations (--check: exit 1 if any file drifted)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file differs from what the generator produces",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write to or check (default: the package's grusym/generated, plus the variant table "
        "of a source checkout's README.md)",
    )


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..symbolic.generate import default_dir, drifted, write_all

    out = args.out or default_dir()
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"--out {out}: {blocker} is a file, not a folder")
    if args.check:
        bad = drifted(args.out)
        for path in bad:
            print(f"drifted: {path} (regenerate with: grusym derive)")
        if not bad:
            print(f"all generated files in {out} are current")
        return 1 if bad else 0
    changed = write_all(args.out)
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} file(s) changed (generated modules in {out})")
    return 0
