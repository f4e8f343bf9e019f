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

QEMU = "qemu-system-i386"


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
