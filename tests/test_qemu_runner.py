"""The QEMU runner: output and exit status, the flat-binary boot ROM, timeouts, and process
hygiene (no QEMU process outlives a run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from aero.fuzz import qemu
from aero.fuzz.qemu import QemuError, pad_rom, run_qemu, wrap_flat
from procenv import assert_gone

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-i386") is None,
    reason="qemu-system-i386 is not installed (Debian package qemu-system-x86)")
needs_binutils = pytest.mark.skipif(shutil.which("as") is None,
                                    reason="GNU binutils are not installed")


def rom_with_reset_code(code: bytes, size: int = 0x10000) -> bytes:
    """A ROM of 0xFF whose reset vector (16 bytes below its end) holds ``code``."""
    rom = bytearray(b"\xff" * size)
    rom[size - 16:size - 16 + len(code)] = code
    return bytes(rom)




@needs_qemu
@pytest.mark.parametrize("icount", [False, True])
def test_exit_status_and_output(tmp_path: Path, icount: bool) -> None:
    # mov al,'Q'; out 0xE9,al; mov al,5; out 0xF4,al  -> status (5 << 1) | 1
    code = bytes([0xB0, ord("Q"), 0xE6, 0xE9, 0xB0, 0x05, 0xE6, 0xF4])
    path = tmp_path / "t.rom"
    path.write_bytes(rom_with_reset_code(code))
    res = run_qemu(path, "rom", timeout=20, icount=icount)
    assert (res.output, res.exit_status, res.timed_out) == (b"Q", 11, False)
    assert_gone(res.pid)


@needs_qemu
def test_small_rom_is_padded(tmp_path: Path) -> None:
    code = bytes([0xB0, 0x00, 0xE6, 0xF4])
    path = tmp_path / "t.rom"
    path.write_bytes(rom_with_reset_code(code, size=0x1000))
    res = run_qemu(path, "rom", timeout=20)
    assert res.exit_status == 1


@needs_qemu
def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    path = tmp_path / "loop.rom"
    path.write_bytes(rom_with_reset_code(b"\xeb\xfe"))  # jmp $
    res = run_qemu(path, "rom", timeout=1.0)
    assert res.timed_out and res.exit_status is None
    assert res.elapsed < 1.0 + qemu.KILL_GRACE + 5
    assert_gone(res.pid)


@needs_qemu
def test_triple_fault_ends_without_status(tmp_path: Path) -> None:
    # lidt [cs:zero-limit]; int3 -> no IDT entry -> shutdown; -no-reboot makes QEMU exit.
    code = bytes([0x2E, 0x0F, 0x01, 0x1E, 0xF8, 0xFF, 0xCC])  # lidt cs:[0xFFF8]
    rom = bytearray(rom_with_reset_code(code))
    rom[0xFFF8:0xFFFE] = bytes(6)
    path = tmp_path / "tf.rom"
    path.write_bytes(bytes(rom))
    res = run_qemu(path, "rom", timeout=20)
    assert not res.timed_out and res.exit_status is None
    assert_gone(res.pid)


@needs_qemu
@needs_binutils
def test_flat_binary_through_the_boot_rom(tmp_path: Path) -> None:
    # Check the entry state the boot ROM creates: CS=0, IP=0x7C00, SP=0x7C00, regs zero.
    # mov ax,sp; cmp ax,0x7c00; jne fail; mov ax,cs; or ax,bx; or ax,si; jnz fail;
    # mov al,0; out 0xf4,al; fail: mov al,1; out 0xf4,al
    code = bytes([0x89, 0xE0, 0x3D, 0x00, 0x7C, 0x75, 0x0C, 0x8C, 0xC8, 0x09, 0xD8,
                  0x09, 0xF0, 0x75, 0x04, 0xB0, 0x00, 0xE6, 0xF4, 0xB0, 0x01, 0xE6, 0xF4])
    path = tmp_path / "boot.bin"
    path.write_bytes(code)
    res = run_qemu(path, "flat", timeout=20)
    assert res.exit_status == 1


@needs_binutils
def test_wrap_flat_layout() -> None:
    rom = wrap_flat(b"\x90" * 100, 0x7C00)
    assert len(rom) == 0x10000
    assert rom[0x1000:0x1064] == b"\x90" * 100
    assert rom[0x0FF0:0x0FFC] == bytes.fromhex("0000 007c 6400 007c 007c 0000")
    assert rom[0xFFF0] == 0xEA  # far jump at the reset vector
    high = wrap_flat(b"\x90", 0x20000)
    assert high[0x0FF0:0x0FFC] == bytes.fromhex("0020 0000 0100 0000 0000 0020")


def test_wrap_flat_rejects() -> None:
    with pytest.raises(QemuError, match="empty"):
        wrap_flat(b"")
    with pytest.raises(QemuError, match="does not fit"):
        wrap_flat(bytes(qemu.FLAT_PAYLOAD_MAX + 1))
    with pytest.raises(QemuError, match="cannot be entered"):
        wrap_flat(b"\x90", 0x10008)


def test_pad_rom() -> None:
    assert pad_rom(b"\x01" * 4096) == b"\xff" * 0xF000 + b"\x01" * 4096
    assert pad_rom(bytes(0x20000)) == bytes(0x20000)
    with pytest.raises(QemuError, match="multiple of 4096"):
        pad_rom(bytes(100))


def test_missing_qemu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(qemu, "qemu_binary", lambda: None)
    path = tmp_path / "t.rom"
    path.write_bytes(rom_with_reset_code(b"\xf4"))
    with pytest.raises(QemuError, match="not installed"):
        run_qemu(path, "rom")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(QemuError, match="unknown guest format"):
        run_qemu(tmp_path / "x", "coff")


@needs_qemu
def test_bad_arguments_raise(tmp_path: Path) -> None:
    path = tmp_path / "t.rom"
    path.write_bytes(rom_with_reset_code(b"\xf4"))
    with pytest.raises(QemuError, match="failed"):
        run_qemu(path, "rom", extra=("-no-such-option",))


@needs_qemu
def test_no_qemu_left_running() -> None:
    """After everything above, no qemu-system-i386 started by this process is alive."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        assert not (cmd.endswith(b"qemu-system-i386") and ppid == me), f"pid {entry.name}"
