"""Virtual-8086 mode: entry by IRET and by a task switch, segment loads, IOPL-sensitive
instructions, interrupts and exceptions to a ring-0 monitor and back, the I/O bitmap.

Expected behaviour: Intel SDM Vol. 3B chapter 20 ("8086 Emulation": 20.2 virtual-8086
mode, 20.2.7 sensitive instructions, 20.3 interrupt and exception handling) and the INT n
("INTERRUPT-FROM-VIRTUAL-8086-MODE") and IRET ("RETURN-TO-VIRTUAL-8086-MODE",
"RETURN-FROM-VIRTUAL-8086-MODE") pseudocode of Vol. 2.
"""

from __future__ import annotations

from pmenv import (
    A_INTGATE16,
    A_INTGATE32,
    A_TRAPGATE32,
    CODE0,
    DATA0,
    DF,
    F_IF,
    F_NT,
    F_RF,
    F_VM,
    FREE,
    GP,
    HLT,
    IOPL3,
    IRET,
    STACK0,
    TSS0,
    TSS1_SEL,
    Env,
    flat,
    gate,
    jmp_far,
    push_imm,
    tss32,
)

from aero.machine import Segment, StopReason

V86_CS, V86_SS, V86_DS, V86_ES, V86_FS, V86_GS = 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000
V86_SP = 0x1000
HANDLER = 0x38000
FRAME_V86 = 9  # EIP CS EFLAGS ESP SS ES DS FS GS


def enter_v86(e: Env, v86_code: bytes, *, eflags: int = F_VM | IOPL3, ip: int = 0,
              stop_on_exception: bool = True) -> None:
    """Ring 0 at CODE builds a virtual-8086 IRET frame and executes IRETD (10 instructions);
    v86_code is placed at V86_CS:ip."""
    e.m.write((V86_CS << 4) + ip, v86_code)
    frame = [V86_GS, V86_FS, V86_DS, V86_ES, V86_SS, V86_SP, eflags | 2, V86_CS, ip]
    e.start(b"".join(push_imm(v) for v in frame) + IRET)


def handler_gate(e: Env, vec: int, access: int = A_INTGATE32 | 0x60, code: bytes = HLT) -> None:
    """IDT[vec] -> a ring-0 handler at HANDLER (default: a DPL-3 32-bit interrupt gate)."""
    e.set_idt(vec, gate(CODE0, HANDLER, access))
    e.m.write(HANDLER, code)


def test_iret_enters_virtual_8086_mode() -> None:
    e = Env()
    e.m.write((V86_DS << 4) + 0x10, b"\x34\x12")
    enter_v86(e, b"\xa1\x10\x00" + b"\x8c\xc8")  # mov ax, [0x10] ; mov ax, cs
    e.ok(10)
    r = e.regs()
    assert r.cpl == 3 and r.eflags == F_VM | IOPL3 | 2
    assert (r.cs.selector, r.cs.base, r.cs.limit) == (V86_CS, V86_CS << 4, 0xFFFF)
    assert (r.ss.selector, r.ss.base, r.esp) == (V86_SS, V86_SS << 4, V86_SP)
    assert [(s.selector, s.base) for s in (r.ds, r.es, r.fs, r.gs)] == [
        (V86_DS, V86_DS << 4), (V86_ES, V86_ES << 4), (V86_FS, V86_FS << 4),
        (V86_GS, V86_GS << 4)]
    assert r.cs.attr & 0x60 == 0x60 and r.ds.attr & 0x60 == 0x60  # DPL 3
    e.ok(1)
    assert e.regs().eax & 0xFFFF == 0x1234
    e.ok(1)
    assert e.regs().eax & 0xFFFF == V86_CS


def test_iret_to_v86_checks_the_new_ip_and_the_stack() -> None:
    e = Env()
    enter_v86(e, b"", ip=0x10000)
    e.ok(9)
    assert e.fault(1) == (GP, 0)
    assert e.regs().cpl == 0 and not e.regs().eflags & F_VM


def test_int_n_from_v86_reaches_ring0_with_the_v86_frame_and_iret_returns() -> None:
    e = Env(stop_on_exception=False)
    handler_gate(e, 0x21, code=HLT + IRET)
    # mov ax, 0x1234 ; int 0x21 ; mov bx, ax ; jmp $
    v86 = b"\xb8\x34\x12" + b"\xcd\x21" + b"\x89\xc3" + b"\xeb\xfe"
    enter_v86(e, v86, eflags=F_VM | IOPL3 | F_IF)
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert (r.cpl, r.cs.selector, r.eip, r.ss.selector) == (0, CODE0, HANDLER + 1, DATA0)
    assert r.esp == STACK0 - 4 * FRAME_V86
    # VM, TF, RF, NT cleared; IF cleared by the interrupt gate.
    assert not r.eflags & (F_VM | F_IF | F_NT)
    # The data segment registers are null in the handler.
    assert (r.ds.selector, r.es.selector, r.fs.selector, r.gs.selector) == (0, 0, 0, 0)
    frame = e.dwords(r.esp, FRAME_V86)
    assert frame == [5, V86_CS, F_VM | IOPL3 | F_IF | 2, V86_SP, V86_SS, V86_ES, V86_DS,
                     V86_FS, V86_GS]
    # Resume the handler: IRETD pops the whole frame back into virtual-8086 mode.
    e.set(halted=False)
    e.ok(3)  # iretd ; mov bx, ax ; jmp $
    r = e.regs()
    assert r.cpl == 3 and r.eflags & F_VM and r.eip == 7 and r.ebx & 0xFFFF == 0x1234
    assert (r.ds.selector, r.ds.base, r.gs.selector, r.esp) == (V86_DS, V86_DS << 4, V86_GS,
                                                                V86_SP)


def test_int_n_from_v86_through_a_16bit_gate_pushes_words() -> None:
    e = Env(stop_on_exception=False)
    e.set_idt(0x22, gate(CODE0, 0x3800, A_INTGATE16 | 0x60))
    e.m.write(0x3800, HLT)
    enter_v86(e, b"\xcd\x22")
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert r.esp == STACK0 - 2 * FRAME_V86
    assert e.words(r.esp, FRAME_V86) == [2, V86_CS, (F_VM | IOPL3 | 2) & 0xFFFF, V86_SP, V86_SS,
                                         V86_ES, V86_DS, V86_FS, V86_GS]


def test_trap_gate_keeps_if() -> None:
    e = Env(stop_on_exception=False)
    handler_gate(e, 0x21, A_TRAPGATE32 | 0x60)
    enter_v86(e, b"\xcd\x21", eflags=F_VM | IOPL3 | F_IF)
    assert e.run(20) == StopReason.HALT
    assert e.regs().eflags & F_IF and not e.regs().eflags & F_VM


def test_iopl_sensitive_instructions_fault_below_iopl3() -> None:
    cases = [b"\xfa", b"\xfb", b"\x9c", b"\x9d", b"\xcf", b"\xcd\x21", b"\x66\x9c"]
    for insn in cases:
        e = Env()
        handler_gate(e, 0x21)
        enter_v86(e, insn, eflags=F_VM)  # IOPL 0
        e.ok(10)
        assert e.fault(1) == (GP, 0), insn.hex()
        assert e.regs().eip == 0 and e.regs().eflags & F_VM


def test_iopl3_lets_them_run() -> None:
    e = Env()
    # cli ; sti ; pushfd ; popfd ; push word 0 ; popf
    enter_v86(e, b"\xfa\xfb\x66\x9c\x66\x9d\x6a\x00\x9d", eflags=F_VM | IOPL3)
    e.ok(10 + 3)
    # PUSHFD's image has VM (and RF) clear.
    assert e.dwords((V86_SS << 4) + V86_SP - 4, 1) == [IOPL3 | F_IF | 2]
    e.ok(1)
    r = e.regs()
    assert r.eflags == F_VM | IOPL3 | F_IF | 2  # POPFD does not change VM
    e.ok(2)
    # POPF in virtual-8086 mode cannot change IOPL; with IOPL 3 it changes IF.
    assert e.regs().eflags == F_VM | IOPL3 | 2


def test_hlt_in_v86_is_gp() -> None:
    e = Env()
    enter_v86(e, HLT)
    e.ok(10)
    assert e.fault(1) == (GP, 0)


def test_gp_from_v86_is_delivered_to_ring0_with_error_code() -> None:
    e = Env(stop_on_exception=False)
    handler_gate(e, GP, A_INTGATE32)  # exceptions ignore the gate DPL
    enter_v86(e, b"\x90\xfa", eflags=F_VM)  # nop ; cli (IOPL 0: #GP(0))
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert r.esp == STACK0 - 4 * (FRAME_V86 + 1)
    # A fault pushes EFLAGS with RF set (SDM Vol. 3B 17.3.1.1).
    assert e.dwords(r.esp, FRAME_V86 + 1) == [0, 1, V86_CS, F_VM | F_RF | 2, V86_SP, V86_SS,
                                              V86_ES, V86_DS, V86_FS, V86_GS]


def test_int3_in_v86_needs_a_dpl3_gate() -> None:
    """INT3 is not IOPL-sensitive; as a software interrupt it checks the gate DPL."""
    e = Env(stop_on_exception=False)
    handler_gate(e, GP, A_INTGATE32)
    e.set_idt(3, gate(CODE0, 0x39000, A_INTGATE32))  # DPL 0
    enter_v86(e, b"\xcc", eflags=F_VM)
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert r.eip == HANDLER + 1
    assert e.dwords(r.esp, 2) == [3 * 8 + 2, 0]


def test_v86_handler_must_be_nonconforming_ring0() -> None:
    """An IDT gate from virtual-8086 mode to a conforming segment is #GP(selector + EXT);
    during the delivery of #GP that is a double fault."""
    e = Env(stop_on_exception=False)
    conforming = e.set_gdt(FREE, flat(0x9E))
    e.set_idt(GP, gate(conforming, HANDLER, A_INTGATE32))
    e.set_idt(DF, gate(CODE0, 0x39000, A_INTGATE32))
    e.m.write(0x39000, HLT)
    enter_v86(e, b"\xfa", eflags=F_VM)
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert r.eip == 0x39001 and r.cpl == 0
    assert e.dwords(r.esp, 3) == [0, 0, V86_CS]  # #DF's error code 0, then the V86 frame


def test_io_in_v86_uses_the_bitmap_whatever_the_iopl() -> None:
    bitmap = bytearray(b"\xff" * 0x80)
    bitmap[0x80 >> 3] &= ~1  # port 0x80 allowed
    for iopl in (0, IOPL3):
        e = Env()
        e.m.write(TSS0, tss32(iomap=0x68) + bytes(bitmap) + b"\xff")
        # in al, 0x80 ; in al, 0x81
        enter_v86(e, b"\xe4\x80\xe4\x81", eflags=F_VM | iopl)
        r = e.regs()
        r.tr = Segment(0x28, TSS0, 0x68 + 0x80, 0x8B)
        e.m.set_regs(r)
        e.ok(11)
        assert e.fault(1) == (GP, 0)
        assert e.regs().eip == 2


def test_task_switch_into_v86() -> None:
    e = Env(stop_on_exception=False)
    handler_gate(e, 0x21)
    e.m.write(0x4400, tss32(eip=0x10, eflags=F_VM | IOPL3 | 2,
                            segs=(V86_ES, V86_CS, V86_SS, V86_DS, V86_FS, V86_GS),
                            gpr=(0xAB, 0, 0, 0, V86_SP, 0, 0, 0)))
    e.m.write((V86_CS << 4) + 0x10, b"\xcd\x21")
    e.start(jmp_far(TSS1_SEL, 0))
    e.ok(1)
    r = e.regs()
    assert r.cpl == 3 and r.eflags & F_VM and r.tr.selector == TSS1_SEL
    assert (r.cs.base, r.ss.base, r.ds.base, r.eip, r.esp) == (V86_CS << 4, V86_SS << 4,
                                                               V86_DS << 4, 0x10, V86_SP)
    assert r.cs.limit == 0xFFFF and r.cs.attr & 0x60 == 0x60
    # INT 21h in the new task reaches ring 0 on the stack of the new TSS (SS0:ESP0).
    assert e.run(10) == StopReason.HALT
    r = e.regs()
    assert r.esp == STACK0 - 4 * FRAME_V86 and r.eip == HANDLER + 1
    assert e.dwords(r.esp, FRAME_V86)[:3] == [0x12, V86_CS, F_VM | IOPL3 | 2]


def test_hardware_interrupt_in_v86_goes_to_ring0_whatever_the_gate_dpl() -> None:
    """An external interrupt (EXT = 1) is not a software interrupt: the gate DPL is not
    checked, and it leaves virtual-8086 mode like INT n does."""
    e = Env(stop_on_exception=False)
    handler_gate(e, 0x30, A_INTGATE32)  # DPL 0
    enter_v86(e, b"\xeb\xfe", eflags=F_VM | F_IF)  # jmp $ with IF = 1, IOPL 0
    e.ok(12)
    e.m.raise_interrupt(0x30)
    assert e.run(20) == StopReason.HALT
    r = e.regs()
    assert r.eip == HANDLER + 1 and r.cpl == 0 and not r.eflags & (F_VM | F_IF)
    assert e.dwords(r.esp, FRAME_V86) == [0, V86_CS, F_VM | F_IF | 2, V86_SP, V86_SS, V86_ES,
                                          V86_DS, V86_FS, V86_GS]
