"""Property checks over untrusted input (trace metadata, input scripts), run by
tests/test_hostile.py inside a memory-limited subprocess. Seeded, bounded examples."""

from __future__ import annotations

import json
from pathlib import Path

from aero.traces.container import TraceError, open_trace
from aero.traces.replay import ReplayError, load_contents
from aero.traces.script import MAX_LINE, MAX_TICK, ScriptError, parse
from craft import frames_of, write_raw
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

_FIELDS = [("aero",), ("events_version",), ("created",), ("machine",), ("guest",),
           ("checkpoint_interval",), ("keyframe_interval",),
           *[("machine", k) for k in ("ram_size", "cpuid_vendor", "cpuid_signature", "features",
                                      "tsc_per_tick", "a20_enabled", "debug_ports",
                                      "reset_on_triple_fault", "devices", "tick_hz",
                                      "post_ports", "unknown")],
           *[("guest", k) for k in ("name", "fmt", "load_addr", "sha256", "size")]]


def metadata_property(clean: Path, work: Path, examples: int = 40) -> int:
    """Any value in any metadata field: the trace opens, or fails with one TraceError /
    ReplayError line; when it opens, every field aero uses has its documented type."""
    meta0, frames = frames_of(clean)
    seen = {"ok": 0, "rejected": 0}

    @seed(20261203)
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(_FIELDS), JSON, st.booleans())
    def prop(field: tuple[str, ...], value: object, delete: bool) -> None:
        meta = json.loads(json.dumps(meta0))
        target = meta
        for k in field[:-1]:
            target = target[k]
        if delete:
            target.pop(field[-1], None)
        else:
            target[field[-1]] = value
        path = write_raw(work / "prop.aerotrace", meta, frames)
        try:
            c = load_contents(open_trace(path))
        except (TraceError, ReplayError) as exc:
            assert "\n" not in str(exc)
            seen["rejected"] += 1
            return
        seen["ok"] += 1
        assert type(c.config.ram_size) is int and c.config.ram_size % 4096 == 0
        assert isinstance(c.config.cpuid_vendor, str) and len(c.config.cpuid_vendor) == 12
        assert type(c.config.tick_hz) is int
        assert len(c.guest.sha256) == 64 and set(c.guest.sha256) <= set("0123456789abcdef")
        assert c.end_tick >= 0

    prop()
    assert seen["rejected"] > 0 and seen["ok"] > 0, seen
    return seen["rejected"]


_TOKENS = ["at", "on", "+", "0", "1", "9" * 25, "serial", "serial2", "key", "enter", "a",
           "down", "up", "reset", "nmi", "rtc", "-5", '"x"', '"\\u00ff"', '"\\u0100"', '"',
           "#", " ", "\t", "\\", "1e23", "+0", "9223372036854775808", "9223372036854775807"]


def script_property(examples: int = 100) -> int:
    """Any text: parse gives directives within the limits, or one ScriptError line."""
    rejected = 0

    @seed(20261203)
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.lists(st.sampled_from(_TOKENS) | st.text(max_size=6), max_size=8)
                    .map(" ".join), max_size=6).map("\n".join))
    def prop(text: str) -> None:
        nonlocal rejected
        try:
            ds = parse(text, "t")
        except ScriptError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("t:")
            rejected += 1
            return
        for d in ds:
            assert 0 <= d.tick <= MAX_TICK and len(d.data) <= MAX_LINE
            assert d.action in ("serial", "serial2", "key", "reset", "nmi", "rtc")
            assert all(0 <= b <= 255 for b in d.data)

    prop()
    return rejected
