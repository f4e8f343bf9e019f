"""History queries on a trace: every change of a memory range or a register, every access
to an I/O port, and the instruction that last wrote a byte before a tick.

Invariants:

* Memory addresses are physical (with paging off, as in the bundled guests, linear and
  physical addresses are the same).
* A change is reported at the tick of the instruction that made it (the state before it;
  ``aero seek TRACE TICK`` shows that state), with its EIP and the instruction.
* Memory queries re-execute with the core's write watch armed only the intervals in which
  the watched bytes' pages may have been written. A trace of format version 2 records, for
  every checkpoint interval, the RAM pages written in it (any write, also of the same value:
  the core's dirty marks), so only the checkpoint intervals that wrote a watched page are
  armed, and every write there is seen. The machine gets to such an interval from the last
  keyframe before it, running unarmed at full speed; several intervals after one keyframe
  share one forward run. Cost: one keyframe restore per keyframe interval holding such an
  interval, plus the unarmed run up to the last of them, plus the armed intervals.
* Traces without written-pages frames (format version 1, or a trace whose inputs were
  replaced) fall back to keyframe intervals: those in which the watched bytes differ between
  the interval's two keyframes (compared through the keyframes' per-page hashes first, then
  the page contents), plus the interval the query ends in and the one after the last
  keyframe. Writes inside a skipped keyframe interval that leave the bytes as they were at
  both of its ends are then not reported.
* Register and port queries have no per-interval summary to skip with: they re-execute
  their whole range (registers one instruction at a time).
* A trace without keyframes cannot be queried (QueryError says so).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from aero.traces import codec
from aero.traces.container import Frame, FrameKind
from aero.traces.diff import instruction_at
from aero.traces.replay import TraceContents, restore_keyframe

from aero.machine import (
    GPR_NAMES,
    SEGMENT_NAMES,
    WATCH_IO,
    WATCH_MAX,
    WATCH_PHYS,
    WATCH_READ,
    WATCH_WRITE,
    Machine,
    StopReason,
    WatchHit,
)

__all__ = ["Access", "Change", "QueryError", "QueryStats", "last_write", "memory_history",
           "port_history", "register_history", "REGISTERS"]

REGISTERS = (*GPR_NAMES, "eip", "eflags", *SEGMENT_NAMES, "cr0", "cr2", "cr3", "cr4")
STEP_LIMIT = 50_000_000  # register history: instructions stepped at most


class QueryError(Exception):
    """A query this trace cannot answer (no keyframes, a range outside the trace)."""


@dataclass
class Change:
    """A change of a memory range or register (``old``/``new`` as hex for memory)."""

    tick: int
    eip: int
    insn: str
    what: str
    old: str
    new: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Access:
    """An I/O port access: ``direction`` "in" or "out", the value transferred."""

    tick: int
    eip: int
    insn: str
    port: int
    direction: str
    size: int
    value: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class QueryStats:
    """What a query cost. ``unit`` names the intervals counted: "checkpoint" (a trace with
    written-pages frames) or "keyframe"."""

    intervals: int = 0  # intervals in the range
    executed: int = 0  # of which re-executed with the watch armed
    ticks_executed: int = 0  # ticks run, armed or not
    ticks_armed: int = 0  # of which with the watch armed
    restores: int = 0  # keyframes restored
    unit: str = "keyframe"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class _Keyframe:
    tick: int
    frame: object
    k: codec.Keyframe


@dataclass
class _Window:
    """Ticks [start, end) to run with the watch armed; ``intervals`` summary intervals."""

    start: int
    end: int
    intervals: int = 1


class _Trace:
    """A trace's keyframes with their page tables and written-pages frames, and
    re-execution: a machine that moves forward, restoring a keyframe only to go back or to
    skip ahead."""

    def __init__(self, c: TraceContents) -> None:
        if not c.keyframes:
            raise QueryError(f"{c.trace.path}: the trace has no keyframes, so its history "
                             f"cannot be queried (record it again with keyframes, e.g. "
                             f"--keyframe-interval 100000000)")
        self.c = c
        blocks = c.disk_blocks()
        self.kfs = [_Keyframe(int(f.first_tick), f,
                              codec.decode_keyframe(c.trace.read(f), f, blocks))
                    for f in c.keyframes]
        self.kfs.sort(key=lambda k: k.tick)
        self.pages_frames = list(c.trace.of_kind(FrameKind.PAGES))
        self._page_cache: dict[int, dict[int, bytes]] = {}
        self.machine: Machine | None = None
        self.i = 0  # inputs applied so far (those stamped before the machine's tick)
        self.in_ticks = c.inputs["tick"].astype(np.int64)
        self.stats = QueryStats()
        self.written = self._written_frames()

    def _written_frames(self) -> list[Frame] | None:
        """The written-pages frames when they tile [0, end) with the recorded inputs."""
        if not self.c.recorded_inputs:
            return None
        frames = sorted(self.c.trace.of_kind(FrameKind.WRITTEN), key=lambda f: f.first_tick)
        t = 0
        for f in frames:
            if f.first_tick != t:
                return None
            t = f.last_tick
        return frames if frames and t == self.c.end_tick else None

    def written_windows(self, addr: int, length: int, lo: int, hi: int,
                        merge: bool = True) -> list[_Window]:
        """The checkpoint intervals overlapping [lo, hi) that wrote a page of [addr,
        addr+length) (with ``merge``, adjacent ones merged, not across a keyframe), the last
        cut at hi."""
        assert self.written is not None
        pages = range(addr // codec.PAGE, (addr + length - 1) // codec.PAGE + 1)
        npages = self.c.config.ram_size // codec.PAGE
        kticks = {k.tick for k in self.kfs}
        out: list[_Window] = []
        for f in self.written:
            a, b = int(f.first_tick), int(f.last_tick)
            if b <= lo or a >= hi or a == b:
                continue
            self.stats.intervals += 1
            flags = codec.decode_written(self.c.trace.read(f), f, npages)
            if not any(flags[p] for p in pages if p < npages):
                continue
            if merge and out and out[-1].end == a and a not in kticks:
                out[-1].end = b
                out[-1].intervals += 1
            else:
                out.append(_Window(a, b))
        if out:
            out[-1].end = min(out[-1].end, hi)
        return out

    def keyframe_windows(self, addr: int, length: int, lo: int, hi: int) -> list[_Window]:
        """Keyframe intervals overlapping [lo, hi) in which the bytes may have changed."""
        out = []
        for start, end, nxt in self.intervals(lo, hi):
            run_to = min(end, hi)
            self.stats.intervals += 1
            if nxt is not None and run_to == end and \
                    self.unchanged(self.keyframe_at(start), nxt, addr, length):
                continue
            out.append(_Window(start, run_to))
        return out

    def windows(self, addr: int, length: int, lo: int, hi: int,
                merge: bool = True) -> list[_Window]:
        if self.written is not None:
            self.stats.unit = "checkpoint"
            return self.written_windows(addr, length, lo, hi, merge)
        return self.keyframe_windows(addr, length, lo, hi)

    def keyframe_before(self, tick: int) -> _Keyframe:
        return max((k for k in self.kfs if k.tick <= tick), key=lambda k: k.tick,
                   default=self.kfs[0])

    def intervals(self, lo: int, hi: int) -> list[tuple[int, int, _Keyframe | None]]:
        """Keyframe intervals [start, end) overlapping [lo, hi): (start, end, the next
        keyframe or None when the interval has none at its end)."""
        out = []
        for j, kf in enumerate(self.kfs):
            end = self.kfs[j + 1].tick if j + 1 < len(self.kfs) else self.c.end_tick
            nxt = self.kfs[j + 1] if j + 1 < len(self.kfs) else None
            if kf.tick < hi and end > lo:
                out.append((kf.tick, end, nxt))
        return out

    def keyframe_at(self, tick: int) -> _Keyframe:
        return next(k for k in self.kfs if k.tick == tick)

    def page_bytes(self, kf: _Keyframe, page: int) -> bytes:
        j = int(kf.k.page_frames[page])
        if j not in self._page_cache:
            f = self.pages_frames[j]
            self._page_cache = {j: codec.decode_pages(self.c.trace.read(f), f)}
        return self._page_cache[j][int(kf.k.hashes[page])]

    def range_bytes(self, kf: _Keyframe, addr: int, length: int) -> bytes:
        out = bytearray()
        a = addr
        while a < addr + length:
            page = a // codec.PAGE
            n = min(addr + length - a, codec.PAGE - a % codec.PAGE)
            if page >= len(kf.k.hashes):
                out += b"\xff" * n
            else:
                off = a % codec.PAGE
                out += self.page_bytes(kf, page)[off:off + n]
            a += n
        return bytes(out)

    def unchanged(self, a: _Keyframe, b: _Keyframe, addr: int, length: int) -> bool:
        """Are the bytes [addr, addr+length) equal at keyframes a and b?"""
        pages = range(addr // codec.PAGE, (addr + length - 1) // codec.PAGE + 1)
        n = len(a.k.hashes)
        if all(p >= n or a.k.hashes[p] == b.k.hashes[p] for p in pages):
            return True
        return self.range_bytes(a, addr, length) == self.range_bytes(b, addr, length)

    def goto(self, tick: int) -> Machine:
        """The machine at ``tick``, with no watch armed: run on from where it is when that
        is between the last keyframe at or before ``tick`` and ``tick``, else restore that
        keyframe and run from there."""
        kf = self.keyframe_before(tick)
        m = self.machine
        if m is None or m.ticks > tick or m.ticks < kf.tick:
            m, k = restore_keyframe(self.c, kf.frame, self.machine)
            self.machine = m
            self.i = k.inputs_before
            self.stats.restores += 1
        for _ in self._forward(tick):
            pass
        return m

    def _forward(self, end: int, poll_step: bool = False,
                 armed: bool = False) -> Iterator[tuple[Machine, WatchHit | None]]:
        """Run the machine to ``end`` with the trace's inputs; yields (machine, hit) after
        every watch stop (with ``poll_step``: at the start and after every instruction, hit
        None)."""
        m = self.machine
        assert m is not None
        inputs = self.c.inputs
        kinds, a_col, b_col = inputs["kind"], inputs["a"], inputs["b"]
        in_ticks = self.in_ticks
        n = len(inputs)
        skipped = False
        if poll_step:
            yield m, None
        while m.ticks < end:
            now = m.ticks
            while self.i < n and int(in_ticks[self.i]) == now:
                m.inject(int(kinds[self.i]), int(a_col[self.i]), int(b_col[self.i]))
                self.i += 1
            target = end if self.i >= n else min(end, int(in_ticks[self.i]))
            if poll_step:
                # Halted, nothing changes until a device deadline or an input: skip to
                # it, then step again (the wake-up is the next instruction).
                deadline = m.next_deadline
                if not skipped and m.get_regs().halted and deadline and deadline > now + 1:
                    target = min(target, deadline)
                    skipped = True
                else:
                    target = min(target, now + 1)
                    skipped = False
            stop = m.run(target)
            self.stats.ticks_executed += m.ticks - now
            if armed:
                self.stats.ticks_armed += m.ticks - now
            if stop in (StopReason.EVENTS, StopReason.OUTPUT) or not poll_step or \
                    m.ticks % 4096 == 0:
                m.take_events()
                m.take_output()
            if stop == StopReason.WATCH:
                hit = m.take_watch_hit()
                if hit is not None:
                    yield m, hit
            elif poll_step:
                yield m, None
            if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
                break

    def run(self, start: int, end: int, arm: Callable[[Machine], None],
            poll_step: bool = False) -> Iterator[tuple[Machine, WatchHit | None]]:
        """Re-execute [start, end) with the watches ``arm`` sets (the machine gets to
        ``start`` unarmed); yields (machine, hit) after every watch stop (with
        ``poll_step``: at the start and after every instruction, hit None)."""
        m = self.goto(start)
        arm(m)
        try:
            yield from self._forward(end, poll_step, armed=True)
        finally:
            for slot in range(WATCH_MAX):
                m.set_watch(slot, 0, 0, 0)


_DISASM: dict[tuple[int, int, bytes], str] = {}


def _insn(m: Machine, eip: int) -> str:
    """The instruction at CS:eip now (disassembly is cached by address and bytes)."""
    r = dataclasses.replace(m.get_regs(), eip=eip, halted=False)
    lin = (r.cs.base + eip) & 0xFFFFFFFF
    key = (lin, r.cr0 & 1, m.read(lin, 15) if not r.cr0 & 0x8000_0000 else b"")
    text = _DISASM.get(key) if key[2] else None
    if text is None:
        text = instruction_at(m, r)["text"]
        if key[2] and len(_DISASM) < 65536:
            _DISASM[key] = text
    return text


def _check_range(c: TraceContents, t_from: int, t_to: int | None) -> tuple[int, int]:
    end = c.end_tick if t_to is None else t_to
    if t_from < 0 or end > c.end_tick or t_from > end:
        raise QueryError(f"the range {t_from}..{end} is not within the trace (0..{c.end_tick})")
    return t_from, end


def _watch_write(addr: int, length: int) -> Callable[[Machine], None]:
    return lambda m: m.set_watch(0, addr, length, WATCH_WRITE | WATCH_PHYS)


def memory_history(c: TraceContents, addr: int, length: int = 1, t_from: int = 0,
                   t_to: int | None = None) -> tuple[list[Change], QueryStats]:
    """Every change of the physical bytes [addr, addr+length) by an instruction starting in
    [t_from, t_to)."""
    if length < 1 or addr < 0 or addr + length > c.config.ram_size:
        raise QueryError(f"{addr:#x}+{length} is not within RAM ({c.config.ram_size:#x} bytes)")
    lo, hi = _check_range(c, t_from, t_to)
    t0 = time.perf_counter()
    tr = _Trace(c)
    out: list[Change] = []
    for w in tr.windows(addr, length, lo, hi):
        tr.stats.executed += w.intervals
        cur = tr.goto(w.start).read(addr, length)
        for m, hit in tr.run(w.start, w.end, _watch_write(addr, length)):
            new = m.read(addr, length)
            tick = m.ticks - 1
            if new != cur and tick >= lo:
                out.append(Change(tick, hit.eip, _insn(m, hit.eip), f"{addr:#x}+{length}",
                                  cur.hex(), new.hex()))
            cur = new
    tr.stats.seconds = time.perf_counter() - t0
    return out, tr.stats


def _last_in(tr: _Trace, windows: list[_Window], addr: int,
             before: int) -> tuple[int, int, str, bytes, bytes] | None:
    """The last write of the byte at ``addr`` in ``windows`` (in tick order, run forward in
    one pass): (tick, eip, instruction, old, new), or None."""
    last = None
    for w in windows:
        tr.stats.executed += w.intervals
        m = tr.goto(w.start)
        cur = m.read(addr, 1)
        for m, hit in tr.run(w.start, min(w.end, before), _watch_write(addr, 1)):
            new = m.read(addr, 1)
            last = (m.ticks - 1, hit.eip, _insn(m, hit.eip), cur, new)
            cur = new
    return last


def last_write(c: TraceContents, addr: int, before: int) -> tuple[Change | None, QueryStats]:
    """The last instruction that wrote the physical byte at ``addr`` and started before tick
    ``before`` (None if none did). The candidate intervals (see the module's invariants) are
    searched from the latest back, one keyframe interval at a time: first its latest
    candidate alone, and only if that has no write, one forward pass over its others."""
    if addr < 0 or addr >= c.config.ram_size:
        raise QueryError(f"{addr:#x} is not within RAM ({c.config.ram_size:#x} bytes)")
    _check_range(c, 0, before)
    t0 = time.perf_counter()
    tr = _Trace(c)
    windows = tr.windows(addr, 1, 0, before, merge=False)
    found: Change | None = None
    while windows:
        kf = tr.keyframe_before(windows[-1].start).tick
        group = [w for w in windows if w.start >= kf]
        windows = windows[:len(windows) - len(group)]
        last = _last_in(tr, group[-1:], addr, before)
        if last is None and len(group) > 1:
            last = _last_in(tr, group[:-1], addr, before)
        if last is not None:
            tick, eip, insn, old, new = last
            found = Change(tick, eip, insn, f"{addr:#x}", old.hex(), new.hex())
            break
    tr.stats.seconds = time.perf_counter() - t0
    return found, tr.stats


def port_history(c: TraceContents, port: int, t_from: int = 0,
                 t_to: int | None = None) -> tuple[list[Access], QueryStats]:
    """Every IN and OUT (string forms included) touching ``port`` in [t_from, t_to)."""
    if not 0 <= port <= 0xFFFF:
        raise QueryError(f"port {port:#x} is not within 0-FFFFh")
    lo, hi = _check_range(c, t_from, t_to)
    t0 = time.perf_counter()
    tr = _Trace(c)
    ivs = tr.intervals(lo, hi)
    tr.stats.intervals = len(ivs)
    out: list[Access] = []
    for start, end, _nxt in ivs:
        tr.stats.executed += 1
        for m, hit in tr.run(start, min(end, hi),
                             lambda m: m.set_watch(0, port, 1,
                                                   WATCH_IO | WATCH_READ | WATCH_WRITE)):
            tick = m.ticks - 1
            if tick >= lo:
                out.append(Access(tick, hit.eip, _insn(m, hit.eip), hit.lin,
                                  "in" if hit.kind & WATCH_READ else "out", hit.size,
                                  hit.value))
    tr.stats.seconds = time.perf_counter() - t0
    return out, tr.stats


def register_history(c: TraceContents, name: str, t_from: int = 0,
                     t_to: int | None = None) -> tuple[list[Change], QueryStats]:
    """Every change of register ``name`` by an instruction (or event delivery) starting in
    [t_from, t_to), found by stepping one instruction at a time."""
    name = name.lower()
    if name not in REGISTERS:
        raise QueryError(f"unknown register {name!r}; known: {', '.join(REGISTERS)}")
    lo, hi = _check_range(c, t_from, t_to)
    t0 = time.perf_counter()
    tr = _Trace(c)
    ivs = tr.intervals(lo, hi)
    first = ivs[0][0] if ivs else lo
    if hi - first > STEP_LIMIT:
        raise QueryError(f"a register history steps every instruction: {hi - first:,} ticks "
                         f"from the keyframe at {first:,} is more than {STEP_LIMIT:,}; give a "
                         f"narrower --from/--to")
    tr.stats.intervals = len(ivs)
    out: list[Change] = []
    for start, end, _nxt in ivs:
        tr.stats.executed += 1
        cur: int | None = None
        prev_eip = 0
        prev_tick = start
        prev_halted = False
        for m, _hit in tr.run(start, min(end, hi), lambda m: None, poll_step=True):
            r = m.get_regs()
            v = getattr(r, name)
            v = v.selector if name in SEGMENT_NAMES else int(v)
            if cur is not None and v != cur and prev_tick >= lo:
                insn = "(halted: an interrupt woke it)" if prev_halted else _insn(m, prev_eip)
                out.append(Change(prev_tick, prev_eip, insn, name, f"{cur:#x}", f"{v:#x}"))
            cur = v
            prev_eip = r.eip
            prev_tick = m.ticks
            prev_halted = r.halted
    tr.stats.seconds = time.perf_counter() - t0
    return out, tr.stats
