"""The mathematics of the reports: closed-form Jacobian, its limits and bound, relations, GitHub-safe math."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

import grusym
from grusym.report.analysis.jacobian import Factor, Jacobian, jacobian, value_ranges
from grusym.report.build import default_out
from grusym.report.numbers.relations import RELATIONS, Relation, check
from grusym.report.numbers.values import step_values
from grusym.report.numbers.verify import JACOBIAN_RTOL, jacobian_error
from grusym.report.render import markdown
from grusym.symbolic.variants import VARIANTS

NAMES = list(VARIANTS)


@pytest.mark.parametrize("name", NAMES)
def test_closed_form_jacobian_matches_central_differences_of_the_generated_forward(name):
    err, size = jacobian_error(name)
    assert size == 2 * 4 * 4 and err <= JACOBIAN_RTOL


def _fd_jacobian(name, params, X, h0, eps=1e-6):
    m = grusym.load(name)
    cols = []
    for j in range(h0.shape[1]):
        e = np.zeros_like(h0)
        e[:, j] = eps
        cols.append((m.forward(params, X, h0 + e)[0][0] - m.forward(params, X, h0 - e)[0][0]) / (2 * eps))
    return np.stack(cols, axis=2)


def test_a_wrong_jacobian_term_is_caught():
    """Dropping any one term of the gru's J (or doubling it) is visible against finite differences."""
    name = "gru"
    m = grusym.load(name)
    rng = np.random.default_rng(1)
    params = m.init_params(3, 4, 2, seed=1, scale=1.0)
    X, h0 = rng.normal(size=(1, 2, 3)), rng.uniform(-0.9, 0.9, (2, 4))
    values = {k: v[0] for k, v in step_values(name, params, X, h0).items()}
    J = jacobian(VARIANTS[name].cell())
    numeric = _fd_jacobian(name, params, X, h0)
    assert np.allclose(J.evaluate(values, params), numeric, atol=1e-7)
    for i in range(len(J.terms)):
        dropped = Jacobian(J.cell, J.terms[:i] + J.terms[i + 1 :])
        assert not np.allclose(dropped.evaluate(values, params), numeric, atol=1e-3), i


def test_rnn_jacobian_is_seed_004s_dg_U():
    """h_t = tanh(X W_xh + h_{t-1} W_hh + b): dh_t/dh_{t-1} = diag(1 - h_t^2) W_hh^T, at most ||W_hh||."""
    J = jacobian(VARIANTS["rnn_tanh"].cell())
    h = sp.Symbol("h", real=True)
    assert J.terms == ((Factor(1 - h**2), Factor(weight="W_hh")),)
    assert J.bound() == [(1, (), ("W_hh",))]


@pytest.mark.parametrize(
    ("name", "gate", "value"),
    [
        ("gru", "z", 1),
        ("gru_reset_after", "z", 1),
        ("gru_update_only", "z", 1),
        ("gru_chung", "z", 0),
        ("mgu", "f", 0),
    ],
)
def test_the_gate_that_copies_the_state_makes_the_jacobian_the_identity(name, gate, value):
    J = jacobian(VARIANTS[name].cell()).at({sp.Symbol(gate, real=True): value})
    assert J.is_identity()


@pytest.mark.parametrize("name", ["rnn_tanh", "gru_reset_only"])
def test_without_a_gate_path_every_jacobian_term_has_a_weight(name):
    J = jacobian(VARIANTS[name].cell())
    assert all(any(f.weight for f in t) for t in J.terms)


def test_state_range_is_proved_not_assumed():
    assert value_ranges(VARIANTS["gru"].cell())["h_prev"] == (-1, 1)
    # a cell whose update can leave [-1, 1] gets no range for h_{t-1}
    from grusym.symbolic.cell import Cell, sigmoid, tanh

    c = Cell("leaky")
    z = c.let("z", sigmoid(c.affine("z")))
    h_tilde = c.let("h_tilde", tanh(c.affine("h")))
    c.let("h", c.h_prev + z * h_tilde)
    assert "h_prev" not in value_ranges(c.check())


def test_relations_hold_and_a_false_one_does_not():
    for rel in RELATIONS:
        assert check(rel) <= 1e-12, rel.claim

    def unpinned(draw):
        after = draw("gru_reset_after")
        gru = {k: after[{"b_h": "b_xh"}.get(k, k)] for k in draw("gru")}
        return after, gru

    assert check(Relation("gru_reset_after", "gru", "false", "", unpinned)) > 1e-3


# ---- GitHub math: constructs GitHub's Markdown pass alters before MathJax (checked independently here)

_INLINE = re.compile(r"\$`(.*?)`\$")
_DISPLAY = re.compile(r"```math\n(.*?)\n```", re.S)


def test_committed_markdown_math_is_github_safe():
    for path in default_out().rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        inline, displays = _INLINE.findall(text), _DISPLAY.findall(text)
        assert inline and (displays or path.parent == default_out()), path
        for tex in inline:  # Markdown sees inline math before MathJax does
            assert "\\\\" not in tex, (path, tex)  # markdown turns \\ into \ (no line breaks)
            assert not re.search(r"\\[,;:!{}|_#%&]", tex), (path, tex)  # backslash-escapes are eaten
            assert not set(tex) & set("*<>"), (path, tex)
        for tex in displays:  # a ```math block reaches MathJax untouched, one block per display
            assert "\n" not in tex and "$$" not in text, (path, tex)
            assert len(re.findall(r"[_^]\{", tex)) < 99 * 3, (path, tex)
        for line in text.splitlines():
            if line.startswith("|"):
                for inline_tex in _INLINE.findall(line):
                    assert "|" not in inline_tex, (path, line)


def test_no_display_is_wider_than_githubs_column():
    """Every line of every display fits MAX_EX (the Jacobian of gru was 168 ex = ~1300 px on one line)."""
    from grusym.report.render.width import MAX_EX, width

    for path in default_out().rglob("*.md"):
        for tex in _DISPLAY.findall(path.read_text(encoding="utf-8")):
            # a matrix is as wide as its first row; aligned lines are measured one by one
            body = re.sub(r"\\begin\{pmatrix\}(.*?)\\end\{pmatrix\}", lambda m: m[1].split(r"\\")[0], tex)
            body = re.sub(r"\\(begin|end)\{aligned\}", "", body)
            for line in body.split(r" \\ ") if "aligned" in tex else [body]:
                assert width(line) <= MAX_EX * 1.1, (path, round(width(line)), line[:80])


def test_width_estimate_sees_a_long_display():
    from grusym.report.render.width import MAX_EX, break_lines, width

    parts = tuple(
        [r"J_{t} = \operatorname{diag}\left(z_{t}\right)"]
        + [r"+ W_{hh}^{\top} \operatorname{diag}\left(r_{t} \odot \left(1 - r_{t}\right)\right)"] * 6
    )
    assert width(" ".join(parts)) > MAX_EX
    lines = break_lines(parts)
    assert len(lines) > 1 and all(width(x) <= MAX_EX for x in lines)


# widths in ex that MathJax 3 (SVG output, display style) gave for these lines of the reports; the first
# is the lstm bound (J.1), which the estimate once put at 85 ex and so left on one 107 ex line
MATHJAX_EX = [
    (93.8, r"\lVert J_{t} \rVert_{2} \le \frac{1}{4} \lVert W_{ho} \rVert_{2} + \frac{1}{4} "
     r"\lVert W_{hf} \rVert_{2} \lVert c_{t-1} \rVert_{\infty} + \lVert W_{hg} \rVert_{2} + \frac{1}{4} "
     r"\lVert W_{hi} \rVert_{2} + 1 + \frac{1}{4} \lVert W_{hf} \rVert_{2} \lVert c_{t-1} \rVert_{\infty} "
     r"+ \lVert W_{hg} \rVert_{2}"),
    (31.7, r"J_{t} = \operatorname{diag}\left(1 - h_{t}^{\odot 2}\right) W_{hh}^{\top} "
     r"\operatorname{diag}\left(r_{t}\right)"),
    (25.4, r"\underset{n \times d_{h}}{\delta h_{t}} = \delta^{\mathrm{out}} h_{t} "
     r"+ \delta a_{o,t+1} W_{ho}^{\top}"),
    (33.9, r"a_{i,t} = X_{t} W_{xi} + h_{t-1} W_{hi} + b_{xi} + b_{hi}"),
    (17.9, r"\mathrm{tanh}_{c,t} = \tanh\left(c_{t}\right)"),
    (26.2, r"y = \tanh\left(x\right) = \frac{- e^{- x} + e^{x}}{e^{x} + e^{- x}}"),
    (4.0, r"W_{ho}"),
    (2.1, r"\frac{1}{4}"),
]  # fmt: skip


@pytest.mark.parametrize(("measured", "tex"), MATHJAX_EX)
def test_width_estimate_is_within_15_percent_of_mathjax(measured, tex):
    from grusym.report.render.width import width

    assert abs(width(tex) / measured - 1) <= 0.15, (round(width(tex), 1), measured)


@pytest.mark.parametrize("bad", [r"a \\ b", r"a \, b", r"\{x\}", "a*b", "a<b"])
def test_the_renderer_refuses_unsafe_math(bad):
    assert markdown.unsafe_math(bad)


def test_every_markdown_table_row_has_the_headers_number_of_cells():
    """An unescaped | in a header or a cell splits it (GitHub then shifts every column after it)."""
    cells = re.compile(r"(?<!\\)\|")
    for path in default_out().rglob("*.md"):
        rows: list[str] = []
        for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            if line.startswith("|"):
                rows.append(line)
                continue
            if rows:
                counts = {len(cells.findall(r)) for r in rows}
                assert len(counts) == 1, (
                    path,
                    rows[0],
                    [r for r in rows if len(cells.findall(r)) != len(cells.findall(rows[0]))][:1],
                )
                rows = []
