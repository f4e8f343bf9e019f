"""``aero bisect``: the first instruction that another configuration or another build of aero
executes differently on a trace, and the smallest set of inputs that still makes a check fail.

* Configurations and builds: the trace's keyframes cut it into intervals. An interval is
  *bad* when re-executing it from its keyframe under the other configuration (or build) does
  not reach the fingerprint the trace recorded at its end. Binary search finds the first bad
  interval with O(log intervals) interval replays, assuming that once the other side has
  diverged every later interval is bad too (the usual case: the difference is felt again,
  e.g. a clock rate or a feature the guest keeps using); ``linear=True`` checks the intervals
  in order instead, exact without that assumption, at the cost of one replay of the trace.
  Inside the bad interval the first differing tick is found as ``aero diff`` does.
* Inputs: ddmin (Zeller and Hildebrandt, 2002) over the input events, each candidate run on
  a fresh machine; the minimal set is recorded into a new trace that replays cleanly.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from aero.traces.diff import (
    DEFAULT_CHUNK,
    DiffError,
    Runner,
    compare_states,
    describe_step,
    first_divergent_tick,
    instruction_at,
    open_contents,
    restore_at_keyframe,
)
from aero.traces.replay import TraceContents, guest_image

from aero.events import Channel, Kind
from aero.launch import LaunchError, start_machine
from aero.machine import MachineConfig

__all__ = ["BisectError", "Interval", "OtherBuild", "Outcome", "Predicate", "bisect_build",
           "bisect_config", "builtin_oracle", "ddmin", "execute", "fingerprints_at", "intervals",
           "minimize_inputs", "parse_settings", "record_inputs", "recorded_fingerprint"]

# A predicate over a trace whose input stream has been replaced by a candidate subset:
# True when the failure is still there.
Predicate = Callable[[TraceContents], bool]


class BisectError(DiffError):
    """A bisection that cannot be done (bad setting, unknown oracle, the other build fails)."""


# ---- configurations -------------------------------------------------------------------------

def parse_settings(base: MachineConfig, settings: list[str]) -> MachineConfig:
    """``key=value`` settings over a configuration (tuples comma-separated, ints in any base)."""
    kinds = {f.name: f for f in fields(MachineConfig)}
    values: dict[str, object] = {}
    for s in settings:
        key, sep, text = s.partition("=")
        key = key.strip()
        if not sep or key not in kinds:
            raise BisectError(f"--set takes key=value with a machine configuration key "
                              f"({', '.join(kinds)}), not {s!r}")
        if key == "ram_size":
            raise BisectError("ram_size cannot change: the trace's keyframes fix the RAM size")
        current = getattr(base, key)
        try:
            if isinstance(current, bool):
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(text)
                values[key] = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                values[key] = int(text.replace("_", ""), 0)
            elif isinstance(current, tuple):
                items = [x.strip() for x in text.split(",") if x.strip()]
                values[key] = tuple(int(x, 0) for x in items) if key == "post_ports" \
                    else tuple(items)
            else:
                values[key] = text
        except ValueError:
            raise BisectError(f"--set {key}: bad value {text!r}") from None
    try:
        return dataclasses.replace(base, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BisectError(str(exc)) from None


@dataclass
class Interval:
    index: int
    start: int  # keyframe tick
    end: int  # the next keyframe's tick, or the trace's end
    frame: object  # the keyframe's frame header


def intervals(c: TraceContents) -> list[Interval]:
    kfs = sorted(c.keyframes, key=lambda f: f.first_tick)
    out = []
    for i, f in enumerate(kfs):
        end = kfs[i + 1].first_tick if i + 1 < len(kfs) else c.end_tick
        if end > f.first_tick:
            out.append(Interval(i, f.first_tick, end, f))
    return out


def recorded_fingerprint(c: TraceContents, tick: int) -> int | None:
    k = np.flatnonzero(c.cp_ticks == tick)
    return int(c.cp_fps[k[0]]) if len(k) else None


def fingerprints_at(c: TraceContents, ticks: list[int], config: MachineConfig | None = None,
                    save_dir: Path | None = None) -> list[dict]:
    """The fingerprint at each tick, each reached from the latest keyframe strictly before
    it (tick 0: the first keyframe itself), under ``config``. One forward pass per keyframe
    interval. With ``save_dir``, a snapshot file ``<tick>.aerosnap`` of each state."""
    from aero.traces.snapshot import save_snapshot

    kfs = sorted(c.keyframes, key=lambda f: f.first_tick)
    if not kfs:
        raise BisectError("the trace has no keyframe")
    out = []
    runner: Runner | None = None
    current = None
    for t in sorted(set(ticks)):
        before = [f for f in kfs if f.first_tick < t] or kfs[:1]
        frame = before[-1]
        if runner is None or current is not frame or runner.m.ticks > t:
            runner = restore_at_keyframe(c, frame, config)
            current = frame
        runner.advance(t)
        out.append({"tick": t, "reached": runner.m.ticks,
                    "fingerprint": f"{runner.m.fingerprint():016x}"})
        if save_dir is not None:
            save_snapshot(runner.m, Path(save_dir) / f"{t}.aerosnap", c.guest)
    return out


class OtherBuild:
    """Another aero installation, run as ``PREFIX fingerprints TRACE --at ... --json``."""

    def __init__(self, prefix: list[str], trace: Path, timeout: float = 3600) -> None:
        self.prefix, self.trace, self.timeout = prefix, trace, timeout

    def fingerprints(self, ticks: list[int], save_dir: Path | None = None) -> dict[int, tuple[
            int, int]]:
        cmd = [*self.prefix, "fingerprints", str(self.trace), "--at",
               ",".join(str(t) for t in ticks), "--json"]
        if save_dir is not None:
            cmd += ["--save-dir", str(save_dir)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BisectError(f"cannot run the other build ({' '.join(self.prefix)}): {exc}") \
                from None
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise BisectError(f"the other build failed (exit {p.returncode}): {err}")
        try:
            rows = json.loads(p.stdout)["fingerprints"]
            return {int(r["tick"]): (int(r["reached"]), int(r["fingerprint"], 16)) for r in rows}
        except (ValueError, KeyError, TypeError):
            raise BisectError("the other build's answer is not `aero fingerprints --json` "
                              "output") from None


def _find_bad(ivs: list[Interval], bad: Callable[[Interval], bool], linear: bool) -> tuple[
        Interval | None, int]:
    """The first bad interval (binary search, or in order with ``linear``) and the probes."""
    probes = 0
    if linear:
        for iv in ivs:
            probes += 1
            if bad(iv):
                return iv, probes
        return None, probes
    probes += 1
    if not ivs or not bad(ivs[-1]):
        return None, probes
    lo, hi = 0, len(ivs) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        if bad(ivs[mid]):
            hi = mid
        else:
            lo = mid + 1
    return ivs[lo], probes


def _reference_fp(c: TraceContents, iv: Interval) -> tuple[int, int]:
    fp = recorded_fingerprint(c, iv.end)
    if fp is not None:
        return iv.end, fp
    r = fingerprints_at(c, [iv.end])[0]
    return int(r["reached"]), int(r["fingerprint"], 16)


def bisect_config(path: Path, settings: list[str], *, linear: bool = False,
                  chunk: int | None = None) -> dict:
    """Replay the trace under the trace's configuration with ``settings`` applied: the first
    tick and instruction whose state differs."""
    c = open_contents(path)
    other = parse_settings(c.config, settings)
    ivs = intervals(c)

    def bad(iv: Interval) -> bool:
        r = restore_at_keyframe(c, iv.frame, other)
        r.advance(iv.end)
        return (r.m.ticks, r.m.fingerprint()) != _reference_fp(c, iv)

    iv, probes = _find_bad(ivs, bad, linear)
    report: dict = {"trace": str(path), "mode": "config", "other": settings,
                    "config": {k: [v, other.to_dict()[k]] for k, v in c.config.to_dict().items()
                               if other.to_dict()[k] != v},
                    "intervals": len(ivs), "probes": probes, "search": "linear" if linear
                    else "binary", "identical": iv is None, "first_divergence": None}
    if iv is None:
        return report
    report["interval"] = {"index": iv.index, "start": iv.start, "end": iv.end}
    ra, rb = restore_at_keyframe(c, iv.frame), restore_at_keyframe(c, iv.frame, other)
    step = chunk or DEFAULT_CHUNK
    t = first_divergent_tick(ra, rb, iv.end, step)
    if t is None:
        raise BisectError(f"interval {iv.start}..{iv.end} differs from the trace under its own "
                          f"configuration too: this build does not reproduce the trace "
                          f"(run aero replay)")
    report["first_divergence"] = describe_step(ra, rb, t)
    report["identical"] = False
    return report


def bisect_build(path: Path, prefix: list[str], *, linear: bool = False, ways: int = 16) -> dict:
    """Have another aero installation (a command prefix) re-execute the trace; the first tick
    whose fingerprint it computes differently, narrowed by ``ways``-ary search over requested
    fingerprints (one forward pass per round on each side)."""
    from aero.traces.snapshot import SnapshotError, load_snapshot

    c = open_contents(path)
    ivs = intervals(c)
    other = OtherBuild(prefix, Path(path))

    def bad(iv: Interval) -> bool:
        return other.fingerprints([iv.end])[iv.end] != _reference_fp(c, iv)

    iv, probes = _find_bad(ivs, bad, linear)
    report: dict = {"trace": str(path), "mode": "build", "other": " ".join(prefix),
                    "intervals": len(ivs), "probes": probes,
                    "search": "linear" if linear else "binary", "identical": iv is None,
                    "first_divergence": None}
    if iv is None:
        return report
    report["interval"] = {"index": iv.index, "start": iv.start, "end": iv.end}
    lo, hi = iv.start, iv.end
    rounds = 0
    while hi - lo > 1:
        rounds += 1
        pts = sorted({lo + (hi - lo) * k // ways for k in range(1, ways)} - {lo} | {hi})
        theirs = other.fingerprints(pts)
        ours = {r["tick"]: (r["reached"], int(r["fingerprint"], 16))
                for r in fingerprints_at(c, pts)}
        first = next((t for t in pts if theirs.get(t) != ours[t]), hi)
        prev = [t for t in pts if t < first]
        lo, hi = (prev[-1] if prev else lo), first
    t = hi
    report["rounds"] = rounds
    with tempfile.TemporaryDirectory(prefix="aero-bisect-") as tmp:
        other.fingerprints([t - 1, t] if t > 0 else [t], Path(tmp))
        try:
            mb_before, _ = load_snapshot(Path(tmp) / f"{t - 1}.aerosnap")
            mb_after, _ = load_snapshot(Path(tmp) / f"{t}.aerosnap")
        except (SnapshotError, OSError) as exc:
            raise BisectError(f"cannot read the other build's snapshots: {exc}") from None
    ra = restore_at_keyframe(c, iv.frame)
    ra.advance(t - 1)
    ia = ra.pending_inputs()
    before = [instruction_at(ra.m), instruction_at(mb_before)]
    ra.advance(t)
    fd = {"tick": t, "cause": "execution", "eip": [before[0]["eip"], before[1]["eip"]],
          "instruction": {"a": before[0], "b": before[1]},
          "inputs": {"a": [list(e) for e in ia], "b": [list(e) for e in ia]}}
    fd.update(compare_states(ra.m, mb_after))
    report["first_divergence"] = fd
    report["identical"] = False
    return report


# ---- inputs ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    """How a run with some inputs ended."""

    ticks: int
    stop: str
    exit_status: int | None
    output: bytes  # COM1 and debug-console bytes


def execute(c: TraceContents, *, max_ticks: int | None = None) -> Outcome:
    """Run the trace's guest on a fresh machine with ``c.inputs`` at their ticks, until it
    exits, shuts down or halts for good, goes idle after its last input, or reaches the
    trace's end tick (``max_ticks``)."""
    try:
        m = start_machine(c.config, c.guest, guest_image(c), c.images)
    except LaunchError as exc:
        raise BisectError(str(exc)) from None
    end = c.end_tick if max_ticks is None else max_ticks
    r = Runner(m, c.inputs, 0)
    out = bytearray()
    stop = "limit"
    last_input = int(c.inputs["tick"][-1]) if len(c.inputs) else 0
    while m.ticks < end:
        nxt = int(r.inputs["tick"][r.i]) if r.i < len(r.inputs) else end
        r.advance(min(end, max(nxt, m.ticks + 1), m.ticks + 10_000_000))
        ev = r.take_logged()
        shown = ev[(ev["kind"] == Kind.OUTPUT) & ((ev["a"] == Channel.COM1) |
                                                  (ev["a"] == Channel.DEBUGCON))]
        out += shown["b"].astype(np.uint8).tobytes()
        if r.stopped:
            stop = "exit" if m.exit_status is not None else "stopped"
            break
        if m.ticks >= last_input and r.i >= len(r.inputs) and m.next_deadline is None and \
                m.get_regs().halted:
            stop = "idle"
            break
    return Outcome(m.ticks, stop, m.exit_status, bytes(out))


def builtin_oracle(name: str) -> Predicate | None:
    """``output-contains:TEXT`` (COM1 or debug-console output contains TEXT) and
    ``exit-status:N`` (the debug-exit status, ``(value << 1) | 1`` as traces record it, is N)."""
    kind, sep, arg = name.partition(":")
    if not sep:
        return None
    if kind == "output-contains":
        text = arg.encode("utf-8").decode("unicode_escape").encode("latin-1")
        return lambda c: text in execute(c).output
    if kind == "exit-status":
        try:
            n = int(arg, 0)
        except ValueError:
            raise BisectError(f"exit-status needs an integer, not {arg!r}") from None
        return lambda c: execute(c).exit_status == n
    return None


def ddmin(n: int, fails: Callable[[list[int]], bool]) -> tuple[list[int], int]:
    """A 1-minimal subset of range(n) on which ``fails`` holds (``fails(range(n))`` must);
    returns it and the number of distinct tests."""
    cache: dict[tuple[int, ...], bool] = {}

    def test(s: list[int]) -> bool:
        key = tuple(s)
        if key not in cache:
            cache[key] = fails(s)
        return cache[key]

    cur = list(range(n))
    parts = 2
    while len(cur) >= 2:
        size = len(cur) / parts
        chunks = [cur[round(i * size):round((i + 1) * size)] for i in range(parts)]
        chunks = [ch for ch in chunks if ch]
        reduced = False
        for ch in chunks:
            if test(ch):
                cur, parts, reduced = ch, 2, True
                break
        if not reduced and parts > 2:
            for ch in chunks:
                rest = [x for x in cur if x not in set(ch)]
                if test(rest):
                    cur, parts, reduced = rest, max(parts - 1, 2), True
                    break
        if not reduced and parts == 2 and len(chunks) == 2:
            for ch in chunks:
                rest = [x for x in cur if x not in set(ch)]
                if rest != cur and test(rest):
                    cur, parts, reduced = rest, 2, True
                    break
        if not reduced:
            if parts >= len(cur):
                break
            parts = min(2 * parts, len(cur))
    if len(cur) == 1 and test([]):
        cur = []
    return cur, len(cache)


def _fixed(c: TraceContents) -> np.ndarray:
    """Inputs that are part of the machine's set-up, never removed: the RTC time at tick 0."""
    return (c.inputs["kind"] == Kind.RTC_TIME) & (c.inputs["tick"] == 0)


def minimize_inputs(path: Path, predicate: Predicate, out: Path) -> dict:
    """ddmin over the trace's inputs; the kept ones are recorded into ``out``."""
    c = open_contents(path)
    fixed = _fixed(c)
    movable = np.flatnonzero(~fixed)
    base = np.flatnonzero(fixed)

    def candidate(keep: list[int]) -> TraceContents:
        idx = np.sort(np.concatenate([base, movable[keep]]).astype(np.int64))
        return c.with_inputs(c.inputs[idx])

    if not predicate(candidate(list(range(len(movable))))):
        raise BisectError("the oracle does not fail on the trace's own inputs: nothing to "
                          "minimize")
    keep, tests = ddmin(len(movable), lambda k: predicate(candidate(k)))
    minimal = candidate(keep)
    rec = record_inputs(minimal, out)
    from aero.traces.container import open_trace
    from aero.traces.replay import Replayer, load_contents

    mc = load_contents(open_trace(out))
    replay = Replayer(mc).run()
    return {"trace": str(path), "output": str(out), "inputs": int(len(c.inputs)),
            "kept": int(len(minimal.inputs)), "fixed": int(len(base)), "tests": tests,
            "kept_events": [{"tick": int(e["tick"]), "kind": int(e["kind"]), "a": int(e["a"]),
                             "b": int(e["b"])} for e in minimal.inputs],
            "record": rec, "replays_cleanly": not replay.diverged,
            "still_fails": bool(predicate(mc))}


def record_inputs(c: TraceContents, out: Path) -> dict:
    """Record a new trace of ``c``'s guest fed exactly ``c.inputs`` (at their ticks)."""
    from aero.traces.record import Recorder, RecordOptions
    from aero.traces.script import ScriptRunner

    m = start_machine(c.config, c.guest, guest_image(c), c.images)
    inputs = c.inputs
    fixed = _fixed(c)
    rtc = [int(e["b"]) for e in inputs[fixed]]
    if c.config.devices and not rtc:
        raise BisectError("the trace has no RTC time input at tick 0")
    queue = [(int(e["tick"]), int(e["kind"]), int(e["a"]), int(e["b"])) for e in inputs[~fixed]]
    script = ScriptRunner([], 1, 1, _queue=queue)
    meta = c.trace.metadata
    opt = RecordOptions(max_ticks=c.end_tick, rtc_time=rtc[0] if rtc else None, script=script,
                        checkpoint_interval=int(meta.get("checkpoint_interval") or 10_000_000),
                        keyframe_interval=int(meta.get("keyframe_interval") or 200_000_000))
    res = Recorder(m, c.guest, out, opt, extra_metadata={"minimized_from": str(c.trace.path)}
                   ).run()
    return {"ticks": res.ticks, "stop": res.stop, "exit_status": res.exit_status,
            "inputs": res.inputs}

