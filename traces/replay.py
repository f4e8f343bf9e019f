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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from aero.traces import codec
from aero.traces.container import FrameKind, TraceError, TraceFile
from aero.traces.record import digest_update, replay_digest

from aero.events import EVENT_DTYPE, INPUT_LIMIT, Channel, Kind, describe
from aero.launch import GuestRef, LaunchError, find_image, find_image_by_hash, start_machine
from aero.machine import Machine, MachineConfig, StopReason

__all__ = ["Divergence", "ReplayError", "ReplayObserver", "ReplayResult", "Replayer",
           "TraceContents", "guest_image", "guest_images", "load_contents", "restore_keyframe",
           "seek"]


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
    output: bytes = b""
    complete: bool = True  # False: stopped by --until before the trace's end

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
                "elapsed_seconds": round(self.elapsed, 3), "complete": self.complete}


@dataclass
class TraceContents:
    """A trace's decoded streams (events as EVENT_DTYPE arrays)."""

    trace: TraceFile
    config: MachineConfig
    guest: GuestRef
    inputs: np.ndarray
    device: np.ndarray
    output: np.ndarray
    cp_ticks: np.ndarray
    cp_fps: np.ndarray
    keyframes: list  # Frame headers of keyframes, in tick order
    summary: dict | None
    images: dict[str, bytes] = field(default_factory=dict)  # sha256 -> embedded image

    @property
    def end_tick(self) -> int:
        if self.summary is not None:
            return int(self.summary["ticks"])
        # A recorder that was killed: what is verified ends at the last checkpoint.
        return int(self.cp_ticks[-1]) if len(self.cp_ticks) else 0

    def digest(self) -> str:
        h = replay_digest(self.config.to_dict(), self.guest)
        digest_update(h, self.inputs)
        return h.hexdigest()


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)


def load_contents(trace: TraceFile) -> TraceContents:
    """Decode everything but keyframes and pages (those are read on demand)."""
    meta = trace.metadata
    try:
        config = MachineConfig.from_dict(meta["machine"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{trace.path}: bad machine configuration in the metadata ({exc})") \
            from None
    try:
        guest = GuestRef.from_dict(meta.get("guest"))
    except LaunchError as exc:
        raise ReplayError(f"{trace.path}: {exc}") from None
    streams: dict[int, list[np.ndarray]] = {FrameKind.INPUT: [], FrameKind.DEVICE: [],
                                            FrameKind.OUTPUT: []}
    cps: list[tuple[np.ndarray, np.ndarray]] = []
    keyframes = []
    summary = None
    images: dict[str, bytes] = {}
    for f in trace.frames:
        if f.kind in streams:
            ev = codec.decode_events(trace.read(f), f)
            is_input = ev["kind"] < INPUT_LIMIT
            if (f.kind == FrameKind.INPUT) != bool(np.all(is_input)) or \
                    (f.kind == FrameKind.OUTPUT and not np.all(ev["kind"] == Kind.OUTPUT)):
                raise TraceError(f"{trace.path}: damaged {f.kind_name} frame at offset "
                                 f"{f.offset} (events of the wrong kind)")
            streams[f.kind].append(ev)
        elif f.kind == FrameKind.CHECKPOINT:
            cps.append(codec.decode_checkpoints(trace.read(f), f))
        elif f.kind == FrameKind.KEYFRAME:
            keyframes.append(f)
        elif f.kind == FrameKind.SUMMARY:
            summary = codec.decode_json(trace.read(f), f, "summary")
        elif f.kind == FrameKind.IMAGE:
            head, data = codec.decode_image(trace.read(f), f)
            images[str(head["sha256"])] = data
    inputs, device, output = (_concat(streams[k]) for k in
                              (FrameKind.INPUT, FrameKind.DEVICE, FrameKind.OUTPUT))
    for arr, name in ((inputs, "input"), (device, "device"), (output, "output")):
        if len(arr) > 1 and np.any(np.diff(arr["tick"].astype(np.int64)) < 0):
            raise TraceError(f"{trace.path}: {name} events out of order")
    cp_ticks = np.concatenate([c[0] for c in cps]) if cps else np.zeros(0, np.uint64)
    cp_fps = np.concatenate([c[1] for c in cps]) if cps else np.zeros(0, np.uint64)
    if len(cp_ticks) > 1 and np.any(np.diff(cp_ticks.astype(np.int64)) <= 0):
        raise TraceError(f"{trace.path}: checkpoints out of order")
    return TraceContents(trace, config, guest, inputs, device, output, cp_ticks, cp_fps,
                         keyframes, summary, images)


def guest_image(c: TraceContents) -> bytes:
    """The guest image: embedded in the trace, else from the local image store."""
    data = c.images.get(c.guest.sha256) or find_image(c.guest)
    if data is None:
        raise ReplayError(f"guest image {c.guest.name} (sha256 {c.guest.sha256[:16]}...) is "
                          f"neither in the trace nor in the image store; run `aero pack` on "
                          f"the machine that recorded it")
    return data


def guest_images(c: TraceContents) -> dict[str, bytes]:
    """Every image the guest needs (the guest image and, for Linux, the initrd), by SHA-256:
    embedded in the trace, else from the local image store."""
    images = {c.guest.sha256: guest_image(c)}
    for h in c.guest.image_hashes()[1:]:
        data = c.images.get(h) or find_image_by_hash(h)
        if data is None:
            raise ReplayError(f"the initrd of {c.guest.name} (sha256 {h[:16]}...) is neither in "
                              f"the trace nor in the image store; run `aero pack` on the "
                              f"machine that recorded it")
        images[h] = data
    return images


def restore_keyframe(c: TraceContents, kf_frame, machine: Machine | None = None) -> tuple[
        Machine, codec.Keyframe]:
    """A machine in the state of a keyframe."""
    k = codec.decode_keyframe(c.trace.read(kf_frame), kf_frame)
    if k.ram_size != c.config.ram_size:
        raise TraceError(f"{c.trace.path}: keyframe at tick {k.tick} has the wrong RAM size")
    pages_frames = list(c.trace.of_kind(FrameKind.PAGES))
    cache: dict[int, dict[int, bytes]] = {}
    ram = bytearray(k.ram_size)
    for i, (h, j) in enumerate(zip(k.hashes.tolist(), k.page_frames.tolist(), strict=True)):
        if j >= len(pages_frames):
            raise TraceError(f"{c.trace.path}: keyframe at tick {k.tick} names a missing "
                             f"pages frame")
        if j not in cache:
            cache[j] = codec.decode_pages(c.trace.read(pages_frames[j]), pages_frames[j])
        data = cache[j].get(h)
        if data is None:
            raise TraceError(f"{c.trace.path}: page {i} of the keyframe at tick {k.tick} is "
                             f"missing")
        ram[i * codec.PAGE:(i + 1) * codec.PAGE] = data
    m = machine or Machine(c.config)
    try:
        m.restore(codec.snapshot_bytes(k, bytes(ram)))
    except ValueError:
        raise TraceError(f"{c.trace.path}: keyframe at tick {k.tick} does not restore") from None
    m.fingerprint()
    if not np.array_equal(m.page_hashes(), k.hashes):
        raise TraceError(f"{c.trace.path}: keyframe at tick {k.tick}: page contents do not "
                         f"match their hashes")
    return m, k


def seek(c: TraceContents, tick: int) -> tuple[Machine, int]:
    """A machine at ``tick`` (restored from the nearest keyframe at or before it, then run
    forward with the trace's inputs). As at a checkpoint, the inputs stamped ``tick`` are
    not applied yet. Returns (machine, index of the next input event to inject)."""
    kfs = [f for f in c.keyframes if f.first_tick <= tick]
    if not kfs:
        raise ReplayError(f"no keyframe at or before tick {tick}")
    m, k = restore_keyframe(c, kfs[-1])
    i = k.inputs_before
    inputs = c.inputs
    n = len(inputs)
    while True:
        while i < n and int(inputs["tick"][i]) == m.ticks and m.ticks < tick:
            m.inject(int(inputs["kind"][i]), int(inputs["a"][i]), int(inputs["b"][i]))
            i += 1
        if m.ticks >= tick:
            break
        target = min(tick, int(inputs["tick"][i])) if i < n else tick
        stop = m.run(target)
        m.take_events()
        m.take_output()
        if stop in (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT):
            break
    return m, i


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
        inputs, cp_ticks, cp_fps = c.inputs, c.cp_ticks, c.cp_fps
        expect_dev, expect_out = c.device, c.output
        i_in = i_cp = i_dev = i_out = 0
        verified = 0
        divergence: Divergence | None = None
        output = bytearray()
        tick_hz = m.config.tick_hz
        stop = StopReason.TICKS
        step = observer is not None and observer.per_instruction
        if observer is not None:
            observer.start(m, c)

        def check(produced: np.ndarray, expected: np.ndarray, pos: int, what: str) -> int:
            nonlocal divergence, verified
            n = len(produced)
            exp = expected[pos:pos + n]
            if len(exp) == n and np.array_equal(produced, exp):
                verified += n
                return pos + n
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
            return pos + k

        while divergence is None:
            now = m.ticks
            while i_in < len(inputs) and int(inputs["tick"][i_in]) == now and now < end:
                m.inject(int(inputs["kind"][i_in]), int(inputs["a"][i_in]),
                         int(inputs["b"][i_in]))
                i_in += 1
            if i_in < len(inputs) and int(inputs["tick"][i_in]) < now:
                divergence = Divergence(int(inputs["tick"][i_in]), "stop",
                                        f"the machine passed tick {int(inputs['tick'][i_in])} "
                                        f"without stopping there (it is at {now})")
                break
            target = end
            if i_in < len(inputs):
                target = min(target, int(inputs["tick"][i_in]))
            if i_cp < len(cp_ticks):
                target = min(target, int(cp_ticks[i_cp]))
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
            dev = produced[produced["kind"] != Kind.OUTPUT]
            out = produced[produced["kind"] == Kind.OUTPUT]
            i_dev = check(dev, expect_dev, i_dev, "event")
            i_out = check(out, expect_out, i_out, "output")
            if len(out):
                shown = out[(out["a"] == Channel.COM1) | (out["a"] == Channel.DEBUGCON)]
                data = shown["b"].astype(np.uint8).tobytes()
                output += data
                if on_output and data:
                    on_output(int(out["tick"][-1]), data)
            if divergence is not None:
                break
            while i_cp < len(cp_ticks) and int(cp_ticks[i_cp]) == m.ticks:
                fp = m.fingerprint()
                if fp != int(cp_fps[i_cp]):
                    divergence = Divergence(m.ticks, "checkpoint",
                                            f"state fingerprint {fp:016x}, the trace has "
                                            f"{int(cp_fps[i_cp]):016x}")
                    break
                i_cp += 1
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
            for arr, pos, what in ((expect_dev, i_dev, "event"), (expect_out, i_out, "output")):
                rest = arr[pos:]
                missing = rest[rest["tick"] <= reached] if len(rest) else rest
                if len(missing):
                    divergence = Divergence(int(missing[0]["tick"]), what,
                                            f"the trace has {_show(missing[0])}, which the "
                                            f"replay never produced")
                    break
            if divergence is None and until is None and c.summary is not None and \
                    m.ticks != c.end_tick:
                divergence = Divergence(m.ticks, "stop",
                                        f"the replay stopped ({stop.name.lower()}) at tick "
                                        f"{m.ticks}; the recording ran to {c.end_tick}")
        result = ReplayResult(m.ticks, i_cp, verified, i_in, divergence,
                              stop.name.lower(), m.exit_status, time.monotonic() - start,
                              bytes(output), complete=until is None or until >= c.end_tick)
        if observer is not None:
            observer.end(m, result)
        return result


def _show(e: np.void | None) -> str:
    if e is None:
        return "nothing"
    return describe(int(e["tick"]), int(e["kind"]), int(e["a"]), int(e["b"])).strip()
