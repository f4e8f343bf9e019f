"""The x87 as part of the system: the environment and save-area layouts, #NM, #MF and
FERR#/IRQ 13, precise faults on memory operands, and the FPU in the serialized state."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from fpuenv import (
    CODE,
    CR0_EM,
    CR0_MP,
    CR0_NE,
    CR0_TS,
    DATA,
    MF,
    NM,
    assemble,
    from_value,
    load,
    needs_as,
    new_machine,
    x80,
)

from aero.machine import Machine, Segment, StopReason

pytestmark = needs_as

GP = 13
ZE, ES, B = 0x4, 0x80, 0x8000
# A state worth saving: three values, a masked zero-divide flag, RC = down, the last
# non-control instruction a memory load (FLDS DATA+0x210: D9 05, FOP 105h).
PROLOGUE = f"""
fninit
fldcw {DATA + 0x200}
fld1
fldz
fdivr %st(1), %st
fldpi
flds {DATA + 0x210}
"""
DATA_BYTES = bytes(0x200) + struct.pack("<H", 0x077F) + bytes(14) + struct.pack("<f", 2.5)


def machine(src: str, *, real: bool = False, cr0: int = 0, devices: bool = False) -> Machine:
    m = new_machine(devices=devices)
    m.write(DATA, DATA_BYTES)
    load(m, assemble(src + "\nhlt", code16=real), real=real, cr0=cr0)
    return m


def halt(m: Machine, limit: int = 1000) -> Machine:
    stop = m.run(m.ticks + limit)
    assert stop == StopReason.HALT, (stop, m.last_exception(), hex(m.get_regs().eip))
    return m


def fault(m: Machine, vector: int, at: int, limit: int = 1000) -> None:
    assert m.run(m.ticks + limit) == StopReason.EXCEPTION
    assert m.last_exception() is not None and m.last_exception()[0] == vector
    assert m.get_regs().eip == at


def flds_address(real: bool) -> int:
    """Where the FLDS of PROLOGUE starts."""
    before = assemble(PROLOGUE.rsplit("flds", 1)[0], code16=real)
    return CODE + len(before)


@pytest.mark.parametrize("real, osz32", [(False, True), (False, False), (True, True),
                                         (True, False)])
def test_fnsave_layout_and_frstor_round_trip(real: bool, osz32: bool) -> None:
    prefix = ".byte 0x66\n" if osz32 == real else ""  # the other operand size needs 66h
    save = f"{prefix}fnsave {DATA + 0x100}"
    m = halt(machine(PROLOGUE + save, real=real))
    ref = halt(machine(PROLOGUE, real=real)).get_fpu()
    area = m.read(DATA + 0x100, 108)
    ip = flds_address(real)
    cs, ds = (0, 0) if real else (0x08, 0x10)
    tags = ref.ftw
    fop = 0x106 if real else 0x105  # D9 06 disp16 / D9 05 disp32
    if osz32:
        fcw, fsw, ftw = struct.unpack_from("<HxxHxxHxx", area)
        assert (fcw, fsw, ftw) == (0x077F, ref.fsw, tags)
        w = struct.unpack_from("<4I", area, 12)
        if real:
            assert w[0] & 0xFFFF == ip & 0xFFFF and w[1] == ((ip >> 16) << 12) | fop
            assert w[2] & 0xFFFF == (DATA + 0x210) & 0xFFFF and w[3] == ((DATA + 0x210) >> 16) << 12
        else:
            assert w == (ip, cs | (fop << 16), DATA + 0x210, ds | 0xFFFF0000)
        regs = area[28:108]
    else:
        fcw, fsw, ftw, fip, w8, fdp, w12 = struct.unpack_from("<7H", area)
        assert (fcw, fsw, ftw) == (0x077F, ref.fsw, tags)
        if real:
            assert (fip, w8, fdp, w12) == (ip & 0xFFFF, ((ip >> 16) << 12) | fop,
                                           (DATA + 0x210) & 0xFFFF, ((DATA + 0x210) >> 16) << 12)
        else:
            assert (fip, w8, fdp, w12) == (ip, cs, DATA + 0x210, ds)
        regs = area[14:94]
    for i in range(8):
        assert int.from_bytes(regs[10 * i:10 * i + 10], "little") == ref.st[i]
    # FNSAVE reinitializes; FRSTOR brings everything back.
    after = m.get_fpu()
    assert (after.fcw, after.fsw, after.ftw) == (0x037F, 0, 0xFFFF)
    m = halt(machine(PROLOGUE + save + f"\n{prefix}frstor {DATA + 0x100}", real=real))
    if not real and not osz32:
        ref.fop = 0  # the 16-bit protected-mode layout has no opcode field
    assert m.get_fpu() == ref


@pytest.mark.parametrize("real", [False, True])
def test_fnstenv_masks_exceptions_and_fldenv_restores(real: bool) -> None:
    m = halt(machine(PROLOGUE + f"fnstenv {DATA + 0x100}\nfstcw {DATA + 0x180}", real=real))
    assert m.read(DATA + 0x180, 2) == struct.pack("<H", 0x077F | 0x3F)
    ref = halt(machine(PROLOGUE, real=real)).get_fpu()
    m = halt(machine(PROLOGUE + f"fnstenv {DATA + 0x100}\nfninit\nfldenv {DATA + 0x100}",
                     real=real))
    f = m.get_fpu()
    # FLDENV restores the control, status and tag words and the pointers, not the registers
    # (FNINIT left their contents in place, so the values are still those).
    fields = ("fcw", "fsw", "ftw", "fip", "fop", "fdp")
    assert [getattr(f, k) for k in fields] == [getattr(ref, k) for k in fields]


def test_fstsw_ax_and_fclex() -> None:
    m = halt(machine(PROLOGUE + "fstsw %ax\nmov %eax, %ebx\nfclex\nfnstsw %ax"))
    r = m.get_regs()
    assert r.ebx & 0xFFFF == m.get_fpu().fsw | ZE and r.ebx & ZE and r.eax & 0x3F == 0


# ---- #NM, #MF and FERR# -------------------------------------------------------------------

@pytest.mark.parametrize("cr0", [CR0_EM, CR0_TS, CR0_TS | CR0_MP, CR0_EM | CR0_TS])
def test_escape_raises_nm(cr0: int) -> None:
    m = machine("fld1", cr0=cr0)
    fault(m, NM, CODE)
    assert m.get_fpu().top == 0 and m.get_fpu().fcw == 0x0040  # untouched power-on state


def test_wait_nm_only_with_mp_and_ts() -> None:
    fault(machine("fwait", cr0=CR0_TS | CR0_MP), NM, CODE)
    halt(machine("fwait", cr0=CR0_TS))
    halt(machine("fwait", cr0=CR0_EM))


UNMASK_ZE = f"""
fninit
fldcw {DATA + 0x200}
fld1
fldz
fdivr %st(1), %st
"""


def unmask_data(m: Machine) -> None:
    m.write(DATA + 0x200, struct.pack("<H", 0x037F & ~ZE))


@pytest.mark.parametrize("tail, reported", [("fld1", True), ("fwait", True), ("fnstsw %ax", False),
                                            ("fnclex\nfld1", False), ("fninit\nfld1", False)])
def test_pending_exception_is_mf_at_the_next_waiting_instruction(tail: str, reported: bool) -> None:
    m = machine(UNMASK_ZE + tail, cr0=CR0_NE)
    unmask_data(m)
    at = CODE + len(assemble(UNMASK_ZE + tail.rsplit("\n", 1)[0] if "\n" in tail else UNMASK_ZE))
    if reported:
        fault(m, MF, at)
        f = m.get_fpu()
        assert f.fsw & (ZE | ES | B) == ZE | ES | B
        assert f.st[0] == from_value(0) and f.st[1] == from_value(1)  # the divide did not happen
    else:
        halt(m)


def test_ferr_raises_irq13_and_port_f0_lets_the_instruction_run() -> None:
    """CR0.NE = 0: the waiting instruction asserts FERR# (IRQ 13 through the PIC) and waits;
    a write to port F0h clears the latch and asserts IGNNE#, and it runs on."""
    m = machine(UNMASK_ZE + "fld1", devices=True)
    unmask_data(m)
    at = CODE + len(assemble(UNMASK_ZE))
    assert m.run(m.ticks + 50) == StopReason.TICKS  # IF = 0: nothing takes the interrupt
    assert m.get_regs().eip == at and m.get_fpu().ferr
    irq = [(int(e["a"]), int(e["b"])) for e in m.take_events() if e["kind"] == 0x41]
    assert irq == [(13, 1)]
    m.port_write(0xF0, 0)
    assert not m.get_fpu().ferr
    assert [(int(e["a"]), int(e["b"])) for e in m.take_events() if e["kind"] == 0x41] == [(13, 0)]
    halt(m)
    assert m.get_fpu().st[0] == from_value(1)


# ---- precise faults -------------------------------------------------------------------------

@pytest.mark.parametrize("insn", [f"fldt {DATA + 0xFFA}", f"fstpt {DATA + 0xFFA}",
                                  f"fnsave {DATA + 0xFC0}", f"frstor {DATA + 0xFC0}",
                                  f"fistpll {DATA + 0xFFC}", f"faddl {DATA + 0xFFC}"])
def test_memory_fault_leaves_the_fpu_unchanged(insn: str) -> None:
    src = PROLOGUE + insn
    m = machine(src)
    r = m.get_regs()
    r.ds = Segment(0x10, 0, DATA + 0xFFF, 0xC093 & ~0x8000)  # byte-granular limit
    m.set_regs(r)
    ref = halt(machine(PROLOGUE)).get_fpu()
    fault(m, GP, CODE + len(assemble(PROLOGUE)))
    assert m.get_fpu() == ref


# ---- CPUID and the serialized state --------------------------------------------------------

def test_cpuid_reports_fpu_and_cmov() -> None:
    m = halt(machine("mov $1, %eax\ncpuid"))
    edx = m.get_regs().edx
    assert edx & 1 and edx & (1 << 15)


def test_power_on_fpu_serializes_as_zeros_and_state_round_trips() -> None:
    fresh = new_machine()
    f = fresh.get_fpu()
    assert (f.fcw, f.fsw, f.ftw) == (0x0040, 0, 0x5555)  # SDM power-on values
    blank = fresh.cpu_state_bytes()
    assert blank[316:] == bytes(len(blank) - 316)
    assert blank[:4] == b"\x01\0\0\0"  # version 1: what builds without the x87 wrote
    m = halt(machine(PROLOGUE))
    state = m.cpu_state_bytes()
    assert state[:4] == b"\x02\0\0\0"  # version 2: carries x87 state
    assert state != blank
    fp1 = m.fingerprint()
    snap = m.snapshot()
    other = new_machine()
    other.restore(snap)
    assert other.get_fpu() == m.get_fpu() and other.cpu_state_bytes() == state
    assert other.fingerprint() == fp1
    f = m.get_fpu()
    f.st[2] ^= 1
    m.set_fpu(f)
    assert m.fingerprint() != fp1
    f.st[2] ^= 1
    f.fcw ^= 0x400
    m.set_fpu(f)
    assert m.fingerprint() != fp1


def test_fpu_regs_accessors() -> None:
    m = new_machine()
    f = m.get_fpu()
    f.st = [from_value(i) for i in range(8)]
    f.fsw, f.ftw, f.fcw = 3 << 11, 0x0000, 0x037F
    m.set_fpu(f)
    g = m.get_fpu()
    assert g.st == f.st and g.top == 3
    assert x80(0, 0, 0) == g.st[0] and (g.ftw >> 6) & 3 == 1  # R3 = ST0 = 0: tag "zero"


def test_recorded_fpu_guest_replays_and_seeks_with_its_x87_state(tmp_path: Path) -> None:
    """The cpu_fpu guest recorded with frequent keyframes: the replay verifies every
    fingerprint (x87 state included), and seeking into the middle restores the x87
    registers exactly as running there directly does."""
    from aero.traces.container import open_trace
    from aero.traces.replay import load_contents, seek

    import aero
    from aero.guests import build
    from aero.loader import load_guest
    from aero.machine import MachineConfig

    rec = aero.record("cpu_fpu", tmp_path / "fpu.aerotrace", checkpoint_interval=5_000,
                      keyframe_interval=20_000)
    assert rec.exit_status == 1
    rep = aero.replay(rec.path)
    assert not rep.diverged and rep.ticks == rec.ticks
    c = load_contents(open_trace(rec.path))
    mid = rec.ticks * 2 // 3
    m, _ = seek(c, mid)
    direct = Machine(MachineConfig(ram_size=32 << 20))
    load_guest(direct, build("cpu_fpu").path)
    direct.run(mid)
    assert m.ticks == direct.ticks == mid
    assert m.get_fpu() == direct.get_fpu() and m.get_fpu().fcw != 0x0040
    # (The fingerprints differ: the recording set the RTC's wall-clock time.)
    assert m.cpu_state_bytes() == direct.cpu_state_bytes()


def test_irq13_handler_clears_the_error_and_the_instruction_runs() -> None:
    """CR0.NE = 0 in real mode, the 8259s programmed as a PC BIOS does (slave at 70h): the
    waiting FLD1 after an unmasked zero-divide raises IRQ 13 (vector 75h); the handler
    writes port F0h, runs FNCLEX and sends EOIs, and FLD1 then runs."""
    handler = 0x3000
    src = f"""
    movb $0x11, %al
    outb %al, $0x20
    outb %al, $0xA0
    movb $0x08, %al
    outb %al, $0x21
    movb $0x70, %al
    outb %al, $0xA1
    movb $0x04, %al
    outb %al, $0x21
    movb $0x02, %al
    outb %al, $0xA1
    movb $0x01, %al
    outb %al, $0x21
    outb %al, $0xA1
    movb $0xFB, %al
    outb %al, $0x21
    movb $0xDF, %al
    outb %al, $0xA1
    movw ${handler}, 0x75 * 4
    movw $0, 0x75 * 4 + 2
    sti
    fninit
    fldcw {DATA + 0x200}
    fld1
    fldz
    fdivr %st(1), %st
    fld1
    cli
    """
    m = new_machine(devices=True)
    m.write(DATA + 0x200, struct.pack("<H", 0x037F & ~ZE))
    m.write(handler, assemble("""
    push %ax
    movb $0, %al
    outb %al, $0xF0
    fnclex
    movb $0x20, %al
    outb %al, $0xA0
    outb %al, $0x20
    incw 0x5000
    pop %ax
    iret
    """, code16=True))
    load(m, assemble(src + "\nhlt", code16=True), real=True)
    halt(m, 5000)
    f = m.get_fpu()
    assert m.read(0x5000, 2) == b"\x01\x00"  # the handler ran once
    assert f.st[0] == from_value(1) and not f.fsw & (ZE | ES) and not f.ferr
