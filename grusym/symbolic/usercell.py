"""Cells declared in the user's own files, derived to modules on disk or in memory.

A cell file is plain Python: each cell is a function of the builder (see :mod:`grusym.symbolic.cell`),
named by ``FILE.py:NAME``. Its docstring's first line becomes the generated module's title, the rest its
description. ``grusym derive --cell FILE.py:NAME --out DIR`` writes ``DIR/NAME.py`` (:func:`write_module`);
from Python, :func:`derive_module` returns the same module without touching the disk::

    from grusym.symbolic.usercell import derive_module, load_cell

    m = derive_module(load_cell("my_cells.py:mycell"))
    params = m.init_params(input_size=10, hidden_size=16, output_size=10)

Every problem (a missing file or NAME, a file that does not import, a declaration that fails) raises a
:class:`~grusym.symbolic.cell.CellError` naming it, never a raw traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import linecache
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from .cell import Cell, CellError
from .codegen import module_source

__all__ = ["declare", "derive_module", "load_cell", "module_drifted", "parse_spec", "write_module"]


def parse_spec(spec: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` -> (path, name)."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name:
        raise CellError(f"--cell {spec!r}: expected FILE.py:NAME (a Python file and the cell function in it)")
    if not name.isidentifier():
        raise CellError(f"--cell {spec!r}: {name!r} is not a Python function name")
    return Path(path), name


def _import(path: Path) -> types.ModuleType:
    if not path.is_file():
        what = "does not exist"
        if path.exists():
            what = "is a folder" if path.is_dir() else "is not a regular file"
        raise CellError(f"cell file {str(path)!r} {what}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(f"grusym_cells_{path.stem}_{digest}", path)
    if spec is None or spec.loader is None:
        raise CellError(f"cell file {str(path)!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise CellError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except CellError:
        raise
    except Exception as exc:
        raise CellError(
            f"{path}: importing it failed{_where(exc, path)}: {type(exc).__name__}: {exc}"
        ) from None
    return module


def _where(exc: BaseException, path: Path | None) -> str:
    """`` at FILE:LINE`` for the innermost frame of the traceback inside ``path`` (or the user's code)."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = Path(__file__).resolve().parent.parent
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path.resolve()]
    if not mine:
        mine = [f for f in frames if here not in Path(f.filename).resolve().parents]
    return f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""


def declare(fn: Callable[[Cell], Any], name: str | None = None) -> Cell:
    """Run the declaration function ``fn`` on a fresh builder and return the checked cell.

    name: the cell's name (default ``fn.__name__``); the docstring gives the title and description.
    """
    cell_name = str(name or getattr(fn, "__name__", "cell"))
    doc = inspect.getdoc(fn) or ""
    title, _, rest = doc.partition("\n")
    c = Cell(cell_name, title=title.strip().rstrip("."), doc=rest.strip())
    try:
        fn(c)
    except CellError:
        raise
    except Exception as exc:
        src = inspect.getsourcefile(fn)
        where = _where(exc, Path(src) if src else None)
        raise c.error(f"declaring it failed{where}: {type(exc).__name__}: {exc}") from None
    return c.check()


def load_cell(spec: str | Path, name: str | None = None) -> Cell:
    """The cell NAME declared in a Python file, e.g. ``load_cell("cells.py:mgu")``."""
    path, cell_name = (Path(spec), name) if name is not None else parse_spec(str(spec))
    module = _import(path)
    fn = getattr(module, cell_name, None)
    if fn is None or not callable(fn):
        defined = sorted(
            k for k, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__
        )
        what = f"it defines: {', '.join(defined)}" if defined else "it defines no functions"
        raise CellError(f"{path} has no cell function {cell_name!r}; {what}")
    return declare(fn, cell_name)


def regenerate_command(spec: str, out: str, fused: bool = False) -> str:
    """The command the header of a user's generated module names."""
    return f"grusym derive --cell {spec} --out {out}" + " --fused" * fused


def derive_module(
    cell: Cell, regenerate: str = "grusym.symbolic.usercell.derive_module(cell)"
) -> types.ModuleType:
    """Generate ``cell``'s module and import it from memory (no file); ``inspect`` and tracebacks show its
    source, registered under the file name ``<grusym cell NAME>``."""
    source = module_source(cell, regenerate)
    filename = f"<grusym cell {cell.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"grusym_cell_{cell.name}")
    module.__file__ = filename
    sys.modules[module.__name__] = module  # dataclasses, pickling and inspect look modules up by name
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _target(cell: Cell, out: Path, fused: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise CellError(f"--out {out} is a file, not a folder")
    return out / f"{cell.name}{'_fused' * fused}.py"


def write_module(cell: Cell, out: Path, regenerate: str, fused: bool = False) -> tuple[Path, bool]:
    """Write ``out/NAME.py`` (fused: the Numba-fused ``out/NAME_fused.py``) if it differs from the
    generator's text; return (path, whether it changed)."""
    path, text = _target(cell, out, fused), module_source(cell, regenerate, fused)
    if path.exists() and path.read_bytes() == text.encode("utf-8"):
        return path, False
    atomic_write_text(path, text)
    return path, True


def module_drifted(cell: Cell, out: Path, regenerate: str, fused: bool = False) -> tuple[Path, bool]:
    """(``out/NAME.py`` or ``NAME_fused.py``, whether it is missing or differs from what the generator
    writes)."""
    path, text = _target(cell, out, fused), module_source(cell, regenerate, fused)
    return path, not (path.exists() and path.read_bytes() == text.encode("utf-8"))
