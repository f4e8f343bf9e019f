"""Trace container: round trip, crash recovery, and a reader that survives any damage."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from aero.traces.container import (
    FORMAT_VERSION,
    FrameKind,
    TraceError,
    TraceWriter,
    open_trace,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FRAMES = [
    (FrameKind.INPUT, 0, 10, b"key a" * 50),
    (FrameKind.OUTPUT, 5, 20, b"hello world\n" * 40),
    (FrameKind.CHECKPOINT, 0, 1000, os.urandom(0) + bytes(range(256)) * 4),
    (FrameKind.KEYFRAME, 1000, 1000, b"\0" * 9000),
    (FrameKind.SUMMARY, 2000, 2000, b'{"ticks": 2000}'),
]


def write_trace(path: Path, close: bool = True) -> None:
    w = TraceWriter(path, {"aero": "test", "guest": {"sha256": "00"}})
    for kind, first, last, payload in FRAMES:
        w.append(kind, first, last, payload)
    if close:
        w.close()
    else:
        w.abandon()


def as_tuples(trace) -> list[tuple[int, int, int, bytes]]:
    return [(f.kind, f.first_tick, f.last_tick, trace.read(f)) for f in trace.frames]


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "t.aero"
    write_trace(p)
    t = open_trace(p)
    assert t.complete and t.version == FORMAT_VERSION and t.recovered_bytes == 0
    assert t.metadata == {"aero": "test", "guest": {"sha256": "00"}}
    assert as_tuples(t) == FRAMES
    assert [f.kind for f in t.of_kind(FrameKind.OUTPUT)] == [FrameKind.OUTPUT]


def test_a_payload_in_parts_is_the_payload_joined(tmp_path: Path) -> None:
    """A frame appended as a list or tuple of bytes-like parts (numpy views, memoryviews,
    bytes) reads back as their concatenation, whether it is stored compressed (zeros) or raw
    (noise that does not compress)."""
    import random

    import numpy as np
    from aero.traces.container import CODEC_RAW, CODEC_ZSTD

    rng = random.Random(5)
    noise = bytes(rng.randrange(256) for _ in range(9000))
    ram = np.frombuffer(b"\0" * 8192 + noise, dtype=np.uint8)
    payloads = [[b"head", ram[:4096], memoryview(ram[4096:8192]), b"tail"],
                (ram[8192:], b"x")]
    path = tmp_path / "parts.aero"
    with TraceWriter(path, {}) as w:
        for i, parts in enumerate(payloads):
            w.append(FrameKind.PAGES, i, i, parts)
    t = open_trace(path)
    frames = [f for f in t.frames if f.kind == FrameKind.PAGES]
    assert [t.read(f) for f in frames] == [b"".join(p) for p in payloads]
    assert [f.codec for f in frames] == [CODEC_ZSTD, CODEC_RAW]
    assert [f.raw_len for f in frames] == [8200, 9001]


def test_unclosed_trace_is_recovered(tmp_path: Path) -> None:
    p = tmp_path / "t.aero"
    write_trace(p, close=False)
    t = open_trace(p)
    assert not t.complete and as_tuples(t) == FRAMES


def test_truncated_trace_keeps_complete_frames(tmp_path: Path) -> None:
    p = tmp_path / "t.aero"
    write_trace(p, close=False)
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    t = open_trace(p)
    assert not t.complete and as_tuples(t) == FRAMES[:-1] and t.recovered_bytes > 0


def test_clear_errors(tmp_path: Path) -> None:
    p = tmp_path / "t.aero"
    p.write_bytes(b"")
    with pytest.raises(TraceError, match="too short"):
        open_trace(p)
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(TraceError, match="bad magic"):
        open_trace(p)
    write_trace(p)
    data = bytearray(p.read_bytes())
    struct.pack_into("<H", data, 8, 99)
    p.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="version 99 is not supported .supported: 1"):
        open_trace(p)
    with pytest.raises(TraceError, match="cannot open"):
        open_trace(tmp_path / "missing.aero")


def test_writer_rejects_bad_frames(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "t.aero", {}) as w:
        with pytest.raises(ValueError):
            w.append(FrameKind.INDEX, 0, 0, b"")
        with pytest.raises(ValueError):
            w.append(99, 0, 0, b"")


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_traces_fail_cleanly_or_recover_a_prefix(tmp_path: Path, data) -> None:
    """Truncation, bit flips and overwritten fields end in TraceError or a recovered
    prefix of the original frames: never another exception, a hang or a huge allocation."""
    p = tmp_path / "t.aero"
    write_trace(p, close=data.draw(st.booleans()))
    raw = bytearray(p.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
        if not raw:
            break
        pos = data.draw(st.integers(0, len(raw) - 1))
        if how == "truncate":
            del raw[pos:]
        elif how == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            value = data.draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]))
            width = data.draw(st.integers(1, 8))
            raw[pos:pos + width] = bytes([value]) * min(width, len(raw) - pos)
    p.write_bytes(bytes(raw))
    try:
        t = open_trace(p)
    except TraceError as exc:
        assert "\n" not in str(exc)
        return
    got = as_tuples(t)
    assert got == FRAMES[:len(got)]
