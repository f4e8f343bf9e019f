"""Invariant oracles, installed as ``aero.oracles`` (source folder: top-level ``oracles/``).

Oracles watch a replay and report violations of architectural, device, memory, output and
liveness invariants. This package is where they live; the trace replay engine drives them.
"""
