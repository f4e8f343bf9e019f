"""The trace layer's public functions: record a guest, replay a trace, diff two traces.

These are what :mod:`aero` exports at the top level (``aero.record``, ``aero.replay``,
``aero.diff``, ``aero.open_trace``); the command line is built on the same functions.

Invariants:

* ``record`` is the only function here that looks at the host (the wall clock, for the RTC
  when ``rtc`` is not given); everything it observes goes into the trace.
* ``replay`` never changes the trace; its result says whether the re-execution matched every
  logged event, output byte and checkpoint fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from aero.traces import record as _record
from aero.traces import script as _script
from aero.traces.container import TraceFile, open_trace
from aero.traces.diff import diff_traces
from aero.traces.replay import Replayer, ReplayResult, load_contents

from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import MachineConfig

__all__ = ["RecordResult", "ReplayResult", "TraceFile", "diff", "open_trace", "record",
           "replay"]

RecordResult = _record.RecordResult

PathLike = str | os.PathLike[str]


def record(guest: PathLike, output: PathLike | None = None, *,
           script: PathLike | None = None, script_text: str | None = None,
           ticks: int | None = None, rtc: int | None = None, ram: int = 32 << 20,
           fmt: str = "auto", load_addr: int = 0x7C00,
           checkpoint_interval: int | None = None, keyframe_interval: int | None = None,
           realtime: bool = False,
           on_output: Callable[[int, bytes], None] | None = None,
           on_progress: Callable[[int], None] | None = None) -> RecordResult:
    """Run ``guest`` (a bundled guest name or an image file) and record it into a trace.

    ``output`` is the trace file; without it the trace goes to the trace directory (see
    ``aero ls``) and becomes ``latest``. Input comes from an input script (``script``: a
    file, or ``script_text``: its text; the language is in docs/cli.md). ``ticks`` stops
    the recording at that tick; ``rtc`` is the RTC's wall-clock time at tick 0 in Unix
    seconds (default: the host's clock, recorded in the trace). Raises
    :class:`aero.launch.LaunchError` for an unusable image and
    :class:`aero.traces.script.ScriptError` for a bad script.
    """
    config = MachineConfig(ram_size=ram)
    ref, data = resolve_guest(str(guest), fmt, load_addr, ram_size=config.ram_size)
    machine = start_machine(config, ref, data)
    store_image(data)
    opt = _record.RecordOptions(max_ticks=ticks, rtc_time=rtc, realtime=realtime)
    if checkpoint_interval:
        opt.checkpoint_interval = checkpoint_interval
    if keyframe_interval:
        opt.keyframe_interval = keyframe_interval
    elif checkpoint_interval:
        opt.keyframe_interval = checkpoint_interval * 20
    directives = None
    if script_text is not None:
        directives = _script.parse(script_text, "script")
    elif script is not None:
        directives = _script.load(str(script))
    if directives is not None:
        opt.script = _script.ScriptRunner.paced(directives, machine.config.tick_hz)
    path = Path(output) if output is not None else _record.default_trace_path(ref.name)
    result = _record.Recorder(machine, ref, path, opt, on_output=on_output,
                              on_progress=on_progress).run()
    if output is None:
        _record.update_latest(path)
    return result


def replay(trace: PathLike, *, until: int | None = None, speed: float | None = None,
           on_output: Callable[[int, bytes], None] | None = None,
           on_progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Re-execute ``trace`` from tick 0 (to ``until``), verifying every device event, output
    byte and checkpoint fingerprint; ``result.diverged`` and ``result.divergence`` say where
    it first differed. ``speed`` None is as fast as possible, 1.0 is real time. Raises
    :class:`aero.traces.container.TraceError` when the file cannot be read and
    :class:`aero.traces.replay.ReplayError` when it cannot be replayed."""
    contents = load_contents(open_trace(trace))
    return Replayer(contents).run(until=until, speed=speed, on_output=on_output,
                                  on_progress=on_progress)


def diff(a: PathLike, b: PathLike) -> dict:
    """The first difference between two traces: the first differing stream entry, the first
    divergent tick, the instruction there and the state that differs (the same report as
    ``aero diff --json``). Raises :class:`aero.traces.diff.DiffError`."""
    return diff_traces(Path(a), Path(b))

