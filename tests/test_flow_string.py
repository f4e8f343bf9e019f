"""Control-transfer, stack and string instructions: exact registers, memory and ticks.

Every program runs in real mode from CS:IP = 0000:1000 with a stack at 0000:8000 and ends
with HLT, which retires as one tick. REP string instructions cost one tick per iteration;
a run batched inside the core must equal one iteration per step, whatever the slicing.
"""

from __future__ import annotations

import random

import pytest

from aero.machine import Machine, MachineConfig, Regs, Segment, StopReason

CODE = 0x1000
STACK = 0x8000
F_CF, F_ZF, F_TF, F_IF, F_DF = 0x001, 0x040, 0x100, 0x200, 0x400


def real_mode(m: Machine, ip: int = CODE, sp: int = STACK, cs: int = 0, flags: int = 0x2,
              **gprs: int) -> None:
    """Real-mode state as after a BIOS: CS base = selector << 4, 64 KB limits."""
    r = Regs()
    r.cs = Segment(cs, cs << 4, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp, r.eflags = ip, sp, flags
    r.idtr_base, r.idtr_limit = 0, 0x3FF
    for name, value in gprs.items():
        setattr(r, name, value)
    m.set_regs(r)


def machine(code: bytes, **kw: int) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20, devices=False))
    m.write(CODE, code)
    real_mode(m, **kw)
    return m


def run_to_halt(m: Machine, budget: int = 1_000_000) -> int:
    """Run until HLT; returns the ticks it took."""
    start = m.ticks
    assert m.run(start + budget) == StopReason.HALT
    return m.ticks - start


def step_to_halt(m: Machine, budget: int = 1_000_000) -> int:
    """Run one tick per call until the CPU halts; returns the ticks it took."""
    start = m.ticks
    for _ in range(budget):
        if m.step() == StopReason.HALT:
            return m.ticks - start
    raise AssertionError("no HLT")


def state(m: Machine, lo: int = 0, hi: int = 0x20000) -> tuple:
    return (m.get_regs(), m.read(lo, hi - lo), m.ticks)


def u16(m: Machine, addr: int) -> int:
    return int.from_bytes(m.read(addr, 2), "little")


# ---- string instructions ---------------------------------------------------------------

def test_rep_movsb_ticks_equal_iterations_and_single_steps() -> None:
    rng = random.Random(1)
    data = bytes(rng.randrange(256) for _ in range(300))
    prog = bytes([0xF3, 0xA4, 0xF4])  # rep movsb; hlt
    a = machine(prog, ecx=300, esi=0x2000, edi=0x3000)
    a.write(0x2000, data)
    b = machine(prog, ecx=300, esi=0x2000, edi=0x3000)
    b.write(0x2000, data)
    assert run_to_halt(a) == 300 + 1
    assert step_to_halt(b) == 300 + 1
    assert a.read(0x3000, 300) == data
    ra = a.get_regs()
    assert (ra.ecx, ra.esi, ra.edi, ra.eip) == (0, 0x2000 + 300, 0x3000 + 300, CODE + 3)
    assert state(a) == state(b)


def test_rep_with_zero_count_does_nothing() -> None:
    m = machine(bytes([0xF3, 0xA4, 0xF4]), ecx=0, esi=0x2000, edi=0x3000)
    m.write(0x2000, b"\x55")
    assert run_to_halt(m) == 2
    r = m.get_regs()
    assert (r.ecx, r.esi, r.edi, r.eip) == (0, 0x2000, 0x3000, CODE + 3)
    assert m.read(0x3000, 1) == b"\0"


def test_repe_cmpsb_stops_at_first_difference() -> None:
    m = machine(bytes([0xF3, 0xA6, 0xF4]), ecx=20, esi=0x2000, edi=0x3000)
    m.write(0x2000, b"abcdefXhij")
    m.write(0x3000, b"abcdefYhij")
    assert run_to_halt(m) == 7 + 1
    r = m.get_regs()
    assert (r.ecx, r.esi, r.edi) == (20 - 7, 0x2007, 0x3007)
    assert not r.eflags & F_ZF and r.eflags & F_CF  # 'X' < 'Y'


def test_repne_scasb_finds_byte() -> None:
    m = machine(bytes([0xF2, 0xAE, 0xF4]), ecx=100, edi=0x3000, eax=0x00)
    m.write(0x3000, b"hello\0world")
    assert run_to_halt(m) == 6 + 1
    r = m.get_regs()
    assert (r.ecx, r.edi) == (94, 0x3006) and r.eflags & F_ZF


def test_interrupted_string_op_resumes_to_same_state() -> None:
    rng = random.Random(2)
    data = bytes(rng.randrange(256) for _ in range(5000))
    prog = bytes([0xF3, 0x66, 0xA5, 0xF4])  # rep movsd (32-bit operand); hlt
    kw = {"ecx": 1000, "esi": 0x2000, "edi": 0x5800}
    whole = machine(prog, **kw)
    whole.write(0x2000, data)
    run_to_halt(whole)
    parts = machine(prog, **kw)
    parts.write(0x2000, data)
    assert parts.run(357) == StopReason.TICKS
    r = parts.get_regs()
    assert (r.eip, r.ecx, r.esi, r.edi) == (CODE, 1000 - 357, 0x2000 + 4 * 357, 0x5800 + 4 * 357)
    assert parts.read(0x5800, 4 * 357) == data[:4 * 357]
    assert parts.read(0x5800 + 4 * 357, 4) == b"\0\0\0\0"
    assert parts.run(358) == StopReason.TICKS  # one more iteration, one more tick
    assert parts.get_regs().ecx == 1000 - 358
    run_to_halt(parts)
    assert parts.ticks == 1001
    assert state(parts) == state(whole)


@pytest.mark.parametrize("seed", range(12))
def test_batched_rep_equals_single_steps(seed: int) -> None:
    """Fast paths (forward, one page) and the exact path give identical results: random
    sizes, directions, overlaps and page crossings, one run against one step per tick."""
    rng = random.Random(seed)
    op = rng.choice([0xA4, 0xA5, 0xAA, 0xAB])
    prefix = [0x66] if rng.random() < 0.3 else []
    prog = bytes([0xF3, *prefix, op, 0xF4])
    src = rng.randrange(0x2000, 0x6000)
    dst = src + rng.choice([-6, -1, 1, 2, 3, 4096 + rng.randrange(64), rng.randrange(-300, 300)])
    kw = {"ecx": rng.randrange(1, 1500), "esi": src, "edi": dst,
          "eax": rng.getrandbits(32), "flags": 0x2 | (F_DF if rng.random() < 0.25 else 0)}
    data = bytes(rng.randrange(256) for _ in range(0x6000))
    a, b = machine(prog, **kw), machine(prog, **kw)
    for m in (a, b):
        m.write(0x2000, data)
    # Slice the batched run at a few arbitrary ticks as well.
    for cut in sorted(rng.sample(range(1, 1500), 3)):
        if a.run(cut) != StopReason.TICKS:
            break
    run_to_halt(a)
    step_to_halt(b)
    assert state(a) == state(b)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("rep", [0xF2, 0xF3])
@pytest.mark.parametrize("op", [0xA6, 0xA7, 0xAC, 0xAD, 0xAE, 0xAF])
def test_batched_rep_compares_and_loads_equal_single_steps(op: int, rep: int, seed: int) -> None:
    """REP LODS/SCAS/CMPS read forward runs through the TLB (memchr for REPNE SCASB): the
    same registers, flags and ticks as one iteration per step, whether the compare ends the
    repetition inside a page, at a page end, after the count, or a slice ends it."""
    rng = random.Random(op * 4 + rep * 2 + seed)
    prefix = [0x66] if rng.random() < 0.3 else []
    prog = bytes([rep, *prefix, op, 0xF4])
    size = 1 if op % 2 == 0 else 4 if prefix else 2
    src, dst = rng.randrange(0x2000, 0x5000), rng.randrange(0x2000, 0x5000)
    count = rng.randrange(2, 3000)
    eax = rng.getrandbits(32)
    if seed == 0:
        # Long equal runs (REPE goes far, REPNE stops at once), a few bytes different.
        fill = rng.randrange(256)
        data = bytearray([fill]) * 0x6000
        for _ in range(rng.randrange(0, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        eax = fill * 0x01010101
    else:
        # Random bytes (REPE stops at once), one planted match for REPNE at element k.
        data = bytearray(rng.getrandbits(8) for _ in range(0x6000))
        k = rng.randrange(1, count)
        at = dst - 0x2000 + k * size
        if op in (0xAE, 0xAF):
            data[at:at + size] = eax.to_bytes(4, "little")[:size]
        else:
            data[at:at + size] = data[src - 0x2000 + k * size:src - 0x2000 + (k + 1) * size]
    kw = {"ecx": count, "esi": src, "edi": dst, "eax": eax,
          "flags": 0x2 | (F_DF if rng.random() < 0.2 else 0)}
    a, b = machine(prog, **kw), machine(prog, **kw)
    for m in (a, b):
        m.write(0x2000, bytes(data))
    for cut in sorted(rng.sample(range(1, 3000), 2)):
        if a.run(cut) != StopReason.TICKS:
            break
    run_to_halt(a)
    step_to_halt(b)
    assert state(a) == state(b)


def test_single_step_trap_between_rep_iterations() -> None:
    """With TF set, every iteration of REP STOSB is followed by a #DB trap."""
    m = machine(bytes([0xF3, 0xAA, 0xF4]), ecx=3, edi=0x3000, eax=0x41, flags=0x2 | F_TF)
    # #DB handler at 0000:0600: INC BX; IRET.
    m.write(0x0004, bytes([0x00, 0x06, 0x00, 0x00]))
    m.write(0x0600, bytes([0x43, 0xCF]))
    run_to_halt(m)
    r = m.get_regs()
    # Three iterations traced, then HLT (which is not trapped: the machine halts first).
    assert r.ebx == 3 and m.read(0x3000, 4) == b"AAA\0"


# ---- calls, returns, jumps -------------------------------------------------------------

def test_call_ret_near_real_mode() -> None:
    # 1000: call 1010 ; 1003: hlt ; 1010: ret
    m = machine(b"")
    m.write(CODE, bytes([0xE8, 0x0D, 0x00, 0xF4]))
    m.write(0x1010, bytes([0xC3]))
    real_mode(m)
    assert m.step() == StopReason.TICKS
    r = m.get_regs()
    assert (r.eip, r.esp) == (0x1010, STACK - 2) and u16(m, STACK - 2) == 0x1003
    assert run_to_halt(m) == 2
    r = m.get_regs()
    assert (r.eip, r.esp) == (0x1004, STACK)


def test_ret_imm_releases_parameters() -> None:
    # push 1; push 2; call 1010; hlt ... 1010: ret 4
    m = machine(bytes([0x6A, 0x01, 0x6A, 0x02, 0xE8, 0x09, 0x00, 0xF4]))
    m.write(0x1010, bytes([0xC2, 0x04, 0x00]))
    assert run_to_halt(m) == 5
    r = m.get_regs()
    assert (r.eip, r.esp) == (0x1008, STACK)


def test_call_retf_far_real_mode() -> None:
    # 1000: call far 0200:0010 ; 1005: hlt.  Target (linear 0x2010): retf
    m = machine(bytes([0x9A, 0x10, 0x00, 0x00, 0x02, 0xF4]))
    m.write(0x2010, bytes([0xCB]))
    assert m.step() == StopReason.TICKS
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip, r.esp) == (0x200, 0x2000, 0x10, STACK - 4)
    assert (u16(m, STACK - 2), u16(m, STACK - 4)) == (0x0000, 0x1005)
    assert run_to_halt(m) == 2
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip, r.esp) == (0, 0, 0x1006, STACK)


def test_call_far_indirect_and_jmp_far() -> None:
    # 1000: call far [3100] -> 0300:0000 ; 1004: hlt (not reached) ; 1006: hlt
    # 0300:0000 (linear 3000): jmp far 0000:1006
    m = machine(bytes([0xFF, 0x1E, 0x00, 0x31, 0xF4, 0x90, 0xF4]))
    m.write(0x3100, bytes([0x00, 0x00, 0x00, 0x03]))
    m.write(0x3000, bytes([0xEA, 0x06, 0x10, 0x00, 0x00]))
    assert run_to_halt(m) == 3
    r = m.get_regs()
    assert (r.cs.selector, r.eip, r.esp) == (0, 0x1007, STACK - 4)
    assert (u16(m, STACK - 2), u16(m, STACK - 4)) == (0x0000, 0x1004)


def test_near_jump_targets_wrap_to_16_bits() -> None:
    # At IP FFF0: jmp short +0x20 wraps to 0010 in a 16-bit code segment.
    m = machine(b"")
    m.write(0xFFF0, bytes([0xEB, 0x1E]))
    m.write(0x0010, bytes([0xF4]))
    real_mode(m, ip=0xFFF0)
    assert run_to_halt(m) == 2
    assert m.get_regs().eip == 0x11


def test_jcc_taken_and_not_taken() -> None:
    # 1000 stc ; 1001 jc 1004 ; 1003 hlt ; 1004 clc ; 1005 jnc 1003
    m = machine(bytes([0xF9, 0x72, 0x01, 0xF4, 0xF8, 0x73, 0xFC]))
    assert run_to_halt(m) == 5
    assert m.get_regs().eip == 0x1004


# ---- stack frames and multi-register pushes --------------------------------------------

def test_enter_nesting_level_2_and_leave() -> None:
    bp = 0x7000
    # enter 0x10, 2 ; leave ; hlt
    m = machine(bytes([0xC8, 0x10, 0x00, 0x02, 0xC9, 0xF4]), ebp=bp)
    m.write(bp - 2, bytes([0xCD, 0xAB]))
    assert m.step() == StopReason.TICKS
    r = m.get_regs()
    frame = STACK - 2
    assert r.ebp == frame
    assert r.esp == STACK - 6 - 0x10
    assert u16(m, STACK - 2) == bp          # the old BP
    assert u16(m, STACK - 4) == 0xABCD      # the enclosing frame pointer copied from [BP-2]
    assert u16(m, STACK - 6) == frame       # the new frame pointer
    assert run_to_halt(m) == 2
    r = m.get_regs()
    assert (r.ebp, r.esp) == (bp, STACK)


def test_enter_level_0_and_1() -> None:
    m = machine(bytes([0xC8, 0x08, 0x00, 0x00, 0xF4]), ebp=0x1234)
    run_to_halt(m)
    r = m.get_regs()
    assert (r.ebp, r.esp, u16(m, STACK - 2)) == (STACK - 2, STACK - 2 - 8, 0x1234)
    m = machine(bytes([0xC8, 0x08, 0x00, 0x01, 0xF4]), ebp=0x1234)
    run_to_halt(m)
    r = m.get_regs()
    assert (r.ebp, r.esp) == (STACK - 2, STACK - 4 - 8)
    assert (u16(m, STACK - 2), u16(m, STACK - 4)) == (0x1234, STACK - 2)


def test_pusha_popa() -> None:
    vals = {"eax": 0x1111, "ecx": 0x2222, "edx": 0x3333, "ebx": 0x4444, "ebp": 0x5555,
            "esi": 0x6666, "edi": 0x7777}
    m = machine(bytes([0x60, 0xF4]), **vals)
    run_to_halt(m)
    assert m.get_regs().esp == STACK - 16
    words = [u16(m, STACK - 2 * (i + 1)) for i in range(8)]
    assert words == [0x1111, 0x2222, 0x3333, 0x4444, STACK, 0x5555, 0x6666, 0x7777]
    # POPA restores everything but SP, which just moves past the eight words.
    m.write(STACK - 10, bytes([0x34, 0x12]))  # the saved SP slot is skipped
    m.write(CODE, bytes([0x61, 0xF4]))
    real_mode(m, sp=STACK - 16)
    run_to_halt(m)
    r = m.get_regs()
    assert r.esp == STACK
    assert {k: getattr(r, k) for k in vals} == vals


def test_push_sp_pushes_old_value_and_pop_sp_loads() -> None:
    m = machine(bytes([0x54, 0x5C, 0xF4]))  # push sp ; pop sp ; hlt
    assert m.step() == StopReason.TICKS
    assert u16(m, STACK - 2) == STACK
    run_to_halt(m)
    assert m.get_regs().esp == STACK


def test_pop_mem_uses_incremented_sp() -> None:
    # push 0xBEEF ; pop word [esp] (32-bit addressing: 67 8F 04 24) ; hlt
    m = machine(bytes([0x68, 0xEF, 0xBE, 0x67, 0x8F, 0x04, 0x24, 0xF4]))
    run_to_halt(m)
    # The word lands at the incremented SP, i.e. the original stack top.
    assert u16(m, STACK) == 0xBEEF and m.get_regs().esp == STACK


def test_pushf_popf_real_mode() -> None:
    # pushf ; pop ax ; push 0xFFFF ; popf ; hlt
    m = machine(bytes([0x9C, 0x58, 0x68, 0xFF, 0xFF, 0x9D, 0xF4]), flags=0x2 | F_CF)
    run_to_halt(m)
    r = m.get_regs()
    assert r.eax & 0xFFFF == 0x0003
    # Bits 3, 5 and 15 read as zero, bit 1 as one; every other low flag is writable.
    assert r.eflags == 0x7FD7


def test_push_pop_segment_registers() -> None:
    # push cs ; pop ds ; push es ; pop ss (inhibits interrupts for one instruction) ; hlt
    m = machine(bytes([0x0E, 0x1F, 0x06, 0x17, 0xF4]), cs=0x0000)
    r = m.get_regs()
    r.es = Segment(0x0050, 0x500, 0xFFFF, 0x93)
    m.set_regs(r)
    run_to_halt(m)
    r = m.get_regs()
    assert (r.ds.selector, r.ds.base) == (0, 0)
    assert (r.ss.selector, r.ss.base, r.esp) == (0x50, 0x500, STACK)


def test_push_pop_fs_gs_and_32_bit_segment_push() -> None:
    # push fs ; pop gs ; 66 push ds (4-byte slot, only its low word written) ; hlt
    m = machine(bytes([0x0F, 0xA0, 0x0F, 0xA9, 0x66, 0x1E, 0xF4]))
    r = m.get_regs()
    r.fs = Segment(0x1234, 0x12340, 0xFFFF, 0x93)
    r.ds = Segment(0x0042, 0x420, 0xFFFF, 0x93)
    m.set_regs(r)
    run_to_halt(m)
    r = m.get_regs()
    assert (r.gs.selector, r.gs.base) == (0x1234, 0x12340)
    assert r.esp == STACK - 4
    # The slot's upper word still holds what PUSH FS left there.
    assert m.read(STACK - 4, 4) == bytes([0x42, 0x00, 0x34, 0x12])


def test_jcc_rel16() -> None:
    # xor ax,ax (ZF=1) ; jz near +0x100 (0F 84) ; hlt ... target: hlt
    m = machine(bytes([0x31, 0xC0, 0x0F, 0x84, 0x00, 0x01, 0xF4]))
    m.write(CODE + 6 + 0x100, bytes([0xF4]))
    assert run_to_halt(m) == 3
    assert m.get_regs().eip == CODE + 6 + 0x101


# ---- interrupts ------------------------------------------------------------------------

def test_int_through_ivt_and_iret() -> None:
    # IVT[0x21] = 0050:0000 ; handler: mov ax,1234 ; iret.   main: int 21 ; hlt
    m = machine(bytes([0xCD, 0x21, 0xF4]), flags=0x2 | F_IF | F_CF)
    m.write(0x21 * 4, bytes([0x00, 0x00, 0x50, 0x00]))
    m.write(0x500, bytes([0xB8, 0x34, 0x12, 0xCF]))
    assert m.step() == StopReason.TICKS
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip, r.esp) == (0x50, 0x500, 0, STACK - 6)
    assert not r.eflags & (F_IF | F_TF)
    assert [u16(m, STACK - 2 * (i + 1)) for i in range(3)] == [0x2 | F_IF | F_CF, 0, 0x1002]
    assert run_to_halt(m) == 3
    r = m.get_regs()
    assert (r.cs.selector, r.eip, r.esp, r.eax) == (0, 0x1003, STACK, 0x1234)
    assert r.eflags == 0x2 | F_IF | F_CF


def test_int3_and_into() -> None:
    # into (OF clear: no trap) ; int3 -> handler at 0000:0600 (inc bx ; iret) ; hlt
    m = machine(bytes([0xCE, 0xCC, 0xF4]))
    m.write(3 * 4, bytes([0x00, 0x06, 0x00, 0x00]))
    m.write(0x600, bytes([0x43, 0xCF]))
    assert run_to_halt(m) == 5
    r = m.get_regs()
    assert (r.ebx, r.eip, r.esp) == (1, 0x1003, STACK)


def test_bound_raises_br() -> None:
    # bound ax,[3000] with bounds [0, 10] and AX = 11 -> #BR (vector 5) with IP at BOUND.
    m = machine(bytes([0x62, 0x06, 0x00, 0x30, 0xF4]), eax=11)
    m.write(0x3000, bytes([0, 0, 10, 0]))
    m.write(5 * 4, bytes([0x00, 0x06, 0x00, 0x00]))
    m.write(0x600, bytes([0xF4]))
    run_to_halt(m)
    r = m.get_regs()
    assert r.eip == 0x601 and u16(m, STACK - 6) == CODE


# ---- loops -----------------------------------------------------------------------------

def test_loop_counter_follows_address_size() -> None:
    # 67 E2 FD: loop to itself with ECX as the counter (32-bit address size).
    prog = bytes([0x67, 0xE2, 0xFD, 0xF4])
    m = machine(prog, ecx=0x10002)
    assert run_to_halt(m) == 0x10002 + 1
    r = m.get_regs()
    assert (r.ecx, r.eip) == (0, CODE + 4)
    # Without the prefix only CX counts: two iterations, the upper half is kept.
    m = machine(bytes([0xE2, 0xFE, 0xF4]), ecx=0x10002)
    assert run_to_halt(m) == 3
    assert m.get_regs().ecx == 0x10000


def test_loopz_loopnz_jcxz() -> None:
    # 1000 jcxz 1003 (CX = 0: taken) ; 1002 hlt ; 1003 hlt
    m = machine(bytes([0xE3, 0x01, 0xF4, 0xF4]), ecx=0)
    run_to_halt(m)
    assert m.get_regs().eip == 0x1004
    # loopz with ZF clear falls through after one decrement.
    m = machine(bytes([0xE1, 0xFE, 0xF4]), ecx=5)
    assert run_to_halt(m) == 2
    assert m.get_regs().ecx == 4
    # loopnz with ZF clear runs until CX reaches zero.
    m = machine(bytes([0xE0, 0xFE, 0xF4]), ecx=5)
    assert run_to_halt(m) == 6
    assert m.get_regs().ecx == 0


# ---- protected-mode returns ------------------------------------------------------------

GDT = 0x9000
FLAT_CODE0, FLAT_DATA0, FLAT_CODE3, FLAT_DATA3 = 0x08, 0x10, 0x18, 0x20


def protected_mode(code: bytes, esp: int = STACK) -> Machine:
    """Flat 32-bit protected mode at CPL 0 with ring-0 and ring-3 code/data descriptors."""
    m = Machine(MachineConfig(ram_size=1 << 20, devices=False))
    descs = [0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, 0x00CFFA000000FFFF, 0x00CFF2000000FFFF]
    m.write(GDT, b"".join(d.to_bytes(8, "little") for d in descs))
    m.write(CODE, code)
    r = Regs()
    r.cr0 = 0x60000011
    r.gdtr_base, r.gdtr_limit = GDT, 8 * len(descs) - 1
    r.cs = Segment(FLAT_CODE0, 0, 0xFFFFFFFF, 0xC09B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(FLAT_DATA0, 0, 0xFFFFFFFF, 0xC093))
    r.eip, r.esp, r.eflags = CODE, esp, 0x2
    m.set_regs(r)
    return m


def test_pm_iret_to_outer_privilege() -> None:
    # push 0x23 ; push 0x7000 ; pushfd ; push 0x1B ; push 0x2000 ; iretd.  2000: jmp $
    m = protected_mode(bytes([0x6A, 0x23, 0x68, 0x00, 0x70, 0x00, 0x00, 0x9C, 0x6A, 0x1B,
                              0x68, 0x00, 0x20, 0x00, 0x00, 0xCF]))
    m.write(0x2000, bytes([0xEB, 0xFE]))
    assert m.run(6) == StopReason.TICKS
    r = m.get_regs()
    assert (r.cpl, r.cs.selector, r.eip) == (3, FLAT_CODE3 | 3, 0x2000)
    assert (r.ss.selector, r.esp) == (FLAT_DATA3 | 3, 0x7000)
    assert r.cs.attr & 0x60 == 0x60 and r.ss.attr & 0x60 == 0x60
    # Data segments of DPL 0 are not usable at CPL 3: they are nulled.
    assert (r.ds.selector, r.es.selector, r.fs.selector, r.gs.selector) == (0, 0, 0, 0)


def test_pm_retf_imm_to_outer_privilege() -> None:
    # push 0x23 ; push 0x7000 ; push 1 ; push 2 ; push 0x1B ; push 0x2000 ; retf 8
    m = protected_mode(bytes([0x6A, 0x23, 0x68, 0x00, 0x70, 0x00, 0x00, 0x6A, 0x01, 0x6A, 0x02,
                              0x6A, 0x1B, 0x68, 0x00, 0x20, 0x00, 0x00, 0xCA, 0x08, 0x00]))
    m.write(0x2000, bytes([0xEB, 0xFE]))
    assert m.run(7) == StopReason.TICKS
    r = m.get_regs()
    assert (r.cpl, r.cs.selector, r.eip) == (3, FLAT_CODE3 | 3, 0x2000)
    # The parameters are released from both stacks.
    assert (r.ss.selector, r.esp) == (FLAT_DATA3 | 3, 0x7008)


def test_pm_iret_same_privilege_and_flags() -> None:
    # pushfd with IOPL 3 and IF set in the image, then iretd at CPL 0 takes both.
    # push 0x3202 ; push 0x08 ; push 0x2000 ; iretd
    m = protected_mode(bytes([0x68, 0x02, 0x32, 0x00, 0x00, 0x6A, 0x08, 0x68, 0x00, 0x20, 0x00,
                              0x00, 0xCF]))
    m.write(0x2000, bytes([0xF4]))
    assert run_to_halt(m) == 5
    r = m.get_regs()
    assert (r.cpl, r.cs.selector, r.eip, r.esp) == (0, FLAT_CODE0, 0x2001, STACK)
    assert r.eflags == 0x3202


def test_pm_iret_to_virtual_8086() -> None:
    # push gs fs ds es (0) ; push ss 0x50 ; push esp 0x100 ; push eflags (VM, IF) ;
    # push cs 0x200 ; push eip 0x10 ; iretd.   V86 code at 0200:0010 (linear 0x2010): jmp $
    code = bytes([0x6A, 0x00] * 4 + [0x6A, 0x50, 0x68, 0x00, 0x01, 0x00, 0x00,
                                     0x68, 0x02, 0x02, 0x02, 0x00, 0x68, 0x00, 0x02, 0x00, 0x00,
                                     0x6A, 0x10, 0xCF])
    m = protected_mode(code)
    m.write(0x2010, bytes([0xEB, 0xFE]))
    assert m.run(11) == StopReason.TICKS
    r = m.get_regs()
    assert r.eflags == 0x20202 and r.cpl == 3
    assert (r.cs.selector, r.cs.base, r.eip) == (0x200, 0x2000, 0x10)
    assert (r.ss.selector, r.ss.base, r.esp) == (0x50, 0x500, 0x100)
    assert (r.ds.base, r.es.base, r.fs.base, r.gs.base) == (0, 0, 0, 0)
