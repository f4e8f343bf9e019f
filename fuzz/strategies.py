"""Hypothesis strategies for instruction-level differential testing, generated from the
instruction table (:data:`aero.isa.INSTRUCTIONS`).

A drawn :class:`~aero.fuzz.difftest.Scenario` is one to four instructions in 16-bit real-mode
or flat 32-bit protected-mode code (``pm32``; ``pm32-paging`` adds paging, see
:func:`draw_paging`), with a register file biased toward boundary values,
random arithmetic flags and DF, and memory filled with a seeded pattern. Registers that
address memory (ModRM base/index, the stack pointer, string pointers) are drawn so that
effective addresses land in the RAM both backends map.

Invariants:

* Instructions come only from table rows of the selected classes, minus
  :data:`EXCLUSIONS` (the one list of what is not comparable at instruction level, each
  entry with its reason; docs/known-divergences.md echoes it), plus the ``invalid``
  class: encodings that are #UD on every IA-32 processor.
* Prefixes are drawn from the whole encoding space, independently of the row: LOCK and
  REP/REPNE may precede any instruction (LOCK where the SDM does not allow it is #UD),
  so a wrong ``lock``/``str`` flag in aero's table is exercised, not avoided. Rows marked
  ``lock`` take a register operand less often when LOCK is present.
* Every strategy is a pure function of Hypothesis's choices: same seed, same scenarios.
"""

from __future__ import annotations

import hashlib
import re
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
    InsnInfo,
    Paging,
    Scenario,
    decode,
    initial_regs,
    is_pm,
)
from hypothesis import strategies as st

from aero import isa

__all__ = ["ALL_MODES", "ARENA", "ARENA_HI", "ARENA_LO", "CLASSES", "EXCLUSIONS", "Exclusion",
           "INTERESTING_U32", "INTERESTING_U8", "INVALID_ENCODINGS", "PERMILLE", "PM_MODES",
           "REG3", "STACK_ROLES", "STRING_ROLES", "U16", "U32", "U8", "WORKING_CLASSES",
           "class_of", "draw_paging", "eflags", "excluded", "excluded_encoding", "instruction",
           "interesting32", "page_flags", "pending_handlers", "pointer_roles", "scenario",
           "scenarios", "select_rows", "shift_count"]

# ---- instruction classes ------------------------------------------------------------------

_CLASS_HANDLERS: dict[str, frozenset[str]] = {
    "stack": frozenset({
        "push_Zv", "pop_Zv", "push_Ev", "pop_Ev", "push_Iz", "push_Ib", "push_sreg",
        "pop_sreg", "pusha", "popa", "pushf", "popf", "enter", "leave"}),
    "flow": frozenset({
        "jcc", "jmp_J", "jmp_Ev", "jmpf_Ap", "jmpf_Mp", "call_Jz", "call_Ev", "callf_Ap",
        "callf_Mp", "ret", "ret_Iw", "retf", "iret", "int_Ib", "int3", "into", "int1",
        "loopcc", "jcxz", "bound"}),
    "string": frozenset({"movs", "cmps", "stos", "lods", "scas"}),
    "io": frozenset({"ins", "outs", "in_Ib", "in_DX", "out_Ib", "out_DX"}),
    "x87": frozenset({"fpu_esc"}),
    "system": frozenset({
        "hlt", "cli", "sti", "cpuid", "rdtsc", "rdmsr", "wrmsr", "mov_CdRd", "mov_RdCd",
        "mov_DdRd", "mov_RdDd", "lgdt", "lidt", "sgdt", "sidt", "smsw", "lmsw", "clts",
        "invd", "invlpg", "sldt", "str", "lldt", "ltr", "verrw", "lar", "lsl", "arpl",
        "sysenter", "sysexit", "ud2", "wait"}),
    "data": frozenset({
        "mov_EbGb", "mov_EvGv", "mov_GbEb", "mov_GvEv", "mov_EbIb", "mov_EvIz", "mov_ZbIb",
        "mov_ZvIv", "mov_ALOb", "mov_eAXOv", "mov_ObAL", "mov_OveAX", "mov_EwSw",
        "mov_SwEw", "lea", "xchg_EbGb", "xchg_EvGv", "xchg_ZveAX", "xlat", "nop", "nop_Ev",
        "lxs", "cbw", "cwd", "movzx_GvEb", "movzx_GvEw", "movsx_GvEb", "movsx_GvEw",
        "bswap", "lahf", "sahf", "salc", "clc", "stc", "cmc", "cld", "std"}),
}
# Everything else in the table is arithmetic, logic, shifts, bit operations, BCD,
# multiply/divide, SETcc/CMOVcc and the exchange-and-compare family (aero/_core/ops_alu.c).
CLASSES = ("alu", "data", "stack", "flow", "string", "system", "io", "x87", "invalid")
# What the first working core implemented: the default for quick tests.
WORKING_CLASSES = ("alu", "data", "invalid")


def class_of(row: isa.Insn) -> str:
    """The instruction class of a table row."""
    for name, handlers in _CLASS_HANDLERS.items():
        if row.handler in handlers:
            return name
    return "alu"


# ---- exclusions (the single list; echoed in docs/known-divergences.md) --------------------

@dataclass(frozen=True)
class Exclusion:
    """Table rows (``handlers``), or the encodings ``encoding`` selects, left out of
    instruction-level comparison in ``modes``."""

    key: str
    handlers: frozenset[str]
    modes: tuple[str, ...]
    reason: str
    encoding: Callable[[InsnInfo], bool] | None = None


def _prefetch_register_form(info: InsnInfo) -> bool:
    return info.opcode == 0x118 and info.mod == 3 and info.reg < 4


def _vex_in_protected_mode(info: InsnInfo) -> bool:
    return info.opcode in (0xC4, 0xC5) and info.mod == 3


def _group7_register_form(info: InsnInfo) -> bool:
    return info.opcode == 0x101 and info.mod == 3 and info.reg not in (4, 6)


def _both_rep_prefixes(info: InsnInfo) -> bool:
    return 0xF2 in info.prefixes and 0xF3 in info.prefixes


def _locked_bit_op_on_register(info: InsnInfo) -> bool:
    # Judged on the raw encoding (0F AB, B3, BB, BA /5-/7 with a register operand), not
    # on aero's table, so that a wrong table row cannot widen the exclusion.
    return (info.lock and info.mod == 3
            and (info.opcode in (0x1A3, 0x1AB, 0x1B3, 0x1BB) or info.opcode == 0x1BA))


ALL_MODES = ("real", "pm32", "pm32-paging")
PM_MODES = ("pm32", "pm32-paging")

def _nested_enter(info: InsnInfo) -> bool:
    return info.row is not None and info.row.handler == "enter" and (info.imm2 & 31) >= 2


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion("hlt", frozenset({"hlt"}), ALL_MODES,
              "HLT stops the CPU until an interrupt: Unicorn ends the emulation, aero "
              "reports a halt; there is no post-instruction state to compare."),
    Exclusion("io", _CLASS_HANDLERS["io"], ALL_MODES,
              "Port I/O reaches devices; Unicorn has none (IN/OUT only reach a hook)."),
    Exclusion("x87", frozenset({"fpu_esc"}), ALL_MODES,
              "x87 escapes (D8-DF): the x87 state is outside the comparison, and Unicorn's "
              "x87 (QEMU's) departs from the SDM in places (docs/fpu.md)."),
    Exclusion("msr", frozenset({"rdmsr", "wrmsr", "sysenter", "sysexit"}), ALL_MODES,
              "Model-specific registers differ between aero's CPU model and Unicorn's; "
              "SYSENTER/SYSEXIT are far transfers defined by those MSRs."),
    Exclusion("control-registers",
              frozenset({"mov_CdRd", "mov_RdCd", "mov_DdRd", "mov_RdDd", "lmsw", "clts"}),
              ALL_MODES,
              "MOV to/from CRn/DRn, LMSW and CLTS read model-specific values or change "
              "paging, protection and mode state (CR0, CR3, CR4, DR6/DR7) that the "
              "register comparison does not cover."),
    Exclusion("descriptor-tables", frozenset({"lldt", "ltr"}), PM_MODES,
              "LLDT and LTR need LDT/TSS descriptors and change LDTR/TR caches; the flat "
              "test environment has neither (in real mode they are #UD and compared)."),
    Exclusion("interrupts-pm", frozenset({"int_Ib", "int3", "into", "int1", "iret"}),
              PM_MODES,
              "INT n/INT3/INTO/INT1 and IRET in protected mode go through IDT gates, "
              "privilege checks and task state that Unicorn does not model at instruction "
              "level (it reports the vector without any gate check)."),
    Exclusion("far-transfers-pm",
              frozenset({"jmpf_Ap", "jmpf_Mp", "callf_Ap", "callf_Mp", "retf"}), PM_MODES,
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


def excluded(row: isa.Insn, mode: str) -> Exclusion | None:
    """The exclusion covering a whole table row in a mode, if any."""
    for e in EXCLUSIONS:
        if row.handler in e.handlers and mode in e.modes:
            return e
    return None


def excluded_encoding(info: InsnInfo, mode: str) -> Exclusion | None:
    """The exclusion covering one decoded encoding (row exclusions included)."""
    if info.row is None:
        return None
    e = excluded(info.row, mode)
    if e is not None:
        return e
    return next((e for e in EXCLUSIONS
                 if e.encoding is not None and mode in e.modes and e.encoding(info)), None)


_PENDING = re.compile(r"void\s+aero_op_(\w+)\s*\([^)]*\)\s*\{\s*AERO_PENDING\s*\(")


def pending_handlers() -> frozenset[str]:
    """Handlers this core source tree still marks as unwritten (they raise #UD)."""
    from aero._stamp import CORE_DIR

    names: set[str] = set()
    for src in CORE_DIR.glob("ops_*.c"):
        names.update(_PENDING.findall(src.read_text()))
    return frozenset(names)


def select_rows(mode: str, classes: Sequence[str], skip: frozenset[str] = frozenset()
                ) -> list[isa.Insn]:
    """Table rows of the given classes that are compared in ``mode``."""
    unknown = set(classes) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown instruction classes: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(CLASSES)}")
    return [r for r in isa.INSTRUCTIONS
            if class_of(r) in classes and excluded(r, mode) is None and r.handler not in skip]


# ---- invalid encodings --------------------------------------------------------------------

# (opcode bytes, ModRM reg values or None without ModRM): #UD on the i686 aero models
# (undefined in the Intel SDM opcode maps, or reserved group members) and in Unicorn's
# model, whatever follows.
INVALID_ENCODINGS: tuple[tuple[bytes, tuple[int, ...] | None], ...] = (
    (b"\x0f\x04", None), (b"\x0f\x0a", None), (b"\x0f\x0c", None), (b"\x0f\x36", None),
    (b"\x0f\x39", None), (b"\x0f\xa6", None), (b"\x0f\xa7", None), (b"\x0f\xff", None),
    (b"\xfe", (2, 3, 4, 5, 6, 7)), (b"\xff", (7,)), (b"\x0f\xba", (0, 1, 2, 3)),
    (b"\x0f\x00", (6, 7)),
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
def _imm_for(row: isa.Insn, osz32: bool, asz32: bool, mode: str) -> st.SearchStrategy[bytes]:
    kind = row.imm
    h = row.handler
    if kind == isa.IMM_B:
        if h in ("rot_EbIb", "rot_EvIb"):
            bits = 8 if h == "rot_EbIb" else (32 if osz32 else 16)
            return shift_count(bits).map(_LE[1])
        if h == "shxd":
            return shift_count(32 if osz32 else 16).map(_LE[1])
        if h in ("aam", "aad"):
            return st.one_of(st.just(10), st.just(0), U8).map(_LE[1])
        return INTERESTING_U8.map(_LE[1])
    if kind == isa.IMM_W:
        return st.one_of(st.integers(0, 16).map(lambda v: v * 2), U16).map(_LE[2])
    if kind == isa.IMM_Z:
        return INTERESTING_U32.map(_LE[4 if osz32 else 2])
    if kind == isa.IMM_AP:
        n = 4 if osz32 else 2
        return st.tuples(U32, U16).map(lambda t: _LE[n](t[0]) + _LE[2](t[1]))
    if kind == isa.IMM_O:
        if asz32:
            return (ARENA if is_pm(mode) else st.one_of(U16, U32)).map(_LE[4])
        return U16.map(_LE[2])
    if kind == isa.IMM_WB:
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


def instruction(mode: str, rows: Sequence[isa.Insn],
                with_invalid: bool = True) -> st.SearchStrategy[bytes]:
    """The bytes of one instruction: prefixes, opcode, ModRM/SIB/displacement, immediates.

    ``rows`` must be non-empty unless ``with_invalid``. A few percent of the draws are
    deliberately invalid (LOCK where it is not allowed, register forms of memory-only rows,
    undefined opcodes) to exercise #UD.
    """
    return _instruction(mode, tuple(rows), with_invalid)


@cache
def _instruction(mode: str, rows: tuple[isa.Insn, ...],
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
        out = bytes(prefixes) + row.encoding_prefix()
        if row.has_modrm:
            reg = row.reg if row.reg is not None else draw(REG3)
            # Memory-only rows and LOCKed rows take a register operand only rarely (#UD).
            p_reg = 0.03 if "mem" in row.flags else 0.1 if 0xF0 in prefixes else 0.4
            out += draw(_modrm(reg, asz32, mode, p_reg))
        out += draw(_imm_for(row, osz32, asz32, mode))
        return out

    return draw_instruction().filter(
        lambda b: excluded_encoding(decode(b, code32), mode) is None)


# ---- scenarios ----------------------------------------------------------------------------

STACK_ROLES = frozenset({"push_Zv", "pop_Zv", "push_Ev", "pop_Ev", "push_Iz", "push_Ib",
                         "push_sreg", "pop_sreg", "pusha", "popa", "pushf", "popf", "enter",
                         "leave", "call_Jz", "call_Ev", "callf_Ap", "callf_Mp", "ret",
                         "ret_Iw", "retf", "iret", "int_Ib", "int3", "into", "int1"})
STRING_ROLES = frozenset({"movs", "cmps", "stos", "lods", "scas", "ins", "outs"})


def pointer_roles(info: InsnInfo) -> dict[str, tuple[str, bool]]:
    """Registers an instruction uses as addresses: name -> (role, 32-bit addressing)."""
    roles: dict[str, tuple[str, bool]] = {}
    row = info.row
    if row is None:
        # Undefined group members still form their address (the reference reads it).
        if info.mod != 3:
            for name, role in ((info.base, "base"), (info.index, "index")):
                if name:
                    roles.setdefault(name, (role, info.asz32))
        return roles
    if info.has_memory_operand:
        if info.base:
            roles[info.base] = ("base", info.asz32)
        if info.index and info.index not in roles:
            roles[info.index] = ("index", info.asz32)
        if row.handler == "bt_EvGv":
            roles.setdefault(GPRS[info.reg], ("bitoffset", info.asz32))
    h = row.handler
    if h in STACK_ROLES:
        roles["esp"] = ("base", True)
        if h in ("enter", "leave"):
            roles["ebp"] = ("base", True)
    if h in STRING_ROLES:
        roles.setdefault("esi", ("base", info.asz32))
        roles.setdefault("edi", ("base", info.asz32))
    if h == "xlat":
        roles.setdefault("ebx", ("base", info.asz32))
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


def scenario(mode: str, rows: Sequence[isa.Insn], with_invalid: bool = True,
             max_len: int = 4) -> st.SearchStrategy[Scenario]:
    """Scenarios of 1 to ``max_len`` instructions in ``mode``."""
    code32 = is_pm(mode)
    insn = instruction(mode, rows, with_invalid)
    length = st.integers(1, max_len)

    @st.composite
    def draw_scenario(draw: st.DrawFn) -> Scenario:
        code = [draw(insn) for _ in range(draw(length))]
        infos = [decode(c, code32) for c in code]
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
        if any(i.row is not None and (i.row.handler in STRING_ROLES or i.rep) for i in infos):
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


def scenarios(modes: Sequence[str], classes: Sequence[str],
              skip: frozenset[str] = frozenset()) -> st.SearchStrategy[Scenario]:
    """Scenarios over the given modes and instruction classes (``invalid`` adds #UD cases).

    ``skip`` removes handlers (e.g. those the core has not implemented yet).
    """
    with_invalid = "invalid" in classes
    parts = []
    for mode in modes:
        rows = select_rows(mode, [c for c in classes if c != "invalid"], skip)
        if not rows and not with_invalid:
            continue
        parts.append(scenario(mode, rows, with_invalid))
    if not parts:
        raise ValueError("no instruction is left to generate with these classes and modes")
    return st.one_of(parts)
