"""The guest-output oracle: pass, fail and panic patterns in the guest's output."""

from __future__ import annotations

from collections.abc import Iterable

from aero.events import Channel, Kind

from .api import Context, Event, Oracle
from .registry import register

DEFAULT_FAIL = ("Kernel panic", "FAIL", "panic:")
WATCHED = {int(Channel.COM1): "com1", int(Channel.COM2): "com2",
           int(Channel.DEBUGCON): "debugcon"}


def _as_bytes(p: str | bytes) -> bytes:
    return p.encode("latin-1") if isinstance(p, str) else bytes(p)


@register
class GuestOutput(Oracle):
    """The guest's output shows no failure pattern (and, when asked, a pass pattern).

    Invariant: no fail pattern (default "Kernel panic", "FAIL", "panic:") appears in the
    byte stream of COM1, COM2 or the debug console (port E9h), each channel matched on its
    own, across any number of output events. A match is reported at the tick of the output
    byte that completed it. When pass patterns are given, one of them must appear on some
    channel before the trace ends; otherwise the end is reported. Patterns are plain byte
    strings (Latin-1 for text), matched case-sensitively. Source: the guest's own test
    protocol (what it prints on success and failure), as QEMU-based test runners read it.
    """

    name = "guest-output"

    def __init__(self, fail: Iterable[str | bytes] | None = None,
                 passed: Iterable[str | bytes] = ()) -> None:
        self.fail = [_as_bytes(p) for p in (DEFAULT_FAIL if fail is None else fail)]
        self.passed = [_as_bytes(p) for p in passed]
        if any(not p for p in self.fail + self.passed):
            raise ValueError("an output pattern cannot be empty")
        self._keep = max((len(p) for p in self.fail + self.passed), default=1)

    def start(self, ctx: Context) -> None:
        self._tail = {ch: b"" for ch in WATCHED}
        self._pass_seen: tuple[int, bytes] | None = None

    def event(self, ctx: Context, event: Event) -> None:
        if event.kind != Kind.OUTPUT or event.a not in self._tail:
            return
        tail = (self._tail[event.a] + bytes([event.b & 0xFF]))[-self._keep:]
        self._tail[event.a] = tail
        for p in self.fail:
            if tail.endswith(p):
                self.violation(ctx, f"{WATCHED[event.a]} output shows the fail pattern "
                                    f"{p.decode('latin-1')!r}",
                               state={"channel": WATCHED[event.a],
                                      "pattern": p.decode("latin-1"),
                                      "recent_output": tail.decode("latin-1")})
        if self._pass_seen is None:
            for p in self.passed:
                if tail.endswith(p):
                    self._pass_seen = (event.tick, p)

    def end(self, ctx: Context) -> None:
        if self.passed and self._pass_seen is None:
            self.violation(ctx, "the output never showed a pass pattern",
                           state={"pass_patterns": [p.decode("latin-1") for p in self.passed]})
