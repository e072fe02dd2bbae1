"""``grusym derive``: regenerate every generated module, or check that the committed ones are current;
with ``--cell FILE.py:NAME``, derive a cell declared in the user's own file to ``DIR/NAME.py``.

Without ``--out`` it rewrites the package's own ``grusym/generated`` (and the README's variant table) only
in a source checkout: an installed grusym (site-packages) is refused in one line that says to give
``--out DIR``, since rewriting an installed package's files would change every program using it.
``--check`` only reads, so it runs anywhere.
"""

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
        "of README.md, in a source checkout only: an installed grusym is refused without --out; with "
        "--cell: the current folder)",
    )
    p.add_argument(
        "--cell",
        metavar="FILE.py:NAME",
        default=None,
        help="derive the cell function NAME declared in your own FILE.py (see docs/cells.md) to OUT/NAME.py",
    )
    p.add_argument(
        "--fused",
        action="store_true",
        help="with --cell: write the Numba-fused module OUT/NAME_fused.py instead (numba runs it; writing "
        "it needs none); the built-ins' fused modules are under grusym/generated/fused",
    )


def _folder(out: Path) -> None:
    from ..errors import InputError

    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"--out {out}: {blocker} is a file, not a folder")


def package_folder(check: bool) -> Path:
    """The folder ``derive`` reads or writes without ``--out``: the package's ``generated/``, which is written
    only in a source checkout (a README.md with the variant table beside the package); else InputError."""
    from ..errors import InputError
    from ..symbolic.generate import default_dir, readme_path

    folder = default_dir()
    if not check and readme_path() is None:
        raise InputError(
            f"{folder.parent} is an installed grusym, not a source checkout: derive will not rewrite its "
            "files; give --out DIR to write the modules there (a checkout installed with pip install -e . "
            "regenerates its own)"
        )
    return folder


def _run_cell(args: argparse.Namespace) -> int:
    from ..symbolic.layout import pruning_note
    from ..symbolic.usercell import load_cell, module_drifted, regenerate_command, write_module

    out = args.out or Path(".")
    _folder(out)
    cell = load_cell(args.cell)
    command = regenerate_command(args.cell, str(out), args.fused)
    if args.check:
        path, bad = module_drifted(cell, out, command, args.fused)
        print(f"drifted: {path} (regenerate with: {command})" if bad else f"{path} is current")
        return 1 if bad else 0
    path, changed = write_module(cell, out, command, args.fused)
    print(f"wrote {path}" if changed else f"{path} is current")
    note = pruning_note(cell)
    if note:
        print(note)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cell is not None:
        return _run_cell(args)
    if args.fused:
        from ..errors import InputError

        raise InputError("--fused goes with --cell; the built-ins' fused modules are written with the others")
    from ..symbolic.generate import drifted, write_all

    out = args.out or package_folder(args.check)
    _folder(out)
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
