"""Debug exceptions: the TF single-step trap (REP iterations, INT n, the MOV SS / POP SS
shadow), instruction, data and I/O breakpoints (DR0-DR3, DR7 enables, R/W and LEN), DR6
status bits and the RF flag.

Expected behaviour follows the Intel SDM Vol. 3, "Debug, Branch Profile, TSC, and Intel
Resource Director Technology Features" (debug registers, debug exception conditions, RF
rules) and "Interrupt 1 — Debug Exception". The #DB handler used here logs, for every
exception, the saved EIP, the saved EFLAGS and DR6, clears DR6, and returns with RF set in
the EFLAGS image (as a debugger does), so an instruction breakpoint does not fire again on
the return.
"""

from __future__ import annotations

import struct

import pytest
from sysenv import (
    BR,
    CODE,
    CR4_DE,
    DATA0,
    DB,
    EAX,
    ESP,
    F_RF,
    F_TF,
    HLT,
    IDT,
    INC_EAX,
    INC_ECX,
    INT3,
    IRET,
    MOV_SS_AX,
    NOP,
    STI,
    enter_pm,
    gate,
    load_eax,
    mov_dr_eax,
    mov_mem_imm,
    mov_r_imm,
    new_machine,
    rd32,
    run,
    store_eax,
    taken,
    u32,
)

from aero.machine import Machine, StopReason

HANDLER = 0x6800
LOG = 0x700
DATA = 0x6000
DR6_INIT = 0xFFFF0FF0
BS = 0x4000

DB_HANDLER = bytes.fromhex(
    "50"                    # push eax
    "53"                    # push ebx
    "8B1D00070000"          # mov ebx, [0x700]
    "C1E304"                # shl ebx, 4
    "8B442408"              # mov eax, [esp+8]      saved EIP
    "898310070000"          # mov [ebx+0x710], eax
    "8B442410"              # mov eax, [esp+16]     saved EFLAGS
    "898314070000"          # mov [ebx+0x714], eax
    "0F21F0"                # mov eax, dr6
    "898318070000"          # mov [ebx+0x718], eax
    "31C0"                  # xor eax, eax
    "0F23F0"                # mov dr6, eax
    "FF0500070000"          # inc dword [0x700]
    "814C241000000100"      # or dword [esp+16], 0x10000 (RF)
    "5B"                    # pop ebx
    "58"                    # pop eax
    "CF")                   # iretd
HANDLER_INSNS = 17


def dbg_machine(code: bytes, *, eflags: int = 0x2, dr: list[int] | None = None, cr4: int = 0,
                **gprs: int) -> Machine:
    m = new_machine()
    m.write(HANDLER, DB_HANDLER)
    m.write(IDT + DB * 8, gate(HANDLER))
    m.write(LOG, bytes(0x100))  # count and 15 entries, below the GDT
    enter_pm(m, code, eflags=eflags, dr=dr, cr4=cr4, **gprs)
    return m


def log(m: Machine) -> list[tuple[int, int, int]]:
    """(saved EIP, saved EFLAGS, DR6) for every #DB taken."""
    n = rd32(m, LOG)
    return [struct.unpack("<III", m.read(LOG + 0x10 + 16 * i, 12)) for i in range(n)]


def eips(m: Machine) -> list[int]:
    return [e for e, _f, _d in log(m)]


def dr7(*bps: tuple[int, int, int]) -> int:
    """DR7 with breakpoints (index, R/W, LEN code) enabled locally."""
    v = 0x400
    for i, rw, ln in bps:
        v |= 1 << (2 * i)
        v |= (rw | (ln << 2)) << (16 + 4 * i)
    return v


def regs_dr(dr0: int = 0, dr1: int = 0, dr2: int = 0, dr3: int = 0, dr7v: int = 0x400) -> list[int]:
    return [dr0, dr1, dr2, dr3, 0, 0, DR6_INIT, dr7v]


EXEC, WRITE, IO, RW = 0, 1, 2, 3
LEN1, LEN2, LEN8, LEN4 = 0, 1, 2, 3


# ---- single step -------------------------------------------------------------------------

def test_single_step_traps_after_every_instruction() -> None:
    m = dbg_machine(NOP + INC_EAX + INC_ECX + HLT, eflags=0x2 | F_TF)
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + 1, 0x2 | F_TF, DR6_INIT | BS), (CODE + 2, 0x2 | F_TF, DR6_INIT | BS),
                      (CODE + 3, 0x2 | F_TF, DR6_INIT | BS)]
    # No trap after HLT (the CPU halts first); a trap is part of its instruction's tick.
    assert m.get_regs().eip == CODE + 4
    assert m.ticks == 4 + 3 * HANDLER_INSNS


def test_single_step_starts_after_the_popf_that_sets_tf() -> None:
    # pushfd ; or dword [esp], 0x100 ; popfd ; nop ; hlt
    code = b"\x9C" + b"\x81\x0C\x24" + u32(F_TF) + b"\x9D" + NOP + HLT
    m = dbg_machine(code)
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 10]


def test_single_step_traps_after_the_popf_that_clears_tf() -> None:
    # pushfd ; and dword [esp], ~0x100 ; popfd ; nop ; hlt  (TF set at the start)
    code = b"\x9C" + b"\x81\x24\x24" + u32(~F_TF) + b"\x9D" + NOP + HLT
    m = dbg_machine(code, eflags=0x2 | F_TF)
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 1, CODE + 8, CODE + 9]


def test_no_single_step_trap_after_int_n_and_int3() -> None:
    m = dbg_machine(NOP + b"\xCD\x40" + NOP + INT3 + NOP + HLT, eflags=0x2 | F_TF)
    m.write(0x6C00, IRET)
    m.write(IDT + 0x40 * 8, gate(0x6C00))
    m.write(IDT + 3 * 8, gate(0x6C00))
    assert run(m) == StopReason.HALT
    # After NOP; not after INT 40h nor its handler's IRET (TF was clear there); after the
    # NOP; not after INT3; after the last NOP.
    assert eips(m) == [CODE + 1, CODE + 4, CODE + 6]


def test_single_step_after_into_that_does_not_trap() -> None:
    m = dbg_machine(b"\xCE" + HLT, eflags=0x2 | F_TF)  # into, OF clear
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 1]


def test_single_step_traps_after_each_rep_iteration() -> None:
    # rep stosb with ECX = 3
    m = dbg_machine(b"\xF3\xAA" + HLT, eflags=0x2 | F_TF, ecx=3, edi=DATA, eax=0x41)
    assert run(m) == StopReason.HALT
    entries = log(m)
    assert [e for e, _f, _d in entries] == [CODE, CODE, CODE + 2]
    # RF is pushed set for traps of every iteration but the last.
    assert [f & F_RF for _e, f, _d in entries] == [F_RF, F_RF, 0]
    assert m.read(DATA, 4) == b"AAA\0"


def test_mov_ss_delays_the_single_step_trap() -> None:
    # mov ax, 0x10 ; mov ss, ax ; nop ; hlt
    code = b"\x66\xB8" + struct.pack("<H", DATA0) + MOV_SS_AX + NOP + HLT
    m = dbg_machine(code, eflags=0x2 | F_TF)
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 4, CODE + 7]
    assert [d for _e, _f, d in log(m)] == [DR6_INIT | BS] * 2


def test_pop_ss_delays_the_single_step_trap() -> None:
    m = dbg_machine(b"\x16\x17" + NOP + HLT, eflags=0x2 | F_TF)  # push ss ; pop ss ; nop
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 1, CODE + 3]


def test_sti_does_not_delay_the_single_step_trap() -> None:
    m = dbg_machine(STI + NOP + HLT, eflags=0x2 | F_TF)
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 1, CODE + 2]


def test_single_step_stops_with_stop_on_exception() -> None:
    m = dbg_machine(NOP + NOP + HLT, eflags=0x2 | F_TF)
    m.set_stop_on_exception(True)
    assert run(m) == StopReason.EXCEPTION
    r = m.get_regs()
    assert m.last_exception() == (DB, 0) and r.eip == CODE + 1 and m.ticks == 1
    assert r.dr[6] == DR6_INIT | BS


# ---- instruction breakpoints -------------------------------------------------------------

def test_instruction_breakpoint_is_a_fault_before_the_instruction() -> None:
    m = dbg_machine(NOP + NOP + INC_ECX + HLT, dr=regs_dr(dr0=CODE + 2, dr7v=dr7((0, EXEC, LEN1))))
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + 2, 0x2, DR6_INIT | 1)]  # RF pushed clear
    assert m.get_regs().ecx == 1  # executed once, after the return with RF set
    assert not m.get_regs().eflags & F_RF  # RF cleared by the instruction


def test_instruction_breakpoint_fires_on_every_pass() -> None:
    # l: inc ecx ; cmp ecx, 3 ; jne l ; hlt   (breakpoint on inc ecx, via G1 and DR1)
    code = INC_ECX + b"\x83\xF9\x03" + b"\x75\xFA" + HLT
    m = dbg_machine(code, dr=regs_dr(dr1=CODE, dr7v=0x400 | (1 << 3)))
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE] * 3
    assert [d for _e, _f, d in log(m)] == [DR6_INIT | 2] * 3


def test_instruction_breakpoint_skipped_while_rf_is_set() -> None:
    m = dbg_machine(INC_ECX + HLT, eflags=0x2 | F_RF,
                    dr=regs_dr(dr0=CODE, dr7v=dr7((0, EXEC, LEN1))))
    assert run(m) == StopReason.HALT
    assert log(m) == [] and m.get_regs().ecx == 1


def test_disabled_breakpoint_never_fires() -> None:
    m = dbg_machine(INC_ECX + HLT, dr=regs_dr(dr0=CODE, dr7v=0x400))
    assert run(m) == StopReason.HALT
    assert log(m) == []


def test_instruction_breakpoint_set_by_the_guest() -> None:
    # mov eax, CODE+16 ; mov dr0, eax ; mov eax, dr7 value ; mov dr7, eax ; nop... at +16
    code = mov_r_imm(EAX, CODE + 16) + mov_dr_eax(0) + mov_r_imm(EAX, dr7((0, EXEC, LEN1))) \
        + mov_dr_eax(7)
    code = code.ljust(16, NOP) + INC_ECX + HLT
    m = dbg_machine(code)
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 16] and m.get_regs().ecx == 1


def test_instruction_breakpoint_fault_takes_a_tick() -> None:
    m = dbg_machine(NOP + HLT, dr=regs_dr(dr0=CODE, dr7v=dr7((0, EXEC, LEN1))))
    assert run(m) == StopReason.HALT
    assert m.ticks == 1 + HANDLER_INSNS + 2  # the #DB, the handler, nop, hlt


# ---- data breakpoints --------------------------------------------------------------------

@pytest.mark.parametrize(("rw", "ln", "bp", "prog", "hit"), [
    (WRITE, LEN4, DATA, b"\x88\x05" + u32(DATA + 3), True),        # mov [DATA+3], al
    (WRITE, LEN4, DATA, b"\x88\x05" + u32(DATA + 4), False),       # just past the range
    (WRITE, LEN4, DATA, load_eax(DATA), False),                    # reads do not match R/W=01
    (RW, LEN4, DATA, load_eax(DATA), True),                        # R/W=11 matches reads
    (WRITE, LEN2, DATA + 2, b"\x66\xA3" + u32(DATA + 1), True),    # word 1-2 overlaps 2-3
    (WRITE, LEN2, DATA + 2, b"\x66\xA3" + u32(DATA), False),       # word 0-1
    (WRITE, LEN1, DATA + 1, store_eax(DATA), True),                # dword 0-3 covers byte 1
    (WRITE, LEN1, DATA + 1, b"\x88\x05" + u32(DATA + 2), False),
    (WRITE, LEN4, DATA + 3, b"\x88\x05" + u32(DATA), True),        # address aligned to LEN
    (RW, LEN4, DATA - 4, store_eax(DATA - 2), True),               # dword crossing into it
])
def test_data_breakpoint_kinds_and_lengths(rw: int, ln: int, bp: int, prog: bytes,
                                           hit: bool) -> None:
    m = dbg_machine(prog + NOP + HLT, dr=regs_dr(dr0=bp, dr7v=dr7((0, rw, ln))))
    assert run(m) == StopReason.HALT
    if hit:
        assert log(m) == [(CODE + len(prog), 0x2, DR6_INIT | 1)]  # a trap: next instruction
    else:
        assert log(m) == []


def test_data_breakpoint_on_a_page_already_in_the_tlb() -> None:
    """The guest reads the page, then arms a breakpoint on it: the access must still trap."""
    code = (load_eax(DATA + 8) + mov_r_imm(EAX, DATA + 8) + mov_dr_eax(1)
            + mov_r_imm(EAX, dr7((1, RW, LEN4))) + mov_dr_eax(7) + load_eax(DATA + 8) + HLT)
    m = dbg_machine(code)
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + len(code) - 1, 0x2, DR6_INIT | 2)]


def test_two_data_breakpoints_hit_by_one_access() -> None:
    m = dbg_machine(store_eax(DATA) + HLT,
                    dr=regs_dr(dr0=DATA, dr2=DATA + 2, dr7v=dr7((0, WRITE, LEN1), (2, RW, LEN2))))
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + 5, 0x2, DR6_INIT | 0b101)]


def test_data_breakpoints_ignore_instruction_fetches() -> None:
    m = dbg_machine(NOP + NOP + NOP + HLT, dr=regs_dr(dr0=CODE, dr7v=dr7((0, RW, LEN4))))
    assert run(m) == StopReason.HALT
    assert log(m) == []


def test_data_breakpoint_in_a_rep_string_traps_after_its_iteration() -> None:
    # rep stosb over DATA..DATA+7 with a write breakpoint on DATA+3
    m = dbg_machine(b"\xF3\xAA" + HLT, ecx=8, edi=DATA, eax=0x42,
                    dr=regs_dr(dr0=DATA + 3, dr7v=dr7((0, WRITE, LEN1))))
    assert run(m) == StopReason.HALT
    entries = log(m)
    assert [(e, f & F_RF, d) for e, f, d in entries] == [(CODE, F_RF, DR6_INIT | 1)]
    assert m.read(DATA, 9) == b"B" * 8 + b"\0"
    r = m.get_regs()
    assert (r.ecx, r.edi) == (0, DATA + 8)


def test_faulting_instruction_drops_its_breakpoint_hits() -> None:
    """BOUND reads the watched bounds, then faults (#BR): no #DB follows."""
    m = dbg_machine(mov_r_imm(EAX, 9) + b"\x62\x05" + u32(DATA) + HLT,
                    dr=regs_dr(dr0=DATA, dr7v=dr7((0, RW, LEN4))))
    m.write(DATA, struct.pack("<ii", 0, 5))
    assert run(m) == StopReason.HALT
    assert log(m) == [] and taken(m) == (BR, 1)


def test_pop_ss_delays_a_data_breakpoint_trap() -> None:
    """POP SS reads a watched slot: the trap waits until the next instruction is done. (The
    slot is away from the stack the #DB frame is pushed on.)"""
    slot = 0x7500
    code = (mov_mem_imm(slot, DATA0) + mov_r_imm(ESP, slot) + mov_r_imm(EAX, slot)
            + mov_dr_eax(0) + mov_r_imm(EAX, dr7((0, RW, LEN4))) + mov_dr_eax(7)
            + b"\x17" + mov_r_imm(ESP, 0x8000) + HLT)
    m = dbg_machine(code)
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + len(code) - 1, 0x2, DR6_INIT | 1)]


# ---- I/O breakpoints ---------------------------------------------------------------------

def test_io_breakpoint_needs_cr4_de() -> None:
    prog = b"\xE6\xE9" + NOP + HLT  # out 0xE9, al
    m = dbg_machine(prog, cr4=CR4_DE, dr=regs_dr(dr3=0xE9, dr7v=dr7((3, IO, LEN1))), eax=0x21)
    assert run(m) == StopReason.HALT
    assert log(m) == [(CODE + 2, 0x2, DR6_INIT | 8)]
    assert m.take_output() == b"!"
    m = dbg_machine(prog, dr=regs_dr(dr3=0xE9, dr7v=dr7((3, IO, LEN1))), eax=0x21)
    assert run(m) == StopReason.HALT
    assert log(m) == []


def test_io_breakpoint_on_rep_outsb_traps_per_iteration() -> None:
    # mov dx, 0xE9 ; rep outsb (3 bytes from DATA)
    m = dbg_machine(b"\x66\xBA\xE9\x00" + b"\xF3\x6E" + HLT, cr4=CR4_DE, ecx=3,
                    esi=DATA, dr=regs_dr(dr0=0xE8, dr7v=dr7((0, IO, LEN2))))
    m.write(DATA, b"abc")
    assert run(m) == StopReason.HALT
    assert eips(m) == [CODE + 4, CODE + 4, CODE + 6]
    assert m.take_output() == b"abc"


# ---- determinism ---------------------------------------------------------------------------

def debug_workload() -> Machine:
    """Single-stepped REP with a data breakpoint, a MOV SS shadow and an instruction
    breakpoint: every pending-state path of the run loop."""
    code = (b"\xF3\xAA"                                    # rep stosb (ECX = 5), traced
            + b"\x66\xB8" + struct.pack("<H", DATA0) + MOV_SS_AX + NOP   # shadowed trap
            + b"\x9C" + b"\x81\x24\x24" + u32(~F_TF) + b"\x9D"       # TF off
            + NOP + INC_EAX + HLT)                            # breakpoint on the INC
    return dbg_machine(code, eflags=0x2 | F_TF, ecx=5, edi=DATA, eax=0x43,
                       dr=regs_dr(dr0=DATA + 2, dr1=CODE + len(code) - 2,
                                  dr7v=dr7((0, WRITE, LEN1), (1, EXEC, LEN1))))


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_sliced_and_restored_runs_match_a_straight_run(step: int) -> None:
    straight = debug_workload()
    assert run(straight, 10_000) == StopReason.HALT
    sliced = debug_workload()
    while True:
        stop = sliced.run(sliced.ticks + step)
        snap = sliced.snapshot()
        sliced = new_machine()
        sliced.restore(snap)
        if stop != StopReason.TICKS:
            break
    assert stop == StopReason.HALT
    assert log(sliced) == log(straight) and len(log(straight)) > 8
    assert sliced.ticks == straight.ticks
    assert sliced.fingerprint() == straight.fingerprint()
