"""An exact model of the x87 instructions the ``fpu`` campaign generates, written from the
Intel SDM (Vol. 1 ch. 4 and 8, Vol. 2 instruction pages), independent of aero's core.

Values are exact ``Fraction``s; every result is rounded once from the exact value to a
significand precision and the 15-bit exponent range (or a memory format's) in one of the
four rounding modes, with tininess detected before rounding and the masked and unmasked
responses of SDM Vol. 1, 4.9 and 8.5. The few choices the SDM leaves to the implementation
are those docs/fpu.md lists ("Choices where the SDM leaves freedom").

:func:`step` gives the state after one instruction (registers, status, control, tags,
EAX/EFLAGS, the memory written, the exception vector) and the status-word bits the SDM
leaves undefined for it; it returns None for an instruction it does not model.

Invariants: no import of aero (tests/test_fuzz_x87.py checks); a pure function of its
inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

__all__ = ["C0", "C1", "C2", "C3", "DE", "ES", "IE", "OE", "PE", "SF", "UE", "ZE",
           "CONSTANTS", "Outcome", "State", "classify", "step", "to_fraction", "round_format",
           "waiting", "x80", "INDEFINITE", "RN", "RD", "RU", "RZ", "pc_bits"]

IE, DE, ZE, OE, UE, PE, SF, ES = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
C0, C1, C2, C3, B = 0x100, 0x200, 0x400, 0x4000, 0x8000
CC = C0 | C1 | C2 | C3
RN, RD, RU, RZ = 0, 1, 2, 3
BIAS = 16383
M64 = (1 << 64) - 1
J = 1 << 63
INDEFINITE = (1 << 79) | (0x7FFF << 64) | (0xC << 60)
INT_INDEF = {2: 0x8000, 4: 0x80000000, 8: 1 << 63}
BCD_INDEF = bytes(7) + b"\xc0\xff\xff"  # FFFF C000 0000 0000 0000h, little-endian
MF, UD = 16, 6
F_CF, F_PF, F_ZF = 0x1, 0x4, 0x40
F_AF, F_SF, F_OF = 0x10, 0x80, 0x800


def x80(sign: int, exp: int, sig: int) -> int:
    return (sign << 79) | (exp << 64) | sig


def parts(v: int) -> tuple[int, int, int]:
    return v >> 79 & 1, (v >> 64) & 0x7FFF, v & M64


def classify(v: int) -> str:
    """zero, denormal, pseudo-denormal, normal, unnormal, inf, snan, qnan, unsupported."""
    _, e, s = parts(v)
    if e == 0:
        if s == 0:
            return "zero"
        return "pseudo-denormal" if s & J else "denormal"
    if e == 0x7FFF:
        if not s & J:
            return "unsupported"  # pseudo-infinity, pseudo-NaN
        if s == J:
            return "inf"
        return "qnan" if s & (1 << 62) else "snan"
    return "normal" if s & J else "unsupported"  # unnormal


def is_nan(c: str) -> bool:
    return c in ("snan", "qnan")


def to_fraction(v: int) -> Fraction:
    """The exact value of a finite register (zero, denormal, pseudo-denormal, normal)."""
    sign, e, s = parts(v)
    f = Fraction(s) * Fraction(2) ** ((e or 1) - BIAS - 63)
    return -f if sign else f


def _ilog2(a: Fraction) -> int:
    """floor(log2(a)) for a > 0."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    if Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


def _round_int(q: Fraction, sign: int, rc: int) -> int:
    """Round q >= 0 to an integer in mode rc (sign: of the real value)."""
    n, rem = divmod(q.numerator, q.denominator)
    if rem == 0:
        return n
    if rc == RN:
        twice = 2 * rem
        return n + 1 if twice > q.denominator or (twice == q.denominator and n & 1) else n
    if rc == RU:
        return n + (0 if sign else 1)
    if rc == RD:
        return n + (1 if sign else 0)
    return n


@dataclass
class Rounded:
    """A value rounded to a format: ``bits`` in that format's encoding (80-bit register,
    or binary32/64), the flags the rounding raised (OE UE PE), C1 (round-up), and whether
    the unmasked overflow/underflow response applies (``wrapped``)."""

    bits: int
    flags: int
    c1: bool


def round_format(x: Fraction, prec: int, rc: int, bias: int, emax: int
                 ) -> tuple[int, int, int, bool, bool, bool]:
    """x rounded to ``prec`` significant bits with biased exponents 1..emax (denormals
    below, tininess before rounding, masked responses). Returns (sign, biased exponent,
    significand with its integer bit at bit prec-1, inexact, tiny, overflow); a masked
    overflow gives infinity (exponent emax + 1) or the largest finite value by rc."""
    sign = 1 if x < 0 else 0
    a = -x if sign else x
    if a == 0:
        return sign, 0, 0, False, False, False
    e = _ilog2(a)
    be = e + bias
    if be <= 0:
        q = a / Fraction(2) ** (1 - bias - (prec - 1))
        n = _round_int(q, sign, rc)
        return sign, (1 if n >> (prec - 1) else 0), n, n != q, True, False
    q = a / Fraction(2) ** (e - (prec - 1))
    n = _round_int(q, sign, rc)
    if n >> prec:
        n >>= 1
        be += 1
    if be > emax:
        to_inf = rc == RN or (rc == RU and not sign) or (rc == RD and sign)
        if to_inf:
            return sign, emax + 1, 1 << (prec - 1), True, False, True
        return sign, emax, (1 << prec) - 1, True, False, True
    return sign, be, n, n != q, False, False


def round80(x: Fraction, prec: int, rc: int, fcw: int) -> Rounded:
    """x rounded to a register at precision ``prec`` with the masked or unmasked
    overflow/underflow response of the control word (SDM Vol. 1, 4.9.1.4-5, 8.5.4-5)."""
    sign, be, n, inexact, tiny, over = round_format(x, prec, rc, BIAS, 0x7FFE)
    flags = 0
    if over and not fcw & OE:  # unmasked overflow: exponent wrapped by 24576
        y = x / Fraction(2) ** 24576
        sign, be, n, inexact, _, over2 = round_format(y, prec, rc, BIAS, 0x7FFE)
        flags |= OE | (PE if inexact else 0)
        if over2:  # still out of range: infinity or the largest value, by RC
            if be == 0x7FFF:
                return Rounded(x80(sign, 0x7FFF, J), flags | PE, True)
            return Rounded(x80(sign, be, n << (64 - prec)), flags | PE, False)
        bits = x80(sign, be, n << (64 - prec))
        return Rounded(bits, flags, inexact and abs(to_fraction(bits)) > abs(y))
    if tiny and not fcw & UE:  # unmasked underflow: exponent wrapped by 24576
        y = x * Fraction(2) ** 24576
        sign, be, n, inexact, _, _ = round_format(y, prec, rc, BIAS, 0x7FFE)
        flags |= UE | (PE if inexact else 0)
        bits = x80(sign, be, n << (64 - prec))
        return Rounded(bits, flags, inexact and abs(to_fraction(bits)) > abs(y))
    if over:
        flags |= OE | PE
    elif tiny and inexact:
        flags |= UE | PE
    elif inexact:
        flags |= PE
    if be == 0x7FFF:
        bits = x80(sign, 0x7FFF, J)
        return Rounded(bits, flags, True)
    bits = x80(sign, be, n << (64 - prec))
    up = inexact and abs(to_fraction(bits)) > abs(x)
    return Rounded(bits, flags, up)


def pc_bits(fcw: int) -> int:
    return {0: 24, 1: 64, 2: 53, 3: 64}[(fcw >> 8) & 3]


# ---- constants (exact to 256 bits, computed here) ----------------------------------------

def _atanh_inv(k: int, bits: int) -> int:
    """atanh(1/k) * 2^bits (fixed point)."""
    one = 1 << bits
    term = one // k
    total, n, k2 = term, 1, k * k
    while term:
        term //= k2
        n += 2
        total += term // n
    return total


def _consts(bits: int = 300) -> dict[str, Fraction]:
    one = 1 << bits
    pi = 4 * (4 * _atan_inv(5, bits) - _atan_inv(239, bits))
    ln2 = 2 * _atanh_inv(3, bits)  # ln 2 = 2 atanh(1/3)
    ln10 = 3 * ln2 + 2 * _atanh_inv(9, bits)  # ln 1.25 = 2 atanh(1/9)
    scale = Fraction(1, one)
    return {"pi": pi * scale, "ln2": ln2 * scale, "l2e": Fraction(one, 1) / ln2,
            "l2t": Fraction(ln10, ln2), "lg2": Fraction(ln2, ln10)}


def _atan_inv(k: int, bits: int) -> int:
    one = 1 << bits
    term = one // k
    total, n, k2, sign = term, 1, k * k, 1
    while term:
        term //= k2
        n += 2
        sign = -sign
        total += sign * (term // n)
    return total


CONSTANTS = _consts()


# ---- state --------------------------------------------------------------------------------

@dataclass
class State:
    """The x87 state the campaign compares, plus the integer state x87 instructions touch.

    ``regs`` are the physical registers R0-R7 (80-bit integers), ``empty`` one bit per
    physical register; ``fsw`` holds TOP in bits 11-13."""

    regs: list[int]
    fcw: int
    fsw: int
    empty: int
    eax: int = 0
    eflags: int = 2
    ebx: int = 0
    eip_now: int = 0  # offset of the instruction being executed (for FIP)
    fip: int = 0
    fcs: int = 0
    fop: int = 0
    fdp: int = 0
    fds: int = 0
    tag_writes: bool = True  # a write to ST(i) marks it valid (False: only pushes do)

    def copy(self) -> State:
        return replace(self, regs=list(self.regs))

    @property
    def top(self) -> int:
        return (self.fsw >> 11) & 7

    def phys(self, i: int) -> int:
        return (self.top + i) & 7

    def st(self, i: int) -> int:
        return self.regs[self.phys(i)]

    def is_empty(self, i: int) -> bool:
        return bool(self.empty >> self.phys(i) & 1)

    def set_st(self, i: int, v: int) -> None:
        p = self.phys(i)
        self.regs[p] = v
        if self.tag_writes:
            self.empty &= ~(1 << p)

    def push(self, v: int) -> None:
        self.fsw = (self.fsw & ~0x3800) | (((self.top - 1) & 7) << 11)
        self.regs[self.phys(0)] = v
        self.empty &= ~(1 << self.phys(0))

    def pop(self) -> None:
        self.empty |= 1 << self.phys(0)
        self.fsw = (self.fsw & ~0x3800) | (((self.top + 1) & 7) << 11)

    def tag_word(self) -> int:
        """The full tag word (valid 00, zero 01, special 10, empty 11)."""
        tw = 0
        for p in range(8):
            if self.empty >> p & 1:
                t = 3
            else:
                c = classify(self.regs[p])
                t = 0 if c == "normal" else 1 if c == "zero" else 2
            tw |= t << (2 * p)
        return tw


@dataclass
class Outcome:
    """What one instruction does: the state after it (or the state before, for a fault),
    the vector of the exception it raised (None), the bytes it wrote, and the status-word
    bits (C0-C3) the SDM leaves undefined after it."""

    state: State
    vector: int | None = None
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    undefined: int = 0


# Control instructions that do not wait (SDM Vol. 1, 8.3.11 and 8.6): no #MF check.
_NO_WAIT = {(0xDB, 0xE3), (0xDB, 0xE2), (0xDF, 0xE0), (0xDB, 0xE0), (0xDB, 0xE1), (0xDB, 0xE4)}
_NO_WAIT_MEM = {(0xD9, 6), (0xD9, 7), (0xDD, 6), (0xDD, 7)}  # FNSTENV FNSTCW FNSAVE FNSTSW


def waiting(esc: int, modrm: int) -> bool:
    """Does the instruction check for a pending unmasked exception first?"""
    if modrm >= 0xC0:
        return (esc, modrm) not in _NO_WAIT
    return (esc, (modrm >> 3) & 7) not in _NO_WAIT_MEM


class _Op:
    """Evaluation context of one instruction."""

    def __init__(self, s: State, read: object, dev: frozenset[str] = frozenset()) -> None:
        self.s = s.copy()
        self.before = s
        self.dev = dev
        self.divzero = False  # a division by a zero divisor (any dividend)
        self.keep_fcw = False  # the instruction loads FCW itself
        self.c1_explicit = False  # C1 written by a dedicated rule (FXAM, FINCSTP, FDECSTP)
        if "suppress" in dev:
            self.s.fcw |= 0x3F  # every response computed as if masked
        if "stack" in dev:
            self.s.tag_writes = False
        self.flags = 0  # exception flags raised
        self.c1: bool | None = False  # C1 to set (None: leave)
        self.cc: int | None = None  # C0 C2 C3 to set (None: leave)
        self.writes: list[tuple[int, bytes]] = []
        self.read = read
        self.undefined = 0

    def masked(self, flag: int) -> bool:
        return bool(self.s.fcw & flag)

    def e(self, i: int) -> bool:
        """Is ST(i) empty, as a stack-fault check sees it?"""
        return "stack" not in self.dev and self.s.is_empty(i)

    def e7(self) -> bool:
        """Is ST(7) empty for a push (always, when tags are not checked)?"""
        return "stack" in self.dev or self.s.is_empty(7)


def _quiet(v: int) -> int:
    return v | (1 << 62)


def _nan_pick(a: int, b: int) -> int:
    """The NaN result of two operands of which at least one is a NaN (SDM Vol. 1, table
    4-7): an SNaN and a QNaN give the QNaN; two of a kind the larger significand (the
    positive one on a tie), quieted."""
    ca, cb = classify(a), classify(b)
    if not is_nan(cb):
        return _quiet(a)
    if not is_nan(ca):
        return _quiet(b)
    if ca != cb:
        return a if ca == "qnan" else b
    sa, sb = a & M64, b & M64
    if sa != sb:
        return _quiet(a if sa > sb else b)
    return _quiet(a if not a >> 79 else b)


# ---- arithmetic ---------------------------------------------------------------------------

def _check_operands(op: _Op, vals: list[int]) -> int | None:
    """IE/DE for arithmetic operands: returns a NaN result (quiet NaN or indefinite) when
    the result is a NaN, else None. Sets the flags."""
    kinds = [classify(v) for v in vals]
    if "unsupported" in kinds:
        op.flags |= IE
        return INDEFINITE
    if "snan" in kinds:
        op.flags |= IE
    nans = [v for v, k in zip(vals, kinds, strict=True) if is_nan(k)]
    if nans:
        return _nan_pick(vals[0], vals[1]) if len(vals) == 2 else _quiet(vals[0])
    if any(k in ("denormal", "pseudo-denormal") for k in kinds):
        op.flags |= DE
    return None


def _zero_divide(a: int, b: int) -> bool:
    """Is a / b a division of a finite nonzero number by zero (#Z)?"""
    return classify(b) == "zero" and classify(a) in ("normal", "denormal", "pseudo-denormal")


def _inf(sign: int) -> int:
    return x80(sign, 0x7FFF, J)


def _zero(sign: int) -> int:
    return x80(sign, 0, 0)


def _sgn(v: int) -> int:
    return v >> 79 & 1


def _arith(op: _Op, kind: str, a: int, b: int, prec: int) -> int | None:
    """a kind b (add sub mul div; for sub/div a is the left operand). None: invalid result
    suppressed (unmasked); otherwise the result bits. Sets flags and C1."""
    if kind == "div":
        op.divzero = classify(b) == "zero"
    nan = _check_operands(op, [a, b])
    if nan is not None:
        return nan
    if kind == "div" and _zero_divide(a, b):
        op.flags &= ~DE  # #Z takes precedence over #D (SDM Vol. 1, 4.9.2, items 3, 4)
    if op.flags & DE & ~op.s.fcw:
        return None  # unmasked denormal: no result
    ka, kb = classify(a), classify(b)
    rc = (op.s.fcw >> 10) & 3
    ia, ib = ka == "inf", kb == "inf"
    za = ka == "zero"
    zb = kb == "zero"
    sa, sb = _sgn(a), _sgn(b)
    if kind in ("add", "sub"):
        if kind == "sub":
            sb ^= 1
        if ia and ib:
            if sa != sb:
                op.flags |= IE
                return INDEFINITE
            return _inf(sa)
        if ia:
            return _inf(sa)
        if ib:
            return _inf(sb)
        if ("pdenorm" in op.dev and sa == sb and parts(a)[1] == 0 and parts(b)[1] == 0
                and (a | b) & J and ((a & M64) + (b & M64)) >= 1 << 64):
            # The significand sum's carry is lost: what is left is read as a denormal.
            low = (a & M64) + (b & M64) - (1 << 64)
            if low == 0:
                return _zero(sa)
            x = Fraction(low) * Fraction(2) ** (1 - BIAS - 63)
            return _rounded(op, -x if sa else x, prec)
        x = to_fraction(a) + (to_fraction(b) if kind == "add" else -to_fraction(b))
        if x == 0:
            if za and zb and sa == sb:
                return _zero(sa)
            return _zero(1 if rc == RD else 0)
        return _rounded(op, x, prec)
    if kind == "mul":
        s = sa ^ sb
        if (ia and zb) or (ib and za):
            op.flags |= IE
            return INDEFINITE
        if ia or ib:
            return _inf(s)
        if za or zb:
            return _zero(s)
        return _rounded(op, to_fraction(a) * to_fraction(b), prec)
    # div
    s = sa ^ sb
    if (ia and ib) or (za and zb):
        op.flags |= IE
        return INDEFINITE
    if ia:
        return _inf(s)
    if ib:
        return _zero(s)
    if zb:
        op.flags |= ZE
        return _inf(s)
    if za:
        return _zero(s)
    return _rounded(op, to_fraction(a) / to_fraction(b), prec)


def _rounded(op: _Op, x: Fraction, prec: int) -> int:
    r = round80(x, prec, (op.s.fcw >> 10) & 3, op.s.fcw)
    op.flags |= r.flags
    op.c1 = r.c1
    return r.bits


def _suppressed(op: _Op) -> bool:
    """An unmasked invalid-operation, denormal or zero-divide exception: no result."""
    return bool(op.flags & (IE | DE | ZE) & ~op.s.fcw)


def _underflow(op: _Op) -> None:
    """Stack underflow: IE + SF, C1 = 0."""
    op.flags |= IE | SF
    op.c1 = False


def _overflow(op: _Op) -> None:
    op.flags |= IE | SF
    op.c1 = True


def _finish(op: _Op, undefined: int = 0) -> Outcome:
    s = op.s
    if "suppress" in op.dev and not op.keep_fcw:
        s.fcw = op.before.fcw
    if "flags" in op.dev:
        # Only the zero-divide check of FDIV/FDIVR/FIDIV/FIDIVR is reported (for every
        # zero divisor); C1 is not written; ES and B follow a newly raised flag.
        new = ZE if op.divzero else 0
        fsw = s.fsw | new
        if op.c1_explicit and op.c1 is not None:
            fsw = (fsw & ~C1) | (C1 if op.c1 else 0)
        if op.cc is not None:
            fsw = (fsw & ~(C0 | C2 | C3)) | op.cc
        if new & ~s.fcw:
            fsw |= ES | B
        s.fsw = fsw
        return Outcome(s, None, op.writes, undefined)
    fsw = s.fsw | op.flags
    if op.c1 is not None:
        fsw = (fsw & ~C1) | (C1 if op.c1 else 0)
    if op.cc is not None:
        fsw = (fsw & ~(C0 | C2 | C3)) | op.cc
    if fsw & 0x3F & ~s.fcw:
        fsw |= ES | B
    s.fsw = fsw
    return Outcome(s, None, op.writes, undefined)


# ---- memory formats -----------------------------------------------------------------------

def _load_real(op: _Op, data: bytes, fmt: str, keep_snan: bool = False) -> int:
    """A binary32/64 (or 80-bit) memory operand as a register value (exact). An SNaN
    raises IE and is quieted, unless ``keep_snan`` (an arithmetic source: the operation
    sees an SNaN operand, SDM Vol. 1, table 4-7) or the ``snanload`` deviation."""
    if fmt == "m80":
        return int.from_bytes(data, "little")
    bits = int.from_bytes(data, "little")
    if fmt == "m32":
        sign, e, f = bits >> 31, (bits >> 23) & 0xFF, bits & 0x7FFFFF
        ebits, fbits, bias = 8, 23, 127
    else:
        sign, e, f, ebits, fbits, bias = (bits >> 63, (bits >> 52) & 0x7FF,
                                          bits & ((1 << 52) - 1), 11, 52, 1023)
    emax = (1 << ebits) - 1
    if e == emax:
        if f == 0:
            return _inf(sign)
        v = x80(sign, 0x7FFF, J | (f << (63 - fbits)))
        if not f >> (fbits - 1):
            op.flags |= IE
            if not keep_snan and "snanload" not in op.dev:
                v = _quiet(v)
        return v
    if e == 0:
        if f == 0:
            return _zero(sign)
        op.flags |= DE
        x = Fraction(f) * Fraction(2) ** (1 - bias - fbits)
        return round80(-x if sign else x, 64, RN, 0x3F).bits
    return x80(sign, e - bias + BIAS, J | (f << (63 - fbits)))


def _store_real(op: _Op, v: int, fmt: str) -> bytes | None:
    """A register value converted for FST m32/m64 (None: nothing stored)."""
    k = classify(v)
    prec, ebits, size = (24, 8, 4) if fmt == "m32" else (53, 11, 8)
    fbits = prec - 1
    bias = (1 << (ebits - 1)) - 1
    emax = (1 << ebits) - 2
    sign = _sgn(v)
    if k == "unsupported":
        op.flags |= IE
        if not op.masked(IE):
            return None
        bits = (1 << (size * 8 - 1)) | (((1 << ebits) - 1) << fbits) | (1 << (fbits - 1))
        return bits.to_bytes(size, "little")
    if k == "snan" and "snanstore" in op.dev:
        f = ((v & M64) << 1 & M64) >> (64 - fbits)
        if f == 0:
            bits = (1 << (size * 8 - 1)) | (((1 << ebits) - 1) << fbits) | (1 << (fbits - 1))
        else:
            bits = (sign << (size * 8 - 1)) | (((1 << ebits) - 1) << fbits) | f
        return bits.to_bytes(size, "little")
    if is_nan(k):
        if k == "snan":
            op.flags |= IE
            if not op.masked(IE):
                return None
        f = ((v & M64) >> (63 - fbits)) & ((1 << fbits) - 1)
        f |= 1 << (fbits - 1)
        bits = (sign << (size * 8 - 1)) | (((1 << ebits) - 1) << fbits) | f
        return bits.to_bytes(size, "little")
    if k == "inf":
        return ((sign << (size * 8 - 1)) | (((1 << ebits) - 1) << fbits)).to_bytes(size, "little")
    if k == "zero":
        return (sign << (size * 8 - 1)).to_bytes(size, "little")
    rc = (op.s.fcw >> 10) & 3  # (no #D: SDM FST lists #IS #IA #U #O #P)
    x = to_fraction(v)
    s, be, n, inexact, tiny, over = round_format(x, prec, rc, bias, emax)
    if over:
        op.flags |= OE
        if not op.masked(OE):
            return None
        op.flags |= PE
    elif tiny and (inexact or not op.masked(UE)):
        op.flags |= UE
        if not op.masked(UE):
            return None
    if inexact:
        op.flags |= PE
        if be == emax + 1:
            op.c1 = True
        else:
            val = Fraction(n) * Fraction(2) ** ((be or 1) - bias - fbits)
            op.c1 = val > abs(x)
    bits = (s << (size * 8 - 1)) | (be << fbits) | (n & ((1 << fbits) - 1))
    return bits.to_bytes(size, "little")


def _store_int(op: _Op, v: int, size: int) -> bytes | None:
    k = classify(v)
    indef = INT_INDEF[size].to_bytes(size, "little")
    if k in ("unsupported", "snan", "qnan", "inf"):
        op.flags |= IE
        return indef if op.masked(IE) else None
    x = to_fraction(v)  # (no #D: SDM FIST lists #IS #IA #P)
    sign = 1 if x < 0 else 0
    rc = (op.s.fcw >> 10) & 3
    n = _round_int(abs(x), sign, rc)
    val = -n if sign else n
    lo, hi = -(1 << (size * 8 - 1)), (1 << (size * 8 - 1)) - 1
    if not lo <= val <= hi:
        op.flags |= IE
        return indef if op.masked(IE) else None
    if n != abs(x):
        op.flags |= PE
        op.c1 = n > abs(x)
    return (val & ((1 << (size * 8)) - 1)).to_bytes(size, "little")


def _load_bcd(data: bytes) -> int:
    val = 0
    for i in range(8, -1, -1):
        b = data[i]
        val = val * 100 + (b >> 4) * 10 + (b & 0xF)
    sign = data[9] >> 7
    if val == 0:
        return _zero(sign)
    x = Fraction(-val if sign else val)
    return round80(x, 64, RN, 0x3F).bits


def _qemu_bcd(op: _Op, v: int) -> bytes:
    """FBSTP without the 18-digit range check: the value converted to a 64-bit integer
    (by RC; NaN and positive overflow give 2^63 - 1, negative overflow -2^63), its sign
    byte, and its low 18 decimal digits (C division semantics for -2^63)."""
    k = classify(v)
    if k in ("snan", "qnan") or (k == "unsupported"):
        val = (1 << 63) - 1 if k != "unsupported" else -(1 << 63)
    elif k == "inf":
        val = -(1 << 63) if _sgn(v) else (1 << 63) - 1
    else:
        x = to_fraction(v)
        n = _round_int(abs(x), 1 if x < 0 else 0, (op.s.fcw >> 10) & 3)
        val = -n if x < 0 else n
        if val >= 1 << 63:
            val = (1 << 63) - 1
        elif val < -(1 << 63):
            val = -(1 << 63)
    out = bytearray(10)
    if val < 0:
        out[9] = 0x80
        val = -val
        if val == 1 << 63:
            val = -(1 << 63)  # int64 negation wraps
    i = 0
    while i < 9 and val != 0:
        q = abs(val) // 100 * (1 if val > 0 else -1)
        r = val - q * 100
        val = q
        t = abs(r) // 10 * (1 if r >= 0 else -1)
        u = r - t * 10
        out[i] = ((t << 4) | (u & 0xFFFFFFFF)) & 0xFF
        i += 1
    return bytes(out)


def _store_bcd(op: _Op, v: int) -> bytes | None:
    k = classify(v)
    if "bcdrange" in op.dev:
        if k in ("unsupported", "snan", "qnan", "inf"):
            return _qemu_bcd(op, v)
        x = to_fraction(v)
        if _round_int(abs(x), 1 if x < 0 else 0, (op.s.fcw >> 10) & 3) >= 10 ** 18:
            return _qemu_bcd(op, v)
    if k in ("unsupported", "snan", "qnan", "inf"):
        op.flags |= IE
        return BCD_INDEF if op.masked(IE) else None
    x = to_fraction(v)  # (no #D: SDM FBSTP lists #IS #IA #P)
    sign = _sgn(v)
    n = _round_int(abs(x), 1 if x < 0 else 0, (op.s.fcw >> 10) & 3)
    if n >= 10 ** 18:
        op.flags |= IE
        return BCD_INDEF if op.masked(IE) else None
    if n != abs(x):
        op.flags |= PE
        op.c1 = n > abs(x)
    out = bytearray(10)
    for i in range(9):
        lo, n = n % 10, n // 10
        hi, n = n % 10, n // 10
        out[i] = hi << 4 | lo
    if "bcdsign" in op.dev and n == 0:
        sign = 0
    out[9] = 0x80 if sign else 0
    return bytes(out)


# ---- the instructions ---------------------------------------------------------------------

_ARITH = ("add", "mul", "com", "comp", "sub", "subr", "div", "divr")


def _binary(op: _Op, name: str, dst: int, a: int, b: int, pop: bool) -> None:
    """dst (a stack index) = a name b at the precision control's precision."""
    prec = pc_bits(op.s.fcw)
    if name in ("sub", "div"):
        r = _arith(op, name, a, b, prec)
    elif name in ("subr", "divr"):
        r = _arith(op, name[:3], b, a, prec)
    else:
        r = _arith(op, name, a, b, prec)
    if _suppressed(op):
        op.c1 = None  # no result: C1 as it was
        return
    assert r is not None
    if r is None or (r == INDEFINITE and op.flags & IE and not op.masked(IE)):
        op.c1 = None
        return
    op.s.set_st(dst, r)
    if pop:
        op.s.pop()


def _compare(op: _Op, a: int, b: int, unordered_ok: bool) -> tuple[int, bool] | None:
    """(relation, unordered): relation is the C3 C2 C0 code. None when an unmasked IE
    suppresses the result. unordered_ok: FUCOM (QNaN operands raise no IE)."""
    ka, kb = classify(a), classify(b)
    if "unsupported" in (ka, kb) or "snan" in (ka, kb) or (
            not unordered_ok and (is_nan(ka) or is_nan(kb))):
        op.flags |= IE
    if is_nan(ka) or is_nan(kb) or "unsupported" in (ka, kb):
        res = C3 | C2 | C0
    else:
        if ka in ("denormal", "pseudo-denormal") or kb in ("denormal", "pseudo-denormal"):
            op.flags |= DE
        fa = _ext(a)
        fb = _ext(b)
        res = 0 if fa > fb else C0 if fa < fb else C3
    if op.flags & (IE | DE) & ~op.s.fcw:
        return None
    return res, res == C3 | C2 | C0


def _ext(v: int) -> Fraction | float:
    k = classify(v)
    if k == "inf":
        return float("-inf") if _sgn(v) else float("inf")
    return to_fraction(v)


def _eflags_from(res: int, eflags: int) -> int:
    f = eflags & ~(F_CF | F_PF | F_ZF | F_AF | F_SF | F_OF)
    if res & C0:
        f |= F_CF
    if res & C2:
        f |= F_PF
    if res & C3:
        f |= F_ZF
    return f


def _fcmov_cond(esc: int, reg: int, eflags: int) -> bool:
    cf, zf, pf = eflags & F_CF, eflags & F_ZF, eflags & F_PF
    c = [bool(cf), bool(zf), bool(cf or zf), bool(pf)][reg]
    return c if esc == 0xDA else not c


def step(s: State, code: bytes, read: object, dev: frozenset[str] = frozenset()
         ) -> Outcome | None:
    """The outcome of one x87 instruction (no prefixes; memory operands [EBX+disp8] or
    [EBX]) from state ``s``. ``read(addr, n)`` gives memory bytes (the address is the
    offset: flat segments). None: not modelled."""
    esc = code[0]
    if esc == 0x9B:  # FWAIT
        if s.fsw & ES:
            return Outcome(s.copy(), MF)
        return Outcome(s.copy())
    if not 0xD8 <= esc <= 0xDF or len(code) < 2:
        return None
    modrm = code[1]
    if waiting(esc, modrm) and s.fsw & ES and "mf" not in dev:
        return Outcome(s.copy(), MF)
    if _control(esc, modrm):
        dev = dev - {"suppress"}
    op = _Op(s, read, dev)
    if modrm >= 0xC0:
        out = _register_form(op, esc, modrm)
    else:
        out = _memory_form_at(op, esc, modrm, code)
    if out is not None:
        _pointers(out.state, s, code, esc, modrm)
    return out


def _control(esc: int, modrm: int) -> bool:
    """The control instructions (SDM Vol. 1, 8.3.13): FNINIT FNCLEX FLDCW FNSTCW FNSTSW
    FLDENV FNSTENV FRSTOR FNSAVE FINCSTP FDECSTP FFREE FNOP (and FWAIT)."""
    if modrm >= 0xC0:
        return (esc, modrm) in ((0xDB, 0xE3), (0xDB, 0xE2), (0xDF, 0xE0), (0xD9, 0xF6),
                                (0xD9, 0xF7), (0xD9, 0xD0)) or (esc == 0xDD and modrm < 0xC8)
    return esc in (0xD9, 0xDD) and (modrm >> 3) & 7 in (4, 5, 6, 7) and not (
        esc == 0xDD and (modrm >> 3) & 7 == 5)


def _pointers(after: State, before: State, code: bytes, esc: int, modrm: int) -> None:
    """FIP/FCS/FOP (and FDP/FDS with a memory operand) of a non-control instruction
    (SDM Vol. 1, 8.1.8): the caller's ``eip`` of the instruction is ``before.fip_next``."""
    if _control(esc, modrm) or after is before:
        return
    if (esc, modrm) == (0xDB, 0xE3):
        return
    after.fip, after.fcs = before.eip_now, 0x08
    after.fop = ((esc & 7) << 8) | modrm
    if modrm < 0xC0:
        after.fdp, after.fds = _ea(before, code), 0x10


def _ea(s: State, code: bytes) -> int:
    mod = code[1] >> 6
    if mod == 1:
        disp = code[2] - 256 if code[2] & 0x80 else code[2]
    elif mod == 2:
        disp = int.from_bytes(code[2:6], "little", signed=True)
    else:
        disp = 0
    return (s.ebx + disp) & 0xFFFFFFFF


def _memory_form_at(op: _Op, esc: int, modrm: int, code: bytes) -> Outcome | None:
    s = op.s
    if modrm & 7 != 3:
        return None
    return _memory_form(op, esc, (modrm >> 3) & 7, _ea(s, code))


_MEM_ARITH = {0xD8: "m32", 0xDC: "m64", 0xDA: "i32", 0xDE: "i16"}
U_ARITH = C0 | C2 | C3  # C0, C2, C3 undefined after arithmetic, loads, stores ...
U_ALL = CC


def _mem_operand(op: _Op, fmt: str, addr: int, keep_snan: bool = False) -> int:
    size = {"m32": 4, "m64": 8, "m80": 10, "i16": 2, "i32": 4, "i64": 8, "bcd": 10}[fmt]
    data = op.read(addr, size)  # type: ignore[operator]
    if fmt in ("m32", "m64", "m80"):
        return _load_real(op, data, fmt, keep_snan)
    if fmt == "bcd":
        return _load_bcd(data)
    n = int.from_bytes(data, "little", signed=True)
    if n == 0:
        return _zero(0)
    return round80(Fraction(n), 64, RN, 0x3F).bits


def _memory_form(op: _Op, esc: int, reg: int, addr: int) -> Outcome | None:
    s = op.s
    if esc in _MEM_ARITH:
        name = _ARITH[reg]
        if op.e(0):
            _underflow(op)
            if name in ("com", "comp"):
                op.cc = C3 | C2 | C0
            if op.masked(IE):
                if name in ("com", "comp"):
                    if name == "comp":
                        s.pop()
                else:
                    s.set_st(0, INDEFINITE)
            elif name in ("com", "comp"):
                op.cc = None
            return _finish(op, 0 if name in ("com", "comp") else U_ARITH)
        b = _mem_operand(op, _MEM_ARITH[esc], addr, keep_snan=True)
        if name in ("com", "comp"):
            if op.flags & (IE | DE) & ~s.fcw:
                if classify(s.st(0)) in ("snan", "unsupported", "qnan"):
                    op.flags |= IE
                op.c1 = None
                return _finish(op)
            r = _compare(op, s.st(0), b, False)
            if r is not None:
                op.cc = r[0]
                if name == "comp":
                    s.pop()
            else:
                op.c1 = None
            return _finish(op)
        if name in ("div", "divr") and _zero_divide(*((s.st(0), b) if name == "div"
                                                       else (b, s.st(0)))):
            op.flags &= ~DE  # #Z takes precedence over #D (SDM Vol. 1, 4.9.2, items 3, 4)
        if op.flags & (IE | DE) & ~s.fcw:  # a load exception, unmasked
            if classify(s.st(0)) in ("snan", "unsupported"):
                op.flags |= IE
            op.c1 = None
            return _finish(op, U_ARITH)
        _binary(op, name, 0, s.st(0), b, False)
        return _finish(op, U_ARITH)
    key = (esc, reg)
    loads = {(0xD9, 0): "m32", (0xDD, 0): "m64", (0xDB, 5): "m80", (0xDF, 0): "i16",
             (0xDB, 0): "i32", (0xDF, 5): "i64", (0xDF, 4): "bcd"}
    if key in loads:
        if not op.e7():
            _overflow(op)
            if op.masked(IE):
                s.push(INDEFINITE)
            return _finish(op, U_ARITH)
        v = _mem_operand(op, loads[key], addr)
        if op.flags & (IE | DE) & ~s.fcw:
            op.c1 = None  # nothing loaded: C1 as it was
            return _finish(op, U_ARITH)
        s.push(v)
        return _finish(op, U_ARITH)
    stores = {(0xD9, 2): ("m32", False), (0xD9, 3): ("m32", True), (0xDD, 2): ("m64", False),
              (0xDD, 3): ("m64", True), (0xDB, 7): ("m80", True), (0xDF, 2): ("i16", False),
              (0xDF, 3): ("i16", True), (0xDB, 2): ("i32", False), (0xDB, 3): ("i32", True),
              (0xDF, 7): ("i64", True), (0xDF, 6): ("bcd", True)}
    if key in stores:
        fmt, pop = stores[key]
        if op.e(0):
            _underflow(op)
            if op.masked(IE):
                data = {"m32": bytes.fromhex("0000c0ff"), "m64": bytes.fromhex("000000000000f8ff"),
                        "m80": INDEFINITE.to_bytes(10, "little"),
                        "i16": INT_INDEF[2].to_bytes(2, "little"),
                        "i32": INT_INDEF[4].to_bytes(4, "little"),
                        "i64": INT_INDEF[8].to_bytes(8, "little"), "bcd": BCD_INDEF}[fmt]
                op.writes.append((addr, data))
                if pop:
                    s.pop()
            return _finish(op, U_ARITH)
        v = s.st(0)
        if fmt == "m80":
            out: bytes | None = v.to_bytes(10, "little")
        elif fmt in ("m32", "m64"):
            out = _store_real(op, v, fmt)
        elif fmt == "bcd":
            out = _store_bcd(op, v)
        else:
            out = _store_int(op, v, {"i16": 2, "i32": 4, "i64": 8}[fmt])
        if out is None:
            return _finish(op, U_ARITH)
        op.writes.append((addr, out))
        if pop:
            s.pop()
        return _finish(op, U_ARITH)
    if key == (0xD9, 5):  # FLDCW
        cw = int.from_bytes(op.read(addr, 2), "little")  # type: ignore[operator]
        s.fcw = cw if "bit6" in op.dev else cw | 0x40
        op.keep_fcw = True
        op.c1 = None
        s.fsw &= ~(ES | B)
        return _finish(op, U_ALL)
    if key == (0xD9, 7):  # FNSTCW
        op.writes.append((addr, s.fcw.to_bytes(2, "little")))
        op.c1 = None
        return _finish(op, U_ALL)
    if key == (0xDD, 7):  # FNSTSW m16
        op.writes.append((addr, s.fsw.to_bytes(2, "little")))
        op.c1 = None
        return _finish(op, U_ALL)
    if key in ((0xD9, 6), (0xDD, 6)):  # FNSTENV / FNSAVE (32-bit protected-mode layout)
        env = _env32(s, "env" in op.dev)
        if key == (0xD9, 6):
            op.writes.append((addr, env))
            if "envmask" not in op.dev:
                s.fcw |= 0x3F  # masks all exceptions; ES and B clear (as in Bochs)
                s.fsw &= ~(ES | B)
        else:
            regs = b"".join(s.st(i).to_bytes(10, "little") for i in range(8))
            op.writes.append((addr, env + regs))
            s.fcw, s.fsw, s.empty = 0x037F, 0, 0xFF
            s.fip = s.fcs = s.fop = s.fdp = s.fds = 0
        op.c1 = None
        return Outcome(s, None, op.writes, 0)
    if key in ((0xD9, 4), (0xDD, 4)):  # FLDENV / FRSTOR
        env = op.read(addr, 28)  # type: ignore[operator]
        s.fcw = int.from_bytes(env[0:2], "little") | (0 if "bit6" in op.dev else 0x40)
        s.fsw = int.from_bytes(env[4:6], "little")
        tw = int.from_bytes(env[8:10], "little")
        s.empty = sum(1 << p for p in range(8) if (tw >> (2 * p)) & 3 == 3)
        s.fip = int.from_bytes(env[12:16], "little")
        s.fcs = int.from_bytes(env[16:18], "little")
        s.fop = int.from_bytes(env[18:20], "little") & 0x7FF
        s.fdp = int.from_bytes(env[20:24], "little")
        s.fds = int.from_bytes(env[24:26], "little")
        if key == (0xDD, 4):
            data = op.read(addr + 28, 80)  # type: ignore[operator]
            for i in range(8):
                s.regs[s.phys(i)] = int.from_bytes(data[10 * i:10 * i + 10], "little")
        return Outcome(s, None, op.writes, 0)
    return None


def _env32(s: State, zeros: bool = False) -> bytes:
    """The 28-byte 32-bit protected-mode environment (SDM Vol. 1, figure 8-9); reserved
    halves FFFFh (docs/fpu.md). ``zeros``: reserved halves and FOP as 0."""
    if zeros:
        words = [s.fcw, s.fsw, s.tag_word(), s.fip, s.fcs, s.fdp, s.fds]
    else:
        words = [s.fcw | 0xFFFF0000, s.fsw | 0xFFFF0000, s.tag_word() | 0xFFFF0000, s.fip,
                 s.fcs | (s.fop << 16), s.fdp, s.fds | 0xFFFF0000]
    return b"".join(w.to_bytes(4, "little") for w in words)


def _register_form(op: _Op, esc: int, modrm: int) -> Outcome | None:
    s = op.s
    reg, i = (modrm >> 3) & 7, modrm & 7
    if esc == 0xDE and reg == 2:  # FCOMP5 (alias of FCOMP)
        return _fcom(op, i, 1, False, 0)
    if esc == 0xDE and reg == 3:
        return _fcom(op, 1, 2, False, 0) if i == 1 else None  # FCOMPP
    if esc in (0xD8, 0xDC, 0xDE):
        name = _ARITH[reg]
        if esc == 0xDC and name in ("sub", "subr", "div", "divr"):
            name = {"sub": "subr", "subr": "sub", "div": "divr", "divr": "div"}[name]
        if esc == 0xDE and name in ("sub", "subr", "div", "divr"):
            name = {"sub": "subr", "subr": "sub", "div": "divr", "divr": "div"}[name]
        if name in ("com", "comp"):
            pops = 1 if name == "comp" else 0
            return _fcom(op, i, pops, False, 0)
        dst = 0 if esc == 0xD8 else i
        pop = esc == 0xDE
        if op.e(0) or op.e(i):
            _underflow(op)
            if op.masked(IE):
                s.set_st(dst, INDEFINITE)
                if pop:
                    s.pop()
            return _finish(op, U_ARITH)
        if esc == 0xD8:
            _binary(op, name, 0, s.st(0), s.st(i), False)
        else:
            _binary(op, name, i, s.st(i), s.st(0), pop)
        return _finish(op, U_ARITH)
    if esc == 0xDE and modrm == 0xD9:  # FCOMPP
        return _fcom(op, 1, 2, False, 0)
    if esc == 0xDA and modrm == 0xE9:  # FUCOMPP
        return _fcom(op, 1, 2, True, 0)
    if esc == 0xDD and reg in (4, 5):  # FUCOM / FUCOMP
        return _fcom(op, i, reg - 4, True, 0)
    if esc in (0xDB, 0xDF) and reg in (5, 6):  # FUCOMI(P) / FCOMI(P)
        return _fcom(op, i, 1 if esc == 0xDF else 0, reg == 5, 1)
    if esc in (0xDA, 0xDB) and reg < 4:  # FCMOVcc
        if op.e(0) or op.e(i):
            _underflow(op)
            if op.masked(IE):  # whether or not the condition holds (docs/fpu.md)
                s.set_st(0, INDEFINITE)
            return _finish(op, U_ARITH)
        if _fcmov_cond(esc, reg, s.eflags):
            s.set_st(0, s.st(i))
        return _finish(op, U_ARITH)
    if esc == 0xD9 and reg == 0:  # FLD ST(i)
        if not op.e7():
            _overflow(op)
            if op.masked(IE):
                s.push(INDEFINITE)
            return _finish(op, U_ARITH)
        if op.e(i):
            _underflow(op)
            if op.masked(IE):
                s.push(INDEFINITE)
            return _finish(op, U_ARITH)
        s.push(s.st(i))
        return _finish(op, U_ARITH)
    if esc == 0xD9 and reg == 1:  # FXCH
        if op.e(0) or op.e(i):
            _underflow(op)
            if op.masked(IE):
                a = INDEFINITE if op.e(0) else s.st(0)
                b = INDEFINITE if op.e(i) else s.st(i)
                s.set_st(0, b)
                s.set_st(i, a)
            return _finish(op, U_ARITH)
        a, b = s.st(0), s.st(i)
        s.set_st(0, b)
        s.set_st(i, a)
        return _finish(op, U_ARITH)
    if esc == 0xDD and reg in (2, 3):  # FST / FSTP ST(i)
        if op.e(0):
            _underflow(op)
            if op.masked(IE):
                s.set_st(i, INDEFINITE)
                if reg == 3:
                    s.pop()
            return _finish(op, U_ARITH)
        s.set_st(i, s.st(0))
        if reg == 3:
            s.pop()
        return _finish(op, U_ARITH)
    if esc == 0xDD and reg == 0:  # FFREE
        s.empty |= 1 << s.phys(i)
        op.c1 = None
        return _finish(op, U_ALL)
    if esc == 0xDF and modrm == 0xE0:  # FNSTSW AX
        s.eax = (s.eax & ~0xFFFF) | s.fsw
        return Outcome(s, None, [], 0)
    if esc == 0xDB and modrm == 0xE2:  # FNCLEX
        s.fsw &= ~(0x80FF)
        return Outcome(s, None, [], U_ALL)
    if esc == 0xDB and modrm == 0xE3:  # FNINIT
        s.fcw, s.fsw, s.empty = 0x037F, 0, 0xFF
        s.fip = s.fcs = s.fop = s.fdp = s.fds = 0
        return Outcome(s, None, [], 0)
    if esc == 0xD9:
        return _d9(op, modrm)
    return None


def _fcom(op: _Op, i: int, pops: int, unordered: bool, eflags: int) -> Outcome:
    s = op.s
    if op.e(0) or op.e(i):
        _underflow(op)
        if op.masked(IE):
            if eflags:
                s.eflags = _eflags_from(C3 | C2 | C0, s.eflags)
            else:
                op.cc = C3 | C2 | C0
            for _ in range(pops):
                s.pop()
        return _finish(op)
    r = _compare(op, s.st(0), s.st(i), unordered)
    if r is None:
        op.c1 = None
    if r is not None:
        if eflags:
            s.eflags = _eflags_from(r[0], s.eflags)
        else:
            op.cc = r[0]
        for _ in range(pops):
            s.pop()
    return _finish(op)


_CONST = {0xE8: "1", 0xE9: "l2t", 0xEA: "l2e", 0xEB: "pi", 0xEC: "lg2", 0xED: "ln2", 0xEE: "0"}


def _d9(op: _Op, modrm: int) -> Outcome | None:
    s = op.s
    rc = (s.fcw >> 10) & 3
    if modrm in _CONST:
        if not op.e7():
            _overflow(op)
            if op.masked(IE):
                s.push(INDEFINITE)
            return _finish(op, U_ARITH)
        c = _CONST[modrm]
        if c == "0":
            v = _zero(0)
        elif c == "1":
            v = x80(0, BIAS, J)
        else:
            crc = RN if "const" in op.dev else rc
            _, be, n, _, _, _ = round_format(CONSTANTS[c], 64, crc, BIAS, 0x7FFE)
            v = x80(0, be, n)
        s.push(v)
        return _finish(op, U_ARITH)
    if modrm == 0xD0:  # FNOP
        return Outcome(s, None, [], 0)
    if modrm in (0xF6, 0xF7):  # FDECSTP / FINCSTP
        d = -1 if modrm == 0xF6 else 1
        s.fsw = (s.fsw & ~0x3800) | (((s.top + d) & 7) << 11)
        op.c1_explicit = True
        return _finish(op, U_ARITH)
    if modrm == 0xE5:  # FXAM
        v = s.st(0)
        if s.is_empty(0):
            cc = C3 | C0
        else:
            cc = {"unsupported": 0, "snan": C0, "qnan": C0, "normal": C2, "inf": C2 | C0,
                  "zero": C3, "denormal": C3 | C2, "pseudo-denormal": C3 | C2}[classify(v)]
            if "fxam" in op.dev and classify(v) == "unsupported":
                cc = C0 if parts(v)[1] == 0x7FFF else C2  # as a NaN / as a normal
        op.cc = cc
        op.c1 = bool(_sgn(v))
        op.c1_explicit = True
        return _finish(op)
    if op.e(0) and modrm in (0xE0, 0xE1, 0xE4, 0xFA, 0xFC, 0xFD, 0xF4, 0xF8, 0xF5):
        _underflow(op)
        if modrm == 0xE4:
            op.cc = C3 | C2 | C0
            if not op.masked(IE):
                op.cc = None
            return _finish(op)
        if op.masked(IE):
            if modrm == 0xF4:  # FXTRACT
                if not s.is_empty(7):
                    pass
                s.set_st(0, INDEFINITE)
                s.push(INDEFINITE)
            else:
                s.set_st(0, INDEFINITE)
        if modrm in (0xF8, 0xF5):
            return _finish(op, C0 | C3 | C2)
        return _finish(op, U_ARITH)
    if modrm in (0xE0, 0xE1):  # FCHS FABS
        v = s.st(0)
        s.set_st(0, v ^ (1 << 79) if modrm == 0xE0 else v & ~(1 << 79))
        return _finish(op, U_ARITH)
    if modrm == 0xE4:  # FTST
        r = _compare(op, s.st(0), _zero(0), False)
        if r is not None:
            op.cc = r[0]
        else:
            op.c1 = None  # unmasked exception: no result, C1 as it was
        return _finish(op)
    if modrm == 0xFA:  # FSQRT
        v = s.st(0)
        nan = _check_operands(op, [v])
        k = classify(v)
        if _sgn(v) and k in ("denormal", "pseudo-denormal"):
            # The square root of a negative number is invalid, which takes precedence
            # over the denormal operand: #IA alone (SDM Vol. 1, 4.9.2, items 3 and 4).
            op.flags &= ~DE
        if op.flags & DE & ~s.fcw:
            op.c1 = None
            return _finish(op, U_ARITH)
        if nan is not None:
            r = nan
        elif k == "zero":
            r = v
        elif k == "inf":
            if _sgn(v):
                op.flags |= IE
                r = INDEFINITE
            else:
                r = v
        elif _sgn(v):
            op.flags |= IE
            r = INDEFINITE
        else:
            r = _sqrt_round(op, to_fraction(v), pc_bits(s.fcw))
        if not _suppressed(op):
            s.set_st(0, r)
        else:
            op.c1 = None
        if "fsqrt" in op.dev and _sgn(v):
            out = _finish(op, U_ARITH)
            out.state.fsw = (out.state.fsw & ~(C0 | C1 | C3)) | C2
            return out
        return _finish(op, U_ARITH)
    if modrm == 0xFC:  # FRNDINT
        v = s.st(0)
        nan = _check_operands(op, [v])
        k = classify(v)
        if op.flags & DE & ~s.fcw:
            op.c1 = None
            return _finish(op, U_ARITH)
        if nan is not None:
            r = nan
        elif k in ("zero", "inf"):
            r = v
        else:
            x = to_fraction(v)
            n = _round_int(abs(x), _sgn(v), rc)
            if n != abs(x):
                op.flags |= PE
                op.c1 = n > abs(x)
            r = _zero(_sgn(v)) if n == 0 else round80(
                Fraction(-n if _sgn(v) else n), 64, RN, 0x3F).bits
        if not _suppressed(op):
            s.set_st(0, r)
        else:
            op.c1 = None
        return _finish(op, U_ARITH)
    if modrm == 0xF4:  # FXTRACT
        return _fxtract(op)
    if modrm == 0xFD:  # FSCALE
        return _fscale(op)
    if modrm in (0xF8, 0xF5):  # FPREM, FPREM1
        return _fprem(op, modrm == 0xF5)
    return None


def _fxtract(op: _Op) -> Outcome:
    s = op.s
    if "fxtract" in op.dev and not op.e(0) and op.e7():
        v = s.st(0)
        sign, e, sig = parts(v)
        if e == 0 and sig == 0:
            s.set_st(0, _inf(1))
            s.push(v)
        else:
            n = e - BIAS
            s.set_st(0, _zero(0) if n == 0 else round80(Fraction(n), 64, RN, 0x3F).bits)
            s.push(x80(sign, BIAS, sig))
        return _finish(op, U_ARITH)
    if not op.e7():
        _overflow(op)
        if op.masked(IE):
            s.set_st(0, INDEFINITE)
            s.push(INDEFINITE)
        return _finish(op, U_ARITH)
    v = s.st(0)
    k = classify(v)
    nan = _check_operands(op, [v])
    if nan is not None:
        exp_part, sig_part = nan, nan
    elif k == "zero":
        op.flags |= ZE
        exp_part, sig_part = _inf(1), v
    elif k == "inf":
        exp_part, sig_part = _inf(0), v
    else:
        x = abs(to_fraction(v))
        e = _ilog2(x)
        exp_part = _zero(0) if e == 0 else round80(Fraction(e), 64, RN, 0x3F).bits
        sig_part = round80(x / Fraction(2) ** e, 64, RN, 0x3F).bits | (_sgn(v) << 79)
    if _suppressed(op):
        op.c1 = None
        return _finish(op, U_ARITH)
    s.set_st(0, exp_part)
    s.push(sig_part)
    return _finish(op, U_ARITH)


def _fscale(op: _Op) -> Outcome:
    s = op.s
    if op.e(1):
        _underflow(op)
        if op.masked(IE):
            s.set_st(0, INDEFINITE)
        return _finish(op, U_ARITH)
    a, b = s.st(0), s.st(1)
    if "fscale" in op.dev and parts(b)[1] == 0x7FFF and (b << 1) & M64:
        s.set_st(0, b)  # ST(1) copied as it is
        return _finish(op, U_ARITH)
    if ("fscaleint" in op.dev and (classify(b) == "inf" or (
            classify(b) == "unsupported" and not (parts(b)[1] == 0x7FFF and (b << 1) & M64)))
            and classify(a) in ("zero", "denormal", "pseudo-denormal", "normal", "inf")):
        # ST(1) converted to a 32-bit integer whatever it holds: an unnormal or
        # pseudo-infinity gives the integer indefinite -2^31, an infinity +-2^31 saturated;
        # clamped to +-65536, ST(0) is scaled by it (a zero or infinity is kept).
        if classify(b) == "unsupported":
            op.flags |= IE
            n = -65536
        else:
            n = -65536 if _sgn(b) else 65536
        if classify(a) in ("zero", "inf"):
            r = a
        else:
            prec = pc_bits(s.fcw) if "pcscale" in op.dev else 64
            r = _rounded(op, to_fraction(a) * Fraction(2) ** n, prec)
        s.set_st(0, r)
        return _finish(op, U_ARITH)
    nan = _check_operands(op, [a, b])
    ka, kb = classify(a), classify(b)
    r: int | None
    if nan is not None:
        r = nan
    elif kb == "inf":
        if _sgn(b):
            if ka == "inf":
                op.flags |= IE
                r = INDEFINITE
            else:
                r = _zero(_sgn(a))
        elif ka == "zero":
            op.flags |= IE
            r = INDEFINITE
        else:
            r = _inf(_sgn(a))
    elif ka in ("zero", "inf"):
        r = a
    else:
        n = int(to_fraction(b))  # truncated toward zero
        n = max(-70000, min(70000, n))
        prec = pc_bits(s.fcw) if "pcscale" in op.dev else 64  # PC does not apply (SDM 8.1.5.2)
        r = _rounded(op, to_fraction(a) * Fraction(2) ** n, prec)
    if _suppressed(op):
        op.c1 = None
        return _finish(op, U_ARITH)
    s.set_st(0, r)
    return _finish(op, U_ARITH)


def _fprem(op: _Op, ieee: bool) -> Outcome:
    """FPREM / FPREM1 (SDM Vol. 2): exact; partial remainders reduce the exponent
    difference D >= 64 by D - N with N = 32 + ((D - 32) mod 32) (docs/fpu.md)."""
    s = op.s
    if op.e(1):
        _underflow(op)
        if op.masked(IE):
            s.set_st(0, INDEFINITE)
        return _finish(op, C0 | C3 | C2)
    a, b = s.st(0), s.st(1)
    nan = _check_operands(op, [a, b])
    ka, kb = classify(a), classify(b)
    und = 0
    if nan is not None:
        r = nan
        op.cc, op.c1 = 0, False
    elif ka == "inf" or kb == "zero":
        op.flags |= IE
        r = INDEFINITE
        op.cc, op.c1 = 0, False
    elif kb == "inf" or ka == "zero":
        r = a
        op.cc = 0
    else:
        x, y = to_fraction(a), to_fraction(b)
        d = _ilog2(abs(x)) - _ilog2(abs(y))
        if d < 64:
            q = x / y
            n = _round_int(abs(q), 0, RN if ieee else RZ)
            qs = -n if q < 0 else n
            rem = x - qs * y
            op.cc = (C0 if n & 4 else 0) | (C3 if n & 2 else 0)
            c1 = bool(n & 1)
        else:
            nn = 32 + ((d - 32) % 32)
            scale = Fraction(2) ** (d - nn)
            q = x / y / scale
            n = _round_int(abs(q), 0, RZ)
            qs = -n if q < 0 else n
            rem = x - qs * y * scale
            op.cc = C2
            c1 = False
            und = C0 | C1 | C3
        if rem == 0:
            r = _zero(_sgn(a))
        else:
            r = _rounded(op, rem, 64)
        op.c1 = c1
    if _suppressed(op):
        op.c1 = None
        op.cc = None
        return _finish(op, C0 | C3 | C2)
    s.set_st(0, r)
    return _finish(op, und)


def _isqrt_frac(x: Fraction, prec: int, rc: int, fcw: int) -> Rounded:
    """sqrt(x) (x > 0 exact) correctly rounded: scale so the root has prec + 2 + guard
    integer bits, and decide with the exact integer remainder."""
    e = _ilog2(x)
    shift = 2 * (prec + 4) - e
    shift += shift & 1
    scaled = x * Fraction(2) ** shift  # root about 2^(prec + 4)
    n = scaled.numerator // scaled.denominator
    exact = scaled.denominator == 1
    from math import isqrt
    r = isqrt(n)
    inexact = not exact or r * r != n
    # sqrt(x) = (r + f) 2^(-shift/2) with 0 <= f < 1; inexact means f > 0.
    lo = Fraction(r) * Fraction(2) ** (-shift // 2)
    if not inexact:
        return round80(lo, prec, rc, fcw)
    # The root is strictly between lo and lo + 1 quantum of 2^-(shift/2); that quantum is
    # far below the rounding quantum, so rounding lo + half a quantum decides correctly
    # (never a tie: a root of a rational is never on it at this scale).
    mid = (Fraction(2 * r + 1)) * Fraction(2) ** (-shift // 2 - 1)
    res = round80(mid, prec, rc, fcw)
    res.flags |= PE
    return res


def _sqrt_round(op: _Op, x: Fraction, prec: int) -> int:
    r = _isqrt_frac(x, prec, (op.s.fcw >> 10) & 3, op.s.fcw)
    op.flags |= r.flags
    op.c1 = r.c1
    return r.bits
