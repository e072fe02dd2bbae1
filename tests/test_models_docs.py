"""The encoder example of the README and docs/models.md (a loss on h_n, against torch) runs and prints what
they show: the same lines, every relative difference within 1e-12 (their last digits depend on the BLAS
build), the loss equal to torch's. Skipped without torch."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCI = re.compile(r"\d\.\de[-+]\d\d")


def _blocks(text: str, after: str) -> tuple[str, str]:
    """The python block and the output block that follow the line holding ``after``."""
    rest = text[text.index(after) :]
    code = re.search(r"```python\n(.*?)```", rest, re.S)
    assert code is not None
    output = re.search(r"```(?:text)?\n(.*?)```", rest[code.end() :], re.S)
    assert output is not None
    return code.group(1), output.group(1)


def test_the_encoder_example_prints_what_the_readme_shows():
    pytest.importorskip("torch")
    doc_code, doc_out = _blocks((ROOT / "docs" / "models.md").read_text(), "## A block of your program")
    readme_code, readme_out = _blocks(
        (ROOT / "README.md").read_text(), "**A model as one block of your program.**"
    )
    assert readme_code == doc_code and readme_out == doc_out
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(doc_code, "docs/models.md", "exec"), {"__name__": "__doc_example__"})
    got, want = printed.getvalue().splitlines(), doc_out.splitlines()
    assert [SCI.sub("#", line) for line in got] == [SCI.sub("#", line) for line in want]
    assert all(float(x) <= 1e-12 for line in got for x in SCI.findall(line))
    loss = re.search(r"loss (\S+) \(torch (\S+)\)", printed.getvalue())
    assert loss is not None and abs(float(loss[1]) - float(loss[2])) <= 1e-12 * abs(float(loss[2]))
