"""aero: deterministic record/replay emulation of an IA-32 PC.

The emulator core is C (compiled through cffi); :class:`aero.machine.Machine` drives it.
Submodules that do not need the compiled core (``aero.isa``) import without it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Machine", "MachineConfig", "StopReason", "__version__"]


def __getattr__(name: str):
    if name in ("Machine", "MachineConfig", "StopReason"):
        from aero import machine

        return getattr(machine, name)
    raise AttributeError(f"module 'aero' has no attribute {name!r}")
