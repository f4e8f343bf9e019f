"""Protection: descriptor loads, segment type and limit checks on access, call gates, far
returns and IRET to outer privilege levels.

Each expected exception and error code is the one the Intel SDM's pseudocode gives for the
instruction (MOV, POP, LSS, JMP, CALL, RET, IRET in Vol. 2; "Protection" in Vol. 3A,
chapter 5). Faults stop the run (stop_on_exception) with the state of the faulting
instruction, so a test also checks that nothing was committed.
"""

from __future__ import annotations

import struct

from pmenv import (
    A_CALLGATE16,
    A_CALLGATE32,
    A_CODE0,
    A_DATA0,
    A_DATA3,
    A_TSS32,
    CODE,
    CODE0,
    CODE1,
    CODE3,
    CS,
    DATA0,
    DATA1,
    DATA3,
    DS,
    EAX,
    EBX,
    ES,
    FREE,
    FS,
    GDT,
    GP,
    GS,
    HLT,
    IRET,
    LDT,
    LDT_SEL,
    NP,
    SS,
    SS_,
    STACK0,
    STACK1,
    STACK3,
    TS,
    TSS0,
    Env,
    call_far,
    desc,
    flat,
    gate,
    int_n,
    jmp_far,
    load_eax,
    load_sreg,
    mov_r32,
    mov_sreg,
    push_imm,
    retf,
    store_eax,
    tss32,
    u32,
)

from aero.machine import Machine, MachineConfig, Segment, StopReason

SEL_A, SEL_B, SEL_C, SEL_D = FREE, FREE + 8, FREE + 16, FREE + 24
DATA_ADDR = 0x60000


# ---- MOV / POP / LSS to segment registers ------------------------------------------------

def test_selector_outside_the_gdt_is_gp_selector() -> None:
    e = Env()
    e.start(load_sreg(DS, 0x400 | 3))  # index 128: the GDT limit is 0x3FF
    assert e.fault(2) == (GP, 0x400)
    assert e.regs().ds.selector == DATA0


def test_ldt_selector_with_unusable_ldtr_is_gp_and_loads_from_the_ldt() -> None:
    e = Env()
    sel = e.set_ldt(0x08, flat(A_DATA0))
    e.start(load_sreg(ES, sel))
    assert e.fault(2) == (GP, 0x0C)
    e.start(load_sreg(ES, sel), ldtr=e.seg(LDT_SEL))
    e.m.write(LDT + 8, desc(0x123000, 0xFF, A_DATA0, 0x4))
    e.ok(2)
    es = e.regs().es
    assert (es.selector, es.base, es.limit, es.attr & 0xFF) == (0x0C, 0x123000, 0xFF, 0x93)


def test_data_segment_load_sets_the_accessed_bit() -> None:
    e = Env()
    e.set_gdt(SEL_A, desc(0x50000, 0xFFFF, A_DATA0, 0x4))
    e.start(load_sreg(DS, SEL_A))
    e.ok(2)
    assert e.gdt_access(SEL_A) == 0x93
    assert e.regs().ds.attr == 0x4093


def test_system_descriptor_and_execute_only_code_cannot_be_data() -> None:
    e = Env()
    e.set_gdt(SEL_A, desc(TSS0, 0x67, A_TSS32, 0))
    e.set_gdt(SEL_B, flat(0x98))  # execute-only code
    e.set_gdt(SEL_C, flat(A_CODE0))  # execute/read code: allowed in a data register
    e.start(load_sreg(FS, SEL_A))
    assert e.fault(2) == (GP, SEL_A)
    e.start(load_sreg(FS, SEL_B))
    assert e.fault(2) == (GP, SEL_B)
    e.start(load_sreg(FS, SEL_C))
    e.ok(2)
    assert e.regs().fs.selector == SEL_C


def test_data_dpl_must_be_at_least_cpl_and_rpl() -> None:
    e = Env()
    e.start(load_sreg(DS, DATA0), cpl=3)
    assert e.fault(2) == (GP, DATA0)
    e.start(load_sreg(DS, DATA0 | 3))  # CPL 0, RPL 3 > DPL 0
    assert e.fault(2) == (GP, DATA0)
    e.start(load_sreg(DS, DATA3 | 1))  # DPL 3 >= max(CPL 0, RPL 1)
    e.ok(2)
    assert e.regs().ds.selector == DATA3 | 1


def test_conforming_readable_code_loads_at_any_privilege() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x9E))  # conforming, readable, DPL 0
    e.start(load_sreg(GS, SEL_A | 3), cpl=3)
    e.ok(2)
    assert e.regs().gs.selector == SEL_A | 3


def test_not_present_data_is_np_selector() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(A_DATA0 & 0x7F))
    e.start(load_sreg(ES, SEL_A))
    assert e.fault(2) == (NP, SEL_A)


def test_null_selectors_load_into_data_registers_and_fault_on_use() -> None:
    e = Env()
    e.start(load_sreg(ES, 3) + load_eax(0x100, ES))
    e.ok(2)
    assert e.regs().es.selector == 3
    assert e.fault(1) == (GP, 0)
    e.start(mov_r32(EAX, 0) + mov_sreg(FS) + store_eax(0, FS))
    e.ok(2)
    assert e.fault(1) == (GP, 0)


def test_ss_load_rules() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x90))  # read-only data
    e.set_gdt(SEL_B, flat(A_DATA0 & 0x7F))  # not present
    e.set_gdt(SEL_C, flat(A_CODE0))
    cases = [
        (0, (GP, 0)),  # null
        (SEL_A, (GP, SEL_A)),  # not writable
        (SEL_C, (GP, SEL_C)),  # code
        (DATA0 | 1, (GP, DATA0)),  # RPL != CPL
        (DATA3, (GP, DATA3)),  # DPL != CPL
        (SEL_B, (SS, SEL_B)),  # not present: #SS, not #NP
    ]
    for sel, expected in cases:
        e.start(load_sreg(SS_, sel))
        assert e.fault(2) == expected, hex(sel)
        assert e.regs().ss.selector == DATA0
    e.start(load_sreg(SS_, DATA1 | 1), cpl=1)
    e.ok(2)


def test_pop_and_lss_use_the_same_checks_and_commit_nothing_on_fault() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x90))  # read-only data: fine for DS, not for SS
    e.set_gdt(SEL_B, flat(0x98))  # execute-only code: never for a data register
    # push SEL_B ; pop ds  -> #GP(SEL_B), ESP still points at the pushed selector.
    e.start(push_imm(SEL_B) + b"\x1f")
    e.ok(1)
    assert e.fault(1) == (GP, SEL_B)
    assert e.regs().esp == STACK0 - 4 and e.regs().ds.selector == DATA0
    e.start(push_imm(SEL_A) + b"\x1f")
    e.ok(2)
    assert e.regs().ds.selector == SEL_A and e.regs().esp == STACK0
    # lss esp, [DATA_ADDR] with a read-only selector: #GP(sel), ESP unchanged.
    e.m.write(DATA_ADDR, u32(0x1234) + struct.pack("<H", SEL_A))
    e.start(b"\x0f\xb2\x25" + u32(DATA_ADDR))
    assert e.fault(1) == (GP, SEL_A)
    assert e.regs().esp == STACK0
    e.m.write(DATA_ADDR, u32(0x1234) + struct.pack("<H", DATA0))
    e.start(b"\x0f\xb2\x25" + u32(DATA_ADDR))
    e.ok(1)
    assert e.regs().esp == 0x1234


# ---- limits ------------------------------------------------------------------------------

def test_page_granular_limit() -> None:
    e = Env()
    e.set_gdt(SEL_A, desc(DATA_ADDR, 0, A_DATA0, 0xC))  # G = 1, limit 0: 4 KB
    e.start(load_sreg(DS, SEL_A) + load_eax(0xFFC) + load_eax(0xFFD))
    e.ok(3)
    assert e.fault(1) == (GP, 0)
    e.set_gdt(SEL_A, desc(DATA_ADDR, 0xFFF, A_DATA0, 0x4))  # byte granular: the same 4 KB
    e.start(load_sreg(DS, SEL_A) + store_eax(0xFFC) + store_eax(0xFFE))
    e.ok(3)
    assert e.fault(1) == (GP, 0)


def test_expand_down_limits() -> None:
    e = Env()
    # Expand-down, B = 0: valid offsets are limit+1 .. 0xFFFF.
    e.set_gdt(SEL_A, desc(DATA_ADDR, 0x0FFF, 0x96, 0x0))
    e.start(load_sreg(ES, SEL_A) + load_eax(0x1000, ES) + load_eax(0xFFFC, ES)
            + load_eax(0x0FFF, ES))
    e.ok(4)
    assert e.fault(1) == (GP, 0)
    e.start(load_sreg(ES, SEL_A) + load_eax(0xFFFD, ES))  # runs past 0xFFFF
    e.ok(2)
    assert e.fault(1) == (GP, 0)
    # B = 1: the upper bound is 4 GB.
    e.set_gdt(SEL_A, desc(DATA_ADDR, 0x0FFF, 0x96, 0x4))
    e.start(load_sreg(ES, SEL_A) + load_eax(0x20000, ES))
    e.ok(3)


def test_stack_limit_violation_is_ss_zero() -> None:
    e = Env()
    e.set_gdt(SEL_A, desc(0x70000, 0xFFF, A_DATA0, 0x4))
    # mov ss, SEL_A ; mov esp, 2 ; push eax -> #SS(0)
    e.start(load_sreg(SS_, SEL_A) + mov_r32(4, 2) + b"\x50")
    e.ok(3)
    assert e.fault(1) == (SS, 0)
    assert e.regs().esp == 2


# ---- segment types on access -------------------------------------------------------------

def test_writes_through_read_only_data_fault_reads_do_not() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x90))
    e.m.write(DATA_ADDR, u32(0xCAFEF00D))
    e.start(load_sreg(DS, SEL_A) + load_eax(DATA_ADDR) + b"\x39\x05" + u32(DATA_ADDR)
            + store_eax(DATA_ADDR))
    e.ok(4)  # MOV EAX,sel ; MOV DS,AX ; MOV EAX,[m] ; CMP [m],EAX
    assert e.regs().eax == 0xCAFEF00D
    assert e.fault(1) == (GP, 0)
    # Read-modify-write forms: ADD [m],EAX; INC dword [m]; XCHG [m],EAX.
    for rmw in (b"\x01\x05", b"\xff\x05", b"\x87\x05"):
        e.start(load_sreg(DS, SEL_A) + rmw + u32(DATA_ADDR))
        e.ok(2)
        assert e.fault(1) == (GP, 0)
    assert e.m.read(DATA_ADDR, 4) == u32(0xCAFEF00D)


def test_writes_through_code_segments_fault() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(A_CODE0))
    e.m.write(DATA_ADDR, u32(0x11223344))
    # Readable code through DS: reads work, writes are #GP(0); the same through CS.
    e.start(load_sreg(DS, SEL_A) + load_eax(DATA_ADDR) + load_eax(DATA_ADDR, CS)
            + store_eax(DATA_ADDR))
    e.ok(4)
    assert e.regs().eax == 0x11223344
    assert e.fault(1) == (GP, 0)
    e.start(store_eax(DATA_ADDR, CS))
    assert e.fault(1) == (GP, 0)


def test_reads_of_execute_only_code_fault() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x98))  # execute-only, DPL 0
    # Jump into the execute-only segment, then read through CS.
    target = CODE + 0x100
    e.m.write(target, load_eax(DATA_ADDR, CS))
    e.start(jmp_far(SEL_A, target))
    e.ok(1)
    assert e.regs().cs.selector == SEL_A
    assert e.fault(1) == (GP, 0)


def test_string_writes_check_the_destination_type() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x90))
    # es = read-only ; mov edi, DATA_ADDR ; mov ecx, 100 ; rep stosb
    code = load_sreg(ES, SEL_A) + mov_r32(7, DATA_ADDR) + mov_r32(1, 100) + b"\xf3\xaa"
    e.start(code)
    e.ok(4)
    assert e.fault(1) == (GP, 0)
    assert e.regs().ecx == 100 and e.regs().edi == DATA_ADDR
    assert e.m.read(DATA_ADDR, 100) == bytes(100)
    # rep movsd from an execute-only source (CS override): #GP(0), nothing copied.
    e.set_gdt(SEL_B, flat(0x98))
    e.m.write(CODE + 0x200, mov_r32(6, 0) + mov_r32(7, DATA_ADDR) + mov_r32(1, 4)
              + b"\x2e\xf3\xa5")
    e.start(jmp_far(SEL_B, CODE + 0x200))
    e.ok(4)
    assert e.fault(1) == (GP, 0)
    assert e.regs().ecx == 4


def test_real_mode_ignores_segment_types() -> None:
    """Type checks are a protected-mode rule: real-mode code writes through CS."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.set_stop_on_exception(True)
    # mov byte [cs:0x2000], 0x5A ; hlt
    m.write(0x1000, b"\x2e\xc6\x06\x00\x20\x5a\xf4")
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    r.eip = 0x1000
    m.set_regs(r)
    assert m.run(10) == StopReason.HALT
    assert m.read(0x2000, 1) == b"\x5a"


# ---- far JMP / CALL dispatch -------------------------------------------------------------

def test_far_jmp_call_to_unsuitable_descriptors() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(A_DATA0))
    e.set_gdt(SEL_B, desc(LDT, 0xFF, 0x82, 0))
    e.set_gdt(SEL_C, desc(TSS0, 0x67, 0x8B, 0))  # busy TSS
    e.set_gdt(SEL_D, gate(CODE0, CODE, 0x8E))  # interrupt gate
    for sel in (SEL_A, SEL_B, SEL_C, SEL_D):
        for op in (jmp_far, call_far):
            e.start(op(sel, 0))
            assert e.fault(1) == (GP, sel), (op.__name__, hex(sel))
    e.start(jmp_far(0, 0))
    assert e.fault(1) == (GP, 0)


def test_far_jmp_to_code_privilege_rules() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x9E))  # conforming DPL 0
    e.m.write(0x30000, HLT)
    # Non-conforming of another DPL: #GP(sel); conforming DPL 0 from CPL 3 keeps CPL 3.
    e.start(jmp_far(CODE0, 0x30000), cpl=3)
    assert e.fault(1) == (GP, CODE0)
    e.start(jmp_far(SEL_A, 0x30000), cpl=3)
    e.ok(1)
    r = e.regs()
    assert (r.cs.selector, r.cpl, r.eip) == (SEL_A | 3, 3, 0x30000)
    # Beyond the limit: #GP(0).
    e.set_gdt(SEL_B, desc(0, 0xFFF, A_CODE0, 0x4))
    e.start(jmp_far(SEL_B, 0x1000))
    assert e.fault(1) == (GP, 0)


# ---- call gates --------------------------------------------------------------------------

def test_call_gate_same_privilege_pushes_with_the_gate_size() -> None:
    e = Env()
    target = 0x30000
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32))
    e.m.write(target, HLT)
    # The offset in the instruction is ignored: the gate gives it.
    e.start(call_far(SEL_A, 0xDEAD))
    e.ok(1)
    r = e.regs()
    assert (r.cs.selector, r.eip, r.esp, r.cpl) == (CODE0, target, STACK0 - 8, 0)
    assert e.dwords(STACK0 - 8, 2) == [CODE + 7, CODE0]
    # 16-bit gate: 16-bit offset, 16-bit pushes even from 32-bit code.
    e.set_gdt(SEL_B, gate(CODE0, 0x12345678, A_CALLGATE16))
    e.m.write(0x5678, HLT)
    e.start(call_far(SEL_B, 0))
    e.ok(1)
    r = e.regs()
    assert (r.eip, r.esp) == (0x5678, STACK0 - 4)
    assert e.words(STACK0 - 4, 2) == [(CODE + 7) & 0xFFFF, CODE0]


def test_call_gate_to_ring0_switches_stack_and_copies_parameters() -> None:
    e = Env()
    target = 0x30000
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32 | 0x60, count=3))
    e.m.write(target, HLT)
    # CPL 3: push three parameters, then call the gate with RPL 3.
    code = push_imm(0x11) + push_imm(0x22) + push_imm(0x33) + call_far(SEL_A | 3, 0)
    e.start(code, cpl=3)
    e.ok(4)
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.eip) == (0, CODE0, target)
    assert (r.ss.selector, r.esp) == (DATA0, STACK0 - 28)
    # Ring-0 stack from ESP up: EIP, CS, the parameters in their order, old ESP, old SS.
    assert e.dwords(STACK0 - 28, 7) == [CODE + 22, CODE3 | 3, 0x33, 0x22, 0x11, STACK3 - 12,
                                        DATA3 | 3]


def test_call_gate_16bit_copies_words_and_retf_returns_to_ring3() -> None:
    e = Env()
    target, low = 0x3000, 0x5000  # a 16-bit gate and 16-bit returns: code below 64 KB
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE16 | 0x60, count=2))
    # Ring 0: mov ds, DATA0 ; retf 4 with a 16-bit operand size (66 CA 04 00)
    e.m.write(target, load_sreg(DS, DATA0) + b"\x66\xca\x04\x00")
    # push word 1 ; push word 2 ; call far gate ; hlt
    code = b"\x66\x6a\x01" + b"\x66\x6a\x02" + call_far(SEL_A | 3, 0) + HLT
    e.start(code, cpl=3, eip=low)
    e.ok(3)
    r = e.regs()
    assert (r.cpl, r.eip, r.esp) == (0, target, STACK0 - 12)
    # 16-bit frame from SP up: IP, CS, the two parameters in their order, SP, SS.
    assert e.words(STACK0 - 12, 6) == [low + 13, CODE3 | 3, 2, 1, (STACK3 - 4) & 0xFFFF,
                                       DATA3 | 3]
    e.ok(3)  # mov eax ; mov ds ; retf 4
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.eip) == (3, CODE3 | 3, low + 13)
    assert (r.ss.selector, r.esp) == (DATA3 | 3, STACK3)  # parameters released
    # DS was loaded with a DPL-0 segment in ring 0: nulled on the way out.
    assert r.ds.selector == 0
    assert r.es.selector == DATA3 | 3


def test_retf_to_outer_ring_keeps_usable_data_segments() -> None:
    e = Env()
    e.set_gdt(SEL_A, flat(0x9E))  # conforming readable code, DPL 0
    target = 0x30000
    e.set_gdt(SEL_B, gate(CODE0, target, A_CALLGATE32 | 0x60))
    e.m.write(target, load_sreg(DS, DATA0) + load_sreg(ES, DATA3 | 3) + load_sreg(FS, SEL_A)
              + load_sreg(GS, DATA1) + retf())
    e.start(call_far(SEL_B | 3, 0), cpl=3)
    e.ok(1 + 8 + 1)
    r = e.regs()
    assert r.cpl == 3 and r.eip == CODE + 7
    assert r.ds.selector == 0 and r.gs.selector == 0  # DPL 0 and 1 data: nulled
    assert r.es.selector == DATA3 | 3 and r.fs.selector == SEL_A  # DPL 3, conforming code
    # A nulled register faults on use.
    e.m.write(CODE + 7, load_eax(0x100))
    assert e.fault(1) == (GP, 0)


def test_call_gate_checks() -> None:
    e = Env()
    target = 0x30000
    e.m.write(target, HLT)
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32))  # DPL 0
    e.start(call_far(SEL_A | 3, 0), cpl=3)  # gate DPL < CPL
    assert e.fault(1) == (GP, SEL_A)
    e.start(call_far(SEL_A | 1, 0))  # RPL > gate DPL
    assert e.fault(1) == (GP, SEL_A)
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32 & 0x7F))
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (NP, SEL_A)
    e.set_gdt(SEL_A, gate(0, target, A_CALLGATE32))  # null code selector
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (GP, 0)
    e.set_gdt(SEL_A, gate(DATA0, target, A_CALLGATE32))  # not code
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (GP, DATA0)
    e.set_gdt(SEL_A, gate(CODE3, target, A_CALLGATE32 | 0x60))  # code DPL 3 > CPL 0
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (GP, CODE3)
    e.set_gdt(SEL_B, flat(A_CODE0 & 0x7F))
    e.set_gdt(SEL_A, gate(SEL_B, target, A_CALLGATE32))
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (NP, SEL_B)
    e.set_gdt(SEL_B, desc(0, 0xFFFF, A_CODE0, 0x4))
    e.set_gdt(SEL_A, gate(SEL_B, 0x10000, A_CALLGATE32))  # offset beyond the limit
    e.start(call_far(SEL_A, 0))
    assert e.fault(1) == (GP, 0)
    assert e.regs().esp == STACK0 and e.regs().cs.selector == CODE0


def test_jmp_through_call_gate_never_changes_privilege() -> None:
    e = Env()
    target = 0x30000
    e.m.write(target, HLT)
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32 | 0x60))
    e.start(jmp_far(SEL_A | 3, 0), cpl=3)  # to a more privileged non-conforming segment
    assert e.fault(1) == (GP, CODE0)
    e.set_gdt(SEL_A, gate(CODE3, target, A_CALLGATE32 | 0x60))
    e.start(jmp_far(SEL_A | 3, 0), cpl=3)
    e.ok(1)
    r = e.regs()
    assert (r.cs.selector, r.eip, r.esp, r.cpl) == (CODE3 | 3, target, STACK3, 3)


def test_inner_stack_from_the_tss_is_checked() -> None:
    e = Env()
    target = 0x30000
    e.m.write(target, HLT)
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32 | 0x60))
    call = call_far(SEL_A | 3, 0)
    cases = [
        (0, (TS, 0)),  # null SS0
        (DATA0 | 3, (TS, DATA0)),  # RPL 3 != 0
        (DATA3, (TS, DATA3)),  # DPL 3 != 0
        (CODE0, (TS, CODE0)),  # not writable data
        (0x0C, (TS, 0x0C)),  # LDT selector, LDTR unusable
    ]
    for ss0, expected in cases:
        e.m.write(TSS0, tss32(ss0=ss0))
        e.start(call, cpl=3)
        assert e.fault(1) == expected, hex(ss0)
        assert e.regs().cpl == 3 and e.regs().ss.selector == DATA3 | 3
    e.set_gdt(SEL_B, flat(A_DATA0 & 0x7F))
    e.m.write(TSS0, tss32(ss0=SEL_B))
    e.start(call, cpl=3)
    assert e.fault(1) == (SS, SEL_B)
    # No room for the 16 bytes: #SS(SS0 selector).
    e.set_gdt(SEL_B, desc(0x70000, 0xFFF, A_DATA0, 0x4))
    e.m.write(TSS0, tss32(ss0=SEL_B, esp0=8))
    e.start(call, cpl=3)
    assert e.fault(1) == (SS, SEL_B)
    # The TSS too small to hold ESP0/SS0: #TS(TR selector).
    e.m.write(TSS0, tss32())
    e.start(call, cpl=3)
    r = e.regs()
    r.tr = Segment(0x28, TSS0, 0x8, 0x8B)
    e.m.set_regs(r)
    assert e.fault(1) == (TS, 0x28)


def test_call_gate_to_ring1() -> None:
    e = Env()
    target = 0x30000
    e.m.write(target, HLT)
    e.set_gdt(SEL_A, gate(CODE1 | 1, target, A_CALLGATE32 | 0x60))
    e.start(call_far(SEL_A | 3, 0), cpl=3)
    e.ok(1)
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.ss.selector, r.esp) == (1, CODE1 | 1, DATA1 | 1, STACK1 - 16)


# ---- far returns and IRET ----------------------------------------------------------------

def test_retf_to_inner_ring_and_outer_stack_checks() -> None:
    e = Env()
    e.start(push_imm(CODE0) + push_imm(0x30000) + retf(), cpl=3)
    e.ok(2)
    assert e.fault(1) == (GP, CODE0)
    # Outer return whose SS RPL differs from the CS RPL: #GP(SS selector).
    e.start(push_imm(DATA1 | 1) + push_imm(0x7000) + push_imm(CODE3 | 3) + push_imm(0x30000)
            + retf())
    e.ok(4)
    assert e.fault(1) == (GP, DATA1)
    # Not-present SS: #SS(selector).
    e.set_gdt(SEL_A, flat(A_DATA3 & 0x7F))
    e.start(push_imm(SEL_A | 3) + push_imm(0x7000) + push_imm(CODE3 | 3) + push_imm(0x30000)
            + retf())
    e.ok(4)
    assert e.fault(1) == (SS, SEL_A)
    assert e.regs().cpl == 0 and e.regs().esp == STACK0 - 16


def test_iret_to_outer_ring_nulls_data_segments_and_keeps_if_rules() -> None:
    e = Env()
    e.m.write(0x30000, HLT)
    # At CPL 0, IOPL 0: IRET to CPL 3 with IF and IOPL 3 in the image: both taken (CPL 0).
    code = (load_sreg(FS, DATA3 | 3) + push_imm(DATA3 | 3) + push_imm(0x7000)
            + push_imm(0x3202) + push_imm(CODE3 | 3) + push_imm(0x30000) + IRET)
    e.start(code)
    e.ok(8)
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.eip, r.ss.selector, r.esp) == (3, CODE3 | 3, 0x30000,
                                                                    DATA3 | 3, 0x7000)
    assert r.eflags & 0x3200 == 0x3200
    assert (r.ds.selector, r.es.selector, r.gs.selector, r.fs.selector) == (0, 0, 0, DATA3 | 3)


def test_iret_at_cpl3_cannot_raise_iopl_or_if() -> None:
    e = Env()
    e.m.write(0x30000, HLT)
    code = push_imm(0x3202) + push_imm(CODE3 | 3) + push_imm(0x30000) + IRET
    e.start(code, cpl=3)
    e.ok(4)
    r = e.regs()
    assert r.eip == 0x30000 and r.eflags & 0x3200 == 0


def test_gdt_access_bit_writes_work_at_cpl3_under_paging() -> None:
    """Setting a descriptor's accessed bit is a supervisor write, even from CPL 3."""
    e = Env()
    pd, pt = 0x100000, 0x101000
    # Identity-map the first 4 MB; the GDT page is supervisor-only and read-only.
    e.m.write(pd, u32(pt | 7))
    e.m.write(pt, b"".join(u32((i << 12) | (1 if i == GDT >> 12 else 7)) for i in range(1024)))
    e.set_gdt(SEL_A, desc(DATA_ADDR, 0xFFFF, A_DATA3 & ~1, 0x4))
    e.start(load_sreg(DS, SEL_A | 3) + load_eax(0), cpl=3, cr0=0x80000000, cr3=pd)
    e.ok(3)
    assert e.gdt_access(SEL_A) == 0xF3


def test_data_segment_type_checks_follow_segment_loads_not_stale_state() -> None:
    """The access checks are recomputed on every load: a writable segment after a
    read-only one is writable, and the reverse."""
    e = Env()
    e.set_gdt(SEL_A, flat(0x90))
    code = (load_sreg(DS, SEL_A, EBX) + load_sreg(DS, DATA0, EBX) + store_eax(DATA_ADDR)
            + load_sreg(DS, SEL_A, EBX) + store_eax(DATA_ADDR))
    e.start(code, eax=0x77)
    e.ok(5)
    assert e.m.read(DATA_ADDR, 4) == u32(0x77)
    e.ok(2)
    assert e.fault(1) == (GP, 0)
    # The same after a snapshot restore.
    snap = e.m.snapshot()
    e.m.restore(snap)
    assert e.fault(1) == (GP, 0)


def test_call_gate_and_interrupt_from_ring3_under_paging_use_supervisor_pages() -> None:
    """The inner stack, the GDT, the IDT and the TSS may be supervisor-only pages: the CPU
    reaches them with supervisor rights during the transfer (SDM Vol. 3A 4.6.1)."""
    e = Env(stop_on_exception=False)
    pd, pt = 0x100000, 0x101000
    supervisor = {GDT >> 12, 0x2000 >> 12, TSS0 >> 12, (STACK0 - 4) >> 12, 0x30000 >> 12}
    e.m.write(pd, u32(pt | 7))
    e.m.write(pt, b"".join(u32((i << 12) | (3 if i in supervisor else 7)) for i in range(1024)))
    target = 0x30000
    e.set_gdt(SEL_A, gate(CODE0, target, A_CALLGATE32 | 0x60))
    e.set_idt(0x80, gate(CODE0, target + 0x10, 0xEE))
    e.m.write(target, retf())
    e.m.write(target + 0x10, HLT)
    e.start(call_far(SEL_A | 3, 0) + int_n(0x80), cpl=3, cr0=0x80000000, cr3=pd)
    e.ok(2)  # the call, then RETF back to ring 3
    r = e.regs()
    assert (r.cpl, r.eip, r.esp) == (3, CODE + 7, STACK3)
    assert e.run(5) == StopReason.HALT
    r = e.regs()
    assert (r.cpl, r.eip, r.esp) == (0, target + 0x11, STACK0 - 20)
    assert e.dwords(STACK0 - 20, 5) == [CODE + 9, CODE3 | 3, 2, STACK3, DATA3 | 3]
