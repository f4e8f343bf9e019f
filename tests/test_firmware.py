"""The platform SeaBIOS needs: PAM shadowing of the BIOS area, QEMU's fw_cfg, the PIIX3
ISA bridge, the debug console at 402h; SeaBIOS itself boots to "No bootable device." and its
boot records and replays bit-exactly."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from aero.traces.container import open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, load_contents, seek
from procenv import aero_cli

from aero import devstate
from aero.events import Kind
from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import Machine, MachineConfig

SEABIOS = Path("/usr/share/seabios/bios.bin")
needs_seabios = pytest.mark.skipif(not SEABIOS.exists(), reason="Debian's seabios is not installed")


@pytest.fixture(autouse=True)
def _stores(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path_factory.getbasetemp() / "images"))
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path_factory.getbasetemp() / "traces"))


def pci_write(m: Machine, dev: int, fn: int, reg: int, val: int, size: int = 1) -> None:
    m.port_write(0xCF8, 0x8000_0000 | dev << 11 | fn << 8 | (reg & 0xFC), 4)
    m.port_write(0xCFC + (reg & 3), val, size)


def pci_read(m: Machine, dev: int, fn: int, reg: int, size: int = 1) -> int:
    m.port_write(0xCF8, 0x8000_0000 | dev << 11 | fn << 8 | (reg & 0xFC), 4)
    return m.port_read(0xCFC + (reg & 3), size)


def rom_machine() -> Machine:
    m = Machine(MachineConfig(ram_size=2 << 20))
    rom = bytes((i * 7 + 3) & 0xFF for i in range(0x20000))
    m.load_rom(rom)
    return m


# ---- PAM ------------------------------------------------------------------------------------

def test_pam_routes_reads_and_writes_between_rom_and_shadow_ram() -> None:
    m = rom_machine()
    rom_f = m.read(0xF0000, 16)
    assert rom_f == m.read(0xFFFF0000, 16)  # power-on: the ROM's alias
    m.write(0xF0000, b"\x11" * 16)
    assert m.read(0xF0000, 16) == rom_f  # writes to the ROM side are dropped
    pci_write(m, 0, 0, 0x59, 0x20)  # F0000h: write RAM, read ROM
    m.write(0xF0000, b"\x22" * 16)
    assert m.read(0xF0000, 16) == rom_f
    pci_write(m, 0, 0, 0x59, 0x30)  # read and write RAM: the write above landed there
    assert m.read(0xF0000, 16) == b"\x22" * 16
    pci_write(m, 0, 0, 0x59, 0x10)  # read-only shadow: writes dropped
    m.write(0xF0000, b"\x33" * 16)
    assert m.read(0xF0000, 16) == b"\x22" * 16
    # The 16 KB regions: 5Eh's high nibble is E4000h-E7FFFh; E0000h stays ROM.
    pci_write(m, 0, 0, 0x5E, 0x30)
    assert m.read(0xE4000, 4) == bytes(4)
    assert m.read(0xE0000, 4) == m.read(0xFFFE0000, 4)
    assert pci_read(m, 0, 0, 0x59) == 0x10 and pci_read(m, 0, 0, 0x5E) == 0x30


def test_pam_change_reaches_running_code_through_the_tlb() -> None:
    """A guest fetching and loading from F0000h sees the switch to shadow RAM at once."""
    m = Machine(MachineConfig(ram_size=2 << 20))
    rom = bytearray(b"\xF4" * 0x20000)  # HLT everywhere
    # At F000:0000 (rom offset 0x10000): mov al,[cs:0x100]; out 0xE9,al; switch PAM0 to
    # read RAM (whose byte at F0100h the test planted), then load and print again.
    code = bytes([
        0x2E, 0xA0, 0x00, 0x01,                    # mov al, cs:[0x100]
        0xE6, 0xE9,                                # out 0xE9, al
        0x66, 0xB8, 0x58, 0x00, 0x00, 0x80,        # mov eax, 0x80000058
        0xBA, 0xF8, 0x0C,                          # mov dx, 0xCF8
        0x66, 0xEF,                                # out dx, eax
        0xB0, 0x30,                                # mov al, 0x30
        0xBA, 0xFD, 0x0C,                          # mov dx, 0xCFD (register 59h)
        0xEE,                                      # out dx, al
        0x2E, 0xA0, 0x00, 0x01,                    # mov al, cs:[0x100]
        0xE6, 0xE9,                                # out 0xE9, al
        0xF4,                                      # hlt
    ])
    rom[0x10000:0x10000 + len(code)] = code
    rom[0x10100] = ord("R")
    rom[0x1FFF0:0x1FFF5] = b"\xEA\x00\x00\x00\xF0"  # jmp F000:0000
    m.load_rom(bytes(rom))
    # Shadow RAM holds the same code (as after SeaBIOS's copy) but another data byte.
    shadow = bytearray(rom[0x10000:0x20000])
    shadow[0x100] = ord("S")
    pci_write(m, 0, 0, 0x59, 0x30)
    m.write(0xF0000, bytes(shadow))
    pci_write(m, 0, 0, 0x59, 0x00)
    m.run(1000)
    assert m.take_output() == b"RS"


# ---- fw_cfg ---------------------------------------------------------------------------------

def fwcfg_item(m: Machine, key: int, n: int) -> bytes:
    m.port_write(0x510, key, 2)
    return bytes(m.port_read(0x511) for _ in range(n))


def test_fwcfg_signature_ram_size_and_file_directory() -> None:
    m = Machine(MachineConfig(ram_size=8 << 20))
    assert fwcfg_item(m, 0, 4) == b"QEMU"
    assert struct.unpack("<I", fwcfg_item(m, 1, 4))[0] == 1  # no DMA interface
    assert struct.unpack("<Q", fwcfg_item(m, 3, 8))[0] == 8 << 20
    assert struct.unpack("<H", fwcfg_item(m, 5, 2))[0] == 1
    count = struct.unpack(">I", fwcfg_item(m, 0x19, 4))[0]
    raw = fwcfg_item(m, 0x19, 4 + 64 * count)[4:]
    files = {}
    for i in range(count):
        size, key = struct.unpack_from(">IH", raw, 64 * i)
        files[raw[64 * i + 8:64 * i + 64].rstrip(b"\0").decode()] = (key, size)
    assert set(files) == {"etc/e820", "etc/boot-fail-wait"}
    key, size = files["etc/e820"]
    assert fwcfg_item(m, key, size) == struct.pack("<QQI", 0, 8 << 20, 1)
    key, size = files["etc/boot-fail-wait"]
    assert fwcfg_item(m, key, size + 2) == b"\xff\xff\xff\xff\0\0"  # zeros past the end
    assert fwcfg_item(m, 0x1234, 3) == bytes(3)  # unknown items read as zeros
    m.port_write(0x510, 0, 2)
    assert m.port_read(0x510) == ord("Q")  # byte reads of 510h read data too


def test_fwcfg_state_travels_with_snapshots() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.port_write(0x510, 0, 2)
    m.port_read(0x511)
    snap = m.snapshot()
    fresh = Machine(MachineConfig(ram_size=1 << 20))
    fresh.restore(snap)
    assert bytes(fresh.port_read(0x511) for _ in range(3)) == b"EMU"
    assert devstate.decode(m.devices_state_bytes())["fwcfg"] == {"key": 0, "offset": 1}


# ---- PIIX3 ----------------------------------------------------------------------------------

def test_piix3_isa_bridge_configuration_space() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    assert pci_read(m, 1, 0, 0, 4) == 0x7000_8086
    assert pci_read(m, 1, 0, 0x0A, 2) == 0x0601
    assert pci_read(m, 1, 0, 0x0E) == 0x80  # multi-function
    assert pci_read(m, 1, 0, 0x60, 4) == 0x8080_8080  # PIRQs disabled at power-on
    pci_write(m, 1, 0, 0x60, 0x0B0A_0B0A, 4)
    assert pci_read(m, 1, 0, 0x60, 4) == 0x0B0A_0B0A
    assert pci_read(m, 1, 0, 0x00, 4) == 0x7000_8086  # IDs are read-only
    assert pci_read(m, 2, 0, 0, 2) == 0xFFFF and pci_read(m, 1, 5, 0, 2) == 0xFFFF
    assert pci_read(m, 0, 0, 0x2C, 4) == 0x1100_1AF4  # QEMU's subsystem IDs
    d = devstate.decode(m.devices_state_bytes())["piix"]["isa_cfg_xor"]
    assert d[0x20:0x24] == [0x8A, 0x8B, 0x8A, 0x8B]


def test_untouched_new_devices_serialize_as_zeros() -> None:
    """Fingerprints of guests that never touch PIIX3 or fw_cfg are what they were before."""
    d = devstate.decode(Machine(MachineConfig(ram_size=1 << 20)).devices_state_bytes())
    assert set(d["piix"]["isa_cfg_xor"]) == {0}
    assert d["fwcfg"] == {"key": 0, "offset": 0}


def test_debugcon_at_402h() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    assert m.port_read(0x402) == 0xE9
    m.port_write(0x402, ord("x"))
    assert m.take_output() == b"x"


# ---- SeaBIOS --------------------------------------------------------------------------------

SEABIOS_LINES = (
    "SeaBIOS (version ", "Running on QEMU (i440fx)", "Found QEMU fw_cfg",
    "qemu/e820: addr 0x0000000000000000 len 0x0000000002000000 [RAM]",
    "PCI: init bdf=00:01.0 id=8086:7000", "PIIX3/PIIX4 init: elcr=00 0c",
    "Booting from Hard Disk...", "No bootable device.\n")


def run_seabios(ticks: int = 60_000_000) -> bytes:
    m = Machine(MachineConfig(ram_size=32 << 20))
    m.load_rom(SEABIOS.read_bytes())
    out = bytearray()
    while m.ticks < ticks and b"No bootable device." not in out:
        m.run(min(m.ticks + 5_000_000, ticks))
        out += m.take_output()
        m.take_events()
    return bytes(out)


@needs_seabios
def test_seabios_boots_to_no_bootable_device() -> None:
    out = run_seabios().decode("latin-1")
    for line in SEABIOS_LINES:
        assert line in out, line
    assert "WARNING" not in out


@needs_seabios
def test_seabios_records_and_replays_bit_exactly(tmp_path: Path) -> None:
    ref, data = resolve_guest(str(SEABIOS), "rom")
    store_image(data)
    m = start_machine(MachineConfig(ram_size=32 << 20), ref, data)
    p = tmp_path / "bios.aerotrace"
    res = Recorder(m, ref, p, RecordOptions(rtc_time=1_700_000_000, max_ticks=30_000_000,
                                            checkpoint_interval=1_000_000,
                                            keyframe_interval=5_000_000)).run()
    assert b"No bootable device." in res.output
    contents = load_contents(open_trace(p))
    rep = Replayer(contents).run()
    assert not rep.diverged, rep.divergence
    assert rep.checkpoints_verified == res.checkpoints and rep.output == res.output
    # A keyframe taken after the shadowing restores PAM, fw_cfg and the PIIX3 with it.
    target = 27_000_000
    sought, _ = seek(contents, target)
    straight = start_machine(MachineConfig(ram_size=32 << 20), ref, data)
    straight.inject(Kind.RTC_TIME, 0, 1_700_000_000)
    straight.run(target)
    assert (sought.ticks, sought.fingerprint()) == (straight.ticks, straight.fingerprint())


# ---- the IDE disk ---------------------------------------------------------------------------

def boot_disk(extra_sectors: int = 2046) -> bytes:
    """A 1 MB disk whose boot sector reads sector 1 through INT 13h (CHS 0/0/2) and prints
    it on the debug console (402h), then halts."""
    code = bytes([0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0,   # xor ax,ax; mov ds,ax; mov es,ax
                  0xB8, 0x01, 0x02, 0xB9, 0x02, 0x00,   # mov ax,0201h; mov cx,0002h
                  0xB6, 0x00, 0xBB, 0x00, 0x80,         # mov dh,0; mov bx,8000h
                  0xCD, 0x13,                           # int 13h
                  0xBE, 0x00, 0x80, 0xBA, 0x02, 0x04,   # mov si,8000h; mov dx,402h
                  0xAC, 0x84, 0xC0, 0x74, 0x03,         # lodsb; test al,al; jz +3
                  0xEE, 0xEB, 0xF8, 0xFA, 0xF4])        # out dx,al; jmp lodsb; cli; hlt
    mbr = bytearray(512)
    mbr[:len(code)] = code
    mbr[510:] = b"\x55\xaa"
    s1 = bytearray(512)
    s1[:20] = b"Hello from sector 1\n"
    return bytes(mbr) + bytes(s1) + bytes(512 * extra_sectors)


def disk_machine(disk: bytes | None = None) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.attach_disk(disk if disk is not None else
                  b"".join(bytes([i & 0xFF]) * 512 for i in range(2016 * 2)))
    return m


def ata(m: Machine, cmd: int, lba: int = 0, count: int = 1, lba_mode: bool = True) -> int:
    m.port_write(0x1F2, count)
    m.port_write(0x1F3, lba & 0xFF)
    m.port_write(0x1F4, (lba >> 8) & 0xFF)
    m.port_write(0x1F5, (lba >> 16) & 0xFF)
    m.port_write(0x1F6, (0xE0 if lba_mode else 0xA0) | ((lba >> 24) & 0x0F))
    m.port_write(0x1F7, cmd)
    return m.port_read(0x3F6)  # alternate status: does not clear INTRQ


def read_words(m: Machine, n: int) -> bytes:
    return b"".join(m.port_read(0x1F0, 2).to_bytes(2, "little") for _ in range(n))


def irq14_levels(m: Machine) -> list[int]:
    ev = m.take_events()
    return [int(e["b"]) for e in ev if e["kind"] == Kind.IRQ and e["a"] == 14]


def test_identify_device_describes_the_disk() -> None:
    m = disk_machine()
    m.take_events()
    assert ata(m, 0xEC) == 0x58  # DRDY DSC DRQ
    ident = read_words(m, 256)
    words = struct.unpack("<256H", ident)
    assert words[0] == 0x0040 and words[49] & 0x0200  # fixed disk, LBA
    assert words[60] | words[61] << 16 == 4032
    assert (words[1], words[3], words[6]) == (4, 16, 63)
    model = bytes(b for i in range(27, 47) for b in (words[i] >> 8, words[i] & 0xFF))
    assert model.rstrip() == b"AERO HARDDISK"
    assert m.port_read(0x1F7) == 0x50  # transfer done, INTRQ cleared by the status read
    assert irq14_levels(m) == [1, 0]


def test_read_sectors_in_lba_and_chs() -> None:
    m = disk_machine()
    ata(m, 0x20, lba=1000, count=2)
    data = read_words(m, 512)
    assert data == bytes([1000 & 0xFF]) * 512 + bytes([1001 & 0xFF]) * 512
    assert m.port_read(0x1F7) == 0x50
    assert m.port_read(0x1F3) == 1001 & 0xFF  # the task file holds the last sector
    # CHS 1/2/3 with the default 16 heads x 63 sectors: LBA (1 * 16 + 2) * 63 + 2 = 1136.
    m.port_write(0x1F2, 1)
    m.port_write(0x1F3, 3)
    m.port_write(0x1F4, 1)
    m.port_write(0x1F5, 0)
    m.port_write(0x1F6, 0xA2)
    m.port_write(0x1F7, 0x20)
    assert read_words(m, 256) == bytes([1136 & 0xFF]) * 512
    # INITIALIZE DEVICE PARAMETERS: 4 heads of 17 sectors; CHS 0/1/1 is then LBA 17.
    m.port_write(0x1F2, 17)
    m.port_write(0x1F6, 0xA3)
    m.port_write(0x1F7, 0x91)
    assert m.port_read(0x1F7) == 0x50
    m.port_write(0x1F2, 1)
    m.port_write(0x1F3, 1)
    m.port_write(0x1F4, 0)
    m.port_write(0x1F6, 0xA1)
    m.port_write(0x1F7, 0x20)
    assert read_words(m, 256) == bytes([17]) * 512


def test_errors_a_drive_gives() -> None:
    m = disk_machine()
    assert ata(m, 0x20, lba=4032) == 0x51 and m.port_read(0x1F1) == 0x10  # IDNF past the end
    assert ata(m, 0x40, lba=4000, count=32) == 0x50  # READ VERIFY inside the disk
    assert ata(m, 0x30, lba=5) == 0x51 and m.port_read(0x1F1) == 0x04  # read-only: ABRT
    assert ata(m, 0x25) == 0x51 and m.port_read(0x1F1) == 0x04  # READ DMA EXT: not modelled
    assert ata(m, 0xC8) == 0x51
    unmodelled = devstate.decode(m.devices_state_bytes())["ide"]["unmodelled"]
    assert [i for i in range(256) if unmodelled[i >> 3] >> (i & 7) & 1] == [0x25, 0xC8]
    m.port_write(0x1F1, 0x03)
    assert ata(m, 0xEF) == 0x50  # SET FEATURES: transfer mode
    m.port_write(0x1F1, 0x77)
    assert ata(m, 0xEF) == 0x51


def test_reset_signature_absent_drives_and_nien() -> None:
    m = disk_machine()
    ata(m, 0x20, lba=9, count=3)
    m.port_write(0x3F6, 0x04)  # SRST
    assert m.port_read(0x3F6) == 0x80
    m.port_write(0x3F6, 0x02)  # end the reset, interrupts disabled
    assert [m.port_read(p) for p in (0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F7)] == \
        [0x01, 1, 1, 0, 0, 0x50]
    m.take_events()
    ata(m, 0xEC)
    assert irq14_levels(m) == []  # nIEN holds IRQ 14 low
    m.port_write(0x1F6, 0xB0)  # the slave: absent
    assert [m.port_read(p) for p in (0x1F1, 0x1F2, 0x1F7)] == [0, 0, 0]
    assert [m.port_read(p) for p in (0x171, 0x172, 0x177, 0x376)] == [0, 0, 0, 0]  # secondary
    bare = Machine(MachineConfig(ram_size=1 << 20))
    assert bare.port_read(0x1F7) == 0 and bare.port_read(0x1F0, 2) == 0xFFFF


def test_ide_state_travels_with_snapshots_mid_transfer() -> None:
    m = disk_machine()
    ata(m, 0x20, lba=7, count=2)
    read_words(m, 100)
    snap = m.snapshot()
    rest = read_words(m, 412)
    other = disk_machine()
    other.restore(snap)
    assert read_words(other, 412) == rest
    assert devstate.decode(Machine(MachineConfig(ram_size=1 << 20)).devices_state_bytes())[
        "ide"]["buf"] == [0] * 512


def test_piix_ide_function_in_pci_space() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    assert pci_read(m, 1, 1, 0, 4) == 0x7010_8086
    assert pci_read(m, 1, 1, 0x08, 4) >> 8 == 0x01_0180  # class 0101h, prog-if 80h
    pci_write(m, 1, 1, 0x20, 0xFFFF_FFFF, 4)
    assert pci_read(m, 1, 1, 0x20, 4) == 0xFFFF_FFF1  # BAR4: 16 bytes of I/O space
    pci_write(m, 1, 1, 0x20, 0xC000, 4)
    assert pci_read(m, 1, 1, 0x20, 4) == 0xC001


def test_disk_sizes_are_checked() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    for bad in (b"", bytes(1000)):
        with pytest.raises(ValueError, match="multiple of 512"):
            m.attach_disk(bad)


def seabios_console(disk: bytes, marker: bytes, max_ticks: int) -> str:
    """What SeaBIOS booting ``disk`` (32 MB of RAM) prints on the debug console, up to
    ``marker`` or ``max_ticks``."""
    m = Machine(MachineConfig(ram_size=32 << 20))
    m.load_rom(SEABIOS.read_bytes())
    m.attach_disk(disk)
    out = bytearray()
    while m.ticks < max_ticks and marker not in out:
        m.run(m.ticks + 5_000_000)
        out += m.take_output()
        m.take_events()
    return out.decode("latin-1")


@needs_seabios
def test_seabios_boots_the_disk_and_reads_it_through_int13() -> None:
    text = seabios_console(boot_disk(), b"sector 1", 60_000_000)
    assert "ata0-0: AERO HARDDISK ATA-6 Hard-Disk (1 MiBytes)" in text
    assert "Booting from Hard Disk...\nBooting from 0000:7c00\nHello from sector 1\n" in text


def cmos(m: Machine, reg: int) -> int:
    m.port_write(0x70, reg)
    return m.port_read(0x71)


def test_a_disk_machine_asks_the_firmware_to_boot_the_disk_first() -> None:
    """CMOS 3Dh and 38h as QEMU's -boot c sets them: the hard disk (2) first, nothing after
    it, the floppy boot-signature check left on (38h bit 0 clear)."""
    bare = Machine(MachineConfig(ram_size=1 << 20))
    assert (cmos(bare, 0x3D), cmos(bare, 0x38)) == (0x00, 0x00)
    m = disk_machine()
    assert (cmos(m, 0x3D), cmos(m, 0x38)) == (0x02, 0x00)
    checksum = sum(cmos(m, r) for r in range(0x10, 0x2E))
    assert cmos(m, 0x2E) << 8 | cmos(m, 0x2F) == checksum  # outside the checksummed bytes
    other = Machine(MachineConfig(ram_size=1 << 20))
    other.restore(m.snapshot())  # CMOS is RTC state: it travels with snapshots
    assert cmos(other, 0x3D) == 0x02


@needs_seabios
def test_seabios_tries_the_disk_before_the_floppy() -> None:
    """A disk that is not bootable (no 55AAh): SeaBIOS reads CMOS 3Dh, tries the hard disk
    first and only then the floppy it falls back to, then gives up."""
    text = seabios_console(bytes(512 * 2048), b"No bootable device.", 80_000_000)
    hd, fd = text.find("Booting from Hard Disk..."), text.find("Booting from Floppy...")
    assert 0 <= hd < fd, text[-600:]
    assert "Boot failed: not a bootable disk" in text[hd:fd]
    assert "No bootable device." in text[fd:]


@needs_seabios
def test_cli_records_replays_and_packs_a_disk_boot(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "boot.img"
    disk.write_bytes(boot_disk())
    t = tmp_path / "d.aerotrace"
    r = aero_cli("record", "pc", "--disk", str(disk), "-o", str(t), "--ticks", "20000000",
                 "--rtc", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stop"] == "halt"
    info = json.loads(aero_cli("info", str(t), "--json").stdout)
    assert info["guest"]["disk_size"] == len(boot_disk())
    # The disk file changing after the recording does not change the replay: the recorder
    # stored the disk by its hash.
    disk.write_bytes(boot_disk(extra_sectors=10))
    r = aero_cli("replay", str(t), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr
    # Without the stored copy: one clear line, exit 2; packed, the trace carries it.
    packed = tmp_path / "packed.aerotrace"
    assert aero_cli("pack", str(t), "-o", str(packed)).returncode == 0
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "firmware-only"))
    store_image(SEABIOS.read_bytes())
    r = aero_cli("replay", str(t))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "disk image" in r.stderr
    r = aero_cli("replay", str(packed), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr


def test_cli_refuses_bad_disks_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(1000))
    for args in (("run", "rom_hello", "--disk", str(bad)),
                 ("record", "rom_hello", "--disk", str(bad), "-o", str(tmp_path / "x")),
                 ("run", "rom_hello", "--disk", str(bad) + ",rw"),
                 ("run", "rom_hello", "--disk", str(tmp_path / "missing.img"))):
        r = aero_cli(*args)
        assert r.returncode == 2 and r.stderr.startswith("aero: error:"), (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_run_reports_each_unmodelled_ata_command_once(tmp_path: Path) -> None:
    """A boot sector issuing READ MULTIPLE (C4h) twice and SMART (B0h) once: the drive answers
    ABRT, and `aero run` names each opcode once."""
    code = bytes([0xBA, 0xF7, 0x01,             # mov dx, 1F7h
                  0xB0, 0xC4, 0xEE, 0xEE,       # mov al, C4h; out dx, al; out dx, al
                  0xB0, 0xB0, 0xEE,             # mov al, B0h; out dx, al
                  0xEC, 0xE6, 0xE9,             # in al, dx; out E9h, al (status: 51h)
                  0xFA, 0xF4])                  # cli; hlt
    img = tmp_path / "flat.bin"
    img.write_bytes(code)
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(512 * 4))
    r = aero_cli("run", str(img), "--format", "flat", "--disk", str(disk), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == "Q"  # 51h: DRDY DSC ERR
    notes = [ln for ln in r.stderr.splitlines() if "ATA command" in ln]
    assert notes == ["aero: note: the guest issued ATA command B0h, which is not modelled "
                     "(the drive answered it with ABRT)",
                     "aero: note: the guest issued ATA command C4h, which is not modelled "
                     "(the drive answered it with ABRT)"]


# ---- the VGA text console -------------------------------------------------------------------

def test_vga_registers_read_back() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    assert m.port_read(0x3D5) == 0xFF  # power-on: monochrome addressing, CRTC at 3B4h
    m.port_write(0x3C2, 0x67)
    assert m.port_read(0x3CC) == 0x67
    m.port_write(0x3D4, 0x0E)
    m.port_write(0x3D5, 0x01)
    m.port_write(0x3D4, 0x0F)
    m.port_write(0x3D5, 0x42)
    m.port_write(0x3D4, 0x0E)
    assert (m.port_read(0x3D4), m.port_read(0x3D5)) == (0x0E, 0x01)
    assert m.port_read(0x3B5) == 0xFF  # the monochrome pair is off now
    m.port_write(0x3C4, 0x02)
    m.port_write(0x3C5, 0x03)
    m.port_write(0x3CE, 0x06)
    m.port_write(0x3CF, 0x0E)
    assert (m.port_read(0x3C5), m.port_read(0x3CF)) == (0x03, 0x0E)
    m.port_read(0x3DA)  # resets the attribute flip-flop
    m.port_write(0x3C0, 0x10)
    m.port_write(0x3C0, 0x0C)
    m.port_write(0x3C0, 0x20)  # index again, with the palette source bit
    assert (m.port_read(0x3C0), m.port_read(0x3C1)) == (0x20, 0)
    m.port_read(0x3DA)
    m.port_write(0x3C0, 0x10)
    assert m.port_read(0x3C1) == 0x0C
    m.port_write(0x3C8, 5)
    for v in (0x3F, 0x15, 0x7F):
        m.port_write(0x3C9, v)
    m.port_write(0x3C7, 5)
    assert [m.port_read(0x3C9) for _ in range(3)] == [0x3F, 0x15, 0x3F]  # 6 bits each
    assert m.port_read(0x3C7) == 0x03 and m.port_read(0x3C6) == 0xFF
    v = devstate.decode(m.devices_state_bytes())["vga"]
    assert v["crtc"][0x0E:0x10] == [0x01, 0x42] and v["palette"][15:18] == [0x3F, 0x15, 0x3F]


def test_vga_retrace_follows_the_guest_clock() -> None:
    """Input status 1 is a function of the tick: vertical retrace twice in a 70 Hz frame's
    449 lines, for the same ticks on every run."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.port_write(0x3C2, 0x01)
    rom = bytearray(4096)
    rom[0xFF0:0xFF2] = b"\xeb\xfe"  # jmp $ at the reset vector: one tick per instruction
    m.load_rom(bytes(rom))
    hz = m.config.tick_hz
    line = hz / 31469
    samples = []
    for t in (0, 100, 411, 412.5, 413.9, 420, 449 + 412.5):
        tick = int(t * line) + 1
        while m.ticks < tick:
            m.run(tick)
        samples.append(m.port_read(0x3DA) & 0x09)
    assert samples[0] == 0 and samples[5] == 0x01
    assert samples[3] == 0x09 and samples[6] == 0x09


def test_screen_reads_the_text_frame_buffer() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.port_write(0x3C2, 0x67)
    m.write(0xB8000 + 160 * 2, b"".join(bytes([c, 0x07]) for c in b"Hello \xdb"))
    assert m.screen()[2] == "Hello \u2588" and m.screen()[0] == ""
    m.port_write(0x3D4, 0x0D)
    m.port_write(0x3D5, 80)  # start address one line down
    assert m.screen()[1] == "Hello \u2588"


@needs_seabios
def test_seabios_and_its_vga_bios_write_the_screen(tmp_path: Path) -> None:
    r = aero_cli("run", "pc", "--until", "No bootable device.", "--screen", "--json")
    assert r.returncode == 0, r.stderr
    screen = json.loads(r.stdout)["screen"]
    assert screen[0].startswith("SeaBIOS (version 1.16")
    assert "No bootable device." in "\n".join(screen)
    assert "No VBE DISPI interface detected, falling back to stdvga" in \
        json.loads(r.stdout)["output"]


@needs_seabios
def test_screen_contains_oracle(tmp_path: Path) -> None:
    t = tmp_path / "bios.aerotrace"
    r = aero_cli("record", "pc", "-o", str(t), "--ticks", "40000000", "--rtc", "0", "--json",
                 "--screen")
    assert r.returncode == 0, r.stderr
    assert "No bootable device." in json.loads(r.stdout)["screen"]
    ok = aero_cli("check", str(t), "--oracle", "screen-contains:No bootable device.", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = aero_cli("check", str(t), "--oracle", "screen-contains:Press ESC for boot menu",
                   "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "the screen never showed" in bad.stdout


@needs_seabios
@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU is not installed")
def test_boot_bench_times_seabios_in_aero_and_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    from aero.bench import boot
    from procenv import assert_gone

    monkeypatch.setattr(boot, "WORKLOADS", {"seabios": boot.WORKLOADS["seabios"]})
    started: list[int] = []
    real = boot._qemu
    monkeypatch.setattr(boot, "_qemu", lambda *a: real(*a, started=started))
    report = boot.run(1, reference=True, log=lambda _s: None)
    row = report["seabios"]
    assert isinstance(row, dict)
    assert row["aero_seconds"] > 0 and row["qemu_seconds"] > 0
    assert 1_000_000 < row["ticks"] < 50_000_000 and row["marker"] == "No bootable device."
    assert len(started) == 1
    assert_gone(started[0])


@needs_seabios
@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU is not installed")
def test_seabios_says_the_same_in_aero_and_qemu() -> None:
    """SeaBIOS's debug log under QEMU's `-M pc` and under aero agree on what the platform
    is: QEMU detected, fw_cfg found, the RAM map, the PIIX3's interrupt routing, the IDE
    controllers, the boot attempt and its end. (They differ where QEMU has more: fw_cfg DMA,
    the PIIX4 power management function and its timer, ACPI tables.)"""
    import select
    import signal
    import time

    from procenv import assert_gone

    cmd = ["qemu-system-i386", "-M", "pc", "-m", "32", "-bios", str(SEABIOS), "-display",
           "none", "-nodefaults", "-no-reboot", "-monitor", "none", "-serial", "none",
           "-chardev", "stdio,id=d", "-device", "isa-debugcon,iobase=0x402,chardev=d"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    qemu = b""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while b"No bootable device." not in qemu and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                qemu += chunk
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(3)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert_gone(proc.pid)
    ours = run_seabios().decode("latin-1").splitlines()
    theirs = qemu.decode("latin-1").splitlines()
    same = ("SeaBIOS (version", "Running on QEMU", "Found QEMU fw_cfg", "qemu/e820:",
            "PIIX3/PIIX4 init:", "ATA controller", "PS2 keyboard initialized",
            "  0: ", "  1: ", "  2: ", "Booting from Hard Disk...",
            "Boot failed: could not read the boot disk", "No bootable device.")
    for prefix in same:
        a = [ln for ln in ours if ln.startswith(prefix)]
        b = [ln for ln in theirs if ln.startswith(prefix)]
        assert a and a == b, (prefix, a, b)
