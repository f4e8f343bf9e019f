"""System instructions and port I/O: exact architectural results on the modeled P6.

Every test builds its CPU state directly with ``Machine.set_regs`` (flat protected mode is
entered by setting CR0.PE, the segment caches and the CPL, not by executing a mode switch),
places hand-encoded instructions at ``CODE``, and runs a counted number of instructions.
Exceptions stop the run (``set_stop_on_exception``) with EIP left at the faulting
instruction, so a test checks the vector and error code rather than a handler.
"""

from __future__ import annotations

import struct

import pytest

from aero.machine import FEATURE_BITS, Machine, MachineConfig, Segment, StopReason

CODE = 0x1000
GDT = 0x7000
TSS = 0x10000
STACK = 0x8000

GP, UD, NM, DB = 13, 6, 7, 1
CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET = 0x1, 0x2, 0x4, 0x8, 0x10
F_IF, F_ZF = 0x200, 0x40

# Segment attributes as the core stores them: access byte, plus D/B (0x4000) and G (0x8000).
FLAT_CODE = 0xC09B
FLAT_DATA = 0xC093


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def mov_r32(reg: int, value: int) -> bytes:
    """MOV r32, imm32 in 32-bit code (B8+r)."""
    return bytes([0xB8 + reg]) + u32(value)


EAX, ECX, EDX, EBX = 0, 1, 2, 3


def new_machine(**config: object) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20, **{"devices": False, **config}))  # type: ignore[arg-type]
    m.set_stop_on_exception(True)
    return m


def real_mode(m: Machine, code: bytes, **gprs: int) -> None:
    """16-bit real mode, CS = DS = ES = SS = 0, code at CODE."""
    m.write(CODE, code)
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp = CODE, STACK
    for name, value in gprs.items():
        setattr(r, name, value)
    m.set_regs(r)


def flat_mode(m: Machine, code: bytes, *, cpl: int = 0, iopl: int = 0, cr0: int = 0,
              cr4: int = 0, eflags: int = 0, **gprs: int) -> None:
    """Flat 32-bit protected mode at the given CPL (segment DPL = RPL = CPL), code at CODE.

    Invariant: nothing here reads a descriptor table; only instructions that load segments
    or query descriptors need the GDT (see :func:`write_gdt`).
    """
    m.write(CODE, code)
    r = m.get_regs()
    dpl = cpl << 5
    r.cs = Segment(0x08 | cpl, 0, 0xFFFFFFFF, FLAT_CODE | dpl)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0x10 | cpl, 0, 0xFFFFFFFF, FLAT_DATA | dpl))
    r.cr0 = CR0_PE | CR0_ET | cr0
    r.cr4 = cr4
    r.cpl = cpl
    r.eflags = 2 | (iopl << 12) | eflags
    r.eip, r.esp = CODE, STACK
    r.gdtr_base, r.gdtr_limit = GDT, 0x37
    for name, value in gprs.items():
        setattr(r, name, value)
    m.set_regs(r)


def run(m: Machine, n: int) -> StopReason:
    """Execute n instructions (n ticks) unless the guest stops first."""
    return m.run(m.ticks + n)


def assert_fault(m: Machine, n: int, vector: int, code: int = 0) -> None:
    """Running n instructions stops on exception (vector, code) at the last one's start."""
    m.clear_exception()
    assert run(m, n) == StopReason.EXCEPTION
    assert m.last_exception() == (vector, code)


def descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    """An 8-byte segment descriptor: flags is the G/D/L/AVL nibble."""
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF0000) | (flags << 20) \
        | (base & 0xFF000000)
    return struct.pack("<II", lo, hi)


def write_gdt(m: Machine) -> None:
    """GDT at GDT: 08 code0, 10 data0, 18 code3, 20 data3, 28 TSS32 (available), 30 LDT."""
    entries = [
        bytes(8),
        descriptor(0, 0xFFFFF, 0x9A, 0xC),
        descriptor(0, 0xFFFFF, 0x92, 0xC),
        descriptor(0, 0xFFFFF, 0xFA, 0xC),
        descriptor(0, 0xFFFFF, 0xF2, 0xC),
        descriptor(TSS, 0x67, 0x89, 0x0),
        descriptor(0x9000, 0x17, 0x82, 0x0),
    ]
    m.write(GDT, b"".join(entries))


# ---- CPUID --------------------------------------------------------------------------------

CPUID = b"\x0f\xa2"


def cpuid(m: Machine, leaf: int) -> tuple[int, int, int, int]:
    flat_mode(m, CPUID, eax=leaf)
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    return r.eax, r.ebx, r.ecx, r.edx


def test_cpuid_leaf0_reports_max_leaf_and_configured_vendor() -> None:
    m = new_machine(cpuid_vendor="AeroTestCPU!")
    eax, ebx, ecx, edx = cpuid(m, 0)
    assert eax == 2
    # Vendor string order is EBX, EDX, ECX (as "Genu" "ineI" "ntel").
    assert ebx.to_bytes(4, "little") + edx.to_bytes(4, "little") + ecx.to_bytes(4, "little") \
        == b"AeroTestCPU!"


def test_cpuid_leaf0_genuine_intel_registers() -> None:
    assert cpuid(new_machine(), 0) == (2, 0x756E6547, 0x6C65746E, 0x49656E69)


def test_cpuid_leaf1_reflects_signature_and_features() -> None:
    cfg_features = ("fpu", "tsc", "msr", "sep", "cmov")
    m = new_machine(cpuid_signature=0x633, features=cfg_features)
    eax, ebx, ecx, edx = cpuid(m, 1)
    expected_edx = sum(1 << FEATURE_BITS[f] for f in cfg_features)
    assert (eax, ebx, ecx, edx) == (0x633, 0, 0, expected_edx)
    assert edx == m.config.features_edx


def test_cpuid_leaf2_and_out_of_range_leaves() -> None:
    m = new_machine()
    leaf2 = cpuid(m, 2)
    assert leaf2 == (0x03020101, 0, 0, 0x06040A42)
    # Leaves above the maximum (extended ones included) return the highest basic leaf.
    assert cpuid(m, 3) == leaf2
    assert cpuid(m, 0x80000000) == leaf2


# ---- time-stamp counter and MSRs ----------------------------------------------------------

RDTSC, RDMSR, WRMSR = b"\x0f\x31", b"\x0f\x32", b"\x0f\x30"


def test_rdtsc_is_ticks_times_rate() -> None:
    """RDTSC reads tsc_per_tick times the tick of the RDTSC itself (ticks after it retires)."""
    m = new_machine(tsc_per_tick=7)
    flat_mode(m, b"\x90\x90" + RDTSC)
    assert run(m, 3) == StopReason.TICKS
    r = m.get_regs()
    assert m.ticks == 3
    assert (r.eax, r.edx) == (3 * 7, 0)


def test_rdtsc_large_rate_carries_into_edx() -> None:
    m = new_machine(tsc_per_tick=0x9000_0000)
    flat_mode(m, b"\x90" + RDTSC)
    run(m, 2)
    value = 2 * 0x9000_0000
    r = m.get_regs()
    assert (r.edx << 32 | r.eax) == value


def test_wrmsr_tsc_sets_counter_and_clears_high_half() -> None:
    """WRMSR 10h: the TSC reads EAX at the WRMSR's tick; EDX is ignored (P6: high half 0)."""
    m = new_machine(tsc_per_tick=3)
    code = mov_r32(ECX, 0x10) + mov_r32(EAX, 1000) + mov_r32(EDX, 5) + WRMSR + RDTSC + RDMSR
    flat_mode(m, code)
    assert run(m, 5) == StopReason.TICKS
    r = m.get_regs()
    assert (r.eax, r.edx) == (1000 + 3, 0)  # one tick after the write
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    assert (r.eax, r.edx) == (1000 + 2 * 3, 0)


def test_rdmsr_unknown_msr_is_gp() -> None:
    m = new_machine()
    flat_mode(m, mov_r32(ECX, 0x1B) + RDMSR)  # IA32_APIC_BASE is not modeled
    assert_fault(m, 2, GP, 0)
    assert m.get_regs().eip == CODE + 5


def test_sysenter_msrs_need_sep() -> None:
    m = new_machine()  # the default features have no SEP
    flat_mode(m, mov_r32(ECX, 0x174) + RDMSR)
    assert_fault(m, 2, GP, 0)
    m = new_machine(features=("tsc", "msr", "sep"))
    code = mov_r32(ECX, 0x176) + mov_r32(EAX, 0xC0DE1234) + mov_r32(EDX, 0) + WRMSR \
        + mov_r32(EAX, 0) + RDMSR
    flat_mode(m, code)
    assert run(m, 6) == StopReason.TICKS
    assert (m.get_regs().eax, m.get_regs().edx) == (0xC0DE1234, 0)


def test_msr_and_tsc_features_gate_the_instructions() -> None:
    m = new_machine(features=())
    flat_mode(m, RDTSC)
    assert_fault(m, 1, UD)
    flat_mode(m, mov_r32(ECX, 0x10) + RDMSR)
    assert_fault(m, 2, UD)


def test_rdmsr_at_cpl3_is_gp() -> None:
    m = new_machine()
    flat_mode(m, mov_r32(ECX, 0x10) + RDMSR, cpl=3)
    assert_fault(m, 2, GP, 0)


def test_rdtsc_with_tsd_is_privileged() -> None:
    m = new_machine()
    flat_mode(m, RDTSC, cpl=3, cr4=0x4)
    assert_fault(m, 1, GP, 0)
    flat_mode(m, RDTSC, cpl=3)
    assert run(m, 1) == StopReason.TICKS
    flat_mode(m, RDTSC, cpl=0, cr4=0x4)
    assert run(m, 1) == StopReason.TICKS


# ---- control and debug registers ----------------------------------------------------------

MOV_CR0_EAX, MOV_CR2_EAX = b"\x0f\x22\xc0", b"\x0f\x22\xd0"
MOV_CR3_EAX, MOV_CR4_EAX = b"\x0f\x22\xd8", b"\x0f\x22\xe0"
MOV_EBX_CR0, MOV_EBX_CR2 = b"\x0f\x20\xc3", b"\x0f\x20\xd3"
MOV_EBX_CR3, MOV_EBX_CR4 = b"\x0f\x20\xdb", b"\x0f\x20\xe3"


@pytest.mark.parametrize("write, read, value, expected", [
    (MOV_CR0_EAX, MOV_EBX_CR0, CR0_PE | CR0_MP | 0x20, CR0_PE | CR0_MP | 0x20 | CR0_ET),
    (MOV_CR0_EAX, MOV_EBX_CR0, 0x0005_0001, 0x0005_0011),          # WP, AM: ET reads 1
    (MOV_CR0_EAX, MOV_EBX_CR0, 0x0000_FFC1, CR0_PE | CR0_ET),     # reserved bits read 0
    (MOV_CR2_EAX, MOV_EBX_CR2, 0xDEAD_BEEF, 0xDEAD_BEEF),
    (MOV_CR3_EAX, MOV_EBX_CR3, 0x0012_3018, 0x0012_3018),
    (MOV_CR4_EAX, MOV_EBX_CR4, 0x9C, 0x9C),                        # DE TSD PSE PGE
])
def test_mov_control_register_round_trip(write: bytes, read: bytes, value: int,
                                         expected: int) -> None:
    m = new_machine()
    flat_mode(m, mov_r32(EAX, value) + write + read)
    assert run(m, 3) == StopReason.TICKS
    assert m.get_regs().ebx == expected


def test_cr0_and_cr4_invalid_writes_are_gp() -> None:
    m = new_machine()
    for value in (0x8000_0000, 0x2000_0001):  # PG without PE; NW without CD
        flat_mode(m, mov_r32(EAX, value) + MOV_CR0_EAX)
        assert_fault(m, 2, GP, 0)
        assert m.get_regs().cr0 == CR0_PE | CR0_ET
    for value in (0x20, 0x100, 0x1):  # PAE, PCE: not implemented; VME: not advertised
        flat_mode(m, mov_r32(EAX, value) + MOV_CR4_EAX)
        assert_fault(m, 2, GP, 0)
        assert m.get_regs().cr4 == 0


def test_cr4_vme_writable_when_advertised() -> None:
    m = new_machine(features=("vme", "tsc"))
    flat_mode(m, mov_r32(EAX, 0x7) + MOV_CR4_EAX + MOV_EBX_CR4)
    assert run(m, 3) == StopReason.TICKS
    assert m.get_regs().ebx == 0x7


def test_nonexistent_control_register_is_ud_and_cpl3_is_gp() -> None:
    m = new_machine()
    flat_mode(m, b"\x0f\x22\xc8")  # MOV CR1, EAX
    assert_fault(m, 1, UD)
    flat_mode(m, MOV_EBX_CR0, cpl=3)
    assert_fault(m, 1, GP, 0)


def test_mov_cr0_enters_protected_mode_from_real_mode() -> None:
    m = new_machine()
    real_mode(m, b"\x66" + mov_r32(EAX, 0x11) + MOV_CR0_EAX + MOV_EBX_CR0)
    assert run(m, 3) == StopReason.TICKS
    r = m.get_regs()
    assert r.cr0 == 0x11 and r.ebx == 0x11


def test_debug_registers_alias_and_masks() -> None:
    m = new_machine()
    # MOV DR6, EAX; MOV ECX, DR4 (alias of DR6); MOV DR7, EAX; MOV EBX, DR5 (alias of DR7).
    code = mov_r32(EAX, 0xFFFF_FFFF) + b"\x0f\x23\xf0" + b"\x0f\x21\xe1" \
        + mov_r32(EAX, 0xFFFF_DFFF) + b"\x0f\x23\xf8" + b"\x0f\x21\xeb"
    flat_mode(m, code)
    assert run(m, 6) == StopReason.TICKS
    r = m.get_regs()
    assert r.ecx == r.dr[6] == 0xFFFF_EFFF  # B0-B3, BD, BS, BT writable; bit 12 reads 0
    assert r.ebx == r.dr[7] == 0xFFFF_07FF  # bits 11, 12, 14, 15 read 0, bit 10 reads 1
    flat_mode(m, b"\x0f\x21\xe1", cr4=0x8)  # CR4.DE: DR4 is #UD
    assert_fault(m, 1, UD)
    flat_mode(m, b"\x0f\x21\xe1", cpl=3)
    assert_fault(m, 1, GP, 0)


def test_debug_register_general_detect() -> None:
    """With DR7.GD set, the next debug-register access is a #DB fault with DR6.BD set."""
    m = new_machine()
    flat_mode(m, mov_r32(EAX, 0x2400) + b"\x0f\x23\xf8" + b"\x0f\x21\xc3")
    assert_fault(m, 3, DB)
    r = m.get_regs()
    assert r.eip == CODE + 8
    assert r.dr[6] & 0x2000 and not r.dr[7] & 0x2000


# ---- descriptor-table registers -----------------------------------------------------------

TABLE = 0x2000
OUT_AREA = 0x3000


@pytest.mark.parametrize("prefix, base", [(b"", 0xAABBCCDD), (b"\x66", 0x00BBCCDD)])
def test_lgdt_lidt_operand_size(prefix: bytes, base: int) -> None:
    """LGDT/LIDT: 16-bit limit, then the base; a 16-bit operand loads 24 bits of it."""
    m = new_machine()
    m.write(TABLE, struct.pack("<HI", 0x1234, 0xAABBCCDD))
    code = prefix + b"\x0f\x01\x15" + u32(TABLE) + prefix + b"\x0f\x01\x1d" + u32(TABLE)
    flat_mode(m, code)
    assert run(m, 2) == StopReason.TICKS
    r = m.get_regs()
    assert (r.gdtr_base, r.gdtr_limit) == (base, 0x1234)
    assert (r.idtr_base, r.idtr_limit) == (base, 0x1234)


@pytest.mark.parametrize("prefix, stored", [(b"", 0xAABBCCDD), (b"\x66", 0x00BBCCDD)])
def test_sgdt_sidt_operand_size(prefix: bytes, stored: int) -> None:
    """SGDT/SIDT: limit then base; a 16-bit operand stores the sixth byte as 0 (P6)."""
    m = new_machine()
    flat_mode(m, prefix + b"\x0f\x01\x05" + u32(OUT_AREA)
              + prefix + b"\x0f\x01\x0d" + u32(OUT_AREA + 8))
    r = m.get_regs()
    r.gdtr_base, r.gdtr_limit = 0xAABBCCDD, 0x0FFF
    r.idtr_base, r.idtr_limit = 0xAABBCCDD, 0x07FF
    m.set_regs(r)
    assert run(m, 2) == StopReason.TICKS
    assert m.read(OUT_AREA, 6) == struct.pack("<HI", 0x0FFF, stored)
    assert m.read(OUT_AREA + 8, 6) == struct.pack("<HI", 0x07FF, stored)


def test_lgdt_in_real_mode_16bit_code() -> None:
    m = new_machine()
    m.write(TABLE, struct.pack("<HI", 0x0027, 0x12345678))
    real_mode(m, b"\x0f\x01\x16" + struct.pack("<H", TABLE))  # LGDT [2000h]
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    assert (r.gdtr_base, r.gdtr_limit) == (0x345678, 0x27)


def test_lgdt_at_cpl3_is_gp() -> None:
    m = new_machine()
    flat_mode(m, b"\x0f\x01\x15" + u32(TABLE), cpl=3)
    assert_fault(m, 1, GP, 0)


# ---- machine status word ------------------------------------------------------------------

def test_smsw_lmsw_clts() -> None:
    m = new_machine()
    # LMSW AX with AX = 0Eh (MP EM TS, PE clear: PE stays set); SMSW EBX; CLTS; SMSW [3000h].
    code = mov_r32(EAX, 0xE) + b"\x0f\x01\xf0" + b"\x0f\x01\xe3" + b"\x0f\x06" \
        + b"\x0f\x01\x25" + u32(OUT_AREA)
    flat_mode(m, code)
    assert run(m, 5) == StopReason.TICKS
    r = m.get_regs()
    assert r.ebx == CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET
    assert r.cr0 == CR0_PE | CR0_MP | CR0_EM | CR0_ET
    assert m.read(OUT_AREA, 2) == struct.pack("<H", 0x17)


# ---- port I/O -----------------------------------------------------------------------------

def test_out_e9_goes_to_debug_console() -> None:
    m = new_machine()
    real_mode(m, b"\xb0h\xe6\xe9\xb0i\xba\xe9\x00\xee")  # OUT E9h,AL; MOV DX,E9h; OUT DX,AL
    assert run(m, 5) == StopReason.TICKS
    assert m.take_output() == b"hi"
    assert m.take_output() == b""


def test_out_f4_exits_with_status() -> None:
    m = new_machine()
    real_mode(m, b"\xb0\x21\xe6\xf4\x90")
    assert run(m, 10) == StopReason.EXIT
    assert m.exit_status == (0x21 << 1) | 1
    assert m.get_regs().eip == CODE + 4  # the OUT retired
    assert m.ticks == 2


def test_in_from_unclaimed_port_reads_all_ones() -> None:
    m = new_machine()
    # IN AL,80h; IN AX,DX; IN EAX,DX (with 66h in 16-bit code).
    real_mode(m, b"\xe4\x80", eax=0x12345678)
    run(m, 1)
    assert m.get_regs().eax == 0x123456FF
    real_mode(m, b"\xed", eax=0x12345678, edx=0x1234)
    run(m, 1)
    assert m.get_regs().eax == 0x1234FFFF
    real_mode(m, b"\x66\xed", eax=0x12345678, edx=0x1234)
    run(m, 1)
    assert m.get_regs().eax == 0xFFFFFFFF


def test_in_out_at_cpl_within_iopl() -> None:
    m = new_machine()
    flat_mode(m, b"\xe4\x80\xb0A\xe6\xe9", cpl=3, iopl=3)
    assert run(m, 3) == StopReason.TICKS
    assert m.take_output() == b"A"


# ---- interrupt flag -----------------------------------------------------------------------

def test_cli_at_cpl3_iopl0_is_gp() -> None:
    m = new_machine()
    flat_mode(m, b"\xfa", cpl=3, iopl=0, eflags=F_IF)
    assert_fault(m, 1, GP, 0)
    r = m.get_regs()
    assert r.eflags & F_IF and r.eip == CODE


def test_cli_sti_allowed_when_cpl_le_iopl_and_in_real_mode() -> None:
    m = new_machine()
    flat_mode(m, b"\xfa", cpl=3, iopl=3, eflags=F_IF)
    assert run(m, 1) == StopReason.TICKS
    assert not m.get_regs().eflags & F_IF
    flat_mode(m, b"\xfb", cpl=1, iopl=2)
    assert run(m, 1) == StopReason.TICKS
    assert m.get_regs().eflags & F_IF
    real_mode(m, b"\xfa\xfb\xfa")
    assert run(m, 3) == StopReason.TICKS
    assert not m.get_regs().eflags & F_IF


def test_sti_at_cpl3_iopl0_is_gp() -> None:
    m = new_machine()
    flat_mode(m, b"\xfb", cpl=3)
    assert_fault(m, 1, GP, 0)


# ---- the TSS I/O permission bitmap --------------------------------------------------------

IOMAP = 0x68


def with_io_bitmap(m: Machine, code: bytes, *, allowed: int, limit: int | None = None,
                   tss_attr: int = 0x8B) -> None:
    """CPL 3, IOPL 0 and a TSS whose bitmap allows only port `allowed` (plus the 0xFF byte)."""
    bitmap = bytearray(b"\xff" * (0x2000 + 1))
    bitmap[allowed >> 3] &= ~(1 << (allowed & 7)) & 0xFF
    m.write(TSS, bytes(0x66) + struct.pack("<H", IOMAP) + bytes(bitmap))
    flat_mode(m, code, cpl=3, iopl=0)
    r = m.get_regs()
    tss_limit = IOMAP + 0x2000 if limit is None else limit
    r.tr = Segment(0x28, TSS, tss_limit, tss_attr)
    m.set_regs(r)


def test_io_bitmap_allows_one_port_and_denies_its_neighbour() -> None:
    m = new_machine()
    with_io_bitmap(m, b"\xe4\x80\xe6\x80", allowed=0x80)
    assert run(m, 2) == StopReason.TICKS  # IN AL,80h and OUT 80h,AL
    with_io_bitmap(m, b"\xe4\x81", allowed=0x80)
    assert_fault(m, 1, GP, 0)
    with_io_bitmap(m, b"\xe4\x7f", allowed=0x80)
    assert_fault(m, 1, GP, 0)
    # A word access covers ports 80h and 81h: both bits must be clear.
    with_io_bitmap(m, b"\x66\xe5\x80", allowed=0x80)
    assert_fault(m, 1, GP, 0)
    # Through DX as well.
    with_io_bitmap(m, b"\xec", allowed=0x3F8)
    r = m.get_regs()
    r.edx = 0x3F8
    m.set_regs(r)
    assert run(m, 1) == StopReason.TICKS


def test_io_bitmap_word_read_must_fit_the_tss_limit() -> None:
    """The CPU reads two bitmap bytes: a port in the last byte inside the limit still faults."""
    m = new_machine()
    last_byte = IOMAP + (0x80 >> 3)
    with_io_bitmap(m, b"\xe4\x80", allowed=0x80, limit=last_byte)
    assert_fault(m, 1, GP, 0)
    with_io_bitmap(m, b"\xe4\x80", allowed=0x80, limit=last_byte + 1)
    assert run(m, 1) == StopReason.TICKS


def test_io_bitmap_needs_a_32bit_tss() -> None:
    m = new_machine()
    with_io_bitmap(m, b"\xe4\x80", allowed=0x80, tss_attr=0x83)  # busy 16-bit TSS
    assert_fault(m, 1, GP, 0)


PAGE_DIR, PAGE_TABLE = 0x20000, 0x21000
PF = 14


def enable_paging(m: Machine, supervisor_pages: set[int]) -> None:
    """Identity-map the first 1 MB for user access, except supervisor_pages (page numbers)."""
    m.write(PAGE_DIR, u32(PAGE_TABLE | 7))
    ptes = [(i << 12) | (3 if i in supervisor_pages else 7) for i in range(256)]
    m.write(PAGE_TABLE, b"".join(u32(pte) for pte in ptes))
    r = m.get_regs()
    r.cr3 = PAGE_DIR
    r.cr0 |= 0x8000_0000
    m.set_regs(r)


def test_tss_and_gdt_reads_are_supervisor_accesses_at_cpl3() -> None:
    """The bitmap and descriptor lookups of CPL 3 code read supervisor-only pages; the
    user's own access to those pages still page-faults afterwards."""
    m = new_machine()
    write_gdt(m)
    # IN AL,80h; LAR EBX,ECX (ECX = 1Bh); MOV EAX,[TSS].
    with_io_bitmap(m, b"\xe4\x80" + b"\x0f\x02\xd9" + b"\xa1" + u32(TSS), allowed=0x80)
    r = m.get_regs()
    r.ecx = 0x1B
    m.set_regs(r)
    tss_pages = set(range(TSS >> 12, ((TSS + IOMAP + 0x2000) >> 12) + 1))
    enable_paging(m, tss_pages | {GDT >> 12})
    assert run(m, 2) == StopReason.TICKS
    r = m.get_regs()
    assert r.eax & 0xFF == 0xFF and r.ebx == 0x00CFFA00 and r.eflags & F_ZF
    assert_fault(m, 1, PF, 5)  # user-mode read of a present supervisor page
    r = m.get_regs()
    assert r.cr2 == TSS and r.cpl == 3


def test_tss_page_fault_during_io_check_is_a_supervisor_fault() -> None:
    """A not-present TSS page faults with a supervisor error code; the CPL stays 3."""
    m = new_machine()
    with_io_bitmap(m, b"\xe4\x80", allowed=0x80)
    enable_paging(m, set())
    m.write(PAGE_TABLE + (TSS >> 12) * 4, u32(0))  # the TSS page is not present
    assert_fault(m, 1, PF, 0)
    r = m.get_regs()
    assert (r.cr2, r.cpl, r.eip) == (TSS + 0x66, 3, CODE)


# ---- LDTR, TR and descriptor queries ------------------------------------------------------

def test_ltr_marks_busy_and_str_reads_it() -> None:
    m = new_machine()
    write_gdt(m)
    flat_mode(m, mov_r32(EAX, 0x28) + b"\x0f\x00\xd8" + b"\x0f\x00\xcb", ebx=0xFFFFFFFF)
    assert run(m, 3) == StopReason.TICKS
    r = m.get_regs()
    assert (r.tr.selector, r.tr.base, r.tr.limit, r.tr.attr) == (0x28, TSS, 0x67, 0x8B)
    assert m.read(GDT + 0x28 + 5, 1) == b"\x8b"
    assert r.ebx == 0x28  # 32-bit register destination: zero-extended
    flat_mode(m, mov_r32(EAX, 0x28) + b"\x0f\x00\xd8")  # the TSS is busy now
    assert_fault(m, 2, GP, 0x28)


def test_lldt_loads_ldt_and_null_makes_it_unusable() -> None:
    m = new_machine()
    write_gdt(m)
    flat_mode(m, mov_r32(EAX, 0x30) + b"\x0f\x00\xd0")
    assert run(m, 2) == StopReason.TICKS
    ldtr = m.get_regs().ldtr
    assert (ldtr.selector, ldtr.base, ldtr.limit, ldtr.attr) == (0x30, 0x9000, 0x17, 0x82)
    flat_mode(m, mov_r32(EAX, 0x28) + b"\x0f\x00\xd0")  # a TSS is not an LDT
    assert_fault(m, 2, GP, 0x28)
    flat_mode(m, mov_r32(EAX, 0) + b"\x0f\x00\xd0" + mov_r32(EAX, 0x0C) + b"\x0f\x02\xd8",
              eflags=F_ZF)
    assert run(m, 4) == StopReason.TICKS
    r = m.get_regs()
    assert r.ldtr.attr == 0
    assert not r.eflags & F_ZF  # LAR of an LDT selector finds nothing


def lar_lsl(m: Machine, opcode: int, sel: int, cpl: int = 0) -> tuple[bool, int]:
    flat_mode(m, bytes([0x0F, opcode, 0xD8]), cpl=cpl, eflags=F_ZF, eax=sel, ebx=0x5A5A5A5A)
    assert run(m, 1) == StopReason.TICKS
    r = m.get_regs()
    return bool(r.eflags & F_ZF), r.ebx


def test_lar_lsl_results_and_visibility() -> None:
    m = new_machine()
    write_gdt(m)
    assert lar_lsl(m, 0x02, 0x1B) == (True, 0x00CFFA00)
    assert lar_lsl(m, 0x03, 0x1B) == (True, 0xFFFFFFFF)
    assert lar_lsl(m, 0x03, 0x28) == (True, 0x67)
    assert lar_lsl(m, 0x02, 0x28) == (True, 0x00008900)
    assert lar_lsl(m, 0x02, 0x08, cpl=3) == (False, 0x5A5A5A5A)  # DPL 0 < CPL 3
    assert lar_lsl(m, 0x02, 0x40) == (False, 0x5A5A5A5A)         # beyond the GDT limit
    assert lar_lsl(m, 0x03, 0x00) == (False, 0x5A5A5A5A)         # null selector


def test_verr_verw() -> None:
    m = new_machine()
    write_gdt(m)
    cases = [(0xE0, 0x08, True), (0xE8, 0x08, False), (0xE8, 0x10, True), (0xE0, 0x28, False)]
    for modrm, sel, readable in cases:
        flat_mode(m, bytes([0x0F, 0x00, modrm]), eflags=0 if readable else F_ZF, eax=sel)
        assert run(m, 1) == StopReason.TICKS
        assert bool(m.get_regs().eflags & F_ZF) == readable, (hex(modrm), hex(sel))


def test_arpl_raises_rpl() -> None:
    m = new_machine()
    flat_mode(m, b"\x63\xc8", eax=0x0010, ecx=0x0003)  # ARPL AX, CX
    run(m, 1)
    r = m.get_regs()
    assert r.eax == 0x0013 and r.eflags & F_ZF
    flat_mode(m, b"\x63\xc8", eax=0x0013, ecx=0x0001)
    run(m, 1)
    r = m.get_regs()
    assert r.eax == 0x0013 and not r.eflags & F_ZF


# ---- SYSENTER / SYSEXIT -------------------------------------------------------------------

def test_sysenter_sysexit_round_trip() -> None:
    m = new_machine(features=("tsc", "msr", "sep"))
    setup = b"".join([
        mov_r32(EDX, 0),
        mov_r32(ECX, 0x174), mov_r32(EAX, 0x10), WRMSR,
        mov_r32(ECX, 0x175), mov_r32(EAX, 0x9000), WRMSR,
        mov_r32(ECX, 0x176), mov_r32(EAX, 0x2000), WRMSR,
        b"\x0f\x34",
    ])
    m.write(0x2000, mov_r32(ECX, 0x7000) + mov_r32(EDX, 0x3000) + b"\x0f\x35")
    flat_mode(m, setup, cpl=0, eflags=F_IF)
    assert run(m, 11) == StopReason.TICKS
    r = m.get_regs()
    assert (r.cs.selector, r.ss.selector, r.esp, r.eip, r.cpl) == (0x10, 0x18, 0x9000, 0x2000, 0)
    assert (r.cs.base, r.cs.limit, r.cs.attr) == (0, 0xFFFFFFFF, 0xC09B)
    assert r.ss.attr == 0xC093 and not r.eflags & F_IF
    assert run(m, 3) == StopReason.TICKS
    r = m.get_regs()
    assert (r.cs.selector, r.ss.selector, r.esp, r.eip, r.cpl) == (0x23, 0x2B, 0x7000, 0x3000, 3)
    assert (r.cs.attr, r.ss.attr) == (0xC0FB, 0xC0F3)


def test_sysenter_faults() -> None:
    m = new_machine()
    flat_mode(m, b"\x0f\x34")
    assert_fault(m, 1, UD)  # no SEP in the default features
    m = new_machine(features=("msr", "sep"))
    flat_mode(m, b"\x0f\x34")
    assert_fault(m, 1, GP, 0)  # SYSENTER_CS is 0
    real_mode(m, b"\x0f\x34")
    assert_fault(m, 1, GP, 0)


# ---- privileged no-ops, UD2, WAIT and the x87 escapes -------------------------------------

def test_privileged_cache_and_tlb_instructions() -> None:
    m = new_machine()
    code = b"\x0f\x08\x0f\x09\x0f\x01\x3d" + u32(0x5000)  # INVD, WBINVD, INVLPG [5000h]
    flat_mode(m, code)
    assert run(m, 3) == StopReason.TICKS
    assert m.get_regs().eip == CODE + len(code)
    for insn in (b"\x0f\x08", b"\x0f\x09", b"\x0f\x06", b"\x0f\x01\x3d" + u32(0x5000)):
        flat_mode(m, insn, cpl=3)
        assert_fault(m, 1, GP, 0)


def test_ud2() -> None:
    m = new_machine()
    flat_mode(m, b"\x0f\x0b")
    assert_fault(m, 1, UD)


@pytest.mark.parametrize("cr0, vector", [(0, None), (CR0_MP, None), (CR0_TS, None),
                                         (CR0_MP | CR0_TS, NM)])
def test_wait(cr0: int, vector: int | None) -> None:
    m = new_machine()
    flat_mode(m, b"\x9b", cr0=cr0)
    if vector is None:
        assert run(m, 1) == StopReason.TICKS
    else:
        assert_fault(m, 1, vector)


NO_X87 = ("de", "pse", "tsc", "msr", "cx8", "pge", "cmov")


@pytest.mark.parametrize("cr0, vector", [(0, UD), (CR0_MP, UD), (CR0_EM, NM), (CR0_TS, NM)])
def test_x87_escape_without_x87(cr0: int, vector: int) -> None:
    """A machine configured without the fpu feature has no x87: #UD unless EM or TS ask for
    the #NM an emulating or lazily switching OS expects."""
    m = new_machine(features=NO_X87)
    flat_mode(m, b"\xd9\xc0", cr0=cr0)  # FLD ST(0)
    assert_fault(m, 1, vector)


@pytest.mark.parametrize("cr0, vector", [(0, None), (CR0_MP, None), (CR0_EM, NM), (CR0_TS, NM),
                                         (CR0_EM | CR0_MP, NM)])
def test_x87_escape_with_x87(cr0: int, vector: int | None) -> None:
    """With the x87 (the default), CR0.EM or CR0.TS make every escape #NM (never #UD)."""
    m = new_machine()
    assert m.config.features_edx & 1
    flat_mode(m, b"\xd9\xc0", cr0=cr0)  # FLD ST(0)
    if vector is None:
        assert run(m, 1) == StopReason.TICKS
    else:
        assert_fault(m, 1, vector)


def test_smsw_and_mov_from_cr0_in_real_mode() -> None:
    """SMSW to a 16-bit register takes CR0's low word; MOV from CR0 is allowed in real mode."""
    m = new_machine()
    real_mode(m, b"\x0f\x01\xe0" + b"\x0f\x20\xc3")  # SMSW AX; MOV EBX, CR0
    assert run(m, 2) == StopReason.TICKS
    r = m.get_regs()
    assert r.eax & 0xFFFF == 0x0010 and r.ebx == 0x60000010

