"""Every complex-step refusal names the construct and the line of the user's code that caused it, wherever
in the function the construct sits: drawn functions, each with one construct that loses the imaginary part
among complex-safe lines, written to a real file as a user's module would be."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grusym.checks import check_gradients
from grusym.errors import InputError

# (the line that loses the imaginary part, a word the refusal must show); each binds v from z
CONSTRUCTS = [
    ("v = np.var(z)", "np.var"),
    ("v = np.std(z)", "np.std"),
    ("v = np.sum(np.abs(z))", "abs"),
    ("v = np.linalg.norm(z)", "norm"),
    ("v = np.sum(z.real)", ".real"),
    ("v = float(np.sum(z))", "float()"),
    ("buf = np.zeros(z.shape); buf[:] = z; v = np.sum(buf)", "cast a complex value to real"),
    ("acc = np.zeros(()); acc += np.sum(z); v = acc", "in-place update of a real array"),
    ("v = np.sum(np.sign(z) * z)", "np.sign"),
]
SAFE = ["z = np.tanh(z)", "z = z * 0.9 + 0.1", "z = np.sin(z) + z", "z = z @ M", "z = np.exp(-z * z) + z"]


def _module(lines: list[str]) -> object:
    """Write ``def loss(w)`` with these body lines to a fresh file and import it."""
    folder = Path(tempfile.mkdtemp(prefix="grusym_refusal_"))
    body = "\n".join(f"    {line}" for line in lines)
    source = (
        "import numpy as np\n\nM = np.eye(3) * 0.7 + 0.1\n\n\n"
        f"def loss(w):\n    z = w * 1.0\n{body}\n    return np.sum(z * z) + 2.0 * v\n"
    )
    path = folder / "user_loss.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"user_loss_{folder.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@given(
    construct=st.sampled_from(CONSTRUCTS),
    before=st.lists(st.sampled_from(SAFE), max_size=3),
    after=st.lists(st.sampled_from(SAFE), max_size=3),
)
def test_a_refusal_names_the_line_and_the_construct(construct, before, after):
    line, word = construct
    module = _module([*before, line, *after])
    w = np.array([0.3, -0.8, 1.1])
    with pytest.raises(InputError, match="complex step refused") as info:
        check_gradients(module.loss, lambda w: np.zeros_like(w), (w,), method="complex")
    message = str(info.value)
    lineno = 8 + len(before)  # the construct's line in the written file
    assert f"user_loss.py:{lineno} `{line}`" in message and word in message, message
