"""Differential fuzzing of aero (installed as ``aero.fuzz``).

:mod:`aero.fuzz.strategies` generates instruction-level scenarios from the instruction
table; :mod:`aero.fuzz.campaign` runs them against a reference CPU and reports divergences.
"""
