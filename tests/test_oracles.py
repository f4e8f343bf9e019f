"""Invariant oracles: every built-in on a trace that breaks its invariant and on one that
keeps it, user oracles loaded from files, and `aero check` (JSON, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from aero.oracles import (
    Context,
    Event,
    Oracle,
    OracleError,
    check_trace,
    default_names,
    get,
    load_file,
    names,
    resolve,
)
from aero.oracles.builtin_cpu import check_regs
from aero.oracles.builtin_devices import check_devices
from aero.oracles.builtin_memory import parse_region
from aero.traces.container import open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import load_contents
from traceenv import alter_inputs, record_demo

from aero import cli
from aero.devstate import decode
from aero.events import Channel, Kind
from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import MachineConfig, Regs, Segment

RTC = 1_709_214_350
CP = 1_000_000  # checkpoint interval of the small traces


@pytest.fixture(scope="module", autouse=True)
def _stores(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("oracle-stores")
    old = {k: os.environ.get(k) for k in ("AERO_IMAGE_STORE", "AERO_TRACE_DIR")}
    os.environ["AERO_IMAGE_STORE"] = str(base / "images")
    os.environ["AERO_TRACE_DIR"] = str(base / "traces")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def record_flat(tmp: Path, code: bytes, *, name: str = "g.bin", load_addr: int = 0x7C00,
                max_ticks: int = 3 * CP + 100,
                interactive: Callable[[], bytes] | None = None) -> Path:
    """Record a flat real-mode guest made of ``code``."""
    image = tmp / name
    image.write_bytes(code)
    ref, data = resolve_guest(str(image), "flat", load_addr)
    store_image(data)
    m = start_machine(MachineConfig(ram_size=2 << 20), ref, data)
    out = tmp / (name + ".aerotrace")
    # max_ticks off the checkpoint grid: a recording that ends exactly on a checkpoint tick
    # writes that checkpoint twice (see the report on traces/record.py).
    Recorder(m, ref, out, RecordOptions(rtc_time=RTC, checkpoint_interval=CP,
                                        keyframe_interval=10 * CP, max_ticks=max_ticks,
                                        interactive=interactive)).run()
    return out


def contents(path: Path):
    return load_contents(open_trace(path))


def run(path: Path, *oracles: Oracle, **kw):
    return check_trace(contents(path), list(oracles), **kw)


def rules(result) -> list[str]:
    return [v.state.get("rule", "") for v in result.violations]


@pytest.fixture(scope="module")
def demo_trace(tmp_path_factory: pytest.TempPathFactory, _stores: None) -> Path:
    p = tmp_path_factory.mktemp("demo") / "demo.aerotrace"
    res = record_demo(p, rtc=RTC)
    assert res.stop == "exit"
    return p


# Small guests (16-bit real mode at 0000:7C00 unless said otherwise).
EXIT = bytes([0xB0, 0x00, 0xE6, 0xF4])  # mov al, 0; out 0F4h, al
SPIN = bytes([0xEB, 0xFE])  # jmp $
# mov eax, cr0; or al, 1; mov cr0, eax; jmp $  (protected mode without reloading CS)
PE_NO_JUMP = bytes([0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0]) + SPIN


def say(text: bytes, port: int = 0xE9) -> bytes:
    return b"".join(bytes([0xB0, c, 0xE6, port]) for c in text)  # mov al, c; out port, al


# ---- the registry -----------------------------------------------------------------------------

def test_builtins_are_registered_with_descriptions() -> None:
    assert names()[:7] == ["replay-determinism", "cpu", "cpu-step", "devices", "memory",
                           "guest-output", "liveness"]
    assert default_names() == ["replay-determinism", "cpu", "devices", "memory",
                               "guest-output", "liveness"]
    for n in names():
        cls = get(n)
        assert issubclass(cls, Oracle) and cls.name == n
        assert cls.description() and cls.__doc__ and len(cls.__doc__.splitlines()) > 3
    assert get("cpu-step").per_instruction and not get("cpu").per_instruction
    with pytest.raises(OracleError, match="no oracle named 'nope'"):
        get("nope")


# ---- replay-determinism -----------------------------------------------------------------------



def test_demo_trace_is_clean_under_every_default_oracle(demo_trace: Path) -> None:
    r = run(demo_trace, *(get(n)() for n in default_names()))
    assert r.ok and r.violations == [], [v.to_dict() for v in r.violations]
    assert not r.replay.diverged and r.replay.exit_status == 7


def test_replay_determinism_reports_the_divergence_tick(demo_trace: Path,
                                                         tmp_path: Path) -> None:
    c = contents(demo_trace)
    serial = np.flatnonzero(c.inputs["kind"] == Kind.SERIAL_RX)
    tick = int(c.inputs[serial[5]]["tick"])

    def edit(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        hit = (ev["tick"] == tick) & (ev["kind"] == Kind.SERIAL_RX)
        ev["b"][hit] = ord("#")
        return ev

    bad = tmp_path / "altered.aerotrace"
    alter_inputs(demo_trace, bad, edit)
    r = run(bad, get("replay-determinism")())
    assert r.replay.diverged
    [v] = r.violations
    assert v.oracle == "replay-determinism"
    assert v.tick == r.replay.divergence.tick and tick <= v.tick < tick + 2_000_000
    assert v.state["what"] == r.replay.divergence.what
    # The chain ends at the divergence and holds the altered input.
    assert v.chain and all(e.tick <= v.tick for e in v.chain)
    assert any(e.kind == Kind.SERIAL_RX and e.b == ord("#") for e in v.chain)


# ---- cpu ------------------------------------------------------------------------------------

def test_cpu_reports_protected_mode_with_a_real_mode_cs(tmp_path: Path) -> None:
    # Loaded at 1003:0000, CS.RPL = 3; setting CR0.PE without the far jump leaves CPL 0.
    p = record_flat(tmp_path, PE_NO_JUMP, load_addr=0x10030)
    r = run(p, get("cpu")())
    assert rules(r) == ["cpl"], [v.message for v in r.violations]
    v = r.violations[0]
    assert v.tick == CP  # the first checkpoint; reported once while it keeps failing
    assert v.state["cs"] == 0x1003 and v.state["cpl"] == 0 and v.state["cr0"] & 1


def test_cpu_step_reports_the_exact_instruction(tmp_path: Path) -> None:
    p = record_flat(tmp_path, PE_NO_JUMP, load_addr=0x10030, max_ticks=40)
    r = run(p, get("cpu-step")())
    assert rules(r) == ["cpl"]
    assert r.violations[0].tick == 3  # after the third instruction, MOV CR0, EAX


def test_cpu_and_cpu_step_pass_a_clean_guest(tmp_path: Path) -> None:
    # Same start, but at 0000:7C00 (RPL 0): protected mode with CPL = CS.RPL = SS.DPL = 0.
    loop = bytes([0xB9, 0x64, 0x00, 0xE2, 0xFE])  # mov cx, 100; loop $
    p = record_flat(tmp_path, PE_NO_JUMP[:-2] + loop + EXIT)
    r = run(p, get("cpu")(), get("cpu-step")())
    assert r.ok and r.replay.exit_status == 1 and r.replay.ticks > 100


def _regs(**kw: object) -> Regs:
    r = Regs(cr0=0x11, cpl=0, eflags=0x202)
    r.cs = Segment(0x08, 0, 0xFFFFF, 0x9B)
    r.ss = Segment(0x10, 0, 0xFFFFF, 0x93)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize("change, rule", [
    ({"eflags": 0x200}, "eflags"), ({"eflags": 0x20A}, "eflags"),
    ({"eflags": 0x8202}, "eflags"), ({"eflags": 0x400202}, "eflags"),
    ({"cs": Segment(0x0B, 0, 0xFFFFF, 0x9B)}, "cpl"),
    ({"ss": Segment(0x13, 0, 0xFFFFF, 0xF3)}, "ss-dpl"),
    ({"cr0": 0x80000010}, "cr0-pg"), ({"cr0": 0x20000011}, "cr0-nw"),
    ({"cr4": 1 << 9}, "cr4"), ({"cr4": 1 << 5}, "cr4"), ({"eip": 0x100000}, "eip-limit"),
])
def test_cpu_rules(change: dict, rule: str) -> None:
    features = MachineConfig().features
    assert check_regs(_regs(), features) == []
    assert check_regs(_regs(cr4=0x90, eflags=0x3F7FD7), features) == []  # PSE|PGE, all flags
    assert [x[0] for x in check_regs(_regs(**change), features)] == [rule]
    # Real mode and virtual-8086 mode: no CPL rule.
    assert check_regs(_regs(cr0=0x10, cpl=3), features) == []


# ---- devices --------------------------------------------------------------------------------

class SetMasterIsr(Oracle):
    """Fault injection for the test: puts IRQ 5 in service behind the CPU's back."""

    name = "test-set-isr"

    def start(self, ctx: Context) -> None:
        m = ctx.machine
        dev = m.devices_state_bytes()
        snap = bytearray(m.snapshot())
        at = bytes(snap).index(dev)
        snap[at + 9] |= 1 << 5  # after the version and presence words: master IRR, ISR
        m.restore(bytes(snap))


def test_devices_reports_an_unacknowledged_isr_bit(tmp_path: Path) -> None:
    p = record_flat(tmp_path, SPIN, max_ticks=2 * CP + 100)
    clean = run(p, get("devices")())
    assert clean.ok
    r = run(p, SetMasterIsr(), get("devices")(), get("replay-determinism")())
    by = {v.oracle: v for v in r.violations}
    assert set(by) == {"devices", "replay-determinism"}
    v = by["devices"]
    assert v.state["rule"] == "pic-isr" and v.state["chip"] == "master"
    assert v.state["unacknowledged"] == 0x20 and v.state["acknowledged"] == 0


def test_devices_accepts_acknowledged_interrupts(demo_trace: Path) -> None:
    c = contents(demo_trace)
    assert np.count_nonzero(c.device["kind"] == Kind.INTA) > 50
    assert run(demo_trace, get("devices")()).ok


@pytest.fixture(scope="module")
def clean_devices() -> dict:
    m = start_machine(MachineConfig(ram_size=1 << 20), *resolve_guest("demo"))
    return decode(m.devices_state_bytes())


@pytest.mark.parametrize("dev, change, rule", [
    ("com1", {"rx_count": 17}, "uart-fifo"), ("com2", {"tx_head": 16}, "uart-fifo"),
    ("com1", {"rx_count": 2}, "uart-fifo"),  # FIFOs off: only the holding register
    ("pit", {"ch0_n": 65_537, "ch0_running": 1}, "pit-count"),
    ("pit", {"ch1_n": 0, "ch1_running": 1}, "pit-count"),
    ("pit", {"ch2_pend_n": 70_000, "ch2_pend_at": 5}, "pit-count"),
    ("rtc", {"index": 128}, "rtc-index"), ("kbc", {"fifo_len": 17}, "kbc-fifo"),
    ("pic", {"master_output": 1}, "pic-output"), ("pic", {"slave_elcr": 0x01}, "pic-elcr"),
])
def test_device_rules(clean_devices: dict, dev: str, change: dict, rule: str) -> None:
    assert check_devices(clean_devices) == []
    d = {k: dict(v) for k, v in clean_devices.items()}
    d[dev].update(change)
    assert [x[0] for x in check_devices(d)] == [rule]


def test_device_rules_bcd_and_fifo_modes(clean_devices: dict) -> None:
    d = {k: dict(v) for k, v in clean_devices.items()}
    d["com1"].update(fcr=1, rx_count=16)  # FIFOs on: 16 is fine
    d["pit"].update(ch0_bcd=1, ch0_n=10_000, ch0_running=1, ch0_latched=1, ch0_latch=0x9999)
    assert check_devices(d) == []
    d["pit"]["ch0_n"] = 10_001
    assert [x[0] for x in check_devices(d)] == ["pit-count"]
    d["pit"].update(ch0_n=5, ch0_latch=0x1A00)
    assert [x[0] for x in check_devices(d)] == ["pit-latch"]


# ---- memory ---------------------------------------------------------------------------------

# mov byte [7D00h], 55h; jmp $
POKE = bytes([0xC6, 0x06, 0x00, 0x7D, 0x55]) + SPIN


def test_memory_reports_a_write_to_a_read_only_region(tmp_path: Path) -> None:
    p = record_flat(tmp_path, POKE)
    r = run(p, get("memory")(regions=[(0x7D00, 16)]))
    [v] = r.violations
    assert v.tick == CP  # the first checkpoint after the write
    assert v.state == {"region_start": 0x7D00, "region_length": 16, "first_address": 0x7D00,
                       "old": 0, "new": 0x55, "bytes_changed": 1}


def test_memory_passes_untouched_regions(tmp_path: Path) -> None:
    p = record_flat(tmp_path, POKE)
    assert run(p, get("memory")(regions=[(0x7C00, len(POKE)), (0x7D01, 0x100)])).ok
    assert run(p, get("memory")()).ok  # no regions by default


def test_region_syntax() -> None:
    assert parse_region("0x7c00+512") == (0x7C00, 512)
    assert parse_region("0x1000:0x2000") == (0x1000, 0x1000)
    for bad in ("7c00", "0x10+0", "0x2000:0x1000", "x+1"):
        with pytest.raises(ValueError):
            parse_region(bad)


# ---- guest-output ---------------------------------------------------------------------------

def test_guest_output_reports_the_byte_that_completes_a_fail_pattern(tmp_path: Path) -> None:
    # "FA" on the debug console, "IL" on the POST port (not watched), then "IL" on the
    # debug console: one match, completed by the debug console's first "L".
    p = record_flat(tmp_path, say(b"ok FA") + say(b"IL", 0x80) + say(b"IL\n") + EXIT)
    r = run(p, get("guest-output")())
    [v] = r.violations
    c = contents(p)
    out = c.output[(c.output["a"] == Channel.DEBUGCON)]
    l_tick = int(out[out["b"] == ord("L")][0]["tick"])
    assert v.tick == l_tick and v.state["channel"] == "debugcon"
    assert v.state["pattern"] == "FAIL" and v.state["recent_output"].endswith("FAIL")
    assert v.chain[-1].tick == l_tick and v.chain[-1].b == ord("L")


def test_guest_output_patterns_are_configurable(tmp_path: Path, demo_trace: Path) -> None:
    p = record_flat(tmp_path, say(b"all tests passed\n") + EXIT)
    assert run(p, get("guest-output")()).ok
    assert run(p, get("guest-output")(passed=["passed"])).ok
    r = run(p, get("guest-output")(fail=["tests"], passed=["PASS"]))
    assert [v.message for v in r.violations] == [
        "debugcon output shows the fail pattern 'tests'",
        "the output never showed a pass pattern"]
    assert r.violations[1].tick == r.replay.ticks
    assert run(demo_trace, get("guest-output")(passed=["aero demo"])).ok


# ---- liveness -------------------------------------------------------------------------------

# sti; hlt; jmp short back to hlt
IDLE = bytes([0xFB, 0xF4, 0xEB, 0xFD])


def test_liveness_reports_a_halt_nothing_can_wake(tmp_path: Path) -> None:
    # Recorded as an interactive session nobody typed in: the trace runs on after the HLT.
    p = record_flat(tmp_path, IDLE, interactive=lambda: b"")
    c = contents(p)
    assert c.end_tick == 3 * CP + 100 and len(c.inputs) == 1  # the RTC time only
    r = run(p, get("liveness")())
    [v] = r.violations
    assert v.tick == CP and "no device timer is armed and no input follows" in v.message


def test_liveness_final_halt_and_later_input(tmp_path: Path) -> None:
    p = record_flat(tmp_path, bytes([0xFA, 0xF4]))  # cli; hlt: the recording stops there
    assert contents(p).summary["stop"] == "halt"
    assert run(p, get("liveness")()).ok  # a final halt is allowed by default
    r = run(p, get("liveness")(allow_final_halt=False))
    [v] = r.violations
    assert "interrupts are disabled" in v.message and v.tick == r.replay.ticks == 2
    # An input still to come means the halt is not dead.
    sent = iter([b"", b"", b"x"] + [b""] * 10_000)
    q = record_flat(tmp_path, IDLE, name="late.bin", interactive=lambda: next(sent))
    assert np.count_nonzero(contents(q).inputs["kind"] == Kind.SERIAL_RX) == 1
    r = run(q, get("liveness")())
    assert all("halted for good" not in v.message or v.tick > int(
        contents(q).inputs["tick"][-1]) for v in r.violations)


def test_liveness_reports_a_stall_once(tmp_path: Path) -> None:
    p = record_flat(tmp_path, SPIN, max_ticks=6 * CP + 100)
    r = run(p, get("liveness")(stall_ticks=2 * CP))
    [v] = r.violations
    assert v.tick == 2 * CP and v.state["since"] == 0 and v.state["ticks"] == 2 * CP
    assert v.state["ip_low"] == v.state["ip_high"] == 0x7C00
    assert run(p, get("liveness")(stall_ticks=7 * CP)).ok


def test_liveness_output_is_progress(tmp_path: Path) -> None:
    # A loop that prints a byte every iteration (and spins 64K times in between).
    loop = bytes([0xB0, 0x2E, 0xE6, 0xE9, 0xB9, 0x00, 0x00, 0xE2, 0xFE, 0xEB, 0xF5])
    p = record_flat(tmp_path, loop, max_ticks=6 * CP + 100)
    assert run(p, get("liveness")(stall_ticks=CP)).ok


# ---- runner and user oracles ----------------------------------------------------------------

USER_ORACLE = '''
from aero.events import Kind
from aero.oracles import Oracle


class TooManyInterrupts(Oracle):
    """At most LIMIT acknowledged interrupts."""

    name = "too-many-interrupts"
    LIMIT = 10

    def start(self, ctx):
        self.n = 0

    def event(self, ctx, event):
        if event.kind == Kind.INTA:
            self.n += 1
            if self.n == self.LIMIT + 1:
                self.violation(ctx, "too many interrupts", state={"vector": event.a})


class NotAnOracle:
    pass


class Broken(Oracle):
    def checkpoint(self, ctx):
        raise KeyError("boom")
'''


def test_user_oracle_from_a_file(tmp_path: Path, demo_trace: Path) -> None:
    f = tmp_path / "mine.py"
    f.write_text(USER_ORACLE)
    cls = load_file(f"{f}:TooManyInterrupts")
    assert resolve(f"{f}:TooManyInterrupts").__qualname__ == "TooManyInterrupts"
    assert cls.description().startswith("At most")
    r = run(demo_trace, cls())
    [v] = r.violations
    assert v.oracle == "too-many-interrupts" and v.chain[-1].kind == Kind.INTA
    assert v.chain[-1].tick == v.tick and v.state["vector"] == v.chain[-1].a
    with pytest.raises(OracleError, match=r"oracle Broken failed in checkpoint\(\): KeyError"):
        run(demo_trace, load_file(f"{f}:Broken")())


@pytest.mark.parametrize("spec, message", [
    ("{d}/missing.py:X", "no such oracle file"),
    ("{d}/mine.py:Missing", "no class Missing"),
    ("{d}/mine.py:NotAnOracle", "is not an Oracle subclass"),
    ("{d}/syntax.py:X", "cannot load: SyntaxError"),
    ("{d}/mine.py:", "path.py:ClassName"),
])
def test_user_oracle_errors(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "mine.py").write_text(USER_ORACLE)
    (tmp_path / "syntax.py").write_text("def (:\n")
    with pytest.raises(OracleError, match=message) as info:
        resolve(spec.format(d=tmp_path))
    assert "\n" not in str(info.value)


def test_chain_length_and_order(demo_trace: Path, tmp_path: Path) -> None:
    class AtTick(Oracle):
        name = "at-tick"

        def checkpoint(self, ctx: Context) -> None:
            if not ctx.violations:
                self.violation(ctx, "here")

    r = run(demo_trace, AtTick(), chain_length=5)
    [v] = r.violations
    c = contents(demo_trace)
    every = np.concatenate([c.inputs, c.device, c.output])
    before = np.sort(every[every["tick"] <= v.tick]["tick"])
    assert v.tick == int(c.cp_ticks[0]) and len(v.chain) == 5
    assert [e.tick for e in v.chain] == sorted(e.tick for e in v.chain)
    assert v.chain[-1].tick == int(before[-1])
    assert isinstance(v.chain[0], Event) and v.to_dict()["chain"][0]["text"]


# ---- aero check -----------------------------------------------------------------------------

def check(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = cli.main(["check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_check_clean_and_violating(tmp_path: Path, demo_trace: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    code, out, _ = check(capsys, str(demo_trace), "--json")
    res = json.loads(out)
    assert code == 0 and res["violations"] == [] and res["oracles"] == default_names()
    bad = record_flat(tmp_path, say(b"FAIL") + EXIT)
    code, out, _ = check(capsys, str(bad), "--json")
    res = json.loads(out)
    assert code == 1
    [v] = res["violations"]
    assert {"oracle", "tick", "message", "state", "chain"} <= set(v)
    assert v["oracle"] == "guest-output" and v["chain"][-1]["kind"] == "output"
    code, out, _ = check(capsys, str(bad), "--fail-pattern", "nothing-like-it")
    assert code == 0 and "passed" in out
    code, out, _ = check(capsys, str(bad))  # the rich report
    assert code == 1 and "guest-output" in out and "FAIL" in out


def test_cli_check_options_and_user_oracles(tmp_path: Path, demo_trace: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    poke = record_flat(tmp_path, POKE)
    code, out, _ = check(capsys, str(poke), "--oracle", "memory", "--readonly", "0x7d00+4",
                         "--json")
    res = json.loads(out)
    assert code == 1 and res["oracles"] == ["memory"]
    assert res["violations"][0]["state"]["first_address"] == 0x7D00
    code, out, _ = check(capsys, str(poke), "--oracle", "liveness", "--stall-ticks", "2000000",
                         "--json")
    assert code == 1 and json.loads(out)["violations"][0]["tick"] == 2 * CP
    f = tmp_path / "mine.py"
    f.write_text(USER_ORACLE)
    code, out, _ = check(capsys, str(demo_trace), "--oracle", f"{f}:TooManyInterrupts",
                         "--oracle", "cpu", "--json")
    res = json.loads(out)
    assert code == 1 and res["oracles"] == ["too-many-interrupts", "cpu"]
    assert [v["oracle"] for v in res["violations"]] == ["too-many-interrupts"]


def test_cli_check_list(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = check(capsys, "--list", "--json")
    rows = json.loads(out)["oracles"]
    assert code == 0 and [r["name"] for r in rows][:7] == names()[:7]
    assert {r["name"] for r in rows if not r["default"]} >= {"cpu-step"}
    code, out, _ = check(capsys, "--list")
    assert code == 0 and "liveness" in out and "slow" in out


@pytest.mark.parametrize("args, message", [
    (["{d}/missing.aerotrace"], "missing.aerotrace"),
    (["{t}", "--oracle", "nope"], "no oracle named 'nope'"),
    (["{t}", "--oracle", "{d}/none.py:X"], "no such oracle file"),
    (["{d}/junk.aerotrace"], "junk.aerotrace"),
])
def test_cli_check_bad_input_exits_2(tmp_path: Path, demo_trace: Path, args: list[str],
                                     message: str, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "junk.aerotrace").write_bytes(b"not a trace at all")
    code, out, err = check(capsys, *(a.format(d=tmp_path, t=demo_trace) for a in args))
    assert code == 2 and out == ""
    assert err.startswith("aero: error:") and message in err and err.count("\n") == 1


def test_cli_check_exit_codes_in_a_subprocess(tmp_path: Path) -> None:
    bad = record_flat(tmp_path, say(b"panic: x") + EXIT)
    good = record_flat(tmp_path, say(b"fine") + EXIT, name="good.bin")
    for path, want in ((bad, 1), (good, 0), (tmp_path / "none", 2)):
        r = subprocess.run([sys.executable, "-m", "aero.cli", "check", str(path), "--json"],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert r.returncode == want, r.stderr
        if want != 2:
            assert len(json.loads(r.stdout)["violations"]) == (want == 1)
