"""The names of generated code: ``grusym.symbolic.names`` accounts for every identifier the generator writes.

A declaration's names become identifiers of its module (a step ``v``, its adjoint ``dv``, a parameter's
transpose ``W_hv_T`` ...), beside the generator's own (``A``, ``tmp0``, ``zip``). ``names.clash`` refuses a
declaration two of whose identifiers would coincide; that is only sound if it knows every identifier the
generator writes. So: every identifier in the plain and fused modules of the built-ins, the examples, the
literature cells and a few hundred drawn cells is one ``names.identifiers`` derives from the cell, or one
the generator reserves for itself. A new naming scheme in the generator fails here until names.py has it.
"""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings

from grusym.examples.cells import EXAMPLES, path
from grusym.symbolic.cell import CellError
from grusym.symbolic.codegen import module_source
from grusym.symbolic.names import GENERATED_IN, SEQUENTIAL, identifiers, reserved
from grusym.symbolic.usercell import declare, load_cell
from grusym.symbolic.variants import CELLS

from . import literature_cells
from .cell_strategies import declarations


def _identifiers(source: str) -> tuple[set[str], set[str]]:
    """(identifiers of the functions where a declaration's names become locals, those of the others)."""
    inside: set[str] = set()
    outside: set[str] = set()
    for fn in ast.parse(source).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        found = inside if GENERATED_IN.fullmatch(fn.name) else outside
        for node in ast.walk(fn):
            if isinstance(node, ast.Name):
                found.add(node.id)
            elif isinstance(node, ast.arg):
                found.add(node.arg)
    return inside, outside


def _unaccounted(cell) -> dict[str, list[str]]:
    """Identifiers of the cell's plain and fused modules that names.py does not account for, per module."""
    known = identifiers(cell)
    initial = {f"{s}0" for s in cell.states} | {"W_hq", "b_q"}
    initial |= {f"U_{k}" for k in cell.inputs}  # a per-step input's checked array (a shape users cannot name)

    def accounted(name: str) -> bool:
        if name in known or reserved(name) or name in SEQUENTIAL:
            return True
        base = name[2:]  # a fused kernel's row (R_) or buffer (B_) of a name of the generator's own
        return name[:2] in ("R_", "B_") and (reserved(base) or base in SEQUENTIAL)

    out = {}
    for fused in (False, True):
        inside, outside = _identifiers(module_source(cell, "tests/test_cell_names.py", fused))
        missing = sorted(n for n in inside if not accounted(n))
        # the public functions see a declaration only through the initial states (h0, c0) and the head
        missing += sorted(f"{n} (outside)" for n in outside if n in known and n not in initial)
        missing += sorted(f"{n} (outside, shaped like h0)" for n in outside - initial if n.endswith("0"))
        if missing:
            out["fused" if fused else "plain"] = missing
    return out


def _named_cells():
    cells = [CELLS[name].cell() for name in CELLS]
    cells += [load_cell(path(name)) for name in EXAMPLES]
    cells += [declare(fn, name) for name, fn in literature_cells.CELLS.items()]
    return cells


@pytest.mark.parametrize("cell", _named_cells(), ids=lambda c: c.name)
def test_every_identifier_of_a_generated_module_is_accounted_for(cell):
    assert not _unaccounted(cell)


@settings(
    max_examples=5 * settings.default.max_examples, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(decl=declarations())
def test_every_identifier_of_a_drawn_cells_module_is_accounted_for(decl):
    try:
        cell = declare(decl.function(), "drawn")
    except CellError:
        return
    assert not _unaccounted(cell), decl.source()


def test_the_check_knows_a_name_the_generator_uses():
    """The test above can fail: an identifier names.py does not derive is reported."""
    cell = declare(literature_cells.CELLS["irnn"], "irnn")
    assert "X" not in identifiers(cell) and reserved("X")
    assert not reserved("a_h_totally_new") and "a_h_totally_new" not in identifiers(cell)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ('z = c.let("z_prev", sigmoid(c.affine("f")))\n    c.let("z", z * c.prev("z"))\n'
         '    c.let("h", tanh(c.value("z")))', "state 'z' would share the name 'z_prev'"),
        ('c.let("h", tanh(c.affine("f") * c.vector("dh")))', "share the name 'dh'"),
        ('v = c.let("v", tanh(c.affine("f")))\n    c.let("h", v * c.vector("dv"))', "share the name 'dv'"),
        ('c.let("h", tanh(c.affine("f")) * c.vector("tmp0"))', "'tmp0' is reserved"),
        ('c.let("h", tanh(c.affine("f", bias="zip")))', "'zip' is reserved"),
        ('c.let("h", tanh(c.affine("f", name="zip")))', "'zip' is reserved"),
        ('s = c.let("s", tanh(c.affine("s")))\n    u = c.affine("g", hidden=c.prev("s"), name="u")\n'
         '    c.let("u_s_prev", sigmoid(u))\n    c.let("h", tanh(c.value("u_s_prev") + s))',
         "share the name 'u_s_prev'"),
        ('c.let("h", tanh(c.affine("f", bias="W_xf_T")))', "'W_xf_T' is reserved"),
        ('c.let("h", tanh(c.affine("f")) * c.vector("R_h"))', "'R_h' is reserved"),
        ('c.let("s0", tanh(c.affine("f")) * c.prev("s"))\n    c.let("s", c.value("s0"))\n'
         '    c.let("h", c.value("s"))', "share the name 's0'"),
    ],
)  # fmt: skip
def test_names_that_would_collide_in_generated_code_are_refused(source, fragment):
    """Regression (before: silently wrong gradients, e.g. a vector named 'dh' overwrote the adjoint of h, or
    a crash inside generated code, e.g. a bias named 'zip'): refused in one line naming both."""
    namespace: dict = {}
    exec(f"from grusym.symbolic.cell import sigmoid, tanh\ndef bad(c):\n    {source}\n", namespace)
    with pytest.raises(CellError, match=fragment.replace("(", r"\(")) as info:
        declare(namespace["bad"], "bad")
    assert "\n" not in str(info.value) and "'bad'" in str(info.value)
