"""Shared helpers for tests that record traces: the demo guest with its script, and traces
whose inputs are edited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from aero.traces import codec
from aero.traces.container import FrameKind, TraceWriter, open_trace
from aero.traces.record import Recorder, RecordOptions, RecordResult
from aero.traces.script import ScriptRunner, load

from aero import guests
from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import MachineConfig

DEMO_RTC = 1_709_214_350  # 2024-02-29 13:45:50 UTC


def record_demo(path: Path, *, rtc: int = DEMO_RTC, **opts: object) -> RecordResult:
    """Record the demo guest driven by guests/demo.script (the image goes to the store)."""
    ref, data = resolve_guest("demo")
    store_image(data)
    m = start_machine(MachineConfig(ram_size=32 << 20), ref, data)
    runner = ScriptRunner.paced(load(guests.SOURCE_DIR / "demo.script"), m.config.tick_hz)
    options = RecordOptions(rtc_time=rtc, script=runner, max_ticks=20_000_000_000,
                            **opts)  # type: ignore[arg-type]
    return Recorder(m, ref, path, options).run()


def alter_inputs(src: Path, dst: Path, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """Copy trace ``src`` to ``dst`` with every input frame's events passed through ``edit``."""
    t = open_trace(src)
    with TraceWriter(dst, t.metadata) as w:
        for f in t.frames:
            payload = t.read(f)
            if f.kind == FrameKind.INPUT:
                payload = codec.encode_events(edit(codec.decode_events(payload, f)),
                                              f.first_tick)
            w.append(f.kind, f.first_tick, f.last_tick, payload)
