"""History queries on a trace: every change of a memory range or a register, every access
to an I/O port, and the instruction that last wrote a byte before a tick.

Invariants:

* Memory addresses are physical (with paging off, as in the bundled guests, linear and
  physical addresses are the same).
* A change is reported at the tick of the instruction that made it (the state before it;
  ``aero seek TRACE TICK`` shows that state), with its EIP and the instruction.
* Memory queries re-execute only keyframe intervals in which the watched bytes differ
  between the interval's two keyframes (compared through the keyframes' per-page hashes
  first, then the page contents), plus the interval the query ends in and the one after the
  last keyframe, which have no keyframe at their end. Writes inside a skipped interval
  that leave the bytes as they were at both of its ends (a value written and restored, or
  the same value rewritten) are therefore not reported. Cost: one keyframe restore plus one
  interval of execution per interval re-executed.
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
from aero.traces.container import FrameKind
from aero.traces.diff import instruction_at
from aero.traces.replay import TraceContents, restore_keyframe

from aero.machine import (
    GPR_NAMES,
    SEGMENT_NAMES,
    WATCH_IO,
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
    intervals: int = 0  # keyframe intervals in the range
    executed: int = 0  # of which re-executed
    ticks_executed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class _Keyframe:
    tick: int
    frame: object
    k: codec.Keyframe


class _Trace:
    """A trace's keyframes with their page tables, and re-execution between ticks."""

    def __init__(self, c: TraceContents) -> None:
        if not c.keyframes:
            raise QueryError(f"{c.trace.path}: the trace has no keyframes, so its history "
                             f"cannot be queried (record it again with keyframes, e.g. "
                             f"--keyframe-interval 100000000)")
        self.c = c
        self.kfs = [_Keyframe(int(f.first_tick), f,
                              codec.decode_keyframe(c.trace.read(f), f)) for f in c.keyframes]
        self.kfs.sort(key=lambda k: k.tick)
        self.pages_frames = list(c.trace.of_kind(FrameKind.PAGES))
        self._page_cache: dict[int, dict[int, bytes]] = {}
        self.machine: Machine | None = None
        self.in_ticks = c.inputs["tick"].astype(np.int64)
        self.stats = QueryStats()

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

    def run(self, start: int, end: int, arm: Callable[[Machine], None],
            poll_step: bool = False) -> Iterator[tuple[Machine, WatchHit | None]]:
        """Re-execute [start, end) from the keyframe at ``start`` with the watches ``arm``
        sets; yields (machine, hit) after every watch stop (with ``poll_step``: at the start
        and after every instruction, hit None)."""
        kf = self.keyframe_at(start)
        m, k = restore_keyframe(self.c, kf.frame, self.machine)
        self.machine = m
        self.stats.executed += 1
        arm(m)
        inputs = self.c.inputs
        i = k.inputs_before
        n = len(inputs)
        skipped = False
        if poll_step:
            yield m, None
        try:
            while m.ticks < end:
                now = m.ticks
                while i < n and int(self.in_ticks[i]) == now:
                    m.inject(int(inputs["kind"][i]), int(inputs["a"][i]), int(inputs["b"][i]))
                    i += 1
                target = end if i >= n else min(end, int(self.in_ticks[i]))
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
                elif stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
                    break
                if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT) and \
                        poll_step:
                    break
        finally:
            for slot in range(4):
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
    ivs = tr.intervals(lo, hi)
    tr.stats.intervals = len(ivs)
    for start, end, nxt in ivs:
        run_to = min(end, hi)
        if nxt is not None and run_to == end and \
                tr.unchanged(tr.keyframe_at(start), nxt, addr, length):
            continue
        cur: bytes | None = None
        for m, hit in tr.run(start, run_to,
                             lambda m: m.set_watch(0, addr, length, WATCH_WRITE | WATCH_PHYS)):
            if cur is None:
                cur = tr.range_bytes(tr.keyframe_at(start), addr, length)
            new = m.read(addr, length)
            tick = m.ticks - 1
            if new != cur and tick >= lo:
                out.append(Change(tick, hit.eip, _insn(m, hit.eip), f"{addr:#x}+{length}",
                                  cur.hex(), new.hex()))
            cur = new
    tr.stats.seconds = time.perf_counter() - t0
    return out, tr.stats


def last_write(c: TraceContents, addr: int, before: int) -> tuple[Change | None, QueryStats]:
    """The last instruction that wrote the physical byte at ``addr`` and started before tick
    ``before`` (None if none did), searching keyframe intervals from the latest back. As for
    every memory query, intervals where the byte is the same at both ends are skipped."""
    if addr < 0 or addr >= c.config.ram_size:
        raise QueryError(f"{addr:#x} is not within RAM ({c.config.ram_size:#x} bytes)")
    _check_range(c, 0, before)
    t0 = time.perf_counter()
    tr = _Trace(c)
    ivs = tr.intervals(0, before)
    tr.stats.intervals = len(ivs)
    found: Change | None = None
    for start, end, nxt in reversed(ivs):
        run_to = min(end, before)
        if nxt is not None and run_to == end and \
                tr.unchanged(tr.keyframe_at(start), nxt, addr, 1):
            continue
        cur = tr.range_bytes(tr.keyframe_at(start), addr, 1)
        last: tuple[int, int, bytes, bytes] | None = None
        m = None
        for m, hit in tr.run(start, run_to,
                             lambda m: m.set_watch(0, addr, 1, WATCH_WRITE | WATCH_PHYS)):
            new = m.read(addr, 1)
            last = (m.ticks - 1, hit.eip, cur, new)
            cur = new
        if last is not None and m is not None:
            tick, eip, old, new = last
            found = Change(tick, eip, _insn(m, eip), f"{addr:#x}", old.hex(), new.hex())
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
