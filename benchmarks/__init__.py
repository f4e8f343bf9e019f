"""Benchmarks: guest MIPS beside Unicorn and QEMU (:mod:`aero.bench.mips`) and the
record/replay figures (:mod:`aero.bench.recordreplay`). Installed as ``aero.bench``; the
``aero bench`` command runs both.
"""
