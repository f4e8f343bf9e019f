"""Invariant oracles, installed as ``aero.oracles`` (source folder: top-level ``oracles/``).

Oracles watch a replay and report violations of architectural, device, memory, output and
liveness invariants (docs/oracles.md). The public API:

* :class:`Oracle` (hooks ``start``, ``event``, ``checkpoint``, ``end``; opt-in, slow
  ``instruction``), :class:`Context`, :class:`Event`, :class:`Violation`, :class:`OracleError`
  (:mod:`aero.oracles.api`);
* ``register``, ``get``, ``names``, ``default_names``, ``load_file``, ``resolve``
  (:mod:`aero.oracles.registry`);
* :func:`check` (replay a trace file with oracles), :func:`check_trace` and
  :class:`OracleRunner` (:mod:`aero.oracles.runner`), imported on
  first use because they need the compiled core.

The built-ins live one group per module: ``builtin_replay`` (replay-determinism),
``builtin_cpu`` (cpu, cpu-step), ``builtin_devices`` (devices), ``builtin_memory``
(memory), ``builtin_output`` (guest-output), ``builtin_liveness`` (liveness).
"""

from __future__ import annotations

from typing import Any

from .api import Context, Event, Oracle, OracleError, Violation
from .registry import build, default_names, get, load_file, names, register, resolve

__all__ = ["CheckResult", "Context", "Event", "Oracle", "OracleError", "OracleRunner", "Violation",
           "build", "check", "check_trace", "default_names", "failure_predicate", "get",
           "load_file", "names", "register", "resolve"]


def __getattr__(name: str) -> Any:
    if name in ("CheckResult", "OracleRunner", "check", "check_trace",
                "failure_predicate"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'aero.oracles' has no attribute {name!r}")
