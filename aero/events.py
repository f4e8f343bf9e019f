"""Event kinds and their encoding: the vocabulary of the event log and of trace files.

Every event is ``(tick, kind, a, b)``: the guest clock when it happened, its kind, and two
arguments whose meaning the kind gives. Kinds below ``0x40`` are *inputs*, the only
nondeterminism a run has (injected through :meth:`aero.machine.Machine.inject`); kinds from
``0x40`` up are produced by the core itself and are logged so that a replay verifies them.

Invariants:

* The numeric values are part of the trace format (``EVENTS_VERSION`` guards them) and come
  from the C core's ``api.h``, the single definition.
* :data:`EVENT_DTYPE` is the in-memory layout of the core's ``aero_event`` and the column
  layout of event frames in trace files.
"""

from __future__ import annotations

import enum

import numpy as np

from aero._core_loader import load_core

__all__ = ["Channel", "Device", "EVENTS_VERSION", "EVENT_DTYPE", "INPUT_KINDS", "INPUT_LIMIT",
           "Kind", "ResetCause", "describe", "kind_name", "split"]

_ffi, _lib = load_core()

EVENTS_VERSION = 1

EVENT_DTYPE = np.dtype([("tick", "<u8"), ("kind", "<u4"), ("a", "<u4"), ("b", "<u8")])
assert EVENT_DTYPE.itemsize == _ffi.sizeof("aero_event")

INPUT_LIMIT = 0x40  # kinds below are inputs


class Kind(enum.IntEnum):
    """Event kinds (``a`` and ``b`` as documented per member)."""

    SERIAL_RX = _lib.AERO_EV_SERIAL_RX  # a = UART (0 COM1, 1 COM2), b = byte received
    KEY = _lib.AERO_EV_KEY  # a = set-2 code (E0xxh extended, Pause E077h, PrtSc E07Ch), b = 1/0
    RTC_TIME = _lib.AERO_EV_RTC_TIME  # b = wall-clock time at this tick (Unix seconds)
    RESET = _lib.AERO_EV_RESET  # the reset button
    NMI = _lib.AERO_EV_NMI  # an external NMI
    INTR = _lib.AERO_EV_INTR  # a = vector raised directly on INTR
    INTA = _lib.AERO_EV_INTA  # a = vector the CPU acknowledged
    IRQ = _lib.AERO_EV_IRQ  # a = ISA IRQ line, b = new level
    TIMER = _lib.AERO_EV_TIMER  # a = device whose deadline fired (Device)
    OUTPUT = _lib.AERO_EV_OUTPUT  # a = channel (Channel), b = byte
    EXIT = _lib.AERO_EV_EXIT  # b = exit status ((value << 1) | 1)
    GUEST_RESET = _lib.AERO_EV_GUEST_RESET  # a = cause (ResetCause)
    SHUTDOWN = _lib.AERO_EV_SHUTDOWN  # triple fault: the CPU stopped

    @property
    def is_input(self) -> bool:
        return int(self) < INPUT_LIMIT


class Channel(enum.IntEnum):
    """Guest output channels (``OUTPUT`` events)."""

    DEBUGCON = _lib.AERO_CH_DEBUGCON
    COM1 = _lib.AERO_CH_COM1
    COM2 = _lib.AERO_CH_COM2
    POST = _lib.AERO_CH_POST


class ResetCause(enum.IntEnum):
    BUTTON = _lib.AERO_RESET_BUTTON
    KBC = _lib.AERO_RESET_KBC
    PORT92 = _lib.AERO_RESET_PORT92
    TRIPLE_FAULT = _lib.AERO_RESET_TRIPLE


class Device(enum.IntEnum):
    """Devices named by ``TIMER`` events (platform.h AERO_DEV_*)."""

    PIT = 1
    UART0 = 2
    UART1 = 3
    RTC = 4
    KBC = 5


INPUT_KINDS = frozenset(k for k in Kind if k.is_input)


def kind_name(kind: int) -> str:
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"kind-{kind:#x}"


def describe(tick: int, kind: int, a: int, b: int) -> str:
    """One event as a short human-readable line."""
    name = kind_name(kind)
    if kind == Kind.OUTPUT:
        ch = Channel(a).name.lower() if a in Channel._value2member_map_ else str(a)
        return f"{tick:>14} {name} {ch} {b:#04x} {chr(b)!r}"
    if kind == Kind.SERIAL_RX:
        return f"{tick:>14} {name} com{a + 1} {b:#04x} {chr(b & 0xFF)!r}"
    if kind == Kind.KEY:
        return f"{tick:>14} {name} {a:#06x} {'down' if b else 'up'}"
    if kind == Kind.TIMER:
        dev = Device(a).name.lower() if a in Device._value2member_map_ else str(a)
        return f"{tick:>14} {name} {dev}"
    return f"{tick:>14} {name} a={a:#x} b={b:#x}"


def split(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, device-produced events) of an event array, each in log order."""
    is_input = events["kind"] < INPUT_LIMIT
    return events[is_input], events[~is_input]
