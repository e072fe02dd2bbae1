"""Every math span of every committed report and of the example cells' reports, typeset by MathJax 3 as
GitHub does: no TeX error (issue 27).

Needs node and the npm package mathjax-full on NODE_PATH (e.g. ``npm install mathjax-full@3`` in a scratch
folder, then ``NODE_PATH=that/node_modules``); without them the test skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grusym.examples.cells import EXAMPLES, path
from grusym.report.build import default_out

_SCRIPT = r"""
const {mathjax} = require("mathjax-full/js/mathjax.js");
const {TeX} = require("mathjax-full/js/input/tex.js");
const {SVG} = require("mathjax-full/js/output/svg.js");
const {liteAdaptor} = require("mathjax-full/js/adaptors/liteAdaptor.js");
const {RegisterHTMLHandler} = require("mathjax-full/js/handlers/html.js");
const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);
const packages = require("mathjax-full/js/input/tex/AllPackages.js").AllPackages
  .filter((p) => p !== "noerrors" && p !== "noundefined");
const errors = [];
const formatError = (jax, err) => { errors.push(err.message); return jax.formatError(err); };
const tex = new TeX({packages, formatError});
const doc = mathjax.document("", {InputJax: tex, OutputJax: new SVG({fontCache: "none"})});
const spans = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = [];
for (const [display, text] of spans) {
  const before = errors.length;
  doc.convert(text, {display});
  if (errors.length > before) out.push([text.slice(0, 160), errors[errors.length - 1]]);
}
console.log(JSON.stringify({count: spans.length, errors: out}));
"""
_INLINE = re.compile(r"\$`(.*?)`\$")
_DISPLAY = re.compile(r"```math\n(.*?)\n```", re.S)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    probe = subprocess.run(
        [node, "-e", "require.resolve('mathjax-full')"], capture_output=True, env=os.environ
    )
    if probe.returncode != 0:
        pytest.skip("the npm package mathjax-full is not on NODE_PATH")
    return node


def _typeset(node: str, reports: list[Path]) -> dict:
    spans = []
    for report in reports:
        text = report.read_text(encoding="utf-8")
        spans += [[True, m] for m in _DISPLAY.findall(text)] + [[False, m] for m in _INLINE.findall(text)]
    proc = subprocess.run(
        [node, "-e", _SCRIPT],
        input=json.dumps(spans),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(proc.stdout)
    assert result["count"] == len(spans)
    return result


def test_every_math_span_of_every_committed_report_typesets_without_error():
    result = _typeset(_node(), sorted(default_out().rglob("*.md")))
    assert result["count"] > 1000
    assert result["errors"] == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_math_span_of_an_example_cells_report_typesets_without_error(name, tmp_path):
    """Users' cells render through the same code with their own names (sru reads X elementwise)."""
    node = _node()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grusym",
            "report",
            "--cell",
            path(name),
            "--format",
            "md",
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    result = _typeset(node, sorted(tmp_path.rglob("*.md")))
    assert result["count"] > 100
    assert result["errors"] == []
