"""The x87: results against an exact rational model (tests/fpuenv.py), special values,
exception flags and masked responses, the stack, conversions, the environment layouts,
#NM / #MF / IRQ 13, and the FPU in the serialized CPU state."""

from __future__ import annotations

import functools
import random
from fractions import Fraction

import pytest
from fpuenv import (
    DATA,
    RD,
    RN,
    RU,
    RZ,
    UD,
    assemble,
    f32_bits,
    f64_bits,
    from_value,
    load,
    needs_as,
    new_machine,
    round_f32,
    round_f64,
    round_x80,
    to_fraction,
    x80,
    x80_bytes,
)

from aero.machine import FpuRegs, Machine, StopReason

pytestmark = needs_as

INDEFINITE = x80(1, 0x7FFF, 0xC000000000000000)
PINF, NINF = x80(0, 0x7FFF, 1 << 63), x80(1, 0x7FFF, 1 << 63)
IE, DE, ZE, OE, UE, PE, SF, ES, C0, C1, C2, C3, B = (0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80,
                                                     0x100, 0x200, 0x400, 0x4000, 0x8000)
PREC_BITS = {24: 0, 53: 2, 64: 3}


def fcw(rc: int = RN, prec: int = 64, masks: int = 0x3F) -> int:
    return masks | 0x40 | (PREC_BITS[prec] << 8) | (rc << 10)


@functools.cache
def code(src: str, real: bool = False) -> bytes:
    return assemble(src + "\nhlt", code16=real)


def run_bin(src: str, data: bytes = b"", *, m: Machine | None = None, real: bool = False,
            cr0: int = 0, limit: int = 1000) -> Machine:
    m = m or new_machine()
    if data:
        m.write(DATA, data)
    load(m, code(src, real), real=real, cr0=cr0)
    stop = m.run(m.ticks + limit)
    assert stop == StopReason.HALT, (stop, m.last_exception(), hex(m.get_regs().eip))
    return m


# Operands at DATA: +0 control word, +0x10 b, +0x20 a (80-bit).
BINARY = {
    "add": ("faddp", lambda a, b: a + b),
    "sub": ("fsubp", lambda a, b: a - b),    # AT&T fsubp is DE E1 (Intel FSUBRP): st(0) - st(1)
    "mul": ("fmulp", lambda a, b: a * b),
    "div": ("fdivp", lambda a, b: a / b),    # DE F1 (Intel FDIVRP): st(0) / st(1)
}


def binary(op: str, a: int, b: int, control: int) -> FpuRegs:
    src = f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfldt {DATA + 0x20}\n{BINARY[op][0]}"
    data = control.to_bytes(2, "little") + bytes(14) + x80_bytes(b) + bytes(6) + x80_bytes(a)
    return run_bin(src, data).get_fpu()


def random_x80(rng: random.Random, emin: int = 16383 - 80, emax: int = 16383 + 80) -> int:
    return x80(rng.getrandbits(1), rng.randint(emin, emax), (1 << 63) | rng.getrandbits(63))


@pytest.mark.parametrize("op", sorted(BINARY))
def test_arithmetic_rounds_exactly_in_every_mode_and_precision(op: str) -> None:
    rng = random.Random(f"x87-{op}")
    for _ in range(24):
        a, b = random_x80(rng), random_x80(rng)
        if rng.random() < 0.3:  # close operands: cancellation in add/sub
            b = a ^ (rng.getrandbits(8) | (rng.getrandbits(1) << 79))
        exact = BINARY[op][1](to_fraction(a), to_fraction(b))
        for prec in (24, 53, 64):
            for rc in (RN, RD, RU, RZ):
                f = binary(op, a, b, fcw(rc, prec))
                want, inexact = round_x80(exact, prec, rc)
                if exact == 0:
                    want = x80(1 if rc == RD else 0, 0, 0)
                assert f.st[0] == want, (op, hex(a), hex(b), prec, rc)
                assert bool(f.fsw & PE) == inexact
                up = abs(to_fraction(want)) > abs(exact)
                assert bool(f.fsw & C1) == up
                assert f.fsw & (IE | ZE | OE | UE) == 0


def ref_sqrt(x: Fraction, prec: int, rc: int) -> tuple[int, bool]:
    k = 100 - (x.numerator.bit_length() - x.denominator.bit_length()) // 2  # root of ~100 bits
    n = x * Fraction(4) ** k
    r = int(n.numerator // n.denominator)
    s = isqrt(r)
    if s * s == n:
        return round_x80(Fraction(s) / Fraction(2) ** k, prec, rc)
    bits, _ = round_x80(Fraction(2 * s + 1) / Fraction(2) ** (k + 1), prec, rc)
    return bits, True


def isqrt(n: int) -> int:
    import math
    return math.isqrt(n)


def test_fsqrt_rounds_exactly() -> None:
    rng = random.Random("fsqrt")
    src = f"fninit\nfldcw {DATA}\nfldt {DATA + 0x20}\nfsqrt"
    cases = [random_x80(rng) & ~(1 << 79) for _ in range(20)] + [from_value(4), from_value(2),
                                                               x80(0, 0, 1 << 40)]
    for a in cases:
        for prec in (24, 53, 64):
            for rc in (RN, RD, RU, RZ):
                data = fcw(rc, prec).to_bytes(2, "little") + bytes(30) + x80_bytes(a)
                f = run_bin(src, data).get_fpu()
                want, inexact = ref_sqrt(to_fraction(a), prec, rc)
                assert f.st[0] == want, (hex(a), prec, rc)
                assert bool(f.fsw & PE) == inexact
    # sqrt(-0) = -0; sqrt(-1): invalid, the indefinite.
    for a, want, flags in ((x80(1, 0, 0), x80(1, 0, 0), 0), (from_value(-1), INDEFINITE, IE)):
        f = run_bin(src, fcw().to_bytes(2, "little") + bytes(30) + x80_bytes(a)).get_fpu()
        assert f.st[0] == want and f.fsw & 0x3F == flags


# ---- special operands and masked responses ----------------------------------------------

SNAN = x80(0, 0x7FFF, 0xA000000000000000)
QNAN = x80(0, 0x7FFF, 0xE000000000000000)
DENORM = x80(0, 0, 0x0000000012345678)
UNNORMAL = x80(0, 0x4000, 0x4000000000000000)
PSEUDO_INF = x80(0, 0x7FFF, 0)


@pytest.mark.parametrize("op, a, b, want, flags", [
    ("div", from_value(0), from_value(0), INDEFINITE, IE),
    ("div", from_value(1), from_value(0), PINF, ZE),
    ("div", from_value(-1), from_value(0), NINF, ZE),
    ("sub", PINF, PINF, INDEFINITE, IE),
    ("add", PINF, NINF, INDEFINITE, IE),
    ("mul", PINF, from_value(0), INDEFINITE, IE),
    ("add", SNAN, from_value(1), SNAN | (1 << 62), IE),
    ("add", QNAN, from_value(1), QNAN, 0),
    ("add", QNAN, SNAN, QNAN, IE),                          # SNaN and QNaN: the QNaN
    ("add", SNAN | 1, SNAN, SNAN | 1 | (1 << 62), IE),      # two SNaNs: the larger significand
    ("add", UNNORMAL, from_value(1), INDEFINITE, IE),       # unsupported encodings are invalid
    ("mul", PSEUDO_INF, from_value(1), INDEFINITE, IE),
    ("add", DENORM, from_value(0), DENORM, DE),             # denormal operand, exact result
    ("mul", x80(0, 0x7FFE, 1 << 63), from_value(4), PINF, OE | PE),
    ("mul", x80(0, 1, 1 << 63), from_value(0.25), x80(0, 0, 1 << 61), 0),   # exact denormal
    ("mul", x80(0, 1, (1 << 63) | 1), from_value(0.25), x80(0, 0, 1 << 61), UE | PE),
])
def test_special_operands_masked(op: str, a: int, b: int, want: int, flags: int) -> None:
    f = binary(op, a, b, fcw())
    assert f.st[0] == want, hex(f.st[0])
    assert f.fsw & 0x3F == flags
    assert not f.fsw & (ES | B)


def test_unmasked_invalid_and_zero_divide_leave_the_stack_alone() -> None:
    for a, b, flag in ((from_value(0), from_value(0), IE), (from_value(3), from_value(0), ZE)):
        f = binary("div", a, b, fcw(masks=0x3F & ~flag))
        # faddp-style P forms pop only when they complete: both operands still there.
        assert f.st[0] == a and f.st[1] == b and f.top == 6
        assert f.fsw & 0x3F == flag and f.fsw & ES and f.fsw & B


def test_unmasked_overflow_and_underflow_wrap_the_exponent() -> None:
    f = binary("mul", x80(0, 0x7FFE, 1 << 63), from_value(4), fcw(masks=0x3F & ~OE))
    assert f.st[0] == x80(0, 0x7FFE + 2 - 24576, 1 << 63) and f.fsw & OE and f.fsw & ES
    f = binary("mul", x80(0, 1, 1 << 63), from_value(0.25), fcw(masks=0x3F & ~UE))
    assert f.st[0] == x80(0, 1 - 2 + 24576, 1 << 63) and f.fsw & UE and f.fsw & ES


@pytest.mark.parametrize("rc, want", [(RN, PINF), (RU, PINF), (RZ, x80(0, 0x7FFE, (1 << 64) - 1)),
                                      (RD, x80(0, 0x7FFE, (1 << 64) - 1))])
def test_masked_overflow_by_rounding_mode(rc: int, want: int) -> None:
    f = binary("mul", x80(0, 0x7FFE, 1 << 63), from_value(2), fcw(rc))
    assert f.st[0] == want and f.fsw & (OE | PE) == OE | PE


# ---- the stack --------------------------------------------------------------------------

def test_stack_overflow_and_underflow() -> None:
    m = run_bin("fninit\n" + "fld1\n" * 9)
    f = m.get_fpu()
    assert f.st[0] == INDEFINITE and f.fsw & (IE | SF | C1) == IE | SF | C1
    m = run_bin("fninit\nfadd %st(1), %st")
    f = m.get_fpu()
    assert f.st[0] == INDEFINITE and f.fsw & (IE | SF) == IE | SF and not f.fsw & C1
    # Unmasked: nothing changes but the flags, ES and B.
    m = run_bin(f"fninit\nfldcw {DATA}\nfld1\nfadd %st(1), %st",
                fcw(masks=0x3E).to_bytes(2, "little"))
    f = m.get_fpu()
    assert f.st[0] == from_value(1) and f.empty(1)
    assert f.fsw & (IE | SF | ES | B) == IE | SF | ES | B


def test_fxch_fst_ffree_fincstp_and_tags() -> None:
    m = run_bin("fninit\nfld1\nfldz\nfldpi\nfxch %st(2)\nfst %st(1)\nffree %st(2)\n"
                "fincstp\nfdecstp")
    f = m.get_fpu()
    pi = x80(0, 0x4000, 0xC90FDAA22168C235)
    assert f.st[0] == from_value(1) and f.st[1] == from_value(1) and f.empty(2)
    # full tags: ST0 valid (00), ST1 valid (00), ST2 empty (11), rest empty.
    assert f.top == 5
    tags = [(f.ftw >> (2 * ((5 + i) & 7))) & 3 for i in range(8)]
    assert tags == [0, 0, 3, 3, 3, 3, 3, 3]
    assert pi != f.st[0]
    m = run_bin("fninit\nfldz\nfld1\nfldpi")
    tags = [(m.get_fpu().ftw >> (2 * p)) & 3 for p in range(8)]
    assert tags == [3, 3, 3, 3, 3, 0, 0, 1]  # R5 = pi, R6 = 1, R7 = 0 (zero tag)


def test_fcmov_follows_eflags() -> None:
    m = run_bin("fninit\nfld1\nfldz\nstc\nfcmovb %st(1), %st\nfldz\nclc\nfcmovb %st(2), %st")
    f = m.get_fpu()
    assert f.st[1] == from_value(1) and f.st[0] == from_value(0)


# ---- conversions ------------------------------------------------------------------------

@pytest.mark.parametrize("rc", [RN, RD, RU, RZ])
def test_integer_stores_round_and_overflow_to_the_indefinite(rc: int) -> None:
    src = (f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfists {DATA + 0x30}\nfistl {DATA + 0x34}\n"
           f"fistpll {DATA + 0x38}")
    rng = random.Random(rc)
    values = [Fraction(rng.randint(-10**6, 10**6), rng.randint(1, 1000)) for _ in range(8)]
    values += [Fraction(5, 2), Fraction(-5, 2), Fraction(40000), Fraction(-32768), Fraction(2**31),
               Fraction(-2**63), Fraction(2**63)]
    for v in values:
        a, _ = round_x80(v, 64, RN)
        m = run_bin(src, fcw(rc).to_bytes(2, "little") + bytes(14) + x80_bytes(a))
        exact = to_fraction(a)
        n = _round_ref(exact, rc)
        out = m.read(DATA + 0x30, 16)
        for off, bits in ((0, 16), (4, 32), (8, 64)):
            got = int.from_bytes(out[off:off + bits // 8], "little", signed=True)
            fits = -(1 << (bits - 1)) <= n < (1 << (bits - 1))
            assert got == (n if fits else -(1 << (bits - 1))), (v, bits, rc)
        f = m.get_fpu()
        assert bool(f.fsw & IE) == (not -(1 << 15) <= n < (1 << 15))
        assert f.empty(0)


def _round_ref(x: Fraction, rc: int) -> int:
    import math
    if rc == RD:
        return math.floor(x)
    if rc == RU:
        return math.ceil(x)
    if rc == RZ:
        return math.trunc(x)
    return round(x)  # Python rounds halves to even, as the x87 does


def test_integer_loads_are_exact() -> None:
    src = f"fninit\nfilds {DATA}\nfildl {DATA + 4}\nfildll {DATA + 8}"
    data = (-12345).to_bytes(2, "little", signed=True) + bytes(2) + \
        (-2**31).to_bytes(4, "little", signed=True) + (2**63 - 1).to_bytes(8, "little", signed=True)
    f = run_bin(src, data).get_fpu()
    assert [to_fraction(v) for v in f.st[:3]] == [2**63 - 1, -2**31, -12345]


@pytest.mark.parametrize("rc", [RN, RD, RU, RZ])
def test_real_stores_round_to_the_format(rc: int) -> None:
    src = (f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfsts {DATA + 0x30}\nfstpl {DATA + 0x38}")
    rng = random.Random(f"store{rc}")
    values = [random_x80(rng) for _ in range(10)] + [x80(0, 16383 - 140, (1 << 63) | 12345),
                                                     x80(1, 16383 - 1030, (1 << 63) | 777),
                                                     x80(0, 16383 + 200, 1 << 63)]
    for a in values:
        m = run_bin(src, fcw(rc).to_bytes(2, "little") + bytes(14) + x80_bytes(a))
        out = m.read(DATA + 0x30, 16)
        exact = to_fraction(a)
        assert int.from_bytes(out[:4], "little") == round_f32(exact, rc), hex(a)
        assert int.from_bytes(out[8:], "little") == round_f64(exact, rc), hex(a)


def test_real_loads() -> None:
    src = f"fninit\nflds {DATA}\nfldl {DATA + 8}\nflds {DATA + 16}"
    data = f32_bits(1.5).to_bytes(4, "little") + bytes(4) + \
        f64_bits(-2.0 ** -1074).to_bytes(8, "little") + \
        (0x7F800001).to_bytes(4, "little")  # an SNaN
    f = run_bin(src, data).get_fpu()
    assert f.st[2] == from_value(1.5)
    assert to_fraction(f.st[1]) == -Fraction(1, 2 ** 1074)
    assert f.st[0] == x80(0, 0x7FFF, 0xC000010000000000)  # quieted
    assert f.fsw & (IE | DE) == IE | DE


def test_bcd_round_trip_and_indefinite() -> None:
    bcd = bytes([0x21, 0x43, 0x65, 0x87, 0x09, 0, 0, 0, 0x99, 0x80])
    src = (f"fninit\nfbld {DATA}\nfld %st(0)\nfbstp {DATA + 0x10}\nfmul %st(0), %st\n"
           f"fbstp {DATA + 0x20}")
    m = run_bin(src, bcd)
    f = m.get_fpu()
    value = -990000000987654321
    assert m.read(DATA + 0x10, 10) == bcd
    assert m.read(DATA + 0x20, 10) == bytes([0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF])  # too large
    assert f.fsw & IE and value
    m = run_bin(f"fninit\nfldt {DATA}\nfbstp {DATA + 0x10}", x80_bytes(from_value(Fraction(-5, 2))))
    assert m.read(DATA + 0x10, 10) == bytes([2] + [0] * 8 + [0x80])  # -2.5 -> -2 (nearest even)


# ---- compares ---------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, cc", [(1, 2, C0), (2, 1, 0), (2, 2, C3), (-0.0, 0.0, C3)])
def test_fcom_and_fcomi(a: float, b: float, cc: int) -> None:
    src = f"fninit\nfldt {DATA + 0x10}\nfldt {DATA + 0x20}\nfcom %st(1)\nfnstsw %ax\n" \
          "fcomi %st(1), %st\n" \
          "pushf\npop %ebx"
    m = run_bin(src, bytes(16) + x80_bytes(from_value(b)) + bytes(6) + x80_bytes(from_value(a)))
    r = m.get_regs()
    assert r.eax & (C0 | C1 | C2 | C3) == cc
    flags = {C0: 0x1, 0: 0, C3: 0x40}[cc]
    assert r.ebx & 0x8D5 == flags


def test_unordered_compares() -> None:
    src = f"fninit\nfldt {DATA + 0x10}\nfldt {DATA + 0x20}\nfucom %st(1)\nfnstsw %ax\n" \
          "fucomi %st(1), %st\n" \
          "pushf\npop %ebx\nmov %eax, %ecx\nfcom %st(1)\nfnstsw %ax"
    m = run_bin(src, bytes(16) + x80_bytes(QNAN) + bytes(6) + x80_bytes(from_value(1)))
    r = m.get_regs()
    assert r.ecx & (C0 | C2 | C3 | IE) == C0 | C2 | C3           # FUCOM: QNaN is quiet
    assert r.ebx & 0x45 == 0x45                                   # ZF PF CF
    assert r.eax & (C0 | C2 | C3 | IE) == C0 | C2 | C3 | IE       # FCOM: any NaN is invalid


@pytest.mark.parametrize("value, cc", [
    (from_value(1), C2), (from_value(0), C3), (PINF, C2 | C0), (QNAN, C0), (DENORM, C3 | C2),
    (UNNORMAL, 0), (from_value(-1), C2 | C1)])
def test_fxam(value: int, cc: int) -> None:
    m = run_bin(f"fninit\nfldt {DATA}\nfxam\nfnstsw %ax", x80_bytes(value))
    assert m.get_regs().eax & (C0 | C1 | C2 | C3) == cc
    m = run_bin("fninit\nfxam\nfnstsw %ax")
    assert m.get_regs().eax & (C0 | C2 | C3) == C3 | C0  # empty


def test_ftst_and_ficom() -> None:
    m = run_bin(f"fninit\nfldt {DATA}\nftst\nfnstsw %ax\nmov %eax, %ebx\n"
                f"ficoml {DATA + 0x10}\nfnstsw %ax",
                x80_bytes(from_value(-3)) + bytes(6) + (-3).to_bytes(4, "little", signed=True))
    r = m.get_regs()
    assert r.ebx & (C0 | C2 | C3) == C0 and r.eax & (C0 | C2 | C3) == C3


# ---- the other arithmetic instructions --------------------------------------------------

@pytest.mark.parametrize("ieee", [False, True])
def test_fprem_and_fprem1(ieee: bool) -> None:
    rng = random.Random(ieee)
    insn = "fprem1" if ieee else "fprem"
    for _ in range(20):
        a = random_x80(rng, 16383 - 20, 16383 + 40)
        b = random_x80(rng, 16383 - 20, 16383 + 20)
        m = run_bin(f"fninit\nfldt {DATA + 0x10}\nfldt {DATA}\n{insn}\nfnstsw %ax",
                    x80_bytes(a) + bytes(6) + x80_bytes(b))
        f = m.get_fpu()
        x, y = to_fraction(a), to_fraction(b)
        sw = m.get_regs().eax
        if ((a >> 64) & 0x7FFF) - ((b >> 64) & 0x7FFF) >= 64:
            assert sw & C2
            continue
        q = x / y
        n = (round(q) if ieee else int(q))
        want = x - n * y
        assert not sw & C2
        assert to_fraction(f.st[0]) == want, (hex(a), hex(b))
        n = abs(n)
        assert bool(sw & C0) == bool(n & 4) and bool(sw & C3) == bool(n & 2)
        assert bool(sw & C1) == bool(n & 1)


def test_fprem_partial_remainder_converges() -> None:
    a, b = x80(0, 16383 + 200, 0xDEADBEEF12345678 | (1 << 63)), from_value(3)
    src = f"fninit\nfldt {DATA + 0x10}\nfldt {DATA}\n1: fprem\nfnstsw %ax\ntest $4, %ah\njnz 1b"
    m = run_bin(src, x80_bytes(a) + bytes(6) + x80_bytes(b), limit=100_000)
    assert to_fraction(m.get_fpu().st[0]) == to_fraction(a) % 3


@pytest.mark.parametrize("rc", [RN, RD, RU, RZ])
def test_frndint_fscale_fxtract(rc: int) -> None:
    src = f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfrndint"
    for v in (Fraction(7, 2), Fraction(-7, 2), Fraction(5, 2), Fraction(-1, 3),
              Fraction(10**20 + 1)):
        a, _ = round_x80(v, 64, RN)
        f = run_bin(src, fcw(rc).to_bytes(2, "little") + bytes(14) + x80_bytes(a)).get_fpu()
        assert to_fraction(f.st[0]) == _round_ref(to_fraction(a), rc)
    f = run_bin(f"fninit\nfldt {DATA}\nfldt {DATA + 0x10}\nfscale",
                x80_bytes(from_value(Fraction(-7, 2))) + bytes(6) +
                x80_bytes(from_value(3))).get_fpu()
    assert to_fraction(f.st[0]) == Fraction(3, 8)
    f = run_bin(f"fninit\nfldt {DATA}\nfxtract", x80_bytes(from_value(-40))).get_fpu()
    assert to_fraction(f.st[0]) == Fraction(-5, 4) and to_fraction(f.st[1]) == 5
    f = run_bin("fninit\nfldz\nfxtract").get_fpu()
    assert f.st[1] == NINF and f.st[0] == 0 and f.fsw & ZE


@pytest.mark.parametrize("rc, pi_low", [(RN, 0x35), (RU, 0x35), (RD, 0x34), (RZ, 0x34)])
def test_constants_round_per_rc(rc: int, pi_low: int) -> None:
    src = f"fninit\nfldcw {DATA}\nfldpi\nfldl2e\nfldlg2\nfldln2\nfldl2t\nfld1\nfldz"
    f = run_bin(src, fcw(rc).to_bytes(2, "little")).get_fpu()
    up = rc in (RN, RU)
    assert f.st[6] == x80(0, 0x4000, 0xC90FDAA22168C200 | pi_low)
    assert f.st[5] == x80(0, 0x3FFF, 0xB8AA3B295C17F0BB + up)
    assert f.st[4] == x80(0, 0x3FFD, 0x9A209A84FBCFF798 + up)
    assert f.st[3] == x80(0, 0x3FFE, 0xB17217F7D1CF79AB + up)
    assert f.st[2] == x80(0, 0x4000, 0xD49A784BCD1B8AFE + (rc == RU))
    assert f.st[1] == from_value(1) and f.st[0] == 0


def test_fchs_fabs() -> None:
    f = run_bin("fninit\nfld1\nfchs\nfld %st(0)\nfabs").get_fpu()
    assert f.st[0] == from_value(1) and f.st[1] == from_value(-1)


def test_reserved_encodings_are_ud_and_p6_aliases_work() -> None:
    m = new_machine()
    load(m, bytes([0xD9, 0xD1]))  # D9 D1: reserved
    assert m.run(m.ticks + 1) == StopReason.EXCEPTION and m.last_exception() == (UD, 0)
    m = new_machine()
    load(m, bytes([0xDB, 0xE3, 0xD9, 0xE8, 0xD9, 0xEE, 0xDD, 0xC9, 0xF4]))  # fninit fld1 fldz fxch4
    assert m.run(m.ticks + 10) == StopReason.HALT
    f = m.get_fpu()
    assert f.st[0] == from_value(1) and f.st[1] == 0


@pytest.mark.parametrize("a, b, prec", [
    (Fraction(1), Fraction(1, 2 ** 64), 64),          # exact tie, even below: stays 1
    (Fraction(1), Fraction(3, 2 ** 64), 64),          # tie above an odd significand: up
    (Fraction(1), Fraction(1, 2 ** 24), 24),
    (Fraction(1), Fraction(3, 2 ** 53), 53)])
def test_round_to_nearest_ties_to_even(a: Fraction, b: Fraction, prec: int) -> None:
    for rc in (RN, RD, RU, RZ):
        f = binary("add", from_value(a), from_value(b), fcw(rc, prec))
        want, inexact = round_x80(a + b, prec, rc)
        assert f.st[0] == want and inexact and f.fsw & PE


def test_fscale_far_out_of_range() -> None:
    """Scaling by +-2^20 saturates: masked, infinity and zero; unmasked, the wrapped exponent
    cannot bring the value back into range, so the masked response is delivered (OE / UE)."""
    src = f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfld1\nfscale"
    for scale, masks, want, flag in ((2 ** 20, 0x3F, PINF, OE), (-(2 ** 20), 0x3F, 0, UE),
                                     (2 ** 20, 0x37, PINF, OE), (-(2 ** 20), 0x2F, 0, UE)):
        data = fcw(masks=masks).to_bytes(2, "little") + bytes(14) + x80_bytes(from_value(scale))
        f = run_bin(src, data).get_fpu()
        assert f.st[0] == want and f.fsw & flag


def test_unmasked_store_exceptions_store_nothing_and_keep_the_stack() -> None:
    marker = b"\xAA" * 8
    # FISTP m32 of 2^40 with IE unmasked; FSTP m32 of 2^200 with OE unmasked.
    for insn, value, masks, flag in (("fistpl", from_value(2 ** 40), 0x3E, 0x1),
                                     ("fstps", x80(0, 16383 + 200, 1 << 63), 0x37, 0x8)):
        src = f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\n{insn} {DATA + 0x20}"
        data = fcw(masks=masks).to_bytes(2, "little") + bytes(14) + x80_bytes(value) + \
            bytes(6) + marker
        m = run_bin(src, data)
        f = m.get_fpu()
        assert m.read(DATA + 0x20, 8) == marker
        assert f.st[0] == value and f.top == 7 and f.fsw & (flag | ES) == flag | ES


def test_unmasked_invalid_compare_leaves_eflags_and_the_stack() -> None:
    src = (f"fninit\nfldcw {DATA}\nfldt {DATA + 0x10}\nfld1\nxor %eax, %eax\n"
           "fcomip %st(1), %st\npushf\npop %ebx")
    data = fcw(masks=0x3E).to_bytes(2, "little") + bytes(14) + x80_bytes(SNAN)
    m = run_bin(src, data)
    f = m.get_fpu()
    assert m.get_regs().ebx & 0x45 == 0x44  # ZF PF from the XOR, not the compare's CF
    assert f.top == 6 and f.fsw & (IE | ES) == IE | ES


def _undefined_register_forms() -> set[tuple[int, int]]:
    ud: set[tuple[int, int]] = set()
    ud |= {(0xD9, m) for m in range(0xD1, 0xD8)}
    ud |= {(0xD9, m) for m in (0xE2, 0xE3, 0xE6, 0xE7, 0xEF)}
    ud |= {(0xDA, m) for m in range(0xE0, 0x100) if m != 0xE9}
    ud |= {(0xDB, m) for m in (0xE5, 0xE6, 0xE7)} | {(0xDB, m) for m in range(0xF8, 0x100)}
    ud |= {(0xDD, m) for m in range(0xF0, 0x100)}
    ud |= {(0xDE, m) for m in range(0xD8, 0xE0) if m != 0xD9}
    ud |= {(0xDF, m) for m in range(0xE1, 0xE8)} | {(0xDF, m) for m in range(0xF8, 0x100)}
    return ud


def test_the_register_form_map() -> None:
    """Every register-form encoding (ModRM C0-FF) of D8-DF either runs or is #UD, exactly as
    the opcode map says, on a full stack of ordinary values."""
    ud = _undefined_register_forms()
    prologue = bytes([0xDB, 0xE3]) + bytes([0xD9, 0xE8]) * 8  # fninit, fld1 x 8
    for esc in range(0xD8, 0xE0):
        for modrm in range(0xC0, 0x100):
            m = new_machine()
            load(m, prologue + bytes([esc, modrm, 0xF4]))
            stop = m.run(m.ticks + 20)
            if (esc, modrm) in ud:
                assert stop == StopReason.EXCEPTION and m.last_exception() == (6, 0), \
                    f"{esc:02X} {modrm:02X}"
            else:
                assert stop == StopReason.HALT, f"{esc:02X} {modrm:02X}: {m.last_exception()}"


@pytest.mark.parametrize("esc, reg", [(0xD9, 1), (0xDB, 1), (0xDB, 4), (0xDB, 6), (0xDD, 1),
                                      (0xDD, 5), (0xDF, 1)])
def test_undefined_memory_forms(esc: int, reg: int) -> None:
    m = new_machine()
    load(m, bytes([esc, 0x05 | (reg << 3)]) + DATA.to_bytes(4, "little") + b"\xF4")
    assert m.run(m.ticks + 5) == StopReason.EXCEPTION and m.last_exception() == (6, 0)
