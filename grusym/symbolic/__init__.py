"""The symbolic side of grusym: variant specs, their derivation and the code generator (needs SymPy).

Nothing here is imported by ``import grusym`` or by the generated modules.
"""
