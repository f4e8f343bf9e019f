"""aero: deterministic record/replay emulation of an IA-32 PC.

The public API, documented in docs/api.md:

* :class:`Machine`, :class:`MachineConfig`, :class:`StopReason` — the machine
  (:mod:`aero.machine`);
* :func:`record`, :func:`replay`, :func:`diff`, :func:`open_trace` — traces
  (:mod:`aero.traces.api`);
* :func:`check` — a replay with invariant oracles (:mod:`aero.oracles`).

Names are imported on first use, so ``import aero`` is cheap and submodules that do not need
the compiled core (``aero.isa``) import without it. This top-level namespace is the one
place of the machine package that refers to the layers above it; no module of the machine
layer imports them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Machine", "MachineConfig", "StopReason", "__version__", "check", "diff",
           "open_trace", "record", "replay"]

_EXPORTS = {
    "Machine": "aero.machine",
    "MachineConfig": "aero.machine",
    "StopReason": "aero.machine",
    "record": "aero.traces.api",
    "replay": "aero.traces.api",
    "diff": "aero.traces.api",
    "open_trace": "aero.traces.api",
    "check": "aero.oracles.runner",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aero' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
