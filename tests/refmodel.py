"""A reference model of integer instruction results and flags, written from the Intel SDM
Vol. 2 "Operation" and "Flags Affected" sections, independent of aero. Test evidence only.

Every function returns ``(result, flags, defined)``: the destination value, the six
arithmetic flags (CF PF AF ZF SF OF) as the SDM defines them, and the mask of the flags the
SDM defines for this case (an undefined flag may hold anything). Flags the instruction
leaves unchanged are returned unchanged and counted as defined.
"""

from __future__ import annotations

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = CF | PF | AF | ZF | SF | OF


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _sign(size: int) -> int:
    return 1 << (8 * size - 1)


def szp(r: int, size: int) -> int:
    """SF, ZF, PF of a result (PF: even parity of the low byte)."""
    r &= _mask(size)
    f = ZF if r == 0 else 0
    f |= SF if r & _sign(size) else 0
    f |= PF if bin(r & 0xFF).count("1") % 2 == 0 else 0
    return f


def alu(op: str, a: int, b: int, size: int, flags: int) -> tuple[int, int, int]:
    """ADD ADC SUB SBB CMP AND OR XOR (SDM Vol. 2, each instruction's page)."""
    m, s = _mask(size), _sign(size)
    a, b = a & m, b & m
    cin = flags & CF
    if op in ("add", "adc"):
        c = cin if op == "adc" else 0
        full = a + b + c
        r = full & m
        f = (CF if full > m else 0) | (OF if (a ^ r) & (b ^ r) & s else 0)
        f |= (a ^ b ^ r) & AF
    elif op in ("sub", "sbb", "cmp"):
        c = cin if op == "sbb" else 0
        r = (a - b - c) & m
        f = (CF if a < b + c else 0) | (OF if (a ^ b) & (a ^ r) & s else 0)
        f |= (a ^ b ^ r) & AF
    else:
        r = {"and": a & b, "or": a | b, "xor": a ^ b}[op]
        f = 0  # CF = OF = 0; AF undefined
        return r, f | szp(r, size), ARITH & ~AF
    return (a if op == "cmp" else r), f | szp(r, size), ARITH


def incdec(op: str, a: int, size: int, flags: int) -> tuple[int, int, int]:
    """INC/DEC: CF unchanged, the others as for ADD/SUB of 1."""
    r, f, _ = alu("add" if op == "inc" else "sub", a, 1, size, 0)
    return r, (f & ~CF) | (flags & CF), ARITH


def neg(a: int, size: int) -> tuple[int, int, int]:
    """NEG: CF = (DEST != 0); the others from 0 - DEST."""
    r, f, _ = alu("sub", 0, a, size, 0)
    return r, (f & ~CF) | (CF if a & _mask(size) else 0), ARITH


def shift(op: str, a: int, count: int, size: int, flags: int) -> tuple[int, int, int]:
    """ROL ROR RCL RCR SHL SHR SAR (SDM "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR")."""
    bits, m, s = 8 * size, _mask(size), _sign(size)
    a &= m
    count &= 0x1F
    if count == 0:
        return a, flags & ARITH, ARITH
    cf_in = flags & CF
    if op in ("rol", "ror", "rcl", "rcr"):
        if op == "rol":
            c = count % bits
            r = ((a << c) | (a >> (bits - c))) & m if c else a
            cf = r & 1
            of = ((r & s) != 0) ^ cf
        elif op == "ror":
            c = count % bits
            r = ((a >> c) | (a << (bits - c))) & m if c else a
            cf = 1 if r & s else 0
            of = ((r & s) != 0) ^ ((r & (s >> 1)) != 0)
        else:
            c = count % (bits + 1)
            v = (cf_in << bits) | a
            w = (1 << (bits + 1)) - 1
            if op == "rcl":
                v = ((v << c) | (v >> (bits + 1 - c))) & w if c else v
                r, cf = v & m, v >> bits & 1
                of = ((r & s) != 0) ^ cf
            else:
                of = ((a & s) != 0) ^ cf_in  # before the rotation (SDM RCR)
                v = ((v >> c) | (v << (bits + 1 - c))) & w if c else v
                r, cf = v & m, v >> bits & 1
        f = (flags & ARITH & ~(CF | OF)) | (CF if cf else 0) | (OF if of else 0)
        return r, f, ARITH & ~(0 if count == 1 else OF)
    if op == "shl":
        r = (a << count) & m
        cf = (a >> (bits - count)) & 1 if count <= bits else 0
        of = ((r & s) != 0) ^ cf
    elif op == "shr":
        r = a >> count
        cf = (a >> (count - 1)) & 1 if count <= bits else 0
        of = 1 if a & s else 0
    else:  # sar
        sa = a - (1 << bits) if a & s else a
        r = (sa >> min(count, bits)) & m
        cf = (sa >> (min(count, bits) - 1)) & 1
        of = 0
    f = szp(r, size) | (CF if cf else 0) | (OF if of else 0)
    defined = ARITH & ~AF & ~(0 if count == 1 else OF)
    if op in ("shl", "shr") and count >= bits:
        defined &= ~CF  # "CF undefined for SHL and SHR where the count >= the size"
    return r, f, defined


def shxd(left: bool, dest: int, src: int, count: int, size: int,
         flags: int) -> tuple[int | None, int, int]:
    """SHLD/SHRD (SDM "SHLD", "SHRD"): count masked to 5 bits; 0 changes nothing; above the
    operand size the destination and the flags are undefined (result None)."""
    bits, m, s = 8 * size, _mask(size), _sign(size)
    dest, src = dest & m, src & m
    count &= 0x1F
    if count == 0:
        return dest, flags & ARITH, ARITH
    if count > bits:
        return None, 0, 0
    if left:
        r = ((dest << count) | (src >> (bits - count))) & m
        cf = (dest >> (bits - count)) & 1
    else:
        r = ((dest >> count) | (src << (bits - count))) & m
        cf = (dest >> (count - 1)) & 1
    of = ((r ^ dest) & s) != 0
    f = szp(r, size) | (CF if cf else 0) | (OF if of else 0)
    return r, f, ARITH & ~AF & ~(0 if count == 1 else OF)


def daa(al: int, flags: int) -> tuple[int, int, int]:
    old_al, old_cf = al, flags & CF
    cf = 0
    if (al & 0xF) > 9 or flags & AF:
        cf = old_cf or (al + 6 > 0xFF)
        al = (al + 6) & 0xFF
        af = AF
    else:
        af = 0
    if old_al > 0x99 or old_cf:
        al = (al + 0x60) & 0xFF
        cf = 1
    else:
        cf = 0
    return al, szp(al, 1) | af | (CF if cf else 0), ARITH & ~OF


def das(al: int, flags: int) -> tuple[int, int, int]:
    old_al, old_cf = al, flags & CF
    cf = 0
    if (al & 0xF) > 9 or flags & AF:
        cf = old_cf or al < 6
        al = (al - 6) & 0xFF
        af = AF
    else:
        af = 0
    if old_al > 0x99 or old_cf:
        al = (al - 0x60) & 0xFF
        cf = 1
    return al, szp(al, 1) | af | (CF if cf else 0), ARITH & ~OF


def aaa_aas(sub: bool, ax: int, flags: int) -> tuple[int, int, int]:
    """AAA/AAS: AX +/- 106H when the low nibble exceeds 9 or AF; AL keeps its low nibble.
    Only AF and CF are defined."""
    if (ax & 0xF) > 9 or flags & AF:
        ax = (ax - 0x106 if sub else ax + 0x106) & 0xFFFF
        f = AF | CF
    else:
        f = 0
    return ax & 0xFF0F, f, AF | CF


def aam(al: int, base: int) -> tuple[int | None, int, int]:
    """AAM imm8: AH = AL / imm8, AL = AL mod imm8 (None: #DE for 0). SF ZF PF defined."""
    if base == 0:
        return None, 0, 0
    ah, al = divmod(al, base)
    return (ah << 8) | al, szp(al, 1), SF | ZF | PF


def aad(ax: int, base: int) -> tuple[int, int, int]:
    """AAD imm8: AL = (AL + AH * imm8) & FFH, AH = 0. SF ZF PF defined."""
    al = ((ax & 0xFF) + (ax >> 8) * base) & 0xFF
    return al, szp(al, 1), SF | ZF | PF


def divide(signed: bool, dividend: int, divisor: int, size: int) -> tuple[int, int] | None:
    """DIV/IDIV (SDM Vol. 2): quotient and remainder of the double-width dividend, or None
    for #DE (divisor 0, or a quotient outside the destination's range: 00H-FFH, or 80H-7FH
    signed, i.e. -128..127 for a byte). IDIV truncates toward zero; the remainder has the
    dividend's sign."""
    bits = 8 * size
    m = (1 << bits) - 1
    divisor &= m
    dividend &= (1 << (2 * bits)) - 1
    if divisor == 0:
        return None
    if not signed:
        q, r = divmod(dividend, divisor)
        return None if q > m else (q, r)
    n = dividend - (1 << (2 * bits)) if dividend >> (2 * bits - 1) else dividend
    d = divisor - (1 << bits) if divisor >> (bits - 1) else divisor
    q = abs(n) // abs(d) * (1 if (n < 0) == (d < 0) else -1)
    r = n - q * d
    if not -(1 << (bits - 1)) <= q <= (1 << (bits - 1)) - 1:
        return None
    return q & m, r & m
