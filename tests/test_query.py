"""History queries (traces/query.py, aero query) on the demo corpus trace, checked against
values computed independently with the library's seek."""

from __future__ import annotations

import dataclasses
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


# ---- traces with written-pages frames (format version 2) ---------------------------------

@pytest.fixture(scope="module")
def written_trace(tmp_path_factory, contents):
    """The demo run of the corpus trace recorded again by this version (same script and RTC,
    so the same run), with short intervals so that the written pages can skip."""
    from aero.traces.api import record

    path = tmp_path_factory.mktemp("written") / "demo.aerotrace"
    record("demo", path, script=ROOT / "guests" / "demo.script", rtc=1709214350,
           ticks=3_200_000, checkpoint_interval=100_000, keyframe_interval=1_000_000)
    return load_contents(open_trace(path))


def _written(c) -> list[tuple[int, int, np.ndarray]]:
    from aero.traces import codec

    pages = c.config.ram_size // codec.PAGE
    return [(f.first_tick, f.last_tick, codec.decode_written(c.trace.read(f), f, pages))
            for f in c.trace.of_kind(FrameKind.WRITTEN)]


def test_written_frames_tile_the_trace_and_cover_every_write(written_trace, increments) -> None:
    frames = _written(written_trace)
    assert frames[0][0] == 0 and frames[-1][1] == written_trace.end_tick
    assert all(a[1] == b[0] for a, b in zip(frames, frames[1:], strict=False))
    page = TICKS // 4096
    for t in increments:
        assert any(lo <= t < hi and flags[page] for lo, hi, flags in frames), t
    # The counter's page is not written in every interval (the guest idles in between), so
    # there is something to skip.
    assert sum(bool(flags[page]) for _, _, flags in frames) < len(frames)


def test_memory_history_with_written_pages_matches_the_seek_oracle(written_trace,
                                                                   increments) -> None:
    changes, stats = memory_history(written_trace, TICKS, 4, 0, increments[2] + 1)
    assert [c.tick for c in changes] == increments
    assert [(c.old, c.new) for c in changes] == [
        ("00000000", "01000000"), ("01000000", "02000000"), ("02000000", "03000000")]
    assert all(c.insn == "inc dword ptr [0x20000]" for c in changes)
    assert stats.unit == "checkpoint" and 0 < stats.executed < stats.intervals
    assert stats.ticks_armed < stats.ticks_executed
    # --from drops earlier changes; a range that starts inside an interval still works.
    later, _ = memory_history(written_trace, TICKS, 4, increments[0] + 1, increments[2] + 1)
    assert [c.tick for c in later] == increments[1:]


def test_last_write_with_written_pages(written_trace, contents, increments) -> None:
    for before in (increments[1] + 1, increments[1], increments[2] + 1, increments[2] + 50_000):
        found, stats = last_write(written_trace, TICKS + 1, before)
        expect = max(t for t in increments if t < before)
        assert found is not None and found.tick == expect and found.eip == 0x7EDA, before
        assert stats.unit == "checkpoint"
        if before == expect + 1:
            # The latest candidate interval holds the write: it alone was armed.
            assert stats.executed == 1 and stats.ticks_armed <= 100_000
        # The version-1 corpus trace (keyframe hashes) gives the same answer.
        old, old_stats = last_write(contents, TICKS + 1, before)
        assert old is not None and (old.tick, old.eip, old.old, old.new) == \
            (found.tick, found.eip, found.old, found.new)
        assert old_stats.unit == "keyframe"


def test_last_write_sees_writes_of_the_same_value(written_trace, increments) -> None:
    """The written pages are dirty marks, not hash changes: a byte rewritten with its own
    value is still found (the boot code's zeroing of the state block writes zeros onto
    zeros), where keyframe hashes see no change."""
    found, _ = last_write(written_trace, TICKS + 3, increments[0])
    assert found is not None and found.tick < increments[0] and found.old == found.new == "00"
    m, _ = seek(written_trace, found.tick)
    assert m.get_regs().eip == found.eip


def test_written_pages_payload_round_trip_and_damage() -> None:
    from aero.traces import codec
    from aero.traces.container import Frame, TraceError

    rng = np.random.default_rng(7)
    flags = rng.random(8195) < 0.1
    payload = codec.encode_written(flags)
    assert len(payload) == 4 + (8195 + 7) // 8
    frame = Frame(FrameKind.WRITTEN, 0, 10, 0, 0, len(payload), len(payload))
    assert np.array_equal(codec.decode_written(payload, frame, 8195), flags)
    # Page i is bit i % 8 of byte i // 8.
    one = codec.encode_written(np.arange(16) == 9)
    assert one[4:] == bytes([0, 2])
    with pytest.raises(TraceError):
        codec.decode_written(payload, frame, 8192)  # another machine's RAM
    with pytest.raises(TraceError):
        codec.decode_written(payload[:-1], frame, 8195)


def test_replaced_inputs_fall_back_to_keyframe_hashes(written_trace, increments) -> None:
    """With another input stream the written pages describe another run: not used."""
    other = written_trace.with_inputs(written_trace.inputs.copy())
    found, stats = last_write(other, TICKS, increments[1] + 1)
    assert stats.unit == "keyframe"
    assert found is not None and found.tick == increments[1]


@pytest.mark.parametrize("addr,length,lo,hi", [
    (0x8FFE0, 64, 0, 3_200_000),         # the stack, across a page boundary
    (0x20000, 64, 500_000, 3_150_000),   # the state block, a range inside checkpoint intervals
    (0xB8000, 320, 0, 3_200_000),        # VGA text
    (0x7C00, 16, 0, 3_200_000),          # the guest's code: never written after loading
])
def test_memory_history_skipping_matches_full_re_execution(written_trace, contents, addr,
                                                           length, lo, hi) -> None:
    """The corpus trace has one keyframe, so its query re-executes everything armed: the
    ground truth the written-pages skip must reproduce exactly."""
    hi = min(hi, written_trace.end_tick)
    truth, full = memory_history(contents, addr, length, lo, hi)
    got, stats = memory_history(written_trace, addr, length, lo, hi)
    assert len(contents.keyframes) == 1 and full.unit == "keyframe"
    assert [dataclasses.astuple(c) for c in got] == [dataclasses.astuple(c) for c in truth]
    assert stats.ticks_armed <= full.ticks_armed
