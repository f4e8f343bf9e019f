"""Replay: re-execute a trace's inputs and verify every logged device event, every output
byte and every checkpoint fingerprint; seek to any tick through keyframes.

Invariants:

* Replay reads only the trace (and the guest image, found by its hash): it never consults
  the host, so a replay is exactly as deterministic as the core.
* Verification is streaming: the first difference between what the machine produces and
  what the trace says (an event's tick, kind or arguments; a fingerprint) is the reported
  divergence, with its tick.
* :func:`seek` costs one keyframe restore plus at most one keyframe interval of execution,
  whatever the trace's length.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from aero.traces import codec
from aero.traces.container import DISK_OVERLAY_VERSION, Frame, FrameKind, TraceError, TraceFile
from aero.traces.record import digest_update, replay_digest
from aero.traces.schema import check_metadata, check_summary

from aero.events import (
    EVENT_DTYPE,
    EVENTS_VERSION,
    INPUT_KINDS,
    INPUT_LIMIT,
    Channel,
    Kind,
    describe,
)
from aero.launch import GuestRef, LaunchError, find_image, find_image_by_hash, start_machine
from aero.machine import Machine, MachineConfig, StopReason, hash64

__all__ = ["Divergence", "EventCursor", "MAX_HELD_EVENTS", "OUTPUT_KEEP", "ReplayError",
           "ReplayObserver", "ReplayResult", "Replayer", "TraceContents", "guest_image",
           "guest_images", "inject", "load_contents", "machine_for", "restore_keyframe", "scan",
           "seek", "seek_stream", "supply_disk"]


class ReplayError(Exception):
    """A trace that cannot be replayed here (not a divergence): missing image, bad metadata."""


@dataclass
class Divergence:
    tick: int
    what: str  # "event", "output", "checkpoint", "stop"
    detail: str

    def to_dict(self) -> dict:
        return {"tick": self.tick, "what": self.what, "detail": self.detail}


@dataclass
class ReplayResult:
    ticks: int
    checkpoints_verified: int
    events_verified: int
    inputs_injected: int
    divergence: Divergence | None
    stop: str
    exit_status: int | None
    elapsed: float
    output: bytes = b""  # COM1 and debug-console bytes, the first OUTPUT_KEEP of them
    complete: bool = True  # False: stopped by --until before the trace's end
    output_bytes: int = 0  # all COM1 and debug-console bytes produced

    @property
    def evaluated(self) -> bool:
        """Whether anything was verified at all (a checkpoint or an event): a replay of a
        trace with nothing readable in it verifies nothing and proves nothing."""
        return self.checkpoints_verified > 0 or self.events_verified > 0

    @property
    def diverged(self) -> bool:
        return self.divergence is not None

    def to_dict(self) -> dict:
        return {"diverged": self.diverged, "checkpoints_verified": self.checkpoints_verified,
                "events_verified": self.events_verified, "inputs": self.inputs_injected,
                "ticks": self.ticks, "first_divergence_tick":
                    None if self.divergence is None else self.divergence.tick,
                "divergence": None if self.divergence is None else self.divergence.to_dict(),
                "stop": self.stop, "exit_status": self.exit_status,
                "elapsed_seconds": round(self.elapsed, 3), "complete": self.complete,
                "output_bytes": self.output_bytes, "evaluated": self.evaluated}


# Events one caller may hold as a single array (``TraceContents.inputs`` and friends): past
# this a trace must be read frame by frame (``iter_events``).
MAX_HELD_EVENTS = 1 << 22
OUTPUT_KEEP = 8 << 20  # guest output bytes a ReplayResult keeps (the count is exact)

_DEVICE_KINDS = np.array(sorted(int(k) for k in Kind if not k.is_input and k != Kind.OUTPUT),
                         dtype=np.uint32)
_ALLOWED_KINDS = {FrameKind.INPUT: np.array(sorted(int(k) for k in INPUT_KINDS), np.uint32),
                  FrameKind.DEVICE: _DEVICE_KINDS,
                  FrameKind.OUTPUT: np.array([int(Kind.OUTPUT)], np.uint32)}


class TraceContents:
    """A trace opened for replay: its checked metadata, the frame index, the summary and the
    keyframe headers in memory; the event and checkpoint streams are decoded lazily, one
    frame at a time (:meth:`iter_events`, :meth:`iter_checkpoints`).

    Invariants:

    * Memory does not grow with the trace: iterating holds one decoded frame. The array
      properties (:attr:`inputs`, :attr:`device`, :attr:`output`, :attr:`cp_ticks`,
      :attr:`cp_fps`) materialize a whole stream and refuse one of more than
      :data:`MAX_HELD_EVENTS` entries (TraceError): they are for small traces and tools
      that need random access (bisect's input minimisation, tests).
    * Every decoded frame is checked: event kinds belong to the frame's kind, ticks never go
      back (within and across frames), checkpoints strictly increase.
    """

    def __init__(self, trace: TraceFile, config: MachineConfig, guest: GuestRef,
                 keyframes: list[Frame], summary: dict | None,
                 images: dict[str, bytes] | None = None, *,
                 inputs: np.ndarray | None = None) -> None:
        self.trace = trace
        self.config = config
        self.guest = guest
        self.keyframes = keyframes  # Frame headers of keyframes, in tick order
        self.summary = summary
        self.images = images if images is not None else {}  # sha256 -> embedded image
        self._inputs_override = inputs
        self._held: dict[str, np.ndarray] = {}

    @property
    def recorded_inputs(self) -> bool:
        """True unless the inputs were replaced (:meth:`with_inputs`): only then do the
        trace's per-interval summaries (written pages) describe the run."""
        return self._inputs_override is None

    # ---- streaming -------------------------------------------------------------------
    def frames(self, kind: int) -> list[Frame]:
        return [f for f in self.trace.frames if f.kind == kind]

    def iter_events(self, kind: int) -> Iterator[np.ndarray]:
        """The events of one stream (FrameKind.INPUT, DEVICE or OUTPUT), one array per
        frame, in log order."""
        if kind == FrameKind.INPUT and self._inputs_override is not None:
            yield self._inputs_override
            return
        allowed = _ALLOWED_KINDS[kind]
        last = 0
        for f in self.trace.frames:
            if f.kind != kind:
                continue
            ev = codec.decode_events(self.trace.read(f), f)
            if len(ev) == 0:
                continue
            if not bool(np.all(np.isin(ev["kind"], allowed))):
                raise TraceError(f"{self.trace.path}: damaged {f.kind_name} frame at offset "
                                 f"{f.offset} (events of the wrong kind)")
            if int(ev["tick"][0]) < last:
                raise TraceError(f"{self.trace.path}: {f.kind_name} events out of order "
                                 f"(frame at offset {f.offset})")
            last = int(ev["tick"][-1])
            yield ev

    def iter_checkpoints(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ticks, fingerprints) per checkpoint frame; ticks strictly increase."""
        last = -1
        for f in self.trace.frames:
            if f.kind != FrameKind.CHECKPOINT:
                continue
            ticks, fps = codec.decode_checkpoints(self.trace.read(f), f)
            if len(ticks) == 0:
                continue
            if int(ticks[0]) <= last:
                raise TraceError(f"{self.trace.path}: checkpoints out of order (frame at "
                                 f"offset {f.offset})")
            last = int(ticks[-1])
            yield ticks, fps

    def cursor(self, kind: int) -> EventCursor:
        return EventCursor(self.iter_events(kind))

    # ---- whole streams (bounded) -------------------------------------------------------
    def _hold(self, name: str, parts: Iterator[np.ndarray], dtype: np.dtype) -> np.ndarray:
        if name not in self._held:
            held: list[np.ndarray] = []
            n = 0
            for part in parts:
                n += len(part)
                if n > MAX_HELD_EVENTS:
                    raise TraceError(f"{self.trace.path}: the {name} stream has more than "
                                     f"{MAX_HELD_EVENTS:,} entries, too many to hold at once")
                held.append(part)
            self._held[name] = np.concatenate(held) if held else np.zeros(0, dtype=dtype)
        return self._held[name]

    @property
    def inputs(self) -> np.ndarray:
        if self._inputs_override is not None:
            return self._inputs_override
        return self._hold("input", self.iter_events(FrameKind.INPUT), EVENT_DTYPE)

    @property
    def device(self) -> np.ndarray:
        return self._hold("device", self.iter_events(FrameKind.DEVICE), EVENT_DTYPE)

    @property
    def output(self) -> np.ndarray:
        return self._hold("output", self.iter_events(FrameKind.OUTPUT), EVENT_DTYPE)

    @property
    def cp_ticks(self) -> np.ndarray:
        return self._hold("checkpoint tick", (t for t, _ in self.iter_checkpoints()),
                          np.dtype(np.uint64))

    @property
    def cp_fps(self) -> np.ndarray:
        return self._hold("checkpoint fingerprint", (f for _, f in self.iter_checkpoints()),
                          np.dtype(np.uint64))

    # ---- figures ---------------------------------------------------------------------
    @property
    def end_tick(self) -> int:
        if self.summary is not None:
            return int(self.summary["ticks"])
        # A recorder that was killed: what is verified ends at the last checkpoint.
        return max((f.last_tick for f in self.trace.frames if f.kind == FrameKind.CHECKPOINT),
                   default=0)

    def disk_blocks(self) -> int | None:
        """The 4 KB blocks of a writable disk (the bound of a keyframe's overlay section),
        or None when the guest has none (its keyframes end after the RAM hashes)."""
        if not self.guest.disk_writable:
            return None
        return -(-self.guest.disk_size // Machine.DISK_BLOCK)

    def digest(self) -> str:
        h = replay_digest(self.config.to_dict(), self.guest)
        for part in self.iter_events(FrameKind.INPUT):
            digest_update(h, part)
        return h.hexdigest()

    def with_inputs(self, inputs: np.ndarray, end_tick: int | None = None) -> TraceContents:
        """The same trace with another input stream (bisect's predicates, input fuzzing),
        and with ``end_tick``, running to that tick instead of the recorded end."""
        summary = self.summary if end_tick is None else dict(self.summary or {}, ticks=end_tick)
        return TraceContents(self.trace, self.config, self.guest, self.keyframes, summary,
                             self.images, inputs=inputs)


class EventCursor:
    """Reads one event stream frame by frame: :meth:`peek` looks ahead without consuming,
    :meth:`advance` consumes. Holds the current frame plus what a caller peeks past it."""

    def __init__(self, parts: Iterator[np.ndarray]) -> None:
        self._it = parts
        self._buf = np.zeros(0, dtype=EVENT_DTYPE)
        self._pos = 0
        self.taken = 0  # events consumed so far

    def peek(self, n: int) -> np.ndarray:
        """Up to ``n`` next events (fewer only at the stream's end)."""
        while len(self._buf) - self._pos < n:
            nxt = next(self._it, None)
            if nxt is None:
                break
            rest = self._buf[self._pos:]
            self._buf = np.concatenate([rest, nxt]) if len(rest) else nxt
            self._pos = 0
        return self._buf[self._pos:self._pos + n]

    def advance(self, k: int) -> None:
        self._pos += k
        self.taken += k

    def next_tick(self) -> int | None:
        head = self.peek(1)
        return int(head["tick"][0]) if len(head) else None

    def skip(self, n: int) -> int:
        """Consume ``n`` events (fewer at the end); returns how many were skipped."""
        done = 0
        while done < n:
            part = self.peek(min(n - done, 1 << 16))
            if not len(part):
                break
            self.advance(len(part))
            done += len(part)
        return done


def load_contents(trace: TraceFile) -> TraceContents:
    """Check the metadata against its schema and read the summary, the keyframe headers and
    an embedded image of the trace's guest; the streams stay in the file."""
    try:
        meta = check_metadata(trace.metadata)
        if meta["events_version"] != EVENTS_VERSION:
            raise TraceError(f"event vocabulary version {meta['events_version']} is not "
                             f"supported (supported: {EVENTS_VERSION})")
    except TraceError as exc:
        raise ReplayError(f"{trace.path}: {exc}") from None
    try:
        config = MachineConfig.from_dict(meta["machine"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{trace.path}: bad machine configuration in the metadata ({exc})") \
            from None
    try:
        guest = GuestRef.from_dict(meta["guest"])
    except LaunchError as exc:
        raise ReplayError(f"{trace.path}: {exc}") from None
    if guest.disk_writable != (trace.version >= DISK_OVERLAY_VERSION):
        raise ReplayError(f"{trace.path}: a trace of format version {trace.version} "
                          f"{'cannot have' if guest.disk_writable else 'needs'} a writable disk")
    if guest.size > config.ram_size and guest.fmt != "rom":
        raise ReplayError(f"{trace.path}: the guest image ({guest.size} bytes) cannot fit in "
                          f"the configured RAM ({config.ram_size} bytes)")
    keyframes: list[Frame] = []
    summary = None
    images: dict[str, bytes] = {}
    wanted = set(guest.image_hashes())
    last_cp = None
    for f in trace.frames:
        if f.kind == FrameKind.KEYFRAME:
            keyframes.append(f)
        elif f.kind == FrameKind.CHECKPOINT:
            last_cp = f.last_tick
        elif f.kind == FrameKind.SUMMARY:
            if summary is not None:
                raise TraceError(f"{trace.path}: two summary frames")
            summary = check_summary(codec.decode_json(trace.read(f), f, "summary"))
            if summary["ticks"] != f.first_tick:
                raise TraceError(f"{trace.path}: the summary's ticks do not match its frame")
        elif f.kind == FrameKind.IMAGE and len(images) < len(wanted):
            # Only the images this guest names (its image and, for Linux, its initrd).
            head, data = codec.decode_image(trace.read(f), f)
            if head["sha256"] in wanted and head["sha256"] not in images:
                images[head["sha256"]] = data
    if summary is not None and last_cp != summary["ticks"]:
        raise TraceError(f"{trace.path}: the summary ends at tick {summary['ticks']} but the "
                         f"last checkpoint is at {last_cp}")
    if any(b.first_tick <= a.first_tick for a, b in zip(keyframes, keyframes[1:], strict=False)):
        raise TraceError(f"{trace.path}: keyframes out of order")
    return TraceContents(trace, config, guest, keyframes, summary, images)


def scan(c: TraceContents) -> dict:
    """Counts over every stream, read frame by frame (``aero info``): events per stream and
    per kind, the last tick any frame reaches, checkpoints, COM1 output bytes and the input
    digest recomputed."""
    h = replay_digest(c.config.to_dict(), c.guest)
    counts = {FrameKind.INPUT: 0, FrameKind.DEVICE: 0, FrameKind.OUTPUT: 0}
    by_kind: dict[int, int] = {}
    last = 0
    com1 = 0
    for kind in counts:
        for ev in c.iter_events(kind):
            counts[kind] += len(ev)
            last = max(last, int(ev["tick"][-1]))
            kinds, n = np.unique(ev["kind"], return_counts=True)
            for k, v in zip(kinds.tolist(), n.tolist(), strict=True):
                by_kind[k] = by_kind.get(k, 0) + v
            if kind == FrameKind.INPUT:
                digest_update(h, ev)
            elif kind == FrameKind.OUTPUT:
                com1 += int(np.count_nonzero(ev["a"] == Channel.COM1))
    checkpoints = 0
    for ticks, _ in c.iter_checkpoints():
        checkpoints += len(ticks)
        last = max(last, int(ticks[-1]))
    return {"inputs": counts[FrameKind.INPUT], "device_events": counts[FrameKind.DEVICE],
            "output_events": counts[FrameKind.OUTPUT], "by_kind": by_kind,
            "last_tick": last, "checkpoints": checkpoints, "output_bytes": com1,
            "digest": h.hexdigest()}


def guest_image(c: TraceContents) -> bytes:
    """The guest image: embedded in the trace, else from the local image store."""
    data = c.images.get(c.guest.sha256) or find_image(c.guest)
    if data is None:
        raise ReplayError(f"guest image {c.guest.name} (sha256 {c.guest.sha256[:16]}...) is "
                          f"neither in the trace nor in the image store; run `aero pack` on "
                          f"the machine that recorded it")
    return data


def guest_images(c: TraceContents) -> dict[str, bytes]:
    """Every image the guest needs (the guest image, for Linux the initrd, a disk), by SHA-256:
    embedded in the trace, else from the local image store."""
    images = {c.guest.sha256: guest_image(c)}
    if c.guest.initrd_sha256:
        h = c.guest.initrd_sha256
        data = c.images.get(h) or find_image_by_hash(h, c.guest.initrd_size)
        if data is None:
            raise ReplayError(f"the initrd of {c.guest.name} (sha256 {h[:16]}...) is neither in "
                              f"the trace nor in the image store; run `aero pack` on the "
                              f"machine that recorded it")
        images[h] = data
    for h, size, what in ((c.guest.disk_sha256, c.guest.disk_size, "disk image"),
                          (c.guest.vgarom_sha256, c.guest.vgarom_size, "VGA BIOS")):
        if not h:
            continue
        data = c.images.get(h) or find_image_by_hash(h, size)
        if data is None:
            hint = " (or give the disk image with --disk FILE)" if what == "disk image" else ""
            raise ReplayError(f"the {what} of {c.guest.name} (sha256 {h[:16]}..., {size:,} "
                              f"bytes) is neither in the trace nor in the image store; run "
                              f"`aero pack` on the machine that recorded it{hint}")
        images[h] = data
    return images


def supply_disk(c: TraceContents, data: bytes, name: str) -> None:
    """Give the replay of ``c`` its disk image from a file the user names (``replay --disk``),
    for a trace that references its disk without embedding it. The file must be the very
    image the trace was recorded with (same SHA-256): a disk that changed since is an error,
    never a silent substitution."""
    want, size = c.guest.disk_sha256, c.guest.disk_size
    if not want:
        raise ReplayError(f"{name}: the trace was recorded without a disk")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ReplayError(f"{name}: this disk image is not the one the trace was recorded "
                          f"with (sha256 {got[:16]}..., {len(data):,} bytes; the trace needs "
                          f"{want[:16]}..., {size:,} bytes): the disk changed since")
    c.images[want] = data


def machine_for(c: TraceContents, config: MachineConfig | None = None) -> Machine:
    """A machine for a keyframe of ``c`` to be restored into: the guest loaded (its ROM,
    firmware files and disk are configuration, not state, so a keyframe does not hold
    them). Without the guest's images at hand, a bare machine, as long as the guest has no
    writable disk (whose overlay cannot be restored without the disk under it)."""
    try:
        return start_machine(config or c.config, c.guest, guest_image(c), guest_images(c))
    except (ReplayError, LaunchError) as exc:
        if c.guest.disk_writable:
            raise ReplayError(str(exc)) from None
        return Machine(config or c.config)


def restore_keyframe(c: TraceContents, kf_frame: Frame, machine: Machine | None = None) -> tuple[
        Machine, codec.Keyframe]:
    """A machine in the state of a keyframe (``machine``, else :func:`machine_for`).
    Everything in the keyframe is checked against the configuration before RAM is
    allocated; the pages are copied one pages frame at a time into a single snapshot
    buffer, followed by a writable disk's overlay blocks (each checked against its hash)."""
    where = f"{c.trace.path}: keyframe at tick {kf_frame.first_tick}"
    expect_len = codec.keyframe_base_len(c.config.ram_size)
    rw = c.guest.disk_writable
    if kf_frame.raw_len != expect_len and not (rw and kf_frame.raw_len > expect_len):
        raise TraceError(f"{where} is not for this machine's {c.config.ram_size} bytes of RAM")
    k = codec.decode_keyframe(c.trace.read(kf_frame), kf_frame, c.disk_blocks())
    if k.ram_size != c.config.ram_size:
        raise TraceError(f"{where} has the wrong RAM size")
    pages_frames = c.frames(FrameKind.PAGES)
    n = len(k.hashes)
    if n and int(k.page_frames.max()) >= len(pages_frames):
        raise TraceError(f"{where} names a missing pages frame")
    dn = len(k.disk_blocks) if k.disk_blocks is not None else 0
    if dn and k.disk_frames is not None and int(k.disk_frames.max()) >= len(pages_frames):
        raise TraceError(f"{where} names a missing pages frame")
    if machine is not None and machine.config.ram_size != k.ram_size:
        raise TraceError(f"{where} does not fit a machine with {machine.config.ram_size} "
                         f"bytes of RAM")
    head = struct.pack("<IIII", codec.SNAPSHOT_MAGIC, k.ram_size, k.tick & 0xFFFFFFFF,
                       (k.tick >> 32) & 0xFFFFFFFF) + k.cpu + k.devices
    overlay_len = 4 + dn * (4 + codec.PAGE) if rw else 0
    snap = bytearray(len(head) + k.ram_size + overlay_len)
    snap[:len(head)] = head
    base = len(head)
    order = np.argsort(k.page_frames, kind="stable")
    frames_of = k.page_frames[order]
    bounds = np.flatnonzero(np.diff(frames_of.astype(np.int64))) + 1
    for group in np.split(order, bounds) if n else []:
        j = int(k.page_frames[group[0]])
        pages = codec.decode_pages(c.trace.read(pages_frames[j]), pages_frames[j])
        for i in group.tolist():
            data = pages.get(int(k.hashes[i]))
            if data is None:
                raise TraceError(f"{where}: page {i} is missing")
            snap[base + i * codec.PAGE:base + (i + 1) * codec.PAGE] = data
        del pages
    if rw and k.disk_blocks is not None and k.disk_hashes is not None \
            and k.disk_frames is not None:
        obase = len(head) + k.ram_size
        snap[obase:obase + 4] = struct.pack("<I", dn)
        snap[obase + 4:obase + 4 + 4 * dn] = np.asarray(k.disk_blocks, "<u4").tobytes()
        dbase = obase + 4 + 4 * dn
        by_frame: dict[int, list[int]] = {}
        for j, fr in enumerate(k.disk_frames.tolist()):
            by_frame.setdefault(int(fr), []).append(j)
        for fr, js in sorted(by_frame.items()):
            pages = codec.decode_pages(c.trace.read(pages_frames[fr]), pages_frames[fr])
            for j in js:
                block, h = int(k.disk_blocks[j]), int(k.disk_hashes[j])
                data = pages.get(h)
                if data is None or hash64(bytes(data), Machine.DISK_HASH_SEED | block) != h:
                    raise TraceError(f"{where}: disk block {block} is missing or damaged")
                snap[dbase + j * codec.PAGE:dbase + (j + 1) * codec.PAGE] = data
            del pages
    m = machine or machine_for(c)
    try:
        m.restore(snap)
    except ValueError:
        raise TraceError(f"{where} does not restore") from None
    del snap
    m.fingerprint()
    if not np.array_equal(m.page_hashes(), k.hashes):
        raise TraceError(f"{where}: page contents do not match their hashes")
    return m, k


def inject(c: TraceContents, m: Machine, e: np.void) -> None:
    """Apply one logged input (TraceError when the core refuses its arguments)."""
    try:
        m.inject(int(e["kind"]), int(e["a"]), int(e["b"]))
    except ValueError as exc:
        raise TraceError(f"{c.trace.path}: input at tick {int(e['tick'])}: {exc}") from None


def seek_stream(c: TraceContents, tick: int) -> tuple[Machine, EventCursor]:
    """:func:`seek`, returning the input stream positioned at the next input instead of its
    index."""
    kfs = [f for f in c.keyframes if f.first_tick <= tick]
    if not kfs:
        raise ReplayError(f"no keyframe at or before tick {tick}")
    m, k = restore_keyframe(c, kfs[-1])
    cur = c.cursor(FrameKind.INPUT)
    if cur.skip(k.inputs_before) != k.inputs_before:
        raise TraceError(f"{c.trace.path}: keyframe at tick {k.tick} counts more inputs than "
                         f"the trace holds")
    while True:
        while m.ticks < tick:
            head = cur.peek(1)
            if not len(head) or int(head["tick"][0]) != m.ticks:
                break
            inject(c, m, head[0])
            cur.advance(1)
        if m.ticks >= tick:
            break
        nt = cur.next_tick()
        target = min(tick, nt) if nt is not None and nt > m.ticks else tick
        stop = m.run(target)
        m.take_events()
        m.take_output()
        if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
            break
    return m, cur


def seek(c: TraceContents, tick: int) -> tuple[Machine, int]:
    """A machine at ``tick`` (restored from the nearest keyframe at or before it, then run
    forward with the trace's inputs). As at a checkpoint, the inputs stamped ``tick`` are
    not applied yet. Returns (machine, index of the next input event to inject)."""
    m, cur = seek_stream(c, tick)
    return m, cur.taken


class ReplayObserver(Protocol):
    """Watches a replay (invariant oracles, exporters). Calls come from the replay loop with
    the machine stopped between instructions; an observer must not change the machine.

    ``per_instruction``: when true the replay runs one tick at a time and calls
    :meth:`instruction` after each: exact but slow (one Python call per instruction)."""

    per_instruction: bool

    def start(self, m: Machine, contents: TraceContents) -> None: ...

    def events(self, m: Machine, events: np.ndarray) -> None:
        """Every event logged in the last slice (inputs included), in log order."""

    def instruction(self, m: Machine) -> None: ...

    def checkpoint(self, m: Machine, tick: int) -> None: ...

    def end(self, m: Machine, result: ReplayResult) -> None: ...


class Replayer:
    """Re-executes a trace from tick 0 and verifies it as it goes."""

    def __init__(self, contents: TraceContents, *, image: bytes | None = None) -> None:
        self.c = contents
        self.image = image if image is not None else guest_image(contents)

    def run(self, *, until: int | None = None, speed: float | None = None,
            on_output: Callable[[int, bytes], None] | None = None,
            on_progress: Callable[[int], None] | None = None,
            config: MachineConfig | None = None,
            observer: ReplayObserver | None = None) -> ReplayResult:
        """speed: None for as fast as possible, else guest seconds per wall second.
        config: replay under another configuration (bisecting configurations).
        observer: called at the start, after every slice, at every checkpoint (and after
        every instruction when it asks for that), and at the end."""
        c = self.c
        start = time.monotonic()
        try:
            m = start_machine(config or c.config, c.guest, self.image, c.images)
        except LaunchError as exc:
            raise ReplayError(str(exc)) from None
        end = c.end_tick if until is None else min(until, c.end_tick)
        inputs = c.cursor(FrameKind.INPUT)
        expect = {"event": c.cursor(FrameKind.DEVICE), "output": c.cursor(FrameKind.OUTPUT)}
        cps = _Checkpoints(c.iter_checkpoints())
        verified = 0
        verified_cps = 0
        divergence: Divergence | None = None
        output = bytearray()
        output_bytes = 0
        tick_hz = m.config.tick_hz
        stop = StopReason.TICKS
        step = observer is not None and observer.per_instruction
        if observer is not None:
            observer.start(m, c)

        def check(produced: np.ndarray, what: str) -> None:
            nonlocal divergence, verified
            cur = expect[what]
            n = len(produced)
            exp = cur.peek(n)
            if len(exp) == n and np.array_equal(produced, exp):
                verified += n
                cur.advance(n)
                return
            # First difference: either side's event, whichever comes first.
            k = 0
            while k < min(n, len(exp)) and produced[k] == exp[k]:
                k += 1
            verified += k
            got = produced[k] if k < n else None
            want = exp[k] if k < len(exp) else None
            ticks = [int(e["tick"]) for e in (got, want) if e is not None]
            detail = (f"replay produced {_show(got)}; the trace has {_show(want)}")
            if divergence is None or min(ticks) < divergence.tick:
                divergence = Divergence(min(ticks), what, detail)
            cur.advance(k)

        while divergence is None:
            now = m.ticks
            nt = inputs.next_tick()
            while nt is not None and nt == now and now < end:
                inject(c, m, inputs.peek(1)[0])
                inputs.advance(1)
                nt = inputs.next_tick()
            if nt is not None and nt < now:
                divergence = Divergence(nt, "stop", f"the machine passed tick {nt} without "
                                                    f"stopping there (it is at {now})")
                break
            target = end
            if nt is not None:
                target = min(target, nt)
            cp = cps.next_tick()
            if cp is not None:
                target = min(target, cp)
            if speed is not None:
                target = min(target, now + max(int(tick_hz * speed) // 100, 1))
            if step:
                target = min(target, now + 1)
            if target > now:
                stop = m.run(target)
            m.take_output()
            ev = m.take_events()
            if observer is not None:
                if len(ev):
                    observer.events(m, ev)
                if step and m.ticks > now:
                    observer.instruction(m)
            produced = ev[ev["kind"] >= INPUT_LIMIT]
            is_out = produced["kind"] == Kind.OUTPUT
            out = produced[is_out]
            check(produced[~is_out], "event")
            check(out, "output")
            if len(out):
                shown = out[(out["a"] == Channel.COM1) | (out["a"] == Channel.DEBUGCON)]
                data = shown["b"].astype(np.uint8).tobytes()
                output_bytes += len(data)
                if len(output) < OUTPUT_KEEP:
                    output += data[:OUTPUT_KEEP - len(output)]
                if on_output and data:
                    on_output(int(out["tick"][-1]), data)
            if divergence is not None:
                break
            while cps.next_tick() == m.ticks:
                want = cps.fingerprint()
                fp = m.fingerprint()
                if fp != want:
                    divergence = Divergence(m.ticks, "checkpoint",
                                            f"state fingerprint {fp:016x}, the trace has "
                                            f"{want:016x}")
                    break
                cps.advance()
                verified_cps += 1
                if observer is not None:
                    observer.checkpoint(m, m.ticks)
                if on_progress:
                    on_progress(m.ticks)
            if divergence is not None:
                break
            if speed is not None:
                ahead = m.ticks / (tick_hz * speed) - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
            if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT) or m.ticks >= end:
                break
            if stop == StopReason.TICKS and m.ticks < target:
                continue
        # Everything the trace recorded up to where the replay got must have happened.
        if divergence is None:
            reached = m.ticks
            for what, cur in expect.items():
                head = cur.peek(1)
                if len(head) and int(head["tick"][0]) <= reached:
                    divergence = Divergence(int(head["tick"][0]), what,
                                            f"the trace has {_show(head[0])}, which the "
                                            f"replay never produced")
                    break
            if divergence is None and until is None and c.summary is not None and \
                    m.ticks != c.end_tick:
                divergence = Divergence(m.ticks, "stop",
                                        f"the replay stopped ({stop.name.lower()}) at tick "
                                        f"{m.ticks}; the recording ran to {c.end_tick}")
        result = ReplayResult(m.ticks, verified_cps, verified, inputs.taken, divergence,
                              stop.name.lower(), m.exit_status, time.monotonic() - start,
                              bytes(output), complete=until is None or until >= c.end_tick,
                              output_bytes=output_bytes)
        if observer is not None:
            observer.end(m, result)
        return result


class _Checkpoints:
    """The checkpoint stream, one frame decoded at a time."""

    def __init__(self, parts: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
        self._it = parts
        self._ticks: list[int] = []
        self._fps: list[int] = []
        self._pos = 0

    def next_tick(self) -> int | None:
        while self._pos >= len(self._ticks):
            nxt = next(self._it, None)
            if nxt is None:
                return None
            self._ticks, self._fps = nxt[0].tolist(), nxt[1].tolist()
            self._pos = 0
        return self._ticks[self._pos]

    def fingerprint(self) -> int:
        return self._fps[self._pos]

    def advance(self) -> None:
        self._pos += 1


def _show(e: np.void | None) -> str:
    if e is None:
        return "nothing"
    return describe(int(e["tick"]), int(e["kind"]), int(e["a"]), int(e["b"])).strip()
