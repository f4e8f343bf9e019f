"""History queries (traces/query.py, aero query) on the demo corpus trace, checked against
values computed independently with the library's seek."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aero.traces.container import FrameKind, TraceWriter, open_trace
from aero.traces.query import QueryError, last_write, memory_history, port_history, register_history
from aero.traces.replay import load_contents, seek

from aero.events import Channel

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "corpus" / "demo.aerotrace"
TICKS = 0x20000  # the demo guest's PIT interrupt counter (guests/demo.s: STATE + 0)


@pytest.fixture(scope="module")
def contents():
    return load_contents(open_trace(DEMO))


def _counter(c, tick: int) -> int:
    m, _ = seek(c, tick)
    return int.from_bytes(m.read(TICKS, 4), "little")


@pytest.fixture(scope="module")
def increments(contents) -> list[int]:
    """The ticks of the instructions that made the counter 1, 2 and 3 (binary search on
    seek: the counter only grows)."""
    out, lo = [], 0
    for v in (1, 2, 3):
        hi = contents.end_tick
        while lo < hi:
            mid = (lo + hi) // 2
            if _counter(contents, mid) >= v:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo - 1)
    return out


def test_memory_history_lists_each_change_with_its_instruction(contents, increments) -> None:
    changes, stats = memory_history(contents, TICKS, 4, 0, increments[2] + 1)
    assert [c.tick for c in changes] == increments
    assert [(c.old, c.new) for c in changes] == [
        ("00000000", "01000000"), ("01000000", "02000000"), ("02000000", "03000000")]
    for ch in changes:
        m, _ = seek(contents, ch.tick)
        assert ch.eip == m.get_regs().eip
        assert ch.insn == "inc dword ptr [0x20000]"
    assert stats.executed == 1 and stats.intervals == 1
    # --from drops earlier changes.
    later, _ = memory_history(contents, TICKS, 4, increments[0] + 1, increments[2] + 1)
    assert [c.tick for c in later] == increments[1:]


def test_last_write_before_a_tick(contents, increments) -> None:
    found, _ = last_write(contents, TICKS + 1, increments[1] + 1)
    assert found is not None and found.tick == increments[1]
    found, _ = last_write(contents, TICKS, increments[1])  # that write starts at the tick
    assert found is not None and found.tick == increments[0]
    earlier, _ = last_write(contents, TICKS, increments[0])
    # Before the first increment only the boot code's zeroing of the state block wrote it.
    assert earlier is None or (earlier.tick < increments[0] and earlier.new == "00")


def test_port_history_matches_the_recorded_serial_output(contents) -> None:
    hi = 3_000_000
    accesses, _ = port_history(contents, 0x3F8, 0, hi)
    out = contents.output
    com1 = out[(out["a"] == Channel.COM1) & (out["tick"] < hi)]
    sent = [a.value for a in accesses if a.direction == "out"]
    expected = com1["b"].astype(np.uint8).tolist()
    # The UART sends a byte some time after the OUT: every byte sent before hi was written
    # before it, in order, after the OUT that set the divisor latch.
    assert expected and sent[1:1 + len(expected)] == expected
    assert all(a.port == 0x3F8 and a.size == 1 for a in accesses)


def test_register_history_steps_instructions(contents, increments) -> None:
    t = increments[1]
    changes, _ = register_history(contents, "eip", t - 2, t + 6)
    assert changes and all(t - 2 <= c.tick < t + 6 for c in changes)
    for ch in changes:
        m, _ = seek(contents, ch.tick + 1)
        assert int(ch.new, 16) == m.get_regs().eip
    assert any(c.insn == "inc dword ptr [0x20000]" and c.tick == t for c in changes)
    with pytest.raises(QueryError, match="unknown register"):
        register_history(contents, "xmm0", 0, 10)


def test_a_trace_without_keyframes_is_a_clear_error(tmp_path: Path) -> None:
    src = open_trace(DEMO)
    dst = tmp_path / "nokf.aerotrace"
    with TraceWriter(dst, src.metadata) as w:
        for f in src.frames:
            if f.kind not in (FrameKind.KEYFRAME, FrameKind.PAGES):
                w.append(f.kind, f.first_tick, f.last_tick, src.read(f))
    c = load_contents(open_trace(dst))
    with pytest.raises(QueryError, match="no keyframes"):
        memory_history(c, TICKS, 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "aero.cli", "query", str(dst), "--mem", "0x20000"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and "no keyframes" in p.stderr and p.stderr.count("\n") == 1


def test_cli_query_json_and_bad_arguments(increments) -> None:
    import json
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "aero.cli", "query", str(DEMO)]
    p = subprocess.run([*base, "--last-write", "0x20000", "--before", str(increments[1] + 1),
                        "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert [r["tick"] for r in data["results"]] == [increments[1]]
    p = subprocess.run([*base, "--last-write", "0x20000"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 2 and "--before" in p.stderr
    p = subprocess.run([*base, "--mem", "0x20000", "--to", "10**12"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 2
