"""The hot path's shortcuts against the slow paths they replace: Jcc decided from the pending
lazy operation (per condition, after a second operation that takes its carry from the first),
blocks that go on at a direct CALL/JMP target (self-modifying code there, instruction
watches there), and accesses that end exactly at a page end or cross it."""

from __future__ import annotations

from functools import cache

import refmodel as ref
from aero.fuzz.difftest import AeroCPU, Scenario, initial_regs
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=400, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
VAL = st.one_of(st.sampled_from((0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
                                 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF)),
                st.integers(0, 0xFFFFFFFF))
FLAGS = st.integers(0, 0xFFF).map(lambda f: (f & (ref.ARITH | 0x400)) | 2)
ALU = {"add": 0x00, "or": 0x08, "adc": 0x10, "sbb": 0x18, "and": 0x20, "sub": 0x28,
       "xor": 0x30, "cmp": 0x38}
CODE = 0x2000


@cache
def cpu() -> AeroCPU:
    return AeroCPU()


def _cond(cc: int, f: int) -> bool:
    """SDM Vol. 2 Appendix B, condition codes (tttn)."""
    cf, zf, sf, of, pf = (bool(f & x) for x in (ref.CF, ref.ZF, ref.SF, ref.OF, ref.PF))
    base = (of, cf, zf, cf or zf, sf, pf, sf != of, zf or sf != of)[cc >> 1]
    return base != bool(cc & 1)


def _first(op: str, size: int) -> bytes:
    """op eAX/AX/AL, eBX/BX/BL."""
    return (b"\x66" if size == 2 else b"") + bytes([ALU[op] + (0 if size == 1 else 1), 0xD8])


def _second(op: str) -> bytes:
    """A 32-bit operation on ESI (with EDI) after the first: an ALU op, INC, DEC or none."""
    if op == "none":
        return b""
    if op == "inc":
        return b"\x46"
    if op == "dec":
        return b"\x4E"
    return bytes([ALU[op] + 1, 0xFE])  # op esi, edi


@seed(7101)
@SETTINGS
@given(st.sampled_from(sorted(ALU)), st.sampled_from((1, 2, 4)), VAL, VAL,
       st.sampled_from(sorted(ALU) + ["inc", "dec", "none"]), VAL, VAL,
       st.integers(0, 15), FLAGS, st.booleans())
def test_jcc_after_operations(op1: str, size: int, a: int, b: int, op2: str, si: int, di: int,
                              cc: int, flags: int, near: bool) -> None:
    """A Jcc right after one or two operations, all in one run (so the lazy state is what
    the branch reads), goes where the SDM's flags say; the second operation's carry-in (ADC,
    SBB) and INC/DEC's kept CF come from the first operation's lazy state."""
    r = initial_regs("pm32")
    r.update(eip=CODE, esp=0x8000, eax=a, ebx=b, esi=si, edi=di, ecx=0, eflags=flags)
    jcc = bytes([0x0F, 0x80 | cc]) + (2).to_bytes(4, "little") if near else bytes([0x70 | cc, 2])
    code = [_first(op1, size)] + ([_second(op2)] if op2 != "none" else []) + \
        [jcc, b"\xB1\x01", b"\x90"]  # Jcc +2; mov cl, 1; nop
    sc = Scenario("pm32", r, code, 0)
    c = cpu()
    c.load(sc, sc.image())
    m = c.machine
    n_ops = 2 if op2 != "none" else 1
    _r1, f, _ = ref.alu(op1, a, b, size, flags)
    s = si
    if op2 in ("inc", "dec"):
        s, f, _ = ref.incdec(op2, si, 4, f)
    elif op2 != "none":
        s, f, _ = ref.alu(op2, si, di, 4, f)
    taken = _cond(cc, f)
    m.run(m.ticks + n_ops + 1 + (0 if taken else 1))
    got = m.get_regs()
    end = CODE + sum(len(x) for x in code) - 1  # the NOP
    assert got.eip == end, (op1, size, op2, cc, taken, hex(got.eip), hex(end))
    assert got.ecx & 0xFF == (0 if taken else 1)
    if op2 not in ("none", "cmp"):
        assert got.esi == s & 0xFFFFFFFF


def _pm32(code: bytes, memory: list[tuple[int, bytes]] | None = None, **regs: int):
    r = initial_regs("pm32")
    r.update(eip=CODE, esp=0x8000, eax=0, ebx=0, ecx=0, edx=0, eflags=2)
    r.update(regs)
    sc = Scenario("pm32", r, [code], 0, list(memory or []))
    c = cpu()
    c.load(sc, sc.image())
    return c.machine


def _smc_program() -> tuple[bytes, int]:
    """call f; mov byte [f+1], 2; call f; mov ebx, eax; jmp $; (128 bytes apart) f: mov eax,
    imm32 = 1; ret. The first CALL's block goes on into f; the store rewrites f's immediate,
    64-byte chunks away from the store itself. Returns (code, offset of f)."""
    f = 0x100
    out = bytearray()
    out += b"\xE8" + (f - 5).to_bytes(4, "little", signed=True)            # call f
    out += b"\xC6\x05" + (CODE + f + 1).to_bytes(4, "little") + b"\x02"    # mov byte [f+1], 2
    here = len(out)
    out += b"\xE8" + (f - (here + 5)).to_bytes(4, "little", signed=True)   # call f
    out += b"\x89\xC3"                                                     # mov ebx, eax
    out += b"\xEB\xFE"                                                     # jmp $
    out += b"\x90" * (f - len(out))
    out += b"\xB8\x01\x00\x00\x00\xC3"                                     # f: mov eax, 1; ret
    return bytes(out), f


def test_write_to_a_call_target_decoded_into_the_caller_block() -> None:
    """Code reached through a CALL that the caller's block went on into is still tracked:
    rewriting it makes the next call run the new bytes."""
    code, _f = _smc_program()
    m = _pm32(code)
    m.run(m.ticks + 8)  # call, mov, ret, store, call, mov, ret, mov ebx
    assert m.get_regs().ebx == 2


def test_instruction_watch_on_a_call_target() -> None:
    """An instruction watch on the CALL's target stops the run there, although the block that
    holds the CALL also holds the target's instructions."""
    from aero.machine import WATCH_EXEC, StopReason

    code, f = _smc_program()
    m = _pm32(code)
    m.set_watch(0, CODE + f, 1, WATCH_EXEC)
    t0 = m.ticks
    stop = m.run(t0 + 100)
    assert stop == StopReason.WATCH
    regs = m.get_regs()
    assert regs.eip == CODE + f and m.ticks == t0 + 1 and regs.eax == 0


def test_dword_at_the_end_of_a_page_and_across_it() -> None:
    """A load that ends at the last byte of a page is served whole; one that crosses into the
    next page reads both pages (the TLB's single compare must send it to the slow path)."""
    page = 0x5000
    data = [(page + 0xFFC, bytes([1, 2, 3, 4])), (page + 0x1000, bytes([5, 6, 7, 8]))]
    for _warm in range(2):  # the second time both pages are in the TLB
        code = (b"\x8B\x05" + (page + 0xFFC).to_bytes(4, "little") +      # mov eax, [page+ffc]
                b"\x8B\x1D" + (page + 0xFFE).to_bytes(4, "little") +      # mov ebx, [page+ffe]
                b"\x8B\x0D" + (page + 0x1000).to_bytes(4, "little") +     # mov ecx, [page+1000]
                b"\x8B\x15" + (page + 0xFFE).to_bytes(4, "little"))       # mov edx, [page+ffe]
        r = initial_regs("pm32")
        r.update(eip=CODE, esp=0x8000, eflags=2)
        sc = Scenario("pm32", r, [code], 0, data)
        c = cpu()
        c.load(sc, sc.image())
        m = c.machine
        m.run(m.ticks + 4)
        g = m.get_regs()
        assert (g.eax, g.ebx, g.ecx, g.edx) == (0x04030201, 0x06050403, 0x08070605, 0x06050403)


PAIRS = ((0, 0), (1, 0), (0, 1), (5, 5), (0x7FFFFFFF, 1), (0x80000000, 1), (0xFFFFFFFF, 1),
         (0x80000000, 0x7FFFFFFF), (1, 0xFFFFFFFF), (0x7FFFFFFF, 0xFFFFFFFF))


def test_jcc_table_after_each_operation_and_carry() -> None:
    """Every condition after every 32-bit ALU operation, INC and DEC on boundary operands,
    with CF 0 and 1 before (ADC/SBB carry-in, INC/DEC's kept CF): one program, one run, each
    not-taken branch marks a byte. The second operation (on ESI) takes its carry from the
    first (a SUB or ADD on EAX) through the lazy state."""
    ops = sorted(ALU) + ["inc", "dec"]
    mark = 0x40000
    code = bytearray()
    want = []
    for op in ops:
        for a, b in PAIRS:
            for first in ("sub", "add"):
                for cc in range(16):
                    i = len(want)
                    # eax, ebx = b, a: the first op's CF decides the second op's carry.
                    code += b"\xB8" + b.to_bytes(4, "little") + b"\xBB" + a.to_bytes(4, "little")
                    code += b"\xBE" + a.to_bytes(4, "little") + b"\xBF" + b.to_bytes(4, "little")
                    code += bytes([ALU[first] + 1, 0xD8])           # first eax, ebx
                    code += _second(op)                              # op esi(, edi)
                    code += bytes([0x70 | cc, 7])                    # jcc over the mark
                    code += b"\xC6\x05" + (mark + i).to_bytes(4, "little") + b"\x01"
                    _r, f, _ = ref.alu(first, b, a, 4, 2)
                    if op in ("inc", "dec"):
                        _s, f, _ = ref.incdec(op, a, 4, f)
                    else:
                        _s, f, _ = ref.alu(op, a, b, 4, f)
                    want.append(0 if _cond(cc, f) else 1)
    code += b"\xF4"  # hlt
    m = _pm32(bytes(code), [(mark, bytes(len(want)))])
    m.run(m.ticks + 10 * len(want) + 10)
    got = list(m.read(mark, len(want)))
    bad = [(i, want[i], got[i]) for i in range(len(want)) if got[i] != want[i]]
    assert not bad, bad[:10]



def _limit_program(branch: bytes) -> bytes:
    """inc eax; dec ebx; add ecx, edx; <branch to CODE+0x80>; (filler): a block of register
    instructions only, ending in a branch past a CS limit of CODE+0x3F."""
    return b"\x40\x4B\x01\xD1" + branch + b"\x90" * 8


@seed(7102)
@settings(max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(("jnz", "jz", "jmp")), st.integers(0, 3), st.booleans())
def test_branch_past_the_cs_limit_ends_a_register_only_block_exactly(kind: str, warm: int,
                                                                   single: bool) -> None:
    """A taken Jcc or a JMP past the CS limit at the end of a block of register instructions
    raises #GP(0) at the branch: the instructions before it have run and count one tick each,
    EIP is the branch's, and the fault takes the branch's tick. The block first runs `warm`
    times with the full limit (looping back through a JMP at CODE+0x80), so the block that
    faults is the decoded one; JZ is taken only when ECX + EDX is 0, so it runs once. The
    faulting run is one slice, or slices of one tick (the path for blocks that do not fit)."""
    rel = 0x80 - (4 + (5 if kind == "jmp" else 6))
    opcode = {"jnz": b"\x0F\x85", "jz": b"\x0F\x84", "jmp": b"\xE9"}[kind]
    code = _limit_program(opcode + rel.to_bytes(4, "little"))
    if kind == "jz":
        warm = 0
    back = CODE + 0x80
    jmp_back = b"\xE9" + (CODE - (back + 5)).to_bytes(4, "little", signed=True)
    ecx = 0xFFFFFFFD if kind == "jz" else 7
    m = _pm32(code, [(back, jmp_back)], ebx=10, ecx=ecx, edx=3)
    t0 = m.ticks
    m.run(t0 + 5 * warm)  # four instructions and the JMP back, `warm` times
    assert m.get_regs().eip == CODE and m.ticks == t0 + 5 * warm
    r = m.get_regs()
    r.cs.limit = CODE + 0x3F
    m.set_regs(r)
    m.set_stop_on_exception(True)
    t1 = m.ticks
    if single:
        for _ in range(4):
            m.run(m.ticks + 1)
    else:
        m.run(t1 + 100)
    g = m.get_regs()
    assert (g.eax, g.ebx, g.ecx) == (warm + 1, 10 - warm - 1, (ecx + 3 * (warm + 1)) & 0xFFFFFFFF)
    # Stopped at the branch, not retired: three ticks for the three instructions.
    assert m.last_exception() == (13, 0)
    assert g.eip == CODE + 4 and m.ticks == t1 + 3


def _fused_program() -> bytes:
    """A loop whose blocks end in each fused pair (CMP Ev,Gv / CMP Gv,Ev / CMP Ev,I / TEST /
    SUB Ev,I / INC / DEC followed by a Jcc), with conditions taken and not taken in turn."""
    code = bytearray()
    code += b"\x40"                      # top: inc eax
    code += b"\x39\xD8\x72\x02"          # cmp eax, ebx; jb +2
    code += b"\x31\xC0"                  # xor eax, eax
    code += b"\x85\xD0\x74\x01"          # test eax, edx; jz +1
    code += b"\x42"                      # inc edx
    code += b"\x3B\xF0\x7F\x01"          # cmp esi, eax; jg +1
    code += b"\x46"                      # inc esi
    code += b"\x83\xE9\x03\x79\x05"      # sub ecx, 3; jns +5
    code += b"\xB9\x40\x00\x00\x00"      # mov ecx, 64
    code += b"\x83\xFE\x09\x7C\x02"      # cmp esi, 9; jl +2
    code += b"\x31\xF6"                  # xor esi, esi
    code += b"\x45\x75\x01"              # inc ebp; jnz +1
    code += b"\x90"                      # nop
    code += b"\x4F"                      # dec edi
    rel = -(len(code) + 6)
    code += b"\x0F\x85" + rel.to_bytes(4, "little", signed=True)  # jnz top
    code += b"\xEB\xFE"                  # jmp $
    return bytes(code)


@seed(7103)
@settings(max_examples=30, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(1, 9), min_size=1, max_size=40), st.integers(0, 0xFFFFFFFF))
def test_fused_pairs_match_one_instruction_at_a_time(slices: list[int], ebp: int) -> None:
    """Blocks ending in a fused compare-and-branch give the same registers, flags and clock
    run in whole slices as one tick at a time (where every pair runs as two instructions),
    at every slice boundary."""
    code = _fused_program()
    regs = dict(eax=0, ebx=5, ecx=20, edx=0xF0, esi=0, edi=40, ebp=ebp)
    m = _pm32(code, **regs)  # the one cached machine, loaded again below
    t0 = m.ticks
    marks = [0]
    for n in slices * 4:
        marks.append(marks[-1] + n)
    states = []
    for t in marks[1:]:
        m.run(t0 + t)
        g = m.get_regs()
        states.append((m.ticks - t0, g.gpr(), g.eip, g.eflags))
    m = _pm32(code, **regs)
    t0 = m.ticks
    for i, t in enumerate(marks[1:]):
        while m.ticks < t0 + t:
            m.run(m.ticks + 1)
        g = m.get_regs()
        assert (m.ticks - t0, g.gpr(), g.eip, g.eflags) == states[i], i
