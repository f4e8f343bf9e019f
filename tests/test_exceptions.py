"""Exceptions and external interrupts: vector, error code, saved EIP, the double-fault rules,
triple fault, and the delivery of raised interrupts and NMIs (shadows, HLT, ticks).

Every expected value comes from the Intel SDM (Vol. 3, "Interrupt and Exception Handling"):
faults save the address of the faulting instruction, traps the next one; #DF pushes error
code 0; contributory exceptions are #DE, #TS, #NP, #SS, #GP.
"""

from __future__ import annotations

import shutil
import struct

import pytest
from sysenv import (
    AC,
    BP,
    BR,
    CLI,
    CODE,
    CODE3,
    CR0_AM,
    CR0_MP,
    CR0_PG,
    CR0_TS,
    CR0_WP,
    DATA0,
    DB,
    DE,
    DF,
    EAX,
    ECX,
    F_AC,
    F_IF,
    F_OF,
    F_RF,
    GDT,
    GP,
    HLT,
    IDT,
    INC_EAX,
    INT3,
    INTO,
    IRET,
    MOV_DS_AX,
    MOV_SS_AX,
    NM,
    NMI,
    NOP,
    NP,
    NP_DATA,
    OF,
    PD,
    PF,
    SS,
    STACK0,
    STI,
    STUBS,
    TINY_DATA3,
    TS,
    UD,
    UD2,
    A,
    D,
    P,
    U,
    W,
    enter_pm,
    expect,
    failed_checks,
    frame,
    gate,
    guest_lines_aero,
    guest_lines_qemu,
    identity_tables,
    load_eax,
    mov_mem_imm,
    mov_r_imm,
    new_machine,
    rd32,
    run,
    set_pte,
    taken,
    u32,
)

from aero.machine import INTR_QUEUE, Machine, MachineConfig, Segment, StopReason

needs_binutils = pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                                    reason="GNU binutils (as, ld) are not installed")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-i386") is None,
                                reason="qemu-system-i386 is not installed")

MOV_AX = b"\x66\xB8"  # mov ax, imm16


def mov_ax(v: int) -> bytes:
    return MOV_AX + struct.pack("<H", v)


# ---- one exception of each kind ----------------------------------------------------------

def test_divide_error_is_a_fault_without_error_code() -> None:
    m = new_machine()
    code = mov_r_imm(EAX, 100) + mov_r_imm(ECX, 0) + b"\xF7\xF1" + HLT  # div ecx
    enter_pm(m, code)
    f = expect(m, DE, None, CODE + 10)
    assert f.eflags & F_RF  # faults push RF = 1
    assert m.get_regs().eax == 100


def test_breakpoint_and_overflow_are_traps() -> None:
    m = new_machine()
    enter_pm(m, INT3 + HLT)
    f = expect(m, BP, None, CODE + 1)
    assert not f.eflags & F_RF
    m = new_machine()
    # mov eax, 0x7FFFFFFF ; inc eax (OF = 1) ; into
    enter_pm(m, mov_r_imm(EAX, 0x7FFFFFFF) + INC_EAX + INTO + HLT)
    f = expect(m, OF, None, CODE + 7)
    assert f.eflags & F_OF and not f.eflags & F_RF


ICEBP = b"\xF1"


def test_int1_ignores_the_gate_dpl() -> None:
    """INT1 (F1) delivers #DB like a debug trap: from CPL 3 through a DPL-0 gate, with the
    next instruction's EIP; INT 1 (CD 01) is an ordinary INT n and fails the DPL check."""
    m = new_machine()
    enter_pm(m, ICEBP + HLT, cpl=3)
    f = expect(m, DB, None, CODE + 1)
    assert f.cs == CODE3 and not f.eflags & F_RF
    m = new_machine()
    enter_pm(m, b"\xCD\x01" + HLT, cpl=3)
    expect(m, GP, 1 * 8 + 2, CODE)  # #GP(IDT entry 1, EXT = 0)


@pytest.mark.parametrize("kind, vector", [(0x0E, NP), (0x80, GP)])
def test_int1_delivery_errors_carry_ext(kind: int, vector: int) -> None:
    """An exception raised while delivering INT1 reports EXT = 1 (an event the program did
    not request as INT n); the same gate reached by INT 1 reports EXT = 0. Gate 1 not
    present: #NP; not a gate type (present, type 0): #GP."""
    for code, ext in ((ICEBP, 1), (b"\xCD\x01", 0)):
        m = new_machine()
        m.write(IDT + 8, gate(STUBS + 32, kind=kind))
        enter_pm(m, code + HLT)
        expect(m, vector, 1 * 8 + 2 + ext, CODE)


def test_into_without_overflow_does_nothing() -> None:
    m = new_machine()
    enter_pm(m, INTO + HLT)
    assert run(m) == StopReason.HALT
    assert taken(m) == (0, 0) and m.get_regs().eip == CODE + 2


def test_bound_range_exceeded_is_a_fault() -> None:
    m = new_machine()
    m.write(0x6000, struct.pack("<ii", 0, 5))
    # bound eax, [0x6000] with eax = 6
    enter_pm(m, mov_r_imm(EAX, 6) + b"\x62\x05" + u32(0x6000) + HLT)
    expect(m, BR, None, CODE + 5)


def test_invalid_opcode() -> None:
    m = new_machine()
    enter_pm(m, NOP + UD2 + HLT)
    f = expect(m, UD, None, CODE + 1)
    assert f.cs == 0x08 and f.eflags & F_RF


def test_device_not_available_and_no_math_fault() -> None:
    m = new_machine()
    enter_pm(m, b"\x9B" + HLT, cr0=CR0_MP | CR0_TS)  # wait
    expect(m, NM, None, CODE)
    # No x87: with CR0.TS clear WAIT never reports #MF (vector 16), an escape is #UD.
    m = new_machine(features=("de", "pse", "tsc", "msr", "cx8", "pge", "cmov"))
    enter_pm(m, b"\x9B" + b"\xD8\xC1" + HLT, cr0=CR0_MP)  # wait ; fadd st, st(1)
    expect(m, UD, None, CODE + 1)


def test_general_protection_selector_error_code() -> None:
    m = new_machine()
    enter_pm(m, mov_ax(0x48) + MOV_DS_AX + HLT)  # 0x48 lies beyond the GDT limit
    f = expect(m, GP, 0x48, CODE + 4)
    assert f.eflags & F_RF
    assert m.get_regs().ds.selector == DATA0


def test_segment_not_present() -> None:
    m = new_machine()
    enter_pm(m, mov_ax(NP_DATA) + MOV_DS_AX + HLT)
    expect(m, NP, NP_DATA, CODE + 4)


def test_stack_fault_on_not_present_ss() -> None:
    m = new_machine()
    enter_pm(m, mov_ax(NP_DATA) + MOV_SS_AX + HLT)
    expect(m, SS, NP_DATA, CODE + 4)


def test_stack_fault_on_limit_from_ring3() -> None:
    """A push beyond SS's limit at CPL 3: #SS(0), delivered on the TSS's ring-0 stack."""
    m = new_machine()
    # mov ax, 0x43 ; mov ss, ax ; mov esp, 0x2000 ; push eax
    code = mov_ax(TINY_DATA3) + MOV_SS_AX + mov_r_imm(4, 0x2000) + b"\x50" + HLT
    enter_pm(m, code, cpl=3)
    f = expect(m, SS, 0, CODE + 11)
    assert f.cs == CODE3
    esp = m.get_regs().esp
    assert esp == STACK0 - 24
    assert struct.unpack("<II", m.read(esp + 16, 8)) == (0x2000, TINY_DATA3)


def test_invalid_tss_on_a_bad_ss0() -> None:
    """INT n from ring 3 to a ring-0 gate with SS0 naming a code segment: #TS(SS0), a fault of
    the INT instruction; its handler runs at ring 3 (no stack switch needed)."""
    m = new_machine()
    m.write(0x4008, u32(0x08))  # SS0 = code segment
    m.write(IDT + 0x40 * 8, gate(STUBS + 32 * 0x40, kind=0xEE))
    # The #TS stub runs at CPL 3: it records and spins (HLT would be #GP there).
    m.write(IDT + TS * 8, gate(0x6800, selector=CODE3, kind=0x8E))
    m.write(0x6800, mov_mem_imm(0x600, TS) + b"\xEB\xFE")
    enter_pm(m, NOP + b"\xCD\x40" + HLT, cpl=3)
    assert run(m, 20) == StopReason.TICKS
    assert rd32(m, 0x600) == TS
    f = frame(m, True)
    assert (f.code, f.eip, f.cs) == (0x08, CODE + 1, CODE3)


def test_fault_takes_the_tick_of_its_instruction() -> None:
    m = new_machine()
    enter_pm(m, NOP + UD2)
    assert run(m) == StopReason.HALT
    assert m.ticks == 5  # nop, the faulting ud2 (its delivery), then the stub's 3 instructions


# ---- double fault ------------------------------------------------------------------------

def test_contributory_while_delivering_contributory_is_double_fault() -> None:
    m = new_machine()
    m.write(IDT + GP * 8, gate(STUBS + 32 * GP, kind=0x0E))  # #GP gate not present: #NP
    enter_pm(m, mov_ax(0x48) + MOV_DS_AX + HLT)
    f = expect(m, DF, 0, CODE + 4)
    assert f.eflags & 0x2


def test_benign_then_contributory_is_handled_serially() -> None:
    m = new_machine()
    m.write(IDT + UD * 8, gate(STUBS + 32 * UD, kind=0x81))  # not a gate type: #GP(6*8+2+1)
    enter_pm(m, UD2)
    expect(m, GP, UD * 8 + 3, CODE)


def paged(m: Machine) -> int:
    """Identity paging for the first 4 MB; returns CR0 bits to add."""
    identity_tables(m)
    return CR0_PG


def test_contributory_while_delivering_page_fault_is_double_fault() -> None:
    m = new_machine()
    cr0 = paged(m)
    set_pte(m, 0x300000, 0)
    m.write(IDT + PF * 8, gate(STUBS + 32 * PF, kind=0x0E))  # #PF gate not present: #NP
    enter_pm(m, load_eax(0x300000) + HLT, cr0=cr0, cr3=PD)
    expect(m, DF, 0, CODE)
    assert m.get_regs().cr2 == 0x300000


def relocated_idt(m: Machine, base: int) -> None:
    """The same gates at another base (vectors 0-31)."""
    m.write(base, b"".join(gate(STUBS + 32 * v) for v in range(32)))


def test_page_fault_while_delivering_page_fault_is_double_fault() -> None:
    """IDT entries 14 and up lie on an unmapped page: the #PF cannot be delivered."""
    m = new_machine()
    cr0 = paged(m)
    base = 0x10000 - 14 * 8
    relocated_idt(m, base)
    set_pte(m, 0x10000, 0)
    set_pte(m, 0x300000, 0)
    enter_pm(m, load_eax(0x300000) + HLT, cr0=cr0, cr3=PD, idtr_base=base)
    expect(m, DF, 0, CODE)
    assert m.get_regs().cr2 == 0x10000


def test_page_fault_while_delivering_contributory_is_serial() -> None:
    """#GP whose gate lies on an unmapped page: the #PF is handled serially (no #DF yet); only
    its own delivery, which needs gate 14 on the same page, escalates (PF then PF)."""
    m = new_machine()
    cr0 = paged(m)
    base = 0x10000 - 13 * 8
    relocated_idt(m, base)
    set_pte(m, 0x10000, 0)
    enter_pm(m, mov_ax(0x48) + MOV_DS_AX + HLT, cr0=cr0, cr3=PD, idtr_base=base)
    expect(m, DF, 0, CODE + 4)
    # A #DF straight from GP+PF would leave CR2 at gate 13; the serial #PF read gate 14.
    assert m.get_regs().cr2 == base + 14 * 8


def triple_fault_machine(**config: object) -> Machine:
    """ud2 with an IDT too short for any gate: #UD -> #GP -> #GP (#DF) -> #GP: shutdown."""
    m = new_machine(**config)
    m.write(0x100, b"\x5A\xA5")
    enter_pm(m, NOP + UD2, idtr_limit=0)
    return m


def test_triple_fault_shuts_down() -> None:
    m = triple_fault_machine()
    assert run(m) == StopReason.SHUTDOWN
    assert m.ticks == 2
    r = m.get_regs()
    assert r.eip == CODE + 1 and r.cs.selector == 0x08
    # Shutdown is kept: nothing runs until a reset.
    assert run(m) == StopReason.SHUTDOWN and m.ticks == 2
    m.reset()
    assert m.run(m.ticks + 1) != StopReason.SHUTDOWN


def test_triple_fault_resets_when_configured() -> None:
    m = triple_fault_machine(reset_on_triple_fault=True)
    assert run(m, 2) == StopReason.TICKS
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip) == (0xF000, 0xFFFF0000, 0xFFF0)
    assert (r.cr0, r.eflags, r.cpl) == (0x60000010, 0x2, 0)
    assert m.read(0x100, 2) == b"\x5A\xA5"  # RAM is kept


def test_triple_fault_reset_runs_the_rom() -> None:
    m = triple_fault_machine(reset_on_triple_fault=True)
    rom = bytearray(b"\xFF" * 0x10000)
    rom[0xFFF0] = 0xF4  # hlt at the reset vector
    m.load_rom(bytes(rom))
    enter_pm(m, NOP + UD2, idtr_limit=0)
    assert run(m) == StopReason.HALT
    r = m.get_regs()
    assert (r.cs.selector, r.eip, m.ticks) == (0xF000, 0xFFF1, 3)


# ---- alignment check ---------------------------------------------------------------------

def ac_machine(code: bytes, *, cpl: int = 3, cr0: int = CR0_AM, eflags: int = 0x2 | F_AC,
               **gprs: int) -> Machine:
    m = new_machine()
    enter_pm(m, code, cpl=cpl, cr0=cr0, eflags=eflags, **gprs)
    return m


def test_alignment_check_on_a_misaligned_read_at_cpl3() -> None:
    # mov eax, [ebx] (aligned, fills the TLB) ; mov eax, [ebx+1]
    m = ac_machine(b"\x8B\x03" + b"\x8B\x43\x01" + HLT, ebx=0x6000)
    f = expect(m, AC, 0, CODE + 2)
    assert f.cs == CODE3


@pytest.mark.parametrize("code", [
    b"\x66\x89\x43\x01",   # mov [ebx+1], ax: word at an odd address
    b"\x89\x43\x02",       # mov [ebx+2], eax: dword at 2 mod 4
    b"\xFF\x43\x01",       # inc dword [ebx+1]
])
def test_alignment_check_on_misaligned_writes(code: bytes) -> None:
    m = ac_machine(b"\x89\x03" + code + HLT, ebx=0x6000)  # the aligned write maps the page
    expect(m, AC, 0, CODE + 2)


def test_alignment_check_on_a_misaligned_push() -> None:
    m = ac_machine(mov_r_imm(4, 0x6FFE) + b"\x50" + HLT)  # mov esp, 0x6FFE ; push eax
    expect(m, AC, 0, CODE + 5)


@pytest.mark.parametrize(("cpl", "cr0", "eflags"), [
    (0, CR0_AM, 0x2 | F_AC),   # CPL 0
    (3, 0, 0x2 | F_AC),        # CR0.AM clear
    (3, CR0_AM, 0x2),          # EFLAGS.AC clear
])
def test_alignment_check_needs_am_ac_and_cpl3(cpl: int, cr0: int, eflags: int) -> None:
    # mov eax, [ebx+1] ; mov [ebx+3], eax ; then spin (HLT is privileged at CPL 3)
    m = ac_machine(b"\x8B\x43\x01\x89\x43\x03\xEB\xFE", cpl=cpl, cr0=cr0, eflags=eflags,
                   ebx=0x6000)
    run(m, 10)
    assert taken(m) == (0, 0) and m.get_regs().eip == CODE + 6


def test_alignment_check_skips_descriptor_loads() -> None:
    """Descriptor-table reads are supervisor accesses: a misaligned GDT is no #AC."""
    m = new_machine()
    m.write(0x7002, m.read(GDT, 9 * 8))
    # mov ax, 0x23 ; mov ds, ax ; mov eax, [0x6001]
    enter_pm(m, mov_ax(0x23) + MOV_DS_AX + load_eax(0x6001) + HLT, cpl=3, cr0=CR0_AM,
             eflags=0x2 | F_AC, gdtr_base=0x7002)
    f = expect(m, AC, 0, CODE + 6)
    assert m.get_regs().ds.selector == 0x23 and f.eip == CODE + 6


def test_alignment_check_with_paging_and_user_pages() -> None:
    m = new_machine()
    cr0 = paged(m)
    enter_pm(m, b"\x8B\x03" + b"\x8B\x43\x02" + HLT, cpl=3, cr0=cr0 | CR0_AM | CR0_WP,
             cr3=PD, eflags=0x2 | F_AC, ebx=0x6000)
    expect(m, AC, 0, CODE + 2)


# ---- external interrupts and NMI ---------------------------------------------------------

VEC = 0x40


def test_raised_interrupt_wakes_hlt_and_takes_a_tick() -> None:
    m = new_machine()
    enter_pm(m, STI + HLT + HLT)
    assert run(m) == StopReason.HALT
    assert m.ticks == 2 and m.get_regs().halted
    m.raise_interrupt(VEC)
    assert m.pending_interrupts == 1
    assert run(m) == StopReason.HALT
    assert taken(m) == (VEC, 1) and m.pending_interrupts == 0
    # The delivery took tick 2; the stub's three instructions ticks 3-5.
    assert m.ticks == 6
    f = frame(m, False)
    assert f.eip == CODE + 2 and f.eflags & F_IF


def test_raised_interrupt_is_taken_at_the_next_boundary() -> None:
    m = new_machine()
    enter_pm(m, NOP * 10 + HLT, eflags=0x2 | F_IF)
    assert run(m, 5) == StopReason.TICKS
    m.raise_interrupt(VEC)
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    assert m.ticks == 6 and r.eip == STUBS + 32 * VEC
    assert frame(m, False).eip == CODE + 5
    assert not r.eflags & F_IF  # interrupt gate


def test_interrupt_masked_by_if() -> None:
    m = new_machine()
    enter_pm(m, NOP + NOP + HLT)
    m.raise_interrupt(VEC)
    assert run(m) == StopReason.HALT
    assert taken(m) == (0, 0) and m.pending_interrupts == 1 and m.ticks == 3


def test_interrupt_waits_for_the_sti_shadow() -> None:
    m = new_machine()
    enter_pm(m, NOP + NOP + STI + NOP + HLT)
    m.raise_interrupt(VEC)
    assert run(m) == StopReason.HALT
    assert taken(m) == (VEC, 1)
    assert frame(m, False).eip == CODE + 4  # after the instruction that follows STI


def test_interrupt_waits_for_the_sti_shadow_across_runs() -> None:
    m = new_machine()
    enter_pm(m, STI + NOP + NOP + HLT)
    assert run(m, 1) == StopReason.TICKS
    m.raise_interrupt(VEC)
    assert run(m) == StopReason.HALT
    assert frame(m, False).eip == CODE + 2


def test_interrupt_waits_for_the_mov_ss_shadow() -> None:
    m = new_machine()
    enter_pm(m, NOP + mov_ax(DATA0) + MOV_SS_AX + NOP + NOP + HLT, eflags=0x2 | F_IF)
    assert run(m, 3) == StopReason.TICKS  # nop ; mov ax ; mov ss, ax
    m.raise_interrupt(VEC)
    assert run(m) == StopReason.HALT
    assert frame(m, False).eip == CODE + 1 + 4 + 2 + 1


def test_raised_interrupts_are_taken_in_order() -> None:
    m = new_machine()
    for i, v in enumerate((0x41, 0x42)):
        # mov ecx, [0x604] ; mov [0x700 + ecx*4], v ; inc dword [0x604] ; iretd
        body = (b"\x8B\x0D" + u32(0x604) + b"\xC7\x04\x8D" + u32(0x700) + u32(v)
                + b"\xFF\x05" + u32(0x604) + IRET)
        m.write(0x6000 + 0x40 * i, body)
        m.write(IDT + v * 8, gate(0x6000 + 0x40 * i))
    enter_pm(m, NOP * 40 + HLT, eflags=0x2 | F_IF)
    m.raise_interrupt(0x42)
    m.raise_interrupt(0x41)
    assert run(m) == StopReason.HALT
    assert (rd32(m, 0x604), rd32(m, 0x700), rd32(m, 0x704)) == (2, 0x42, 0x41)
    # 2 deliveries + 2 * 4 handler instructions + 40 nops + hlt
    assert m.ticks == 51


def test_raise_interrupt_limits() -> None:
    m = new_machine()
    with pytest.raises(ValueError):
        m.raise_interrupt(256)
    for _ in range(INTR_QUEUE):
        m.raise_interrupt(VEC)
    with pytest.raises(RuntimeError):
        m.raise_interrupt(VEC)


def test_pending_interrupt_survives_reset() -> None:
    """A reset is the CPU's: an interrupt raised (at the controller) stays pending, taken
    once IF is set."""
    m = new_machine()
    m.raise_interrupt(VEC)
    m.reset()
    assert m.pending_interrupts == 1
    enter_pm(m, NOP + HLT, eflags=0x2 | F_IF)
    assert run(m) == StopReason.HALT
    assert taken(m) == (VEC, 1) and frame(m, False).eip == CODE


def test_pending_interrupt_survives_snapshot() -> None:
    a = new_machine()
    enter_pm(a, NOP * 4 + HLT, eflags=0x2 | F_IF)
    a.raise_interrupt(VEC)
    snap = a.snapshot()
    b = new_machine()
    b.restore(snap)
    assert b.pending_interrupts == 1
    assert run(a) == run(b) == StopReason.HALT
    assert a.fingerprint() == b.fingerprint() and taken(b) == (VEC, 1)


NMI_HANDLER = 0x6000


def nmi_machine(code: bytes, eflags: int = 0x2) -> Machine:
    m = new_machine()
    # inc dword [0x700] ; iretd
    m.write(NMI_HANDLER, b"\xFF\x05" + u32(0x700) + IRET)
    m.write(IDT + NMI * 8, gate(NMI_HANDLER))
    enter_pm(m, code, eflags=eflags)
    return m


def test_nmi_ignores_if_and_wakes_hlt() -> None:
    m = nmi_machine(CLI + HLT + HLT)
    assert run(m) == StopReason.HALT
    m.raise_nmi()
    assert run(m) == StopReason.HALT
    # delivery, inc, iret, then the second hlt
    assert rd32(m, 0x700) == 1 and m.get_regs().eip == CODE + 3 and m.ticks == 2 + 4


def test_nmi_blocked_until_iret() -> None:
    m = nmi_machine(NOP * 20 + HLT)
    m.raise_nmi()
    assert run(m, 2) == StopReason.TICKS  # delivery, inc
    assert m.get_regs().eip == NMI_HANDLER + 6
    m.raise_nmi()  # held until the handler's IRET
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    assert r.eip == CODE and rd32(m, 0x700) == 1
    assert run(m, 1) == StopReason.TICKS
    assert m.get_regs().eip == NMI_HANDLER  # the second NMI, right after the IRET
    assert run(m) == StopReason.HALT
    assert rd32(m, 0x700) == 2


def test_nmi_waits_for_the_mov_ss_shadow() -> None:
    m = nmi_machine(mov_ax(DATA0) + MOV_SS_AX + NOP + NOP + HLT)
    assert run(m, 2) == StopReason.TICKS
    m.raise_nmi()
    assert run(m, 2) == StopReason.TICKS  # the shadowed nop, then the delivery
    r = m.get_regs()
    assert r.eip == NMI_HANDLER
    assert frame(m, False).eip == CODE + 4 + 2 + 1


# ---- real mode ---------------------------------------------------------------------------

def test_interrupt_in_real_mode_through_the_ivt() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20, devices=False))
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    r.eip, r.esp, r.eflags = 0x1000, 0x8000, 0x2 | F_IF
    r.idtr_base, r.idtr_limit = 0, 0x3FF
    m.set_regs(r)
    m.write(0x1000, HLT)
    m.write(0x20 * 4, struct.pack("<HH", 0x2000, 0))
    m.write(0x2000, HLT)
    assert m.run(10) == StopReason.HALT
    m.raise_interrupt(0x20)
    assert m.run(10) == StopReason.HALT
    r = m.get_regs()
    assert r.eip == 0x2001 and r.esp == 0x8000 - 6 and m.ticks == 3
    assert struct.unpack("<HHH", m.read(0x8000 - 6, 6)) == (0x1001, 0, 0x2 | F_IF)


# ---- page fault basics (more in test_paging) ---------------------------------------------

def test_page_fault_on_fetch_takes_a_tick() -> None:
    m = new_machine()
    cr0 = paged(m)
    set_pte(m, 0x300000, 0)
    # jmp 0x300000 (E9 rel32)
    enter_pm(m, b"\xE9" + u32(0x300000 - (CODE + 5)), cr0=cr0, cr3=PD)
    expect(m, PF, 0, 0x300000)
    assert m.get_regs().cr2 == 0x300000
    assert m.ticks == 5  # jmp, the fetch fault, the stub


def test_page_fault_error_code_user_write_present() -> None:
    m = new_machine()
    cr0 = paged(m)
    set_pte(m, 0x6000, 0x6000 | P | U | A | D)  # read-only user page
    enter_pm(m, b"\x89\x03" + b"\xEB\xFE", cpl=3, cr0=cr0, cr3=PD, ebx=0x6004)
    expect(m, PF, P | W | U, CODE)
    assert m.get_regs().cr2 == 0x6004


def test_ring3_fault_frame_has_ss_esp() -> None:
    m = new_machine()
    enter_pm(m, UD2, cpl=3)
    f = expect(m, UD, None, CODE)
    assert f.cs == CODE3
    esp = m.get_regs().esp
    assert esp == STACK0 - 20
    assert struct.unpack("<II", m.read(esp + 12, 8)) == (0x7000, 0x23)
    assert m.get_regs().cpl == 0


# ---- the sys_exceptions guest ------------------------------------------------------------

# Checks of the full build (DIVERGENT_CHECKS) that QEMU fails, each a departure from the
# architecture documented in docs/known-divergences.md.
QEMU_DIVERGENCES = {
    "#ud then #gp is serial: error code with ext",
    "#ac at cpl 3: one exception",
    "#ac at cpl 3: vector",
    "#ac at cpl 3: error code",
    "#ac at cpl 3: saved eip",
    "rep stosb: rf pushed set mid-repeat",
    "data breakpoint (read): one #db",
    "fault frame: rf pushed set",
}


@needs_binutils
def test_sys_exceptions_guest_full_build_passes_in_aero() -> None:
    lines, status = guest_lines_aero("sys_exceptions", {"DIVERGENT_CHECKS": 1})
    assert failed_checks(lines) == set()
    assert lines[-2:] == ["checks=0000004F failed=00000000", "RESULT PASS"]
    assert status == 1


@needs_binutils
@needs_qemu
def test_sys_exceptions_guest_in_qemu() -> None:
    """The default build gives the same lines in QEMU; the full build fails exactly the
    documented divergences there, and nothing else differs."""
    a, _ = guest_lines_aero("sys_exceptions")
    q, status = guest_lines_qemu("sys_exceptions")
    assert q == a and status == 1
    a, _ = guest_lines_aero("sys_exceptions", {"DIVERGENT_CHECKS": 1})
    q, status = guest_lines_qemu("sys_exceptions", {"DIVERGENT_CHECKS": 1})
    assert failed_checks(q) == QEMU_DIVERGENCES and status == 3
    same = [ln for ln in q if not ln.startswith("FAIL ")][:-2]
    assert same == [ln for ln in a if ln[5:] not in QEMU_DIVERGENCES][:-2]
