"""The liveness oracle: the guest neither halts for good before the trace ends nor stops
making progress for too long."""

from __future__ import annotations

import numpy as np

from aero.events import INPUT_LIMIT, Kind

from .api import Context, Event, Oracle
from .registry import register

EFLAGS_IF = 1 << 9
DEFAULT_STALL_SECONDS = 30
DEFAULT_IP_WINDOW = 256


@register
class Liveness(Oracle):
    """The guest does not halt for good before the trace ends, nor stall for N ticks.

    Two rules, checked at every checkpoint and at the end:

    * Dead halt: the CPU is halted and nothing left in the trace can wake it, i.e. either
      EFLAGS.IF = 0 and no NMI or reset input comes at or after this tick (SDM Vol. 3 §6.3:
      only NMI, SMI, INIT or reset wake a HLT with interrupts disabled; aero has no SMI or
      INIT source), or no device deadline is armed, no raised interrupt is waiting and no
      input at all comes at or after this tick (nothing can raise an interrupt any more).
      Reported at the first checkpoint (or the end) where it is seen, which can be up to a
      checkpoint interval after the HLT. A dead halt that is the trace's final state is how
      a guest may finish (a recording stops there with ``halt`` or ``idle``) and is allowed
      unless ``allow_final_halt=False``.
    * Stall: for ``stall_ticks`` ticks (default 30 guest seconds) the guest received no input,
      wrote no output byte (any channel, POST codes included), and the linear instruction
      address CS.base + EIP sampled at every checkpoint stayed within one window of
      ``ip_window`` bytes (default 256). Device events (timer interrupts, acknowledgements)
      do not count as progress: a guest spinning with its timer running is stalled. The
      window restarts on progress (an input, an output byte, or a sample outside the
      window); a stall is reported once, at the checkpoint where it reaches ``stall_ticks``,
      with the tick progress was last seen.

    Source: the guest's contract with its test harness (finish by exiting, keep talking),
    not an architectural rule.
    """

    name = "liveness"

    def __init__(self, stall_ticks: int | None = None, ip_window: int = DEFAULT_IP_WINDOW,
                 allow_final_halt: bool = True) -> None:
        if stall_ticks is not None and stall_ticks <= 0:
            raise ValueError("stall_ticks must be positive")
        if ip_window <= 0:
            raise ValueError("ip_window must be positive")
        self.stall_ticks = stall_ticks
        self.ip_window = ip_window
        self.allow_final_halt = allow_final_halt

    def start(self, ctx: Context) -> None:
        if self.stall_ticks is None:
            self.stall_ticks = DEFAULT_STALL_SECONDS * ctx.machine.config.tick_hz
        self._since = ctx.tick
        self._window: tuple[int, int] | None = None
        self._stall_reported = False
        self._dead_reported = False
        inputs = ctx.contents.inputs
        self._input_ticks = inputs["tick"].astype(np.int64)
        wake = (inputs["kind"] == Kind.NMI) | (inputs["kind"] == Kind.RESET)
        self._wake_ticks = inputs["tick"][wake].astype(np.int64)

    def event(self, ctx: Context, event: Event) -> None:
        if event.kind < INPUT_LIMIT or event.kind == Kind.OUTPUT:
            self._progress(event.tick)

    def _progress(self, tick: int) -> None:
        self._since = tick
        self._window = None
        self._stall_reported = False

    def _any_at_or_after(self, ticks: np.ndarray, tick: int) -> bool:
        return bool(len(ticks)) and int(ticks[-1]) >= tick

    def _sample(self, ctx: Context) -> None:
        m = ctx.machine
        r = m.get_regs()
        now = ctx.tick
        final = now >= ctx.end_tick
        if r.halted and not self._dead_reported and not (final and self.allow_final_halt):
            why = None
            if not r.eflags & EFLAGS_IF:
                if not self._any_at_or_after(self._wake_ticks, now):
                    why = "interrupts are disabled (IF = 0) and no NMI or reset input follows"
            elif m.next_deadline is None and m.pending_interrupts == 0 and \
                    not self._any_at_or_after(self._input_ticks, now):
                why = "no device timer is armed and no input follows"
            if why is not None:
                self._dead_reported = True
                self.violation(ctx, f"the CPU is halted for good: {why}",
                               state={"eip": r.eip, "cs": r.cs.selector, "eflags": r.eflags,
                                      "next_deadline": m.next_deadline,
                                      "end_tick": ctx.end_tick})
        ip = (r.cs.base + r.eip) & 0xFFFFFFFF
        if self._window is None:
            self._window = (ip, ip)
        else:
            lo, hi = min(self._window[0], ip), max(self._window[1], ip)
            if hi - lo >= self.ip_window:
                self._progress(now)
                self._window = (ip, ip)
            else:
                self._window = (lo, hi)
        assert self.stall_ticks is not None
        if not self._stall_reported and now - self._since >= self.stall_ticks:
            self._stall_reported = True
            lo, hi = self._window
            self.violation(ctx, f"no progress for {now - self._since:,} ticks (no input, no "
                                f"output, instruction address within {lo:#x}..{hi:#x})",
                           state={"since": self._since, "ticks": now - self._since,
                                  "ip_low": lo, "ip_high": hi, "halted": r.halted,
                                  "stall_ticks": self.stall_ticks})

    def checkpoint(self, ctx: Context) -> None:
        self._sample(ctx)

    def end(self, ctx: Context) -> None:
        self._sample(ctx)
