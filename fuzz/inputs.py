"""Fuzzing of device-input schedules: ``aero fuzz inputs GUEST --oracle NAME``.

A schedule is a list of input events at guest ticks (COM1 bytes, key presses and
releases, RTC times, NMIs, resets). Hypothesis generates schedules; each is run on a fresh
machine (the guest booted as a recording of it with no input boots it) and judged by an
oracle (:func:`aero.oracles.failure_predicate`: ``output-contains:TEXT``,
``exit-status:N``, a registered invariant oracle or ``file.py:Class``). A failing schedule
is shrunk by Hypothesis, then minimised with the input bisection of
:mod:`aero.traces.bisect` (ddmin), recorded as a trace and written with a JSON sidecar
into a corpus directory (default ``tests/corpus/inputs``), which the tests replay.

Invariants:

* The campaign is split into chunks by the executor (:mod:`aero.fuzz.executor`); chunk
  ``i`` is one Hypothesis run seeded from (seed, i). The report, and the first failing
  schedule (the one of the lowest chunk index), are a pure function of (guest, oracle,
  kinds, seed, examples) whatever the number of workers.
* Ticks of a schedule are absolute and sorted; they start after the guest's boot (the
  tick at which the input-free recording went idle), so every event reaches a guest that
  is ready for input.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from aero.events import Kind

from .executor import Chunk, ChunkOutcome, module_independent_generation

__all__ = ["DEFAULT_KINDS", "KINDS", "InputsError", "base_contents", "candidate",
           "inputs_chunk", "minimise_and_save", "schedules"]

KINDS = {"serial": Kind.SERIAL_RX, "key": Kind.KEY, "rtc": Kind.RTC_TIME, "nmi": Kind.NMI,
         "reset": Kind.RESET}
DEFAULT_KINDS = ("serial", "key", "rtc", "nmi")
# Set-2 make codes of common keys (letters, digits, Enter, Space, Backspace, Escape).
KEY_CODES = (0x1C, 0x32, 0x21, 0x23, 0x24, 0x2B, 0x34, 0x33, 0x43, 0x15, 0x2D, 0x1B, 0x45,
             0x16, 0x1E, 0x26, 0x25, 0x2E, 0x36, 0x3D, 0x3E, 0x46, 0x5A, 0x29, 0x66, 0x76)
# Serial bytes are biased toward what line-oriented guests parse.
SERIAL_BYTES = b"0123456789\r\n q?-+ abcdefghijklmnopqrstuvwxyz"
BOOT_TICKS = 50_000_000
RUN_TICKS = 20_000_000  # how long a schedule runs after its last event
MAX_GAP = 2_000_000


class InputsError(ValueError):
    """The guest or the oracle cannot be used."""


def base_contents(guest: str, workdir: Path, rtc: int = 0):  # -> TraceContents
    """A recording of ``guest`` with no input (until it goes idle or BOOT_TICKS)."""
    from aero.traces.api import record
    from aero.traces.diff import open_contents

    path = workdir / "base.aerotrace"
    record(guest, path, ticks=BOOT_TICKS, rtc=rtc)
    return open_contents(path)


@st.composite
def schedules(draw: st.DrawFn, kinds: Sequence[str], start: int,
              max_events: int = 24) -> list[tuple[int, int, int, int]]:
    """(tick, kind, a, b) events after ``start``, in tick order."""
    n = draw(st.integers(1, max_events))
    tick = start
    out = []
    for _ in range(n):
        tick += draw(st.integers(0, MAX_GAP))
        kind = draw(st.sampled_from(list(kinds)))
        if kind == "serial":
            b = draw(st.one_of(st.sampled_from(list(SERIAL_BYTES)), st.integers(0, 255)))
            out.append((tick, int(KINDS[kind]), 0, b))
        elif kind == "key":
            code = draw(st.sampled_from(KEY_CODES))
            out.append((tick, int(KINDS[kind]), code, draw(st.integers(0, 1))))
        elif kind == "rtc":
            out.append((tick, int(KINDS[kind]), 0, draw(st.integers(0, 2**32 - 1))))
        else:
            out.append((tick, int(KINDS[kind]), 0, 0))
    return out


def candidate(c, events: Sequence[tuple[int, int, int, int]]):  # -> TraceContents
    """``c`` (the input-free recording) fed ``events``, running RUN_TICKS past the last."""
    from aero.traces.bisect import _fixed

    fixed = c.inputs[_fixed(c)]
    extra = np.array([tuple(e) for e in events], dtype=c.inputs.dtype) if events else \
        np.zeros(0, dtype=c.inputs.dtype)
    inputs = np.concatenate([fixed, extra])
    end = (max(e[0] for e in events) if events else c.end_tick) + RUN_TICKS
    return c.with_inputs(inputs, end_tick=end)


class _Failing(Exception):
    pass


def _run(c, predicate: Callable, kinds: Sequence[str], examples: int,
         run_seed: int) -> tuple[int, list | None]:
    """One Hypothesis run: (examples tried, the shrunk failing schedule or None)."""
    tried = [0]
    last: list[list | None] = [None]
    shrinking = [False]

    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              verbosity=Verbosity.quiet, report_multiple_bugs=False, print_blob=False)
    @hseed(run_seed)
    @given(schedules(kinds, c.end_tick))
    def prop(events: list) -> None:
        if not shrinking[0]:
            tried[0] += 1
        if predicate(candidate(c, events)):
            shrinking[0] = True
            last[0] = list(events)
            raise _Failing

    try:
        prop()
    except Exception as exc:  # the shrunk _Failing, possibly wrapped by Hypothesis
        if last[0] is None:
            raise
        del exc
    return tried[0], last[0]


_BASES: dict[tuple[str, int], object] = {}


def inputs_chunk(chunk: Chunk, params: dict) -> dict:
    """One chunk of an inputs campaign (executor job): examples tried and the shrunk
    failing schedule, if one was found."""
    from aero.oracles import failure_predicate

    key = (params["guest"], int(params.get("rtc", 0)))
    if key not in _BASES:
        # The base trace is read lazily (frame by frame), so its file lives as long as the
        # cached contents: the directory goes with the worker process.
        tmp = tempfile.TemporaryDirectory(prefix="aero-fuzz-inputs-")
        _BASES[key] = (tmp, base_contents(params["guest"], Path(tmp.name), key[1]))
    c = _BASES[key][1]
    predicate = failure_predicate(params["oracle"])
    with module_independent_generation():
        tried, failing = _run(c, predicate, params["kinds"], chunk.count, chunk.seed)
    return {"examples": tried, "failing": failing}


def merge(outcomes: Sequence[ChunkOutcome]) -> dict:
    """Counts, the not-evaluated chunks, and the failing schedule of the lowest chunk."""
    ok = [o for o in outcomes if o.status == "ok" and o.result is not None]
    failing = [(o.index, o.result["failing"]) for o in ok if o.result["failing"]]
    return {"examples": sum(int(o.result["examples"]) for o in ok),
            "failing_chunks": [i for i, _ in failing],
            "failing": failing[0][1] if failing else None,
            "not_evaluated": [{"chunk": o.index, "error": o.error}
                              for o in outcomes if o.status != "ok"]}


def minimise_and_save(guest: str, oracle: str, events: list, corpus: Path, name: str,
                      rtc: int = 0) -> dict:
    """ddmin the failing schedule (aero.traces.bisect.minimize_inputs) and write the
    minimal one as ``corpus/name.aerotrace`` plus ``corpus/name.json`` (guest, oracle,
    events): the regression case the tests replay."""
    from aero.oracles import failure_predicate
    from aero.traces.bisect import minimize_inputs, record_inputs

    predicate = failure_predicate(oracle)
    corpus.mkdir(parents=True, exist_ok=True)
    out = corpus / f"{name}.aerotrace"
    with tempfile.TemporaryDirectory(prefix="aero-fuzz-inputs-") as tmp:
        c = base_contents(guest, Path(tmp), rtc)
        full = Path(tmp) / "failing.aerotrace"
        record_inputs(candidate(c, events), full)
        report = minimize_inputs(full, predicate, out)
    kept = [e for e in report["kept_events"]
            if not (e["kind"] == int(Kind.RTC_TIME) and e["tick"] == 0)]
    meta = {"guest": guest, "oracle": oracle, "shrunk_events": len(events),
            "events": kept, "still_fails": report["still_fails"],
            "replays_cleanly": report["replays_cleanly"], "ddmin_tests": report["tests"]}
    (corpus / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return dict(meta, trace=str(out))
