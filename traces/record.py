"""Recording: run a guest, feed it input, and write everything replay needs to a trace.

The recorder is the only part of aero that looks at the host (terminal, wall clock). Every
input it decides on goes through :meth:`aero.machine.Machine.inject` and so into the core's
event log with its tick; the log is written out as it grows, with a checkpoint (tick and
state fingerprint) every ``checkpoint_interval`` ticks and a keyframe (a seekable snapshot)
every ``keyframe_interval`` ticks.

Invariants:

* The trace is a function of (configuration, guest image, the inputs with their ticks):
  recording the same inputs twice gives byte-identical frames; only the metadata's
  ``created`` field differs.
* Frames are flushed at every checkpoint: a recorder killed at any point leaves a trace
  that replays up to its last complete frame, losing at most one checkpoint interval.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aero.traces import codec
from aero.traces.container import (
    DISK_OVERLAY_VERSION,
    FORMAT_VERSION,
    FrameKind,
    TraceWriter,
    create_private,
)
from aero.traces.script import ScriptRunner

import aero
from aero.events import EVENTS_VERSION, INPUT_LIMIT, Channel, Kind
from aero.launch import GuestRef
from aero.machine import Machine, StopReason

__all__ = ["DEFAULT_CHECKPOINT_INTERVAL", "DEFAULT_KEYFRAME_INTERVAL", "FLUSH_EVENTS",
           "IDLE_HORIZON_CHECKPOINTS", "OUTPUT_KEEP", "RecordOptions",
           "RecordResult", "Recorder", "default_trace_path", "digest_update", "replay_digest",
           "trace_dir", "update_latest"]

DEFAULT_CHECKPOINT_INTERVAL = 10_000_000
DEFAULT_KEYFRAME_INTERVAL = 200_000_000
FLUSH_EVENTS = 1 << 19  # events of one kind per frame at most (11 MB encoded)
OUTPUT_KEEP = 8 << 20  # guest output bytes a RecordResult keeps (the count is exact)
INJECT_BATCH = 4096  # scripted inputs injected before the event log is drained
# An idle guest (halted, no timer armed) whose next scripted input lies more than this many
# checkpoint intervals ahead would only produce empty checkpoints until then: the recording
# stops with "script-unreachable" instead of running on for ever.
IDLE_HORIZON_CHECKPOINTS = 10_000


def trace_dir() -> Path:
    """Where traces go without ``-o``: $AERO_TRACE_DIR, else the user data directory."""
    env = os.environ.get("AERO_TRACE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aero" / "traces"


def default_trace_path(guest: str) -> Path:
    """``<trace dir>/<guest>-<n>.aerotrace`` with the first free n, as rr numbers traces.

    The name is taken by creating the file (empty, 0600, O_EXCL, never through a symlink):
    two recordings started at once get different names, and a planted symlink is a taken
    name, not a way to write elsewhere. The trace directory is created 0700."""
    root = trace_dir()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in guest)[:64] or "guest"
    for n in range(100_000):
        path = root / f"{stem}-{n}.aerotrace"
        try:
            fd = create_private(path, exclusive=True)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise OSError(f"{root}: no free trace name for {stem}")


def update_latest(path: Path) -> None:
    """Point ``<trace dir>/latest`` at ``path`` (replaced atomically)."""
    root = trace_dir()
    link = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.resolve())
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)


def replay_digest(config: dict, guest: GuestRef) -> hashlib._Hash:
    """The running hash behind a trace's ``digest``: everything that determines a replay
    (configuration, the identity of the guest's images, the event vocabulary), to be updated
    with every input event in order. Creation time and file names are not part of it."""
    h = hashlib.sha256()
    ident = {"machine": config, "events_version": EVENTS_VERSION, "guest": guest.identity()}
    h.update(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode())
    return h


def digest_update(h: hashlib._Hash, inputs: np.ndarray) -> None:
    rows = np.zeros(len(inputs), dtype=[("tick", "<u8"), ("kind", "<u4"), ("a", "<u4"),
                                        ("b", "<u8")])
    for k in ("tick", "kind", "a", "b"):
        rows[k] = inputs[k]
    h.update(rows.tobytes())


@dataclass
class RecordOptions:
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL
    max_ticks: int | None = None  # stop recording at this tick
    realtime: bool = False  # pace guest time to wall time
    rtc_time: int | None = None  # wall-clock seconds for the RTC; None: the host's now
    script: ScriptRunner | None = None
    interactive: Callable[[], bytes] | None = None  # polls terminal bytes for COM1
    stop_requested: Callable[[], bool] = field(default=lambda: False)


@dataclass
class RecordResult:
    path: Path
    ticks: int
    stop: str  # exit, shutdown, halt, idle, limit, script-stalled, interrupted
    exit_status: int | None
    inputs: int
    device_events: int
    output_events: int
    checkpoints: int
    keyframes: int
    digest: str
    output: bytes  # COM1 and debug-console bytes, in order: the first OUTPUT_KEEP of them
    elapsed: float
    output_bytes: int = 0  # all COM1 and debug-console bytes the guest wrote
    reason: str = ""  # why the recording stopped, when the stop name needs explaining


class _FrameBuffer:
    """Events waiting to be written, one list per frame kind. :attr:`full` says when one
    kind holds :data:`FLUSH_EVENTS` events: the recorder then writes them out before the
    next checkpoint, so that a frame stays far below the container's size limit and memory
    does not grow with the guest's output."""

    def __init__(self) -> None:
        self.parts: dict[int, list[np.ndarray]] = {FrameKind.INPUT: [], FrameKind.DEVICE: [],
                                                   FrameKind.OUTPUT: []}
        self.counts = dict.fromkeys(self.parts, 0)

    @property
    def full(self) -> bool:
        return max(self.counts.values()) >= FLUSH_EVENTS

    def add(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kinds = events["kind"]
        inputs = events[kinds < INPUT_LIMIT]
        outputs = events[kinds == Kind.OUTPUT]
        device = events[(kinds >= INPUT_LIMIT) & (kinds != Kind.OUTPUT)]
        for kind, part in ((FrameKind.INPUT, inputs), (FrameKind.DEVICE, device),
                           (FrameKind.OUTPUT, outputs)):
            if len(part):
                self.parts[kind].append(part)
                self.counts[kind] += len(part)
        return inputs, device, outputs

    def flush(self, w: TraceWriter, first_tick: int) -> None:
        for kind, parts in self.parts.items():
            if not parts:
                continue
            ev = np.concatenate(parts)
            parts.clear()
            self.counts[kind] = 0
            for i in range(0, len(ev), FLUSH_EVENTS):
                part = ev[i:i + FLUSH_EVENTS]
                start = first_tick if i == 0 else int(part["tick"][0])
                w.append(kind, start, int(part["tick"][-1]), codec.encode_events(part, start))


class Recorder:
    """Records one run of ``machine`` (freshly loaded, at tick 0) into ``path``."""

    def __init__(self, machine: Machine, guest: GuestRef, path: Path,
                 options: RecordOptions, *, on_output: Callable[[int, bytes], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 extra_metadata: dict | None = None) -> None:
        if options.checkpoint_interval <= 0 or options.keyframe_interval <= 0:
            raise ValueError("checkpoint and keyframe intervals must be positive")
        if options.keyframe_interval % options.checkpoint_interval:
            raise ValueError("the keyframe interval must be a multiple of the checkpoint interval")
        self.m = machine
        self.guest = guest
        self.path = Path(path)
        self.opt = options
        self.on_output = on_output
        self.on_progress = on_progress
        config = machine.config.to_dict()
        self.metadata = {
            "aero": aero.__version__, "events_version": EVENTS_VERSION,
            "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": config, "guest": guest.to_dict(),
            "checkpoint_interval": options.checkpoint_interval,
            "keyframe_interval": options.keyframe_interval,
            **(extra_metadata or {}),
        }
        self._digest = replay_digest(config, guest)
        self._page_frames: dict[int, int] = {}  # page hash -> ordinal of its pages frame
        pages = machine.config.ram_size // codec.PAGE
        # Per page, as of the last keyframe: its hash (None before the first) and the ordinal
        # of the pages frame holding its contents.
        self._last_hashes: np.ndarray | None = None
        self._frames = np.zeros(pages, dtype=np.uint32)
        self._pages_frames = 0
        self._inputs_logged = 0

    # ---- frames -----------------------------------------------------------------------
    def _keyframe(self, w: TraceWriter) -> None:
        m = self.m
        m.fingerprint()  # brings the page hashes up to date
        hashes = m.page_hashes()
        ram = m.ram
        # Only the pages whose hash moved since the last keyframe are looked up (a page's
        # hash is seeded with its index, so a page with its old hash has its old frame).
        hl = hashes.tolist()
        changed = (range(len(hl)) if self._last_hashes is None
                   else np.flatnonzero(hashes != self._last_hashes).tolist())
        # Contents not stored yet, by hash, in page order: RAM pages, then a writable disk's
        # overlay blocks (4 KB each too, the last one zero-padded past the image's end).
        new: dict[int, int | Callable[[], bytes]] = {}
        for i in changed:
            h = hl[i]
            if h not in self._page_frames and h not in new:
                new[h] = i
        blocks = dhashes = None
        if self.guest.disk_writable:
            blocks, dhashes = m.disk_overlay()
            size = self.guest.disk_size
            for b, h in zip(blocks.tolist(), dhashes.tolist(), strict=True):
                if h not in self._page_frames and h not in new:
                    off = b * m.DISK_BLOCK
                    new[h] = lambda off=off: m.disk_bytes(
                        off, min(m.DISK_BLOCK, size - off)).ljust(m.DISK_BLOCK, b"\0")
        todo = list(new)
        for start in range(0, len(todo), codec.PAGES_PER_FRAME):
            hs = todo[start:start + codec.PAGES_PER_FRAME]
            # RAM pages go to the compressor as views of RAM, consecutive pages as one view.
            data: list = []
            run_start = run_end = -1
            for src in (new[h] for h in hs):
                if isinstance(src, int) and src == run_end:
                    run_end += 1
                    continue
                if run_end > run_start:
                    data.append(ram[run_start * codec.PAGE:run_end * codec.PAGE])
                run_start = run_end = -1
                if isinstance(src, int):
                    run_start, run_end = src, src + 1
                else:
                    data.append(src())
            if run_end > run_start:
                data.append(ram[run_start * codec.PAGE:run_end * codec.PAGE])
            w.append(FrameKind.PAGES, m.ticks, m.ticks, codec.encode_pages_parts(hs, data))
            for h in hs:
                self._page_frames[h] = self._pages_frames
            self._pages_frames += 1
        if changed:
            pf = self._page_frames
            self._frames[np.asarray(changed, dtype=np.intp)] = [pf[hl[i]] for i in changed]
        self._last_hashes = hashes
        frames = self._frames.copy()
        overlay: dict = {}
        if blocks is not None and dhashes is not None:
            overlay = {"disk_blocks": blocks, "disk_hashes": dhashes,
                       "disk_frames": np.array([self._page_frames[int(h)]
                                                for h in dhashes.tolist()], dtype=np.uint32)}
        k = codec.Keyframe(m.ticks, m.config.ram_size, m.cpu_state_bytes(),
                           m.devices_state_bytes(), hashes, frames, self._inputs_logged,
                           **overlay)
        w.append(FrameKind.KEYFRAME, m.ticks, m.ticks, codec.encode_keyframe(k))

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> RecordResult:
        """Record until the guest stops, a limit is reached, or a stop is requested (also by
        SIGINT or SIGTERM while recording on the main thread: the trace is then closed with
        its final checkpoint and summary, stop ``interrupted``)."""
        with _StopOnSignals() as signals:
            return self._run(signals)

    def _run(self, signals: _StopOnSignals) -> RecordResult:
        m, opt = self.m, self.opt
        start = time.monotonic()
        tick_hz = m.config.tick_hz
        buf = _FrameBuffer()
        cp_ticks: list[int] = []
        cp_fps: list[int] = []
        counts = {"inputs": 0, "device": 0, "output": 0, "checkpoints": 0, "keyframes": 0}
        output = _Output()
        next_cp = opt.checkpoint_interval
        last_cp = -1  # the tick of the last checkpoint taken (the frames are flushed by then)
        written_since = 0  # where the checkpoint interval the written pages describe began
        frame_start = 0
        stop_name = "limit"
        reason = ""
        script = opt.script
        w = TraceWriter(self.path, self.metadata,
                        version=DISK_OVERLAY_VERSION if self.guest.disk_writable
                        else FORMAT_VERSION)
        try:
            if m.config.devices:
                rtc = opt.rtc_time if opt.rtc_time is not None else int(time.time())
                m.inject(Kind.RTC_TIME, 0, rtc & 0xFFFFFFFFFFFFFFFF)
            self._drain(buf, counts, output, script)
            self._keyframe(w)
            counts["keyframes"] += 1
            while True:
                now = m.ticks
                if opt.stop_requested() or signals.requested:
                    stop_name = "interrupted"
                    break
                if script is not None:
                    injected = 0
                    for kind, a, b in script.due(now):
                        m.inject(kind, a, b)
                        injected += 1
                        if injected % INJECT_BATCH == 0:
                            self._drain(buf, counts, output, script)
                if opt.interactive is not None:
                    for byte in opt.interactive():
                        m.inject(Kind.SERIAL_RX, 0, byte)
                target = next_cp
                if opt.max_ticks is not None:
                    target = min(target, opt.max_ticks)
                nt = None
                if script is not None:
                    nt = script.next_tick(now)
                    if nt is not None:
                        target = min(target, max(nt, now + 1))
                    elif script.waiting_for_output:
                        target = min(target, now + max(tick_hz // 1000, 1))
                if opt.interactive is not None or opt.realtime:
                    target = min(target, now + max(tick_hz // 200, 1))
                if target <= now:
                    stop_name = "limit"
                    break
                stop = m.run(target)
                m.take_output()  # the debug console's bytes are in the event log too
                self._drain(buf, counts, output, script)
                if m.ticks >= next_cp:
                    written = m.written_pages()  # before the fingerprint clears the marks
                    cp_ticks.append(m.ticks)
                    cp_fps.append(m.fingerprint())
                    counts["checkpoints"] += 1
                    buf.flush(w, frame_start)
                    w.append(FrameKind.CHECKPOINT, cp_ticks[0], cp_ticks[-1],
                             codec.encode_checkpoints(cp_ticks, cp_fps))
                    w.append(FrameKind.WRITTEN, written_since, m.ticks,
                             codec.encode_written(written))
                    last_cp = written_since = m.ticks
                    cp_ticks.clear()
                    cp_fps.clear()
                    frame_start = m.ticks
                    if m.ticks % opt.keyframe_interval == 0:
                        self._keyframe(w)
                        counts["keyframes"] += 1
                    next_cp += opt.checkpoint_interval
                    if self.on_progress:
                        self.on_progress(m.ticks)
                elif buf.full:
                    # An output-heavy guest: write what is buffered now (the next events
                    # are stamped at or after this tick), not at the checkpoint.
                    buf.flush(w, frame_start)
                    frame_start = m.ticks
                if opt.realtime:
                    ahead = m.ticks / tick_hz - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(min(ahead, 0.02))
                if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
                    stop_name = stop.name.lower()
                    break
                if opt.max_ticks is not None and m.ticks >= opt.max_ticks:
                    stop_name = "limit"
                    break
                if stop == StopReason.TICKS and m.next_deadline is None and m.get_regs().halted:
                    # Idle: only input can wake the guest now.
                    if opt.interactive is None and (script is None or script.finished):
                        stop_name = "idle"
                        break
                    if script is not None and script.waiting_for_output:
                        stop_name = "script-stalled"
                        reason = "the guest went idle while the input script waited for output"
                        break
                    if opt.interactive is None and nt is not None and \
                            nt - m.ticks > IDLE_HORIZON_CHECKPOINTS * opt.checkpoint_interval \
                            and (opt.max_ticks is None or opt.max_ticks > nt):
                        stop_name = "script-unreachable"
                        reason = (f"the guest is idle and the next scripted input is at tick "
                                  f"{nt:,}, more than {IDLE_HORIZON_CHECKPOINTS:,} checkpoint "
                                  f"intervals ahead")
                        break
            # The final state: a checkpoint at the last tick, then the summary.
            written = m.written_pages()
            final_fp = m.fingerprint()
            if last_cp != m.ticks:
                cp_ticks.append(m.ticks)
                cp_fps.append(final_fp)
                counts["checkpoints"] += 1
            buf.flush(w, frame_start)
            if cp_ticks:
                w.append(FrameKind.CHECKPOINT, cp_ticks[0], cp_ticks[-1],
                         codec.encode_checkpoints(cp_ticks, cp_fps))
                w.append(FrameKind.WRITTEN, written_since, m.ticks,
                         codec.encode_written(written))
            digest = self._digest.hexdigest()
            summary = {"ticks": m.ticks, "stop": stop_name, "exit_status": m.exit_status,
                       "inputs": counts["inputs"], "device_events": counts["device"],
                       "output_events": counts["output"], "checkpoints": counts["checkpoints"],
                       "keyframes": counts["keyframes"], "final_fingerprint": f"{final_fp:016x}",
                       "digest": digest}
            if reason:
                summary["reason"] = reason
            w.append(FrameKind.SUMMARY, m.ticks, m.ticks, codec.encode_json(summary))
            w.close()
        except BaseException:
            w.abandon()
            raise
        return RecordResult(self.path, m.ticks, stop_name, m.exit_status, counts["inputs"],
                            counts["device"], counts["output"], counts["checkpoints"],
                            counts["keyframes"], digest, bytes(output.kept),
                            time.monotonic() - start, output.total, reason)

    def _drain(self, buf: _FrameBuffer, counts: dict[str, int], output: _Output,
               script: ScriptRunner | None) -> None:
        events = self.m.take_events()
        if not len(events):
            return
        inputs, device, outputs = buf.add(events)
        if len(inputs):
            digest_update(self._digest, inputs)
            self._inputs_logged += len(inputs)
        counts["inputs"] += len(inputs)
        counts["device"] += len(device)
        counts["output"] += len(outputs)
        shown = outputs[(outputs["a"] == Channel.COM1) | (outputs["a"] == Channel.DEBUGCON)]
        if len(shown):
            data = shown["b"].astype(np.uint8).tobytes()
            output.add(data)
            if script is not None:
                script.feed(data)
            if self.on_output is not None:
                self.on_output(int(shown["tick"][-1]), data)


class _Output:
    """The guest's output bytes: the first OUTPUT_KEEP kept, all counted."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = OUTPUT_KEEP - len(self.kept)
        if room > 0:
            self.kept += data[:room]


class _StopOnSignals:
    """While recording on the main thread, SIGINT, SIGTERM and SIGHUP set :attr:`requested` instead
    of interrupting: the recorder notices between two slices, so the trace is closed with
    its final checkpoint and summary. The previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: list[tuple[int, object]] = []

    def _handler(self, _sig: int, _frame: object) -> None:
        self.requested = True

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._saved.append((sig, signal.signal(sig, self._handler)))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved:
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved.clear()
