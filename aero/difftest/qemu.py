"""Run a guest under ``qemu-system-i386``: the whole-system reference.

The guest talks to QEMU through the same debug ports as to aero: text to ``isa-debugcon``
(port 0xE9) and its exit status to ``isa-debug-exit`` (port 0xF4, status ``(v << 1) | 1``).

How each format is run:

* ROM images: ``-bios``. QEMU needs a BIOS size that is a multiple of 64 KB; a smaller ROM
  (any multiple of 4 KB, as aero accepts) is padded with 0xFF at its start, which keeps
  every address of the ROM where aero maps it (both map a ROM so that it ends at 4 GB).
* Multiboot ELF kernels: ``-kernel`` with QEMU's own firmware (SeaBIOS and its multiboot
  option ROM). The boot state follows the Multiboot specification, as aero's loader does;
  the register values the specification leaves undefined and the memory map differ.
* Flat binaries: wrapped in a 64 KB ROM (``guests/flatboot.s``) that copies the payload to
  its load address and enters it in the state aero's loader creates (real mode, segment
  registers and general registers zero, SP and CS:IP as aero sets them). The payload must
  fit in the ROM: at most 0xEFF0 bytes.

Process hygiene (invariants): QEMU runs in its own session and process group, with stdin
from /dev/null and stdout/stderr redirected to files (no pipe can fill up); it is given a
wall-clock timeout, after which the whole group gets SIGTERM and, if still alive after a
grace period, SIGKILL. The group is also killed if the caller is interrupted, and on Linux
QEMU gets SIGKILL if the calling process dies without cleaning up (PR_SET_PDEATHSIG). No
QEMU process outlives :func:`run_qemu`.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-i386"
FLAT_PAYLOAD_OFFSET = 0x1000
FLAT_PAYLOAD_MAX = 0xFFF0 - FLAT_PAYLOAD_OFFSET
KILL_GRACE = 2.0


class QemuError(RuntimeError):
    """QEMU is missing, refused its arguments, or the guest cannot be run under it."""


@dataclass(frozen=True)
class QemuResult:
    """The outcome of one QEMU run.

    ``exit_status`` is ``(value << 1) | 1`` (low 8 bits, as QEMU's process exit code
    carries it) when the guest wrote the debug-exit port, else None (timeout, shutdown).
    ``elapsed`` is the wall-clock duration of the QEMU process in seconds; ``pid`` its
    process id, which was also its process-group id (the process is gone on return).
    """

    output: bytes
    exit_status: int | None
    returncode: int
    timed_out: bool
    elapsed: float
    stderr: str
    pid: int


def qemu_binary() -> str | None:
    """Path of qemu-system-i386, or None when it is not installed."""
    return shutil.which(QEMU)


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to exit, without reaping it (it stays a zombie,
    so its process-group id cannot be reused before we have killed the group)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(max(0.0, timeout) * 1000))
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies (Linux PR_SET_PDEATHSIG),
    so that a runner killed without a chance to clean up leaves no QEMU behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _end_group(proc: subprocess.Popen[bytes], exited: bool) -> None:
    """SIGTERM the group of a still-running QEMU, SIGKILL whatever is left, then reap it.

    The leader is reaped only after the group has been killed: until then it is at least a
    zombie, which keeps the group id ours.
    """
    if not exited:
        _signal_group(proc.pid, signal.SIGTERM)
        _wait_exit(proc.pid, KILL_GRACE)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def wrap_flat(payload: bytes, load_addr: int = 0x7C00) -> bytes:
    """A 64 KB ROM that copies ``payload`` to ``load_addr`` and enters it as aero's loader does."""
    from aero.guests import build

    if not payload:
        raise QemuError("flat binary is empty")
    if len(payload) > FLAT_PAYLOAD_MAX:
        raise QemuError(f"flat binary of {len(payload)} bytes does not fit the QEMU boot ROM "
                        f"(at most {FLAT_PAYLOAD_MAX} bytes)")
    if load_addr < 0x10000:
        seg, off, cs, ip, sp = 0, load_addr, 0, load_addr, load_addr
    elif load_addr % 16 == 0 and load_addr + len(payload) <= 0xA0000:
        seg, off, cs, ip, sp = load_addr >> 4, 0, load_addr >> 4, 0, 0
    else:
        raise QemuError(f"load address {load_addr:#x} cannot be entered in real mode")
    stub = bytearray(build("flatboot").path.read_bytes())
    params = (seg, off, len(payload), sp, ip, cs)
    for i, v in enumerate(params):
        stub[0x0FF0 + 2 * i: 0x0FF2 + 2 * i] = v.to_bytes(2, "little")
    stub[FLAT_PAYLOAD_OFFSET:FLAT_PAYLOAD_OFFSET + len(payload)] = payload
    return bytes(stub)


def pad_rom(image: bytes) -> bytes:
    """Pad a ROM at its start to a multiple of 64 KB (QEMU's -bios requirement)."""
    if not image or len(image) % 4096:
        raise QemuError(f"ROM size must be a multiple of 4096, not {len(image)}")
    pad = -len(image) % 0x10000
    return b"\xff" * pad + image


def command(firmware: Path | None, kernel: Path | None, debugcon: Path, *,
            ram_mb: int = 32, icount: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """The QEMU command line (headless, no default devices, the two debug devices)."""
    binary = qemu_binary()
    if binary is None:
        raise QemuError(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    cmd = [binary, "-machine", "pc", "-accel", "tcg", "-m", str(ram_mb),
           "-nodefaults", "-display", "none", "-no-reboot",
           "-monitor", "none", "-serial", "none", "-parallel", "none",
           "-debugcon", f"file:{debugcon}",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    if firmware is not None:
        cmd += ["-bios", str(firmware)]
    if kernel is not None:
        cmd += ["-kernel", str(kernel)]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd + list(extra)


def run_qemu(path: str | os.PathLike[str], fmt: str, *, load_addr: int = 0x7C00,
             timeout: float = 20.0, ram_mb: int = 32, icount: bool = False,
             extra: tuple[str, ...] = ()) -> QemuResult:
    """Run guest image ``path`` of format ``fmt`` ("flat", "rom" or "multiboot") in QEMU.

    Returns the debug-console output and the exit status; raises QemuError when QEMU is
    missing or rejects the machine. A guest that neither exits nor stops within
    ``timeout`` seconds is killed and reported with ``timed_out=True``.
    """
    if fmt not in ("flat", "rom", "multiboot"):
        raise QemuError(f"unknown guest format {fmt!r}")
    data = Path(path).read_bytes()
    with tempfile.TemporaryDirectory(prefix="aero-qemu-") as tmp:
        t = Path(tmp)
        firmware = kernel = None
        if fmt == "rom":
            firmware = t / "guest.rom"
            firmware.write_bytes(pad_rom(data))
        elif fmt == "flat":
            firmware = t / "flat.rom"
            firmware.write_bytes(wrap_flat(data, load_addr))
        else:
            kernel = Path(path).resolve()
        debugcon = t / "debugcon.out"
        cmd = command(firmware, kernel, debugcon, ram_mb=ram_mb, icount=icount, extra=extra)
        with open(t / "stdout", "wb") as out, open(t / "stderr", "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, cwd=t,
                                    preexec_fn=_die_with_parent if sys.platform == "linux"
                                    else None)
            exited = False
            try:
                exited = _wait_exit(proc.pid, timeout)
            finally:
                elapsed = time.perf_counter() - start
                _end_group(proc, exited)
            timed_out = not exited
        stderr = (t / "stderr").read_text(errors="replace")
        output = debugcon.read_bytes() if debugcon.exists() else b""
    rc = proc.returncode
    if timed_out:
        return QemuResult(output, None, rc, True, elapsed, stderr, proc.pid)
    errors = [ln for ln in stderr.splitlines() if ln.strip() and "warning" not in ln.lower()]
    if rc != 0 and errors:
        raise QemuError(f"{QEMU} failed (exit code {rc}): {errors[0]}")
    status = rc if rc > 0 and rc & 1 else None
    return QemuResult(output, status, rc, False, elapsed, stderr, proc.pid)
