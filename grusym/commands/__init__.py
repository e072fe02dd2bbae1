"""The subcommands of the ``grusym`` CLI (see :mod:`grusym.cli` for the contract)."""
