"""Instruction-level differential testing: aero against reference CPU backends.

A :class:`Scenario` is a CPU mode, an initial register file, a memory image and a short
sequence of instructions placed at CS:EIP. :func:`run_pair` executes it one instruction at
a time on aero and on a reference backend (:mod:`aero.fuzz.unicorn`), and compares the
two states after every instruction with :func:`compare_step`.

Invariants:

* Both sides start from bit-identical state: the same register file, the same segment
  selectors (real mode: base = selector << 4; ``pm32``: flat 4 GB code and data segments
  described by a three-entry GDT at :data:`GDT_BASE`, present in both memories), and the
  same :data:`RAM_SIZE` bytes of memory at physical 0.
* ``pm32-paging`` is ``pm32`` with CR0.PG set: a page directory and one page table (at
  :data:`PD_ADDR` and :data:`PT_ADDR`, in the scenario's memory) identity-map the
  scenario's RAM with the page rights :class:`Paging` gives (read-only, supervisor-only and
  not-present pages, or one 4 MB page with CR4.PSE), at CPL 0 or 3, with CR0.WP on or off.
  The accessed and dirty bits the processor writes are part of the memory comparison.
* After every instruction everything architectural is compared: the eight general
  registers, EIP, EFLAGS, the six selectors, GDTR/IDTR and every byte of memory; for an
  exception with an error code also the error code, and CR2 for #PF. The only
  bits left out are those the architecture leaves undefined for that instruction
  (:func:`undefined_masks`), each with its Intel SDM justification.
* An exception is compared by vector (the reference does not deliver through the IVT/IDT;
  aero runs with ``stop_on_exception`` and stops before delivering), and the state left at
  the exception is compared too: for a fault it is the state before the instruction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from aero import isa

from . import sdm as sdm_model

__all__ = ["AeroCPU", "Backend", "CODE_ATTR_32", "CODE_SEL", "CR0_PG", "CR0_PM", "CR0_REAL",
           "CR0_WP", "CR4_PSE", "DATA_ATTR_32", "DATA_SEL", "EFLAGS_DEFINED", "ERROR_CODE_VECTORS",
           "EXC_PF", "F_AF", "F_ARITH", "F_CF", "F_OF", "F_PF", "F_SF", "F_ZF", "GDT_BASE",
           "GDT_BYTES", "GDT_LIMIT", "GDT_PAGING_BYTES", "GPRS", "INTERESTING32", "InsnInfo",
           "MODES", "Masks", "Mismatch", "NotComparable", "PAGE", "PAGING_CODE_MIN", "PD_ADDR",
           "PM_MODES", "PTE_A", "PTE_D", "PTE_FLAGS", "PTE_P", "PTE_PS", "PTE_U", "PTE_W",
           "PT_ADDR", "Paging", "PairResult", "RAM_PAGES", "RAM_SIZE", "REAL_CODE_ATTR",
           "REAL_DATA_ATTR", "REG_KEYS", "SEGS", "SEG_ATTRS", "Scenario", "StepRecord",
           "StepResult", "TABLE_REGS", "USER_CODE_SEL", "USER_DATA_SEL", "compare_step", "decode",
           "effective_offset", "fill_page", "initial_regs", "is_pm", "iter_instructions",
           "page_fault_code", "paging_entries", "restart_mismatches", "row_for", "run_pair",
           "u32", "undefined_masks"]

if TYPE_CHECKING:
    from aero.machine import Segment

MODES = ("real", "pm32", "pm32-paging")
# Modes whose code is 32-bit flat protected-mode code.
PM_MODES = ("pm32", "pm32-paging")
GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEGS = ("es", "cs", "ss", "ds", "fs", "gs")
TABLE_REGS = ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit")
REG_KEYS = GPRS + ("eip", "eflags") + SEGS + TABLE_REGS

# 1 MB plus the 64 KB high memory area: every real-mode address (A20 enabled) is mapped.
RAM_SIZE = 0x110000
PAGE = 4096

# The flat protected-mode environment: null, code (0x08) and data (0x10) descriptors.
GDT_BASE = 0x800
CODE_SEL = 0x08
DATA_SEL = 0x10
GDT_BYTES = bytes(8) + bytes.fromhex("ffff0000009bcf00") + bytes.fromhex("ffff00000093cf00")
GDT_LIMIT = len(GDT_BYTES) - 1
# aero's descriptor-cache attributes for those descriptors (access byte | flags nibble << 12).
CODE_ATTR_32 = 0xC09B
DATA_ATTR_32 = 0xC093
REAL_CODE_ATTR = 0x9B
REAL_DATA_ATTR = 0x93
CR0_REAL = 0x60000010
CR0_PM = 0x60000011
CR0_WP = 0x10000
CR0_PG = 0x80000000
CR4_PSE = 0x10

# pm32-paging: the GDT adds ring-3 code (0x1B) and data (0x23) descriptors, accessed bits
# set (so no descriptor load writes memory); the paging structures follow it.
GDT_PAGING_BYTES = GDT_BYTES + bytes.fromhex("ffff000000fbcf00") + bytes.fromhex(
    "ffff000000f3cf00")
USER_CODE_SEL = 0x1B
USER_DATA_SEL = 0x23
SEG_ATTRS = {0x08: CODE_ATTR_32, 0x10: DATA_ATTR_32, 0x18: 0xC0FB, 0x20: 0xC0F3}
PD_ADDR = 0x1000
PT_ADDR = 0x2000
# Code is placed at or above this address in pm32-paging (pages 1 and 2 hold the tables).
PAGING_CODE_MIN = 0x3000
RAM_PAGES = RAM_SIZE // 4096
# Page-table entry bits.
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D, PTE_PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
PTE_FLAGS = PTE_P | PTE_W | PTE_U | PTE_A | PTE_D
# Vectors that push an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC).
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})
EXC_PF = 14

# EFLAGS bits that exist on an i686 (bits 3, 5, 15 and 22-31 are reserved).
EFLAGS_DEFINED = 0x003F7FD7
F_CF, F_PF, F_AF, F_ZF, F_SF, F_OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
F_ARITH = F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF

# 32-bit values memory cells and registers are biased toward.
INTERESTING32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x80000001, 0x0000FFFF,
                 0xFFFF0000, 0x00FF00FF, 0x12345678)


class NotComparable(Exception):
    """The example leaves the part of the machine both backends model identically
    (e.g. an access to memory the reference does not map)."""


def is_pm(mode: str) -> bool:
    """Does ``mode`` run 32-bit flat protected-mode code?"""
    return mode in PM_MODES


@dataclass(frozen=True)
class Paging:
    """The paging set-up of a ``pm32-paging`` scenario.

    ``ptes`` holds the flag bits (P, R/W, U/S, A, D) of the page-table entries of RAM pages
    0 .. RAM_PAGES - 1, each mapping its own page (identity); the entries beyond RAM are
    zero (not present), as are the page-directory entries beyond the first. ``pde`` is the
    first page-directory entry's flags; with ``large`` (which needs ``pse``) it maps 0-4 MB
    as one 4 MB page (PS set) and the page table is unused.

    Invariant: the entries of the pages holding the paging structures (1 and 2) are not
    present, so no instruction can write a paging structure (the TLB would then be allowed
    to hold a stale translation) unless a 4 MB page maps them.
    """

    cpl: int = 0
    wp: bool = False
    pse: bool = False
    large: bool = False
    pde: int = PTE_P | PTE_W | PTE_U
    ptes: bytes = bytes([PTE_P | PTE_W | PTE_U]) * RAM_PAGES

    @property
    def cr0(self) -> int:
        return CR0_PM | CR0_PG | (CR0_WP if self.wp else 0)

    @property
    def cr4(self) -> int:
        return CR4_PSE if self.pse else 0

    @property
    def cr3(self) -> int:
        return PD_ADDR

    def tables(self) -> list[tuple[int, bytes]]:
        """The page directory and the page table as (address, bytes)."""
        pde0 = (self.pde & PTE_FLAGS) | (PTE_PS if self.large else PT_ADDR)
        pd = pde0.to_bytes(4, "little") + bytes(4092)
        pt = b"".join(((i << 12) | (self.ptes[i] & PTE_FLAGS)).to_bytes(4, "little")
                      for i in range(RAM_PAGES))
        return [(PD_ADDR, pd), (PT_ADDR, pt + bytes(4096 - len(pt)))]

    def to_dict(self) -> dict:
        return {"cpl": self.cpl, "wp": self.wp, "pse": self.pse, "large": self.large,
                "pde": self.pde, "ptes": self.ptes.hex()}

    @classmethod
    def from_dict(cls, d: dict) -> Paging:
        return cls(int(d["cpl"]), bool(d["wp"]), bool(d["pse"]), bool(d["large"]),
                   int(d["pde"]), bytes.fromhex(d["ptes"]))


# ---- memory images --------------------------------------------------------------------

def fill_page(seed: int) -> np.ndarray:
    """The 4 KB pattern tiled over RAM for a fill seed (seed 0: all zeros).

    Invariant: a pure function of ``seed`` (SHAKE-256, stable across Python and numpy
    versions), so a seed recorded in a regression file always rebuilds the same memory.
    A quarter of the 32-bit cells hold one of :data:`INTERESTING32`.
    """
    if seed == 0:
        return np.zeros(PAGE, dtype=np.uint8)
    raw = hashlib.shake_256(b"aero-fill" + seed.to_bytes(8, "little")).digest(PAGE + PAGE // 4)
    cells = np.frombuffer(raw[:PAGE], dtype="<u4").copy()
    pick = np.frombuffer(raw[PAGE:], dtype=np.uint8)
    special = pick < 64
    table = np.array(INTERESTING32, dtype="<u4")
    cells[special] = table[pick[special] % len(table)]
    return cells.view(np.uint8)


# ---- CPU state --------------------------------------------------------------------------

def initial_regs(mode: str) -> dict[str, int]:
    """A register file with the mode's fixed parts (selectors, descriptor tables) set."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    regs = {k: 0 for k in REG_KEYS}
    regs["eflags"] = 2
    if is_pm(mode):
        regs.update({s: DATA_SEL for s in SEGS})
        regs["cs"] = CODE_SEL
        limit = GDT_LIMIT if mode == "pm32" else len(GDT_PAGING_BYTES) - 1
        regs.update(gdtr_base=GDT_BASE, gdtr_limit=limit, idtr_base=0, idtr_limit=0x7FF)
    else:
        regs.update(gdtr_base=0, gdtr_limit=0xFFFF, idtr_base=0, idtr_limit=0x3FF)
    return regs


@dataclass
class Scenario:
    """One differential test case.

    Invariants: ``regs`` has every key of :data:`REG_KEYS`; the instructions of ``code``
    are placed back to back at the linear address of CS:EIP; memory is the fill pattern of
    ``fill_seed`` tiled over RAM, then ``memory`` (sparse writes), then the GDT (``pm32``,
    ``pm32-paging``) and the paging structures (``pm32-paging``: ``paging``, which is None
    in the other modes), then the code.
    """

    mode: str
    regs: dict[str, int]
    code: list[bytes]
    fill_seed: int = 0
    memory: list[tuple[int, bytes]] = field(default_factory=list)
    paging: Paging | None = None

    def __post_init__(self) -> None:
        if self.mode == "pm32-paging" and self.paging is None:
            self.paging = Paging()

    @property
    def code32(self) -> bool:
        return is_pm(self.mode)

    def seg_base(self, seg: str) -> int:
        return 0 if is_pm(self.mode) else (self.regs[seg] & 0xFFFF) << 4

    @property
    def code_address(self) -> int:
        return (self.seg_base("cs") + self.regs["eip"]) & 0xFFFFFFFF

    def image(self) -> np.ndarray:
        """The initial RAM image (RAM_SIZE bytes)."""
        ram = np.tile(fill_page(self.fill_seed), RAM_SIZE // PAGE)
        for addr, data in self.memory:
            _put(ram, addr, data)
        if self.mode == "pm32":
            _put(ram, GDT_BASE, GDT_BYTES)
        if self.paging is not None:
            _put(ram, GDT_BASE, GDT_PAGING_BYTES)
            for addr, data in self.paging.tables():
                ram[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)
        _put(ram, self.code_address, b"".join(self.code))
        return ram

    def to_dict(self) -> dict:
        d = {"mode": self.mode, "regs": {k: self.regs[k] for k in REG_KEYS},
             "code": [c.hex() for c in self.code], "fill_seed": self.fill_seed,
             "memory": [[a, d.hex()] for a, d in self.memory]}
        if self.paging is not None:
            d["paging"] = self.paging.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        regs = initial_regs(d["mode"])
        regs.update({k: int(v) for k, v in d["regs"].items()})
        paging = Paging.from_dict(d["paging"]) if d.get("paging") else None
        return cls(d["mode"], regs, [bytes.fromhex(c) for c in d["code"]],
                   int(d.get("fill_seed", 0)),
                   [(int(a), bytes.fromhex(h)) for a, h in d.get("memory", [])], paging)


def _put(ram: np.ndarray, addr: int, data: bytes) -> None:
    for i, b in enumerate(data):
        if 0 <= addr + i < len(ram):
            ram[addr + i] = b


@dataclass
class StepResult:
    """The state one backend reached after one instruction (or at its exception)."""

    regs: dict[str, int]
    exception: int | None
    memory: np.ndarray
    accesses: list[tuple[str, int, int]] = field(default_factory=list)  # (r|w, linear, size)
    length: int | None = None  # instruction length as the backend decoded it, when known
    error: str | None = None  # the backend could not model the step (e.g. "unmapped")
    error_code: int | None = None  # of an exception that has one, when the backend tells
    cr2: int | None = None  # after a #PF, when the backend tells


class Backend(Protocol):
    """What :func:`run_pair` needs from a CPU."""

    def load(self, scenario: Scenario, image: np.ndarray) -> None: ...
    def step(self) -> StepResult: ...
    def adopt(self, regs: dict[str, int], memory: list[tuple[int, bytes]]) -> None:
        """Overwrite registers (REG_KEYS subset) and memory bytes between steps."""


# ---- aero -------------------------------------------------------------------------------

class AeroCPU:
    """aero as a difftest backend: one Machine reused across scenarios.

    Invariant: after :meth:`load`, the machine's architectural state is exactly the
    scenario's (RAM rewritten whole, segment caches as the mode defines them).
    """

    def __init__(self) -> None:
        from aero.machine import Machine, MachineConfig  # the core loads on first use

        self.machine = Machine(MachineConfig(ram_size=RAM_SIZE, devices=False))
        self.machine.set_stop_on_exception(True)
        self.mode = "real"

    def load(self, scenario: Scenario, image: np.ndarray) -> None:
        from aero.machine import Regs, Segment

        m = self.machine
        self.mode = scenario.mode
        m.reset()  # no pending trap, interrupt shadow or other state left from before
        self._zero_tsc()
        with m.ram_writable() as ram:
            ram[:RAM_SIZE] = image
        r = Regs()
        for k in GPRS + ("eip", "eflags") + TABLE_REGS:
            setattr(r, k, scenario.regs[k])
        for s in SEGS:
            sel = scenario.regs[s] & 0xFFFF
            if scenario.mode == "pm32":
                attr = CODE_ATTR_32 if s == "cs" else DATA_ATTR_32
                setattr(r, s, Segment(sel, 0, 0xFFFFFFFF, attr))
            elif scenario.mode == "pm32-paging":
                setattr(r, s, Segment(sel, 0, 0xFFFFFFFF, SEG_ATTRS[sel & 0xFFF8]))
            else:
                attr = REAL_CODE_ATTR if s == "cs" else REAL_DATA_ATTR
                setattr(r, s, Segment(sel, sel << 4, 0xFFFF, attr))
        r.cr0 = CR0_PM if scenario.mode == "pm32" else CR0_REAL
        if scenario.paging is not None:
            p = scenario.paging
            r.cr0, r.cr3, r.cr4, r.cpl = p.cr0, p.cr3, p.cr4, p.cpl
        m.set_regs(r)
        m.clear_exception()

    def _zero_tsc(self) -> None:
        """WRMSR IA32_TSC := 0 (a one-instruction real-mode stub at address 0, overwritten
        by the scenario's image): the machine is reused across scenarios and its clock
        keeps running, so without this RDTSC would read how many instructions the process
        ran before; after it, a scenario's RDTSC values depend on the scenario alone (a
        campaign's results on the seed alone, whatever the number of workers)."""
        from aero.machine import Regs, Segment

        m = self.machine
        with m.ram_writable() as ram:
            ram[0:2] = np.frombuffer(b"\x0f\x30", dtype=np.uint8)
        r = Regs()
        for s in SEGS:
            setattr(r, s, Segment(0, 0, 0xFFFF, REAL_CODE_ATTR if s == "cs" else REAL_DATA_ATTR))
        r.cr0, r.eip, r.eflags, r.ecx, r.eax, r.edx = CR0_REAL, 0, 2, 0x10, 0, 0
        m.set_regs(r)
        m.clear_exception()
        m.step()

    def regs(self) -> dict[str, int]:
        r = self.machine.get_regs()
        out = {k: getattr(r, k) for k in GPRS + ("eip", "eflags") + TABLE_REGS}
        out.update({s: getattr(r, s).selector for s in SEGS})
        return out

    def segments(self) -> dict[str, Segment]:
        r = self.machine.get_regs()
        return {s: getattr(r, s) for s in SEGS}

    def read(self, addr: int, size: int) -> bytes:
        return self.machine.read(addr, size)

    def step(self) -> StepResult:
        from aero.machine import StopReason

        m = self.machine
        m.clear_exception()
        stop = m.step()
        exc = code = cr2 = None
        if stop == StopReason.EXCEPTION:
            last = m.last_exception()
            exc = last[0] if last else None
            if last and last[0] in ERROR_CODE_VECTORS:
                code = last[1]
            if exc == EXC_PF:
                cr2 = m.get_regs().cr2
        elif stop not in (StopReason.TICKS,):
            raise NotComparable(f"aero stopped with {stop.name}")
        return StepResult(self.regs(), exc, m.ram[:RAM_SIZE], error_code=code, cr2=cr2)


# ---- instruction decoding (lengths, operands, masks) ------------------------------------
# The decoding is the SDM model's (aero.fuzz.sdm), never aero's: lengths, prefixes, operand
# fields and the opcode key come from the SDM's opcode maps. aero's table row is looked up
# only to print a mnemonic (InsnInfo.text) and for the QEMU backend's operand size.

_ROWS: dict[tuple[int, int | None], isa.Insn] = {}
for _row in isa.INSTRUCTIONS:
    _ROWS.setdefault((_row.opcode, _row.reg), _row)
_ISA_GROUPS = isa.group_opcodes()


def row_for(opcode: int, reg: int | None) -> isa.Insn | None:
    """aero's table row of an opcode (and ModRM reg field for group opcodes): for display
    only, no judgement or generation uses it."""
    if opcode in _ISA_GROUPS:
        return _ROWS.get((opcode, reg))
    return _ROWS.get((opcode, None))


@dataclass(frozen=True)
class InsnInfo:
    """One instruction decoded by the SDM model (:func:`aero.fuzz.sdm.decode`).

    ``length`` is None when the instruction would exceed 15 bytes (a #GP on fetch) or its
    opcode is undefined (length unknown). ``defined`` is the SDM model's verdict on the
    opcode map entry. ``row`` is aero's table row, for display only. ``reg`` is the ModRM
    reg field, or the low three opcode bits of an opcode without ModRM (``+r`` forms).
    """

    length: int | None
    prefixes: bytes
    opcode: int
    row: isa.Insn | None
    osz32: bool
    asz32: bool
    seg_override: str | None
    rep: int
    lock: bool
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
    has_modrm: bool = False
    defined: bool = True
    sdm: sdm_model.Decoded | None = None

    @property
    def has_memory_operand(self) -> bool:
        return self.has_modrm and self.mod != 3

    @property
    def seg(self) -> str:
        return self.seg_override or self.default_seg

    @property
    def opsize(self) -> int:
        return 4 if self.osz32 else 2

    @property
    def okey(self) -> tuple[int, int | None]:
        """The SDM model's opcode key (opcode, reg for group opcodes)."""
        return (self.opcode, self.reg if self.opcode in sdm_model.GROUPS else None)

    def prefix_class(self) -> str:
        """The prefixes that change what an instruction does, as a short tag."""
        tags = []
        if self.osz32 != self.asz32 or 0x66 in self.prefixes:
            tags.append("o32" if self.osz32 else "o16")
        if 0x67 in self.prefixes:
            tags.append("a32" if self.asz32 else "a16")
        if self.lock:
            tags.append("lock")
        if self.rep:
            tags.append("rep" if self.rep == 0xF3 else "repne")
        if self.seg_override:
            tags.append("seg")
        return "+".join(tags) or "-"

    def key(self) -> str:
        """Opcode (with the group reg field) as text: ``01``, ``0F AF``, ``F7/6``."""
        op = f"0F {self.opcode & 0xFF:02X}" if self.opcode >= 0x100 else f"{self.opcode:02X}"
        if self.opcode in sdm_model.GROUPS:
            op += f"/{self.reg}"
        return op

    def text(self) -> str:
        """A short description: mnemonic and operand syntax of aero's table row (display)."""
        if self.row is None or not self.defined:
            return f"(undefined {self.key()})"
        ops = ",".join(self.row.operands)
        return f"{self.row.mnemonic} {ops}".strip()


def decode(code: bytes, code32: bool) -> InsnInfo:
    """Decode the instruction at the start of ``code`` (which must hold all of it) with the
    SDM model."""
    d = sdm_model.decode(code, code32)
    reg = d.reg if d.has_modrm else d.opcode & 7
    group_reg = reg if d.opcode in sdm_model.GROUPS and d.has_modrm else None
    row = row_for(d.opcode, group_reg) if d.defined else None
    length = d.length if d.length is not None and d.length <= 15 else None
    return InsnInfo(length, d.prefixes, d.opcode, row, d.osz32, d.asz32, d.seg_override,
                    d.rep, d.lock, mod=d.mod, reg=reg, rm=d.rm, base=d.base, index=d.index,
                    scale=d.scale, disp=d.disp, imm=d.imm, imm2=d.imm2,
                    default_seg=d.default_seg, has_modrm=d.has_modrm,
                    defined=d.defined, sdm=d)


def effective_offset(info: InsnInfo, regs: dict[str, int]) -> int:
    """Offset of the ModRM (or moffs) memory operand within its segment."""
    off = info.disp
    if info.base:
        off += regs[info.base]
    if info.index:
        off += regs[info.index] << info.scale
    return off & (0xFFFFFFFF if info.asz32 else 0xFFFF)


# ---- undefined results --------------------------------------------------------------------

@dataclass
class Masks:
    """What the architecture leaves undefined after one instruction (not compared)."""

    flags: int = 0
    regs: dict[str, int] = field(default_factory=dict)
    memory: list[tuple[int, int]] = field(default_factory=list)  # (linear, length)
    notes: list[str] = field(default_factory=list)
    # pm32-paging: after a #PF, the accessed bit of the page-directory entry that maps CR2
    # is not compared (see compare_step).
    paging: bool = False


_ROTATES = (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3)
_SHXD = (0x1A4, 0x1A5, 0x1AC, 0x1AD)


def _shift_count(info: InsnInfo, regs: dict[str, int]) -> int | None:
    op = info.opcode
    if op in (0xD0, 0xD1):
        return 1
    if op in (0xD2, 0xD3, 0x1A5, 0x1AD):
        return regs["ecx"] & 0xFF
    if op in (0xC0, 0xC1, 0x1A4, 0x1AC):
        return info.imm & 0xFF
    return None


def undefined_masks(info: InsnInfo, regs: dict[str, int], seg_base: Callable[[str], int],
                    read: Callable[[int, int], bytes],
                    seg_attr: Callable[[str], int] = lambda s: 0) -> Masks:
    """The flags, register bits and memory bytes the Intel SDM leaves undefined for this
    instruction with this pre-instruction state.

    Base: the SDM model's table of undefined flags (:data:`aero.fuzz.sdm.UNDEFINED_FLAGS`),
    never aero's instruction table. Refined by the SDM's per-instruction
    text (Vol. 2, the "Flags Affected" sections):

    * shifts and rotates (SAL/SAR/SHL/SHR/ROL/ROR/RCL/RCR): a masked count of 0 affects no
      flag; OF is defined only for a count of 1; AF is undefined for shifts by a nonzero
      count; CF is undefined for SHL/SHR when the count is at least the operand width.
    * SHLD/SHRD: count 0 affects nothing; OF defined only for 1; AF undefined; a count
      greater than the operand size leaves the destination and all flags undefined.
    * BSF/BSR: the destination is undefined when the source is 0.
    * BSWAP with a 16-bit operand: the result is undefined.
    * SMSW with a 32-bit register destination: the upper 16 bits are undefined.
    * LAR with a 32-bit operand: the access rights are masked with 00FxFF00h, bits 19:16
      (x) undefined.
    * PUSH of a segment register with a 32-bit operand size: the processor either writes
      the selector zero-extended or writes only its low word (Vol. 2 'PUSH'), so the upper
      word of the stack slot is implementation-dependent.
    * CPUID and RDTSC: the values they load are model- and time-dependent.
    """
    m = Masks()
    d = info.sdm
    if d is None or not info.defined:
        return m
    m.flags = sdm_model.undefined_flags(d)
    op = info.opcode
    size = 1 if op in sdm_model.BYTE_OPERAND else info.opsize
    if op in _ROTATES:
        count = (_shift_count(info, regs) or 0) & 0x1F
        is_shift = info.reg >= 4
        bits = size * 8
        if count == 0:
            m.flags = 0
        else:
            m.flags = F_AF if is_shift else 0
            if count != 1:
                m.flags |= F_OF
            if info.reg in (4, 5, 6) and count >= bits:
                m.flags |= F_CF
                m.notes.append("SHL/SHR count >= width: CF undefined")
    elif op in _SHXD:
        count = (_shift_count(info, regs) or 0) & 0x1F
        if count == 0:
            m.flags = 0
        else:
            m.flags = F_AF | (F_OF if count != 1 else 0)
            if count > info.opsize * 8:
                m.flags = F_ARITH
                _mask_e(m, info, regs, seg_base, info.opsize)
                m.notes.append("SHLD/SHRD count > operand size: result undefined")
    elif op in (0x1BC, 0x1BD):
        if info.mod == 3:
            src = regs[GPRS[info.rm]] & (0xFFFFFFFF if info.osz32 else 0xFFFF)
        else:
            lin = (seg_base(info.seg) + effective_offset(info, regs)) & 0xFFFFFFFF
            src = int.from_bytes(read(lin, info.opsize), "little")
        if src == 0:
            m.regs[GPRS[info.reg]] = 0xFFFFFFFF if info.osz32 else 0xFFFF
            m.notes.append("BSF/BSR source 0: destination undefined")
    elif 0x1C8 <= op <= 0x1CF and not info.osz32:
        m.regs[GPRS[info.reg]] = 0xFFFF
        m.notes.append("BSWAP r16: result undefined")
    elif op == 0x102 and info.osz32:
        # The access-rights doubleword is masked with 00FxFF00h: bits 19:16 undefined.
        m.regs[GPRS[info.reg]] = 0x000F0000
        m.notes.append("LAR r32: bits 19:16 undefined")
    elif info.okey == (0x101, 4) and info.mod == 3 and info.osz32:
        m.regs[GPRS[info.rm]] = 0xFFFF0000
        m.notes.append("SMSW r32: upper 16 bits undefined")
    elif op in (0x06, 0x0E, 0x16, 0x1E, 0x1A0, 0x1A8) and info.osz32:
        # A 32-bit push of a selector writes either zero-extended or only the low word.
        ss32 = seg_attr("ss") & 0x4000
        sp = (regs["esp"] - 4) & (0xFFFFFFFF if ss32 else 0xFFFF)
        m.memory.append(((seg_base("ss") + sp + 2) & 0xFFFFFFFF, 2))
        m.notes.append("PUSH Sreg with a 32-bit operand: upper word of the slot undefined")
    elif op == 0x1A2:
        m.regs.update({r: 0xFFFFFFFF for r in ("eax", "ebx", "ecx", "edx")})
        m.notes.append("CPUID values are model-specific")
    elif op == 0x131:
        m.regs.update({r: 0xFFFFFFFF for r in ("eax", "edx")})
        m.notes.append("RDTSC values are time-dependent")
    return m


def _mask_e(m: Masks, info: InsnInfo, regs: dict[str, int], seg_base: Callable[[str], int],
            size: int) -> None:
    if info.mod == 3:
        m.regs[GPRS[info.rm]] = 0xFFFFFFFF if size == 4 else 0xFFFF
    else:
        lin = (seg_base(info.seg) + effective_offset(info, regs)) & 0xFFFFFFFF
        m.memory.append((lin, size))


# ---- comparison -----------------------------------------------------------------------------

@dataclass
class Mismatch:
    """One field that differs: ``field`` is a register name, ``exception`` or ``mem:ADDR``."""

    field: str
    aero: int | None
    ref: int | None

    def to_dict(self) -> dict:
        return {"field": self.field, "aero": self.aero, "ref": self.ref}


def compare_step(aero: StepResult, ref: StepResult, masks: Masks,
                 max_memory: int = 16) -> list[Mismatch]:
    """Differences between two step results, ignoring what ``masks`` leaves undefined.

    When either side raised an exception the instruction did not complete, so no mask
    applies: vectors and the whole state left behind are compared exactly.
    """
    out: list[Mismatch] = []
    if aero.exception != ref.exception:
        # Different vectors do not end the comparison: the registers and memory each side
        # left behind are still compared, so a known divergence can only explain a step
        # whose whole state it accounts for.
        out.append(Mismatch("exception", aero.exception, ref.exception))
    if None not in (aero.error_code, ref.error_code) and aero.error_code != ref.error_code:
        out.append(Mismatch("error_code", aero.error_code, ref.error_code))
    if None not in (aero.cr2, ref.cr2) and aero.cr2 != ref.cr2:
        out.append(Mismatch("cr2", aero.cr2, ref.cr2))
    faulted = aero.exception is not None or ref.exception is not None
    flag_mask = 0 if faulted else masks.flags
    for k in REG_KEYS:
        a, b = aero.regs[k], ref.regs[k]
        if k == "eflags":
            keep = EFLAGS_DEFINED & ~flag_mask
        else:
            keep = 0xFFFFFFFF & ~(0 if faulted else masks.regs.get(k, 0))
        if (a ^ b) & keep:
            out.append(Mismatch(k, a, b))
    am, rm = aero.memory, ref.memory
    if np.array_equal(am, rm):
        return out
    diff = am != rm
    if masks.paging and aero.exception == EXC_PF:
        # A walk that ends in a #PF below a present page-directory entry: whether that
        # entry's accessed bit is set is not specified (Intel SDM Vol. 3A 4.8 sets it for
        # entries 'used as part of linear-address translation', and no translation results;
        # Bochs and aero set accessed bits only for a translation that succeeds, QEMU as
        # soon as it has read a present entry).
        for c in {aero.cr2, ref.cr2} - {None}:
            a = PD_ADDR + (c >> 22) * 4
            if int(am[a]) ^ int(rm[a]) == PTE_A:
                diff[a] = False
    if not faulted:
        for lin, n in masks.memory:
            lo, hi = max(lin, 0), min(lin + n, len(diff))
            if lo < hi:
                diff[lo:hi] = False
    for addr in np.flatnonzero(diff)[:max_memory]:
        out.append(Mismatch(f"mem:{int(addr):#x}", int(am[addr]), int(rm[addr])))
    return out


# ---- paging model (for explaining divergences) ---------------------------------------------

def u32(memory: np.ndarray, addr: int) -> int:
    return int.from_bytes(memory[addr:addr + 4].tobytes(), "little")


def page_fault_code(memory: np.ndarray, paging: Paging, lin: int, user: bool,
                    write: bool) -> int | None:
    """The #PF error code of an access to ``lin`` under the paging structures in ``memory``
    (Intel SDM Vol. 3A 4.6 access rights, 4.7 error code), or None when it is allowed."""
    err = (2 if write else 0) | (4 if user else 0)
    pde = u32(memory, PD_ADDR + (lin >> 22) * 4)
    if not pde & PTE_P:
        return err
    if pde & PTE_PS and paging.pse:
        rights = pde
    else:
        pte = u32(memory, (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4)
        if not pte & PTE_P:
            return err
        rights = pde & pte
    if user and not rights & PTE_U:
        return err | 1
    if write and not rights & PTE_W and (user or paging.wp):
        return err | 1
    return None


def paging_entries(memory: np.ndarray, paging: Paging, lin: int) -> list[int]:
    """Addresses of the page-directory and page-table entries that map ``lin``."""
    pde_addr = PD_ADDR + (lin >> 22) * 4
    pde = u32(memory, pde_addr)
    if pde & PTE_PS and paging.pse:
        return [pde_addr]
    return [pde_addr, (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4]


# ---- running a scenario on two backends ------------------------------------------------------

@dataclass
class StepRecord:
    """One executed instruction: its decoding, the state before, both results, the verdict."""

    index: int
    info: InsnInfo
    before: dict[str, int]
    segs: dict[str, Segment]
    aero: StepResult
    ref: StepResult
    masks: Masks
    mismatches: list[Mismatch]
    paging: Paging | None = None  # the scenario's paging (pm32-paging)
    mode: str = "real"  # the scenario's mode
    code: bytes = b""  # the instruction's bytes, as the scenario placed them
    # aero's RAM before the instruction (kept with a divergence; None otherwise)
    before_memory: np.ndarray | None = None


@dataclass
class PairResult:
    """The outcome of :func:`run_pair`: the records of every compared instruction."""

    steps: list[StepRecord]

    @property
    def divergence(self) -> StepRecord | None:
        return next((s for s in self.steps if s.mismatches), None)


def iter_instructions(scenario: Scenario) -> Iterator[tuple[int, int, InsnInfo]]:
    """(index, EIP, decoding) of each instruction of the scenario's code."""
    eip = scenario.regs["eip"]
    for i, code in enumerate(scenario.code):
        yield i, eip, decode(code, scenario.code32)
        eip += len(code)


def run_pair(scenario: Scenario, aero: AeroCPU, ref: Backend) -> PairResult:
    """Execute the scenario's instructions on both backends, comparing after each.

    Stops at the first divergence, at an exception, or when EIP leaves the scenario's
    code (a taken branch): what follows would not be instructions of the scenario.
    Raises :class:`NotComparable` when the reference cannot model the example.
    """
    image = scenario.image()
    aero.load(scenario, image)
    ref.load(scenario, image)
    steps: list[StepRecord] = []
    saved = image.copy()  # aero's memory before the current instruction
    for i, eip, info in iter_instructions(scenario):
        before = aero.regs()
        if before["eip"] != eip:
            break
        if i:
            np.copyto(saved, aero.machine.ram[:RAM_SIZE])
        segs = aero.segments()
        bases = {s: seg.base for s, seg in segs.items()}
        attrs = {s: seg.attr for s, seg in segs.items()}
        masks = undefined_masks(info, before, bases.__getitem__, aero.read, attrs.__getitem__)
        masks.paging = scenario.paging is not None
        if masks.paging:
            _mask_paging_entries(masks, segs)
        ra = aero.step()
        rr = ref.step()
        if rr.error is not None:
            # Only a known divergence can make this comparable (see the campaign).
            mism = [Mismatch(f"reference:{rr.error}", ra.exception, None)]
        else:
            mism = compare_step(ra, rr, masks)
        code = scenario.code[i]
        hidden = getattr(ref, "hidden_mismatches", None)
        if hidden is not None and rr.error is None:
            # State the step results do not carry (descriptor caches, control
            # registers), compared by the reference after this instruction.
            mism += hidden(aero, code, segs, ra, rr)
        mism = restart_mismatches(code, scenario.code32, before, saved, ra,
                                  scenario.paging is not None) + mism
        keep = None
        if mism:
            # Keep the states: the backends' memories change with the next scenario.
            ra.memory, rr.memory = ra.memory.copy(), rr.memory.copy()
            keep = saved.copy()
            if hasattr(ref, "retrace"):
                rr.accesses = ref.retrace()  # reads included, for explaining it
        steps.append(StepRecord(i, info, before, segs, ra, rr, masks, mism, scenario.paging,
                                scenario.mode, code, keep))
        if mism or ra.exception is not None:
            break
        _resync(ra, ref, masks)
    return PairResult(steps)


# The paging structures' bytes (page directory and page table), where the processor sets
# accessed and dirty bits without executing a store.
_PAGING_RANGE = (PD_ADDR, PT_ADDR + PAGE)


def restart_mismatches(code: bytes, code32: bool, before: dict[str, int],
                       before_memory: np.ndarray, res: StepResult,
                       paging: bool) -> list[Mismatch]:
    """aero's own state after an exception, checked against the architecture whatever the
    reference did (Intel SDM Vol. 3A 6.5: a fault is reported with the state of the
    processor as before the instruction, so that it can be restarted; a trap, INT n / INT3
    / INTO / INT1 here, with EIP after the instruction and nothing else changed, as this
    harness stops before delivery). Every register and every byte of memory must be as
    before, except the accessed and dirty bits of the paging structures in
    ``pm32-paging``. Fields that differ come back as ``restart:FIELD`` mismatches, which no
    known divergence explains. The trap/fault decision uses the SDM model of
    :mod:`aero.fuzz.sdm`, not aero's decoder."""
    if res.exception is None:
        return []
    from .sdm import TRAP_VECTORS
    from .sdm import decode as sdm_decode

    d = sdm_decode(code, code32)
    want = dict(before)
    trap = TRAP_VECTORS.get(d.opcode) if d.opcode != 0xCD else d.imm
    if d.length is not None and d.length <= 15 and trap == res.exception and not d.lock:
        want["eip"] = (before["eip"] + d.length) & (0xFFFFFFFF if code32 else 0xFFFF)
    out = [Mismatch(f"restart:{k}", res.regs[k], want[k]) for k in REG_KEYS
           if res.regs[k] != want[k]]
    diff = res.memory != before_memory
    if paging:
        lo, hi = _PAGING_RANGE
        x = res.memory[lo:hi] ^ before_memory[lo:hi]
        diff[lo:hi] = (x & ~np.uint8(PTE_A | PTE_D)) != 0
    for addr in np.flatnonzero(diff)[:8]:
        out.append(Mismatch(f"restart:mem:{int(addr):#x}", int(res.memory[addr]),
                            int(before_memory[addr])))
    return out


def _mask_paging_entries(masks: Masks, segs: dict[str, Segment]) -> None:
    """Memory whose writing is optional (the upper word of a 32-bit PUSH Sreg, the word
    right above the selector's) may reach a page the selector's word does not touch:
    whether that page's accessed and dirty bits get set is then optional too, so its
    page-table entry is not compared either."""
    for lin, n in list(masks.memory):
        upper = {p for p in range(lin >> 12, ((lin + n - 1) >> 12) + 1)}
        lower = {p for p in range((lin - 2) >> 12, ((lin - 1) >> 12) + 1)}
        for page in sorted(upper - lower):
            if page < RAM_PAGES:
                masks.memory.append((PT_ADDR + page * 4, 4))
                masks.notes.append("optional write alone on its page: its PTE not compared")


def _resync(aero: StepResult, ref: Backend, masks: Masks) -> None:
    """Give the reference aero's values for what was left undefined, so that an undefined
    bit cannot resurface as a difference after a later instruction."""
    regs = {k: aero.regs[k] for k in masks.regs}
    if masks.flags:
        regs["eflags"] = aero.regs["eflags"]
    memory = [(lin, aero.memory[lin:lin + n].tobytes()) for lin, n in masks.memory
              if 0 <= lin and lin + n <= len(aero.memory)]
    if regs or memory:
        ref.adopt(regs, memory)
