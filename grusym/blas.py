"""NumPy's own BLAS, callable from Numba: the matrix products inside the fused modules' whole-loop kernels.

Contract: :func:`matmul` (``matmul(a, b, out)``: out = a @ b for 2-D arrays) runs inside a Numba function
the very BLAS routine NumPy's ``np.matmul(a, b, out=out)`` runs for the same operands (gemm, or gemv / dot
where a dimension is 1, as NumPy picks them), so a loop moved from Python into Numba computes the same bits.
``AVAILABLE`` says whether that BLAS was found: NumPy's OpenBLAS, under the symbol names of NumPy's wheels
(``scipy_cblas_sgemm64_``) or of a plain build (``cblas_sgemm``). Without it (another BLAS, or no numba)
the generated modules keep their loops in Python. Operands whose rows are not contiguous, complex ones
(the complex-step check) and inner dimensions of 1 take a plain loop, as NumPy's own non-BLAS loop does.

The symbols are registered with LLVM under names of grusym's own (``grusym_cblas_sgemm_i64``: the integer
width is in the name), so compiled kernels refer to a name, not an address, and Numba's on-disk cache keeps
them (a ctypes function pointer is a "dynamic global" that disables it).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AVAILABLE", "LIBRARY", "matmul", "openblas_paths"]

# (symbol prefix, suffix, integer width): NumPy's wheels (ILP64, renamed), ILP64 builds, plain builds
_NAMINGS = (("scipy_", "64_", 64), ("", "64_", 64), ("", "", 32))
_ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv", "sdot", "ddot")


def openblas_paths() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (Linux), then those NumPy's wheel ships."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line]
    except OSError:
        pass
    root = Path(np.__file__).resolve().parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        if folder.is_dir():
            paths += [str(p) for p in sorted(folder.iterdir()) if "openblas" in p.name.lower()]
    return list(dict.fromkeys(paths))


def _find() -> tuple[str, dict[str, int], int] | None:
    """(library path, routine -> address, integer width) of the first OpenBLAS with every routine."""
    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, width in _NAMINGS:
            try:
                found = {r: getattr(lib, f"{prefix}cblas_{r}{suffix}") for r in _ROUTINES}
            except AttributeError:
                continue
            return path, {r: ctypes.cast(f, ctypes.c_void_p).value or 0 for r, f in found.items()}, width
    return None


def matmul(a: Any, b: Any, out: Any) -> Any:
    """out = a @ b (2-D); in Python, ``np.matmul``; inside Numba, the same BLAS call (see the module doc)."""
    return np.matmul(a, b, out=out)


LIBRARY = ""  # the path of the BLAS bound, when AVAILABLE
AVAILABLE = False


def _register(library: str, addresses: dict[str, int], width: int) -> None:
    import llvmlite.binding as llvm
    from numba import njit, types
    from numba.extending import overload

    integer = types.int64 if width == 64 else types.int32
    enum, ptr = types.int32, types.voidptr
    funcs: dict[str, Any] = {}
    for routine, address in addresses.items():
        name = f"grusym_cblas_{routine}_i{width}"
        llvm.add_symbol(name, address)
        real = types.float32 if routine[0] == "s" else types.float64
        if routine.endswith("gemm"):
            args = (enum, enum, enum, integer, integer, integer, real, ptr, integer, ptr, integer, real, ptr,
                    integer)  # fmt: skip
            sig = types.void(*args)
        elif routine.endswith("gemv"):
            gemv_args = (enum, enum, integer, integer, real, ptr, integer, ptr, integer, real, ptr, integer)
            sig = types.void(*gemv_args)
        else:
            sig = real(integer, ptr, integer, ptr, integer)
        funcs[routine] = types.ExternalFunction(name, sig)
    ROW, COL, NO, TRANS = 101, 102, 111, 112

    @njit(inline="always")
    def plain(a: Any, b: Any, out: Any) -> None:  # NumPy's non-BLAS loop, in its order
        m, k = a.shape
        p = b.shape[1]
        for i in range(m):
            for j in range(p):
                acc = a[i, 0] * b[0, j]
                for n in range(1, k):
                    acc += a[i, n] * b[n, j]
                out[i, j] = acc

    def blas_matmul(gemm: Any, gemv: Any, dot: Any, real: Any) -> Any:
        one, zero = real(1), real(0)

        def impl(a: Any, b: Any, out: Any) -> Any:
            m, k = a.shape
            p = b.shape[1]
            sz = a.itemsize
            rows = a.strides[1] == sz and b.strides[1] == sz and out.strides[1] == sz
            if k == 1 or not rows:
                plain(a, b, out)
            elif m == 1 and p == 1:
                out[0, 0] = dot(k, a.ctypes.data, 1, b.ctypes.data, b.strides[0] // sz)
            elif m == 1:  # vector @ matrix: NumPy's gemv on B, row-major, transposed
                gemv(ROW, TRANS, k, p, one, b.ctypes.data, b.strides[0] // sz, a.ctypes.data, 1, zero,
                     out.ctypes.data, 1)  # fmt: skip
            elif p == 1:  # matrix @ vector: NumPy's gemv on A read column-major, transposed
                gemv(COL, TRANS, k, m, one, a.ctypes.data, a.strides[0] // sz, b.ctypes.data,
                     b.strides[0] // sz, zero, out.ctypes.data, out.strides[0] // sz)  # fmt: skip
            else:
                gemm(ROW, NO, NO, m, p, k, one, a.ctypes.data, a.strides[0] // sz, b.ctypes.data,
                     b.strides[0] // sz, zero, out.ctypes.data, out.strides[0] // sz)  # fmt: skip

        return impl

    single = blas_matmul(funcs["sgemm"], funcs["sgemv"], funcs["sdot"], np.float32)
    double = blas_matmul(funcs["dgemm"], funcs["dgemv"], funcs["ddot"], np.float64)

    def plain_matmul(a: Any, b: Any, out: Any) -> Any:
        plain(a, b, out)

    @overload(matmul)
    def _matmul(a: Any, b: Any, out: Any) -> Any:
        if not all(isinstance(x, types.Array) and x.ndim == 2 for x in (a, b, out)):
            return None
        dtypes = {a.dtype, b.dtype, out.dtype}
        if dtypes == {types.float32}:
            return single
        if dtypes == {types.float64}:
            return double
        return plain_matmul

    global LIBRARY, AVAILABLE
    LIBRARY, AVAILABLE = library, True


def _setup() -> None:
    try:
        import numba  # noqa: F401
    except ImportError:
        return
    found = _find()
    if found is not None:
        _register(*found)


_setup()
