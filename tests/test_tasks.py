"""Hardware task switching: JMP/CALL to a TSS and through task gates, IRET with NT, IDT task
gates, busy bits, back link, CR3, LDTR, 16-bit TSSs, and the faults of each step.

Expected behaviour: Intel SDM Vol. 3A chapter 7 ("Task Management": 7.3 task switching
steps, Table 7-1 checks, 7.4 task linking and Table 7-2 effects on busy/NT/link) and the
JMP, CALL, IRET and INT n pseudocode of Vol. 2. The current task at the start of every test
is TSS0 (selector 0x28, busy).
"""

from __future__ import annotations

import struct

from pmenv import (
    A_CODE0,
    A_DATA0,
    A_TASKGATE,
    A_TSS16,
    A_TSS32,
    A_TSS32_BUSY,
    CODE,
    CODE0,
    CODE3,
    CR0_PG,
    CR0_TS,
    DATA0,
    DATA3,
    DB,
    DS,
    EAX,
    F_CF,
    F_NT,
    FREE,
    GP,
    HLT,
    IRET,
    LDT,
    LDT_SEL,
    NOP,
    NP,
    SS,
    STACK0,
    TS,
    TSS0,
    TSS0_SEL,
    TSS1,
    TSS1_SEL,
    TSS2,
    Env,
    call_far,
    desc,
    flat,
    gate,
    int_n,
    jmp_far,
    load_sreg,
    mov_r32,
    tss16,
    tss32,
    u32,
)

from aero.machine import StopReason

TASK_EIP = 0x30000
TASK_ESP = 0x7000
GPR1 = (0x11, 0x22, 0x33, 0x44, TASK_ESP, 0x66, 0x77, 0x88)
SEL_A, SEL_B, SEL_C = FREE, FREE + 8, FREE + 16


def task1(e: Env, code: bytes = HLT, **fields: object) -> None:
    """TSS1: a ring-0 task at TASK_EIP with GPR1, flat selectors, EFLAGS = CF."""
    args: dict[str, object] = {"eip": TASK_EIP, "eflags": 2 | F_CF, "gpr": GPR1,
                               "segs": (DATA0, CODE0, DATA0, DATA0, 0, DATA3)}
    args.update(fields)
    e.m.write(TSS1, tss32(**args))  # type: ignore[arg-type]
    e.m.write(TASK_EIP, code)


def saved32(e: Env, base: int) -> dict[str, object]:
    """The state saved in a 32-bit TSS."""
    raw = e.m.read(base, 0x68)
    eip, eflags = struct.unpack_from("<II", raw, 0x20)
    gpr = struct.unpack_from("<8I", raw, 0x28)
    segs = tuple(struct.unpack_from("<H", raw, 0x48 + 4 * i)[0] for i in range(6))
    return {"link": struct.unpack_from("<H", raw, 0)[0], "eip": eip, "eflags": eflags,
            "gpr": gpr, "segs": segs}


# ---- JMP and CALL to a TSS ----------------------------------------------------------------

def test_jmp_to_tss_saves_loads_and_moves_the_busy_bit() -> None:
    e = Env()
    task1(e)
    code = mov_r32(EAX, 0xAAAA0001) + mov_r32(3, 0xBBBB0004) + jmp_far(TSS1_SEL, 0xDEAD)
    # DR7: L0 and G0 enabled (an execute breakpoint at 0, never reached).
    e.start(code, esp=0x8800, esi=0x5, edi=0x6, dr=[0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x403])
    e.ok(3)
    r = e.regs()
    assert r.dr[7] == 0x402  # the local enable is cleared by the task switch, G0 stays
    assert (r.tr.selector, r.tr.base, r.tr.limit, r.tr.attr & 0xFF) == (TSS1_SEL, TSS1, 0x67,
                                                                          A_TSS32_BUSY)
    assert (r.eip, r.eflags, r.cpl) == (TASK_EIP, 2 | F_CF, 0)  # NT not set by JMP
    assert r.gpr() == list(GPR1)
    assert (r.es.selector, r.cs.selector, r.ss.selector, r.ds.selector, r.fs.selector,
            r.gs.selector) == (DATA0, CODE0, DATA0, DATA0, 0, DATA3)
    assert r.gs.attr & 0xFF == 0xF3 and r.cs.attr & 0xFF == 0x9B
    assert r.cr0 & CR0_TS
    # JMP: the old task is no longer busy, the new one is; no back link is written.
    assert e.gdt_access(TSS0_SEL) == A_TSS32 and e.gdt_access(TSS1_SEL) == A_TSS32_BUSY
    old = saved32(e, TSS0)
    assert old["eip"] == CODE + 17 and old["eflags"] == 2
    assert old["gpr"] == (0xAAAA0001, 0, 0, 0xBBBB0004, 0x8800, 0, 5, 6)
    assert old["segs"] == (DATA0, CODE0, DATA0, DATA0, DATA0, DATA0)
    assert saved32(e, TSS1)["link"] == 0
    # The new task runs.
    assert e.run(5) == StopReason.HALT


def test_call_to_tss_links_and_iret_returns() -> None:
    e = Env()
    task1(e, mov_r32(EAX, 0x1234) + IRET)
    e.start(mov_r32(EAX, 0x99) + call_far(TSS1_SEL, 0) + HLT)
    e.ok(2)
    r = e.regs()
    assert r.tr.selector == TSS1_SEL and r.eflags & F_NT and r.eip == TASK_EIP
    assert saved32(e, TSS1)["link"] == TSS0_SEL
    assert e.gdt_access(TSS0_SEL) == A_TSS32_BUSY and e.gdt_access(TSS1_SEL) == A_TSS32_BUSY
    e.ok(2)  # mov eax ; iret
    r = e.regs()
    assert (r.tr.selector, r.eip, r.eax) == (TSS0_SEL, CODE + 12, 0x99)
    assert not r.eflags & F_NT
    # IRET: the task left is no longer busy; its saved EFLAGS has NT cleared.
    assert e.gdt_access(TSS1_SEL) == A_TSS32 and e.gdt_access(TSS0_SEL) == A_TSS32_BUSY
    t1 = saved32(e, TSS1)
    assert t1["eip"] == TASK_EIP + 6 and t1["eflags"] == 2 | F_CF and t1["gpr"][0] == 0x1234
    assert e.run(5) == StopReason.HALT


def test_task_gates_in_the_gdt_and_the_ldt() -> None:
    e = Env()
    task1(e)
    e.set_gdt(SEL_A, gate(TSS1_SEL, 0, A_TASKGATE))
    e.start(call_far(SEL_A, 0))
    e.ok(1)
    assert e.regs().tr.selector == TSS1_SEL and saved32(e, TSS1)["link"] == TSS0_SEL
    # From CPL 3 through a DPL-3 task gate in the LDT to a DPL-0 TSS (the gate's DPL
    # counts, not the TSS's).
    e = Env()
    task1(e)
    sel = e.set_ldt(0x10, gate(TSS1_SEL, 0, A_TASKGATE | 0x60))
    e.start(jmp_far(sel | 3, 0), cpl=3, ldtr=e.seg(LDT_SEL))
    e.ok(1)
    r = e.regs()
    assert (r.tr.selector, r.cpl, r.eip) == (TSS1_SEL, 0, TASK_EIP)
    assert e.gdt_access(TSS0_SEL) == A_TSS32
    assert saved32(e, TSS0)["segs"][1] == CODE3 | 3


def test_new_task_cs_may_be_conforming_with_dpl_below_rpl() -> None:
    """Table 7-1 asks DPL = RPL of a non-conforming CS only; a conforming one needs DPL <= RPL
    (the task runs at CPL = RPL)."""
    e = Env()
    conforming = e.set_gdt(SEL_A, flat(0x9E))  # conforming, readable, DPL 0
    task1(e, segs=(DATA3 | 3, conforming | 3, DATA3 | 3, DATA3 | 3, 0, 0))
    e.start(jmp_far(TSS1_SEL, 0))
    e.ok(1)
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.eip) == (3, conforming | 3, TASK_EIP)


def test_switch_to_a_ring3_task() -> None:
    e = Env()
    task1(e, segs=(DATA3 | 3, CODE3 | 3, DATA3 | 3, DATA3 | 3, 0, 0))
    e.start(jmp_far(TSS1_SEL, 0))
    e.ok(1)
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.ss.selector) == (3, CODE3 | 3, DATA3 | 3)


# ---- checks before the switch (nothing changes) ------------------------------------------

def assert_unchanged(e: Env) -> None:
    r = e.regs()
    assert r.tr.selector == TSS0_SEL and r.eip == CODE
    assert e.gdt_access(TSS0_SEL) == A_TSS32_BUSY and e.gdt_access(TSS1_SEL) == A_TSS32
    assert not r.cr0 & CR0_TS


def test_busy_tss_and_privilege_checks() -> None:
    e = Env()
    task1(e)
    e.start(call_far(TSS0_SEL, 0))  # the current task is busy
    assert e.fault(1) == (GP, TSS0_SEL)
    e.start(jmp_far(TSS1_SEL | 3, 0))  # RPL 3 > DPL 0
    assert e.fault(1) == (GP, TSS1_SEL)
    assert_unchanged(e)
    e.start(jmp_far(TSS1_SEL | 3, 0), cpl=3)  # CPL 3 > DPL 0
    assert e.fault(1) == (GP, TSS1_SEL)
    e.set_gdt(SEL_A, gate(TSS0_SEL, 0, A_TASKGATE))  # gate to a busy TSS
    e.start(jmp_far(SEL_A, 0))
    assert e.fault(1) == (GP, TSS0_SEL)
    e.set_gdt(SEL_A, gate(TSS1_SEL, 0, A_TASKGATE))  # gate DPL 0 < CPL 3
    e.start(jmp_far(SEL_A | 3, 0), cpl=3)
    assert e.fault(1) == (GP, SEL_A)
    e.set_gdt(SEL_A, gate(TSS1_SEL, 0, A_TASKGATE & 0x7F))
    e.start(jmp_far(SEL_A, 0))
    assert e.fault(1) == (NP, SEL_A)
    e.set_gdt(SEL_A, gate(TSS1_SEL | 4, 0, A_TASKGATE))  # TSS selector in the LDT
    e.start(jmp_far(SEL_A, 0))
    assert e.fault(1) == (GP, TSS1_SEL | 4)
    e.set_gdt(SEL_A, gate(DATA0, 0, A_TASKGATE))  # not a TSS
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (GP, DATA0)
    e.set_gdt(SEL_B, desc(TSS2, 0x67, A_TSS32 & 0x7F, 0))
    e.start(jmp_far(SEL_B, 0))
    assert e.fault(1) == (NP, SEL_B)
    assert_unchanged(e)


def test_tss_descriptor_in_the_ldt_is_gp() -> None:
    e = Env()
    task1(e)
    sel = e.set_ldt(0x08, desc(TSS1, 0x67, A_TSS32, 0))
    e.start(jmp_far(sel, 0), ldtr=e.seg(LDT_SEL))
    assert e.fault(1) == (GP, sel)


def test_tss_limit_checks() -> None:
    e = Env()
    task1(e)
    e.set_gdt(TSS1_SEL, desc(TSS1, 0x66, A_TSS32, 0))  # a 32-bit TSS needs limit 67h
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (TS, TSS1_SEL)
    assert_unchanged(e)
    e.set_gdt(SEL_A, desc(TSS2, 0x2A, A_TSS16, 0))  # a 16-bit TSS needs limit 2Bh
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (TS, SEL_A)


def test_iret_with_nt_needs_a_busy_tss_in_the_back_link() -> None:
    e = Env()
    e.start(IRET, eflags=F_NT)  # back link 0 in TSS0
    assert e.fault(1) == (TS, 0)
    e.m.write(TSS0, struct.pack("<H", TSS1_SEL))  # available, not busy
    e.start(IRET, eflags=F_NT)
    assert e.fault(1) == (TS, TSS1_SEL)
    e.m.write(TSS0, struct.pack("<H", LDT_SEL | 4))
    e.start(IRET, eflags=F_NT)
    assert e.fault(1) == (TS, LDT_SEL | 4)
    assert e.regs().tr.selector == TSS0_SEL


# ---- checks in the new task's context ----------------------------------------------------

def test_bad_segments_fault_in_the_new_task() -> None:
    e = Env()
    task1(e, segs=(DATA0, 0, DATA0, DATA0, 0, 0))  # null CS
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (TS, 0)
    r = e.regs()
    assert r.tr.selector == TSS1_SEL and r.eip == TASK_EIP and r.gpr() == list(GPR1)
    assert saved32(e, TSS0)["eip"] == CODE + 7
    e = Env()
    e.set_gdt(SEL_A, flat(A_DATA0 & 0x7F))
    task1(e, segs=(DATA0, CODE0, SEL_A, DATA0, 0, 0))  # SS not present
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (SS, SEL_A)
    e = Env()
    task1(e, segs=(DATA0, CODE0, DATA3 | 3, DATA0, 0, 0))  # SS DPL 3 != CPL 0
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (TS, DATA3)
    e = Env()
    e.set_gdt(SEL_A, flat(0x98))
    task1(e, segs=(SEL_A, CODE0, DATA0, DATA0, 0, 0))  # ES execute-only code
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (TS, SEL_A)
    e = Env()
    e.set_gdt(SEL_A, flat(A_DATA0 & 0x7F))
    task1(e, segs=(DATA0, CODE0, DATA0, SEL_A, 0, 0))  # DS not present
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (NP, SEL_A)
    e = Env()
    task1(e, ldt=DATA0)  # the LDT selector names a data segment
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (TS, DATA0)
    assert e.regs().tr.selector == TSS1_SEL


def test_new_eip_outside_cs_is_gp0_in_the_new_task() -> None:
    e = Env()
    e.set_gdt(SEL_A, desc(0, 0xFFFF, A_CODE0, 0x4))
    task1(e, segs=(DATA0, SEL_A, DATA0, DATA0, 0, 0), eip=0x10000)
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.fault(1) == (GP, 0)
    assert e.regs().tr.selector == TSS1_SEL


# ---- LDTR and CR3 ------------------------------------------------------------------------

def test_ldtr_comes_from_the_new_tss() -> None:
    e = Env()
    ds = e.set_ldt(0x08, desc(0x123000, 0xFFF, A_DATA0, 0x4))
    task1(e, ldt=LDT_SEL, segs=(DATA0, CODE0, DATA0, ds, 0, 0))
    e.start(jmp_far(TSS1_SEL, 0))
    e.ok(1)
    r = e.regs()
    assert (r.ldtr.selector, r.ldtr.base, r.ldtr.limit) == (LDT_SEL, LDT, 0xFF)
    assert (r.ds.selector, r.ds.base, r.ds.limit) == (ds, 0x123000, 0xFFF)
    # The accessed bit of the LDT descriptor was set by the load.
    assert e.m.read(LDT + 8 + 5, 1) == b"\x93"


PD_A, PD_B, PT_A, PT_B = 0x100000, 0x101000, 0x102000, 0x103000
PROBE = 0x200000  # linear page mapped to 0x200000 by PD_A and to 0x300000 by PD_B


def paging_tables(e: Env) -> None:
    for pd, pt, target in ((PD_A, PT_A, PROBE), (PD_B, PT_B, 0x300000)):
        e.m.write(pd, u32(pt | 3))
        entries = [(i << 12) | 3 for i in range(1024)]
        entries[PROBE >> 12] = target | 3
        e.m.write(pt, b"".join(u32(x) for x in entries))
    e.m.write(PROBE, u32(0xAAAAAAAA))
    e.m.write(0x300000, u32(0xBBBBBBBB))


def test_cr3_is_loaded_from_a_32bit_tss_under_paging_and_the_tlb_flushed() -> None:
    e = Env()
    paging_tables(e)
    # Task 1 reads the probe page into EBX; the old task read it first (TLB filled).
    task1(e, b"\x8b\x1d" + u32(PROBE) + HLT, cr3=PD_B)
    e.start(b"\xa1" + u32(PROBE) + jmp_far(TSS1_SEL, 0), cr0=CR0_PG, cr3=PD_A)
    assert e.run(10) == StopReason.HALT
    r = e.regs()
    assert r.ebx == 0xBBBBBBBB and r.cr3 == PD_B
    assert saved32(e, TSS0)["gpr"][0] == 0xAAAAAAAA  # the old task's read, before the switch
    # Without paging the CR3 field is not loaded.
    e = Env()
    task1(e, cr3=PD_B)
    e.start(jmp_far(TSS1_SEL, 0), cr3=PD_A)
    e.ok(1)
    assert e.regs().cr3 == PD_A


# ---- interrupts and exceptions through task gates ----------------------------------------

def test_int_n_through_an_idt_task_gate_and_back() -> None:
    e = Env(stop_on_exception=False)  # INT n is delivered, not reported
    e.set_idt(0x40, gate(TSS1_SEL, 0, A_TASKGATE))
    task1(e, IRET)
    e.start(int_n(0x40) + HLT)
    e.ok(1)
    r = e.regs()
    assert r.tr.selector == TSS1_SEL and r.eflags & F_NT and r.eip == TASK_EIP
    assert saved32(e, TSS1)["link"] == TSS0_SEL and saved32(e, TSS0)["eip"] == CODE + 2
    e.ok(1)
    assert e.regs().tr.selector == TSS0_SEL and e.regs().eip == CODE + 2


def gp_handler(e: Env) -> None:
    """IDT[13]: a ring-0 interrupt gate to a HLT."""
    e.set_idt(GP, gate(CODE0, 0x38000, 0x8E))
    e.m.write(0x38000, HLT)


def test_int_n_checks_the_task_gate_dpl_and_the_busy_bit() -> None:
    e = Env(stop_on_exception=False)
    gp_handler(e)
    task1(e)
    e.set_idt(0x40, gate(TSS1_SEL, 0, A_TASKGATE))
    # From CPL 3 a DPL-0 gate is #GP(vector * 8 + 2): the frame on the ring-0 stack.
    e.start(int_n(0x40), cpl=3)
    assert e.run(5) == StopReason.HALT
    assert e.dwords(STACK0 - 24, 2) == [0x40 * 8 + 2, CODE]
    assert e.regs().tr.selector == TSS0_SEL
    # A busy TSS behind an IDT task gate: #GP(TSS selector), no EXT bit for INT n.
    e.set_idt(0x41, gate(TSS0_SEL, 0, A_TASKGATE))
    e.start(int_n(0x41))
    assert e.run(5) == StopReason.HALT
    assert e.dwords(STACK0 - 16, 2) == [TSS0_SEL, CODE]


def test_exception_with_error_code_through_a_task_gate() -> None:
    e = Env(stop_on_exception=False)
    e.set_idt(13, gate(TSS1_SEL, 0, A_TASKGATE))
    task1(e)
    fault_at = CODE + 5
    e.start(load_sreg(DS, 0x3F8 | 4))  # an LDT selector with LDTR unusable: #GP(0x3FC)
    assert e.run(10) == StopReason.HALT
    r = e.regs()
    assert r.tr.selector == TSS1_SEL and r.eip == TASK_EIP + 1
    # The error code is on the new task's stack (a dword: 32-bit TSS); EXT = 0 since
    # the exception was caused by the instruction, not an external event.
    assert r.esp == TASK_ESP - 4
    assert e.dwords(TASK_ESP - 4, 1) == [0x3FC]
    assert saved32(e, TSS0)["eip"] == fault_at
    assert saved32(e, TSS1)["link"] == TSS0_SEL


def test_debug_trap_bit_raises_db_after_the_switch() -> None:
    e = Env(stop_on_exception=False)
    handler = 0x38000
    e.set_idt(DB, gate(CODE0, handler, 0x8E))
    e.m.write(handler, HLT)
    task1(e, trap=1)
    e.start(jmp_far(TSS1_SEL, 0))
    assert e.run(5) == StopReason.HALT
    r = e.regs()
    assert r.tr.selector == TSS1_SEL and r.dr[6] & 0x8000  # DR6.BT
    # The #DB frame on the new task's stack: EIP of the new task's first instruction.
    assert e.dwords(r.esp, 3) == [TASK_EIP, CODE0, 2 | F_CF]


# ---- 16-bit TSS --------------------------------------------------------------------------

def test_16bit_tss_switch_and_return() -> None:
    e = Env()
    code16 = e.set_gdt(SEL_A, desc(0, 0xFFFF, A_CODE0, 0x0))  # 16-bit code, base 0
    data16 = e.set_gdt(SEL_B, desc(0, 0xFFFF, A_DATA0, 0x0))
    tss = e.set_gdt(SEL_C, desc(TSS2, 0x2B, A_TSS16, 0))
    ip = 0x5000
    e.m.write(TSS2, tss16(ip=ip, flags=0x0003, gpr=(1, 2, 3, 4, 0x6000, 6, 7, 8),
                          segs=(data16, code16, data16, data16)))
    # 16-bit task: mov ax, 0x4242 ; iret
    e.m.write(ip, b"\xb8\x42\x42\xcf")
    e.start(call_far(tss, 0) + HLT, fs=e.seg(DATA0), eax=0x12345678)
    e.ok(1)
    r = e.regs()
    assert (r.tr.selector, r.tr.base, r.tr.limit, r.tr.attr & 0xFF) == (tss, TSS2, 0x2B, 0x83)
    assert r.eip == ip and r.eflags == 0x0003 | F_NT
    # Loading a 16-bit TSS sets the upper words of the general registers to FFFFh and
    # makes FS and GS null.
    assert r.gpr() == [0xFFFF0001, 0xFFFF0002, 0xFFFF0003, 0xFFFF0004, 0xFFFF6000,
                       0xFFFF0006, 0xFFFF0007, 0xFFFF0008]
    assert (r.fs.selector, r.gs.selector) == (0, 0)
    assert struct.unpack("<H", e.m.read(TSS2, 2))[0] == TSS0_SEL  # back link
    e.ok(2)
    r = e.regs()
    assert r.tr.selector == TSS0_SEL and r.eip == CODE + 7 and r.eax == 0x12345678
    assert r.fs.selector == DATA0  # restored from the 32-bit TSS
    # What was saved in the 16-bit TSS: IP after the IRET, FLAGS with NT clear, AX.
    saved = struct.unpack("<HHH", e.m.read(TSS2 + 0x0E, 6))
    assert saved == (ip + 4, 0x0003, 0x4242)
    assert e.gdt_access(tss) == A_TSS16


def test_exception_through_task_gate_to_16bit_tss_pushes_a_word() -> None:
    e = Env(stop_on_exception=False)
    code16 = e.set_gdt(SEL_A, desc(0, 0xFFFF, A_CODE0, 0x0))
    data16 = e.set_gdt(SEL_B, desc(0, 0xFFFF, A_DATA0, 0x0))
    tss = e.set_gdt(SEL_C, desc(TSS2, 0x2B, A_TSS16, 0))
    e.m.write(TSS2, tss16(ip=0x5000, gpr=(0, 0, 0, 0, 0x6000, 0, 0, 0),
                          segs=(data16, code16, data16, data16)))
    e.m.write(0x5000, HLT)
    e.set_idt(13, gate(tss, 0, A_TASKGATE))
    e.start(load_sreg(DS, 0x3F8 | 4))
    assert e.run(10) == StopReason.HALT
    r = e.regs()
    assert r.tr.selector == tss and r.esp & 0xFFFF == 0x6000 - 2
    assert e.words(0x6000 - 2, 1) == [0x3FC]


def test_task_switch_state_survives_a_snapshot() -> None:
    e = Env()
    task1(e, NOP + IRET)
    e.start(call_far(TSS1_SEL, 0) + HLT)
    e.ok(1)
    snap = e.m.snapshot()
    e.ok(2)
    after = e.regs()
    e.m.restore(snap)
    e.ok(2)
    assert e.regs() == after
    assert after.tr.selector == TSS0_SEL
