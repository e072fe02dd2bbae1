"""See :mod:`grusym.report` for what this subpackage holds."""
