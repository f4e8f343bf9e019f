"""``aero bench`` figures for record and replay: recording overhead against a plain run,
replay speed against recording, trace bytes per input event and per million ticks, and the
time to seek to a tick.

Method (also in the JSON report under ``"method"``):

* CPU-bound: the ``bench_memcpy`` kernel sized to about ``ticks`` instructions. A plain run
  is ``Machine.run`` to the end; a recording is :class:`aero.traces.record.Recorder` with the
  default checkpoint and keyframe intervals; a replay is
  :class:`aero.traces.replay.Replayer` verifying it.
  The three run back to back in each repetition (plain, record, replay, plain, ...); each
  figure is the median, and the overhead and the replay speed are medians of the
  per-repetition ratios, with their spread (:mod:`aero.bench.stats`; perf_counter).
* Input-heavy: the ``demo`` guest driven by ``guests/demo.script``: trace bytes per input
  event (stored bytes of input frames / input events) and per million ticks (whole file).
* Seek: :func:`aero.traces.replay.seek` to a tick right after a keyframe and to the tick just before
  the next keyframe (the worst case: a whole keyframe interval to execute), on the CPU-bound
  trace opened from its index.
* Pinpoint: two recordings of the ``bench_memcpy`` kernel sized to about 100 million ticks
  (default intervals), the second with one serial byte injected at 90 % of the run; the time
  of ``aero diff A B --json`` as a subprocess, end to end (interpreter start included), to
  report the first divergent tick and instruction.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from aero.bench import stats
from aero.traces.container import FrameKind, open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, load_contents, seek
from aero.traces.script import ScriptRunner, load

from aero import guests
from aero.launch import GuestRef, resolve_guest, start_machine, store_image
from aero.machine import MachineConfig, StopReason

__all__ = ["RAM", "RTC", "pinpoint", "print_report", "run"]

RAM = 32 << 20
RTC = 1_790_000_000


def _memcpy_image(ticks: int) -> tuple[GuestRef, bytes]:
    from aero.bench.workloads import instruction_model

    a, b = instruction_model("bench_memcpy")
    iters = max(1, (ticks - a) // b)
    image = guests.build("bench_memcpy", {"ITERS": iters})
    return resolve_guest(str(image.path), "multiboot")


def _plain(ref: GuestRef, data: bytes) -> tuple[float, int]:
    m = start_machine(MachineConfig(ram_size=RAM), ref, data)
    t = time.perf_counter()
    while m.run(1 << 62) in (StopReason.EVENTS, StopReason.OUTPUT):
        m.take_events()
        m.take_output()
    return time.perf_counter() - t, m.ticks


def _record(ref: GuestRef, data: bytes, path: Path, script: ScriptRunner | None = None,
            opts: dict | None = None) -> tuple[float, object]:
    m = start_machine(MachineConfig(ram_size=RAM), ref, data)
    rec = Recorder(m, ref, path, RecordOptions(rtc_time=RTC, script=script, **(opts or {})))
    t = time.perf_counter()
    res = rec.run()
    return time.perf_counter() - t, res


def _replay(path: Path) -> tuple[float, object]:
    c = load_contents(open_trace(path))
    rep = Replayer(c)
    t = time.perf_counter()
    res = rep.run()
    elapsed = time.perf_counter() - t
    if res.diverged:
        raise RuntimeError(f"bench replay diverged: {res.divergence}")
    return elapsed, res


def pinpoint(ticks: int = 100_000_000, root: Path | None = None) -> dict[str, object]:
    """The time ``aero diff`` takes to pinpoint a divergence late in a ``ticks``-tick trace."""
    import json
    import os
    import subprocess
    import sys

    from aero.traces.script import parse

    ref, data = _memcpy_image(ticks)
    store_image(data)
    with tempfile.TemporaryDirectory(prefix="aero-pinpoint-") as tmp:
        base = root or Path(tmp)
        a, b = base / "pinpoint-a.aerotrace", base / "pinpoint-b.aerotrace"
        _, res = _record(ref, data, a)
        late = res.ticks * 9 // 10  # type: ignore[attr-defined]
        tick_hz = MachineConfig().tick_hz
        runner = ScriptRunner.paced(parse(f'at {late} serial "x"'), tick_hz)
        _record(ref, data, b, runner)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "aero.cli", "diff", str(a), str(b), "--json"],
                           capture_output=True, text=True, env=env, timeout=600)
        elapsed = time.perf_counter() - t
        if p.returncode != 1:
            raise RuntimeError(f"bench diff failed (exit {p.returncode}): {p.stderr.strip()}")
        fd = json.loads(p.stdout)["first_divergence"]
        return {"ticks": res.ticks, "injected_at": late,  # type: ignore[attr-defined]
                "first_divergent_tick": fd["tick"], "seconds": round(elapsed, 3),
                "target_seconds": 10}


def run(ticks: int, repetitions: int, log=lambda _m: None) -> dict[str, object]:
    ref, data = _memcpy_image(ticks)
    store_image(data)
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="aero-bench-") as tmp:
        root = Path(tmp)
        log(f"record/replay: plain run, recording and replay of {ticks:,} ticks, "
            f"{repetitions} interleaved repetitions")
        trace = root / "cpu.aerotrace"
        plains, recs, reps = [], [], []
        for i in range(repetitions):  # plain, record, replay back to back: P R Y P R Y ...
            log(f"record/replay: repetition {i + 1}/{repetitions}")
            plains.append(_plain(ref, data)[0])
            recs.append(_record(ref, data, trace)[0])
            reps.append(_replay(trace)[0])
        plain_s, rec_s, rep_s = stats.sample(plains), stats.sample(recs), stats.sample(reps)
        overhead = stats.ratio(recs, plains)  # record time / plain time
        replay_speed = stats.ratio(recs, reps)  # replay speed / record speed
        info = open_trace(trace)
        c = load_contents(info)
        size = trace.stat().st_size
        out["cpu"] = {
            "guest": "bench_memcpy", "ticks": c.end_tick,
            "plain_seconds": round(plain_s.median, 4),
            "record_seconds": round(rec_s.median, 4), "replay_seconds": round(rep_s.median, 4),
            "record_overhead_percent": round(100 * (overhead.median - 1), 2),
            "replay_speed_percent_of_record": round(100 * replay_speed.median, 1),
            "record_overhead": overhead.to_dict(), "replay_speed": replay_speed.to_dict(),
            "timings": {"plain": plain_s.to_dict(), "record": rec_s.to_dict(),
                        "replay": rep_s.to_dict()},
            "plain_mips": round(c.end_tick / plain_s.median / 1e6, 1),
            "trace_bytes": size, "bytes_per_million_ticks": round(size / (c.end_tick / 1e6), 1),
            "checkpoints": len(c.cp_ticks), "keyframes": len(c.keyframes),
        }
        # Seek: right after a keyframe, and just before the next one.
        kf = [f.first_tick for f in c.keyframes]
        if len(kf) >= 2:
            fast_c = load_contents(open_trace(trace, verify=False))
            seeks = {}
            for label, tick in (("after_keyframe", kf[1] + 1), ("before_next_keyframe",
                                                                  kf[1] + (kf[1] - kf[0]) - 1)):
                tick = min(tick, c.end_tick)
                best = None
                for _ in range(repetitions):
                    t = time.perf_counter()
                    m, _ = seek(fast_c, tick)
                    e = time.perf_counter() - t
                    best = e if best is None else min(best, e)
                    assert m.ticks == tick
                seeks[label] = {"tick": tick, "seconds": round(best or 0.0, 4)}
            out["seek"] = {"keyframe_interval": kf[1] - kf[0], **seeks}
        # Input-heavy: the demo guest and its script.
        script_path = guests.SOURCE_DIR / "demo.script"
        if "demo" in guests.GUESTS and script_path.exists():
            log("record/replay: the demo guest with its script")
            dref, ddata = resolve_guest("demo")
            store_image(ddata)
            dtrace = root / "demo.aerotrace"
            tick_hz = MachineConfig().tick_hz
            runner = ScriptRunner.paced(load(script_path), tick_hz)
            drec_t, dres = _record(dref, ddata, dtrace, runner,
                                   {"max_ticks": 20_000_000_000})
            drep_t, _ = _replay(dtrace)
            t = open_trace(dtrace)
            input_bytes = sum(f.stored_len + 36 for f in t.of_kind(FrameKind.INPUT))
            dc = load_contents(t)
            out["demo"] = {
                "ticks": dc.end_tick, "inputs": len(dc.inputs),
                "device_events": len(dc.device), "output_events": len(dc.output),
                "trace_bytes": dtrace.stat().st_size,
                "bytes_per_input_event": round(input_bytes / max(1, len(dc.inputs)), 2),
                "bytes_per_million_ticks": round(dtrace.stat().st_size / (dc.end_tick / 1e6), 1),
                "record_seconds": round(drec_t, 3), "replay_seconds": round(drep_t, 3),
                "stop": getattr(dres, "stop", None),
            }
    log("record/replay: time to pinpoint a divergence in a 100M-tick trace")
    out["pinpoint"] = pinpoint()
    log("record/replay: peak memory replaying 1,000,000 output events (the flood guest)")
    from aero.bench.replay_memory import measure

    with tempfile.TemporaryDirectory(prefix="aero-bench-mem-") as mem_root:
        out["replay_memory"] = measure(1_000_000, Path(mem_root))
    out["method"] = __doc__.split("Method (also in the JSON report under ``\"method\"``):")[1] \
        .strip()
    out["targets"] = {"record_overhead_percent": "<= 2", "replay_speed_percent_of_record": ">= 98",
                      "pinpoint_seconds": "<= 10"}
    return out


def _noise(d: dict | None) -> str:
    if not d:
        return ""
    return f" (spread {d['spread_percent']:.1f} %{'' if d['trusted'] else ', too noisy'})"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title="aero bench: record and replay")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    cpu = report.get("cpu")
    if cpu:
        t.add_row(f"plain run ({cpu['ticks']:,} ticks)", f"{cpu['plain_seconds']:.3f} s "
                  f"({cpu['plain_mips']} MIPS)", "")
        t.add_row("recording", f"{cpu['record_seconds']:.3f} s", "")
        t.add_row("record overhead (median of pairs)",
                  f"{cpu['record_overhead_percent']:.2f} %{_noise(cpu.get('record_overhead'))}",
                  "<= 2 %")
        t.add_row("replay", f"{cpu['replay_seconds']:.3f} s", "")
        t.add_row("replay speed / record speed (median of pairs)",
                  f"{cpu['replay_speed_percent_of_record']} %"
                  f"{_noise(cpu.get('replay_speed'))}", ">= 98 %")
        t.add_row("trace bytes per million ticks (CPU-bound)",
                  f"{cpu['bytes_per_million_ticks']:,}", "")
    demo = report.get("demo")
    if demo:
        t.add_row("trace bytes per input event (demo)", f"{demo['bytes_per_input_event']}", "")
        t.add_row("trace bytes per million ticks (demo)",
                  f"{demo['bytes_per_million_ticks']:,}", "")
    seek_r = report.get("seek")
    if seek_r:
        t.add_row(f"seek, just after a keyframe (interval {seek_r['keyframe_interval']:,})",
                  f"{seek_r['after_keyframe']['seconds'] * 1000:.1f} ms", "")
        t.add_row("seek, just before the next keyframe",
                  f"{seek_r['before_next_keyframe']['seconds'] * 1000:.1f} ms", "")
    mem = report.get("replay_memory")
    if mem:
        t.add_row(f"peak RSS replaying {mem['output_events']:,} output events "
                  f"({mem['trace_bytes']:,}-byte trace)", f"{mem['replay']['peak_rss_mb']} MB",
                  "< 300 MB, flat")
    pin = report.get("pinpoint")
    if pin:
        t.add_row(f"pinpoint a divergence ({pin['ticks']:,} ticks, aero diff)",
                  f"{pin['seconds']:.2f} s", f"<= {pin['target_seconds']} s")
    console.print(t)
