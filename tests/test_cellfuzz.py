"""The cell fuzzer: every declaration the language accepts derives right, every other one is refused by name.

The invariant (docs/cells.md): a declaration is either refused when it is declared, with a one-line
``CellError`` naming the cell and the problem, or its generated module is right. Declarations are drawn by
``tests/cell_strategies.py`` (random graphs of affine / let / prev / vector steps over every primitive,
numbers and terms that cancel, one to three states, unread steps, steps read only through another state,
matmuls of another state's prev, of a step and of a state's new value, two bias rows, ``x=False``,
``recurrent=False``, ``bias=False``, names that meet generated ones, and declarations the language refuses),
derived in memory, and judged by ``tests/cell_checks.check_cell`` against

* the tape autograd of tests/reference_autograd.py, which interprets the declared SymPy steps;
* torch autograd running the declaration's own source (tests/torch_cell.py), when torch is installed: it
  shares nothing with grusym, not even the builder; the same draws as the tape (seed ``SEED``);
* and, for the fused (Numba) module, the tape again, when numba is installed (fewer cells: each compiles).

A tenth of the draws run at sizes of one (``TINY``). Parameter values are continuous draws, so a relu or
hard_sigmoid kink is met only by an argument that is a structural constant (``relu(a - a)``), whose gradient
is zero under every convention. ``COUNTS`` tallies the outcomes (drawn, derived, refused by reason, the
constructs of the accepted cells); ``-s`` prints them. Examples: 20x the hypothesis profile's max_examples
(300 in the default tier, 6000 with --thorough). A shrunk failure becomes a named case in
tests/test_cell_regressions.py, as the declaration source it printed.
"""

from __future__ import annotations

import collections
import importlib.util
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, assume, find, given, note, settings
from hypothesis import strategies as st

from grusym.symbolic.codegen import module_source

from .backends import needs_numba
from .cell_checks import COUNTS, SIZES, TINY, Derived, check_cell, declared, live_features, outcome
from .cell_strategies import POSITIVE_ONLY, PRIMITIVES, Declaration, declarations, features

EXAMPLES = 20 * settings.default.max_examples  # 300 (default tier), 6000 (--thorough)
FUSED_EXAMPLES = settings.default.max_examples  # each compiles its kernels: 15, 300
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), report_multiple_bugs=False
)
SEED = 23  # the hypothesis seed of the fuzz runs: the tape and torch see the same draws (derived once)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    start = time.perf_counter()
    yield
    print(f"\ncell fuzzer ({time.perf_counter() - start:.1f} s):", dict(sorted(COUNTS.items())))


# the constructs of the language and the refusals the strategy aims at (see the test that finds each)
CONSTRUCTS = {f"primitive {p}" for p in PRIMITIVES + POSITIVE_ONLY} | {
    "abs()", "integer power", "negative power", "numpy scalar",
    "vector", "number", "negation", "division by a number", "sum", "difference", "product",
    "cancels: a - a", "cancels: 0*a", "cancels: a + (-1)*a", "affine", "x=False", "recurrent=False",
    "bias=False", "two bias rows", "affine name=", "matmul of another state's prev", "matmul of a step",
    "matmul of a state's new value", "1 states", "2 states", "3 states", "pruned step",
    "step read only through another state", "X read elementwise", "per-step input", "row mean", "row sum",
    "division by a value", "number over a value",
}  # fmt: skip
AIMED = {
    "matmul of a linear step", "state assigned by a linear step", "state read but never updated",
    "left factor not a named value", "affine step without a term", "X read only by unread steps",
    "a name reserved for the generated code", "two names meet in the generated code",
    "argument not provably positive", "a per-step input as a matmul's left factor",
    "divisor not provably positive", "reduction over another axis",
}  # fmt: skip


def _fuzz(oracle: str, examples: int) -> None:
    """Draw ``examples`` declarations; each is refused by a known rule or agrees with ``oracle``."""
    seen: collections.Counter[str] = collections.Counter()

    @hypothesis.seed(SEED)  # fixed draws; the thorough tier's runs extend the default tier's
    @settings(FUZZ, max_examples=examples)
    @given(decl=declarations(), seed=st.integers(0, 2**16), tiny=st.integers(0, 9).map(lambda k: k == 9))
    def fuzz(decl: Declaration, seed: int, tiny: bool) -> None:
        note(decl.source())
        seen["drawn"] += 1
        out = outcome(decl)
        if isinstance(out, str):
            seen[f"refused: {out}"] += 1
            assert not out.startswith("other"), f"a refusal no rule explains: {out}"
            return
        seen["derived"] += 1
        seen.update(features(decl) | live_features(out.cell))
        check_cell("drawn cell", out, seed, oracle, sizes=TINY if tiny else SIZES)
        seen[f"agree with the {oracle}"] += 1

    fuzz()
    COUNTS.update({f"{oracle}: {k}": v for k, v in seen.items()})
    # the run cannot pass by never drawing a construct (in an accepted cell); the aimed refusals are rarer
    # (a few in a hundred draws, unevenly spread by hypothesis): required of the thorough tier's runs
    missing = sorted(CONSTRUCTS - set(seen))
    if examples >= 1000:
        missing += sorted(AIMED - {k.removeprefix("refused: ") for k in seen})
    assert not missing, f"{examples} draws never reached: {missing}"


def test_every_drawn_cell_is_refused_by_name_or_matches_the_tape():
    _fuzz("tape", EXAMPLES)


@pytest.mark.torch
def test_every_drawn_cell_is_refused_by_name_or_matches_torch_autograd_of_its_source():
    pytest.importorskip("torch")
    _fuzz("torch", EXAMPLES)


def _has(target: str) -> Any:
    def found(decl: Declaration) -> bool:
        out = declared(decl)
        if isinstance(out, str):
            return out == target
        return target in features(decl) | live_features(out[1])

    return found


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(CONSTRUCTS) + sorted(AIMED))
def test_the_strategy_draws_every_construct_and_every_refusal(target):
    """The strategy reaches each construct (in an accepted cell) and each aimed refusal: hypothesis finds
    a declaration with each one within 1,000 draws (a guard for edits of the strategy; about a minute)."""
    once = settings(FUZZ, max_examples=1000, database=None, phases=[Phase.generate])  # found: no shrinking
    find(declarations(), _has(target), settings=once)


def _fused(derived: Derived, folder: Path) -> Any:
    """The fused module of a derived cell, written to ``folder`` (Numba caches kernels beside files)."""
    name = f"{derived.cell.name}_fused"
    path = folder / f"{name}.py"
    path.write_text(module_source(derived.cell, "tests/test_cellfuzz.py", fused=True), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_numba
@settings(FUZZ, max_examples=FUSED_EXAMPLES)
@given(decl=declarations(), seed=st.integers(0, 2**16))
def test_every_drawn_cell_fused_matches_the_tape(decl, seed, tmp_path_factory):
    note(decl.source())
    out = outcome(decl)
    assume(not isinstance(out, str))  # the refusals are the other tests' business
    COUNTS["fused: derived"] += 1
    check_cell("fused cell", out, seed, "tape", _fused(out, tmp_path_factory.mktemp("fused")))
    COUNTS["fused: agree with the tape"] += 1
