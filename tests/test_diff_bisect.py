"""aero diff and aero bisect: the first divergent tick and instruction of two runs, the first
instruction another configuration changes, and input minimization (ddmin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aero.oracles import failure_predicate
from aero.traces.bisect import (
    BisectError,
    bisect_config,
    ddmin,
    execute,
    minimize_inputs,
    parse_settings,
)
from aero.traces.container import open_trace
from aero.traces.diff import DiffError, Runner, diff_traces, instruction_at, open_contents
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, load_contents
from aero.traces.script import ScriptRunner, load, parse
from traceenv import alter_inputs

from aero import guests
from aero.events import Kind
from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import MachineConfig

RTC = 1_709_214_350
HZ = MachineConfig().tick_hz


def _record(ref, data, path: Path, script: ScriptRunner | None, **opts) -> object:
    m = start_machine(MachineConfig(ram_size=32 << 20), ref, data)
    return Recorder(m, ref, path, RecordOptions(rtc_time=RTC, script=script, **opts)).run()


def _runner(directives) -> ScriptRunner:
    return ScriptRunner.paced(directives, HZ)




@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("diffbisect")
    os.environ["AERO_IMAGE_STORE"] = str(base / "images")
    return base


@pytest.fixture(scope="module")
def demo(env: Path) -> tuple[Path, Path, int]:
    """The demo trace (short keyframe interval) and a copy whose '3' of "sum 1 2 39" is '4'."""
    ref, data = resolve_guest("demo")
    store_image(data)
    a = env / "demo.aerotrace"
    res = _record(ref, data, a, _runner(load(guests.SOURCE_DIR / "demo.script")),
                  max_ticks=20_000_000_000, checkpoint_interval=1_000_000,
                  keyframe_interval=10_000_000)
    assert res.stop == "exit"
    c = load_contents(open_trace(a))
    serial = np.flatnonzero(c.inputs["kind"] == Kind.SERIAL_RX)
    typed = c.inputs[serial]["b"].astype(np.uint8).tobytes()
    tick = int(c.inputs[int(serial[typed.index(b"39")])]["tick"])

    def edit(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        hit = (ev["tick"] == tick) & (ev["kind"] == Kind.SERIAL_RX)
        ev["b"][hit] = ord("4")
        return ev

    b = env / "altered.aerotrace"
    alter_inputs(a, b, edit)
    return a, b, tick


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aero.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env_extra or {})})


# ---- diff --------------------------------------------------------------------------------------

def test_diff_pinpoints_the_in_that_consumes_the_changed_byte(demo) -> None:
    a, b, tick = demo
    r = diff_traces(a, b)
    assert r["identical"] is False
    assert r["stream"]["stream"] == "input" and r["stream"]["tick"] == tick
    fd = r["first_divergence"]
    # Injecting the byte changes the UART's receive FIFO: the fingerprints differ from the
    # next tick on, and the cause is the input, not the instruction.
    assert fd["tick"] == tick + 1 and fd["cause"] == "input"
    assert [e["b"] for e in fd["inputs"]["a"]] == [ord("3")]
    assert [e["b"] for e in fd["inputs"]["b"]] == [ord("4")]
    assert set(fd["devices"]) == {"com1"} and fd["registers"] == {}
    used = fd["consumed"]
    assert used["instruction"]["a"]["text"] == "in al, dx"
    assert used["registers"] == {"eax": {"a": ord("3"), "b": ord("4")}}
    t_in = used["instruction"]["a"]["tick"]
    assert used["tick"] == t_in + 1

    # Verify by stepping from the input's tick: the first instruction whose result differs
    # in the two runs is an IN from port 3F8h, at exactly that tick.
    ca, cb = open_contents(a), open_contents(b)
    ra = Runner(start_machine(ca.config, ca.guest, ca.images.get(ca.guest.sha256) or
                              resolve_guest("demo")[1]), ca.inputs, 0)
    rb = Runner(start_machine(cb.config, cb.guest, resolve_guest("demo")[1]), cb.inputs, 0)
    ra.advance(tick)
    rb.advance(tick)
    assert ra.m.fingerprint() == rb.m.fingerprint()
    while True:
        t = ra.m.ticks
        ins = instruction_at(ra.m)
        edx = ra.m.get_regs().edx
        ra.advance(t + 1)
        rb.advance(t + 1)
        if ra.m.cpu_state_bytes() != rb.m.cpu_state_bytes():
            break
        assert t < tick + 1000
    assert t == t_in
    assert ins["bytes"] == "ec" and edx & 0xFFFF == 0x3F8


def test_identical_traces_exit_0_and_different_ones_exit_1(demo) -> None:
    a, b, _ = demo
    same = _cli("diff", str(a), str(a), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout) == {**json.loads(same.stdout), "identical": True,
                                       "first_divergence": None}
    diff = _cli("diff", str(a), str(b), "--json")
    assert diff.returncode == 1, diff.stderr
    out = json.loads(diff.stdout)
    fd = out["first_divergence"]
    for key in ("tick", "eip", "registers", "instruction", "memory", "devices", "stream"):
        assert key in fd, key
    assert fd["stream"]["stream"] == "input"
    text = _cli("diff", str(a), str(b))
    assert text.returncode == 1 and "in al, dx" in text.stdout


def test_diff_errors(demo, env: Path, tmp_path: Path) -> None:
    a, _, _ = demo
    r = _cli("diff", str(a), str(tmp_path / "missing.aerotrace"))
    assert r.returncode == 2 and "error" in r.stderr
    (tmp_path / "junk.aerotrace").write_bytes(b"not a trace")
    assert _cli("diff", str(a), str(tmp_path / "junk.aerotrace")).returncode == 2
    # Another guest: not comparable.
    ref, data = resolve_guest("rom_hello") if "rom_hello" in guests.GUESTS else (None, None)
    if ref is not None:
        store_image(data)
        other = tmp_path / "other.aerotrace"
        _record(ref, data, other, None, max_ticks=1_000_000)
        with pytest.raises(DiffError, match="different guests"):
            diff_traces(a, other)
        assert _cli("diff", str(a), str(other)).returncode == 2


def test_diff_late_difference_costs_a_keyframe_interval(demo, tmp_path: Path) -> None:
    """A byte changed near the end: the diff starts from the keyframe before it."""
    a, _, _ = demo
    c = load_contents(open_trace(a))
    last = int(c.inputs["tick"][-2])  # the "exit 3" line's '\r' is last; its '3' before it

    def edit(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        ev["b"][(ev["tick"] == last) & (ev["kind"] == Kind.SERIAL_RX)] = ord("4")
        return ev

    b = tmp_path / "late.aerotrace"
    alter_inputs(a, b, edit)
    r = diff_traces(a, b)
    kf = max(f.first_tick for f in c.keyframes if f.first_tick <= last)
    assert r["start_tick"] == kf and kf > 0
    assert r["first_divergence"]["tick"] == last + 1
    assert r["first_divergence"]["consumed"]["instruction"]["a"]["text"] == "in al, dx"


# ---- bisect config -------------------------------------------------------------------------

N1, N2 = 3_000_000, 400_000


def _tsc_guest() -> bytes:
    """Real mode: a loop that reads nothing from the configuration (2*N1 ticks), then a loop
    that stores RDTSC into RAM (4 instructions per iteration), then exit 5."""
    code = b"\x66\xb9" + N1.to_bytes(4, "little")  # mov ecx, N1
    code += b"\x66\x49\x75\xfc"  # dec ecx; jnz -4
    code += b"\x66\xb9" + N2.to_bytes(4, "little")  # mov ecx, N2
    code += b"\x0f\x31\x66\xa3\x00\x06\x66\x49\x75\xf6"  # rdtsc; mov [600h], eax; dec; jnz
    code += b"\xb0\x05\xe6\xf4\xf4"  # mov al, 5; out 0F4h, al; hlt
    return code


@pytest.fixture(scope="module")
def tsc_trace(env: Path) -> Path:
    img = env / "tsc.bin"
    img.write_bytes(_tsc_guest())
    ref, data = resolve_guest(str(img), "flat")
    store_image(data)
    p = env / "tsc.aerotrace"
    res = _record(ref, data, p, None, checkpoint_interval=100_000, keyframe_interval=500_000)
    assert res.stop == "exit" and res.exit_status == 11
    return p


def test_bisect_config_finds_the_first_rdtsc(tsc_trace: Path) -> None:
    r = bisect_config(tsc_trace, ["tsc_per_tick=3"])
    assert r["identical"] is False and r["config"] == {"tsc_per_tick": [1, 3]}
    first_rdtsc = 1 + 2 * N1 + 1  # mov ecx; the first loop; mov ecx
    fd = r["first_divergence"]
    assert fd["tick"] == first_rdtsc + 1
    assert fd["instruction"]["a"]["text"] == "rdtsc" and fd["instruction"]["a"]["mode"] == 16
    assert fd["instruction"]["a"]["tick"] == first_rdtsc
    assert fd["registers"]["eax"]["b"] == 3 * fd["registers"]["eax"]["a"]
    iv = r["interval"]
    assert iv["start"] <= first_rdtsc < iv["end"]
    # Binary search: about log2(intervals) probes, far fewer than the intervals.
    assert r["intervals"] >= 12 and r["probes"] <= r["intervals"].bit_length() + 1
    lin = bisect_config(tsc_trace, ["tsc_per_tick=3"], linear=True)
    assert lin["first_divergence"]["tick"] == fd["tick"]
    assert lin["probes"] == iv["index"] + 1


def test_bisect_config_same_configuration_is_identical(tsc_trace: Path) -> None:
    r = bisect_config(tsc_trace, ["tsc_per_tick=1"])
    assert r["identical"] is True and r["first_divergence"] is None


def test_bisect_config_cli(tsc_trace: Path) -> None:
    r = _cli("bisect", "config", str(tsc_trace), "--set", "tsc_per_tick=2", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["first_divergence"]["instruction"]["b"]["text"] == "rdtsc"
    assert _cli("bisect", "config", str(tsc_trace), "--set", "nosuch=1").returncode == 2
    assert _cli("bisect", "config", str(tsc_trace), "--set", "ram_size=4096").returncode == 2
    assert _cli("bisect", "config", str(tsc_trace), "--set", "features=pse,bogus").returncode \
        == 2


def test_parse_settings() -> None:
    base = MachineConfig()
    c = parse_settings(base, ["features=pse,tsc", "cpuid_signature=0x633", "a20_enabled=no",
                              "post_ports=0x84"])
    assert c.features == ("pse", "tsc") and c.cpuid_signature == 0x633
    assert c.a20_enabled is False and c.post_ports == (0x84,)
    with pytest.raises(BisectError):
        parse_settings(base, ["tsc_per_tick=0"])


def test_bisect_build_with_this_installation(tsc_trace: Path) -> None:
    """Another build that is this one: no interval differs (fingerprints over the
    subprocess protocol agree with the trace)."""
    prefix = f"{sys.executable} -m aero.cli"
    r = _cli("bisect", "build", str(tsc_trace), "--other", prefix, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["identical"] is True
    fp = _cli("fingerprints", str(tsc_trace), "--at", "0,500000,700000", "--json")
    rows = json.loads(fp.stdout)["fingerprints"]
    c = load_contents(open_trace(tsc_trace))
    recorded = dict(zip(c.cp_ticks.tolist(), c.cp_fps.tolist(), strict=True))
    for row in rows[1:]:
        assert int(row["fingerprint"], 16) == recorded[row["tick"]]
    bad = _cli("bisect", "build", str(tsc_trace), "--other", "/nonexistent/aero")
    assert bad.returncode == 2


# ---- bisect inputs -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def junk_trace(env: Path) -> Path:
    """The demo fed 999 serial bytes (junk lines, then `exit 5`) and the RTC time: 1000
    input events, of which the 7 bytes of "exit 5\\r" decide the exit status."""
    lines = ["echo a\r"] * 141 + ["abcd\r", "exit 5\r"]
    assert sum(map(len, lines)) == 999
    text = "".join(f'on "> " serial "{ln[:-1]}\\r"\n' for ln in lines)
    ref, data = resolve_guest("demo")
    store_image(data)
    p = env / "junk.aerotrace"
    res = _record(ref, data, p, _runner(parse(text)), max_ticks=20_000_000_000)
    assert res.stop == "exit" and res.exit_status == 11 and res.inputs == 1000
    return p


def test_ddmin_on_a_set() -> None:
    keep, tests = ddmin(100, lambda s: {3, 50, 77} <= set(s))
    assert keep == [3, 50, 77] and tests < 100


def test_bisect_inputs_shrinks_to_the_exit_line(junk_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "min.aerotrace"
    r = minimize_inputs(junk_trace, failure_predicate("exit-status:11"), out)
    assert r["inputs"] == 1000
    typed = bytes(e["b"] for e in r["kept_events"] if e["kind"] == Kind.SERIAL_RX)
    assert typed == b"exit 5\r"
    assert r["kept"] == 8  # the seven bytes and the RTC time
    assert r["replays_cleanly"] and r["still_fails"]
    c = load_contents(open_trace(out))
    assert len(c.inputs) == 8 and c.summary["exit_status"] == 11
    assert not Replayer(c).run().diverged
    assert b"exit 5" in execute(c).output


def test_bisect_inputs_cli(junk_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "min2.aerotrace"
    r = _cli("bisect", "inputs", str(junk_trace), "--oracle", "output-contains:> exit 5",
             "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    typed = bytes(e["b"] for e in rep["kept_events"] if e["kind"] == Kind.SERIAL_RX)
    assert typed == b"exit 5"  # the echo shows without the Enter
    assert _cli("bisect", "inputs", str(junk_trace), "--oracle", "no-such-oracle", "-o",
                str(tmp_path / "x.aerotrace")).returncode == 2
    # An oracle that does not fail on the whole trace: nothing to minimize.
    assert _cli("bisect", "inputs", str(junk_trace), "--oracle", "exit-status:99", "-o",
                str(tmp_path / "y.aerotrace")).returncode == 2


# ---- replay --check for git bisect run ----------------------------------------------------

def test_replay_check_has_git_bisect_run_semantics(demo, tmp_path: Path) -> None:
    a, b, _ = demo
    assert _cli("replay", "--check", str(a)).returncode == 0  # good
    assert _cli("replay", "--check", str(b)).returncode == 1  # bad
    # Cannot be evaluated here (guest image neither packed nor stored): skip, not bad.
    r = _cli("replay", "--check", str(a), env_extra={"AERO_IMAGE_STORE": str(tmp_path / "no")})
    assert r.returncode == 125
    (tmp_path / "damaged.aerotrace").write_bytes(b"AEROTRC\0garbage")
    assert _cli("replay", "--check", str(tmp_path / "damaged.aerotrace")).returncode == 125


def test_bisect_inputs_with_a_registered_oracle(env: Path, tmp_path: Path) -> None:
    """The guest-output oracle (default fail pattern "FAIL") over a log where only the four
    bytes that make the guest echo "FAIL" matter."""
    lines = ["echo a\r"] * 6 + ["FAIL\r"] + ["echo b\r"] * 3
    text = "".join(f'on "> " serial "{ln[:-1]}\\r"\n' for ln in lines)
    ref, data = resolve_guest("demo")
    store_image(data)
    p = env / "fail.aerotrace"
    _record(ref, data, p, _runner(parse(text + 'on "> " serial "exit 0\\r"\n')),
            max_ticks=20_000_000_000)
    out = tmp_path / "min.aerotrace"
    r = minimize_inputs(p, failure_predicate("guest-output"), out)
    typed = bytes(e["b"] for e in r["kept_events"] if e["kind"] == Kind.SERIAL_RX)
    assert typed == b"FAIL"
    assert r["replays_cleanly"] and r["still_fails"]
