"""The machine core: build hygiene, state access, determinism, snapshots, memory coherence."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aero import _core_loader
from aero._stamp import CORE_DIR, compute_stamp
from aero.machine import (
    WATCH_EXEC,
    WATCH_IO,
    WATCH_PHYS,
    WATCH_READ,
    WATCH_WRITE,
    Machine,
    MachineConfig,
    Segment,
    StopReason,
    ffi,
    hash64,
    lib,
)

REAL_CS = 0x9B
REAL_DS = 0x93


def real_mode(m: Machine, cs: int = 0, ip: int = 0x1000, sp: int = 0x8000) -> None:
    r = m.get_regs()
    r.cs = Segment(cs, cs << 4, 0xFFFF, REAL_CS)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, REAL_DS))
    r.eip, r.esp = ip, sp
    r.halted = False
    m.set_regs(r)


def test_no_pending_handlers_in_core() -> None:
    """Every handler of the instruction table is implemented (no development markers)."""
    for src in CORE_DIR.glob("ops_*.c"):
        assert "AERO_PENDING(" not in src.read_text(), f"{src.name} has unwritten handlers"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_core_compiles_without_warnings(tmp_path: Path) -> None:
    for src in sorted(CORE_DIR.glob("*.c")):
        proc = subprocess.run(
            ["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
             "-fsyntax-only", f"-I{CORE_DIR}", str(src)],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{src.name}:\n{proc.stderr}"


def test_exported_functions_are_prefixed() -> None:
    """Non-static functions of the core carry the aero_ prefix."""
    pattern = re.compile(r"^(?!static)(?:[a-z_0-9]+\s+\**)+([a-z_0-9]+)\(", re.M)
    for src in sorted(CORE_DIR.glob("*.c")):
        for name in pattern.findall(src.read_text()):
            assert name.startswith("aero_"), f"{src.name}: {name} is exported without aero_"


def test_stamp_matches_sources() -> None:
    assert ffi.string(lib.aero_core_stamp()).decode() == compute_stamp()


def test_stale_core_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_core_loader, "compute_stamp", lambda: "0000000000000000")
    with pytest.raises(_core_loader.CoreError, match="stale"):
        _core_loader.load_core()


def test_reset_state() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20, cpuid_signature=0x633))
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip) == (0xF000, 0xFFFF0000, 0xFFF0)
    assert r.eflags == 2 and r.edx == 0x633 and r.cr0 == 0x60000010


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        MachineConfig(ram_size=1000)
    with pytest.raises(ValueError, match="12 ASCII"):
        MachineConfig(cpuid_vendor="Intel")
    with pytest.raises(ValueError, match="unknown CPU features"):
        MachineConfig(features=("tsc", "avx512"))
    cfg = MachineConfig(ram_size=1 << 20, features=("tsc",))
    assert MachineConfig.from_dict(cfg.to_dict()) == cfg


def test_ram_is_zero_copy_and_read_only() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.write(0x1234, b"\xAA\xBB")
    assert m.ram[0x1234] == 0xAA and m.ram[0x1235] == 0xBB
    with pytest.raises(ValueError):
        m.ram[0] = 1
    with m.ram_writable(0x2000, 16) as ram:
        ram[0x2000] = 0x42
    assert m.read(0x2000, 1) == b"\x42"


def _alu_program() -> bytes:
    # mov ax,5 ; add ax,3 ; mov cx,ax ; xor cx,0x0F0F ; hlt
    return bytes([0xB8, 5, 0, 0x83, 0xC0, 3, 0x89, 0xC1, 0x81, 0xF1, 0x0F, 0x0F, 0xF4])


def test_run_step_and_ticks() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    m.write(0x1000, _alu_program())
    assert m.step() == StopReason.TICKS and m.ticks == 1 and m.get_regs().eax & 0xFFFF == 5
    assert m.run(100) == StopReason.HALT
    r = m.get_regs()
    assert m.ticks == 5  # four instructions and the HLT
    assert r.eax & 0xFFFF == 8 and r.ecx & 0xFFFF == 8 ^ 0x0F0F and r.halted


def test_fingerprint_is_deterministic_and_sensitive() -> None:
    def build() -> Machine:
        m = Machine(MachineConfig(ram_size=1 << 20))
        real_mode(m)
        m.write(0x1000, _alu_program())
        m.run(100)
        return m

    a, b = build(), build()
    assert a.fingerprint() == b.fingerprint()
    b.write(0x9000, b"\x01")
    assert a.fingerprint() != b.fingerprint()
    r = a.get_regs()
    r.ebx ^= 1
    a.set_regs(r)
    assert a.fingerprint() != build().fingerprint()


def test_fingerprint_sees_fast_path_writes_after_a_fingerprint() -> None:
    """Writes through the TLB fast path after a fingerprint still reach the page hashes."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    # mov [0x5000],al ; inc al ; mov [0x5000],al ; hlt   (code page != data page)
    prog = bytes([0xA2, 0x00, 0x50, 0xFE, 0xC0, 0xA2, 0x00, 0x50, 0xF4])
    m.write(0x1000, prog)
    m.step()
    f1 = m.fingerprint()
    m.run(100)
    assert m.read(0x5000, 1) == b"\x01"
    fresh = Machine(MachineConfig(ram_size=1 << 20))
    fresh.restore(m.snapshot())
    assert m.fingerprint() == fresh.fingerprint() != f1


def test_snapshot_restore_continues_bit_exactly() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    m.write(0x1000, _alu_program())
    m.step()
    snap = m.snapshot()
    m.run(100)
    end = m.fingerprint()
    other = Machine(MachineConfig(ram_size=1 << 20))
    other.restore(snap)
    assert other.ticks == 1
    other.run(100)
    assert other.fingerprint() == end
    with pytest.raises(ValueError):
        Machine(MachineConfig(ram_size=2 << 20)).restore(snap)


def test_self_modifying_code_is_seen() -> None:
    """A store into already-decoded code changes what executes next."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    # 1000: mov byte [0x1008], 0x40   (patch the next instruction: 0x48 dec ax -> 0x40 inc ax)
    # 1005: nop ; nop ; nop
    # 1008: dec ax ; hlt
    prog = bytes([0xC6, 0x06, 0x08, 0x10, 0x40, 0x90, 0x90, 0x90, 0x48, 0xF4])
    m.write(0x1000, prog)
    m.run(100)
    assert m.get_regs().eax & 0xFFFF == 1
    # Host writes invalidate too: run the same code again after restoring the old byte.
    real_mode(m)
    m.write(0x1008, b"\x48")
    m.run(m.ticks + 100)
    assert m.get_regs().eax & 0xFFFF == 2  # patched again to inc by the first instruction


def test_code_patch_across_a_chunk_boundary_is_seen() -> None:
    """Decoded code is tracked in 64-byte chunks: stores to data on the code's page leave
    it alone, a store to the second chunk of an instruction that straddles two chunks
    re-decodes it."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    # 1000: mov cx, 3
    # 1003: mov byte [0x1800], cl      (data on the same page as the code)
    # 1007: jmp 0x103E
    # 103E: mov ax, 0x0100             (B8 00 01: the high immediate byte is at 0x1040, in
    #                                   the next chunk)
    # 1041: mov byte [0x1040], 0x02    (patches it: the next pass loads AX = 0x0200)
    # 1046: loop 0x1003 ; hlt
    code = {0x1000: "B9 03 00", 0x1003: "88 0E 00 18", 0x1007: "E9 34 00", 0x103E: "B8 00 01",
            0x1041: "C6 06 40 10 02", 0x1046: "E2 BB", 0x1048: "F4"}
    for addr, data in code.items():
        m.write(addr, bytes.fromhex(data))
    assert m.run(1000) == StopReason.HALT
    r = m.get_regs()
    assert r.eax & 0xFFFF == 0x0200  # the second pass saw the patched immediate
    assert m.read(0x1800, 1) == b"\x01"


def test_rom_is_mapped_at_reset_vector_and_below_1mb() -> None:
    rom = bytearray(b"\xF4" * 65536)
    rom[-16:-11] = bytes([0xEA, 0x00, 0x00, 0x00, 0xF0])  # jmp far F000:0000 -> hlt
    m = Machine(MachineConfig(ram_size=2 << 20))
    m.load_rom(bytes(rom))
    assert m.read(0xFFFFFFF0, 1) == b"\xEA" and m.read(0xFFFF0, 1) == b"\xEA"
    m.write(0xF0000, b"\x00")  # ROM ignores writes
    assert m.read(0xF0000, 1) == b"\xF4"
    with pytest.raises(ValueError):
        m.load_rom(b"\0" * 100)


def test_undefined_opcode_raises_ud_through_ivt() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    r = m.get_regs()
    r.idtr_base, r.idtr_limit = 0, 0x3FF
    m.set_regs(r)
    m.write(6 * 4, bytes([0x00, 0x20, 0x00, 0x00]))  # IVT[6] = 0000:2000
    m.write(0x2000, b"\xF4")
    m.write(0x1000, b"\x0F\x0B")  # UD2
    assert m.run(10) == StopReason.HALT
    r = m.get_regs()
    assert r.eip == 0x2001 and m.last_exception() == (6, 0)
    assert m.read(0x8000 - 6, 2) == b"\x00\x10"  # the faulting IP was pushed
    assert m.ticks == 2  # the fault takes the tick of its instruction; then the HLT


def test_instruction_longer_than_15_bytes_faults() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    m.set_stop_on_exception(True)
    m.write(0x1000, b"\x66" * 15 + b"\x90")
    assert m.run(10) == StopReason.EXCEPTION
    assert m.last_exception() == (13, 0) and m.get_regs().eip == 0x1000 and m.ticks == 0


def test_hash64_is_xxh64() -> None:
    # Reference values of XXH64 (seed 0) from the xxHash specification's test vectors.
    assert hash64(b"") == 0xEF46DB3751D8E999
    assert hash64(b"a") == 0xD24EC4F1A98C6E5B
    assert hash64(b"abc") == 0x44BC2CF5AD770999


def test_two_machines_are_independent() -> None:
    a = Machine(MachineConfig(ram_size=1 << 20))
    b = Machine(MachineConfig(ram_size=1 << 20))
    a.write(0, b"\x01")
    assert b.read(0, 1) == b"\x00"
    assert not np.shares_memory(a.ram, b.ram)


def test_null_data_segment_faults_on_any_access() -> None:
    """In protected mode a data segment loaded with a null selector faults on use, offset 0 too."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    r = m.get_regs()
    r.cr0 |= 1
    r.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xCF9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0x10, 0, 0xFFFFFFFF, 0xCF93))
    r.eip, r.esp = 0x1000, 0x8000
    m.set_regs(r)
    m.set_stop_on_exception(True)
    # xor eax,eax ; mov ds,ax ; mov al,[0]
    m.write(0x1000, bytes([0x31, 0xC0, 0x8E, 0xD8, 0xA0, 0, 0, 0, 0]))
    assert m.run(10) == StopReason.EXCEPTION
    assert m.last_exception() == (13, 0) and m.get_regs().eip == 0x1004 and m.ticks == 2


def _watch_program() -> bytes:
    # 1000: mov [0x5000],al ; 1003: mov bl,[0x5001] ; 1007: inc al ; 1009: mov [0x5000],al
    # 100C: mov [0x6000],al ; 100F: hlt
    return bytes([0xA2, 0x00, 0x50, 0x8A, 0x1E, 0x01, 0x50, 0xFE, 0xC0, 0xA2, 0x00, 0x50,
                  0xA2, 0x00, 0x60, 0xF4])


def _watch_machine() -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    m.write(0x1000, _watch_program())
    m.run(1)  # the page is now dirty and write-mapped: the watch must unmap it
    return m


def test_write_watch_stops_after_each_writing_instruction() -> None:
    m = _watch_machine()
    m.set_watch(0, 0x5000, 1, WATCH_WRITE)
    stops = []
    while m.run(100) == StopReason.WATCH:
        stops.append((m.ticks, m.get_regs().eip, m.take_watch_hit()))
    assert stops == [(4, 0x100C, (0x5000, 0x5000, 1, WATCH_WRITE, 0, 0x1009))]
    assert m.take_watch_hit() is None and m.get_regs().halted


def test_read_exec_and_physical_watches() -> None:
    m = _watch_machine()
    m.set_watch(3, 0x5001, 1, WATCH_READ)
    assert m.run(100) == StopReason.WATCH and m.ticks == 2 and m.get_regs().eip == 0x1007
    assert m.take_watch_hit() == (0x5001, 0x5001, 1, WATCH_READ, 0, 0x1003)
    m.set_watch(3, 0, 0, 0)
    m.set_watch(0, 0x6000, 4, WATCH_WRITE | WATCH_PHYS)
    m.set_watch(1, 0x1009, 1, WATCH_EXEC)
    assert m.run(100) == StopReason.WATCH and m.ticks == 3 and m.get_regs().eip == 0x1009
    assert m.take_watch_hit() == (0x1009, 0x1009, 1, WATCH_EXEC, 0, 0x1009)
    assert m.run(100) == StopReason.WATCH and m.ticks == 3  # not resumed: stops again
    m.take_watch_hit()
    m.watch_resume()
    assert m.run(100) == StopReason.WATCH and m.ticks == 5
    assert m.take_watch_hit() == (0x6000, 0x6000, 1, WATCH_WRITE, 0, 0x100C)
    with pytest.raises(ValueError):
        m.set_watch(16, 0, 1, WATCH_WRITE)


def test_watches_do_not_change_execution() -> None:
    """A watched run reaches the same state, tick for tick, as an unwatched one."""
    plain, watched = _watch_machine(), _watch_machine()
    plain.run(100)
    watched.set_watch(0, 0x5000, 0x2000, WATCH_WRITE | WATCH_READ)
    watched.set_watch(1, 0x1003, 1, WATCH_EXEC)
    n = 0
    while watched.run(100) == StopReason.WATCH:
        n += 1
        watched.take_watch_hit()
        watched.watch_resume()
    assert n == 4 and watched.fingerprint() == plain.fingerprint()


def test_io_watch_reports_port_value_and_direction() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    real_mode(m)
    # mov al,0x42 ; out 0x70,al ; out 0x80,al ; in al,0x70 ; hlt
    m.write(0x1000, bytes([0xB0, 0x42, 0xE6, 0x70, 0xE6, 0x80, 0xE4, 0x70, 0xF4]))
    m.set_watch(2, 0x70, 1, WATCH_IO | WATCH_READ | WATCH_WRITE)
    assert m.run(100) == StopReason.WATCH and m.ticks == 2
    assert m.take_watch_hit() == (0x70, 0x70, 1, WATCH_IO | WATCH_WRITE, 0x42, 0x1002)
    assert m.run(100) == StopReason.WATCH and m.ticks == 4
    port, _, size, kind, value, _eip = m.take_watch_hit()
    assert (port, size, kind) == (0x70, 1, WATCH_IO | WATCH_READ)
    assert value == m.get_regs().eax & 0xFF
    assert m.run(100) == StopReason.HALT
