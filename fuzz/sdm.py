"""An independent model of the Intel SDM for judging divergences: instruction lengths, which
encodings are #UD, which may take LOCK, and the data accesses an instruction makes, in the
order of the SDM's operation pseudo-code.

This module is written from the Intel SDM (Vol. 2 opcode maps, Appendix A; the "LOCK" page;
each instruction's "Operation" and exception sections; Vol. 3A 5.3-5.4) and deliberately
does not consult aero: it imports neither :mod:`aero.isa` nor aero's decoder, so a wrong
row in aero's instruction table cannot make a known-divergence explanation accept aero's
wrong behaviour. The processor modelled is the one aero claims to be: a P6-family IA-32
processor with the integer instruction set (CPUID, RDTSC, CMOVcc, CMPXCHG8B, SYSENTER), no
MMX/SSE.

Invariants:

* :func:`decode` never raises; a length it cannot know (an undefined opcode) is None.
* :func:`data_accesses` returns None for every instruction it does not model exactly; a
  caller must then not explain anything with it (an unmodelled case stays unexplained).
* Every table here is a literal: nothing is derived from aero's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Access", "BYTE_OPERAND", "Decoded", "GROUPS", "LOCKABLE", "MEM_ONLY", "STRING_OPS",
           "SegModel", "TRAP_VECTORS", "UNDEFINED_FLAGS", "data_accesses", "decode",
           "effective_offset", "encoding_of", "first_segment_fault", "is_ud", "key_text",
           "lock_legal", "opcode_keys", "operand_access", "segment_model", "undefined_flags"]

PREFIX_BYTES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
SEG_PREFIX = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs"}
GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

# ---- opcode maps (SDM Vol. 2 Appendix A, Tables) --------------------------------
# Immediate kinds: "" none, "b" 1 byte, "w" 2, "z" 2/4 by operand size, "p" far pointer
# (2/4 + 2), "o" moffs (2/4 by address size), "wb" ENTER (2 + 1).

# One-byte opcodes with a ModRM byte.
_MODRM1 = frozenset(
    [b + i for b in range(0x00, 0x40, 8) for i in range(4)]
    + [0x62, 0x63, 0x69, 0x6B] + list(range(0x80, 0x90))
    + [0xC0, 0xC1, 0xC4, 0xC5, 0xC6, 0xC7, 0xD0, 0xD1, 0xD2, 0xD3]
    + list(range(0xD8, 0xE0)) + [0xF6, 0xF7, 0xFE, 0xFF])
_IMM1: dict[int, str] = {
    **{b + 4: "b" for b in range(0x00, 0x40, 8)}, **{b + 5: "z" for b in range(0x00, 0x40, 8)},
    0x68: "z", 0x69: "z", 0x6A: "b", 0x6B: "b", **{o: "b" for o in range(0x70, 0x80)},
    0x80: "b", 0x81: "z", 0x82: "b", 0x83: "b", 0x9A: "p", 0xA0: "o", 0xA1: "o", 0xA2: "o",
    0xA3: "o", 0xA8: "b", 0xA9: "z", **{o: "b" for o in range(0xB0, 0xB8)},
    **{o: "z" for o in range(0xB8, 0xC0)}, 0xC0: "b", 0xC1: "b", 0xC2: "w", 0xC6: "b",
    0xC7: "z", 0xC8: "wb", 0xCA: "w", 0xCD: "b", 0xD4: "b", 0xD5: "b",
    **{o: "b" for o in range(0xE0, 0xE8)}, 0xE8: "z", 0xE9: "z", 0xEA: "p", 0xEB: "b"}
# One-byte opcodes that are not instructions of this processor.
_UNDEF1 = frozenset()  # every one-byte opcode is defined (D6 SALC, F1 INT1 included)

# Two-byte opcodes (0F xx) of a P6 integer processor, with ModRM and immediate.
_DEF2: dict[int, tuple[bool, str]] = {
    0x00: (True, ""), 0x01: (True, ""), 0x02: (True, ""), 0x03: (True, ""),
    0x06: (False, ""), 0x08: (False, ""), 0x09: (False, ""), 0x0B: (False, ""),
    **{o: (True, "") for o in range(0x18, 0x20)},  # PREFETCHh / hint NOP Ev
    0x20: (True, ""), 0x21: (True, ""), 0x22: (True, ""), 0x23: (True, ""),
    0x30: (False, ""), 0x31: (False, ""), 0x32: (False, ""), 0x33: (False, ""),
    0x34: (False, ""), 0x35: (False, ""),
    **{o: (True, "") for o in range(0x40, 0x50)},  # CMOVcc
    **{o: (False, "z") for o in range(0x80, 0x90)},  # Jcc Jz
    **{o: (True, "") for o in range(0x90, 0xA0)},  # SETcc
    0xA0: (False, ""), 0xA1: (False, ""), 0xA2: (False, ""), 0xA3: (True, ""),
    0xA4: (True, "b"), 0xA5: (True, ""), 0xA8: (False, ""), 0xA9: (False, ""),
    0xAB: (True, ""), 0xAC: (True, "b"), 0xAD: (True, ""), 0xAF: (True, ""),
    0xB0: (True, ""), 0xB1: (True, ""), 0xB2: (True, ""), 0xB3: (True, ""),
    0xB4: (True, ""), 0xB5: (True, ""), 0xB6: (True, ""), 0xB7: (True, ""),
    0xBA: (True, "b"), 0xBB: (True, ""), 0xBC: (True, ""), 0xBD: (True, ""),
    0xBE: (True, ""), 0xBF: (True, ""), 0xC0: (True, ""), 0xC1: (True, ""),
    0xC7: (True, ""), **{o: (False, "") for o in range(0xC8, 0xD0)},
    # Reserved encodings that are #UD but have a ModRM byte (UD1), or none (UD0 here).
    0xB9: (True, ""),
}
# Of those, encodings that raise #UD whatever follows (UD2, UD1; RSM outside SMM is not
# listed: 0F AA is absent from the table above and so undefined).
_ALWAYS_UD2 = frozenset({0x0B, 0xB9})

# Group members (opcode, reg) that are #UD; opcode keys >= 0x100 are 0F xx.
_UD_GROUP = frozenset(
    [(0x8F, r) for r in range(1, 8)] + [(0xC6, r) for r in range(1, 8)]
    + [(0xC7, r) for r in range(1, 8)] + [(0xFE, r) for r in range(2, 8)] + [(0xFF, 7)]
    + [(0x100, 6), (0x100, 7), (0x101, 5)] + [(0x1BA, r) for r in range(4)]
    + [(0x1C7, r) for r in range(8) if r != 1] + [(0x8C, 6), (0x8C, 7)]
    + [(0x8E, 1), (0x8E, 6), (0x8E, 7)])
# Encodings whose ModRM operand must be memory (SDM: "#UD if the source operand is a
# register" or an M-only operand type).
MEM_ONLY = _MEM_ONLY = frozenset(
    [(0x62, None), (0x8D, None), (0xC4, None), (0xC5, None), (0x1B2, None), (0x1B4, None),
     (0x1B5, None), (0x101, 0), (0x101, 1), (0x101, 2), (0x101, 3), (0x101, 7), (0x1C7, 1),
     (0xFF, 3), (0xFF, 5)])
# Not recognised in real-address mode (#UD): ARPL, LAR, LSL, group 6 (SLDT ... VERW).
_PM_ONLY = frozenset([(0x63, None), (0x102, None), (0x103, None)]
                     + [(0x100, r) for r in range(6)])

# SDM Vol. 2 "LOCK": ADD, ADC, AND, BTC, BTR, BTS, CMPXCHG, CMPXCHG8B, DEC, INC, NEG, NOT,
# OR, SBB, SUB, XOR, XADD, XCHG, each only in its forms with a memory destination.
LOCKABLE: frozenset[tuple[int, int | None]] = frozenset(
    [(b + i, None) for b in (0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30) for i in (0, 1)]
    + [(op, r) for op in (0x80, 0x81, 0x82, 0x83) for r in range(7)]
    + [(0x86, None), (0x87, None), (0xF6, 2), (0xF6, 3), (0xF7, 2), (0xF7, 3),
       (0xFE, 0), (0xFE, 1), (0xFF, 0), (0xFF, 1), (0x1AB, None), (0x1B3, None),
       (0x1BB, None), (0x1BA, 5), (0x1BA, 6), (0x1BA, 7), (0x1B0, None), (0x1B1, None),
       (0x1C0, None), (0x1C1, None), (0x1C7, 1)])
_GROUPS = frozenset({0x80, 0x81, 0x82, 0x83, 0x8F, 0xC0, 0xC1, 0xC6, 0xC7, 0xD0, 0xD1, 0xD2,
                     0xD3, 0xF6, 0xF7, 0xFE, 0xFF, 0x100, 0x101, 0x1BA, 0x1C7})
GROUPS = _GROUPS
# Software interrupts: the vector is a trap (EIP after the instruction).
TRAP_VECTORS = {0xCC: 3, 0xCE: 4, 0xF1: 1}

_BASE16 = ("ebx", "ebx", "ebp", "ebp", "esi", "edi", "ebp", "ebx")
_INDEX16 = ("esi", "edi", "esi", "edi", None, None, None, None)


@dataclass(frozen=True)
class Decoded:
    """One instruction as the SDM's encoding rules read it.

    ``length`` is the instruction's length in bytes (possibly above 15), or None when the
    opcode is undefined and its length therefore unknown. ``opcode`` is 0x00-0xFF or
    0x100 | second byte for 0F xx.
    """

    length: int | None
    nprefixes: int
    opcode: int
    osz32: bool
    asz32: bool
    seg_override: str | None
    rep: int
    lock: bool
    has_modrm: bool = False
    mod: int = 3
    reg: int = 0
    rm: int = 0
    base: str | None = None
    index: str | None = None
    scale: int = 0
    disp: int = 0
    imm: int = 0
    imm2: int = 0
    default_seg: str = "ds"
    defined: bool = True
    prefixes: bytes = b""  # the prefix bytes, in order

    @property
    def seg(self) -> str:
        return self.seg_override or self.default_seg

    @property
    def opsize(self) -> int:
        return 4 if self.osz32 else 2

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.opcode, self.reg if self.opcode in _GROUPS else None)

    @property
    def memory(self) -> bool:
        return self.has_modrm and self.mod != 3


def decode(code: bytes, code32: bool) -> Decoded:
    """Decode the instruction at the start of ``code`` by the SDM's encoding rules."""
    def byte(n: int) -> int:
        return code[n] if n < len(code) else 0

    osz = asz = code32
    seg = None
    rep = 0
    lock = False
    i = 0
    while byte(i) in PREFIX_BYTES and i < len(code):
        p = byte(i)
        if p in SEG_PREFIX:
            seg = SEG_PREFIX[p]
        elif p == 0x66:
            osz = not code32
        elif p == 0x67:
            asz = not code32
        elif p == 0xF0:
            lock = True
        else:
            rep = p
        i += 1
    npref = i
    op = byte(i)
    i += 1
    if op == 0x0F:
        op = 0x100 | byte(i)
        i += 1
    if op >= 0x100:
        entry = _DEF2.get(op & 0xFF)
        if entry is None:
            return Decoded(None, npref, op, osz, asz, seg, rep, lock, defined=False,
                           prefixes=bytes(code[:npref]))
        has_modrm, imm = entry
    else:
        has_modrm, imm = op in _MODRM1, _IMM1.get(op, "")
        if op in (0xF6, 0xF7):
            reg = (byte(i) >> 3) & 7
            imm = ("b" if op == 0xF6 else "z") if reg < 2 else ""
    f: dict = {}
    if has_modrm:
        modrm = byte(i)
        i += 1
        mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
        if 0x120 <= op <= 0x123:
            mod = 3  # MOV to/from control and debug registers: always a register operand
        f.update(has_modrm=True, mod=mod, reg=reg, rm=rm)
        if mod != 3:
            if not asz:
                if mod == 0 and rm == 6:
                    f["disp"] = byte(i) | byte(i + 1) << 8
                    i += 2
                else:
                    f.update(base=_BASE16[rm], index=_INDEX16[rm])
                    if _BASE16[rm] == "ebp":
                        f["default_seg"] = "ss"
                    if mod == 1:
                        f["disp"] = (byte(i) - (0x100 if byte(i) & 0x80 else 0)) & 0xFFFF
                        i += 1
                    elif mod == 2:
                        f["disp"] = byte(i) | byte(i + 1) << 8
                        i += 2
            else:
                disp = 0
                if rm == 4:
                    sib = byte(i)
                    i += 1
                    b, x = sib & 7, (sib >> 3) & 7
                    f["scale"] = sib >> 6
                    f["index"] = None if x == 4 else GPRS[x]
                    if b == 5 and mod == 0:
                        disp = int.from_bytes(bytes(byte(i + k) for k in range(4)), "little")
                        i += 4
                    else:
                        f["base"] = GPRS[b]
                        if b in (4, 5):
                            f["default_seg"] = "ss"
                elif rm == 5 and mod == 0:
                    disp = int.from_bytes(bytes(byte(i + k) for k in range(4)), "little")
                    i += 4
                else:
                    f["base"] = GPRS[rm]
                    if rm == 5:
                        f["default_seg"] = "ss"
                if mod == 1:
                    disp += byte(i) - (0x100 if byte(i) & 0x80 else 0)
                    i += 1
                elif mod == 2:
                    disp += int.from_bytes(bytes(byte(i + k) for k in range(4)), "little")
                    i += 4
                f["disp"] = disp & 0xFFFFFFFF

    def take(n: int) -> int:
        nonlocal i
        v = int.from_bytes(bytes(byte(i + k) for k in range(n)), "little")
        i += n
        return v

    if imm == "b":
        f["imm"] = take(1)
    elif imm == "w":
        f["imm"] = take(2)
    elif imm == "z":
        f["imm"] = take(4 if osz else 2)
    elif imm == "p":
        f["imm"] = take(4 if osz else 2)
        f["imm2"] = take(2)
    elif imm == "o":
        f["disp"] = take(4 if asz else 2)
    elif imm == "wb":
        f["imm"] = take(2)
        f["imm2"] = take(1)
    return Decoded(i, npref, op, osz, asz, seg, rep, lock, prefixes=bytes(code[:npref]), **f)


# ---- the opcode space (for generating instructions) -----------------------------------------

def opcode_keys() -> tuple[tuple[int, int | None], ...]:
    """Every opcode of the one- and two-byte maps as a key (opcode, reg): group opcodes once
    per ModRM reg value, the others with None. Prefix bytes and the 0Fh escape are not
    opcodes. Defined and undefined encodings alike (:func:`encoding_of` tells which)."""
    ops = [o for o in range(0x100) if o not in PREFIX_BYTES and o != 0x0F] + list(
        range(0x100, 0x200))
    return tuple((o, r) for o in ops for r in (range(8) if o in _GROUPS else (None,)))


def encoding_of(key: tuple[int, int | None]) -> tuple[bool, bool, str]:
    """(defined, has a ModRM byte, immediate kind) of an opcode key in the maps above. An
    undefined group member still has its group's ModRM byte; an undefined two-byte opcode
    is given none (its length is unknown)."""
    op, reg = key
    if op >= 0x100:
        entry = _DEF2.get(op & 0xFF)
        if entry is None:
            return False, False, ""
        has_modrm, imm = entry
        defined = (op & 0xFF) not in _ALWAYS_UD2
    else:
        has_modrm, imm = op in _MODRM1, _IMM1.get(op, "")
        defined = True
        if op in (0xF6, 0xF7):
            imm = ("b" if op == 0xF6 else "z") if (reg or 0) < 2 else ""
    if key in _UD_GROUP:
        defined = False
    return defined, has_modrm, imm


def key_text(d: Decoded) -> str:
    """The opcode (with the group reg field) as text: ``01``, ``0F AF``, ``F7/6``."""
    op = f"0F {d.opcode & 0xFF:02X}" if d.opcode >= 0x100 else f"{d.opcode:02X}"
    if d.opcode in _GROUPS and d.has_modrm:
        op += f"/{d.reg}"
    return op


# Opcodes whose ModRM operand (or accumulator and immediate) is a byte (SDM operand types
# Eb/Gb/Ib-only forms): the others use the operand size, or a fixed size given by _E.
BYTE_OPERAND = frozenset(
    [b + i for b in range(0x00, 0x40, 8) for i in (0, 2, 4)]
    + [0x80, 0x82, 0x84, 0x86, 0x88, 0x8A, 0xA0, 0xA2, 0xA8, 0xC0, 0xC6, 0xD0, 0xD2, 0xF6,
       0xFE, 0x1B0, 0x1C0] + list(range(0x190, 0x1A0)))
# String instructions (REP applies): MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS.
STRING_OPS = frozenset([0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
                        0x6C, 0x6D, 0x6E, 0x6F])

# Flags the SDM's "Flags Affected" sections leave undefined (fixed per instruction; the
# shift, rotate and double-shift counts refine theirs in the comparison). CF 01h, PF 04h,
# AF 10h, ZF 40h, SF 80h, OF 800h.
_AF, _OF, _SZAP, _ALL = 0x10, 0x800, 0x80 | 0x40 | 0x10 | 0x04, 0x8D5
_LOGIC = ([b + i for b in (0x08, 0x20, 0x30) for i in range(6)]
          + [0x84, 0x85, 0xA8, 0xA9])
UNDEFINED_FLAGS: dict[tuple[int, int | None], int] = {
    **{(o, None): _AF for o in _LOGIC},  # OR, AND, XOR, TEST: "AF is undefined"
    **{(o, r): _AF for o in (0x80, 0x81, 0x82, 0x83) for r in (1, 4, 6)},
    **{(o, r): _AF for o in (0xF6, 0xF7) for r in (0, 1)},  # TEST (and its /1 alias)
    (0x27, None): _OF, (0x2F, None): _OF,  # DAA, DAS
    (0x37, None): _OF | 0x80 | 0x40 | 0x04, (0x3F, None): _OF | 0x80 | 0x40 | 0x04,  # AAA AAS
    (0xD4, None): _OF | _AF | 0x01, (0xD5, None): _OF | _AF | 0x01,  # AAM, AAD
    **{(o, r): _SZAP for o in (0xF6, 0xF7) for r in (4, 5)},  # MUL, IMUL
    (0x69, None): _SZAP, (0x6B, None): _SZAP, (0x1AF, None): _SZAP,
    **{(o, r): _ALL for o in (0xF6, 0xF7) for r in (6, 7)},  # DIV, IDIV
    **{(o, None): _OF | 0x80 | _AF | 0x04 for o in (0x1A3, 0x1AB, 0x1B3, 0x1BB)},  # BT...
    **{(0x1BA, r): _OF | 0x80 | _AF | 0x04 for r in (4, 5, 6, 7)},
    (0x1BC, None): 0x01 | _OF | 0x80 | _AF | 0x04,  # BSF, BSR
    (0x1BD, None): 0x01 | _OF | 0x80 | _AF | 0x04,
    **{(o, None): _OF | _AF for o in (0x1A4, 0x1A5, 0x1AC, 0x1AD)},  # SHLD, SHRD
    **{(o, r): _OF for o in (0xC0, 0xC1, 0xD2, 0xD3) for r in range(4)},  # rotates by n
    **{(o, r): _OF | _AF for o in (0xC0, 0xC1, 0xD2, 0xD3) for r in range(4, 8)},
    **{(o, r): _AF for o in (0xD0, 0xD1) for r in range(4, 8)},  # shifts by 1
}


def undefined_flags(d: Decoded) -> int:
    """The EFLAGS bits the SDM leaves undefined after this instruction (before the count
    refinements of shifts and rotates)."""
    return UNDEFINED_FLAGS.get(d.key, 0)


def lock_legal(d: Decoded) -> bool:
    """SDM "LOCK": the prefix is legal only on the listed instructions with a memory
    destination."""
    return d.key in LOCKABLE and d.memory


def is_ud(d: Decoded, real: bool) -> bool | None:
    """Does the encoding raise #UD (before any other fault of the instruction)? None when
    the model cannot tell (never: every opcode of both maps is classified)."""
    if not d.defined:
        return True
    if d.opcode >= 0x100 and (d.opcode & 0xFF) in _ALWAYS_UD2:
        return True
    key = d.key
    if key in _UD_GROUP:
        return True
    if key in _MEM_ONLY and d.mod == 3:
        return True
    if real and key in _PM_ONLY:
        return True
    if d.opcode == 0x101 and d.mod == 3 and d.reg not in (4, 6):
        return True  # group 7 register forms other than SMSW/LMSW are not P6 instructions
    if not real and d.opcode in (0xC4, 0xC5) and d.mod == 3:
        return True
    if d.lock and not lock_legal(d):
        return True
    return False


def effective_offset(d: Decoded, regs: dict[str, int]) -> int:
    """The offset of the ModRM (or moffs) operand in its segment (SDM Vol. 2 2.1.5)."""
    off = d.disp
    if d.base:
        off += regs[d.base]
    if d.index:
        off += regs[d.index] << d.scale
    return off & (0xFFFFFFFF if d.asz32 else 0xFFFF)


# ---- segments and data accesses (SDM Vol. 3A 5.3, 5.4) ----------------------------------------

@dataclass(frozen=True)
class SegModel:
    """A segment register's hidden part as the mode and the selector define it."""

    base: int
    limit: int
    usable: bool  # not null, present
    code: bool
    readable: bool
    writable: bool
    big: bool  # B/D bit (32-bit stack)


def segment_model(real: bool, selector: int, gdt: bytes) -> SegModel:
    """Real mode: base selector * 16, limit FFFFh, read/write. Protected mode: the GDT
    descriptor (``gdt`` holds the table's bytes); a null selector is unusable."""
    if real:
        return SegModel((selector & 0xFFFF) << 4, 0xFFFF, True, False, True, True, False)
    index = (selector & 0xFFF8)
    if index == 0 or selector & 4 or index + 8 > len(gdt):
        return SegModel(0, 0, False, False, False, False, False)
    d = gdt[index:index + 8]
    limit = d[0] | d[1] << 8 | (d[6] & 0xF) << 16
    if d[6] & 0x80:
        limit = limit << 12 | 0xFFF
    base = d[2] | d[3] << 8 | d[4] << 16 | d[7] << 24
    access = d[5]
    code = bool(access & 0x08)
    return SegModel(base, limit, bool(access & 0x80), code,
                    (not code) or bool(access & 0x02), (not code) and bool(access & 0x02),
                    bool(d[6] & 0x40))


@dataclass(frozen=True)
class Access:
    """One data access: segment, offset, size, ``r``/``w``/``rw`` (a read-modify-write is
    checked as a write before it is read)."""

    seg: str
    offset: int
    size: int
    kind: str


# ModRM operand accesses: (opcode, reg or None) -> (size code, kind). Size codes: "b" 1,
# "w" 2, "v" operand size, "p" operand size + 2, "a" twice the operand size, "s" 6,
# "q" 8. Instructions with an implicit stack access, or a conditional access, are handled
# in data_accesses or not modelled.
_E: dict[tuple[int, int | None], tuple[str, str]] = {}
for _b in range(0x00, 0x40, 8):
    _cmp = _b == 0x38
    _E[(_b, None)] = ("b", "r" if _cmp else "rw")
    _E[(_b + 1, None)] = ("v", "r" if _cmp else "rw")
    _E[(_b + 2, None)] = ("b", "r")
    _E[(_b + 3, None)] = ("v", "r")
for _r in range(8):
    for _op, _sz in ((0x80, "b"), (0x81, "v"), (0x82, "b"), (0x83, "v")):
        _E[(_op, _r)] = (_sz, "r" if _r == 7 else "rw")
    for _op, _sz in ((0xC0, "b"), (0xC1, "v"), (0xD0, "b"), (0xD1, "v"), (0xD2, "b"),
                     (0xD3, "v")):
        _E[(_op, _r)] = (_sz, "rw")
    _E[(0xF6, _r)] = ("b", "rw" if _r in (2, 3) else "r")
    _E[(0xF7, _r)] = ("v", "rw" if _r in (2, 3) else "r")
_E.update({
    (0x62, None): ("a", "r"), (0x69, None): ("v", "r"), (0x6B, None): ("v", "r"),
    (0x84, None): ("b", "r"), (0x85, None): ("v", "r"), (0x86, None): ("b", "rw"),
    (0x87, None): ("v", "rw"), (0x88, None): ("b", "w"), (0x89, None): ("v", "w"),
    (0x8A, None): ("b", "r"), (0x8B, None): ("v", "r"), (0x8C, None): ("w", "w"),
    (0x8E, None): ("w", "r"), (0xC4, None): ("p", "r"), (0xC5, None): ("p", "r"),
    (0xC6, 0): ("b", "w"), (0xC7, 0): ("v", "w"), (0xFE, 0): ("b", "rw"),
    (0xFE, 1): ("b", "rw"), (0xFF, 0): ("v", "rw"), (0xFF, 1): ("v", "rw"),
    (0xFF, 4): ("v", "r"), (0xFF, 5): ("p", "r"),
    (0x100, 0): ("w", "w"), (0x100, 1): ("w", "w"), (0x100, 2): ("w", "r"),
    (0x100, 3): ("w", "r"), (0x100, 4): ("w", "r"), (0x100, 5): ("w", "r"),
    (0x101, 0): ("s", "w"), (0x101, 1): ("s", "w"), (0x101, 2): ("s", "r"),
    (0x101, 3): ("s", "r"), (0x101, 4): ("w", "w"), (0x101, 6): ("w", "r"),
    (0x102, None): ("w", "r"), (0x103, None): ("w", "r"),
    **{(o, None): ("v", "r") for o in range(0x140, 0x150)},
    **{(o, None): ("b", "w") for o in range(0x190, 0x1A0)},
    (0x1A4, None): ("v", "rw"), (0x1A5, None): ("v", "rw"), (0x1AC, None): ("v", "rw"),
    (0x1AD, None): ("v", "rw"), (0x1AF, None): ("v", "r"), (0x1B0, None): ("b", "rw"),
    (0x1B1, None): ("v", "rw"), (0x1B2, None): ("p", "r"), (0x1B4, None): ("p", "r"),
    (0x1B5, None): ("p", "r"), (0x1B6, None): ("b", "r"), (0x1B7, None): ("w", "r"),
    (0x1BC, None): ("v", "r"), (0x1BD, None): ("v", "r"), (0x1BE, None): ("b", "r"),
    (0x1BF, None): ("w", "r"), (0x1C0, None): ("b", "rw"), (0x1C1, None): ("v", "rw"),
    (0x1C7, 1): ("q", "rw"), (0x1BA, 4): ("v", "r"), (0x1BA, 5): ("v", "rw"),
    (0x1BA, 6): ("v", "rw"), (0x1BA, 7): ("v", "rw"),
})
# No memory access at all: LEA, INVLPG, the hint NOPs.
_NO_ACCESS = frozenset([(0x8D, None), (0x101, 7)] + [(o, None) for o in range(0x118, 0x120)])
_PUSH_SREG = {0x06: "es", 0x0E: "cs", 0x16: "ss", 0x1E: "ds", 0x1A0: "fs", 0x1A8: "gs"}
_POP_SREG = {0x07: "es", 0x17: "ss", 0x1F: "ds", 0x1A1: "fs", 0x1A9: "gs"}
_STRING = {0xA4: ("r", "w"), 0xA5: ("r", "w"), 0xA6: ("r", "r"), 0xA7: ("r", "r"),
           0xAA: (None, "w"), 0xAB: (None, "w"), 0xAC: ("r", None), 0xAD: ("r", None),
           0xAE: (None, "r"), 0xAF: (None, "r"),
           # INS stores to ES:(E)DI, OUTS loads from DS:(E)SI (the port side is I/O).
           0x6C: (None, "w"), 0x6D: (None, "w"), 0x6E: ("r", None), 0x6F: ("r", None)}


def _size(code: str, d: Decoded) -> int:
    return {"b": 1, "w": 2, "v": d.opsize, "p": d.opsize + 2, "a": 2 * d.opsize, "s": 6,
            "q": 8}[code]


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def operand_access(d: Decoded, regs: dict[str, int], stack32: bool) -> Access | None:
    """The access of the explicit ModRM memory operand (segment, offset, size by the SDM's
    operand type, and ``r``/``w``/``rw``), or None when there is none: a register operand,
    an instruction that makes no access through it (LEA, INVLPG, the hint NOPs), or an
    encoding this model does not cover (#UD members of the groups, x87 escapes)."""
    if not d.defined or d.length is None or not d.memory or d.key in _NO_ACCESS:
        return None
    key, op, osz = d.key, d.opcode, d.opsize
    if key == (0x8F, 0):
        # POP Ev: the destination's address is computed with (E)SP already raised.
        smask = 0xFFFFFFFF if stack32 else 0xFFFF
        esp = (regs["esp"] & ~smask) | ((regs["esp"] + osz) & smask)
        return Access(d.seg, effective_offset(d, dict(regs, esp=esp)), osz, "w")
    if key in ((0xFF, 2), (0xFF, 3), (0xFF, 6)):
        return Access(d.seg, effective_offset(d, regs), osz + 2 if key == (0xFF, 3) else osz,
                      "r")
    if op in (0x1A3, 0x1AB, 0x1B3, 0x1BB):
        # BT/BTS/BTR/BTC Ev,Gv: the bit offset in the register is signed and selects
        # the operand-size unit at EA + (offset SAR log2(bits)) * size.
        off = _signed(regs[GPRS[d.reg]], osz * 8)
        unit = off >> (5 if osz == 4 else 4)
        ea = (effective_offset(d, regs) + unit * osz) & (0xFFFFFFFF if d.asz32 else 0xFFFF)
        return Access(d.seg, ea, osz, "r" if op == 0x1A3 else "rw")
    if key in _E:
        size, kind = _E[key]
        return Access(d.seg, effective_offset(d, regs), _size(size, d), kind)
    if key == (0x63, None):
        # ARPL writes only when the RPL is raised, but its exception list checks the
        # destination as a write: "#GP(0) If the destination is located in a
        # non-writable segment" (SDM Vol. 2 'ARPL', Protected Mode Exceptions).
        return Access(d.seg, effective_offset(d, regs), 2, "rw")
    return None


def data_accesses(d: Decoded, regs: dict[str, int], stack32: bool,
                  real: bool = False) -> list[Access] | None:
    """The data accesses of one execution of the instruction, in the order of the SDM's
    operation, or None when this model does not cover the instruction exactly (INT n,
    protected-mode IRET, x87). ``real``: the processor is in real-address mode."""
    if d.length is None or not d.defined:
        return None
    op = d.opcode
    osz = d.opsize
    smask = 0xFFFFFFFF if stack32 else 0xFFFF
    esp = regs["esp"] & smask
    amask = 0xFFFFFFFF if d.asz32 else 0xFFFF

    def push(n: int, k: int = 1) -> Access:
        return Access("ss", (esp - n * k) & smask, n, "w")

    def pop(n: int, k: int = 0) -> Access:
        return Access("ss", (esp + n * k) & smask, n, "r")

    out: list[Access] = []
    if d.has_modrm:
        key = d.key
        if key == (0x8F, 0):  # POP Ev: the stack read, then the store (ESP already raised)
            if d.mod == 3:
                return [pop(osz)]
            store = operand_access(d, regs, stack32)
            assert store is not None
            return [pop(osz), store]
        if d.mod == 3 or key in _NO_ACCESS:
            pass
        else:
            operand = operand_access(d, regs, stack32)
            if operand is None:
                return None
            out.append(operand)
        if key in ((0xFF, 2), (0xFF, 6)):
            out.append(push(osz))
        elif key == (0xFF, 3):
            out += [push(osz), push(osz, 2)]
        return out
    if op in _PUSH_SREG or 0x50 <= op <= 0x57 or op in (0x68, 0x6A, 0x9C):
        return [push(osz)]
    if op in _POP_SREG or 0x58 <= op <= 0x5F or op == 0x9D:
        return [pop(osz)]
    if op == 0xE8:
        return [push(osz)]
    if op == 0x9A:
        return [push(osz), push(osz, 2)]
    if op in (0xC2, 0xC3):
        return [pop(osz)]
    if op in (0xCA, 0xCB):
        return [pop(osz), pop(osz, 1)]
    if op == 0xC9:  # LEAVE: (E)SP := (E)BP, then pop (E)BP
        return [Access("ss", regs["ebp"] & smask, osz, "r")]
    if op == 0xC8:
        # ENTER: push (E)BP; for i = 1 .. level - 1 read SS:[(E)BP - i * size] ((E)BP by
        # the stack's address size) and push it; then push FrameTemp (level > 0). Last, the
        # check of a write of the operand size at the final stack pointer (SDM 'ENTER':
        # "causes a page fault whenever a write using the final value of the stack pointer
        # (within the current stack segment) would do so"; #SS "if the new value of the SP
        # or ESP register is outside the stack segment limit"): checked as a write, nothing
        # is stored.
        level = d.imm2 & 31
        out = [push(osz)]
        for i in range(1, level):
            out += [Access("ss", (regs["ebp"] - i * osz) & smask, osz, "r"), push(osz, i + 1)]
        if level:
            out.append(push(osz, level + 1))
        slots = level + 1 if level else 1
        out.append(Access("ss", (esp - slots * osz - d.imm) & smask, osz, "w"))
        return out
    if op == 0x60:  # PUSHA: AX, CX, DX, BX, the original SP, BP, SI, DI, in that order
        return [push(osz, k) for k in range(1, 9)]
    if op == 0x61:  # POPA: DI, SI, BP, (the SP slot skipped), BX, DX, CX, AX
        return [pop(osz, k) for k in range(8) if k != 3]
    if op == 0xCF and real:  # real-mode IRET: IP, CS, FLAGS
        return [pop(osz, k) for k in range(3)]
    if op in (0xA0, 0xA1, 0xA2, 0xA3):
        return [Access(d.seg, d.disp & amask, 1 if op in (0xA0, 0xA2) else osz,
                       "r" if op < 0xA2 else "w")]
    if op == 0xD7:
        return [Access(d.seg, (regs["ebx"] + (regs["eax"] & 0xFF)) & amask, 1, "r")]
    if op in _STRING:
        if d.rep and regs["ecx"] & amask == 0:
            return []
        size = 1 if op % 2 == 0 else osz
        src, dst = _STRING[op]
        if src:
            out.append(Access(d.seg, regs["esi"] & amask, size, src))
        if dst:
            out.append(Access("es", regs["edi"] & amask, size, dst))
        return out
    if op in (0xCC, 0xCD, 0xCE, 0xCF, 0xF1):
        return None
    return []


def first_segment_fault(accesses: list[Access], segs: dict[str, SegModel],
                        protected: bool) -> tuple[int, Access] | None:
    """The vector (#SS(0) = 12 through SS, #GP(0) = 13 otherwise) of the first access that
    the segment rules forbid (SDM Vol. 3A 5.3 limit, 5.4 type; a null or not-present
    segment in protected mode), with that access; None when every access is allowed."""
    for a in accesses:
        s = segs[a.seg]
        bad = a.offset + a.size - 1 > s.limit
        if protected:
            bad |= not s.usable
            if "w" in a.kind:
                bad |= not s.writable
            if "r" in a.kind:
                bad |= not s.readable
        if bad:
            return (12 if a.seg == "ss" else 13), a
    return None
