"""The platform SeaBIOS needs: PAM shadowing of the BIOS area, QEMU's fw_cfg, the PIIX3
ISA bridge, the debug console at 402h; SeaBIOS itself boots to "No bootable device." and its
boot records and replays bit-exactly."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from aero.traces.container import open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, load_contents, seek

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
