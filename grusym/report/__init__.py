"""Derivation reports: the BPTT derivation of every variant, rendered from the objects that generate the code.

One stage per module, data flowing one way:

* ``document``: the content (a format-neutral :class:`~grusym.report.blocks.Document`) read off the variant
  declaration, its :class:`~grusym.symbolic.derive.Derivation`, the rule proofs, the equation numbers and the
  generated module text; ``jacobian`` (closed-form dh_t/dh_{t-1}), ``relations`` (checked relations between
  variants), ``codemap`` (equation numbers in the code's comments) and ``latex`` (the naming scheme) feed it;
* ``verify``: the measured block (gradient checks at build time); ``figures`` and ``values``: seeded data and
  plots drawn from it;
* ``markdown`` and ``tex``: renderers (GitHub Markdown, standalone LaTeX, PDF); ``build``: files on disk.

Importing this package imports SymPy; ``import grusym`` does not import it.
"""

from __future__ import annotations

from .build import default_out, render_files, write_reports

__all__ = ["default_out", "render_files", "write_reports"]
