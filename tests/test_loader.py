"""The guest loader: entry state of each format, auto-detection, and a clear GuestError for
every malformed input. ELF files are built here byte by byte (no toolchain needed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from aero import loader
from aero.loader import GuestError, load_guest
from aero.machine import Machine, MachineConfig

RAM = 4 << 20
MB_MAGIC = 0x1BADB002


def machine() -> Machine:
    return Machine(MachineConfig(ram_size=RAM))


def mb_header(flags: int = 0x3, checksum: int | None = None) -> bytes:
    if checksum is None:
        checksum = -(MB_MAGIC + flags) & 0xFFFFFFFF
    return struct.pack("<III", MB_MAGIC, flags, checksum)


def make_elf(segments: list[tuple[int, bytes, int]], entry: int | None = None,
             header: bytes | None = None, machine_id: int = 3, elf_type: int = 2) -> bytes:
    """An ELF32 executable; each segment is (paddr, file bytes, memsz). The multiboot header
    (default: a valid one) starts the first segment's file data."""
    header = mb_header() if header is None else header
    phoff, phnum = 52, len(segments)
    offset = phoff + 32 * phnum
    phdrs, body = b"", b""
    for i, (paddr, data, memsz) in enumerate(segments):
        if i == 0:
            data = header + data
            memsz = max(memsz, len(data))
        phdrs += struct.pack("<IIIIIIII", 1, offset + len(body), paddr, paddr, len(data),
                             memsz, 7, 4)
        body += data
    entry = segments[0][0] + len(header) if entry is None else entry
    ehdr = (b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
            + struct.pack("<HHIIIIIHHHHHH", elf_type, machine_id, 1, entry, phoff, 0, 0, 52,
                          32, phnum, 40, 0, 0))
    return ehdr + phdrs + body


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# ---- flat binaries ----

def test_flat_entry_state(tmp_path: Path) -> None:
    m = machine()
    code = bytes([0xF4, 0x90, 0x90])
    info = load_guest(m, write(tmp_path, "boot.bin", code))
    assert info.fmt == "flat"
    assert m.read(0x7C00, 3) == code
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip) == (0, 0, 0x7C00)
    assert (r.ss.selector, r.esp) == (0, 0x7C00)
    assert r.eflags == 2 and r.cr0 & 1 == 0
    assert [r.eax, r.ecx, r.edx, r.ebx, r.ebp, r.esi, r.edi] == [0] * 7
    assert all(getattr(r, s).base == 0 for s in ("ds", "es", "fs", "gs", "ss"))


def test_flat_high_load_address(tmp_path: Path) -> None:
    m = machine()
    load_guest(m, write(tmp_path, "x.bin", b"\xf4"), fmt="flat", load_addr=0x20000)
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip, r.esp) == (0x2000, 0x20000, 0, 0)


def test_flat_runs_to_halt(tmp_path: Path) -> None:
    from aero.machine import StopReason

    m = machine()
    # mov al,'A'; out 0xE9,al; hlt
    load_guest(m, write(tmp_path, "x.bin", bytes([0xB0, 0x41, 0xE6, 0xE9, 0xF4])))
    assert m.run(100) == StopReason.HALT
    assert m.take_output() == b"A"


@pytest.mark.parametrize(("addr", "size", "match"), [
    (0x7C00, RAM, "do not fit"),
    (0x10008, 16, "cannot be entered in real mode"),
    (0xFFF00, 0x200, "cannot be entered in real mode"),
])
def test_flat_bad_placement(tmp_path: Path, addr: int, size: int, match: str) -> None:
    with pytest.raises(GuestError, match=match):
        load_guest(machine(), write(tmp_path, "x.bin", bytes(size)), fmt="flat", load_addr=addr)


# ---- ROM images ----

def test_rom_starts_at_reset_vector(tmp_path: Path) -> None:
    m = machine()
    rom = bytearray(b"\xff" * 0x10000)
    rom[0xFFF0:0xFFF2] = b"\xeb\xfe"
    info = load_guest(m, write(tmp_path, "bios.rom", bytes(rom)))
    assert info.fmt == "rom"
    r = m.get_regs()
    assert (r.cs.selector, r.cs.base, r.eip) == (0xF000, 0xFFFF0000, 0xFFF0)
    assert m.read(0xFFFFFFF0, 2) == b"\xeb\xfe"
    assert m.read(0xFFFF0, 2) == b"\xeb\xfe"


def test_rom_bad_size(tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="multiple of 4096"):
        load_guest(machine(), write(tmp_path, "bad.rom", bytes(5000)))
    with pytest.raises(GuestError, match="multiple of 4096"):
        load_guest(machine(), write(tmp_path, "bad.bin", bytes(100)), fmt="rom")


# ---- auto-detection ----

def test_detect_format(tmp_path: Path) -> None:
    assert loader.detect_format("k", b"\x7fELF....") == "multiboot"
    assert loader.detect_format("x.rom", bytes(4096)) == "rom"
    assert loader.detect_format("x.bin", bytes(0x20000)) == "rom"
    assert loader.detect_format("x.bin", bytes(512)) == "flat"


def test_empty_file(tmp_path: Path) -> None:
    for fmt in loader.FORMATS:
        with pytest.raises(GuestError, match="empty file"):
            load_guest(machine(), write(tmp_path, "empty", b""), fmt=fmt)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="unknown guest format"):
        load_guest(machine(), write(tmp_path, "x", b"\x90"), fmt="coff")


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_guest(machine(), tmp_path / "nope.bin")


# ---- Multiboot ----

def test_multiboot_entry_state(tmp_path: Path) -> None:
    m = machine()
    code = b"\xf4" * 16
    elf = make_elf([(0x100000, code, 0x2000), (0x200000, b"\x11\x22", 0x1000)])
    info = load_guest(m, write(tmp_path, "kernel.elf", elf))
    assert info.fmt == "multiboot" and info.entry == 0x10000C
    r = m.get_regs()
    assert (r.eax, r.ebx, r.eip) == (0x2BADB002, loader.INFO_ADDR, 0x10000C)
    assert r.cr0 & 0x80000001 == 1
    assert r.eflags == 2
    assert (r.cs.selector, r.cs.base, r.cs.limit, r.cs.attr) == (0x08, 0, 0xFFFFFFFF, 0xC09B)
    for s in ("ds", "es", "fs", "gs", "ss"):
        seg = getattr(r, s)
        assert (seg.selector, seg.base, seg.limit, seg.attr) == (0x10, 0, 0xFFFFFFFF, 0xC093)
    # The GDT the selectors come from, in memory.
    assert (r.gdtr_base, r.gdtr_limit) == (loader.GDT_ADDR, 23)
    gdt = m.read(loader.GDT_ADDR, 24)
    assert gdt[8:16] == bytes.fromhex("ffff0000009bcf00")
    assert gdt[16:24] == bytes.fromhex("ffff00000093cf00")
    # Segments loaded, the rest of memsz zeroed.
    assert m.read(0x10000C, 16) == code
    assert m.read(0x10001C, 16) == bytes(16)
    assert m.read(0x200000, 3) == b"\x11\x22\x00"


def test_multiboot_information(tmp_path: Path) -> None:
    m = machine()
    load_guest(m, write(tmp_path, "k.elf", make_elf([(0x100000, b"\xf4", 16)])))
    info = m.read(loader.INFO_ADDR, 88)
    flags, lower, upper = struct.unpack_from("<III", info, 0)
    assert flags & 0x41 == 0x41
    assert (lower, upper) == (640, (RAM - 0x100000) // 1024)
    length, addr = struct.unpack_from("<II", info, 44)
    entries = [struct.unpack_from("<IQQI", m.read(addr, length), i)
               for i in range(0, length, 24)]
    assert entries == [(20, 0, 0xA0000, 1), (20, 0xA0000, 0x60000, 2),
                       (20, 0x100000, RAM - 0x100000, 1)]
    name_addr = struct.unpack_from("<I", info, 64)[0]
    assert m.read(name_addr, 5) == b"aero\0"


def test_multiboot_information_small_ram() -> None:
    info, mmap = loader.multiboot_info(0x80000)
    assert struct.unpack_from("<III", info, 0)[1:] == (512, 0)
    assert mmap == struct.pack("<IQQI", 20, 0, 0x80000, 1)


def test_multiboot_header_beyond_8k_is_not_found(tmp_path: Path) -> None:
    elf = make_elf([(0x100000, bytes(9000) + mb_header(), 0)], header=b"", entry=0x100000)
    with pytest.raises(GuestError, match="no multiboot header"):
        load_guest(machine(), write(tmp_path, "k.elf", elf))


@pytest.mark.parametrize(("elf", "match"), [
    (make_elf([(0x100000, b"\xf4", 16)])[:40], "truncated ELF header"),
    (make_elf([(0x100000, b"\xf4", 16)])[:60], "truncated ELF: program headers"),
    (make_elf([(0x100000, b"\xf4" * 64, 16)])[:100], "truncated ELF: segment 0"),
    (make_elf([(0x100000, b"\xf4", 16)], header=b"\0" * 12), "no multiboot header"),
    (make_elf([(0x100000, b"\xf4", 16)], header=mb_header(checksum=1)), "bad checksum"),
    (make_elf([(0x100000, b"\xf4", 16)], header=mb_header(flags=0x7)), "video mode"),
    (make_elf([(RAM - 8, b"\xf4", 64)]), "outside RAM"),
    (make_elf([(0xFFFFF000, b"\xf4", 16)]), "outside RAM"),
    (make_elf([(0x0800, b"\xf4", 16)]), "overlaps the boot information"),
    (make_elf([(0x100000, b"\xf4", 16)], entry=0x300000), "entry point"),
    (make_elf([(0x100000, b"\xf4", 16)], machine_id=62), "not i386"),
    (make_elf([(0x100000, b"\xf4", 16)], elf_type=3), "not an executable"),
    (make_elf([], entry=0)[:52], "no program headers"),
    (b"\x7fELF\x02\x01" + bytes(60), "not a 32-bit little-endian"),
])
def test_multiboot_malformed(tmp_path: Path, elf: bytes, match: str) -> None:
    m = machine()
    before = m.fingerprint()
    with pytest.raises(GuestError, match=match) as exc:
        load_guest(m, write(tmp_path, "k.elf", elf))
    assert "\n" not in str(exc.value)
    assert m.fingerprint() == before  # nothing was written


def test_multiboot_segment_memsz_below_filesz(tmp_path: Path) -> None:
    elf = bytearray(make_elf([(0x100000, b"\xf4" * 32, 0)]))
    struct.pack_into("<I", elf, 52 + 20, 4)  # p_memsz < p_filesz
    with pytest.raises(GuestError, match="file size above its memory size"):
        load_guest(machine(), write(tmp_path, "k.elf", bytes(elf)))


def test_multiboot_no_loadable_segment(tmp_path: Path) -> None:
    elf = bytearray(make_elf([(0x100000, b"\xf4", 16)]))
    struct.pack_into("<I", elf, 52, 4)  # PT_NOTE instead of PT_LOAD
    with pytest.raises(GuestError, match="no loadable segment"):
        load_guest(machine(), write(tmp_path, "k.elf", bytes(elf)))


def test_cli_run_reports_guest_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aero.cli import main

    assert main(["run", str(write(tmp_path, "empty.bin", b""))]) == 2
    assert "empty file" in capsys.readouterr().err
