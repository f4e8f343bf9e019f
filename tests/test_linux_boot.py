"""Debian's i386 kernel with the busybox initramfs: the same files boot in QEMU (a check of
the initramfs and of /init against a real kernel) and in aero. Skipped only when the
packages cannot be fetched (no apt or no i386 package lists) or, for the QEMU half, when
QEMU is not installed."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from procenv import assert_gone

from aero import linuxguest as lg
from aero.events import Channel, Kind
from aero.launch import resolve, start_machine
from aero.machine import DEFAULT_FEATURES, Machine, MachineConfig, StopReason

QEMU = "qemu-system-i386"
HAS_FPU = "fpu" in DEFAULT_FEATURES
BOOT_TICKS = 6_000_000_000  # the boot to the shell takes about 2.8e9 (2.3e9 decompressing)


@pytest.fixture(scope="module")
def guest() -> lg.LinuxGuest:
    try:
        return lg.fetch()
    except lg.AptUnavailable as exc:
        pytest.skip(str(exc))


def run_qemu_until(guest: lg.LinuxGuest, marker: bytes, timeout: float) -> tuple[bytes, int]:
    """Boot the guest in QEMU (serial on stdio) until ``marker`` appears on COM1 or the time
    is up; QEMU runs in its own process group, which is killed (SIGTERM, then SIGKILL)."""
    cmd = [QEMU, "-M", "pc", "-cpu", "pentium2,-apic", "-m", str(lg.RAM_SIZE >> 20),
           "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
           "-append", guest.cmdline, "-nographic", "-no-reboot", "-nodefaults",
           "-serial", "stdio", "-monitor", "none"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while marker not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(3)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return out, proc.pid


@pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed")
def test_initramfs_boots_in_qemu(guest: lg.LinuxGuest) -> None:
    out, pid = run_qemu_until(guest, lg.READY_MARKER, 120.0)
    assert b"Linux version 6.1" in out
    assert b"Run /init as init process" in out
    assert lg.READY_MARKER in out, out[-2000:].decode(errors="replace")
    assert_gone(pid)


def test_fetch_is_cached_and_deterministic(guest: lg.LinuxGuest, tmp_path: Path) -> None:
    again = lg.fetch()
    assert (again.kernel, again.initrd) == (guest.kernel, guest.initrd)
    busybox = (guest.kernel.parent / "busybox").read_bytes()
    assert lg.build_initramfs(busybox) == guest.initrd.read_bytes()
    assert guest.kernel.read_bytes()[0x202:0x206] == b"HdrS"
    assert not [p for p in guest.kernel.parent.parent.iterdir() if p.name.startswith(".")]


def com1_until(m: Machine, marker: bytes, max_ticks: int, slice_ticks: int = 50_000_000) -> bytes:
    """Run ``m`` until ``marker`` shows on COM1 (or the tick limit, or a stop); COM1 output."""
    out = b""
    while marker not in out and m.ticks < max_ticks:
        stop = m.run(min(max_ticks, m.ticks + slice_ticks))
        ev = m.take_events()
        com1 = ev[(ev["kind"] == Kind.OUTPUT) & (ev["a"] == Channel.COM1)]
        out += bytes(int(b) & 0xFF for b in com1["b"])
        if stop not in (StopReason.TICKS, StopReason.EVENTS, StopReason.OUTPUT):
            break
    return out


@pytest.fixture(scope="module")
def booted(guest: lg.LinuxGuest) -> tuple[Machine, bytes]:
    r = resolve("linux")
    m = start_machine(MachineConfig(ram_size=r.ram_size or lg.RAM_SIZE, cmdline=r.cmdline or ""),
                      r.ref, r.data, r.images)
    marker = lg.READY_MARKER if HAS_FPU else b"no FPU found"
    return m, com1_until(m, marker, BOOT_TICKS)


@pytest.mark.skipif(not HAS_FPU, reason="the core has no x87 FPU: Linux stops at FPU init")
@pytest.mark.slow
def test_boots_to_init_and_runs_a_shell_command(booted: tuple[Machine, bytes]) -> None:
    m, out = booted
    text = out.decode(errors="replace")
    assert "Linux version 6.1" in text
    assert "Run /init as init process" in text
    assert lg.READY_MARKER.decode() in text, text[-3000:]
    for bad in ("Kernel panic", "Oops", "BUG:", "unchecked MSR access", "Marking TSC unstable"):
        assert bad not in text, bad
    # The shell on ttyS0 answers: arithmetic the guest does itself.
    rest = com1_until(m, b"# ", m.ticks + 1_000_000_000)
    for byte in b"echo $((6*7))x\n":
        m.inject(Kind.SERIAL_RX, 0, byte)
        m.run(m.ticks + 200_000)
    reply = com1_until(m, b"42x", m.ticks + 1_000_000_000)
    assert b"42x" in rest + reply


@pytest.mark.skipif(HAS_FPU, reason="the core has an x87 FPU")
def test_without_fpu_boot_stops_at_fpu_init(booted: tuple[Machine, bytes]) -> None:
    _, out = booted
    text = out.decode(errors="replace")
    assert "Kernel command line: " + lg.DEFAULT_CMDLINE in text
    assert "BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable" in text
    assert "unchecked MSR access" not in text
    assert "x86/fpu: Giving up, no FPU found and no math emulation present" in text
