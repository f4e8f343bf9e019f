"""The oracle API: what an invariant oracle is, what it sees, and what it reports.

An :class:`Oracle` watches one replay through four hooks, all optional:

* ``start(ctx)``: once, with the machine at tick 0 (the guest loaded, no input applied).
* ``event(ctx, event)``: for every event the replay logs (inputs, device events, output
  bytes), in log order. ``ctx.tick`` is the event's tick; the machine itself is already at
  the end of the slice that produced the event (at most one input or checkpoint later).
* ``checkpoint(ctx)``: at every checkpoint of the trace, after its fingerprint matched; the
  machine is exactly at ``ctx.tick``.
* ``end(ctx)``: once, where the replay stopped; ``ctx.result`` holds the replay's result.

and one opt-in hook: ``instruction(ctx)``, called after every guest instruction when the
class sets ``per_instruction = True``. That mode is slow: the replay then runs one tick per
call into the core and makes one Python call per guest instruction (expect well under a
million instructions per second instead of hundreds of millions).

A hook reports a problem with :meth:`Oracle.violation`; the :class:`Violation` carries the
oracle's name, the tick, a message, the relevant state as a dict and ``chain``: the events
that led there (the last ``ctx.chain_length`` events logged at or before the tick).

Invariant: hooks only read the machine (registers, RAM, device state); an oracle that
changed it would make the replay diverge from its trace.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from aero.events import describe, kind_name

if TYPE_CHECKING:
    from aero.traces.replay import ReplayResult, TraceContents

    from aero.machine import Machine, Regs

DEFAULT_CHAIN_LENGTH = 16


class OracleError(Exception):
    """An oracle that cannot be loaded or that failed while running (one line for the user)."""


class Event(NamedTuple):
    """One logged event (kinds and arguments: :mod:`aero.events`)."""

    tick: int
    kind: int
    a: int
    b: int

    def to_dict(self) -> dict[str, Any]:
        return {"tick": self.tick, "kind": kind_name(self.kind), "a": self.a, "b": self.b,
                "text": describe(self.tick, self.kind, self.a, self.b).strip()}


@dataclass
class Violation:
    """One broken invariant: which oracle, when, what, the state that shows it, and the
    events that led there (oldest first)."""

    oracle: str
    tick: int
    message: str
    state: dict[str, Any] = field(default_factory=dict)
    chain: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"oracle": self.oracle, "tick": self.tick, "message": self.message,
                "state": self.state, "chain": [e.to_dict() for e in self.chain]}


class Context:
    """What the hooks see: the machine, the trace, the current tick, the recent events,
    and (at the end) the replay's result."""

    def __init__(self, machine: Machine, contents: TraceContents, *,
                 chain_length: int = DEFAULT_CHAIN_LENGTH) -> None:
        self.machine = machine
        self.contents = contents
        self.tick = machine.ticks
        self.chain_length = chain_length
        self.recent: deque[Event] = deque(maxlen=max(chain_length, 1))
        self.result: ReplayResult | None = None
        self.violations: list[Violation] = []

    @property
    def end_tick(self) -> int:
        """The tick at which the trace ends."""
        return self.contents.end_tick

    def regs(self) -> Regs:
        return self.machine.get_regs()

    def devices(self) -> dict[str, dict[str, Any]]:
        """The decoded device state (:func:`aero.devstate.decode`); empty without devices."""
        from aero import devstate

        return devstate.decode(self.machine.devices_state_bytes())

    def chain(self, tick: int) -> list[Event]:
        """The most recent events logged at or before ``tick``, oldest first."""
        return [e for e in self.recent if e.tick <= tick][-self.chain_length:]


class Oracle:
    """Base class of invariant oracles. Subclasses set ``name`` (the registry key and the
    ``--oracle`` spelling) and document their invariant in the class docstring, whose first
    line is the description ``aero check --list`` shows."""

    name: ClassVar[str] = ""
    per_instruction: ClassVar[bool] = False  # True: instruction() after every instruction (slow)

    @classmethod
    def description(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip().replace("``", "") if doc else ""

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def start(self, ctx: Context) -> None:
        """Once, at tick 0."""

    def event(self, ctx: Context, event: Event) -> None:
        """Every logged event, in log order."""

    def checkpoint(self, ctx: Context) -> None:
        """Every verified checkpoint."""

    def instruction(self, ctx: Context) -> None:
        """After every instruction; only when ``per_instruction`` is True (slow)."""

    def end(self, ctx: Context) -> None:
        """Once, where the replay stopped (``ctx.result`` is set)."""

    def violation(self, ctx: Context, message: str, *, tick: int | None = None,
                  state: dict[str, Any] | None = None) -> Violation:
        """Report a violation at ``tick`` (default: ``ctx.tick``)."""
        at = ctx.tick if tick is None else tick
        v = Violation(self.label, at, message, dict(state or {}), ctx.chain(at))
        ctx.violations.append(v)
        return v
