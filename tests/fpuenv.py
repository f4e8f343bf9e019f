"""Running x87 code snippets on a Machine, and the exact reference model the FPU tests
compare against.

Snippets are assembled with GNU as (``.code32`` or ``.code16``) and run in flat 32-bit
protected mode (or real mode) from CODE until their final HLT, with exceptions stopping the
run. The reference model is independent of the core: values are exact ``Fraction``s,
rounded to a significand precision and exponent range in one of the four rounding modes.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from aero.fuzz.x87model import round_format as model_round_format

from aero.machine import Machine, MachineConfig, Segment, StopReason

needs_as = pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None,
                              reason="GNU as and objcopy are needed to assemble the snippets")

CODE = 0x1000
DATA = 0x4000  # scratch memory for operands: the snippets address it absolutely
STACK = 0x8000
FLAT_CODE, FLAT_DATA = 0xC09B, 0xC093
CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
NM, MF, UD = 7, 16, 6

RN, RD, RU, RZ = 0, 1, 2, 3
EXP_BIAS = 16383


def assemble(src: str, code16: bool = False) -> bytes:
    """Machine code for a snippet of AT&T assembly."""
    with tempfile.TemporaryDirectory() as tmp:
        s, o, b = Path(tmp, "a.s"), Path(tmp, "a.o"), Path(tmp, "a.bin")
        s.write_text((".code16\n" if code16 else ".code32\n") + src + "\n")
        subprocess.run(["as", "--32", "-o", str(o), str(s)], check=True, timeout=30,
                       capture_output=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(b)], check=True,
                       timeout=30, capture_output=True)
        return b.read_bytes()


def new_machine(**config: object) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20, **{"devices": False, **config}))  # type: ignore[arg-type]
    m.set_stop_on_exception(True)
    return m


def load(m: Machine, code: bytes, *, real: bool = False, cr0: int = 0, **gprs: int) -> None:
    """Place code at CODE and enter flat 32-bit protected mode (or real mode) there."""
    m.write(CODE, code)
    r = m.get_regs()
    if real:
        r.cs = Segment(0, 0, 0xFFFF, 0x9B)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
        r.cr0 = CR0_ET | cr0
    else:
        r.cs = Segment(0x08, 0, 0xFFFFFFFF, FLAT_CODE)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, name, Segment(0x10, 0, 0xFFFFFFFF, FLAT_DATA))
        r.cr0 = CR0_PE | CR0_ET | cr0
    r.eip, r.esp = CODE, STACK
    for name, value in gprs.items():
        setattr(r, name, value)
    m.set_regs(r)


def run_code(src: str, *, m: Machine | None = None, data: bytes = b"", real: bool = False,
             cr0: int = 0, limit: int = 10_000, **gprs: int) -> Machine:
    """Assemble src (an HLT is appended), run it to the HLT and return the machine. An
    exception raises AssertionError, as does not reaching the HLT."""
    m = m or new_machine()
    if data:
        m.write(DATA, data)
    load(m, assemble(src + "\nhlt", code16=real), real=real, cr0=cr0, **gprs)
    stop = m.run(m.ticks + limit)
    assert stop == StopReason.HALT, (stop, m.last_exception(), hex(m.get_regs().eip))
    return m


# ---- 80-bit values ----------------------------------------------------------------------

def x80(sign: int, exp: int, sig: int) -> int:
    return (sign << 79) | (exp << 64) | sig


def x80_bytes(v: int) -> bytes:
    return v.to_bytes(10, "little")


def to_fraction(v: int) -> Fraction | None:
    """The exact value of a finite 80-bit register (None for NaN/infinity/unsupported)."""
    sign, exp, sig = v >> 79, (v >> 64) & 0x7FFF, v & ((1 << 64) - 1)
    if exp == 0x7FFF:
        return None
    if exp != 0 and not sig >> 63:
        return None
    f = Fraction(sig, 1 << 63) * Fraction(2) ** ((exp or 1) - EXP_BIAS)
    return -f if sign else f


def from_value(x: Fraction | int | float) -> int:
    """The 80-bit register holding x exactly (x must fit in 64 significant bits)."""
    r = round_x80(Fraction(x), 64, RN)
    assert to_fraction(r[0]) == Fraction(x), x
    return r[0]


def round_format(x: Fraction, prec: int, rc: int, bias: int,
                 emax: int) -> tuple[int, int, int, bool]:
    """Round x to `prec` significant bits with biased exponents 1..emax: (sign, biased
    exponent, significand with its integer bit at bit prec-1, inexact). The rounding is
    the independent SDM model's (aero.fuzz.x87model, no aero code), which the campaign
    uses too; masked overflow gives infinity or the largest finite value by rc."""
    sign, be, n, inexact, _tiny, _overflow = model_round_format(x, prec, rc, bias, emax)
    return sign, be, n, inexact


def round_x80(x: Fraction, prec: int, rc: int) -> tuple[int, bool]:
    """x rounded to an 80-bit register at precision prec (24, 53, 64): (bits, inexact)."""
    sign, be, n, inexact = round_format(x, prec, rc, EXP_BIAS, 0x7FFE)
    sig = n << (64 - prec)
    return x80(sign, be, sig), inexact


def round_f32(x: Fraction, rc: int) -> int:
    sign, be, n, _ = round_format(x, 24, rc, 127, 254)
    return (sign << 31) | (be << 23) | (n & ((1 << 23) - 1))


def round_f64(x: Fraction, rc: int) -> int:
    sign, be, n, _ = round_format(x, 53, rc, 1023, 2046)
    return (sign << 63) | (be << 52) | (n & ((1 << 52) - 1))


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]
