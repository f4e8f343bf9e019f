"""High-precision references for the x87 transcendental instructions (Python ``decimal``
at 80 digits), as the ``fpu`` campaign judges them: not against Unicorn (QEMU computes
them in host double precision) but against the bound docs/fpu.md states, 1 ulp of the
64-bit significand (SDM Vol. 1, 8.3.10).

FSIN, FCOS, FSINCOS and FPTAN reduce their argument with the P6's 66-bit pi (SDM Vol. 1,
8.3.8), so the reference reduces with that pi too.

:func:`judge` returns None when the instruction's operands are outside what it checks
(special operands, empty registers, operands outside the SDM's domain, unmasked
exceptions), else a list of problems (empty when the result is within the bound, C1 says
on which side of the exact value it lies, and the stack, tags and exception flags are what
the SDM says).

Invariant: no import of aero.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction

from .x87model import (
    BIAS,
    C1,
    C2,
    CC,
    DE,
    ES,
    IE,
    OE,
    PE,
    SF,
    UE,
    ZE,
    State,
    classify,
    to_fraction,
)

__all__ = ["PI66", "PREC", "TRANSCENDENTAL", "atan", "dec", "judge", "pi", "sin_cos", "ulp_error"]

PI66 = Fraction(0x3243F6A8885A308D3, 1 << 64)  # pi rounded to 66 significant bits
PREC = 80
# D9 F0-FF rows: name, operands read (ST0 only or ST0 and ST1).
TRANSCENDENTAL = {0xF0: "f2xm1", 0xF1: "fyl2x", 0xF2: "fptan", 0xF3: "fpatan",
                  0xF9: "fyl2xp1", 0xFB: "fsincos", 0xFE: "fsin", 0xFF: "fcos"}
MAX_ULP = Fraction(1) + Fraction(1, 10 ** 20)  # 1 ulp; the reference carries 80 digits


def dec(x: Fraction) -> Decimal:
    return Decimal(x.numerator) / Decimal(x.denominator)


def atan(x: Decimal) -> Decimal:
    with localcontext() as c:
        c.prec = PREC + 10
        if abs(x) > Decimal("0.5"):
            return 2 * atan(x / (1 + (1 + x * x).sqrt()))
        s, t, k, x2 = Decimal(0), x, 1, x * x
        while True:
            term = t / k
            if abs(term) < Decimal(10) ** -(PREC + 5) * max(abs(s), Decimal(10) ** -4000):
                return s + term
            s += term
            t *= -x2
            k += 2


def pi() -> Decimal:
    with localcontext() as c:
        c.prec = PREC + 10
        return 16 * atan(Decimal(1) / 5) - 4 * atan(Decimal(1) / 239)


def sin_cos(r: Decimal) -> tuple[Decimal, Decimal]:
    with localcontext() as c:
        c.prec = PREC + 10
        tiny = Decimal(10) ** -(PREC + 5)
        s, t, n = Decimal(0), r, 1
        while t != 0 and abs(t) > tiny * abs(s + t):
            s += t
            t = -t * r * r / ((n + 1) * (n + 2))
            n += 2
        co, t, n = Decimal(0), Decimal(1), 0
        while t != 0 and abs(t) > tiny * abs(co + t):
            co += t
            t = -t * r * r / ((n + 1) * (n + 2))
            n += 2
        return s, co


def ulp_error(got: int, ref: Decimal) -> Fraction:
    """|got - ref| in units of the last place of the 64-bit significand of ref."""
    if classify(got) not in ("normal", "zero", "denormal"):
        return Fraction(10 ** 9)
    value = to_fraction(got)
    exact = Fraction(ref)
    if exact == 0:
        return Fraction(0) if value == 0 else Fraction(10 ** 9)
    a = abs(exact)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return abs(value - exact) / Fraction(2) ** (max(e, 1 - BIAS) - 63)


def _normal(v: int) -> bool:
    return classify(v) == "normal"


def _finite(v: int) -> bool:
    return classify(v) in ("normal", "zero", "denormal")


def _reference(name: str, x: Fraction, y: Fraction | None) -> list[Decimal] | None:
    """The exact results (ST0 after, then ST1 after for the pushing ones) or None when the
    operand is outside the domain this reference covers."""
    with localcontext() as c:
        c.prec = PREC
        if name in ("fsin", "fcos", "fsincos", "fptan"):
            if abs(x) >= 2 ** 63:
                return None
            half = PI66 / 2
            k = round(x / half)
            r, q = dec(x - k * half), k % 4
            s, co = sin_cos(r)
            sin = [s, co, -s, -co][q]
            cos = [co, -s, -co, s][q]
            if name == "fsin":
                return [sin]
            if name == "fcos":
                return [cos]
            if name == "fsincos":
                return [cos, sin]
            return [Decimal(1), sin / cos]
        ln2 = Decimal(2).ln()
        if name == "f2xm1":
            if abs(x) > 1:
                return None
            t = dec(x) * ln2
            if abs(t) < Decimal("1e-6"):  # expm1 by its series: no cancellation
                return [t + t * t / 2 + t ** 3 / 6 + t ** 4 / 24 + t ** 5 / 120]
            return [t.exp() - 1]
        assert y is not None
        if name == "fyl2x":
            if x <= 0:
                return None
            return [dec(y) * dec(x).ln() / ln2]
        if name == "fyl2xp1":
            if abs(x) >= Fraction(29, 100):
                return None
            t = dec(x)
            if abs(t) < Decimal("1e-6"):  # log1p by its series
                return [dec(y) * (t - t * t / 2 + t ** 3 / 3 - t ** 4 / 4 + t ** 5 / 5) / ln2]
            return [dec(y) * (1 + t).ln() / ln2]
        if name == "fpatan":  # ST0 = x, ST1 = y: atan(y / x)
            ref = atan(dec(y / x))
            if x < 0:
                ref = ref + pi() if y > 0 else ref - pi()
            return [ref]
    return None


def judge(before: State, after: State, vector: int | None, modrm: int) -> list[str] | None:
    """Problems with aero's result of a transcendental instruction (see the module
    docstring); None when the step is outside what the reference checks."""
    name = TRANSCENDENTAL[modrm]
    if before.fsw & ES:
        return None  # #MF first: the general comparison judges that
    two = name in ("fyl2x", "fyl2xp1", "fpatan")
    if before.is_empty(0) or (two and before.is_empty(1)):
        return None
    if name in ("fsincos", "fptan") and not before.is_empty(7):
        return None
    x = before.st(0)
    if not _normal(x) or (two and not _normal(before.st(1))):
        return None
    if (before.fcw & 0x3F) != 0x3F:
        return None  # unmasked exceptions: the suppressed results are not modelled here
    xv = to_fraction(x)
    yv = to_fraction(before.st(1)) if two else None
    refs = _reference(name, xv, yv)
    if refs is None:
        return None
    big, tiny = Decimal(2) ** 16384, Decimal(2) ** -16382
    if any(abs(r) >= big or (r != 0 and abs(r) < tiny) for r in refs):
        return None  # overflow or underflow: the masked responses are not judged here
    problems: list[str] = []
    if vector is not None:
        return [f"exception {vector}"]
    pushes = 1 if name in ("fsincos", "fptan") else -1 if two else 0
    if after.top != (before.top - pushes) & 7:
        problems.append(f"TOP {after.top}, expected {(before.top - pushes) & 7}")
    for i, ref in enumerate(refs):
        if after.is_empty(i):
            problems.append(f"ST({i}) empty")
            continue
        err = ulp_error(after.st(i), ref)
        if err > MAX_ULP:
            problems.append(f"ST({i}) = {after.st(i):#022x}: {float(err):.3g} ulp from {ref}")
    for i in range(len(refs), 8):
        src = i - pushes
        if 0 <= src < 8 and after.st(i) != before.st(src):
            problems.append(f"ST({i}) changed")
    new = (after.fsw & 0x7F) & ~(before.fsw & 0x7F)
    if new & (IE | ZE | DE | SF):
        problems.append(f"flags {new:#x} raised")
    if after.fsw & C2 and name in ("fsin", "fcos", "fsincos", "fptan"):
        problems.append("C2 set")
    if new & (OE | UE) and all(abs(r) > Decimal(2) ** -16000 for r in refs):
        problems.append(f"flags {new:#x} raised")
    if not after.fsw & PE and any(ulp_error(after.st(i), r) > Fraction(1, 1 << 40)
                                  for i, r in enumerate(refs)):  # (exact results: no PE)
        problems.append("PE not set for an inexact result")
    # C1: the round-up indicator (SDM Vol. 1, 8.1.3.3): set when the magnitude was rounded
    # up. FSINCOS has two results and the SDM does not say which one C1 describes. Not
    # judged when the result is within 2^-100 ulp of the reference (an exact result, or
    # one the 80-digit reference cannot place on either side).
    main = {"fsincos": None, "fptan": 1}.get(name, 0)
    if main is not None and not after.is_empty(main):
        got = to_fraction(after.st(main)) if _finite(after.st(main)) else None
        if got is not None and ulp_error(after.st(main), refs[main]) > Fraction(1, 1 << 100):
            up = abs(got) > abs(Fraction(refs[main]))
            if bool(after.fsw & C1) != up:
                problems.append(f"C1 {int(bool(after.fsw & C1))}, the magnitude was "
                                f"rounded {'up' if up else 'down'}")
    if (after.fsw ^ before.fsw) & ~(CC | 0x3800 | 0x3F | ES | 0x8000):
        problems.append("status word bits changed")
    if after.fcw != before.fcw:
        problems.append("control word changed")
    return problems
