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


# ---- the deferred-EIP prefix: leading forms that run one into the next, EIP stored once,
# flags left out where the next instruction overwrites them (aero_block.npre) ----

DATA = 0x40000
DST = (0, 1, 2, 3, 6)  # EAX, ECX, EDX, EBX, ESI: EDI counts the loop, EBP points at DATA
SRC = (0, 1, 2, 3, 5, 6, 7)


def _modrm(mod: int, reg: int, rm: int) -> int:
    return (mod << 6) | (reg << 3) | rm


@st.composite
def _prefix_insn(draw) -> bytes:
    """One instruction of the forms a prefix may hold (register and memory forms, 32-bit, and
    a CALL or JMP that the block goes on after)."""
    kind = draw(st.sampled_from(("alu_rr", "alu_rr_rev", "alu_ri8", "alu_ri32", "alu_eax",
                                 "incdec", "test", "mov_rr", "mov_ri", "lea", "load", "store",
                                 "load_idx", "alu_load", "alu_store", "alu_mem_imm", "xchg",
                                 "push_pop", "push_imm_pop", "jmp_fwd", "call_pop")))
    op = draw(st.sampled_from(sorted(ALU.values())))
    d, s = draw(st.sampled_from(DST)), draw(st.sampled_from(SRC))
    disp = draw(st.integers(0, 15)) * 4
    imm = draw(VAL).to_bytes(4, "little")
    if kind == "alu_rr":
        return bytes([op + 1, _modrm(3, s, d)])
    if kind == "alu_rr_rev":
        return bytes([op + 3, _modrm(3, d, s)])
    if kind == "alu_ri8":
        return bytes([0x83, _modrm(3, op >> 3, d), draw(st.integers(0, 255))])
    if kind == "alu_ri32":
        return bytes([0x81, _modrm(3, op >> 3, d)]) + imm
    if kind == "alu_eax":
        return bytes([op + 5]) + imm
    if kind == "incdec":
        return bytes([draw(st.sampled_from((0x40, 0x48))) + d])
    if kind == "test":
        return bytes([0x85, _modrm(3, s, d)])
    if kind == "mov_rr":
        return draw(st.sampled_from((bytes([0x89, _modrm(3, s, d)]),
                                     bytes([0x8B, _modrm(3, d, s)]))))
    if kind == "mov_ri":
        return bytes([0xB8 + d]) + imm
    if kind == "lea":
        return bytes([0x8D, _modrm(1, d, s if s != 4 else 5), disp])
    if kind == "load":
        return bytes([0x8B, _modrm(1, d, 5), disp])                       # mov d, [ebp+disp]
    if kind == "store":
        return bytes([0x89, _modrm(1, s, 5), disp])                       # mov [ebp+disp], s
    if kind == "load_idx":
        return bytes([0x8B, _modrm(1, d, 4), 0x3D, disp])                 # mov d, [ebp+edi+disp]
    if kind == "alu_load":
        return bytes([op + 3, _modrm(1, d, 5), disp])                     # op d, [ebp+disp]
    if kind == "alu_store":
        return bytes([op + 1, _modrm(1, s, 5), disp])                     # op [ebp+disp], s
    if kind == "alu_mem_imm":
        return bytes([0x83, _modrm(1, op >> 3, 5), disp, draw(st.integers(0, 255))])
    if kind == "xchg":
        return bytes([0x87, _modrm(1, d, 5), disp])
    if kind == "push_pop":
        return bytes([0x50 + s, 0x58 + d])
    if kind == "jmp_fwd":  # the block goes on at the target, past bytes that would fault
        skip = draw(st.integers(0, 3))
        return b"\xE9" + skip.to_bytes(4, "little") + b"\x0F\x0B\xCC"[:skip]
    if kind == "call_pop":  # call the next instruction, pop its return address
        return b"\xE8" + bytes(4) + bytes([0x58 + d])
    return bytes([0x6A, draw(st.integers(0, 255)), 0x58 + d])            # push imm8; pop d


LOOP_ENDS = {
    "dec": b"\x4F",                # dec edi (a fused DEC: CF is read)
    "sub": b"\x83\xEF\x01",        # sub edi, 1 (a fused SUB: no flag is read)
    "test": b"\x8D\x7F\xFF\x85\xFF",  # lea edi, [edi-1]; test edi, edi
    "store": b"\x89\x7D\x40\x4F",  # mov [ebp+0x40], edi; dec edi
    "adc": b"\x83\xD0\x00\x4F",    # adc eax, 0; dec edi
}


def _prefix_program(body: list[bytes], end: str) -> bytes:
    """top: body; <end>; jnz top; hlt."""
    code = b"".join(body) + LOOP_ENDS[end]
    rel = -(len(code) + 6)
    return code + b"\x0F\x85" + rel.to_bytes(4, "little", signed=True) + b"\xF4"


def _state(m, t0: int) -> tuple:
    g = m.get_regs()
    return (m.ticks - t0, g.gpr(), g.eip, g.eflags, m.read(DATA, 0x80), m.read(0x7F00, 0x100))


@seed(7104)
@settings(max_examples=150, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_prefix_insn(), min_size=1, max_size=24), st.sampled_from(sorted(LOOP_ENDS)),
       st.integers(1, 12), FLAGS, st.lists(VAL, min_size=5, max_size=5),
       st.binary(min_size=0x80, max_size=0x80),
       st.lists(st.integers(1, 60), min_size=1, max_size=30))
def test_prefix_matches_one_instruction_at_a_time(body: list[bytes], end: str, iters: int,
                                                  flags: int, vals: list[int], data: bytes,
                                                  slices: list[int]) -> None:
    """A loop whose block starts with register and memory forms (the prefix, some of them
    with their flags left out) gives the same registers, flags, EIP, clock and memory, in
    slices of any size and in one run to its HLT, as one tick at a time (where every entry
    runs the form that stores EIP and all its flags)."""
    code = _prefix_program(body, end)
    regs = dict(zip(("eax", "ecx", "edx", "ebx", "esi"), vals, strict=True), edi=iters, ebp=DATA,
                eflags=flags)
    mem = [(DATA, data)]

    def fresh():
        m = _pm32(code, mem, **regs)
        m.set_stop_on_exception(True)
        return m, m.ticks

    m, t0 = fresh()
    marks = [0]
    for n in slices:
        marks.append(marks[-1] + n)
    sliced = []
    for t in marks[1:]:
        m.run(t0 + t)
        sliced.append(_state(m, t0))
    m.run(t0 + 100_000)
    whole_sliced = _state(m, t0)
    m, t0 = fresh()
    m.run(t0 + 100_000)
    assert m.last_exception() is None
    whole = _state(m, t0)
    m, t0 = fresh()
    for i, t in enumerate(marks[1:]):
        while m.ticks < t0 + t and m.run(m.ticks + 1).name == "TICKS":
            pass
        assert _state(m, t0) == sliced[i], (i, t)
    while m.run(m.ticks + 1).name == "TICKS":
        pass
    assert _state(m, t0) == whole == whole_sliced


def test_fault_in_a_prefix_memory_form() -> None:
    """A memory form of the prefix that faults on the fourth pass of a decoded, warm block
    raises #SS(0) at its own EIP, with the instructions before it retired (one tick each)
    and EFLAGS those of the ADD right before it (a form followed by one that may fault keeps
    its flags)."""
    loop = (b"\x46"                      # top: inc esi
            b"\x01\xD8"                  # add eax, ebx
            b"\x01\x4C\xFD\x00"          # add [ebp+edi*8], ecx
            b"\x47"                      # inc edi
            b"\x83\xFF\x05"              # cmp edi, 5
            b"\x75\xF3"                  # jnz top
            b"\xF4")                     # hlt
    a, b = 0x7FFFFFF0, 0x0FFFFFFF
    m = _pm32(loop, [(DATA, bytes(64))], eax=a, ebx=b, ecx=1, esi=0, edi=0, ebp=DATA)
    r = m.get_regs()
    r.ss.limit = DATA + 8 * 3 - 1  # the fourth pass (EDI = 3) writes past the limit (EBP: SS)
    m.set_regs(r)
    m.set_stop_on_exception(True)
    t0 = m.ticks
    m.run(t0 + 1000)
    g = m.get_regs()
    assert m.last_exception() == (12, 0)
    assert g.eip == CODE + 3 and m.ticks - t0 == 3 * 6 + 2
    assert (g.esi, g.edi) == (4, 3)
    eax = a
    for _ in range(4):
        before = eax
        eax = (eax + b) & 0xFFFFFFFF
    assert g.eax == eax
    _r, f, _ = ref.alu("add", before, b, 4, 2)
    assert g.eflags & ref.ARITH == f & ref.ARITH
    added = (1).to_bytes(4, "little") + bytes(4)
    assert m.read(DATA, 32) == added * 3 + bytes(8)


def test_store_in_a_prefix_rewrites_the_same_block() -> None:
    """A store of the prefix into a later instruction of its own block ends the block after
    the store: the rewritten instruction runs as its new bytes, in one run as one tick at a
    time."""
    code = (b"\x89\x4D\x07"              # mov [ebp+7], ecx  (the imm32 of the MOV below)
            b"\x40"                      # inc eax
            b"\x01\xC3"                  # add ebx, eax
            b"\xBA\x11\x11\x11\x11"      # mov edx, 0x11111111
            b"\xF4")                     # hlt
    for single in (False, True):
        m = _pm32(code, ecx=0x12345678, ebp=CODE)
        t0 = m.ticks
        if single:
            while m.run(m.ticks + 1).name == "TICKS" and m.ticks - t0 < 10:
                pass
        else:
            m.run(t0 + 1000)
        g = m.get_regs()
        assert (g.edx, g.eax, g.ebx) == (0x12345678, 1, 1), single
        assert g.eip == CODE + len(code) and m.ticks - t0 == 5, single


def test_watch_on_a_prefix_memory_form() -> None:
    """A write watch hit by a store in the middle of a prefix stops the run right after the
    store, with the watch reporting the store's EIP and the rest of the block not run."""
    from aero.machine import WATCH_MAX, WATCH_WRITE, StopReason

    code = (b"\x40"                      # inc eax
            b"\x89\x5D\x10"              # mov [ebp+0x10], ebx
            b"\x41"                      # inc ecx
            b"\x42"                      # inc edx
            b"\xEB\xFE")                 # jmp $
    m = _pm32(code, [(DATA, bytes(64))], ebx=0xABCD, ebp=DATA)
    for slot in range(WATCH_MAX):  # the machine is shared: no watch of another test
        m.set_watch(slot, 0, 0, 0)
    m.take_watch_hit()
    m.set_watch(0, DATA + 0x10, 4, WATCH_WRITE)
    t0 = m.ticks
    stop = m.run(t0 + 1000)
    hit = m.take_watch_hit()
    m.set_watch(0, 0, 0, 0)
    g = m.get_regs()
    assert stop == StopReason.WATCH and hit is not None and hit.eip == CODE + 1
    assert (g.eax, g.ecx, g.edx, g.eip, m.ticks - t0) == (1, 0, 0, CODE + 4, 2)
    assert m.read(DATA + 0x10, 4) == (0xABCD).to_bytes(4, "little")


def test_rewritten_successor_is_not_reached_through_a_stale_link() -> None:
    """A block chained to a successor on another page (the run loop's block links) reaches
    the successor's new code once a store has rewritten it: the store invalidates only the
    successor's page, so the predecessor's block survives with its link."""
    y = 0x1000  # page Y, at CODE + y
    back = CODE + y + 18
    x_page = (b"\x4F"                                          # top: dec edi
              b"\x74\x05"                                      # jz done
              + b"\xE9" + (y - 8).to_bytes(4, "little")        # jmp Y
              + b"\xF4")                                       # done: hlt
    y_page = (b"\xB8\x01\x00\x00\x00"                          # Y: mov eax, 1
              b"\x01\xC6"                                      # add esi, eax
              b"\x83\xFF\x03"                                  # cmp edi, 3
              b"\x75\x06"                                      # jne back
              + b"\x89\x1D" + (CODE + y + 1).to_bytes(4, "little")  # mov [Y+1], ebx
              + b"\xE9" + (CODE - (back + 5)).to_bytes(4, "little", signed=True))  # back: jmp top
    code = x_page + b"\x90" * (y - len(x_page)) + y_page
    m = _pm32(code, edi=6, esi=0, ebx=100)
    t0 = m.ticks
    m.run(t0 + 1000)
    g = m.get_regs()
    assert g.eip == CODE + 9 and (g.edi, g.esi) == (0, 1 + 1 + 1 + 100 + 100)
