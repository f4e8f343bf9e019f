"""Time travel on a trace: a machine that moves to any tick, forwards and backwards, and stops
at breakpoints and watchpoints in either direction (the engine behind ``aero replay --gdb``).

Invariants:

* The position is a tick of the trace. The state at tick T is the replay's state after T
  ticks with the inputs stamped T not applied yet (as :func:`aero.traces.replay.seek` gives
  it); the input index is always the number of inputs stamped before T.
* Going backwards is re-execution: restore the nearest saved state at or before the target
  (a snapshot the engine took, or a keyframe of the trace) and run forward. Every forward
  run towards a target lays down snapshots at 10^3, 10^4, ... ticks before it, so repeated
  reverse steps cost at most about a thousand ticks of execution each (as rr does).
* Forward execution verifies every checkpoint fingerprint it crosses: a difference is a
  divergence, reported as a stop, never ignored. It never runs past the trace's end.
* Host watches (breakpoints, watchpoints) are armed only while the engine runs towards a
  stop; moving to a tick (:meth:`TimeTravel.goto`) runs with none armed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aero.traces.replay import ReplayError, TraceContents, guest_image, restore_keyframe

from aero.launch import LaunchError, start_machine
from aero.machine import WATCH_EXEC, WATCH_MAX, WATCH_READ, WATCH_WRITE, Machine, StopReason

__all__ = ["Point", "Stop", "TimeTravel", "TravelError"]

SLICE = 2_000_000  # ticks per forward slice between interrupt polls
SAVE_EVERY = 10_000_000  # a forward continue keeps a snapshot this often (reverse steps)
NEAR = (1_000, 10_000, 100_000, 1_000_000)  # snapshot distances before a run's target


class TravelError(Exception):
    """A request the engine cannot serve (too many watchpoints, a tick outside the trace)."""


@dataclass(frozen=True)
class Point:
    """A breakpoint or watchpoint. kind: "exec" (addr = linear address of an instruction),
    "write", "read" or "access" (linear range [addr, addr + length))."""

    kind: str
    addr: int
    length: int = 1


@dataclass
class Stop:
    """Why the engine stopped. reason: "step" (reached the requested tick), "exec",
    "write", "read", "access" (a point was hit: ``point``, ``addr``), "begin" / "end" (the
    trace's start or end), "divergence" (``detail``), "exit" (the guest stopped: ``detail``),
    "interrupt" (the client asked)."""

    reason: str
    tick: int
    point: Point | None = None
    addr: int = 0
    detail: str = ""


_FLAGS = {"exec": WATCH_EXEC, "write": WATCH_WRITE, "read": WATCH_READ,
          "access": WATCH_READ | WATCH_WRITE}


class TimeTravel:
    """A machine positioned on a trace. Not thread-safe."""

    def __init__(self, contents: TraceContents, *, cache_bytes: int = 512 << 20) -> None:
        self.c = contents
        self.end_tick = contents.end_tick
        self.points: list[Point] = []
        self._in_ticks = contents.inputs["tick"].astype(np.int64)
        self._cp = {int(t): int(f) for t, f in zip(contents.cp_ticks.tolist(),
                                                   contents.cp_fps.tolist(), strict=True)}
        self._cp_ticks = sorted(self._cp)
        self._kf = {int(f.first_tick): f for f in contents.keyframes}
        self._snaps: dict[int, bytes] = {}  # tick -> Machine.snapshot()
        self.m = self._origin()
        self.begin_tick = self.m.ticks
        self._max_snaps = max(4, cache_bytes // max(self.m.snapshot_size, 1))
        self._save(self.m)
        self.i = self._inputs_before(self.m.ticks)
        self.stats = {"restores": 0, "ticks_executed": 0}

    # ---- positioning -----------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.m.ticks

    def _origin(self) -> Machine:
        first = min(self._kf) if self._kf else None
        if first == 0 or (first is not None and not self._can_boot()):
            return restore_keyframe(self.c, self._kf[first])[0]
        try:
            return start_machine(self.c.config, self.c.guest, guest_image(self.c), self.c.images)
        except LaunchError as exc:
            raise ReplayError(str(exc)) from None

    def _can_boot(self) -> bool:
        try:
            guest_image(self.c)
        except ReplayError:
            return False
        return True

    def _inputs_before(self, tick: int) -> int:
        return int(np.searchsorted(self._in_ticks, tick, side="left"))

    def _save(self, m: Machine) -> None:
        if m.ticks in self._snaps:
            return
        self._snaps[m.ticks] = m.snapshot()
        while len(self._snaps) > self._max_snaps:
            # Drop the snapshot farthest from here; the origin and keyframes come back cheaply.
            far = max((t for t in self._snaps if t != self.begin_tick),
                      key=lambda t: abs(t - m.ticks))
            del self._snaps[far]

    def _restore_before(self, tick: int) -> None:
        """Put the machine at the latest saved state at or before ``tick``."""
        snaps = [t for t in self._snaps if t <= tick]
        kfs = [t for t in self._kf if t <= tick]
        best_snap = max(snaps) if snaps else -1
        best_kf = max(kfs) if kfs else -1
        if self.m.ticks <= tick and self.m.ticks >= max(best_snap, best_kf):
            return  # running on from here is the shortest way
        if best_snap >= best_kf:
            self.m.restore(self._snaps[best_snap])
        else:
            restore_keyframe(self.c, self._kf[best_kf], self.m)
            self._save(self.m)
        self.stats["restores"] += 1
        self.i = self._inputs_before(self.m.ticks)

    def goto(self, tick: int) -> Stop:
        """Move to ``tick`` (clamped to the trace), with no watches armed."""
        tick = max(self.begin_tick, min(tick, self.end_tick))
        self._restore_before(tick)
        self._arm(())
        marks = sorted(t for t in (tick - d for d in NEAR) if t > self.m.ticks)
        stop = None
        for t in [*marks, tick]:
            stop = self._forward(t)
            if stop.reason != "step":
                return stop
            if t != tick:
                self._save(self.m)
        assert stop is not None
        return stop

    # ---- watches ---------------------------------------------------------------------
    def set_points(self, points: list[Point]) -> None:
        if len(points) > WATCH_MAX:
            raise TravelError(f"at most {WATCH_MAX} breakpoints and watchpoints together")
        self.points = list(points)

    def _arm(self, points) -> None:
        for slot in range(WATCH_MAX):
            self.m.set_watch(slot, 0, 0, 0)
        for slot, p in enumerate(points):
            self.m.set_watch(slot, p.addr, max(p.length, 1), _FLAGS[p.kind])

    def _match(self, hit: tuple[int, int, int, int]) -> tuple[Point | None, int]:
        lin, size, kind = hit.lin, hit.size, hit.kind
        for p in self.points:
            if not _FLAGS[p.kind] & kind:
                continue
            if kind == WATCH_EXEC:
                if p.addr == lin:
                    return p, lin
            elif lin < p.addr + p.length and p.addr < lin + size:
                return p, max(lin, p.addr)
        return None, lin

    # ---- forward execution -------------------------------------------------------------
    def _forward(self, target: int, *, watch: bool = False,
                 poll: Callable[[], bool] | None = None, save_every: int = 0) -> Stop:
        """Run to ``target`` (at most the trace's end); with ``watch``, stop at the first hit
        of an armed point. ``poll`` is asked between slices whether to stop; with
        ``save_every``, a snapshot is kept every that many ticks."""
        m = self.m
        saved = m.ticks
        target = min(target, self.end_tick)
        inputs = self.c.inputs
        n = len(inputs)
        while m.ticks < target:
            now = m.ticks
            while self.i < n and int(self._in_ticks[self.i]) == now:
                m.inject(int(inputs["kind"][self.i]), int(inputs["a"][self.i]),
                         int(inputs["b"][self.i]))
                self.i += 1
            nxt = min(target, now + SLICE)
            if self.i < n:
                nxt = min(nxt, int(self._in_ticks[self.i]))
            k = bisect.bisect_right(self._cp_ticks, now)
            if k < len(self._cp_ticks):
                nxt = min(nxt, self._cp_ticks[k])
            stop = m.run(nxt)
            self.stats["ticks_executed"] += m.ticks - now
            m.take_events()
            m.take_output()
            if m.ticks in self._cp and m.ticks > now and m.fingerprint() != self._cp[m.ticks]:
                return Stop("divergence", m.ticks, detail=(
                    f"the state at tick {m.ticks} does not match the trace's checkpoint "
                    f"fingerprint {self._cp[m.ticks]:016x}"))
            if stop == StopReason.WATCH:
                hit = m.take_watch_hit()
                if hit is not None and watch:
                    p, addr = self._match(hit)
                    if p is not None:
                        return Stop(p.kind, m.ticks, p, addr)
                if hit is not None and hit.kind == WATCH_EXEC:
                    m.watch_resume()
                continue
            if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
                if m.ticks < self.end_tick:
                    return Stop("divergence", m.ticks, detail=(
                        f"the guest stopped ({stop.name.lower()}) at tick {m.ticks}; the "
                        f"recording ran to tick {self.end_tick}"))
                break
            if save_every and m.ticks - saved >= save_every and m.ticks < target:
                self._save(m)
                saved = m.ticks
            if poll is not None and m.ticks < target and poll():
                return Stop("interrupt", m.ticks)
        if m.ticks >= self.end_tick:
            return Stop("end", m.ticks, detail=f"the end of the trace (tick {self.end_tick})")
        return Stop("step", m.ticks)

    def step(self) -> Stop:
        """One instruction forward, stopping on a watchpoint it hits."""
        if self.tick >= self.end_tick:
            return Stop("end", self.tick, detail=f"the end of the trace (tick {self.end_tick})")
        self._arm([p for p in self.points if p.kind != "exec"])
        stop = self._forward(self.tick + 1, watch=True)
        # A halt is one step: on to the instruction that ends it (the wake-up's delivery).
        skipped = False
        while stop.reason == "step" and self.m.get_regs().halted:
            # Skip to the next deadline or input, then one tick (the wake-up, if any).
            target = self.tick + 1
            if not skipped:
                deadline = self.m.next_deadline
                nxt = self._in_ticks[self.i] if self.i < len(self._in_ticks) else self.end_tick
                target = max(target, min(int(nxt), deadline if deadline is not None
                                         else self.end_tick))
            skipped = not skipped
            stop = self._forward(target, watch=True)
        self._arm(())
        return stop

    def cont(self, poll: Callable[[], bool] | None = None) -> Stop:
        """Run forward to the next breakpoint or watchpoint hit, the end, or an interrupt."""
        self._arm(self.points)
        self.m.watch_resume()
        stop = self._forward(self.end_tick, watch=True, poll=poll, save_every=SAVE_EVERY)
        self._arm(())
        return stop

    # ---- backward execution -------------------------------------------------------------
    def reverse_step(self) -> Stop:
        """One instruction back. A halt belongs to its HLT: stepping back into one lands on
        the HLT (as stepping forward from a HLT lands on the instruction that ends the
        halt), not on each of its idle ticks."""
        if self.tick <= self.begin_tick:
            return Stop("begin", self.tick, detail="the start of the trace")
        stop = self.goto(self.tick - 1)
        r = self.m.get_regs()
        if stop.reason != "step" or not r.halted:
            return stop
        hlt = (r.cs.base + r.eip - 1) & 0xFFFFFFFF
        if self.read_linear(hlt, 1) != b"\xf4":
            return stop
        saved = self.points
        self.points = [Point("exec", hlt)]
        try:
            found = self._last_hit(self.tick)
        finally:
            self.points = saved
        if found is None or found == "interrupt":
            return stop
        return self.goto(found[0])

    def _bases(self) -> list[int]:
        return sorted(set(self._snaps) | set(self._kf) | {self.begin_tick})

    def reverse_cont(self, poll: Callable[[], bool] | None = None) -> Stop:
        """Go back to the latest point hit before the current tick: the tick where a
        breakpoint's instruction is about to execute, or the tick before the instruction
        that made a watched access. Without one, stop at the start of the trace."""
        last = self._last_hit(self.tick, poll)
        if last == "interrupt":
            return Stop("interrupt", self.tick)
        if last is not None:
            tick, p, addr = last
            stop = self.goto(tick)
            if stop.reason not in ("step", "end"):
                return stop
            return Stop(p.kind, tick, p, addr)
        self.goto(self.begin_tick)
        return Stop("begin", self.tick, detail="the start of the trace")

    def _last_hit(self, hi: int, poll: Callable[[], bool] | None = None):
        """The last hit of the points before tick ``hi``, searching the intervals between
        saved states from the latest back: (tick, point, address), None, or "interrupt" when
        ``poll`` said so (the machine is then at the start of the last interval searched)."""
        while hi > self.begin_tick:
            lo = max(t for t in self._bases() if t < hi)
            last = self._scan(lo, hi)
            if last is not None:
                return last
            hi = lo
            if poll is not None and poll():
                self.goto(hi)
                return "interrupt"
        return None

    def _scan(self, lo: int, hi: int) -> tuple[int, Point, int] | None:
        """The last hit in [lo, hi): (tick before the access or at the breakpoint, point,
        address)."""
        self.goto(lo)
        self._arm(self.points)
        last = None
        while self.tick < hi:
            stop = self._forward(hi, watch=True)
            if stop.point is None:
                break
            when = stop.tick if stop.reason == "exec" else stop.tick - 1
            if when < hi:
                last = (when, stop.point, stop.addr)
            if stop.reason == "exec":
                self.m.watch_resume()
        self._arm(())
        if self.tick >= lo:
            self._save(self.m)
        return last

    # ---- memory --------------------------------------------------------------------------
    def linear_to_phys(self, lin: int) -> int | None:
        """Translate a linear address with the current page tables (no accessed/dirty bits
        set, no fault); None when not mapped."""
        r = self.m.get_regs()
        if not r.cr0 & 0x8000_0000:
            return lin & 0xFFFF_FFFF
        pde_addr = (r.cr3 & ~0xFFF) | ((lin >> 22) << 2)
        pde = int.from_bytes(self.m.read(pde_addr, 4), "little")
        if not pde & 1:
            return None
        if pde & 0x80 and r.cr4 & 0x10:
            return (pde & 0xFFC0_0000) | (lin & 0x3F_FFFF)
        pte_addr = (pde & ~0xFFF) | (((lin >> 12) & 0x3FF) << 2)
        pte = int.from_bytes(self.m.read(pte_addr, 4), "little")
        if not pte & 1:
            return None
        return (pte & ~0xFFF) | (lin & 0xFFF)

    def read_linear(self, lin: int, length: int) -> bytes:
        """Bytes at a linear address, up to the first unmapped page."""
        out = bytearray()
        while length > 0:
            phys = self.linear_to_phys(lin)
            if phys is None:
                break
            n = min(length, 0x1000 - (lin & 0xFFF))
            out += self.m.read(phys, n)
            lin, length = lin + n, length - n
        return bytes(out)
