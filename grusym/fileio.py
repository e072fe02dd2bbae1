"""Files in and out, safely: atomic writes and checked text reads.

Contract: a write goes to a temporary file in the target folder, is flushed to disk and then renamed over
the target, so readers see either the old file or the whole new one; if anything fails (an exception while
writing, a failed rename) the temporary file is removed and the target is untouched. A written file gets
the usual permissions (kept from the file it replaces, else 0o666 minus the umask). Problems the caller can
fix (unwritable folder, target is a folder, missing/empty/binary/non-UTF-8 input) raise
:class:`~grusym.errors.InputError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "read_text"]

_UMASK = os.umask(0o022)  # read once: os.umask can only be read by setting it
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file to write ``path`` through: ``with atomic_open(p) as f: np.savez(f, ...)``.

    mode: ``"wb"`` or ``"w"`` (UTF-8, newlines written as given). The target is replaced only when the
    ``with`` block finishes without an exception.
    """
    if mode not in ("wb", "w"):
        raise InputError(f"atomic_open mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write to folder {path.parent}: {exc.strerror or exc}") from None
    try:
        f: IO[Any] = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            old = path.stat().st_mode if path.is_file() else None
        except OSError:
            old = None
        os.chmod(tmp, stat.S_IMODE(old) if old is not None else 0o666 & ~_UMASK)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # makes the rename itself durable; not every platform can open a folder, which is harmless
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (newlines unchanged)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str | os.PathLike[str], what: str = "text file") -> str:
    """The contents of a UTF-8 text file (a leading byte-order mark is dropped).

    Raises InputError, naming ``what`` and the path, when the file is missing, a folder, unreadable,
    empty (nothing but whitespace), binary (holds a NUL byte) or not valid UTF-8.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{what} {path} looks binary, not text (NUL byte at offset {nul})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}: "
            f"{exc.reason})"
        ) from None
    if not text.strip():
        raise InputError(f"{what} {path} is empty")
    return text
