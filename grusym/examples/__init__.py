"""Worked examples that ship with grusym (read them, copy them)."""
