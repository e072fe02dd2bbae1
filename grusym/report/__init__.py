"""Derivation reports: the BPTT derivation of a cell, rendered from the objects that generate its code.

One stage per module, data flowing one way:

* ``context``: what a report is about (a :class:`~grusym.report.context.Subject`: a declared cell and the
  generated module that runs it; built-in variants by name) and what every section reads;
* content, format-neutral (:mod:`~grusym.report.blocks`): ``equations`` (forward, local derivatives,
  adjoint with shapes, BPTT), ``vanishing`` (closed-form J, bound, vanishing condition, expansion, escape),
  ``worked`` (the toy in numbers), ``sections`` (code, PyTorch/Keras slices, verification, figures),
  ``index`` (all variants), assembled by ``document``; ``graph`` (computational graphs), ``jacobian``,
  ``expansion``, ``relations``, ``codemap``, ``latex`` (the naming scheme), ``sources`` (the tutorials);
* numbers, seeded: ``figures`` (all of ``figures.json``), ``escape``, ``adjoints``, ``values``; measured at
  build time: ``verify``;
* output: ``markdown`` (GitHub), ``tex`` (LaTeX, PDF), ``width`` (display widths and line breaks),
  ``plots`` (PNGs, only with matplotlib), ``build`` (files on disk).

Importing this package imports SymPy; ``import grusym`` does not import it.
"""

from __future__ import annotations

from .build import default_out, render_files, write_reports
from .context import cell_subject, subject

__all__ = ["cell_subject", "default_out", "render_files", "subject", "write_reports"]
