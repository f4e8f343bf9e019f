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
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aero.procgroup import KILL_GRACE, stop_group, wait_exit

__all__ = ["FLAT_PAYLOAD_MAX", "FLAT_PAYLOAD_OFFSET", "KILL_GRACE", "QEMU", "QemuError",
           "QemuResult", "QemuSerialResult", "SERIAL_POLL", "SerialStep", "command", "pad_rom",
           "qemu_binary", "run_qemu", "run_qemu_serial", "wrap_flat"]

QEMU = "qemu-system-i386"
FLAT_PAYLOAD_OFFSET = 0x1000
FLAT_PAYLOAD_MAX = 0xFFF0 - FLAT_PAYLOAD_OFFSET


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


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies (Linux PR_SET_PDEATHSIG),
    so that a runner killed without a chance to clean up leaves no QEMU behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


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
    with tempfile.TemporaryDirectory(prefix="aero-qemu-") as tmp:
        t = Path(tmp)
        firmware, kernel = _stage_guest(t, path, fmt, load_addr)
        debugcon = t / "debugcon.out"
        cmd = command(firmware, kernel, debugcon, ram_mb=ram_mb, icount=icount, extra=extra)
        with open(t / "stdout", "wb") as out, open(t / "stderr", "wb") as err:
            start = time.perf_counter()
            proc = _spawn(cmd, t, out, err)
            exited = False
            try:
                exited = wait_exit(proc.pid, timeout)
            finally:
                elapsed = time.perf_counter() - start
                stop_group(proc, exited)
            timed_out = not exited
        stderr = (t / "stderr").read_text(errors="replace")
        output = debugcon.read_bytes() if debugcon.exists() else b""
    rc = proc.returncode
    status = None if timed_out else _exit_status(rc, stderr)
    return QemuResult(output, status, rc, timed_out, elapsed, stderr, proc.pid)


def _stage_guest(t: Path, path: str | os.PathLike[str], fmt: str,
                 load_addr: int) -> tuple[Path | None, Path | None]:
    """(firmware, kernel) for QEMU: a ROM padded, a flat binary wrapped in a boot ROM (both
    written into ``t``), or the Multiboot kernel itself."""
    if fmt == "multiboot":
        return None, Path(path).resolve()
    data = Path(path).read_bytes()
    if fmt == "rom":
        firmware = t / "guest.rom"
        firmware.write_bytes(pad_rom(data))
    else:
        firmware = t / "flat.rom"
        firmware.write_bytes(wrap_flat(data, load_addr))
    return firmware, None


def _spawn(cmd: list[str], cwd: Path, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
    """QEMU in its own session and process group, stdin closed, output to files, killed
    with its parent (Linux)."""
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            start_new_session=True, cwd=cwd,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _exit_status(rc: int, stderr: str) -> int | None:
    """The debug-exit status of a QEMU that exited, or None; QemuError when QEMU itself
    failed (a nonzero exit with an error message: warnings and info lines do not count)."""
    errors = [ln for ln in stderr.splitlines() if ln.strip()
              and "warning" not in ln.lower() and " info: " not in ln]
    if rc != 0 and errors:
        raise QemuError(f"{QEMU} failed (exit code {rc}): {errors[0]}")
    return rc if rc > 0 and rc & 1 else None


# ---- Interactive runs: input on the first serial port (and the keyboard) ----
#
# run_qemu_serial() connects COM1 to a Unix socket that the runner serves itself: QEMU
# waits for the connection before it starts the machine (server=on,wait=on), so no output is
# lost, and every byte the guest transmits is read as it comes (the socket never fills up).
# Input follows a script of steps: each waits until COM1 output, searched after the previous
# step's match, shows a text, then sends bytes to COM1 and/or presses keys through QMP
# (send-key). The process discipline is run_qemu's: own session and process group,
# stdin /dev/null, stdout/stderr to files, a wall-clock timeout, SIGTERM then SIGKILL to the
# group, PR_SET_PDEATHSIG, and the group killed before the leader is reaped.

SERIAL_POLL = 0.05  # seconds between checks for output, a match or the end of QEMU


@dataclass(frozen=True)
class SerialStep:
    """One step of serial input: wait for ``wait`` in COM1 output (after the previous
    step's match; empty: do not wait), then ``delay`` more wall-clock seconds (output is
    read meanwhile), then send ``send`` to COM1, then press and release ``keys`` (QEMU key
    names, "qcodes": ``a``, ``1``, ``ret``, ``spc``, ``minus``) in order."""

    wait: bytes = b""
    send: bytes = b""
    keys: tuple[str, ...] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class QemuSerialResult:
    """The outcome of :func:`run_qemu_serial`: ``serial`` is everything the guest sent on
    COM1, ``output`` the debug console; ``steps_done`` how many steps ran (fewer than given
    when a wait was never satisfied). The other fields are those of :class:`QemuResult`."""

    serial: bytes
    output: bytes
    exit_status: int | None
    returncode: int
    timed_out: bool
    elapsed: float
    stderr: str
    pid: int
    steps_done: int


def _connect_unix(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> socket.socket:
    """Connect to QEMU's listening socket at ``path`` once it exists (QemuError if QEMU
    exits first, TimeoutError at the deadline)."""
    while True:
        if path.exists():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
        if wait_exit(proc.pid, 0):
            raise QemuError(f"{QEMU} exited before opening {path.name}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{QEMU} did not open {path.name}")
        time.sleep(0.01)


class _Qmp:
    """A minimal QMP client: capabilities negotiation and synchronous commands."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""
        self._reply()  # the greeting
        self.execute("qmp_capabilities")

    def _line(self) -> dict[str, object]:
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
            data = self.sock.recv(4096)
            if not data:
                raise QemuError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise QemuError(f"unexpected QMP message {line!r}")
        return msg

    def _reply(self) -> dict[str, object]:
        while True:
            msg = self._line()
            if "event" not in msg:
                return msg

    def execute(self, name: str, **arguments: object) -> None:
        req: dict[str, object] = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        reply = self._reply()
        if "error" in reply:
            raise QemuError(f"QMP {name} failed: {reply['error']}")


def run_qemu_serial(path: str | os.PathLike[str], fmt: str, steps: Sequence[SerialStep], *,
                    load_addr: int = 0x7C00, timeout: float = 30.0, ram_mb: int = 32,
                    icount: bool = False, extra: tuple[str, ...] = ()) -> QemuSerialResult:
    """Run guest image ``path`` with COM1 connected to the runner and feed it ``steps``.

    The run ends when the guest exits (debug-exit port) or stops, or after ``timeout``
    wall-clock seconds (``timed_out=True``). Raises QemuError when QEMU is missing or
    rejects the machine.
    """
    if fmt not in ("flat", "rom", "multiboot"):
        raise QemuError(f"unknown guest format {fmt!r}")
    need_qmp = any(s.keys for s in steps)
    with tempfile.TemporaryDirectory(prefix="aero-qemu-") as tmp:
        t = Path(tmp)
        firmware, kernel = _stage_guest(t, path, fmt, load_addr)
        debugcon = t / "debugcon.out"
        serial_path, qmp_path = t / "serial.sock", t / "qmp.sock"
        if len(str(serial_path)) > 100:  # sun_path holds 108 bytes
            raise QemuError(f"temporary directory {t} is too long for a Unix socket path "
                            f"(set TMPDIR to a shorter directory)")
        io = ["-chardev", f"socket,id=aero_com1,path={serial_path},server=on,wait=on"]
        if need_qmp:
            io += ["-qmp", f"unix:{qmp_path},server=on,wait=off"]
        cmd = command(firmware, kernel, debugcon, ram_mb=ram_mb, icount=icount,
                      extra=(*io, *extra))
        # Each -serial takes the next port, "none" included: COM1 replaces command()'s.
        at = cmd.index("-serial")
        cmd[at + 1] = "chardev:aero_com1"
        serial = bytearray()
        done = 0
        with open(t / "stdout", "wb") as out, open(t / "stderr", "wb") as err:
            start = time.perf_counter()
            deadline = time.monotonic() + timeout
            proc = _spawn(cmd, t, out, err)
            exited = False
            socks: list[socket.socket] = []
            try:
                try:
                    com1 = _connect_unix(serial_path, proc, deadline)
                    socks.append(com1)
                    qmp = None
                    if need_qmp:
                        qsock = _connect_unix(qmp_path, proc, deadline)
                        socks.append(qsock)
                        qmp = _Qmp(qsock, deadline)
                    done, exited = _serial_session(proc, com1, qmp, steps, serial, deadline)
                except (QemuError, TimeoutError, OSError):
                    exited = wait_exit(proc.pid, 0)
                    if not exited and time.monotonic() < deadline:
                        raise
            finally:
                for s in socks:
                    s.close()
                elapsed = time.perf_counter() - start
                stop_group(proc, exited)
            timed_out = not exited
        stderr = (t / "stderr").read_text(errors="replace")
        output = debugcon.read_bytes() if debugcon.exists() else b""
    rc = proc.returncode
    status = None if timed_out else _exit_status(rc, stderr)
    return QemuSerialResult(bytes(serial), output, status, rc, timed_out, elapsed, stderr,
                            proc.pid, done)


def _serial_session(proc: subprocess.Popen[bytes], com1: socket.socket, qmp: _Qmp | None,
                    steps: Sequence[SerialStep], serial: bytearray,
                    deadline: float) -> tuple[int, bool]:
    """Read COM1 into ``serial`` and run ``steps`` until QEMU exits or the deadline.
    Returns (steps run, whether QEMU exited)."""
    done = 0
    pos = 0
    eof = False
    ready_at: float | None = None  # when the current step's wait was met: it runs after delay
    poller = select.poll()
    poller.register(com1, select.POLLIN)
    while True:
        while done < len(steps):
            step = steps[done]
            if ready_at is None:
                if step.wait:
                    at = serial.find(step.wait, pos)
                    if at < 0:
                        break
                    pos = at + len(step.wait)
                ready_at = time.monotonic() + step.delay
            if time.monotonic() < ready_at:
                break
            ready_at = None
            if step.send:
                com1.settimeout(max(0.01, deadline - time.monotonic()))
                com1.sendall(step.send)
            for key in step.keys:
                if qmp is None:
                    raise QemuError("key steps need the QMP connection")
                qmp.execute("send-key", keys=[{"type": "qcode", "data": key}])
            done += 1
        now = time.monotonic()
        if now >= deadline:
            return done, wait_exit(proc.pid, 0)
        if eof:
            # COM1 is closed only when QEMU goes away: wait for the process itself.
            return done, wait_exit(proc.pid, deadline - now)
        if poller.poll(min(SERIAL_POLL, deadline - now) * 1000):
            com1.settimeout(0)
            try:
                chunk = com1.recv(65536)
            except BlockingIOError:
                continue
            if chunk:
                serial += chunk
                continue
            eof = True
        elif wait_exit(proc.pid, 0):
            # Exited: collect what is still buffered in the socket.
            com1.settimeout(0.2)
            try:
                while chunk := com1.recv(65536):
                    serial += chunk
            except OSError:
                pass
            return done, True
