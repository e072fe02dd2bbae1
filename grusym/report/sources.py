"""The tutorials grusym starts from, named by title and authors, so no report says "seed 003".

Contract: :data:`TUTORIALS` maps each source document's number (the ``seed NNN`` of the project's notes and
of the variant declarations) to its title and authors as printed in the document itself; :func:`cite`
replaces every ``seed NNN`` in a text by that citation.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["AUTHORS", "TOY", "TUTORIALS", "cite"]

AUTHORS = {
    "000": "Russell-Puleri and Puleri",
    "001": "Russell-Puleri and Puleri",
    "003": "Zhang, Lipton, Li and Smola",
}
TUTORIALS = {
    "000": 'S. Russell-Puleri and D. Puleri, "Gated Recurrent Units explained using matrices: Part 1"',
    "001": 'S. Russell-Puleri and D. Puleri, "Gated Recurrent Units explained with matrices: Part 2"',
    "002": 'the tutorial "Gated Recurrent Units (GRUs)" (author not named in it)',
    "003": "A. Zhang, Z. C. Lipton, M. Li and A. J. Smola, Dive into Deep Learning, section 8.8",
    "004": 'the blog post "Understanding GRUs" (author not named in it)',
}
# the toy of tutorial 000: its text, character ids, and the batch of its walk-through
TOY: dict[str, Any] = {"text": "MathMathMathMathMath", "vocab": "hatM", "batch": 2, "steps": 3, "hidden": 2}
_NAMED = re.compile(r"([^;()/]+?) / seed (\d{3})")  # "Dive into Deep Learning 9.1 / seed 003"
_SEED = re.compile(r"seeds? (\d{3})(?:/(\d{3}))?(?:/(\d{3}))?")


def cite(text: str) -> str:
    """``text`` with ``seed 003`` (or ``seeds 000/001``) replaced by the tutorials' titles and authors.

    ``name / seed 003`` already names the source: it becomes ``name (authors)``.
    """

    def named(m: re.Match[str]) -> str:
        who = AUTHORS.get(m[2])
        return f"{m[1]} ({who})" if who else f"{m[1]} ({TUTORIALS.get(m[2], m[2])})"

    def one(m: re.Match[str]) -> str:
        return "; ".join(TUTORIALS.get(k, f"source {k}") for k in m.groups() if k)

    return _SEED.sub(one, _NAMED.sub(named, text))
