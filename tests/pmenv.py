"""A protected-mode test environment: descriptor tables, TSSs and hand-encoded instructions.

Used by test_protection.py, test_tasks.py and test_v86.py. Invariants:

* Every table is written to RAM with ``Machine.write`` before the CPU state is set with
  ``Machine.set_regs``; the segment caches given to ``set_regs`` are derived from the very
  descriptors written to the GDT, so the state is one the CPU could have reached itself.
* Nothing here executes guest code; tests run a counted number of instructions and, with
  ``stop_on_exception``, see an exception as (vector, error code) with EIP at the faulting
  instruction and the state as it was before it.
"""

from __future__ import annotations

import struct

from aero.machine import Machine, MachineConfig, Segment, StopReason

RAM = 4 << 20
GDT, IDT, LDT = 0x1000, 0x2000, 0x3000
TSS0, TSS1, TSS2, TSS3 = 0x4000, 0x4400, 0x4800, 0x4C00
CODE = 0x10000
STACK0, STACK1, STACK3 = 0x9000, 0xA000, 0xB000

# Standard GDT (selectors): flat 32-bit code/data for rings 0, 1 and 3, the current task's
# TSS (busy), a second available 32-bit TSS, an LDT. Tests put their own descriptors at
# FREE and above.
CODE0, DATA0, CODE3, DATA3 = 0x08, 0x10, 0x18, 0x20
TSS0_SEL, TSS1_SEL = 0x28, 0x30
CODE1, DATA1 = 0x38, 0x40
LDT_SEL = 0x48
FREE = 0x50
GDT_LIMIT = 0x3FF

DE, DB, NMI, BP, UD, NM, DF, TS, NP, SS, GP, PF = 0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14
F_CF, F_IF, F_TF, F_NT, F_RF, F_VM = 0x1, 0x200, 0x100, 0x4000, 0x10000, 0x20000
IOPL3 = 0x3000
CR0_PE, CR0_TS, CR0_ET, CR0_PG = 0x1, 0x8, 0x10, 0x80000000

# Access bytes.
A_CODE0, A_DATA0, A_CODE3, A_DATA3 = 0x9A, 0x92, 0xFA, 0xF2
A_TSS32, A_TSS32_BUSY, A_TSS16, A_TSS16_BUSY = 0x89, 0x8B, 0x81, 0x83
A_LDT, A_TASKGATE = 0x82, 0x85
A_CALLGATE32, A_CALLGATE16 = 0x8C, 0x84
A_INTGATE32, A_TRAPGATE32, A_INTGATE16 = 0x8E, 0x8F, 0x86


def u16(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def desc(base: int, limit: int, access: int, flags: int = 0xC) -> bytes:
    """An 8-byte segment descriptor; flags is the G/D/L/AVL nibble (0xC: 4 KB, 32-bit)."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF0000) | (flags << 20) \
        | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def flat(access: int) -> bytes:
    """Base 0, 4 GB, 32-bit."""
    return desc(0, 0xFFFFF, access, 0xC)


def gate(sel: int, off: int, access: int, count: int = 0) -> bytes:
    """A call, interrupt, trap or task gate (for a task gate `off` is ignored)."""
    lo = (off & 0xFFFF) | (sel << 16)
    hi = (off & 0xFFFF0000) | (access << 8) | (count & 0x1F)
    return struct.pack("<II", lo, hi)


def cache(d: bytes, sel: int) -> Segment:
    """The segment-register cache a load of descriptor d (accessed bit set) produces."""
    lo, hi = struct.unpack("<II", d)
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & 0x800000:
        limit = (limit << 12) | 0xFFF
    attr = ((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000) | 1
    return Segment(sel, base, limit, attr)


def tss32(*, esp0: int = STACK0, ss0: int = DATA0, esp1: int = STACK1, ss1: int = DATA1 | 1,
          cr3: int = 0, eip: int = 0, eflags: int = 2, gpr: tuple[int, ...] = (0,) * 8,
          segs: tuple[int, ...] = (0,) * 6, ldt: int = 0, link: int = 0, trap: int = 0,
          iomap: int = 0x68, size: int = 0x68) -> bytes:
    """A 32-bit TSS image; gpr is EAX..EDI, segs is ES CS SS DS FS GS."""
    b = bytearray(size)
    struct.pack_into("<HxxIHxxIHxxIIII", b, 0, link, esp0, ss0, esp1, ss1, 0, 0, cr3, eip)
    struct.pack_into("<I", b, 0x24, eflags)
    struct.pack_into("<8I", b, 0x28, *gpr)
    for i, s in enumerate(segs):
        struct.pack_into("<H", b, 0x48 + 4 * i, s)
    struct.pack_into("<HHH", b, 0x60, ldt, 0, trap)
    struct.pack_into("<H", b, 0x66, iomap)
    return bytes(b)


def tss16(*, sp0: int = STACK0, ss0: int = DATA0, ip: int = 0, flags: int = 2,
          gpr: tuple[int, ...] = (0,) * 8, segs: tuple[int, ...] = (0,) * 4, ldt: int = 0,
          link: int = 0) -> bytes:
    """A 16-bit TSS image (44 bytes); segs is ES CS SS DS."""
    b = bytearray(0x2C)
    struct.pack_into("<HHH", b, 0, link, sp0, ss0)
    struct.pack_into("<HH", b, 0x0E, ip, flags)
    struct.pack_into("<8H", b, 0x12, *gpr)
    struct.pack_into("<4H", b, 0x22, *segs)
    struct.pack_into("<H", b, 0x2A, ldt)
    return bytes(b)


# ---- instruction encodings (32-bit code unless stated) ------------------------------------

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
ES, CS, SS_, DS, FS, GS = range(6)
SEG_PREFIX = {ES: 0x26, CS: 0x2E, SS_: 0x36, DS: 0x3E, FS: 0x64, GS: 0x65}
HLT, IRET, RETF, CLI, STI, PUSHF, POPF, NOP = b"\xf4", b"\xcf", b"\xcb", b"\xfa", b"\xfb", \
    b"\x9c", b"\x9d", b"\x90"
JMP_SELF = b"\xeb\xfe"


def mov_r32(reg: int, imm: int) -> bytes:
    return bytes([0xB8 + reg]) + u32(imm)


def mov_r16(reg: int, imm: int) -> bytes:
    """MOV r16, imm16 in 16-bit code."""
    return bytes([0xB8 + reg]) + u16(imm)


def mov_sreg(sreg: int, reg: int = EAX) -> bytes:
    """MOV Sreg, r16/32 (8E /r)."""
    return bytes([0x8E, 0xC0 | (sreg << 3) | reg])


def mov_r_sreg(reg: int, sreg: int) -> bytes:
    """MOV r32, Sreg (8C /r): the zero-extended selector."""
    return bytes([0x8C, 0xC0 | (sreg << 3) | reg])


def load_sreg(sreg: int, sel: int, reg: int = EAX) -> bytes:
    """MOV reg, sel ; MOV sreg, reg (two instructions)."""
    return mov_r32(reg, sel) + mov_sreg(sreg, reg)


def store_eax(addr: int, seg: int | None = None) -> bytes:
    """MOV [addr], EAX with an optional segment override."""
    return (bytes([SEG_PREFIX[seg]]) if seg is not None else b"") + b"\xa3" + u32(addr)


def load_eax(addr: int, seg: int | None = None) -> bytes:
    """MOV EAX, [addr] with an optional segment override."""
    return (bytes([SEG_PREFIX[seg]]) if seg is not None else b"") + b"\xa1" + u32(addr)


def jmp_far(sel: int, off: int) -> bytes:
    return b"\xea" + u32(off) + u16(sel)


def call_far(sel: int, off: int) -> bytes:
    return b"\x9a" + u32(off) + u16(sel)


def retf(imm: int = 0) -> bytes:
    return b"\xca" + u16(imm) if imm else RETF


def int_n(n: int) -> bytes:
    return bytes([0xCD, n])


def push_imm(v: int) -> bytes:
    return b"\x68" + u32(v)


# ---- the environment ---------------------------------------------------------------------

class Env:
    """One machine in 32-bit protected mode with the standard GDT, an empty IDT and TSS0 as
    the current task (TR = TSS0_SEL, busy). SS0:ESP0 = DATA0:STACK0, SS1:ESP1 =
    DATA1|1:STACK1."""

    def __init__(self, *, stop_on_exception: bool = True) -> None:
        self.m = Machine(MachineConfig(ram_size=RAM, devices=False))
        self.m.set_stop_on_exception(stop_on_exception)
        self.gdt: dict[int, bytes] = {
            CODE0: flat(A_CODE0), DATA0: flat(A_DATA0), CODE3: flat(A_CODE3),
            DATA3: flat(A_DATA3), CODE1: flat(0xBA), DATA1: flat(0xB2),
            TSS0_SEL: desc(TSS0, 0x67, A_TSS32_BUSY, 0), TSS1_SEL: desc(TSS1, 0x67, A_TSS32, 0),
            LDT_SEL: desc(LDT, 0xFF, A_LDT, 0),
        }
        self.m.write(GDT, bytes(GDT_LIMIT + 1))
        self.m.write(IDT, bytes(0x800))
        for sel, d in self.gdt.items():
            self.m.write(GDT + sel, d)
        self.m.write(TSS0, tss32())

    # -- tables --
    def set_gdt(self, sel: int, d: bytes) -> int:
        """Write descriptor d for selector sel (its index); returns sel."""
        self.gdt[sel & ~7] = d
        self.m.write(GDT + (sel & ~7), d)
        return sel

    def set_ldt(self, sel: int, d: bytes) -> int:
        self.m.write(LDT + (sel & ~7), d)
        return sel | 4

    def set_idt(self, vec: int, d: bytes) -> None:
        self.m.write(IDT + 8 * vec, d)

    def gdt_access(self, sel: int) -> int:
        """The access byte of GDT descriptor sel as it is in memory now."""
        return self.m.read(GDT + (sel & ~7) + 5, 1)[0]

    def seg(self, sel: int) -> Segment:
        """The cache of a loaded GDT selector (RPL from sel)."""
        return cache(self.gdt[sel & ~7], sel)

    # -- state --
    def start(self, code: bytes, *, cpl: int = 0, eip: int = CODE, esp: int | None = None,
              iopl: int = 0, eflags: int = 0, cr0: int = 0, at: int | None = None,
              **regs: int) -> None:
        """Place code at `at` (default eip) and enter flat protected mode at the given CPL."""
        self.m.write(eip if at is None else at, code)
        r = self.m.get_regs()
        code_sel = {0: CODE0, 1: CODE1, 3: CODE3}[cpl] | cpl
        data_sel = {0: DATA0, 1: DATA1, 3: DATA3}[cpl] | cpl
        r.cs = self.seg(code_sel)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, name, self.seg(data_sel))
        r.cr0 = CR0_PE | CR0_ET | cr0
        r.cpl = cpl
        r.eflags = 2 | (iopl << 12) | eflags
        r.eax = r.ecx = r.edx = r.ebx = r.ebp = r.esi = r.edi = 0
        r.halted = False
        r.eip = eip
        r.esp = esp if esp is not None else {0: STACK0, 1: STACK1, 3: STACK3}[cpl]
        r.gdtr_base, r.gdtr_limit = GDT, GDT_LIMIT
        r.idtr_base, r.idtr_limit = IDT, 0x7FF
        r.tr = Segment(TSS0_SEL, TSS0, 0x67, A_TSS32_BUSY)
        r.ldtr = Segment(0, 0, 0, 0)
        for name, value in regs.items():
            setattr(r, name, value)
        self.m.set_regs(r)

    def set(self, **regs: object) -> None:
        r = self.m.get_regs()
        for name, value in regs.items():
            setattr(r, name, value)
        self.m.set_regs(r)

    def regs(self):  # noqa: ANN201 - aero.machine.Regs
        return self.m.get_regs()

    def run(self, n: int) -> StopReason:
        """Execute up to n instructions."""
        return self.m.run(self.m.ticks + n)

    def fault(self, n: int) -> tuple[int, int] | None:
        """Run n instructions expecting the last one to raise an exception: (vector, code)."""
        self.m.clear_exception()
        stop = self.run(n)
        assert stop == StopReason.EXCEPTION, f"no exception (stopped with {stop!r})"
        return self.m.last_exception()

    def ok(self, n: int) -> None:
        """Run n instructions that must all complete."""
        self.m.clear_exception()
        stop = self.run(n)
        assert stop == StopReason.TICKS, f"stopped with {stop!r}: {self.m.last_exception()}"

    def dwords(self, addr: int, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}I", self.m.read(addr, 4 * n)))

    def words(self, addr: int, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}H", self.m.read(addr, 2 * n)))
