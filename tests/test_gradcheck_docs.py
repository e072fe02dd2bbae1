"""docs/gradcheck.md shows real output: every Python example, run here, prints exactly the text block
that follows it (each compiled as ``example.py``, the name the complex-step refusal quotes)."""

from __future__ import annotations

import contextlib
import io
import linecache
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "gradcheck.md"
PAIR = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    return PAIR.findall(DOC.read_text(encoding="utf-8"))


def run(source: str) -> str:
    # the source is registered as example.py, so a refusal can quote its lines as it would a real file's
    linecache.cache["example.py"] = (len(source), None, source.splitlines(True), "example.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "example.py", "exec"), {"__name__": "example"})
    return out.getvalue()


def test_the_guide_has_its_three_examples():
    sources = [s for s, _ in examples()]
    assert len(sources) >= 3
    assert any("check_layer(rnn_step_forward" in s for s in sources)  # a layer pair
    assert any("check_gradients(None, softmax_loss, (scores, y, 1.5)" in s for s in sources)  # positional
    assert any("astype(np.float32)" in s for s in sources)  # a float32 code


@pytest.mark.parametrize(("source", "printed"), examples(), ids=lambda v: v.splitlines()[0][:30])
def test_each_example_prints_what_the_guide_shows(source, printed):
    assert run(source) == printed
