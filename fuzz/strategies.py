"""Hypothesis strategies for instruction-level differential testing, generated from the
SDM model's opcode maps (:mod:`aero.fuzz.sdm`), not from aero's instruction table.

A drawn :class:`~aero.fuzz.difftest.Scenario` is one to four instructions in 16-bit real-mode
or flat 32-bit protected-mode code (``pm32``; ``pm32-paging`` adds paging, see
:func:`draw_paging`), with a register file biased toward boundary values,
random arithmetic flags and DF, and memory filled with a seeded pattern. Registers that
address memory (ModRM base/index, the stack pointer, string pointers) are drawn so that
effective addresses land in the RAM both backends map.

Invariants:

* Opcodes come from the whole one- and two-byte opcode space as the SDM model maps it
  (:func:`aero.fuzz.sdm.opcode_keys`): every defined opcode of the selected classes
  (:data:`CLASS_OPCODES`, a literal table written from the SDM's instruction groups),
  minus :data:`EXCLUSIONS` (the one list of what is not comparable at instruction level,
  each entry with its reason; docs/known-divergences.md echoes it), plus the ``invalid``
  class: encodings that are #UD on every IA-32 processor. Nothing here reads
  :mod:`aero.isa` or aero's decoder, so a wrong or missing row in aero's table is
  generated like any other encoding.
* Prefixes are drawn from the whole encoding space, independently of the opcode: LOCK and
  REP/REPNE may precede any instruction (LOCK where the SDM does not allow it is #UD).
  Lockable opcodes (the SDM's list) take a register operand less often when LOCK is
  present.
* Every strategy is a pure function of Hypothesis's choices: same seed, same scenarios.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from aero.fuzz.difftest import (
    GPRS,
    INTERESTING32,
    PAGING_CODE_MIN,
    PTE_A,
    PTE_D,
    PTE_P,
    PTE_U,
    PTE_W,
    RAM_PAGES,
    RAM_SIZE,
    SEGS,
    USER_CODE_SEL,
    USER_DATA_SEL,
    Paging,
    Scenario,
    initial_regs,
    is_pm,
)
from hypothesis import strategies as st

from . import sdm
from .sdm import Decoded

__all__ = ["ALL_MODES", "ARENA", "ARENA_HI", "ARENA_LO", "CLASSES", "CLASS_OPCODES",
           "EXCLUSIONS", "Exclusion", "INTERESTING_U32", "INTERESTING_U8", "INVALID_ENCODINGS",
           "Op", "PERMILLE", "PM_MODES", "REG3", "STACK_OPS", "U16", "U32", "U8",
           "WORKING_CLASSES", "class_of", "draw_paging", "eflags", "excluded",
           "excluded_encoding", "instruction", "interesting32", "opcodes", "page_flags",
           "pending_handlers", "pointer_roles", "scenario", "scenarios", "select_rows",
           "shift_count"]

Key = tuple[int, "int | None"]

# ---- instruction classes ------------------------------------------------------------------
# Opcode keys (opcode, reg for group opcodes; 0F xx is 100h | xx) by class, from the SDM's
# instruction groups (Vol. 1 5.1 "General-Purpose Instructions", 5.20 "System
# Instructions"). Keys not listed are arithmetic, logic, shifts, bit operations, BCD,
# multiply/divide, SETcc/CMOVcc and the exchange-and-compare family: class "alu".


def _k(*ops: int) -> list[tuple[int, None]]:
    return [(o, None) for o in ops]


def _g(op: int, *regs: int) -> list[tuple[int, int]]:
    return [(op, r) for r in regs]


CLASS_OPCODES: dict[str, frozenset[tuple[int, int | None]]] = {
    "stack": frozenset(
        _k(0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, *range(0x50, 0x60), 0x60, 0x61, 0x68,
           0x6A, 0x9C, 0x9D, 0xC8, 0xC9, 0x1A0, 0x1A1, 0x1A8, 0x1A9)
        + _g(0x8F, 0) + _g(0xFF, 6)),
    "flow": frozenset(
        _k(*range(0x70, 0x80), *range(0x180, 0x190), 0xE0, 0xE1, 0xE2, 0xE3, 0xE8, 0xE9,
           0xEA, 0xEB, 0x9A, 0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xF1, 0x62)
        + _g(0xFF, 2, 3, 4, 5)),
    "string": frozenset(_k(0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF)),
    "io": frozenset(_k(0x6C, 0x6D, 0x6E, 0x6F, 0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE,
                       0xEF)),
    # The x87 escapes; other x87 work lives in its own modules.
    "x87": frozenset(_k(*range(0xD8, 0xE0))),
    "system": frozenset(
        _k(0xF4, 0xFA, 0xFB, 0x9B, 0x63, 0x102, 0x103, 0x106, 0x108, 0x109, 0x10B, 0x1B9,
           0x120, 0x121, 0x122, 0x123, 0x130, 0x131, 0x132, 0x133, 0x134, 0x135, 0x1A2)
        + _g(0x100, *range(8)) + _g(0x101, *range(8))),
    "data": frozenset(
        _k(0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x86, 0x87, *range(0x90, 0x98), 0x98,
           0x99, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2, 0xA3, *range(0xB0, 0xC0), 0xC4, 0xC5, 0xD6,
           0xD7, 0xF5, 0xF8, 0xF9, 0xFC, 0xFD, *range(0x118, 0x120), 0x1B2, 0x1B4, 0x1B5,
           0x1B6, 0x1B7, 0x1BE, 0x1BF, *range(0x1C8, 0x1D0))
        + _g(0xC6, 0) + _g(0xC7, 0)),
}
CLASSES = ("alu", "data", "stack", "flow", "string", "system", "io", "x87", "invalid")
# What the first working core implemented: the default for quick tests.
WORKING_CLASSES = ("alu", "data", "invalid")
STACK_OPS = CLASS_OPCODES["stack"] | frozenset(
    _k(0xE8, 0x9A, 0xC2, 0xC3, 0xCA, 0xCB, 0xCF, 0xCC, 0xCD, 0xCE, 0xF1)
    + _g(0xFF, 2, 3))


def class_of(key: tuple[int, int | None]) -> str:
    """The instruction class of an opcode key."""
    for name, keys in CLASS_OPCODES.items():
        if key in keys:
            return name
    return "alu"


@dataclass(frozen=True)
class Op:
    """One defined opcode of the SDM model's maps, as the generator draws it: ``family``
    consecutive opcodes that differ only in their low bits (``+r`` register forms, the 16
    condition codes) are one entry, so that they weigh as much as one instruction."""

    opcode: int
    reg: int | None
    has_modrm: bool
    imm: str
    family: int = 1

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.opcode, self.reg)

    @property
    def mem_only(self) -> bool:
        return (self.opcode, None) in sdm.MEM_ONLY or self.key in sdm.MEM_ONLY

    @property
    def lockable(self) -> bool:
        return self.key in sdm.LOCKABLE or (self.opcode, None) in sdm.LOCKABLE


# Opcode families (first opcode -> size): INC/DEC/PUSH/POP/XCHG/MOV r, BSWAP (8 registers);
# Jcc, Jcc rel32, SETcc, CMOVcc (16 conditions).
_FAMILIES = {0x40: 8, 0x48: 8, 0x50: 8, 0x58: 8, 0x91: 7, 0xB0: 8, 0xB8: 8, 0x1C8: 8,
             0x70: 16, 0x180: 16, 0x190: 16, 0x140: 16}
_IN_FAMILY = {o + i for o, n in _FAMILIES.items() for i in range(1, n)}


@cache
def opcodes() -> tuple[Op, ...]:
    """Every defined opcode of the SDM model's maps (families folded), in key order."""
    out = []
    for key in sdm.opcode_keys():
        op, reg = key
        if op in _IN_FAMILY:
            continue
        defined, has_modrm, imm = sdm.encoding_of(key)
        if defined:
            out.append(Op(op, reg, has_modrm, imm, _FAMILIES.get(op, 1)))
    return tuple(out)


# ---- exclusions (the single list; echoed in docs/known-divergences.md) --------------------

@dataclass(frozen=True)
class Exclusion:
    """Opcode keys (``keys``), or the encodings ``encoding`` selects, left out of
    instruction-level comparison in ``modes``. Encodings are judged by the SDM model's
    decoding (:class:`aero.fuzz.sdm.Decoded`)."""

    key: str
    keys: frozenset[tuple[int, int | None]]
    modes: tuple[str, ...]
    reason: str
    encoding: Callable[[Decoded], bool] | None = None


def _prefetch_register_form(d: Decoded) -> bool:
    return d.opcode == 0x118 and d.mod == 3 and d.reg < 4


def _vex_in_protected_mode(d: Decoded) -> bool:
    return d.opcode in (0xC4, 0xC5) and d.mod == 3


def _group7_register_form(d: Decoded) -> bool:
    return d.opcode == 0x101 and d.mod == 3 and d.reg not in (4, 6)


def _both_rep_prefixes(d: Decoded) -> bool:
    return 0xF2 in d.prefixes and 0xF3 in d.prefixes


def _locked_bit_op_on_register(d: Decoded) -> bool:
    # Judged on the raw encoding (0F AB, B3, BB, BA /5-/7 with a register operand).
    return (d.lock and d.mod == 3
            and (d.opcode in (0x1A3, 0x1AB, 0x1B3, 0x1BB) or d.opcode == 0x1BA))


ALL_MODES = ("real", "pm32", "pm32-paging")
PM_MODES = ("pm32", "pm32-paging")


def _nested_enter(d: Decoded) -> bool:
    return d.opcode == 0xC8 and (d.imm2 & 31) >= 2


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion("hlt", frozenset(_k(0xF4)), ALL_MODES,
              "HLT stops the CPU until an interrupt: Unicorn ends the emulation, aero "
              "reports a halt; there is no post-instruction state to compare."),
    Exclusion("io", CLASS_OPCODES["io"], ALL_MODES,
              "Port I/O reaches devices; Unicorn has none (IN/OUT only reach a hook)."),
    Exclusion("x87", CLASS_OPCODES["x87"], ALL_MODES,
              "x87 escapes (D8-DF): the x87 state is outside the comparison, and Unicorn's "
              "x87 (QEMU's) departs from the SDM in places (docs/fpu.md)."),
    Exclusion("msr", frozenset(_k(0x130, 0x132, 0x133, 0x134, 0x135)), ALL_MODES,
              "Model-specific registers and performance counters (WRMSR, RDMSR, RDPMC) "
              "differ between aero's CPU model and Unicorn's; SYSENTER/SYSEXIT are far "
              "transfers defined by those MSRs."),
    Exclusion("control-registers",
              frozenset(_k(0x120, 0x121, 0x122, 0x123, 0x106) + _g(0x101, 6)),
              ALL_MODES,
              "MOV to/from CRn/DRn, LMSW and CLTS read model-specific values or change "
              "paging, protection and mode state (CR0, CR3, CR4, DR6/DR7) that the "
              "register comparison does not cover."),
    Exclusion("descriptor-tables", frozenset(_g(0x100, 2, 3)), PM_MODES,
              "LLDT and LTR need LDT/TSS descriptors and change LDTR/TR caches; the flat "
              "test environment has neither (in real mode they are #UD and compared)."),
    Exclusion("interrupts-pm", frozenset(_k(0xCD, 0xCC, 0xCE, 0xF1, 0xCF)), PM_MODES,
              "INT n/INT3/INTO/INT1 and IRET in protected mode go through IDT gates, "
              "privilege checks and task state that Unicorn does not model at instruction "
              "level (it reports the vector without any gate check)."),
    Exclusion("far-transfers-pm",
              frozenset(_k(0xEA, 0x9A, 0xCA, 0xCB) + _g(0xFF, 3, 5)), PM_MODES,
              "Far JMP/CALL/RET in protected mode load CS from descriptor tables (call "
              "gates, conforming segments, privilege changes) beyond the flat environment."),
    Exclusion("prefetch-register-form", frozenset(), ALL_MODES,
              "0F 18 /0-/3 with a register operand: a reserved encoding (Intel SDM Vol. 2, "
              "PREFETCHh: 'Use of any ModRM value other than the specified ones will lead "
              "to unpredictable behavior'); Unicorn raises #UD, aero executes a hint NOP.",
              encoding=_prefetch_register_form),
    Exclusion("locked-bit-test-register", frozenset(), ALL_MODES,
              "LOCK BTS/BTR/BTC with a register operand (#UD on hardware and in aero) "
              "aborts the whole Unicorn process (a failed assertion in QEMU's TCG code "
              "generator), so it cannot be run in-process.",
              encoding=_locked_bit_op_on_register),
    Exclusion("vex-prefix", frozenset(), PM_MODES,
              "C4/C5 with a register ModRM in protected mode: LES/LDS with a register "
              "operand, #UD on the i686 aero models; a VEX prefix on processors with AVX "
              "such as Unicorn's CPU model, which then decodes a different instruction.",
              encoding=_vex_in_protected_mode),
    Exclusion("group7-register-forms", frozenset(), ALL_MODES,
              "0F 01 /0, /1, /2, /3, /5, /7 with a register ModRM: #UD on the i686 aero "
              "models (SGDT/SIDT/LGDT/LIDT/INVLPG take memory only); later processors, "
              "Unicorn's model among them, define VMCALL, MONITOR/MWAIT, XGETBV/XSETBV, "
              "RDTSCP and others there.",
              encoding=_group7_register_form),
    Exclusion("conflicting-rep-prefixes", frozenset(), ALL_MODES,
              "F2 and F3 on the same string instruction: the SDM defines no meaning for two "
              "prefixes of one group ('it is only useful to include up to one prefix code "
              "from each of the four groups', Vol. 2 2.1.1). aero obeys the last one (as "
              "Bochs does); Unicorn lets REPNE win whatever the order.",
              encoding=_both_rep_prefixes),
    Exclusion("nested-enter-paging", frozenset(), ("pm32-paging",),
              "ENTER with a nesting level of 2 or more copies frame pointers from the old "
              "frame after pushing (E)BP. When one of those reads raises #PF, whether the "
              "push has already been written (stack bytes below ESP and the dirty bit of "
              "their page) is not architecturally defined: aero checks every access before "
              "the first write, QEMU writes the push first. Levels 0 and 1 are compared.",
              encoding=_nested_enter),
)


def excluded(key: tuple[int, int | None], mode: str) -> Exclusion | None:
    """The exclusion covering a whole opcode key in a mode, if any."""
    for e in EXCLUSIONS:
        if (key in e.keys or (key[0], None) in e.keys) and mode in e.modes:
            return e
    return None


def excluded_encoding(d: Decoded | object, mode: str) -> Exclusion | None:
    """The exclusion covering one encoding decoded by the SDM model (key exclusions
    included). An :class:`aero.fuzz.difftest.InsnInfo` is accepted for its SDM decoding."""
    dec: Decoded | None = d if isinstance(d, Decoded) else getattr(d, "sdm", None)
    if dec is None or not dec.defined:
        return None
    e = excluded(dec.key, mode)
    if e is not None:
        return e
    return next((e for e in EXCLUSIONS
                 if e.encoding is not None and mode in e.modes and e.encoding(dec)), None)


def pending_handlers() -> frozenset[str]:
    """Handlers this core source tree still marks as unwritten (they raise #UD). Reported
    by the campaign; generation does not depend on it."""
    import re

    from aero._stamp import CORE_DIR

    pending = re.compile(r"void\s+aero_op_(\w+)\s*\([^)]*\)\s*\{\s*AERO_PENDING\s*\(")
    names: set[str] = set()
    for src in CORE_DIR.glob("ops_*.c"):
        names.update(pending.findall(src.read_text()))
    return frozenset(names)


def select_rows(mode: str, classes: Sequence[str]) -> list[Op]:
    """Defined opcodes of the given classes (SDM model) that are compared in ``mode``."""
    unknown = set(classes) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown instruction classes: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(CLASSES)}")
    return [o for o in opcodes() if class_of(o.key) in classes and excluded(o.key, mode) is None]


# ---- invalid encodings --------------------------------------------------------------------

# (opcode bytes, ModRM reg values or None without ModRM): #UD on the i686 aero models
# (undefined in the Intel SDM opcode maps, or reserved group members, or UD2/UD1) and in
# Unicorn's model, whatever follows.
INVALID_ENCODINGS: tuple[tuple[bytes, tuple[int, ...] | None], ...] = (
    (b"\x0f\x04", None), (b"\x0f\x0a", None), (b"\x0f\x0c", None), (b"\x0f\x36", None),
    (b"\x0f\x39", None), (b"\x0f\xa6", None), (b"\x0f\xa7", None), (b"\x0f\xff", None),
    (b"\xfe", (2, 3, 4, 5, 6, 7)), (b"\xff", (7,)), (b"\x0f\xba", (0, 1, 2, 3)),
    (b"\x0f\x00", (6, 7)), (b"\x0f\x0b", None), (b"\x0f\xb9", tuple(range(8))),
)


# ---- value distributions ------------------------------------------------------------------
# Strategies are built once and reused: building them inside every draw costs more than
# the emulation of the example itself.

U32 = st.integers(0, 0xFFFFFFFF)
U16 = st.integers(0, 0xFFFF)
U8 = st.integers(0, 0xFF)
REG3 = st.integers(0, 7)
PERMILLE = st.integers(0, 999)
_MOD = st.sampled_from((0, 1, 2))
_SMALL16 = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF)


def _interesting_from(v: int) -> int:
    """Map one drawn integer to a biased 32-bit value (0 maps to 0, so shrinking goes
    there): the low 3 bits pick the kind of value, the rest is its payload."""
    kind, x = v & 7, v >> 3
    if kind <= 2:
        return INTERESTING32[x % len(INTERESTING32)]
    if kind == 3:
        return x & 0xF
    if kind == 4:
        return (x & 0xFFFF0000) | _SMALL16[(x >> 3) & 7]
    if kind == 5:
        return -((x & 0xF) + 1) & 0xFFFFFFFF
    return x & 0xFFFFFFFF


# One draw per value: Hypothesis's cost grows with the number of draws per example.
INTERESTING_U32 = st.integers(0, (1 << 35) - 1).map(_interesting_from)
INTERESTING_U8 = st.one_of(st.sampled_from((0, 1, 2, 0x7F, 0x80, 0x81, 0xFE, 0xFF)), U8)


def interesting32() -> st.SearchStrategy[int]:
    """32-bit values biased toward the boundaries arithmetic cares about."""
    return INTERESTING_U32


@cache
def shift_count(bits: int) -> st.SearchStrategy[int]:
    """Shift counts biased toward 0, 1 and the operand width."""
    return st.one_of(st.sampled_from((0, 1, 2, bits - 1, bits, bits + 1, 31, 32, 33, 0xFF)), U8)


# Protected-mode data arena: where pointer registers point (all of it mapped RAM).
ARENA_LO, ARENA_HI = 0x10000, 0xF0000
ARENA = st.integers(ARENA_LO, ARENA_HI)


@cache
def _pointer(mode: str, asz32: bool, role: str) -> st.SearchStrategy[int]:
    """A register value used to form addresses, so that accesses stay in mapped RAM."""
    if mode == "real":
        if not asz32:
            return INTERESTING_U32
        # 32-bit addressing in real mode: mostly within the 64 KB limit, sometimes beyond.
        return st.one_of(U16, U16, U16, INTERESTING_U32)
    if not asz32:
        return INTERESTING_U32  # 16-bit addressing: any value, the offset wraps at 64 KB
    if role == "index":
        return st.one_of(st.integers(0, 0x7FFF),
                         st.integers(-0x400, 0x400).map(lambda v: v & 0xFFFFFFFF))
    if role == "bitoffset":
        return st.integers(-0x4000, 0x4000).map(lambda v: v & 0xFFFFFFFF)
    return ARENA


# ---- instructions -------------------------------------------------------------------------

_SEG_PREFIXES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
_LE = {n: (lambda v, n=n: (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")) for n in (1, 2, 4)}


@cache
def _disp(n: int, mode: str, absolute: bool) -> st.SearchStrategy[bytes]:
    """A displacement of n bytes; 32-bit ones in protected mode stay near the arena."""
    if n == 1:
        return INTERESTING_U8.map(_LE[1])
    if n == 2:
        return U16.map(_LE[2])
    if is_pm(mode):
        if absolute:
            return ARENA.map(_LE[4])
        small = st.integers(-0x800, 0x800).map(_LE[4])
        # One in twenty: any value (often outside mapped RAM: the example is discarded).
        return st.one_of(*([small] * 19), U32.map(_LE[4]))
    return st.one_of(U16, U32).map(_LE[4])


@cache
def _modrm(reg: int, asz32: bool, mode: str, p_reg: float) -> st.SearchStrategy[bytes]:
    """ModRM, SIB and displacement (reg field given); a register operand with p_reg."""
    disp = {k: _disp(*k, mode, False) for k in ((1,), (2,), (4,))}
    absolute = _disp(2, mode, True) if not asz32 else _disp(4, mode, True)

    @st.composite
    def draw_modrm(draw: st.DrawFn) -> bytes:
        register = draw(PERMILLE) < p_reg * 1000
        rm = draw(REG3)
        if register:
            return bytes([0xC0 | reg << 3 | rm])
        mod = draw(_MOD)
        out = bytearray([mod << 6 | reg << 3 | rm])
        if not asz32:
            if mod == 0 and rm == 6:
                out += draw(absolute)
            elif mod:
                out += draw(disp[(mod,)])
            return bytes(out)
        is_abs = rm == 5 and mod == 0
        if rm == 4:
            sib = draw(U8)
            out.append(sib)
            is_abs = (sib & 7) == 5 and mod == 0
        if is_abs:
            out += draw(absolute)
        elif mod:
            out += draw(disp[(1,) if mod == 1 else (4,)])
        return bytes(out)

    return draw_modrm()


@cache
def _imm_for(op: Op, osz32: bool, asz32: bool, mode: str) -> st.SearchStrategy[bytes]:
    kind = op.imm
    o = op.opcode
    if kind == "b":
        if o in (0xC0, 0xC1):
            bits = 8 if o == 0xC0 else (32 if osz32 else 16)
            return shift_count(bits).map(_LE[1])
        if o in (0x1A4, 0x1AC):  # SHLD/SHRD Ev,Gv,Ib
            return shift_count(32 if osz32 else 16).map(_LE[1])
        if o in (0xD4, 0xD5):  # AAM, AAD
            return st.one_of(st.just(10), st.just(0), U8).map(_LE[1])
        return INTERESTING_U8.map(_LE[1])
    if kind == "w":
        return st.one_of(st.integers(0, 16).map(lambda v: v * 2), U16).map(_LE[2])
    if kind == "z":
        return INTERESTING_U32.map(_LE[4 if osz32 else 2])
    if kind == "p":
        n = 4 if osz32 else 2
        return st.tuples(U32, U16).map(lambda t: _LE[n](t[0]) + _LE[2](t[1]))
    if kind == "o":
        if asz32:
            return (ARENA if is_pm(mode) else st.one_of(U16, U32)).map(_LE[4])
        return U16.map(_LE[2])
    if kind == "wb":
        return st.tuples(st.integers(0, 64).map(lambda v: v * 2),
                         st.one_of(st.integers(0, 3), U8)).map(
            lambda t: _LE[2](t[0]) + _LE[1](t[1]))
    return st.just(b"")


_N_PREFIXES = st.sampled_from((0, 0, 0, 0, 1, 1, 2, 3))
_PREFIX_KIND = st.sampled_from(("seg", "seg", "osize", "osize", "asize", "rep", "lock"))
_SEG = st.sampled_from(_SEG_PREFIXES)
_REP = st.sampled_from((0xF2, 0xF3))
_ONE_IN = {n: st.integers(0, n - 1) for n in (5, 20, 50, 200)}
_LONG = st.integers(4, 14)
_INVALID = st.sampled_from(INVALID_ENCODINGS)


def instruction(mode: str, rows: Sequence[Op],
                with_invalid: bool = True) -> st.SearchStrategy[bytes]:
    """The bytes of one instruction: prefixes, opcode, ModRM/SIB/displacement, immediates.

    ``rows`` (opcodes of the SDM model, :func:`select_rows`) must be non-empty unless
    ``with_invalid``. A few percent of the draws are deliberately invalid (LOCK where it is
    not allowed, register forms of memory-only opcodes, undefined opcodes) to exercise #UD.
    """
    return _instruction(mode, tuple(rows), with_invalid)


@cache
def _instruction(mode: str, rows: tuple[Op, ...],
                 with_invalid: bool) -> st.SearchStrategy[bytes]:
    code32 = is_pm(mode)
    row_strategy = st.sampled_from(rows) if rows else st.nothing()

    @st.composite
    def draw_instruction(draw: st.DrawFn) -> bytes:
        use_invalid = with_invalid and (not rows or draw(_ONE_IN[20]) == 0)
        prefixes = bytearray()
        n_pref = draw(_N_PREFIXES)
        if draw(_ONE_IN[200]) == 0:
            n_pref = draw(_LONG)  # long encodings (the 15-byte limit)
        row = None if use_invalid else draw(row_strategy)
        for _ in range(n_pref):
            kind = draw(_PREFIX_KIND)
            if kind == "seg":
                prefixes.append(draw(_SEG))
            elif kind == "osize":
                prefixes.append(0x66)
            elif kind == "asize":
                prefixes.append(0x67)
            elif kind == "rep":
                prefixes.append(draw(_REP))
            else:
                prefixes.append(0xF0)
        osz32 = code32 != (0x66 in prefixes)
        asz32 = code32 != (0x67 in prefixes)
        if row is None:
            opbytes, regs = draw(_INVALID)
            out = bytes(prefixes) + opbytes
            if regs is not None:
                out += draw(_modrm(regs[draw(U8) % len(regs)], asz32, mode, 0.4))
            return out
        opcode = row.opcode
        if row.family > 1:
            opcode += draw(U8) % row.family
        out = bytes(prefixes) + (bytes([0x0F, opcode & 0xFF]) if opcode >= 0x100
                                 else bytes([opcode]))
        if row.has_modrm:
            reg = row.reg if row.reg is not None else draw(REG3)
            # Memory-only opcodes and LOCKed lockable ones take a register operand only
            # rarely (#UD).
            p_reg = 0.03 if row.mem_only else 0.1 if 0xF0 in prefixes else 0.4
            out += draw(_modrm(reg, asz32, mode, p_reg))
        out += draw(_imm_for(row, osz32, asz32, mode))
        return out

    return draw_instruction().filter(
        lambda b: excluded_encoding(sdm.decode(b, code32), mode) is None)


# ---- scenarios ----------------------------------------------------------------------------

def pointer_roles(d: Decoded) -> dict[str, tuple[str, bool]]:
    """Registers an instruction (decoded by the SDM model) uses as addresses: name ->
    (role, 32-bit addressing)."""
    roles: dict[str, tuple[str, bool]] = {}
    if d.memory:
        # Undefined group members still form their address (the reference reads it).
        if d.base:
            roles[d.base] = ("base", d.asz32)
        if d.index and d.index not in roles:
            roles[d.index] = ("index", d.asz32)
        if d.opcode in (0x1A3, 0x1AB, 0x1B3, 0x1BB):  # BT family Ev,Gv: signed bit offset
            roles.setdefault(GPRS[d.reg], ("bitoffset", d.asz32))
    if not d.defined:
        return roles
    key = d.key if d.opcode in sdm.GROUPS else (d.opcode, None)
    if key in STACK_OPS:
        roles["esp"] = ("base", True)
        if d.opcode in (0xC8, 0xC9):
            roles["ebp"] = ("base", True)
    if d.opcode in sdm.STRING_OPS:
        roles.setdefault("esi", ("base", d.asz32))
        roles.setdefault("edi", ("base", d.asz32))
    if d.opcode == 0xD7:
        roles.setdefault("ebx", ("base", d.asz32))
    return roles


_RARE_FLAGS = (0x1000, 0x2000, 0x3000, 0x4000, 0x40000, 0x200000)


def _eflags_from(v: int) -> int:
    """EFLAGS from one drawn integer: random arithmetic flags, DF (bit 10) and IF (bit 9);
    in one case out of sixteen also IOPL, NT, AC or ID; TF never (0 maps to 2)."""
    f = 2 | (v & 0xED5)
    if (v >> 12) & 0xF == 1:
        f |= _RARE_FLAGS[(v >> 16) % len(_RARE_FLAGS)]
    return f


def eflags() -> st.SearchStrategy[int]:
    """EFLAGS: random arithmetic flags, DF and IF; rarely IOPL/NT/AC/ID; TF never."""
    return _EFLAGS


_EFLAGS = st.integers(0, (1 << 19) - 1).map(_eflags_from)
_COMMON_SELECTORS = (0, 0x1000, 0x8000, 0xF000, 0xFFFF)
_SELECTOR = st.integers(0, (1 << 19) - 1).map(
    lambda v: _COMMON_SELECTORS[(v >> 3) % 5] if v & 7 < 3 else (v >> 3) & 0xFFFF)
_CODE_SEG = st.integers(0, 0xF000)
_FILL = st.one_of(st.just(0), st.integers(1, 0xFFFFFFFF))
_SMALL_COUNT = st.integers(0, 5)
_QUARTER = st.integers(0, 3)


def scenario(mode: str, rows: Sequence[Op], with_invalid: bool = True,
             max_len: int = 4) -> st.SearchStrategy[Scenario]:
    """Scenarios of 1 to ``max_len`` instructions in ``mode``."""
    code32 = is_pm(mode)
    insn = instruction(mode, rows, with_invalid)
    length = st.integers(1, max_len)

    @st.composite
    def draw_scenario(draw: st.DrawFn) -> Scenario:
        code = [draw(insn) for _ in range(draw(length))]
        infos = [sdm.decode(c, code32) for c in code]
        roles: dict[str, tuple[str, bool]] = {}
        for info in infos:
            for k, v in pointer_roles(info).items():
                roles.setdefault(k, v)
        regs = initial_regs(mode)
        for name in GPRS:
            if name in roles:
                role, asz32 = roles[name]
                regs[name] = draw(_pointer(mode, asz32, role))
            else:
                regs[name] = draw(INTERESTING_U32)
        if any(i.opcode in sdm.STRING_OPS or i.rep for i in infos):
            if draw(_QUARTER) != 0:
                regs["ecx"] = draw(_SMALL_COUNT)
        total = sum(len(c) for c in code)
        if mode == "real":
            for s in SEGS:
                regs[s] = draw(_SELECTOR)
            regs["cs"] = draw(_CODE_SEG)
            regs["eip"] = draw(U16) % (0xFFFF - 64 - total)
        elif mode == "pm32-paging":
            regs["eip"] = PAGING_CODE_MIN + draw(U32) % (RAM_SIZE - PAGING_CODE_MIN - 0x1000)
        else:
            regs["eip"] = 0x1000 + draw(U32) % (RAM_SIZE - 0x2000)
        regs["eflags"] = draw(_EFLAGS)
        pg = None
        if mode == "pm32-paging":
            pg = draw_paging(draw, regs["eip"], total)
            if pg.cpl == 3:
                regs.update({s: USER_DATA_SEL for s in SEGS})
                regs["cs"] = USER_CODE_SEL
        return Scenario(mode, regs, code, draw(_FILL), paging=pg)

    return draw_scenario()


# ---- paging (pm32-paging) ------------------------------------------------------------------

_URW = PTE_P | PTE_W | PTE_U
# Page rights by weight: most pages usable from every ring, the rest read-only,
# supervisor-only, both, or not present.
_RIGHTS = (_URW,) * 13 + (PTE_P | PTE_U,) * 2 + (PTE_P | PTE_W,) * 2 + (PTE_P,) + (0,) * 2


def page_flags(seed: int) -> bytes:
    """The page-table flags of every RAM page for a rights seed (0: every page present,
    writable and user, accessed and dirty clear). A pure function of the seed; A and D
    start set or clear at random. The paging-structure pages (1, 2) are not present."""
    if seed == 0:
        flags = bytearray([_URW]) * RAM_PAGES
    else:
        raw = hashlib.shake_256(b"aero-pages" + seed.to_bytes(8, "little")).digest(
            2 * RAM_PAGES)
        flags = bytearray(
            _RIGHTS[raw[2 * i] % len(_RIGHTS)]
            | (PTE_A if raw[2 * i + 1] & 1 else 0) | (PTE_D if raw[2 * i + 1] & 2 else 0)
            for i in range(RAM_PAGES))
    flags[1] = flags[2] = 0
    return bytes(flags)


# The code pages' rights: mostly executable at any CPL.
_CODE_RIGHTS = st.sampled_from((_URW, _URW, _URW, _URW, _URW, PTE_P | PTE_U, PTE_P | PTE_W,
                                PTE_P, 0))
_PDE_RIGHTS = st.sampled_from((_URW, _URW, _URW, _URW, PTE_P | PTE_U, PTE_P | PTE_W, _URW | PTE_A))
_AD = st.sampled_from((0, PTE_A, PTE_A | PTE_D, PTE_D))
_CPL = st.sampled_from((0, 3))
_PAGE_SEED = st.one_of(st.just(0), st.integers(1, (1 << 63) - 1))


def draw_paging(draw: st.DrawFn, eip: int, length: int) -> Paging:
    """Paging for code at ``eip`` (``length`` bytes), drawn inside a scenario: CPL 0 or 3,
    CR0.WP on or off, 4 KB pages with mixed rights (:func:`page_flags`) and the code pages
    drawn on their own, or (one time in five, with CR4.PSE) one 4 MB page with drawn
    rights."""
    cpl = draw(_CPL)
    wp = draw(st.booleans())
    large = draw(_ONE_IN[5]) == 0
    pse = large or draw(st.booleans())
    pde = draw(_PDE_RIGHTS) | draw(_AD)
    flags = bytearray(page_flags(draw(_PAGE_SEED)))
    for page in range(eip >> 12, ((eip + max(length, 1) - 1) >> 12) + 1):
        if page < RAM_PAGES:
            flags[page] = draw(_CODE_RIGHTS) | draw(_AD)
    if large:
        pde = draw(_CODE_RIGHTS) | draw(_AD)
    return Paging(cpl, wp, pse, large, pde, bytes(flags))


def scenarios(modes: Sequence[str], classes: Sequence[str]) -> st.SearchStrategy[Scenario]:
    """Scenarios over the given modes and instruction classes (``invalid`` adds #UD cases).
    """
    with_invalid = "invalid" in classes
    parts = []
    for mode in modes:
        rows = select_rows(mode, [c for c in classes if c != "invalid"])
        if not rows and not with_invalid:
            continue
        parts.append(scenario(mode, rows, with_invalid))
    if not parts:
        raise ValueError("no instruction is left to generate with these classes and modes")
    return st.one_of(parts)
