"""A protected-mode test bench for the system-architecture tests (exceptions, paging, debug).

Every machine is built directly with ``Machine.set_regs`` and ``Machine.write``: flat 32-bit
protected mode, a GDT, an IDT whose 32 exception gates lead to recording stubs, a 32-bit TSS
for ring switches, and optionally two-level page tables. Instructions are hand-encoded (the
helpers below), so the tests need no assembler.

Memory layout (physical = linear unless a test maps otherwise):

========  =============================================================================
0x0600    stub records: the vector taken (dword) at 0x600, the number of stubs entered at
          0x604
0x0800    GDT (see ``SEL``)
0x2000    IDT, 256 gates; vector v -> stub at STUBS + 32 * v
0x3000    STUBS: ``mov [0x600], v ; inc dword [0x604] ; hlt``
0x4000    TSS (ESP0 = STACK0, SS0 = 0x10)
0x5000    CODE: the test program
0x7000    STACK3: ring-3 stack top
0x8000    STACK: ring-0 stack top (same-privilege frames)
0x9000    STACK0: ring-0 stack top after a switch from ring 3
0x20000   page directory when paging is on (PD), page tables from 0x21000
========  =============================================================================

Invariant: a test that takes an exception ends in the stub's HLT (StopReason.HALT), with ESP
pointing at the exception frame: [error code,] EIP, CS, EFLAGS (and ESP, SS from ring 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aero.machine import Machine, MachineConfig, Segment, StopReason

RECORD = 0x600
GDT = 0x800
IDT = 0x2000
STUBS = 0x3000
TSS = 0x4000
CODE = 0x5000
STACK3 = 0x7000
STACK = 0x8000
STACK0 = 0x9000
PD = 0x20000
PT0 = 0x21000

# Selectors.
CODE0, DATA0, CODE3, DATA3, TSS_SEL, NP_DATA, TINY_DATA0, TINY_DATA3 = (
    0x08, 0x10, 0x1B, 0x23, 0x28, 0x30, 0x38, 0x43)

# Exception vectors.
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17)

F_CF, F_TF, F_IF, F_DF, F_OF, F_RF, F_AC = 0x1, 0x100, 0x200, 0x400, 0x800, 0x10000, 0x40000
CR0_PE, CR0_MP, CR0_TS, CR0_ET, CR0_WP, CR0_AM, CR0_PG = (
    0x1, 0x2, 0x8, 0x10, 0x10000, 0x40000, 0x80000000)
CR4_DE, CR4_PSE, CR4_PGE = 0x8, 0x10, 0x80

# Page-table entry bits.
P, W, U, A, D, PS, G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    """An 8-byte segment descriptor; flags is the G/D/L/AVL nibble."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF0000) | (flags << 20) \
        | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def gate(offset: int, selector: int = CODE0, kind: int = 0x8E) -> bytes:
    """An IDT gate: kind 0x8E = present 32-bit interrupt gate, DPL 0 (0xEE: DPL 3)."""
    return struct.pack("<HHBBH", offset & 0xFFFF, selector, 0, kind, offset >> 16)


def stub(vector: int) -> bytes:
    """mov dword [RECORD], vector ; inc dword [RECORD+4] ; hlt"""
    return (b"\xC7\x05" + u32(RECORD) + u32(vector) + b"\xFF\x05" + u32(RECORD + 4) + b"\xF4")


# ---- instruction encodings (32-bit code) -------------------------------------------------

def mov_r_imm(reg: int, value: int) -> bytes:
    return bytes([0xB8 + reg]) + u32(value)


def mov_mem_imm(addr: int, value: int) -> bytes:
    """mov dword [addr], imm32"""
    return b"\xC7\x05" + u32(addr) + u32(value)


def load_eax(addr: int) -> bytes:
    """mov eax, [addr]"""
    return b"\xA1" + u32(addr)


def store_eax(addr: int) -> bytes:
    """mov [addr], eax"""
    return b"\xA3" + u32(addr)


def mov_cr_eax(cr: int) -> bytes:
    return bytes([0x0F, 0x22, 0xC0 | (cr << 3)])


def mov_dr_eax(dr: int) -> bytes:
    return bytes([0x0F, 0x23, 0xC0 | (dr << 3)])


def invlpg(addr: int) -> bytes:
    """invlpg [addr]"""
    return b"\x0F\x01\x3D" + u32(addr)


HLT = b"\xF4"
NOP = b"\x90"
INT3 = b"\xCC"
INTO = b"\xCE"
UD2 = b"\x0F\x0B"
IRET = b"\xCF"
STI = b"\xFB"
CLI = b"\xFA"
PUSHFD = b"\x9C"
POPFD = b"\x9D"
MOV_SS_AX = b"\x8E\xD0"
MOV_DS_AX = b"\x8E\xD8"
INC_EAX = b"\x40"
INC_ECX = b"\x41"
INC_EDX = b"\x42"
INC_EBX = b"\x43"


# ---- the bench ---------------------------------------------------------------------------

@dataclass
class Frame:
    """An exception frame read at ESP."""

    code: int | None
    eip: int
    cs: int
    eflags: int


def new_machine(ram: int = 16 << 20, **config: object) -> Machine:
    """A machine with the GDT, IDT, stubs and TSS in memory (the CPU is still in real mode)."""
    m = Machine(MachineConfig(ram_size=ram, **{"devices": False, **config}))  # type: ignore[arg-type]
    gdt = [
        bytes(8),
        descriptor(0, 0xFFFFF, 0x9A, 0xC),          # 08 code, DPL 0
        descriptor(0, 0xFFFFF, 0x92, 0xC),          # 10 data, DPL 0
        descriptor(0, 0xFFFFF, 0xFA, 0xC),          # 18 code, DPL 3
        descriptor(0, 0xFFFFF, 0xF2, 0xC),          # 20 data, DPL 3
        descriptor(TSS, 0x67, 0x89, 0x0),           # 28 TSS32, available
        descriptor(0, 0xFFFFF, 0x12, 0xC),          # 30 data, DPL 0, not present
        descriptor(0, 0x0FFF, 0x92, 0x4),           # 38 data, DPL 0, limit 0xFFF (byte)
        descriptor(0, 0x0FFF, 0xF2, 0x4),           # 40 data, DPL 3, limit 0xFFF (byte)
    ]
    m.write(GDT, b"".join(gdt))
    m.write(IDT, b"".join(gate(STUBS + 32 * v) for v in range(256)))
    m.write(STUBS, b"".join(stub(v).ljust(32, b"\x90") for v in range(256)))
    tss = bytearray(0x68)
    tss[4:8] = u32(STACK0)
    tss[8:12] = u32(DATA0)
    tss[0x66:0x68] = struct.pack("<H", 0x68)  # no I/O bitmap
    m.write(TSS, bytes(tss))
    return m


def enter_pm(m: Machine, code: bytes, *, cpl: int = 0, eflags: int = 0x2, cr0: int = 0,
             cr3: int = 0, cr4: int = 0, dr: list[int] | None = None, **gprs: int) -> None:
    """Flat protected mode at `cpl` with the program at CODE; ESP = STACK (CPL 0) or STACK3."""
    m.write(CODE, code)
    r = m.get_regs()
    if cpl == 3:
        r.cs = Segment(CODE3, 0, 0xFFFFFFFF, 0xC0FB)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, name, Segment(DATA3, 0, 0xFFFFFFFF, 0xC0F3))
        r.esp = STACK3
    else:
        r.cs = Segment(CODE0, 0, 0xFFFFFFFF, 0xC09B)
        for name in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, name, Segment(DATA0, 0, 0xFFFFFFFF, 0xC093))
        r.esp = STACK
    r.tr = Segment(TSS_SEL, TSS, 0x67, 0x8B)
    r.cpl = cpl
    r.cr0 = CR0_PE | CR0_ET | cr0
    r.cr3, r.cr4 = cr3, cr4
    r.eflags = eflags
    r.eip = CODE
    r.gdtr_base, r.gdtr_limit = GDT, 9 * 8 - 1
    r.idtr_base, r.idtr_limit = IDT, 256 * 8 - 1
    r.halted = False
    if dr is not None:
        r.dr = list(dr)
    for name, value in gprs.items():
        setattr(r, name, value)
    m.set_regs(r)
    m.write(RECORD, bytes(8))


def run(m: Machine, n: int = 1000) -> StopReason:
    return m.run(m.ticks + n)


def taken(m: Machine) -> tuple[int, int]:
    """(last vector recorded by a stub, number of stubs entered)."""
    v, n = struct.unpack("<II", m.read(RECORD, 8))
    return v, n


def rd32(m: Machine, addr: int) -> int:
    return struct.unpack("<I", m.read(addr, 4))[0]


def frame(m: Machine, has_code: bool) -> Frame:
    esp = m.get_regs().esp
    words = struct.unpack("<4I", m.read(esp, 16))
    if has_code:
        return Frame(words[0], words[1], words[2] & 0xFFFF, words[3])
    return Frame(None, words[0], words[1] & 0xFFFF, words[2])


def expect(m: Machine, vector: int, code: int | None, eip: int, n: int = 1000) -> Frame:
    """Run into a stub and check the vector taken, the error code and the saved EIP."""
    assert run(m, n) == StopReason.HALT
    assert taken(m) == (vector, 1)
    f = frame(m, code is not None)
    assert (f.code, f.eip) == (code, eip)
    return f


# ---- paging ------------------------------------------------------------------------------

def identity_tables(m: Machine, mb: int = 4, flags: int = P | W | U) -> None:
    """Identity-map the first `mb` MB with 4 KB pages (page tables from PT0)."""
    tables = (mb + 3) // 4
    pd = bytearray(4096)
    for t in range(tables):
        pd[4 * t:4 * t + 4] = u32((PT0 + 4096 * t) | P | W | U)
        pt = b"".join(u32(((t << 22) | (i << 12)) | flags) for i in range(1024))
        m.write(PT0 + 4096 * t, pt)
    m.write(PD, bytes(pd))


def set_pte(m: Machine, lin: int, value: int) -> None:
    """Write the PTE of `lin` in the identity tables."""
    m.write(PT0 + 4 * (lin >> 12), u32(value))


def pte(m: Machine, lin: int) -> int:
    return rd32(m, PT0 + 4 * (lin >> 12))


def set_pde(m: Machine, lin: int, value: int) -> None:
    m.write(PD + 4 * (lin >> 22), u32(value))


def pde(m: Machine, lin: int) -> int:
    return rd32(m, PD + 4 * (lin >> 22))


# ---- guest programs ----------------------------------------------------------------------

Lines = tuple[list[str], int | None]


def guest_lines_aero(name: str, defines: dict[str, int] | None = None) -> Lines:
    """Build guest `name` and run it in aero: (console lines, exit status)."""
    from aero.guests import build
    from aero.loader import load_guest

    image = build(name, defines)
    m = Machine(MachineConfig(ram_size=32 << 20))
    load_guest(m, image.path)
    out = bytearray()
    while True:
        stop = m.run(50_000_000)
        out += m.take_output()
        if stop != StopReason.OUTPUT:
            break
    assert stop == StopReason.EXIT
    return out.decode("latin-1").splitlines(), m.exit_status


def guest_lines_qemu(name: str, defines: dict[str, int] | None = None) -> Lines:
    """Build guest `name` and run it in qemu-system-i386: (console lines, exit status)."""
    from aero.fuzz.qemu import run_qemu

    from aero.guests import build

    image = build(name, defines)
    res = run_qemu(image.path, image.fmt, load_addr=image.load_addr, timeout=60.0, ram_mb=32)
    assert not res.timed_out
    return res.output.decode("latin-1").splitlines(), res.exit_status


def failed_checks(lines: list[str]) -> set[str]:
    """Names of the checks a guest reported as failed."""
    return {ln[5:].split(" got=")[0] for ln in lines if ln.startswith("FAIL ")}
