"""Derivation reports: the BPTT derivation of a cell, rendered from the objects that generate its code.

Subpackages, data flowing one way (each imports only those listed before it):

* ``render``: the format-neutral document model (``blocks``), the naming scheme (``latex``), display widths
  (``width``), and the outputs: ``markdown`` (GitHub), ``tex`` (LaTeX, PDF), ``plots`` (PNGs, matplotlib);
* ``analysis``: what is derived symbolically about a cell: the closed-form one-step Jacobian, its bound
  and its expansion at initialisation (``derived`` caches them per declaration);
* ``numbers``: seeded runs of the generated code (everything ``figures.json`` holds) and the checks
  measured at build time (``verify``);
* ``core``: the report's core sections, from the forward equations to the code and the worked example;
* ``appendix``: the appendices (bounds and expansions, the vanishing experiment, framework weights, the
  optimised generated code, verification).

Beside them: ``context`` (what a report is about: a :class:`~grusym.report.context.Subject`), ``sources``
(citations), ``document`` and ``index`` (assembling the pages) and ``build`` (files on disk).
Importing this package imports SymPy; ``import grusym`` does not import it.
"""

from __future__ import annotations

from .build import default_out, render_files, write_reports
from .context import cell_subject, subject

__all__ = ["cell_subject", "default_out", "render_files", "subject", "write_reports"]
