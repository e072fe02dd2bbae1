"""The tutorials grusym starts from, named by title and authors, so no report says "seed 003".

Contract: :data:`TUTORIALS` maps each source document's number (the ``seed NNN`` of the project's notes and
of the variant declarations) to its title and authors as printed in the document itself; :func:`cite`
replaces every ``seed NNN`` in a text by that citation.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["TOY", "TUTORIALS", "cite"]

TUTORIALS = {
    "000": "S. Russell-Puleri and D. Puleri, “Gated Recurrent Units explained using matrices: Part 1”",
    "001": "S. Russell-Puleri and D. Puleri, “Gated Recurrent Units explained with matrices: Part 2”",
    "002": "the tutorial “Gated Recurrent Units (GRUs)” (author not named in it)",
    "003": "A. Zhang, Z. C. Lipton, M. Li and A. J. Smola, Dive into Deep Learning, section 8.8",
    "004": "the blog post “Understanding GRUs” (author not named in it)",
}
# the toy of tutorial 000: its text, character ids, and the batch of its walk-through
TOY: dict[str, Any] = {"text": "MathMathMathMathMath", "vocab": "hatM", "batch": 2, "steps": 3, "hidden": 2}
_NAMED = re.compile(r"([^;()/]+?) / seed (\d{3})")  # "Dive into Deep Learning 8.8 / seed 003"
_SHORT = re.compile(r"^(Dive into Deep Learning [\d.]+|d2l)")  # a short name of source 003
_SEED = re.compile(r"seeds? (\d{3})(?:/(\d{3}))?(?:/(\d{3}))?")


def cite(text: str) -> str:
    """``text`` with ``seed 003`` (or ``seeds 000/001``) replaced by the tutorials' titles and authors.

    ``name / seed 003`` becomes the source's own citation: the declarations' short names may number its
    sections differently from the document the project works from (its section is the one cited here).
    """

    def named(m: re.Match[str]) -> str:
        if m[2] not in TUTORIALS:
            return f"{m[1]} (source {m[2]})"
        part = _SHORT.sub("", m[1]).strip()  # "d2l exercise 4" -> "exercise 4"
        return TUTORIALS[m[2]] + (f", {part}" if part else "")

    def one(m: re.Match[str]) -> str:
        return "; ".join(TUTORIALS.get(k, f"source {k}") for k in m.groups() if k)

    return _SEED.sub(one, _NAMED.sub(named, text))
