"""aero export: the Perfetto timeline of the demo trace (tracks, events, guest-time stamps)
and the Tenet instruction trace of a tick range against a machine stepped by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aero.traces.container import open_trace
from aero.traces.export import (
    PID_INPUTS,
    PID_INTERRUPTS,
    PID_MACHINE,
    PID_ORACLES,
    PID_OUTPUT,
    PID_TIMERS,
    ExportError,
    Violation,
    perfetto_events,
    tenet_lines,
)
from aero.traces.replay import load_contents
from traceenv import record_demo

from aero.events import Channel, Kind
from aero.launch import resolve_guest, start_machine

RTC = 1_709_214_350


@pytest.fixture(scope="module")
def demo_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export")
    os.environ["AERO_IMAGE_STORE"] = str(base / "images")
    p = base / "demo.aerotrace"
    # Short intervals: several keyframes, so a Tenet range starts from one past tick 0.
    res = record_demo(p, rtc=RTC, checkpoint_interval=2_000_000, keyframe_interval=10_000_000)
    assert res.stop == "exit"
    return p


def _us(tick: int, hz: int) -> float:
    return tick / hz * 1e6


def test_perfetto_tracks_and_events(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    hz = c.config.tick_hz
    viol = [Violation(12_345_678, "IF clear for too long", "interrupts")]
    ev = json.loads(json.dumps(perfetto_events(c, viol)))  # JSON-clean
    names = {(e["pid"], e.get("tid"), e["args"]["name"]) for e in ev if e["ph"] == "M"
             and e["name"] in ("process_name", "thread_name")}
    for pid, name in ((PID_INPUTS, "inputs"), (PID_INTERRUPTS, "interrupts"),
                      (PID_OUTPUT, "guest output"), (PID_TIMERS, "timers"),
                      (PID_MACHINE, "machine"), (PID_ORACLES, "oracles")):
        assert (pid, 0, name) in names
    threads = {n for _p, _t, n in names}
    assert {"com1 rx", "keys", "rtc time", "inta", "com1", "checkpoints", "pit",
            "interrupts"} <= threads
    # Every event has a timestamp in microseconds of guest time.
    body = [e for e in ev if e["ph"] != "M"]
    assert all(e["ts"] == pytest.approx(_us(e["args"]["tick"], hz)) for e in body
               if "tick" in e["args"])

    # Inputs: one instant per serial byte and key, at its tick.
    rx = c.inputs[(c.inputs["kind"] == Kind.SERIAL_RX) & (c.inputs["a"] == 0)]
    got = [e for e in body if e["pid"] == PID_INPUTS and e["args"].get("byte") is not None]
    assert [e["args"]["byte"] for e in got] == rx["b"].tolist()
    assert got[0]["ts"] == pytest.approx(_us(int(rx["tick"][0]), hz))
    keys = [e for e in body if e["pid"] == PID_INPUTS and "code" in e["args"]]
    assert len(keys) == int(np.count_nonzero(c.inputs["kind"] == Kind.KEY)) > 0
    rtc = [e for e in body if e["pid"] == PID_INPUTS and "unix_seconds" in e["args"]]
    assert [e["args"]["unix_seconds"] for e in rtc] == [RTC]

    # Interrupts: IRQ line counters and INTA vectors match the device stream.
    inta = c.device[c.device["kind"] == Kind.INTA]
    vec = [e for e in body if e["pid"] == PID_INTERRUPTS and e["ph"] == "i"]
    assert [e["args"]["vector"] for e in vec] == inta["a"].tolist()
    assert {e["name"] for e in vec} >= {"vector 0x20", "vector 0x21", "vector 0x24",
                                        "vector 0x28"}
    assert vec[0]["ts"] == pytest.approx(_us(int(inta["tick"][0]), hz))
    irq = c.device[c.device["kind"] == Kind.IRQ]
    counters = [e for e in body if e["ph"] == "C"]
    assert len(counters) == len(irq)
    first = irq[irq["a"] == 4][0]
    c4 = next(e for e in counters if e["name"] == "irq 4")
    assert c4["args"]["level"] == int(first["b"]) and \
        c4["ts"] == pytest.approx(_us(int(first["tick"]), hz))

    # Guest output: COM1 lines as slices from the first byte to the newline.
    out = c.output[c.output["a"] == Channel.COM1]
    lines = [e for e in body if e["pid"] == PID_OUTPUT and e["ph"] == "X"]
    assert lines[0]["name"] == "aero demo"
    assert lines[0]["ts"] == pytest.approx(_us(int(out["tick"][0]), hz))
    nl = int(out["tick"][out["b"] == ord("\n")][0])
    assert lines[0]["ts"] + lines[0]["dur"] == pytest.approx(_us(nl, hz))
    assert any(e["name"] == "42" for e in lines)  # the answer to `sum 1 2 39`
    text = b"".join(e["args"]["text"].encode() + b"\r\n" for e in lines)
    assert text.replace(b"\r\n", b"") == out["b"].astype(np.uint8).tobytes().replace(
        b"\r", b"").replace(b"\n", b"")

    # Timers, checkpoints, the exit, the violation.
    timers = [e for e in body if e["pid"] == PID_TIMERS]
    assert len(timers) == int(np.count_nonzero(c.device["kind"] == Kind.TIMER)) > 0
    cps = [e for e in body if e["pid"] == PID_MACHINE and e["name"] == "checkpoint"]
    assert [e["args"]["tick"] for e in cps] == c.cp_ticks.tolist()
    assert any(e["name"].startswith("exit") for e in body if e["pid"] == PID_MACHINE)
    v = [e for e in body if e["pid"] == PID_ORACLES]
    assert len(v) == 1 and v[0]["name"] == "IF clear for too long" and \
        v[0]["ts"] == pytest.approx(123_456.78)


def _by_hand(c, start: int, end: int) -> list[tuple[int, dict[str, int]]]:
    """(linear eip, registers) before every instruction executed in [start, end), stepping a
    fresh machine from tick 0 with the trace's inputs."""
    ref, data = resolve_guest("demo")
    m = start_machine(c.config, ref, data)
    inputs = c.inputs.tolist()
    i = 0
    seen = []
    # Up to the range, run between inputs (no stepping needed there); then step by hand.
    while m.ticks < start:
        while i < len(inputs) and inputs[i][0] == m.ticks:
            m.inject(inputs[i][1], inputs[i][2], inputs[i][3])
            i += 1
        target = min(start, inputs[i][0]) if i < len(inputs) else start
        m.run(target)
        m.take_events()
        m.take_output()
    while m.ticks < end:
        while i < len(inputs) and inputs[i][0] == m.ticks:
            m.inject(inputs[i][1], inputs[i][2], inputs[i][3])
            i += 1
        r = m.get_regs()
        t = m.ticks
        m.step()
        ev = m.take_events()
        m.take_output()
        if t >= start and not r.halted and not np.any(ev["kind"] == Kind.INTA):
            regs = {k: getattr(r, k) for k in ("eax", "ebx", "ecx", "edx", "esi", "edi",
                                                "ebp", "esp")}
            seen.append((r.cs.base + r.eip, regs))
    return seen


def _parse(line: str) -> dict[str, int]:
    """The registers of a Tenet line (memory items left out)."""
    return {k: int(v, 16) for k, v in (f.split("=") for f in line.split(","))
            if k not in ("mr", "mw")}


def _memory(line: str) -> list[tuple[str, int, bytes]]:
    """The memory items of a Tenet line: (kind, address, bytes)."""
    out = []
    for f in line.split(","):
        k, v = f.split("=")
        if k in ("mr", "mw"):
            addr, data = v.split(":")
            out.append((k, int(addr, 16), bytes.fromhex(data)))
    return out


@pytest.mark.slow
def test_tenet_matches_stepping_by_hand(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    assert len(c.keyframes) >= 3
    # A range past the second keyframe in which keys are pressed (keyboard interrupts).
    keys = c.inputs[(c.inputs["kind"] == Kind.KEY) &
                    (c.inputs["tick"] > int(c.keyframes[1].first_tick))]
    start = int(keys["tick"][0]) - 2000
    end = start + 1_200_000
    assert start > int(c.keyframes[1].first_tick)
    lines = list(tenet_lines(c, start, end))
    expect = _by_hand(c, start, end)
    assert len(lines) == len(expect) > 100
    state: dict[str, int] = {}
    for n, (line, (eip, regs)) in enumerate(zip(lines, expect, strict=True)):
        fields = _parse(line)
        assert fields["eip"] == eip, n
        # Only registers that changed since the previous line appear (all on the first).
        changed = {k for k, v in regs.items() if state.get(k) != v}
        assert set(fields) - {"eip"} == changed, n
        state.update(fields)
        assert {k: state[k] for k in regs} == regs
    assert len(_parse(lines[0])) == 9


def test_tenet_memory_accesses(demo_trace: Path) -> None:
    """Around a PIT interrupt: the counter's increment carries the read and the write the
    history query finds, PUSH EAX writes EAX below ESP, and every mr/mw item matches the
    memory of a machine stepped by hand (reads: before the instruction, writes: after)."""
    from aero.traces.query import memory_history
    from aero.traces.replay import seek

    c = load_contents(open_trace(demo_trace))
    changes, _ = memory_history(c, 0x20000, 4, 0, 3_000_000)
    inc = changes[1]
    start, end = inc.tick - 300, inc.tick + 400
    lines = list(tenet_lines(c, start, end))
    parsed = [(_parse(line), _memory(line)) for line in lines]
    n_inc = next(n for n, (f, _) in enumerate(parsed) if f["eip"] == inc.eip)
    assert ("mr", 0x20000, bytes.fromhex(inc.old)) in parsed[n_inc + 1][1]
    assert ("mw", 0x20000, bytes.fromhex(inc.new)) in parsed[n_inc + 1][1]
    state: dict[str, int] = {}
    pushes = 0
    for n, (f, _) in enumerate(parsed[:-1]):
        state.update(f)
        if f["eip"] == 0x7EE0:  # push eax (the handler saves EAX)
            pushes += 1
            item = ("mw", state["esp"] - 4, state["eax"].to_bytes(4, "little"))
            assert item in parsed[n + 1][1]
    assert pushes >= 1
    assert any(k == "mr" for _, items in parsed for k, _, _ in items)

    # By hand: step a machine through the range. Before instruction n executes (the state
    # of line n), the bytes instruction n-1 wrote (line n's mw items) are in memory, and the
    # bytes instruction n reads (line n+1's mr items) are there too.
    m, i = seek(c, start)
    inputs = c.inputs.tolist()
    n = 0
    while m.ticks < end and n < len(parsed):
        while i < len(inputs) and inputs[i][0] == m.ticks:
            m.inject(inputs[i][1], inputs[i][2], inputs[i][3])
            i += 1
        r = m.get_regs()
        here = [(addr, data) for k, addr, data in parsed[n][1] if k == "mw"]
        if n + 1 < len(parsed):
            here += [(addr, data) for k, addr, data in parsed[n + 1][1] if k == "mr"]
        seen = [m.read(addr, len(data)) for addr, data in here]
        m.step()
        ev = m.take_events()
        m.take_output()
        if r.halted or np.any(ev["kind"] == Kind.INTA):
            continue  # no instruction executed: line n is still to come
        assert r.cs.base + r.eip == parsed[n][0]["eip"], n
        assert seen == [data for _, data in here], n
        n += 1
    assert n == len(parsed) >= 10


def test_tenet_range_checks(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    with pytest.raises(ExportError, match="limit"):
        next(tenet_lines(c, 0, 6_000_000))
    with pytest.raises(ExportError, match="past the trace"):
        next(tenet_lines(c, 0, c.end_tick + 1))
    with pytest.raises(ExportError, match="empty"):
        next(tenet_lines(c, 100, 100))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aero.cli", "export", *args],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_cli(demo_trace: Path, tmp_path: Path) -> None:
    vfile = tmp_path / "check.json"
    vfile.write_text(json.dumps({"violations": [
        {"oracle": "eoi", "tick": 5_000_000, "message": "EOI without interrupt"}]}))
    out = tmp_path / "t.json"
    r = _cli(str(demo_trace), "--format", "perfetto", "-o", str(out), "--violations",
             str(vfile), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    doc = json.loads(out.read_text())
    assert s["events"] == len(doc["traceEvents"]) and s["violations"] == 1
    assert any(e.get("name") == "EOI without interrupt" for e in doc["traceEvents"])

    t = tmp_path / "t.txt"
    r = _cli(str(demo_trace), "--format", "tenet", "--from", "0", "--to", "50000", "-o",
             str(t), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["instructions"] == len(t.read_text().splitlines()) > 0
    assert t.read_text().startswith("eax=0x0,")

    r = _cli(str(demo_trace), "--format", "tenet", "--from", "0", "--to", "9000000")
    assert r.returncode == 2 and "--force" in r.stderr and len(r.stderr.splitlines()) == 1
    r = _cli(str(demo_trace), "--format", "tenet")
    assert r.returncode == 2 and "--from" in r.stderr
    r = _cli(str(demo_trace), "--format", "perfetto", "--violations", str(tmp_path / "no"))
    assert r.returncode == 2 and "aero: error:" in r.stderr
    r = _cli(str(tmp_path / "missing.aerotrace"), "--format", "perfetto")
    assert r.returncode == 2


# ---- screens --------------------------------------------------------------------------------

SEABIOS = Path("/usr/share/seabios/bios.bin")


@pytest.mark.skipif(not SEABIOS.exists(), reason="Debian's seabios is not installed")
def test_perfetto_carries_the_screen_of_a_seabios_boot(tmp_path: Path) -> None:
    from aero.traces.record import Recorder, RecordOptions

    from aero.launch import resolve, store_image
    from aero.machine import MachineConfig

    os.environ["AERO_IMAGE_STORE"] = str(tmp_path / "images")
    r = resolve("pc")
    for image in r.images.values():
        store_image(image)
    m = start_machine(MachineConfig(ram_size=32 << 20), r.ref, r.data, r.images)
    p = tmp_path / "bios.aerotrace"
    Recorder(m, r.ref, p, RecordOptions(rtc_time=RTC, max_ticks=60_000_000,
                                        checkpoint_interval=2_000_000,
                                        keyframe_interval=10_000_000)).run()
    final = m.screen()
    assert "No bootable device." in "\n".join(final)
    c = load_contents(open_trace(p))

    def screens(mode: str) -> list[dict]:
        evs = perfetto_events(c, screens=mode)
        names = [e for e in evs if e["ph"] == "M" and e["args"].get("name") == "screen"]
        shots = [e for e in evs if e["ph"] == "i" and e["pid"] == PID_MACHINE
                 and e["tid"] == 4]
        assert len(names) == (1 if shots else 0)
        return shots

    at_cps = screens("checkpoints")
    cp_ticks = set(np.concatenate([t for t, _ in c.iter_checkpoints()]).tolist())
    assert at_cps and all(e["args"]["tick"] in cp_ticks for e in at_cps)
    assert all(e["args"]["source"] == "checkpoint" for e in at_cps)
    # Only changes: no two neighbours alike; the boot's last screen is the final one.
    texts = [e["args"]["screen"] for e in at_cps]
    assert all(a != b for a, b in zip(texts, texts[1:], strict=False))
    assert texts[-1] == "\n".join(final).rstrip("\n")
    assert any(t.startswith("SeaBIOS (version 1.16") for t in texts)
    assert at_cps[-1]["name"].startswith("SeaBIOS (version")
    assert at_cps[0]["ts"] == _us(at_cps[0]["args"]["tick"], c.config.tick_hz)
    # From the keyframes, without execution: at each keyframe, the screen the replay saw
    # at that checkpoint.
    at_kfs = screens("keyframes")
    assert at_kfs and all(e["args"]["source"] == "keyframe" for e in at_kfs)
    kf_ticks = {f.first_tick for f in c.keyframes}
    for e in at_kfs:
        t = e["args"]["tick"]
        assert t in kf_ticks
        seen = [s for s in at_cps if s["args"]["tick"] <= t][-1]
        assert e["args"]["screen"] == seen["args"]["screen"], t
    assert screens("none") == []
    with pytest.raises(ExportError, match="screens"):
        perfetto_events(c, screens="sometimes")


def test_a_trace_without_a_screen_has_no_screen_track(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    evs = perfetto_events(c)
    assert not [e for e in evs if e["ph"] == "M" and e["args"].get("name") == "screen"]
