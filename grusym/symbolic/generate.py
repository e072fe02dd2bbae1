"""Write the generated modules to disk, or report which committed ones drifted from the generator."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_text
from .codegen import index_source, module_source
from .variants import VARIANTS

__all__ = ["default_dir", "drifted", "expected_files", "write_all"]


def default_dir() -> Path:
    """The package's own ``generated/`` folder."""
    return Path(__file__).resolve().parent.parent / "generated"


def expected_files() -> dict[str, str]:
    """File name -> text, for every generated module and the index."""
    files = {f"{name}.py": module_source(name) for name in VARIANTS}
    files["__init__.py"] = index_source()
    return files


def write_all(out: Path | None = None) -> list[Path]:
    """(Re)write every generated file under ``out``; return the paths whose content changed."""
    out = out or default_dir()
    changed = []
    for name, text in expected_files().items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            changed.append(path)
    return changed


def drifted(out: Path | None = None) -> list[str]:
    """Names of generated files under ``out`` that are missing or differ from what the generator produces."""
    out = out or default_dir()
    bad = []
    for name, text in expected_files().items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            bad.append(name)
    return bad
