"""Exports of a trace for external viewers: a Perfetto timeline and a Tenet instruction trace.

* :func:`perfetto_events` turns a trace's streams (inputs, device events, guest output,
  checkpoints) and optional oracle violations into Chrome trace-event JSON, which
  Perfetto's UI (ui.perfetto.dev) and chrome://tracing open. It reads the trace only: no
  execution. Timestamps are guest time, ``tick / tick_hz`` seconds, in microseconds.
* :func:`write_tenet` re-executes a tick range (seek to its start through keyframes, then
  one tick at a time with the trace's inputs) and writes one line per instruction in the
  text format of the Tenet trace explorer: the registers that changed since the previous
  line, ``eip``, and the memory the previous instruction read and wrote (``mr=``/``mw=``),
  which the core's watch logs access by access with the value read or written.

Invariants: both are pure functions of the trace (and, for Tenet, the guest image); the
output for a given trace and arguments is byte-for-byte the same on every run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from aero.traces import codec
from aero.traces.container import FrameKind, TraceError
from aero.traces.replay import (
    Replayer,
    ReplayError,
    ReplayResult,
    TraceContents,
    inject,
    seek_stream,
)

from aero.events import Channel, Device, Kind, ResetCause
from aero.machine import (
    WATCH_LOG,
    WATCH_READ,
    WATCH_WRITE,
    Access,
    Machine,
    StopReason,
    text_screen,
)

TENET_LIMIT = 5_000_000  # ticks a Tenet export may cover without --force

# Process ids of the timeline's groups of tracks (Perfetto shows them in pid order).
PID_INPUTS, PID_INTERRUPTS, PID_OUTPUT, PID_TIMERS, PID_MACHINE, PID_ORACLES = range(1, 7)

# Input tracks (thread ids inside PID_INPUTS).
_INPUT_TRACKS = {"com1 rx": 1, "com2 rx": 2, "keys": 3, "rtc time": 4, "reset / nmi / intr": 5}
_INTA_TID = 100  # inside PID_INTERRUPTS; IRQ lines are counter tracks of the same process
_MACHINE_TRACKS = {"checkpoints": 1, "guest resets": 2, "stop": 3}
_SCREEN_TID = 4  # inside PID_MACHINE, only in an export that carries screens
SCREEN_MODES = ("none", "keyframes", "checkpoints")
_LINE_TEXT = 200  # characters of an output line kept in a slice's name


class ExportError(Exception):
    """An export that cannot be produced (bad range, bad violations file)."""


@dataclass(frozen=True)
class Violation:
    """An oracle violation to mark on the timeline."""

    tick: int
    message: str
    oracle: str = "oracle"


def load_violations(path: Path) -> list[Violation]:
    """The ``violations`` list of ``aero check --json`` output (or a bare JSON list): objects
    with at least ``tick`` and ``message`` (``oracle`` optional)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ExportError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ExportError(f"{path}: not JSON ({exc})") from None
    items = data.get("violations") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ExportError(f"{path}: no 'violations' list")
    out = []
    for i, v in enumerate(items):
        if not isinstance(v, dict) or not isinstance(v.get("tick"), int) or v["tick"] < 0 \
                or "message" not in v:
            raise ExportError(f"{path}: violation {i} needs an integer 'tick' and a 'message'")
        out.append(Violation(int(v["tick"]), str(v["message"]), str(v.get("oracle", "oracle"))))
    return out


# ---- Perfetto / Chrome trace-event JSON -----------------------------------------------------

def _channel_name(ch: int) -> str:
    return Channel(ch).name.lower() if ch in Channel._value2member_map_ else f"channel {ch}"


def _device_name(dev: int) -> str:
    return Device(dev).name.lower() if dev in Device._value2member_map_ else f"device {dev}"


def _meta(pid: int, name: str, tid: int | None = None, sort: int | None = None) -> list[dict]:
    if tid is None:
        ev = [{"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": name}}]
        if sort is not None:
            ev.append({"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
                       "args": {"sort_index": sort}})
        return ev
    return [{"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}}]


def _text(data: bytes) -> str:
    return data.decode("latin-1").translate({c: "." for c in (*range(32), 127)})


def perfetto_events(c: TraceContents, violations: Iterable[Violation] = (),
                    screens: str = "keyframes") -> list[dict]:
    """The trace as a list of trace events (metadata events first, then by track). For
    large traces use :func:`iter_perfetto`, which holds one frame at a time."""
    return list(iter_perfetto(c, violations, screens))


# ---- screens --------------------------------------------------------------------------------

def keyframe_screens(c: TraceContents) -> Iterator[tuple[int, list[str]]]:
    """The VGA text screen at every keyframe, read from the keyframe's device state and the
    RAM pages of the text window (no execution): (tick, lines)."""
    pages_frames = c.frames(FrameKind.PAGES)
    for f in c.keyframes:
        k = codec.decode_keyframe(c.trace.read(f), f, c.disk_blocks())
        decoded: dict[int, dict[int, bytes]] = {}

        def page(i: int, k: codec.Keyframe = k,
                 decoded: dict[int, dict[int, bytes]] = decoded) -> bytes:
            if not 0 <= i < len(k.hashes):
                return bytes(codec.PAGE)
            j = int(k.page_frames[i])
            if j >= len(pages_frames):
                raise TraceError(f"keyframe at tick {k.tick} names a missing pages frame")
            if j not in decoded:
                decoded[j] = codec.decode_pages(c.trace.read(pages_frames[j]), pages_frames[j])
            data = decoded[j].get(int(k.hashes[i]))
            if data is None:
                raise TraceError(f"keyframe at tick {k.tick}: page {i} is missing")
            return bytes(data)

        def read(addr: int, n: int, page: Callable[[int], bytes] = page) -> bytes:
            first, last = addr // codec.PAGE, (addr + n - 1) // codec.PAGE
            raw = b"".join(page(i) for i in range(first, last + 1))
            return raw[addr - first * codec.PAGE:addr - first * codec.PAGE + n]

        yield k.tick, text_screen(k.devices, read)


class _ScreenAtCheckpoints:
    """Replay observer taking the screen at every checkpoint."""

    per_instruction = False

    def __init__(self) -> None:
        self.screens: list[tuple[int, list[str]]] = []

    def start(self, m: Machine, contents: TraceContents) -> None:
        pass

    def events(self, m: Machine, events: np.ndarray) -> None:
        pass

    def instruction(self, m: Machine) -> None:
        pass

    def checkpoint(self, m: Machine, tick: int) -> None:
        self.screens.append((tick, m.screen()))

    def end(self, m: Machine, result: ReplayResult) -> None:
        pass


def checkpoint_screens(c: TraceContents) -> list[tuple[int, list[str]]]:
    """The VGA text screen at every checkpoint, by replaying the trace (verified as it goes:
    a divergence ends the export with an error). (tick, lines)."""
    obs = _ScreenAtCheckpoints()
    res = Replayer(c).run(observer=obs)
    if res.diverged:
        d = res.divergence
        raise ExportError(f"the replay diverged at tick {d.tick if d else '?'}: no screens "
                          f"past it can be trusted")
    return obs.screens


def changed_screens(screens: Iterable[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """The screens that differ from the one before (a blank first screen left out)."""
    out: list[tuple[int, list[str]]] = []
    last: list[str] | None = None
    for tick, lines in screens:
        if lines != last and (last is not None or any(lines)):
            out.append((tick, lines))
        last = lines
    return out


def iter_perfetto(c: TraceContents, violations: Iterable[Violation] = (),
                  screens: str = "keyframes") -> Iterator[dict]:
    """The trace events of :func:`perfetto_events`, produced while reading the trace frame
    by frame (a first pass finds the output channels and timer devices for the metadata).

    screens: the VGA text screen as text on a "screen" track of the machine, where it
    changed: ``keyframes`` (read from the keyframes, no execution), ``checkpoints`` (at
    every checkpoint, by replaying the trace) or ``none``."""
    if screens not in SCREEN_MODES:
        raise ExportError(f"screens: {screens!r} is not one of {', '.join(SCREEN_MODES)}")
    hz = c.config.tick_hz
    violations = list(violations)
    shots = changed_screens(keyframe_screens(c) if screens == "keyframes" else
                            checkpoint_screens(c) if screens == "checkpoints" else [])

    def ts(tick: int) -> float:
        return tick * 1_000_000 / hz  # one rounding: exact for whole microseconds

    timers: set[int] = set()
    for ev in c.iter_events(FrameKind.DEVICE):
        timers.update(ev["a"][ev["kind"] == Kind.TIMER].tolist())
    channels: set[int] = set()
    for ev in c.iter_events(FrameKind.OUTPUT):
        channels.update(np.unique(ev["a"]).tolist())
    oracle_tids: dict[str, int] = {}
    for v in violations:
        oracle_tids.setdefault(v.oracle, len(oracle_tids) + 1)

    for pid, name in ((PID_INPUTS, "inputs"), (PID_INTERRUPTS, "interrupts"),
                      (PID_OUTPUT, "guest output"), (PID_TIMERS, "timers"),
                      (PID_MACHINE, "machine"), (PID_ORACLES, "oracles")):
        yield from _meta(pid, name, sort=pid)
    for name, tid in _INPUT_TRACKS.items():
        yield from _meta(PID_INPUTS, name, tid)
    for name, tid in _MACHINE_TRACKS.items():
        yield from _meta(PID_MACHINE, name, tid)
    if shots:
        yield from _meta(PID_MACHINE, "screen", _SCREEN_TID)
    yield from _meta(PID_INTERRUPTS, "inta", _INTA_TID)
    for dev in sorted(timers):
        yield from _meta(PID_TIMERS, _device_name(dev), dev)
    for ch in sorted(channels):
        yield from _meta(PID_OUTPUT, _channel_name(ch), int(ch) + 1)
    for name, tid in oracle_tids.items():
        yield from _meta(PID_ORACLES, name, tid)

    def instant(pid: int, tid: int, tick: int, name: str, **args: object) -> dict:
        return {"ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": ts(tick),
                "name": name, "args": {"tick": tick, **args}}

    # Inputs.
    for part in c.iter_events(FrameKind.INPUT):
        for e in part.tolist():
            tick, kind, a, b = (int(x) for x in e)
            if kind == Kind.SERIAL_RX:
                yield instant(PID_INPUTS, _INPUT_TRACKS["com2 rx" if a else "com1 rx"], tick,
                              repr(chr(b & 0xFF)), byte=b & 0xFF)
            elif kind == Kind.KEY:
                yield instant(PID_INPUTS, _INPUT_TRACKS["keys"], tick,
                              f"{a:#06x} {'down' if b else 'up'}", code=a, down=b)
            elif kind == Kind.RTC_TIME:
                yield instant(PID_INPUTS, _INPUT_TRACKS["rtc time"], tick, f"rtc {b}",
                              unix_seconds=b)
            else:
                name = {Kind.RESET: "reset", Kind.NMI: "nmi",
                        Kind.INTR: f"intr {a:#04x}"}.get(kind, f"input {kind:#x}")
                yield instant(PID_INPUTS, _INPUT_TRACKS["reset / nmi / intr"], tick, name,
                              a=a, b=b)

    # Device events: IRQ levels as counters, acknowledges, timers, resets, exit.
    for part in c.iter_events(FrameKind.DEVICE):
        for e in part.tolist():
            tick, kind, a, b = (int(x) for x in e)
            if kind == Kind.IRQ:
                yield {"ph": "C", "pid": PID_INTERRUPTS, "tid": 0, "ts": ts(tick),
                       "name": f"irq {a}", "args": {"level": b}}
            elif kind == Kind.INTA:
                yield instant(PID_INTERRUPTS, _INTA_TID, tick, f"vector {a:#04x}", vector=a)
            elif kind == Kind.TIMER:
                yield instant(PID_TIMERS, a, tick, f"{_device_name(a)} timer", device=a)
            elif kind == Kind.GUEST_RESET:
                cause = ResetCause(a).name.lower() if a in ResetCause._value2member_map_ \
                    else str(a)
                yield instant(PID_MACHINE, _MACHINE_TRACKS["guest resets"], tick,
                              f"reset ({cause})", cause=a)
            elif kind == Kind.EXIT:
                yield instant(PID_MACHINE, _MACHINE_TRACKS["stop"], tick, f"exit {b}", status=b)
            elif kind == Kind.SHUTDOWN:
                yield instant(PID_MACHINE, _MACHINE_TRACKS["stop"], tick, "shutdown")
            else:
                yield instant(PID_MACHINE, _MACHINE_TRACKS["stop"], tick, f"event {kind:#x}",
                              a=a, b=b)

    # Guest output: each channel's bytes grouped into lines, a slice from a line's first byte
    # to its newline (POST codes are single bytes: instants). One pass per channel.
    for ch in sorted(channels):
        tid = int(ch) + 1
        line = _LineSplitter()
        for part in c.iter_events(FrameKind.OUTPUT):
            sel = part[part["a"] == ch]
            if not len(sel):
                continue
            ticks = sel["tick"].tolist()
            data = sel["b"].astype(np.uint8).tobytes()
            if ch == Channel.POST:
                for t, v in zip(ticks, data, strict=True):
                    yield instant(PID_OUTPUT, tid, int(t), f"post {v:#04x}", code=v)
                continue
            for first, last, text, nbytes in line.feed(ticks, data):
                yield _slice(tid, ts(first), ts(last), first, last, text, nbytes)
        for first, last, text, nbytes in line.finish():
            yield _slice(tid, ts(first), ts(last), first, last, text, nbytes)

    for ticks, _ in c.iter_checkpoints():
        for t in ticks.tolist():
            yield instant(PID_MACHINE, _MACHINE_TRACKS["checkpoints"], int(t), "checkpoint")

    for tick, lines in shots:
        title = next((ln.strip() for ln in lines if ln.strip()), "(blank screen)")
        yield instant(PID_MACHINE, _SCREEN_TID, tick, title[:_LINE_TEXT],
                      screen="\n".join(lines).rstrip("\n"), source=screens[:-1])

    for v in violations:
        yield instant(PID_ORACLES, oracle_tids[v.oracle], v.tick, v.message, oracle=v.oracle)


_LINE_KEEP = 4096  # bytes of one output line kept for its text (the count stays exact)


def _slice(tid: int, t0: float, t1: float, first: int, last: int, raw: bytes,
           nbytes: int) -> dict:
    text = _text(raw.rstrip(b"\r\n"))
    return {"ph": "X", "pid": PID_OUTPUT, "tid": tid, "ts": t0, "dur": t1 - t0,
            "name": text[:_LINE_TEXT] or "(empty)",
            "args": {"text": text, "bytes": nbytes, "first_tick": first, "last_tick": last}}


class _LineSplitter:
    """Splits a channel's bytes, arriving in pieces, into lines (newline included); a line
    keeps its first :data:`_LINE_KEEP` bytes of text, so an endless line costs no memory."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last = 0
        self.buf = bytearray()
        self.count = 0

    def feed(self, ticks: list[int], data: bytes) -> Iterator[tuple[int, int, bytes, int]]:
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl + 1
            if self.first is None:
                self.first = int(ticks[start])
            self.last = int(ticks[end - 1])
            room = _LINE_KEEP - len(self.buf)
            if room > 0:
                self.buf += data[start:min(end, start + room)]
            self.count += end - start
            if nl >= 0:
                yield self.first, self.last, bytes(self.buf), self.count
                self.first, self.buf, self.count = None, bytearray(), 0
            start = end

    def finish(self) -> Iterator[tuple[int, int, bytes, int]]:
        if self.first is not None:
            yield self.first, self.last, bytes(self.buf), self.count
            self.first, self.buf, self.count = None, bytearray(), 0


def write_perfetto(c: TraceContents, out: IO[str],
                   violations: Iterable[Violation] = (), screens: str = "keyframes") -> int:
    """Write the JSON document event by event; returns the number of trace events."""
    n = 0
    events = iter_perfetto(c, violations, screens)
    first = next(events, None)  # errors (a replay for the screens) before anything is written
    out.write('{"traceEvents":[')
    for ev in itertools.chain([first] if first is not None else [], events):
        if n:
            out.write(",")
        out.write(json.dumps(ev, separators=(",", ":")))
        n += 1
    other = {"guest": c.guest.name, "tick_hz": c.config.tick_hz, "ticks": c.end_tick}
    out.write('],"displayTimeUnit":"ns","otherData":')
    out.write(json.dumps(other, separators=(",", ":")))
    out.write("}\n")
    return n


# ---- Tenet --------------------------------------------------------------------------------

TENET_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")


def _tenet_state(m: Machine) -> tuple[dict[str, int], bool]:
    r = m.get_regs()
    regs = {n: getattr(r, n) for n in TENET_REGS}
    regs["eip"] = (r.cs.base + r.eip) & 0xFFFFFFFF  # linear: where the code is in memory
    return regs, r.halted


def _arm_log(m: Machine) -> None:
    """Log every data access at every linear address (two slots: a range stops at 2^32 - 1)."""
    flags = WATCH_READ | WATCH_WRITE | WATCH_LOG
    m.set_watch(0, 0, 0xFFFF_FFFF, flags)
    m.set_watch(1, 0xFFFF_FFFF, 1, flags)


def _tenet_memory(accesses: list[Access]) -> str:
    """``mr=ADDR:HEX`` / ``mw=ADDR:HEX`` items, in access order: linear address, the bytes
    in memory order."""
    return "".join(f",{'mw' if a.kind == WATCH_WRITE else 'mr'}={a.lin:#x}:"
                   f"{a.value.to_bytes(a.size, 'little').hex()}" for a in accesses)


def tenet_lines(c: TraceContents, start: int, end: int, *, force: bool = False) -> Iterator[str]:
    """One line per instruction executed in ticks [start, end): ``eip`` (linear, CS base
    + EIP) of the instruction, the registers that changed since the previous line (all
    of them on the first), and the data accesses made since the previous line (by the
    previous instruction, and by an interrupt delivery in between): ``mr=``/``mw=`` with
    the linear address and the bytes read or written, in the order they were made.
    Interrupt deliveries show as the first handler instruction's line; ticks spent halted
    produce no lines. The accesses of the range's last instruction have no line to go on."""
    if start < 0 or end <= start:
        raise ExportError(f"empty tick range {start}..{end}")
    if end > c.end_tick:
        raise ExportError(f"tick {end} is past the trace's end ({c.end_tick})")
    if end - start > TENET_LIMIT and not force:
        raise ExportError(f"{end - start:,} ticks is over the Tenet export limit of "
                          f"{TENET_LIMIT:,} (one line per instruction); narrow the range or "
                          f"pass --force")
    m, inputs = seek_stream(c, start)
    _arm_log(m)
    prev: dict[str, int] = {}
    pending: list[Access] = []

    def take_log() -> None:
        log, lost = m.take_watch_log()
        if lost:
            raise ExportError(f"tick {m.ticks}: {lost} memory accesses did not fit the "
                              f"core's access log")
        pending.extend(log)

    while m.ticks < end:
        while inputs.next_tick() == m.ticks:
            inject(c, m, inputs.peek(1)[0])
            inputs.advance(1)
        regs, halted = _tenet_state(m)
        before = m.ticks
        stop = m.run(before + 1)
        ev = m.take_events()
        m.take_output()
        delivered = bool(np.any(ev["kind"] == Kind.INTA))
        if not halted and not delivered and m.ticks > before:
            # The line of the instruction just executed: the state before it, with what the
            # instructions (and deliveries) before it did.
            yield ",".join(f"{k}={v:#x}" for k, v in regs.items() if prev.get(k) != v) + \
                _tenet_memory(pending)
            prev = regs
            pending.clear()
        take_log()
        if stop in (StopReason.EXIT, StopReason.SHUTDOWN):
            break
        if m.ticks == before:
            if stop in (StopReason.EVENTS, StopReason.OUTPUT):
                continue
            break  # halted with nothing that can wake it
        if halted and m.get_regs().halted:
            # Still halted after a tick, so no interrupt is pending: nothing happens before
            # the next deadline or input. Run there in one go.
            target = end
            nt = inputs.next_tick()
            if nt is not None:
                target = min(target, nt)
            d = m.next_deadline
            if d is not None:
                target = min(target, max(d, m.ticks))
            if target > m.ticks:
                m.run(target)
                m.take_events()
                m.take_output()
                take_log()


def write_tenet(c: TraceContents, out: IO[str], start: int, end: int, *,
                force: bool = False) -> int:
    """Write the Tenet trace; returns the number of lines (instructions) written."""
    lines = 0
    for line in tenet_lines(c, start, end, force=force):
        out.write(line)
        out.write("\n")
        lines += 1
    return lines


__all__ = ["TENET_LIMIT", "ExportError", "ReplayError", "Violation", "iter_perfetto",
           "load_violations", "perfetto_events", "tenet_lines", "write_perfetto", "write_tenet"]
