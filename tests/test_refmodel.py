"""aero's results and flags against a reference model written from the SDM pseudo-code
(tests/refmodel.py): ALU, shifts and rotates (counts 0, 1, the operand size and above),
SHLD/SHRD (count 0, 1, size, above size), BCD adjustments and single string iterations;
and the restartability property: after a fault, the state equals the state before the
instruction except for the documented exception frame."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import refmodel as ref
from aero.fuzz.difftest import AeroCPU, Scenario, initial_regs
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from aero.machine import Machine, MachineConfig, Regs, Segment, StopReason

SETTINGS = settings(max_examples=300, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
VAL = st.one_of(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
                                 0x80000000, 0xFFFFFFFF, 0x10, 0x0F, 0x99, 0x9A)),
                st.integers(0, 0xFFFFFFFF))
FLAGS = st.integers(0, 0xFFF).map(lambda f: (f & (ref.ARITH | 0x400)) | 2)
SIZE = st.sampled_from((1, 2, 4))
COUNT = st.one_of(st.sampled_from((0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 0xFF)),
                  st.integers(0, 0xFF))


@cache
def cpu() -> AeroCPU:
    return AeroCPU()


def run(code: bytes, memory: list[tuple[int, bytes]] | None = None, **regs: int):
    """One instruction in flat 32-bit protected mode on aero: (registers, exception, RAM)."""
    r = initial_regs("pm32")
    r.update(eip=0x2000, esp=0x8000)
    r.update(regs)
    sc = Scenario("pm32", r, [code], 0, list(memory or []))
    c = cpu()
    c.load(sc, sc.image())
    res = c.step()
    return res.regs, res.exception, res.memory


def _prefix(size: int) -> bytes:
    return b"\x66" if size == 2 else b""


def _check(regs: dict, reg: str, want: int | None, size: int, flags: int, defined: int
           ) -> None:
    m = (1 << (8 * size)) - 1
    if want is not None:
        assert regs[reg] & m == want & m, (hex(regs[reg] & m), hex(want & m))
    assert (regs["eflags"] ^ flags) & defined & ref.ARITH == 0, \
        (hex(regs["eflags"] & ref.ARITH), hex(flags), hex(defined))


ALU = {"add": 0x00, "or": 0x08, "adc": 0x10, "sbb": 0x18, "and": 0x20, "sub": 0x28,
       "xor": 0x30, "cmp": 0x38}


@seed(5001)
@SETTINGS
@given(st.sampled_from(sorted(ALU)), VAL, VAL, SIZE, FLAGS)
def test_alu_against_the_model(op: str, a: int, b: int, size: int, flags: int) -> None:
    code = _prefix(size) + bytes([ALU[op] + (0 if size == 1 else 1), 0xD8])  # op eAX/AL, eBX/BL
    regs, exc, _ = run(code, eax=a, ebx=b, eflags=flags)
    assert exc is None
    r, f, defined = ref.alu(op, a, b, size, flags)
    _check(regs, "eax", r, size, f, defined)


@seed(5002)
@SETTINGS
@given(st.sampled_from(("inc", "dec", "neg")), VAL, SIZE, FLAGS)
def test_inc_dec_neg_against_the_model(op: str, a: int, size: int, flags: int) -> None:
    modrm = {"inc": 0xC0, "dec": 0xC8, "neg": 0xD8}[op]
    opc = (0xF6 if op == "neg" else 0xFE) + (0 if size == 1 else 1)
    regs, exc, _ = run(_prefix(size) + bytes([opc, modrm]), eax=a, eflags=flags)
    assert exc is None
    r, f, defined = ref.neg(a, size) if op == "neg" else ref.incdec(op, a, size, flags)
    _check(regs, "eax", r, size, f, defined)


def _cond(cc: int, f: int) -> bool:
    """SDM Vol. 2 Appendix B, condition codes (tttn)."""
    cf, zf, sf, of, pf = (bool(f & x) for x in (ref.CF, ref.ZF, ref.SF, ref.OF, ref.PF))
    base = (of, cf, zf, cf or zf, sf, pf, sf != of, zf or sf != of)[cc >> 1]
    return base != bool(cc & 1)


@seed(5008)
@SETTINGS
@given(st.sampled_from(("cmp", "sub", "add", "and", "sbb")), VAL,
       st.one_of(st.just(None), VAL), SIZE, st.integers(0, 15), FLAGS)
def test_conditions_after_an_operation(op: str, a: int, b: int | None, size: int, cc: int,
                                       flags: int) -> None:
    """SETcc right after an arithmetic operation (equal operands included) reads the flags
    that operation defines."""
    b = a if b is None else b
    r = initial_regs("pm32")
    r.update(eip=0x2000, esp=0x8000, eax=a, ebx=b, eflags=flags)
    code = [_prefix(size) + bytes([ALU[op] + (0 if size == 1 else 1), 0xD8]),
            bytes([0x0F, 0x90 | cc, 0xC1])]  # op eAX,eBX; SETcc CL
    sc = Scenario("pm32", r, code, 0)
    c = cpu()
    c.load(sc, sc.image())
    m = c.machine
    # Both in one run: reading the registers between them would settle the lazy flags, and
    # the condition is then not evaluated from the operation's operands.
    m.run(m.ticks + 2)
    got = m.get_regs()
    assert got.eip == 0x2000 + sum(len(x) for x in code)
    _r, f, _defined = ref.alu(op, a, b, size, flags)
    assert got.ecx & 0xFF == int(_cond(cc, f)), (op, hex(a), hex(b), cc)


SHIFTS = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")


@seed(5003)
@settings(max_examples=600, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SHIFTS), VAL, COUNT, SIZE, FLAGS)
def test_shifts_and_rotates_against_the_model(op: str, a: int, count: int, size: int,
                                              flags: int) -> None:
    reg = SHIFTS.index(op)
    code = _prefix(size) + bytes([0xD2 if size == 1 else 0xD3, 0xC0 | reg << 3])  # eAX, CL
    regs, exc, _ = run(code, eax=a, ecx=count, eflags=flags)
    assert exc is None
    r, f, defined = ref.shift("shl" if op == "sal" else op, a, count, size, flags)
    _check(regs, "eax", r, size, f, defined)


@seed(5004)
@SETTINGS
@given(st.booleans(), VAL, VAL, COUNT, st.sampled_from((2, 4)), FLAGS)
def test_shld_shrd_against_the_model(left: bool, d: int, s: int, count: int, size: int,
                                     flags: int) -> None:
    code = _prefix(size) + bytes([0x0F, 0xA5 if left else 0xAD, 0xD8])  # eAX, eBX, CL
    regs, exc, _ = run(code, eax=d, ebx=s, ecx=count, eflags=flags)
    assert exc is None
    r, f, defined = ref.shxd(left, d, s, count, size, flags)
    _check(regs, "eax", r, size, f, defined)


# AL values at the decision boundaries of the BCD adjustments (low nibble 9/A, 99h/9Ah,
# 9Fh/A0h, the 6 borrow), with any AH.
AL_EDGES = (0x00, 0x05, 0x06, 0x09, 0x0A, 0x0F, 0x10, 0x99, 0x9A, 0x9F, 0xA0, 0xF9, 0xFA,
            0xFF, 0x60, 0x66)
AX_BCD = st.one_of(st.integers(0, 0xFFFF), st.tuples(st.integers(0, 0xFF), st.sampled_from(
    AL_EDGES)).map(lambda t: t[0] << 8 | t[1]))


@seed(5005)
@SETTINGS
@given(st.sampled_from(("daa", "das", "aaa", "aas", "aam", "aad")), AX_BCD,
       FLAGS, st.one_of(st.just(10), st.integers(1, 0xFF)))
def test_bcd_against_the_model(op: str, ax: int, flags: int, base: int) -> None:
    code = {"daa": b"\x27", "das": b"\x2f", "aaa": b"\x37", "aas": b"\x3f",
            "aam": bytes([0xD4, base]), "aad": bytes([0xD5, base])}[op]
    regs, exc, _ = run(code, eax=ax, eflags=flags)
    assert exc is None
    if op in ("daa", "das"):
        r, f, defined = (ref.daa if op == "daa" else ref.das)(ax & 0xFF, flags)
        _check(regs, "eax", r, 1, f, defined)
        assert regs["eax"] >> 8 & 0xFF == ax >> 8  # AH untouched
    elif op in ("aaa", "aas"):
        r, f, defined = ref.aaa_aas(op == "aas", ax, flags)
        _check(regs, "eax", r, 2, f, defined)
    elif op == "aam":
        r, f, defined = ref.aam(ax & 0xFF, base)
        _check(regs, "eax", r, 2, f, defined)
    else:
        r, f, defined = ref.aad(ax, base)
        _check(regs, "eax", r, 2, f, defined)


def test_aam_zero_is_a_divide_error() -> None:
    regs, exc, _ = run(b"\xd4\x00", eax=0x1234)
    assert exc == 0 and regs["eax"] == 0x1234 and regs["eip"] == 0x2000


STRINGS = {"movs": 0xA4, "cmps": 0xA6, "stos": 0xAA, "lods": 0xAC, "scas": 0xAE}


@seed(5006)
@SETTINGS
@given(st.sampled_from(sorted(STRINGS)), SIZE, st.booleans(), VAL, VAL, VAL, FLAGS)
def test_string_iteration_against_the_model(op: str, size: int, down: bool, a: int, x: int,
                                            y: int, flags: int) -> None:
    si, di = 0x30000, 0x40000
    m = (1 << (8 * size)) - 1
    mem = [(si, (x & m).to_bytes(size, "little")), (di, (y & m).to_bytes(size, "little"))]
    flags = (flags & ~0x400) | (0x400 if down else 0)
    code = _prefix(size) + bytes([STRINGS[op] + (0 if size == 1 else 1)])
    regs, exc, ram = run(code, mem, eax=a, esi=si, edi=di, eflags=flags)
    assert exc is None
    step = -size if down else size
    moves_si = op in ("movs", "cmps", "lods")
    moves_di = op in ("movs", "cmps", "stos", "scas")
    assert regs["esi"] == si + (step if moves_si else 0)
    assert regs["edi"] == di + (step if moves_di else 0)
    got_di = int.from_bytes(ram[di:di + size].tobytes(), "little")
    if op == "movs":
        assert got_di == x & m
    elif op == "stos":
        assert got_di == a & m
    else:
        assert got_di == y & m
    if op == "lods":
        _check(regs, "eax", x, size, flags & ref.ARITH, ref.ARITH)
    if op in ("cmps", "scas"):
        first, second = (x, y) if op == "cmps" else (a, y)
        _r, f, defined = ref.alu("cmp", first, second, size, flags)
        _check(regs, "eax", a, size, f, defined)
    if op not in ("cmps", "scas", "lods"):
        assert regs["eflags"] & ref.ARITH == flags & ref.ARITH


# ---- restartability ---------------------------------------------------------------------------

HANDLER = 0x8000  # IVT entry v -> 0000:8000+v, where a HLT waits
CODE_SEG, CODE_IP = 0x1000, 0x0100


@cache
def real_machine() -> Machine:
    return Machine(MachineConfig(ram_size=2 << 20, devices=False))


def _real_regs(r: dict[str, int], ip: int = CODE_IP) -> Regs:
    regs = Regs()
    for k in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"):
        setattr(regs, k, r[k])
    for s in ("es", "ss", "ds", "fs", "gs"):
        setattr(regs, s, Segment(r[s], r[s] << 4, 0xFFFF, 0x93))
    regs.cs = Segment(CODE_SEG, CODE_SEG << 4, 0xFFFF, 0x9B)
    regs.eip = ip
    regs.eflags = r["eflags"]
    regs.idtr_base, regs.idtr_limit = 0, 0x3FF
    regs.cr0 = 0x60000010
    return regs


# Faulting forms: (bytes, register overrides that make it fault, vector).
FAULTS = (
    ("ad", {"esi": 0xFFFF}, 13),                  # LODSW at DS:FFFF
    ("f3ad", {"esi": 0xFFFF, "ecx": 5}, 13),      # REP LODSW
    ("a5", {"edi": 0xFFFF}, 13),                  # MOVSW to ES:FFFF
    ("f3a5", {"esi": 0xFFFF, "ecx": 3}, 13),      # REP MOVSW from DS:FFFF
    ("a7", {"edi": 0xFFFF}, 13),                  # CMPSW
    ("ab", {"edi": 0xFFFF}, 13),                  # STOSW
    ("af", {"edi": 0xFFFF}, 13),                  # SCASW
    ("0107", {"ebx": 0xFFFF}, 13),                # ADD [BX],AX
    ("f00107", {"ebx": 0xFFFF}, 13),              # LOCK ADD [BX],AX
    ("ff4600", {"ebp": 0xFFFF}, 12),              # INC word [BP]
    ("58", {"esp": 0xFFFF}, 12),                  # POP AX at SP = FFFF
    ("c3", {"esp": 0xFFFF}, 12),                  # RET
    ("f7f3", {"ebx": 0}, 0),                      # DIV BX by zero
    ("0fa50f", {"ebx": 0xFFFF, "ecx": 4}, 13),    # SHLD [BX],CX,CL
    ("0fb10f", {"ebx": 0xFFFF}, 13),              # CMPXCHG [BX],CX
    ("6207", {"ebx": 0xFFFE}, 13),                # BOUND AX,[BX] beyond FFFF
    ("c40f", {"ebx": 0xFFFE}, 13),                # LES CX,[BX]
    ("ff37", {"ebx": 0xFFFF}, 13),                # PUSH [BX]
    ("8f07", {"ebx": 0xFFFF, "esp": 0x100}, 13),  # POP [BX]
    ("0fab0f", {"ebx": 0xFFFF, "ecx": 0}, 13),    # BTS [BX],CX
    ("c9", {"ebp": 0xFFFF}, 12),                  # LEAVE
    ("66c3", {"esp": 0x100}, 13),                 # o32 RET to a random 32-bit target
    ("66e27f", {"ecx": 5, "ip": 0xFFF0}, 13),     # o32 LOOP to 1_0072h
    ("66e97f000000", {"ip": 0xFFF0}, 13),         # o32 JMP rel32 beyond the limit
)


@pytest.mark.parametrize("form", FAULTS, ids=[f[0] for f in FAULTS])
@seed(5007)
@settings(max_examples=12, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(values=st.lists(st.integers(0, 0xFFFFFFFF), min_size=8, max_size=8), flags=FLAGS,
       fill=st.integers(0, 0xFFFF))
def test_a_fault_leaves_the_state_before_it(form, values, flags: int, fill: int) -> None:
    """Real mode, delivered through the IVT: everything is as before the instruction except
    CS:IP (the handler), SP (6 lower), FLAGS (IF, TF cleared) and the 6-byte frame (IP of
    the faulting instruction, CS, FLAGS before it) (SDM Vol. 3A 6.5, 20.1.4)."""
    code_hex, overrides, vector = form
    m = real_machine()
    names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
    r = {n: v & 0xFFFF for n, v in zip(names, values, strict=True)}
    r.update(es=0x2000, ss=0x3000, ds=0x4000, fs=0, gs=0, eflags=flags)
    if r["esp"] < 0x20:
        r["esp"] = 0x8000
    r.update(overrides)
    ip = r.pop("ip", CODE_IP)
    image = np.frombuffer(np.random.default_rng(fill).integers(0, 256, 0x50000, dtype=np.uint8)
                          .tobytes(), dtype=np.uint8)
    with m.ram_writable() as ram:
        ram[:0x50000] = image
        for v in range(32):
            ram[v * 4:v * 4 + 4] = np.frombuffer(
                (HANDLER + v).to_bytes(2, "little") + b"\0\0", dtype=np.uint8)
        ram[HANDLER:HANDLER + 32] = 0xF4
        code = bytes.fromhex(code_hex) + b"\xf4"
        start = (CODE_SEG << 4) + ip
        ram[start:start + len(code)] = np.frombuffer(code, dtype=np.uint8)
    before = m.ram[:0x50000].copy()
    m.set_regs(_real_regs(r, ip))
    m.clear_exception()
    stop = m.run(m.ticks + 1000)
    assert stop == StopReason.HALT
    after = m.get_regs()
    assert (after.cs.selector, after.eip) == (0, HANDLER + vector + 1), \
        (code_hex, after.cs.selector, hex(after.eip))
    for n in names:
        want = (r[n] - 6) & 0xFFFF if n == "esp" else r[n]
        assert getattr(after, n) & 0xFFFF == want & 0xFFFF, (code_hex, n)
        assert getattr(after, n) >> 16 == 0, (code_hex, n)
    for s in ("es", "ss", "ds"):
        assert getattr(after, s).selector == r[s]
    assert after.eflags & 0xFFFF == (r["eflags"] & ~0x300) & 0xFFFF | 2
    frame_lo = (r["ss"] << 4) + ((r["esp"] - 6) & 0xFFFF)
    frame = m.ram[frame_lo:frame_lo + 6].tobytes()
    assert frame == (ip.to_bytes(2, "little") + CODE_SEG.to_bytes(2, "little")
                     + (r["eflags"] & 0xFFFF).to_bytes(2, "little")), code_hex
    diff = np.flatnonzero(m.ram[:0x50000] != before)
    assert set(diff.tolist()) <= set(range(frame_lo, frame_lo + 6)), (code_hex, diff[:8])


@seed(5009)
@SETTINGS
@given(st.sampled_from((2, 4)), st.integers(-40, 40), st.sampled_from(("a3", "ab", "b3", "bb")))
def test_bit_offsets_from_a_register_are_signed(size: int, offset: int, op: str) -> None:
    """BT/BTS/BTR/BTC m, r: the register is a signed bit offset from the operand's address
    (SDM Vol. 2 "BT": "BitBase + (BitOffset DIV 8)"), in operand-size units."""
    base = 0x30000
    mem = [(base - 16, bytes(range(0x11, 0x11 + 32)))]
    regs, exc, ram = run(_prefix(size) + bytes.fromhex(f"0f{op}03"), mem, ebx=base,
                         eax=offset & 0xFFFFFFFF)
    assert exc is None
    bits = 8 * size
    unit = base + (offset // bits) * size
    word = int.from_bytes(bytes(range(0x11, 0x11 + 32))[unit - base + 16:][:size], "little")
    bit = offset % bits
    assert regs["eflags"] & 1 == (word >> bit) & 1
    new = {"a3": word, "ab": word | 1 << bit, "b3": word & ~(1 << bit),
           "bb": word ^ 1 << bit}[op]
    assert int.from_bytes(ram[unit:unit + size].tobytes(), "little") == new


@seed(5010)
@SETTINGS
@given(VAL, st.one_of(st.just(None), VAL), VAL, SIZE, FLAGS, st.booleans())
def test_cmpxchg_against_the_model(acc: int, dest: int | None, src: int, size: int, flags: int,
                                   memory: bool) -> None:
    """CMPXCHG r/m, r (SDM Vol. 2): flags of CMP accumulator, DEST; equal: DEST := SRC, else
    the accumulator := DEST."""
    m = (1 << (8 * size)) - 1
    dest = acc if dest is None else dest
    opc = 0xB0 if size == 1 else 0xB1
    if memory:
        code = _prefix(size) + bytes([0x0F, opc, 0x0B])  # [EBX], ECX/CX/CL
        regs, exc, ram = run(code, [(0x30000, (dest & m).to_bytes(size, "little"))],
                             eax=acc, ebx=0x30000, ecx=src, eflags=flags)
        got = int.from_bytes(ram[0x30000:0x30000 + size].tobytes(), "little")
    else:
        code = _prefix(size) + bytes([0x0F, opc, 0xCB])  # EBX/BX/BL, ECX/CX/CL
        regs, exc, _ = run(code, eax=acc, ebx=dest, ecx=src, eflags=flags)
        got = regs["ebx"] & m
    assert exc is None
    _r, f, defined = ref.alu("cmp", acc, dest, size, flags)
    equal = (acc & m) == (dest & m)
    assert got == (src & m if equal else dest & m)
    _check(regs, "eax", acc if equal else dest, size, f, defined)


@seed(5011)
@SETTINGS
@given(VAL, VAL, SIZE, FLAGS, st.booleans())
def test_xadd_against_the_model(dest: int, src: int, size: int, flags: int,
                                memory: bool) -> None:
    """XADD r/m, r (SDM Vol. 2): TEMP := SRC + DEST; SRC := DEST; DEST := TEMP; the flags
    of the addition."""
    m = (1 << (8 * size)) - 1
    opc = 0xC0 if size == 1 else 0xC1
    if memory:
        code = _prefix(size) + bytes([0x0F, opc, 0x0B])  # [EBX], ECX/CX/CL
        regs, exc, ram = run(code, [(0x30000, (dest & m).to_bytes(size, "little"))],
                             ebx=0x30000, ecx=src, eflags=flags)
        got = int.from_bytes(ram[0x30000:0x30000 + size].tobytes(), "little")
    else:
        code = _prefix(size) + bytes([0x0F, opc, 0xCB])  # EBX/BX/BL, ECX/CX/CL
        regs, exc, _ = run(code, ebx=dest, ecx=src, eflags=flags)
        got = regs["ebx"] & m
    assert exc is None
    r, f, defined = ref.alu("add", dest, src, size, flags)
    assert got == r
    _check(regs, "ecx", dest, size, f, defined)


@seed(5012)
@SETTINGS
@given(st.booleans(), SIZE, VAL, VAL, st.one_of(
    st.sampled_from((0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x8000, 0xFFFFFFFF, 0x80000000)), VAL),
    st.booleans())
def test_div_idiv_against_the_model(signed: bool, size: int, lo: int, hi: int, divisor: int,
                                    edge: bool) -> None:
    """DIV/IDIV r: quotient, remainder and #DE, the quotient range edges included (IDIV
    may produce -128 / -32768 / -2^31)."""
    bits = 8 * size
    m = (1 << bits) - 1
    if edge:  # a dividend whose quotient is exactly the most negative value
        d = divisor & m or 1
        q = -(1 << (bits - 1))
        dividend = (q * (d - (1 << bits) if signed and d >> (bits - 1) else d)) & (
            (1 << (2 * bits)) - 1)
    else:
        dividend = ((hi & m) << bits | (lo & m))
    regs0 = {"eax": dividend & 0xFFFF if size == 1 else dividend & m,
             "edx": 0 if size == 1 else dividend >> bits, "ebx": divisor}
    opc = 0xF6 if size == 1 else 0xF7
    code = _prefix(size) + bytes([opc, 0xFB if signed else 0xF3])  # IDIV/DIV eBX (or BL)
    regs, exc, _ = run(code, **regs0)
    want = ref.divide(signed, dividend, divisor, size)
    if want is None:
        assert exc == 0 and regs["eip"] == 0x2000
        return
    assert exc is None
    q, r = want
    if size == 1:
        assert regs["eax"] & 0xFFFF == r << 8 | q
    else:
        assert regs["eax"] & m == q and regs["edx"] & m == r


def run_real(code: str, memory: list[tuple[int, bytes]] | None = None, **regs: int):
    """One instruction in real mode on aero: (registers, exception, RAM)."""
    r = initial_regs("real")
    r.update(cs=0x1000, ss=0x3000, ds=0x4000, es=0x2000, eip=0x100, esp=0x8000)
    r.update(regs)
    sc = Scenario("real", r, [bytes.fromhex(code)], 0, list(memory or []))
    c = cpu()
    c.load(sc, sc.image())
    res = c.step()
    return res.regs, res.exception, res.memory


def test_leave_and_enter_use_the_16_bit_stack_pointer() -> None:
    """SDM "LEAVE": SP := BP on a 16-bit stack (the upper halves of ESP and EBP play no
    part); "ENTER": with a 16-bit operand size BP := FrameTemp[15:0]."""
    regs, exc, _ = run_real("c9", [(0x30100, b"\x34\x12")], ebp=0x56780100, esp=0x9ABC0010)
    assert exc is None
    assert regs["esp"] == 0x9ABC0102 and regs["ebp"] == 0x56781234
    regs, exc, ram = run_real("c8000000", ebp=0x12345678, esp=0x56780100)
    assert exc is None
    assert regs["esp"] == 0x567800FE and regs["ebp"] == 0x123400FE
    assert ram[0x300FE:0x30100].tobytes() == b"\x78\x56"
    # 32-bit operand size on the 16-bit stack: EBP := FrameTemp, the whole ESP after the push.
    regs, exc, ram = run_real("66c8000000", ebp=0x12345678, esp=0x56780100)
    assert exc is None
    assert regs["esp"] == 0x567800FC and regs["ebp"] == 0x567800FC
    assert ram[0x300FC:0x30100].tobytes() == b"\x78\x56\x34\x12"


@seed(5013)
@SETTINGS
@given(VAL, VAL, st.sampled_from(("be", "bf", "b6", "b7")), st.sampled_from((2, 4)))
def test_movsx_movzx_against_the_model(src: int, old: int, op: str, size: int) -> None:
    """MOVSX/MOVZX r, r/m8 and r/m16 (SDM Vol. 2): sign- or zero-extension of the source to
    the operand size; a 16-bit destination keeps the register's upper half."""
    width = 1 if op in ("be", "b6") else 2
    v = src & ((1 << (8 * width)) - 1)
    if op in ("be", "bf") and v >> (8 * width - 1):
        v -= 1 << (8 * width)
    m = (1 << (8 * size)) - 1
    regs, exc, _ = run(_prefix(size) + bytes.fromhex(f"0f{op}c3"), eax=old, ebx=src)
    assert exc is None
    assert regs["eax"] == (old & ~m & 0xFFFFFFFF) | (v & m)


def test_lock_is_legal_exactly_where_the_sdm_lists_it() -> None:
    """Every opcode (and group member) of both opcode maps with a LOCK prefix and a memory
    operand ([EBX], writable): #UD unless the SDM's LOCK list (aero.fuzz.sdm, written
    without aero's table) allows it; allowed forms run. The same with a register operand:
    always #UD."""
    from aero.fuzz import sdm

    wrong = []
    for op in [o for o in range(0x100) if o not in sdm.PREFIX_BYTES and o != 0x0F] + \
            [0x100 | o for o in range(0x100)]:
        for reg in range(8):
            for modrm in (0x03 | reg << 3, 0xC3 | reg << 3):
                head = bytes([0x0F, op & 0xFF]) if op >= 0x100 else bytes([op])
                code = b"\xf0" + head + bytes([modrm]) + bytes(6)
                d = sdm.decode(code, True)
                if not d.defined or d.length is None:
                    continue
                if not d.has_modrm and (reg or modrm & 0xC0 == 0xC0):
                    continue  # one encoding per opcode without a ModRM byte
                legal = sdm.lock_legal(d)
                regs, exc, _ = run(code[:d.length], [(0x30000, bytes(16))], ebx=0x30000,
                                   eax=1, ecx=0, edx=0)
                if (exc == 6) == legal:
                    wrong.append((code[:d.length].hex(), legal, exc))
    assert not wrong, wrong[:20]


def test_bcd_adjustments_exhaustively() -> None:
    """DAA, DAS, AAA, AAS for every AL with every CF and AF (SDM pseudo-code)."""
    wrong = []
    for op, code in (("daa", b"\x27"), ("das", b"\x2f"), ("aaa", b"\x37"), ("aas", b"\x3f")):
        for al in range(256):
            for flags in (2, 2 | ref.CF, 2 | ref.AF, 2 | ref.CF | ref.AF):
                ax = 0x5A00 | al
                regs, exc, _ = run(code, eax=ax, eflags=flags)
                if op in ("daa", "das"):
                    r, f, defined = (ref.daa if op == "daa" else ref.das)(al, flags)
                    got = regs["eax"] & 0xFF
                else:
                    r, f, defined = ref.aaa_aas(op == "aas", ax, flags)
                    got = regs["eax"] & 0xFFFF
                if exc is not None or got != r or (regs["eflags"] ^ f) & defined & ref.ARITH:
                    wrong.append((op, hex(al), hex(flags), hex(got), hex(r)))
    assert not wrong, wrong[:10]
