"""Platform behaviour Linux depends on, checked on small real-mode programs: the port log
(what a guest touched, observation only) and IA32_BIOS_SIGN_ID (MSR 8Bh)."""

from __future__ import annotations

from aero.loader import load_flat
from aero.machine import Machine, MachineConfig, StopReason

# 0x7C00: three writes to port 80h, a read of 61h and a 32-bit read of CFCh, then hlt.
PORT_PROG = bytes.fromhex(
    "b012"        # mov al, 12h
    "e680"        # out 80h, al
    "e680"        # out 80h, al
    "b034"        # mov al, 34h
    "e680"        # out 80h, al
    "e461"        # in al, 61h
    "bafc0c"      # mov dx, 0CFCh
    "66ed"        # in eax, dx
    "f4")         # hlt


def run_flat(code: bytes, config: MachineConfig | None = None, log: bool = False) -> Machine:
    m = Machine(config or MachineConfig())
    load_flat(m, code)
    if log:
        m.enable_port_log()
    m.set_stop_on_exception(True)
    m.run(1000)
    return m


def test_port_log_counts_first_tick_and_last_value() -> None:
    m = run_flat(PORT_PROG, log=True)
    log = m.port_log()
    assert sorted(log) == [0x61, 0x80, 0xCFC]
    assert (log[0x80].reads, log[0x80].writes) == (0, 3)
    assert log[0x80].first_tick == 2  # the clock during the second instruction
    assert (log[0x80].last_value, log[0x80].last_size) == (0x34, 1)
    assert (log[0x61].reads, log[0x61].writes, log[0x61].first_tick) == (1, 0, 6)
    assert (log[0xCFC].reads, log[0xCFC].last_size) == (1, 4)


def test_port_log_is_observation_only() -> None:
    plain = run_flat(PORT_PROG)
    logged = run_flat(PORT_PROG, log=True)
    assert plain.fingerprint() == logged.fingerprint()
    assert plain.snapshot() == logged.snapshot()


def test_port_log_off_and_restart() -> None:
    m = run_flat(PORT_PROG, log=True)
    m.enable_port_log(False)
    try:
        m.port_log()
    except RuntimeError:
        pass
    else:
        raise AssertionError("port_log() with the log off must raise")
    m.enable_port_log()
    assert m.port_log() == {}


# mov ecx,8Bh; xor eax,eax; xor edx,edx; wrmsr; mov eax,1; cpuid; mov ecx,8Bh; rdmsr; hlt
SIGN_ID_PROG = bytes.fromhex(
    "66b98b000000" "6631c0" "6631d2" "0f30" "66b801000000" "0fa2" "66b98b000000" "0f32"
    "f4")


def test_bios_sign_id_reads_zero_on_family_6() -> None:
    m = run_flat(SIGN_ID_PROG)
    assert m.last_exception() is None
    r = m.get_regs()
    assert r.halted and (r.eax, r.edx) == (0, 0)


def test_bios_sign_id_absent_before_family_6() -> None:
    m = run_flat(SIGN_ID_PROG, MachineConfig(cpuid_signature=0x0543))  # a Pentium
    assert m.last_exception() == (13, 0)
    assert m.run(m.ticks + 10) == StopReason.EXCEPTION
