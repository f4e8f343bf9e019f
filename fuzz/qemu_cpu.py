"""QEMU as an instruction-level difftest backend, driven through its gdbstub.

One ``qemu-system-i386`` process (TCG, stopped with ``-S``) serves many scenarios. Its RAM
is a shared file in /dev/shm (``memory-backend-file,share=on``) that this process maps:
the scenario image is written and the memory after each instruction read with numpy,
without a packet per byte. Everything else goes through the gdbstub (``-gdb``): registers
(``G``, including CR0/CR3/CR4), code bytes (``M``, which makes QEMU drop translated code
for them), single steps (``s``); the hidden state the gdbstub does not show (GDTR, IDTR,
descriptor caches) through QMP's ``human-monitor-command info registers``.

Machine layout (invariants):

* Physical 0 .. RAM_SIZE is the scenario's memory, byte for byte, except the
  page-directory entry 1 (PD_ADDR + 4 .. + 8) in ``pm32-paging``, which maps this
  backend's own area; it is shown to the comparison with the scenario's value.
* At :data:`AREA` (4 MB, identity-mapped by that page-directory entry) lie the IDT (256
  interrupt gates, DPL 3, selector 08h, gate ``v`` pointing at ``LANDING + 16 v``) or in
  real mode the IVT (vector ``v`` -> ``LANDING_SEG:16 v``), a TSS (ESP0 = STACK_TOP,
  SS0 = 10h; loaded into TR once at start), and a ring-0 stack. The scenario's IDTR limit
  is kept, its base replaced by :data:`AREA`; IDTR is reported as the scenario's.
* An exception is delivered by QEMU through that table; a single step ends at the
  landing address, which gives the vector; the pushed frame gives the error code and
  the state before delivery (EIP, CS, EFLAGS, ESP, SS), which is what is reported
  (aero stops before delivering). Frame bytes pushed onto the scenario's own stack
  (CPL 0, real mode) and the accessed/dirty bits that push set are put back.
* The i440FX PAM registers make C0000h-FFFFFh RAM and SMRAM's D_OPEN bit makes
  A0000h-BFFFFh RAM, so the first megabyte is plain memory as in aero.

Not comparable (the example is discarded): SIDT/STR/LTR/LLDT (they would see or change
this backend's tables), memory operands outside RAM (QEMU has RAM there, aero not), a
ring-0 stack frame that could not be pushed, a QEMU that died or stopped answering (it is
restarted for the next example).
"""

from __future__ import annotations

import atexit
import json
import mmap
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .difftest import (
    CODE_SEL,
    CR0_PM,
    CR0_REAL,
    DATA_SEL,
    ERROR_CODE_VECTORS,
    EXC_PF,
    GPRS,
    PAGE,
    PD_ADDR,
    PTE_D,
    PTE_P,
    PTE_W,
    RAM_SIZE,
    SEGS,
    Mismatch,
    NotComparable,
    PairResult,
    Scenario,
    StepRecord,
    StepResult,
    decode,
    is_pm,
)
from .gdbremote import GdbClient, GdbError

__all__ = ["AREA", "KNOWN_QEMU_DIVERGENCES", "QemuCPU", "QemuMachine", "QemuUnavailable",
           "check_qemu", "explain", "qemu_references"]

QEMU = "qemu-system-i386"
MIN_VERSION = (6, 0)
QEMU_RAM_MB = 8
AREA = 0x400000
IDT_ADDR = AREA
TSS_ADDR = AREA + 0x800
TEMP_GDT = AREA + 0x1000
STACK_TOP = AREA + 0x3000
OUR_PT = AREA + 0x4000
LANDING = AREA + 0x5000
LANDING_SEG = 0x5000
AREA_END = AREA + 0x6000
TSS_SEL = 0x18  # this backend's TSS in its start-up GDT, loaded into TR once
STUB_ADDR = 0x500
STUB_DATA = 0x5F0
STEP_TIMEOUT = 5.0
START_TIMEOUT = 10.0
KILL_GRACE = 2.0

# The gdbstub's 'g' packet (qemu-system-i386 7.2, read back): 8 GPRs, EIP, EFLAGS,
# 6 selectors, FS/GS/kernel-GS base, CR0, CR2, CR3, CR4, CR8, EFER, 8 x87 registers of 10
# bytes, 8 FPU control registers, 8 XMM of 16 bytes, MXCSR.
_SIZES = [4] * 25 + [10] * 8 + [4] * 8 + [16] * 8 + [4]
_OFFS = [sum(_SIZES[:i]) for i in range(len(_SIZES))]
_IDX = {n: i for i, n in enumerate(GPRS + ("eip", "eflags", "cs", "ss", "ds", "es", "fs",
                                            "gs", "fs_base", "gs_base", "k_gs_base"))}
_IDX.update(cr0=19, cr2=20, cr3=21, cr4=22, cr8=23, efer=24)
REG_BYTES = sum(_SIZES)


class QemuUnavailable(RuntimeError):
    """QEMU is missing, too old, or could not be started."""


def check_qemu() -> str:
    """Path of a usable qemu-system-i386 (QemuUnavailable with a one-line reason)."""
    path = shutil.which(QEMU)
    if path is None:
        raise QemuUnavailable(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuUnavailable(f"{QEMU} --version failed: {exc}") from None
    m = re.search(r"version (\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_VERSION:
        raise QemuUnavailable(f"{QEMU} is too old ({out.strip()[:60] or 'no version'}); "
                              f"need {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")
    return path


# ---- machine code of the set-up stubs ---------------------------------------------------

def _pci_write8(reg: int, value: int) -> bytes:
    """Real-mode code: write ``value`` to the i440FX's configuration register ``reg``."""
    addr = 0x80000000 | (reg & 0xFC)
    return (b"\xba\xf8\x0c" + b"\x66\xb8" + addr.to_bytes(4, "little") + b"\x66\xef"
            + b"\xba" + (0xCFC + (reg & 3)).to_bytes(2, "little") + bytes([0xB0, value, 0xEE]))


# PAM0-6 (59h-5Fh): read and write to RAM; SMRAM (72h): D_OPEN.
_CHIPSET = b"".join(_pci_write8(r, 0x33) for r in range(0x59, 0x60)) + _pci_write8(0x72, 0x4A)
# lgdt [STUB_DATA]; lidt [STUB_DATA + 8] with 32-bit operand size (32-bit bases).
_TABLES = (b"\x66\x0f\x01\x16" + STUB_DATA.to_bytes(2, "little")
           + b"\x66\x0f\x01\x1e" + (STUB_DATA + 8).to_bytes(2, "little"))
# 32-bit: mov ax, 18h; ltr ax
_LTR = b"\x66\xb8\x18\x00\x0f\x00\xd8"
def _mov_cr(cr: int, value: int, real: bool) -> bytes:
    """mov eax, value; mov crN, eax (real-mode or 32-bit code)."""
    return ((b"\x66" if real else b"") + b"\xb8" + value.to_bytes(4, "little")
            + bytes([0x0F, 0x22, 0xC0 | cr << 3]))


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return ((limit & 0xFFFF) | (base & 0xFFFF) << 16 | ((base >> 16) & 0xFF) << 32
            | access << 40 | ((limit >> 16) & 0xF) << 48 | flags << 52
            | ((base >> 24) & 0xFF) << 56).to_bytes(8, "little")


def _idt() -> bytes:
    out = bytearray()
    for v in range(256):
        off = LANDING + 16 * v
        out += ((off & 0xFFFF) | CODE_SEL << 16 | 0xEE00 << 32
                | (off >> 16) << 48).to_bytes(8, "little")
    return bytes(out)


def _ivt() -> bytes:
    return b"".join(((16 * v) | LANDING_SEG << 16).to_bytes(4, "little") for v in range(256))


_IDT_BYTES = _idt()
_IVT_BYTES = _ivt()


# ---- the QEMU process ----------------------------------------------------------------------

_LIVE: weakref.WeakSet[QemuMachine] = weakref.WeakSet()


@atexit.register
def _end_all() -> None:
    for m in list(_LIVE):
        m.close()


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class QemuMachine:
    """One stopped qemu-system-i386 with its gdbstub, QMP socket and shared RAM.

    Invariant: while open, ``ram`` maps QEMU's whole RAM; :meth:`close` ends the process
    group (SIGTERM, then SIGKILL after :data:`KILL_GRACE`), reaps it and removes its files.
    """

    def __init__(self) -> None:
        binary = check_qemu()
        self.dir = Path(tempfile.mkdtemp(prefix="aero-qemu-cpu-",
                                         dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.proc: subprocess.Popen[bytes] | None = None
        self.gdb: GdbClient | None = None
        self.qmp: socket.socket | None = None
        self._qbuf = b""
        self.ram_map: mmap.mmap | None = None
        self._blob = None
        try:
            self._start(binary)
        except BaseException:
            self.close()
            raise
        _LIVE.add(self)

    def _start(self, binary: str) -> None:
        size = QEMU_RAM_MB << 20
        ram_path = self.dir / "ram"
        with open(ram_path, "wb") as f:
            f.truncate(size)
        with socket.socket() as s:  # a free port for the gdbstub
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        qmp_path = self.dir / "qmp.sock"
        cmd = [binary, "-machine", "pc,memory-backend=ram0", "-accel", "tcg",
               "-m", f"{QEMU_RAM_MB}M", "-object",
               f"memory-backend-file,id=ram0,size={QEMU_RAM_MB}M,mem-path={ram_path},share=on",
               "-nodefaults", "-display", "none", "-no-reboot", "-no-shutdown", "-S",
               "-gdb", f"tcp:127.0.0.1:{port}", "-qmp", f"unix:{qmp_path},server=on,wait=off",
               "-monitor", "none", "-serial", "none", "-parallel", "none"]
        self.stderr = open(self.dir / "stderr", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr, start_new_session=True,
                                     preexec_fn=_die_with_parent
                                     if sys.platform == "linux" else None)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.gdb = GdbClient("127.0.0.1", port, timeout=STEP_TIMEOUT)
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise QemuUnavailable(f"{QEMU} exited at start: "
                                          f"{self._stderr_line()}") from None
                if time.monotonic() > deadline:
                    raise QemuUnavailable(f"{QEMU} did not open its gdbstub") from None
                time.sleep(0.02)
        self.qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.qmp.settimeout(STEP_TIMEOUT)
        self.qmp.connect(str(qmp_path))
        self._qmp_reply()  # greeting
        self.qmp_command("qmp_capabilities")
        fd = os.open(ram_path, os.O_RDWR)
        try:
            self.ram_map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.ram = np.frombuffer(self.ram_map, dtype=np.uint8)
        self.template = bytearray(self.gdb.read_registers())
        if len(self.template) != REG_BYTES:
            raise QemuUnavailable(f"unexpected gdbstub register layout ({len(self.template)} "
                                  f"bytes, expected {REG_BYTES})")
        self._init_machine()

    def _stderr_line(self) -> str:
        try:
            text = (self.dir / "stderr").read_text(errors="replace").strip()
        except OSError:
            return "no message"
        return text.splitlines()[-1] if text else "no message"

    # ---- QMP -------------------------------------------------------------------------------
    def _qmp_reply(self) -> dict:
        assert self.qmp is not None
        while True:
            while b"\n" not in self._qbuf:
                try:
                    data = self.qmp.recv(65536)
                except (TimeoutError, OSError) as exc:
                    raise GdbError(f"QMP: {exc}") from None
                if not data:
                    raise GdbError("QMP connection closed")
                self._qbuf += data
            line, self._qbuf = self._qbuf.split(b"\n", 1)
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def qmp_command(self, name: str, **arguments: object) -> object:
        assert self.qmp is not None
        req: dict[str, object] = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.qmp.sendall(json.dumps(req).encode() + b"\n")
        reply = self._qmp_reply()
        if "error" in reply:
            raise GdbError(f"QMP {name}: {reply['error']}")
        return reply.get("return")

    def info_registers(self) -> dict[str, object]:
        """The monitor's ``info registers``: CRs, GDTR/IDTR and descriptor caches."""
        text = str(self.qmp_command("human-monitor-command", **{"command-line":
                                                                "info registers"}))
        out: dict[str, object] = {}
        for name, sel, base, limit, flags in re.findall(
                r"^(ES|CS|SS|DS|FS|GS|LDT|TR) ?=([0-9a-f]{4}) ([0-9a-f]{8}) ([0-9a-f]{8}) "
                r"([0-9a-f]{8})", text, re.M):
            out[name.lower()] = (int(sel, 16), int(base, 16), int(limit, 16), int(flags, 16))
        for name, base, limit in re.findall(r"^(GDT|IDT)=\s+([0-9a-f]{8}) ([0-9a-f]{8})",
                                            text, re.M):
            out[name.lower()] = (int(base, 16), int(limit, 16))
        for name, val in re.findall(r"\b(CR[0234])=([0-9a-f]{8})", text):
            out[name.lower()] = int(val, 16)
        return out

    # ---- registers -------------------------------------------------------------------------
    def read_regs(self) -> dict[str, int]:
        assert self.gdb is not None
        blob = self.gdb.read_registers()
        self._blob: bytes | None = blob
        return {k: int.from_bytes(blob[_OFFS[i]:_OFFS[i] + 4], "little")
                for k, i in _IDX.items()}

    def write_regs(self, values: dict[str, int]) -> None:
        """Write registers: ``values`` over the current register file (so that nothing
        else changes; the gdbstub loads the selectors that differ, through the descriptor
        tables in protected mode, before it writes the rest). The register file is the
        one last read or written, unless a step came in between."""
        assert self.gdb is not None
        blob = bytearray(self._blob if self._blob is not None else self.gdb.read_registers())
        for k, v in values.items():
            i = _IDX[k]
            blob[_OFFS[i]:_OFFS[i] + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")
        self.gdb.write_registers(bytes(blob))
        # A selector that could not be loaded keeps its old value: read back once more.
        self._blob = None if any(k in SEGS for k in values) else bytes(blob)

    def step(self) -> None:
        assert self.gdb is not None
        self._blob = None
        reply = self.gdb.step()
        if not reply.startswith(("T", "S")):
            raise GdbError(f"unexpected stop reply {reply[:20]!r}")

    def step_over(self, addr: int, eflags: int) -> None:
        """Run to linear ``addr`` (a breakpoint) with interrupts masked (EFLAGS.IF
        cleared for the run and given back after it: nothing else but the instruction
        executes)."""
        assert self.gdb is not None
        if eflags & 0x200:
            self.write_regs({"eflags": eflags & ~0x200})
        self.gdb.ok(f"Z0,{addr:x},1")
        try:
            reply = self.gdb.command("c")
        finally:
            self.gdb.ok(f"z0,{addr:x},1")
        self._blob = None
        if not reply.startswith(("T", "S")):
            raise GdbError(f"unexpected stop reply {reply[:20]!r}")
        if eflags & 0x200:
            regs = self.read_regs()
            self.write_regs({"eflags": regs["eflags"] | 0x200})

    def _init_machine(self) -> None:
        """Once per process: chipset (RAM below 1 MB), TR (our TSS), our tables."""
        assert self.gdb is not None
        ram = self.ram
        ram[AREA:AREA_END] = 0
        gdt = (bytes(8) + _descriptor(0, 0xFFFFF, 0x9B, 0xC) + _descriptor(0, 0xFFFFF, 0x93, 0xC)
               + _descriptor(TSS_ADDR, 0x67, 0x89, 0))
        ram[TEMP_GDT:TEMP_GDT + len(gdt)] = np.frombuffer(gdt, dtype=np.uint8)
        tss = bytearray(0x68)
        tss[4:8] = STACK_TOP.to_bytes(4, "little")
        tss[8:10] = DATA_SEL.to_bytes(2, "little")
        tss[0x66:0x68] = (0x68).to_bytes(2, "little")
        ram[TSS_ADDR:TSS_ADDR + 0x68] = np.frombuffer(bytes(tss), dtype=np.uint8)
        # The page table of this area (page-directory entry 1 in pm32-paging).
        for i in range(AREA_END // PAGE - AREA // PAGE):
            e = (AREA + i * PAGE) | PTE_P | PTE_W
            ram[OUR_PT + 4 * i:OUR_PT + 4 * i + 4] = np.frombuffer(e.to_bytes(4, "little"),
                                                                 dtype=np.uint8)
        self._set_tables(TEMP_GDT, len(gdt) - 1, IDT_ADDR, 0x3FF)
        self.run_real(_CHIPSET + _TABLES)
        self.gdb.write_memory(STUB_ADDR, _LTR)
        self.write_regs({**_dummy_selectors(True), "eip": STUB_ADDR, "eflags": 2,
                         "cr0": CR0_PM})
        self.write_regs({"cs": CODE_SEL, "ss": DATA_SEL, "ds": DATA_SEL, "es": DATA_SEL,
                         "fs": DATA_SEL, "gs": DATA_SEL, "eip": STUB_ADDR, "eflags": 2})
        self.step()
        self.step()
        info = self.info_registers()
        tr = info.get("tr")
        if not (isinstance(tr, tuple) and tr[1] == TSS_ADDR):
            raise QemuUnavailable(f"could not load TR in QEMU (TR {tr})")
        self.tables: tuple[int, int, int] | None = None  # GDTR and IDT limit loaded last

    def _set_tables(self, gdt_base: int, gdt_limit: int, idt_base: int, idt_limit: int) -> None:
        data = (gdt_limit.to_bytes(2, "little") + gdt_base.to_bytes(4, "little") + bytes(2)
                + idt_limit.to_bytes(2, "little") + idt_base.to_bytes(4, "little"))
        self.ram[STUB_DATA:STUB_DATA + 14] = np.frombuffer(data, dtype=np.uint8)

    def run_real(self, code: bytes) -> None:
        """Execute real-mode ``code`` at STUB_ADDR (CS = STUB_ADDR >> 4, other segments 0),
        one instruction at a time."""
        assert self.gdb is not None
        # Real mode without paging (selectors unchanged, so none is reloaded yet).
        self.write_regs({"cr0": CR0_REAL, "cr3": 0, "cr4": 0, "eflags": 2})
        self.gdb.write_memory(STUB_ADDR, code)
        seg = STUB_ADDR >> 4
        self.write_regs({"cs": seg ^ 1, "ss": 1, "ds": 1, "es": 1, "fs": 1, "gs": 1,
                         "eip": 0, "eflags": 2})
        self.write_regs({"cs": seg, "ss": 0, "ds": 0, "es": 0, "fs": 0, "gs": 0,
                         "eip": 0, "eflags": 2})
        for _ in range(_count_insns(code)):
            self.step()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """End QEMU and remove its files (idempotent)."""
        for c in (self.gdb, self.qmp):
            if c is not None:
                try:
                    c.close()
                except OSError:
                    pass
        self.gdb = self.qmp = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(KILL_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if getattr(self, "stderr", None) is not None:
            self.stderr.close()
            self.stderr = None
        if self.ram_map is not None:
            self.ram = np.zeros(0, dtype=np.uint8)
            try:
                self.ram_map.close()
            except BufferError:
                pass  # a view is still alive; the mapping goes with it
            self.ram_map = None
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.discard(self)


def _count_insns(code: bytes) -> int:
    """Instructions of the real-mode chipset/table stub (decoded as aero does)."""
    n, i = 0, 0
    while i < len(code):
        info = decode(code[i:i + 15], False)
        assert info.length is not None
        i += info.length
        n += 1
    return n


def _dummy_selectors(pm: bool) -> dict[str, int]:
    return {s: 0 for s in SEGS} if pm else {s: 0xFFFF for s in SEGS}


# ---- the backend ------------------------------------------------------------------------------

@dataclass
class _Frame:
    """Bytes the delivery of an exception may write in the scenario's memory."""

    saved: list[tuple[int, bytes]]


class QemuCPU:
    """QEMU as a :class:`~aero.fuzz.difftest.Backend` for one mode; several QemuCPU share
    a :class:`QemuMachine` (:func:`qemu_references`)."""

    def __init__(self, mode: str, machine: QemuMachine | None = None) -> None:
        self.mode = mode
        self.shared = machine is not None
        self.machine = machine if machine is not None else QemuMachine()
        self.scenario: Scenario | None = None
        self.regs_now: dict[str, int] = {}
        self.tables: dict[str, int] = {}
        self.broken = False
        self._accesses: list[tuple[str, int, int]] = []
        self._code_entries: set[int] = set()
        self._own_writes: set[int] = set()
        self._ordered: list[tuple[str, int, int]] = []  # the SDM model's accesses, in order
        self._fixed: set[int] = set()  # paging entries of the fetch and a descriptor read
        self._fetch: tuple[int, int] = (0, 1)  # linear address and length of the instruction
        self._pending_db: StepResult | None = None  # a single-step trap still to report
        self._steps = 0  # instructions stepped since the load
        self._hidden_read = -1  # after which of them QEMU's hidden state was last read
        self._info: dict[str, object] | None = None  # ``info registers`` of this step
        self._aero_cr: tuple[int, int, int] = (0, 0, 0)  # aero's CR0/CR3/CR4 before it
        self.hidden_reads = 0  # QMP reads of the hidden state (for the benchmark)

    def close(self) -> None:
        if self.machine is not None:
            self.machine.close()

    def _restart(self) -> None:
        self.machine.close()
        self.machine = QemuMachine()

    # ---- load ----------------------------------------------------------------------------
    def load(self, scenario: Scenario, image: np.ndarray) -> None:
        for attempt in (0, 1):  # a QEMU found dead here is replaced and the load retried
            if self.broken or not self.machine.alive():
                self._restart()
                self.broken = False
            try:
                self._load(scenario, image)
                return
            except (GdbError, OSError) as exc:
                self.broken = True
                if attempt:
                    raise NotComparable(f"qemu: {exc}") from None

    def _load(self, scenario: Scenario, image: np.ndarray) -> None:
        m = self.machine
        r = scenario.regs
        pm = is_pm(scenario.mode)
        paging = scenario.paging
        self.scenario = scenario
        self.tables = {k: r[k] for k in ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit")}
        # GDTR = the scenario's, IDTR = (AREA, the scenario's limit), by LGDT/LIDT in
        # real mode, unless they are still loaded from the last scenario.
        key = (r["gdtr_base"], r["gdtr_limit"], r["idtr_limit"])
        if m.tables != key:
            m.tables = None
            m._set_tables(r["gdtr_base"], r["gdtr_limit"], IDT_ADDR, r["idtr_limit"])
            m.run_real(_TABLES)
            m.tables = key
        ram = m.ram
        ram[:RAM_SIZE] = image
        table = _IDT_BYTES if pm else _IVT_BYTES
        ram[IDT_ADDR:IDT_ADDR + len(table)] = np.frombuffer(table, dtype=np.uint8)
        if paging is not None:
            pde1 = OUR_PT | PTE_P | PTE_W
            ram[PD_ADDR + 4:PD_ADDR + 8] = np.frombuffer(pde1.to_bytes(4, "little"),
                                                         dtype=np.uint8)
        sel = {s: r[s] & 0xFFFF for s in SEGS}
        base = ({"fs_base": 0, "gs_base": 0} if pm
                else {"fs_base": sel["fs"] << 4, "gs_base": sel["gs"] << 4})
        gprs = {k: r[k] for k in GPRS}
        # The gdbstub loads the selectors that changed (through the GDT in protected mode)
        # before it writes the control registers: first other selectors in real mode and
        # CR0.PE as the mode needs; then the scenario's selectors, without paging, and the
        # final control registers.
        dummy = {s: (0 if sel[s] else 8) if pm else sel[s] ^ 1 for s in SEGS}
        m.write_regs({"cr0": CR0_PM if pm else CR0_REAL, "cr3": 0, "cr4": 0, "eflags": 2})
        # Without paging, so that the debug write's addresses are physical; QEMU drops the
        # code it translated from these bytes.
        m.gdb.write_memory(scenario.code_address, b"".join(scenario.code))  # type: ignore
        m.write_regs(dummy)
        cr0, cr3, cr4 = (CR0_PM if pm else CR0_REAL), 0, 0
        if paging is not None:
            cr0, cr3, cr4 = paging.cr0, paging.cr3, paging.cr4
        m.write_regs({**sel, **base, **gprs, "eip": r["eip"], "eflags": r["eflags"],
                      "cr0": cr0, "cr3": cr3, "cr4": cr4, "cr2": 0})
        self._steps, self._hidden_read, self._info = 0, -1, None
        self._pending_db = None
        self._aero_cr = (cr0, cr3, cr4)
        self.regs_now = m.read_regs()
        want = {s: sel[s] for s in SEGS}
        got = {s: self.regs_now[s] & 0xFFFF for s in SEGS}
        if got != want or self.regs_now["eip"] != r["eip"]:
            raise NotComparable(f"qemu: could not load the scenario's selectors ({got})")

    def adopt(self, regs: dict[str, int], memory: list[tuple[int, bytes]]) -> None:
        m = self.machine
        if regs:
            cur = m.read_regs()  # every field, so that nothing is reset to the template
            cur.update({k: v for k, v in regs.items() if k in _IDX})
            m.write_regs(cur)
            self.regs_now = cur
        for addr, data in memory:
            m.gdb.write_memory(addr, data)  # type: ignore[union-attr]

    # ---- step -----------------------------------------------------------------------------
    def _linear(self, seg: str, off: int) -> int:
        r = self.regs_now
        if is_pm(self.mode):
            return (self._pm_base(r[seg] & 0xFFFF) + off) & 0xFFFFFFFF
        return ((r[seg] & 0xFFFF) << 4) + off

    def _pm_base(self, sel: int) -> int:
        """The base of the descriptor a protected-mode selector names (0 for a null
        selector or one outside RAM): the scenarios' GDT is flat, but a selector with
        TI = 1 loads from the reset LDT (base 0), i.e. from the scenario's memory."""
        if not sel & ~3:
            return 0
        at = (0 if sel & 4 else self.tables.get("gdtr_base", 0)) + (sel & ~7)
        if at + 8 > RAM_SIZE:
            return 0
        lo, hi = (int.from_bytes(self.machine.ram[at + k:at + k + 4].tobytes(), "little")
                  for k in (0, 4))
        return (lo >> 16) | (hi & 0xFF) << 16 | (hi & 0xFF000000)

    def _precheck(self) -> tuple[int, bytes]:
        """Refuse what this backend cannot compare; the instruction's bytes."""
        assert self.scenario is not None
        r = self.regs_now
        lin = self._linear("cs", r["eip"])
        raw = self.machine.ram[lin:lin + 15].tobytes() if 0 <= lin < RAM_SIZE else b""
        if not raw:
            raise NotComparable("qemu: code outside RAM")
        info = decode(raw, is_pm(self.mode))
        op2 = _two_byte(raw, info)
        if op2 is not None and is_pm(self.mode):
            b2, reg = op2
            if b2 == 0x00 and reg in (2, 3):
                # (In real mode they are #UD and compared; SIDT and STR are shown with
                # the scenario's values, see _step; SLDT stores 0 on both sides.)
                raise NotComparable("qemu: LLDT/LTR would change this backend's TR")
        if self.machine.tables is not None and self.tables["idtr_limit"] != \
                self.machine.tables[2] and raw.lstrip(_PREFIXES)[:1] in _SOFT_INTS:
            # After LIDT QEMU holds the whole table's limit, not the scenario's, which
            # INT n checks (#GP beyond it).
            raise NotComparable("qemu: a software interrupt after LIDT")
        paging = self.scenario.paging
        if paging is not None:
            from .difftest import page_fault_code

            mem = self.machine.ram[:RAM_SIZE]
            gdt = self.tables["gdtr_base"]
            for a in (gdt, gdt + self.tables["gdtr_limit"]):
                if page_fault_code(mem, paging, a, False, False) is not None:
                    # An exception could not be delivered (the gate's code segment is
                    # in the GDT): QEMU would shut down.
                    raise NotComparable("qemu: the GDT is not mapped")
        self._accesses, stack, self._ordered = self._model_accesses(raw)
        if any(self._reaches_other(k, a, n) for k, a, n in stack + self._implicit_reads(raw)):
            raise NotComparable("qemu: stack, string or implicit access outside RAM")
        self._accesses += stack
        self._fetch = (lin, info.length or 1)
        self._code_entries = self._entries_of([lin, lin + (info.length or 1) - 1])
        self._fixed = set(self._code_entries)  # the fetch's and the descriptor read's
        # Entries the instruction's own reads use are treated like the fetch's (their
        # accessed bits are the instruction's); those of its writes are left as QEMU set
        # them.
        self._code_entries |= self._entries_of(
            [x for k, a, n in self._accesses if k == "r" for x in (a, a + n - 1)])
        self._own_writes = self._entries_of(
            [x for k, a, n in self._accesses if k == "w" for x in (a, a + n - 1)])
        desc = self._descriptor_read(raw)
        if desc is not None:
            # A segment-register load reads its descriptor (GDT or LDT) before it may
            # fault: those accessed bits are the instruction's too.
            self._code_entries |= self._entries_of([desc, desc + 7])
            self._fixed |= self._entries_of([desc, desc + 7])
        return lin, raw

    def _stack32(self) -> bool:
        """Is the stack 32-bit (SS's B bit in the descriptor its selector names; the
        reset LDT has base 0)? False in real mode."""
        if not is_pm(self.mode):
            return False
        sel = self.regs_now["ss"] & 0xFFFF
        at = (0 if sel & 4 else self.tables.get("gdtr_base", 0)) + (sel & ~7)
        if not sel & ~3 or at + 8 > RAM_SIZE:
            return True
        return bool(int(self.machine.ram[at + 6]) & 0x40)

    def _model_accesses(self, raw: bytes) -> tuple[list[tuple[str, int, int]],
                                                   list[tuple[str, int, int]],
                                                   list[tuple[str, int, int]]]:
        """The instruction's data accesses as (kind, linear address, size), decided by the
        SDM model (:func:`aero.fuzz.sdm.operand_access`, :func:`aero.fuzz.sdm.data_accesses`),
        never by aero's decoder or opcode table: the explicit ModRM operand (read, and
        written when it is a destination), the others (stack, string, moffs, XLAT), and all
        of them in the order of the SDM's operation (a read-modify-write: its read, then its
        write).
        Refuses a ModRM operand that reaches memory QEMU has and aero has not. An
        instruction the model does not cover has no accesses here (its ModRM operand is
        still checked for the refusal, as one byte)."""
        from .sdm import data_accesses, operand_access
        from .sdm import decode as sdm_decode
        from .sdm import effective_offset as sdm_offset

        pm = is_pm(self.mode)
        d = sdm_decode(raw, pm)
        regs = self._named_regs()
        stack32 = self._stack32()
        explicit: list[tuple[str, int, int]] = []
        operand = operand_access(d, regs, stack32)
        if d.memory:
            seg, off, size = ((operand.seg, operand.offset, operand.size) if operand
                              else (d.seg, sdm_offset(d, regs), 1))
            a = self._linear(seg, off)
            beyond_limit = not pm and off + size - 1 > 0xFFFF
            if beyond_limit and AREA - 16 <= a < AREA_END:
                raise NotComparable("qemu: memory operand in this backend's tables")
            if not beyond_limit and self._other_memory(a, max(size, 16)):
                # aero has no memory there, QEMU has (its RAM is larger).
                raise NotComparable("qemu: memory operand outside RAM")
            if operand is not None:
                # As the known-divergence matchers see a reference's accesses (QEMU does
                # not report its own).
                explicit = [(k, a, size) for k in ("r", "w") if k in operand.kind]
        model = data_accesses(d, regs, stack32, not pm) if d.defined else None
        if model is None:
            return explicit, [], list(explicit)
        ordered = [(k, self._linear(x.seg, x.offset), x.size) for x in model
                   for k in ("r", "w") if k in x.kind]
        others = [(k, self._linear(x.seg, x.offset), x.size) for x in model
                  if x != operand for k in ("r", "w") if k in x.kind]
        return explicit, others, ordered

    def _descriptor_read(self, raw: bytes) -> int | None:
        """Protected mode, MOV Sreg / POP Sreg / LDS-LGS (SDM model's decoding): the
        linear address of the descriptor the selector being loaded names, when it is not
        null and lies in RAM; else None."""
        if not is_pm(self.mode) or self.scenario is None or self.scenario.paging is None:
            return None
        from .sdm import decode as sdm_decode
        from .sdm import effective_offset as sdm_offset

        d = sdm_decode(raw, True)
        r, ram = self.regs_now, self.machine.ram
        if not d.defined or d.length is None:
            return None
        at: int | None = None
        if d.opcode == 0x8E:
            if d.mod == 3:
                sel = r[GPRS[d.rm]] & 0xFFFF
            else:
                at = sdm_offset(d, self._named_regs())
        elif d.opcode in (0x07, 0x17, 0x1F, 0x1A1, 0x1A9):
            at = r["esp"]
        elif d.opcode in (0xC4, 0xC5, 0x1B2, 0x1B4, 0x1B5) and d.memory:
            at = sdm_offset(d, self._named_regs()) + d.opsize
        else:
            return None
        if at is not None:
            at &= 0xFFFFFFFF
            if at + 2 > RAM_SIZE:
                return None
            sel = int.from_bytes(ram[at:at + 2].tobytes(), "little")
        if not sel & ~3:
            return None
        # The LDT is the reset one on both sides (base 0).
        base = 0 if sel & 4 else self.tables["gdtr_base"]
        addr = (base + (sel & ~7)) & 0xFFFFFFFF
        return addr if addr + 8 <= RAM_SIZE else None

    def _put_back_trap_frame(self, after: dict[str, int], snap: np.ndarray) -> None:
        """After a single-step trap (the instruction completed): put back the scenario's
        bytes under the trap's frame (at the stack pointer the instruction left, read
        from QEMU's SS:ESP in the handler) and the accessed/dirty bits that the frame's
        push and the gate's GDT read set, except in entries the instruction used itself
        (its writes: kept; its fetch and reads: only the dirty bit put back)."""
        ram = self.machine.ram
        if is_pm(self.mode):
            addrs = [(after["esp"] + k) & 0xFFFFFFFF for k in range(12)]
        else:
            base = (after["ss"] & 0xFFFF) << 4
            addrs = [base + ((after["esp"] + k) & 0xFFFF) for k in range(6)]
        for a in addrs:
            if a < RAM_SIZE:
                ram[a] = snap[a]
        gdt, limit = self.tables["gdtr_base"], self.tables["gdtr_limit"]
        for e in self._entries_of([addrs[0], addrs[-1], gdt, gdt + limit]):
            if e + 4 > RAM_SIZE or e in self._own_writes:
                continue
            if e in self._code_entries:
                ram[e] = (int(ram[e]) & ~PTE_D) | (int(snap[e]) & PTE_D)
            else:
                ram[e:e + 4] = snap[e:e + 4]

    def _may_read_first(self, page: int) -> bool:
        """May the instruction have read the 4 KB ``page`` before its faulting write?
        Only the SDM model's list of its data accesses (:func:`aero.fuzz.sdm.data_accesses`)
        can say no: an instruction it does not model may have."""
        from .sdm import data_accesses
        from .sdm import decode as sdm_decode

        lin, _length = self._fetch
        raw = self.machine.ram[lin:lin + 15].tobytes() if lin + 15 <= RAM_SIZE else b""
        d = sdm_decode(raw, is_pm(self.mode))
        accesses = data_accesses(d, self._named_regs(), is_pm(self.mode)) if raw else None
        if accesses is None:
            return True
        for a in accesses:
            lo = self._linear(a.seg, a.offset)
            pages = {lo >> 12, (lo + a.size - 1) >> 12}
            if "r" in a.kind and page in pages:
                return True
        return False

    def _user_page(self, lin: int) -> bool:
        """Do the paging entries (as in QEMU's RAM, whose U bits the step cannot change)
        allow user accesses to ``lin``?"""
        from .difftest import PTE_PS, PTE_U, u32

        paging = self.scenario.paging if self.scenario else None
        if paging is None:
            return True
        mem = self.machine.ram
        pde = u32(mem, PD_ADDR + (lin >> 22) * 4)
        if pde & PTE_PS and paging.pse:
            return bool(pde & PTE_U)
        pte_at = (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4
        return bool(pde & PTE_U) and (pte_at + 4 > len(mem) or bool(u32(mem, pte_at) & PTE_U))

    def _faulting_walk(self, cr2: int, code: int) -> None:
        """After a #PF at ``cr2``: the entries of the faulting page were not used by a
        completed translation of this instruction (neither aero nor QEMU sets accessed
        bits for a walk that faults), so their accessed/dirty bits come from the delivery
        and are put back. Only when no access of the instruction could have used the page
        before: a fetch fault, a not-present page, or a protection fault for rights every
        access of the instruction to the page lacks (a user access to a supervisor page);
        after a write-protection fault a read of the same page may have completed first."""
        lin, length = self._fetch
        page = cr2 >> 12
        fetch_pages = {lin >> 12, (lin + length - 1) >> 12}
        if (cr2 - lin) & 0xFFFFFFFF < length:
            # The fetch faulted: nothing of the instruction ran.
            self._own_writes = set()
            self._code_entries = self._entries_of([x << 12 for x in fetch_pages if x != page])
            return
        done = self._ordered
        kind = "w" if code & 2 else "r"
        hit = next((i for i, (k, a, n) in enumerate(done) if k == kind
                    and page in {a >> 12, ((a + n - 1) & 0xFFFFFFFF) >> 12}), None)
        if hit is not None:
            # The faulting access, first of its kind on the page in the order of the SDM's
            # operation: the accesses after it never happened, so the entries only they
            # use carry the delivery's bits.
            done = done[:hit + 1]
            later = self._entries_of([x for _k, a, n in self._ordered[hit + 1:]
                                      for x in (a, a + n - 1)])
            self._own_writes -= later - self._entries_of(
                [x for k, a, n in done if k == "w" for x in (a, a + n - 1)])
            self._code_entries -= later - self._fixed - self._entries_of(
                [x for k, a, n in done if k == "r" for x in (a, a + n - 1)])
        if code & 1 and code & 2 and not (code & 4 and not self._user_page(cr2)) \
                and self._may_read_first(page):
            return  # a write-protection fault on a page the instruction may have read
        others = self._entries_of([x << 12 for x in fetch_pages] + [
            x for _k, a, n in done for x in (a, a + n - 1) if x >> 12 != page])
        gone = self._entries_of([cr2]) - others
        self._own_writes -= gone
        self._code_entries -= gone

    def _other_memory(self, lin: int, size: int) -> bool:
        """Can an access of ``size`` bytes at linear ``lin`` reach memory that QEMU has and
        aero has not (QEMU's RAM is larger)? With paging, linear memory beyond RAM is not
        present on both sides (a #PF alike), except this backend's 4 MB and, with a 4 MB
        page, the rest of the first 4 MB."""
        paging = self.scenario.paging if self.scenario else None
        for x in (lin & 0xFFFFFFFF, (lin + size - 1) & 0xFFFFFFFF):
            if x < RAM_SIZE:
                continue
            if paging is None or x >> 22 == 1 or (x >> 22 == 0 and paging.large):
                return True
        return False

    def _reaches_other(self, kind: str, lin: int, size: int) -> bool:
        """Does this access see memory that differs between QEMU and aero? Reads beyond
        RAM do (QEMU's RAM or ROM there, aero's open bus); without paging a write there
        is lost on both sides for the comparison unless it lands on this backend's tables
        (a later read of it is refused as a read)."""
        if kind == "r" or (self.scenario is not None and self.scenario.paging is not None):
            return self._other_memory(lin, size)
        lo = lin & 0xFFFFFFFF
        return lo < AREA_END and lo + size > AREA - 16

    def _implicit_reads(self, raw: bytes) -> list[tuple[str, int, int]]:
        """Memory reads that the SDM model's access list may lack (its decoding): XLAT,
        MOV AL/eAX, moffs, and the stack reads of POPA,
        POPF, POP Ev, RET, RETF, IRET and LEAVE; only for refusing what reads beyond RAM."""
        from .sdm import decode as sdm_decode

        pm = is_pm(self.mode)
        d = sdm_decode(raw, pm)
        if not d.defined or d.length is None:
            return []
        r, op, n = self.regs_now, d.opcode, d.opsize
        amask = 0xFFFFFFFF if d.asz32 else 0xFFFF

        def lin(seg: str, off: int) -> int:
            return self._linear(seg, off)

        if op == 0xD7:
            return [("r", lin(d.seg, (r["ebx"] + (r["eax"] & 0xFF)) & amask), 1)]
        if op in (0xA0, 0xA1):
            return [("r", lin(d.seg, d.disp & amask), 1 if op == 0xA0 else n)]
        smask = 0xFFFFFFFF if pm else 0xFFFF
        sp = r["esp"] & smask
        size = {0x61: 8 * n, 0x9D: n, 0x8F: n, 0xC2: n, 0xC3: n, 0xCA: 2 * n, 0xCB: 2 * n,
                0xCF: 3 * n}.get(op)
        if size is not None:
            return [("r", lin("ss", sp), size)]
        if op == 0xC9:
            return [("r", lin("ss", r["ebp"] & smask), n)]
        return []

    def retrace(self) -> list[tuple[str, int, int]]:
        """The memory accesses of the last step, as far as the decoding tells."""
        return list(self._accesses)

    def _entries_of(self, lins: list[int]) -> set[int]:
        paging = self.scenario.paging if self.scenario else None
        if paging is None:
            return set()
        from .difftest import paging_entries

        mem = self.machine.ram[:RAM_SIZE]
        return {e for lin in lins if lin >> 22 == 0 for e in paging_entries(mem, paging, lin)}

    def _named_regs(self) -> dict[str, int]:
        return {k: self.regs_now[k] for k in GPRS + ("eip", "eflags", *SEGS)}

    def _cpl(self) -> int:
        return self.regs_now["ss"] & 3 if is_pm(self.mode) else 0

    def _save_frame(self) -> list[tuple[int, bytes]]:
        """The scenario's bytes an exception frame (and its accessed/dirty bits) would
        overwrite; raises NotComparable when the frame could not be pushed."""
        r, ram = self.regs_now, self.machine.ram
        if not is_pm(self.mode):
            ss = (r["ss"] & 0xFFFF) << 4
            # Where the frame's bytes go, with SP wrapping inside the segment or not (a
            # word at SP = FFFFh reaches the next segment).
            addrs = {ss + ((r["esp"] - k) & 0xFFFF) for k in range(1, 7)}
            addrs |= {a + 1 for a in addrs}
            return [(a, bytes([int(ram[a])])) for a in sorted(addrs) if a < RAM_SIZE]
        if self._cpl() == 3:
            return self._delivery_entries()
        lo, hi = (r["esp"] - 16) & 0xFFFFFFFF, r["esp"] & 0xFFFFFFFF
        paging = self.scenario.paging if self.scenario else None
        inside = 16 <= hi <= RAM_SIZE
        if paging is not None and not inside:
            raise NotComparable("qemu: ring-0 exception frame outside RAM")
        if hi >= 16 and hi > AREA - 32 and lo < AREA_END:
            raise NotComparable("qemu: ring-0 exception frame on this backend's tables")
        # Elsewhere (pm32 only) a frame lands in QEMU's larger RAM or nowhere (or wraps
        # around 4 GB to address 0): the bytes of the scenario's RAM it may reach are put
        # back; the unwinding checks that it can read the frame.
        if inside:
            saved = [(lo, ram[lo:hi].tobytes())]
        else:
            addrs = [(r["esp"] - k) & 0xFFFFFFFF for k in range(1, 17)]
            saved = [(a, bytes([int(ram[a])])) for a in addrs if a < RAM_SIZE]
        if paging is not None:
            from .difftest import page_fault_code

            mem = ram[:RAM_SIZE]
            for a in (lo, hi - 1):
                if page_fault_code(mem, paging, a, False, True) is not None:
                    raise NotComparable("qemu: ring-0 exception frame on a page it cannot "
                                        "write (QEMU would shut down)")
        return saved + self._delivery_entries()

    def _delivery_entries(self) -> list[tuple[int, bytes]]:
        """Paging entries whose accessed/dirty bits delivering an exception may set: those
        of the GDT (the gate's code segment) and of the ring-0 stack frame."""
        paging = self.scenario.paging if self.scenario else None
        if paging is None:
            return []
        from .difftest import paging_entries

        ram, r = self.machine.ram, self.regs_now
        mem = ram[:RAM_SIZE]
        lins = [self.tables["gdtr_base"], self.tables["gdtr_base"] + self.tables["gdtr_limit"]]
        if self._cpl() == 0:
            lins += [(r["esp"] - 16) & 0xFFFFFFFF, (r["esp"] - 1) & 0xFFFFFFFF]
        out = []
        for lin in lins:
            if lin >> 22 == 0:
                for e in paging_entries(mem, paging, lin):
                    if e + 4 <= RAM_SIZE:
                        out.append((e, ram[e:e + 4].tobytes()))
        return out

    def step(self) -> StepResult:
        if self._pending_db is not None:
            # The single-step trap of the previous instruction, taken at this boundary
            # (QEMU delivered it within that instruction's step).
            res, self._pending_db = self._pending_db, None
            return StepResult(dict(res.regs), 1, res.memory.copy())
        try:
            return self._step()
        except (GdbError, OSError) as exc:
            self.broken = True
            raise NotComparable(f"qemu: {exc}") from None

    def _pause_length(self, raw: bytes, regs: dict[str, int], lin: int) -> int:
        """PAUSE (F3 90, SDM model's decoding): QEMU's single step does not stop after it
        (its helper leaves the CPU loop before the step's debug trap), so it is run to a
        breakpoint on the next instruction instead, when its fetch cannot fault and
        EFLAGS.TF is clear (otherwise it is not comparable). Its length, or 0 for any
        other instruction."""
        from .sdm import decode as sdm_decode

        d = sdm_decode(raw, is_pm(self.mode))
        if d.opcode != 0x90 or d.rep != 0xF3 or d.lock or d.length is None:
            return 0
        end = regs["eip"] + d.length - 1
        paging = self.scenario.paging if self.scenario else None
        faults = (not is_pm(self.mode) and end > 0xFFFF) or regs["eflags"] & 0x100
        if paging is not None:
            from .difftest import page_fault_code

            mem = self.machine.ram[:RAM_SIZE]
            faults = faults or any(
                page_fault_code(mem, paging, x, self._cpl() == 3, False) is not None
                for x in (lin, lin + d.length - 1))
        if faults:
            raise NotComparable("qemu: PAUSE whose fetch may fault or with TF set")
        return d.length

    def _table_operand(self, raw: bytes) -> tuple[str, int | None, bool]:
        """For LIDT, SIDT and (protected mode) STR: the kind (``lidt``, ``sidt``, ``str``,
        else ``""``), the physical address of a memory operand in RAM that the instruction
        can reach without a segment-limit fault (else None), and the operand size (32
        bits or not). Decoded by the SDM model (:mod:`aero.fuzz.sdm`)."""
        from .sdm import decode as sdm_decode
        from .sdm import effective_offset as sdm_offset

        pm = is_pm(self.mode)
        d = sdm_decode(raw, pm)
        kind = ""
        if d.defined and d.opcode == 0x101 and d.memory and d.reg in (1, 3):
            kind = "sidt" if d.reg == 1 else "lidt"
        elif d.defined and d.opcode == 0x100 and d.reg == 1 and pm:
            kind = "str"
        if not kind or not d.memory:
            return kind, None, d.osz32
        off = sdm_offset(d, self._named_regs())
        size = 2 if kind == "str" else 6
        if not pm and off + size - 1 > 0xFFFF:
            return kind, None, d.osz32  # a segment-limit fault
        a = self._linear(d.seg, off)
        return kind, (a if 0 <= a and a + size <= RAM_SIZE else None), d.osz32

    def _step(self) -> StepResult:
        m = self.machine
        before = self.regs_now
        _lin, raw = self._precheck()
        saved = self._save_frame()
        # With TF set a single-step trap may follow the instruction, its frame pushed at
        # the stack pointer the instruction leaves: keep the memory to put it back.
        snap = m.ram[:RAM_SIZE].copy() if before["eflags"] & 0x100 else None
        self._info = None
        kind, table_at, osz32 = self._table_operand(raw)
        patched = None
        if kind == "lidt":
            # QEMU must keep delivering through this backend's whole IDT: the base and
            # limit it loads are replaced by AREA and the full table's (the access and
            # its faults are QEMU's); the scenario's operand is reported (a 24-bit base
            # with a 16-bit operand, SDM "LGDT/LIDT").
            if table_at is None:
                raise NotComparable("qemu: LIDT operand outside RAM")
            patched = m.ram[table_at:table_at + 6].copy()
            full = 0x7FF if is_pm(self.mode) else 0x3FF
            m.ram[table_at:table_at + 6] = np.frombuffer(
                full.to_bytes(2, "little") + AREA.to_bytes(4, "little"), dtype=np.uint8)
        try:
            pause = self._pause_length(raw, before, _lin)
            if pause:
                m.step_over(_lin + pause, before["eflags"])
            else:
                m.step()
        finally:
            if patched is not None:
                m.ram[table_at:table_at + 6] = patched  # type: ignore[index]
        self._steps += 1
        after = m.read_regs()
        exc = code = cr2 = None
        regs = dict(after)
        vector = self._landing(after)
        if vector is None and _no_progress(before, after, raw):
            self.broken = True  # a shutdown (triple fault) leaves QEMU unusable
            raise NotComparable("qemu: the step made no progress (exception not delivered)")
        trap = vector == 1 and snap is not None and not _is_int1(raw, is_pm(self.mode))
        if trap and not is_pm(self.mode) and _loads_eflags_high(raw):
            # The trap's real-mode frame shows FLAGS only and its delivery cleared AC and
            # RF: what POPFD/IRETD loaded there cannot be read back.
            raise NotComparable("qemu: real-mode single-step trap after POPFD/IRETD")
        if vector is not None and trap:
            exc = vector
            regs, code = self._unwind(after, vector, before)
            assert snap is not None
            self._put_back_trap_frame(after, snap)
        elif vector is not None:
            exc = vector
            regs, code = self._unwind(after, vector, before)
            if vector == EXC_PF and code is not None:
                self._faulting_walk(after["cr2"], code)
            elif vector in (6, 13) and _faults_before_access(raw, is_pm(self.mode),
                                                             self._cpl()):
                # #UD, #GP for a length above 15 bytes or a privileged instruction at
                # CPL 3: no data access was made.
                lin, length = self._fetch
                self._own_writes = set()
                self._code_entries = self._entries_of([lin, lin + min(length, 15) - 1])
            for addr, data in reversed(saved):
                if addr in self._own_writes:
                    continue
                if addr in self._code_entries:
                    # The instruction's own fetch used this entry and may have set its
                    # accessed bit; only the dirty bit (a 4 MB page's, by the frame's
                    # push) comes from the delivery.
                    m.ram[addr] = (int(m.ram[addr]) & ~PTE_D) | (data[0] & PTE_D)
                    continue
                m.ram[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)
            if vector == EXC_PF:
                cr2 = after["cr2"]
        tables = dict(self.tables)
        if exc is None and _loads_table(raw, is_pm(self.mode)):
            info = self._info = m.info_registers()
            gb, gl = info["gdt"]  # type: ignore[misc]
            ib, il = info["idt"]  # type: ignore[misc]
            tables.update(gdtr_base=gb, gdtr_limit=gl)
            if kind == "lidt":
                if ib != AREA:
                    self.broken = True
                    raise NotComparable(f"qemu: LIDT loaded base {ib:#x}, not this "
                                        f"backend's IDT")
                assert patched is not None
                base = int.from_bytes(patched[2:].tobytes(), "little")
                tables["idtr_base"] = base if osz32 else base & 0xFFFFFF
                tables["idtr_limit"] = int.from_bytes(patched[:2].tobytes(), "little")
            elif ib != AREA:
                self.broken = True
                raise NotComparable("qemu: the IDT base moved")
            self.tables = tables
            m.tables = (gb, gl, il)  # what QEMU holds now
        elif exc is None and kind == "sidt" and table_at is not None:
            # QEMU stored this backend's IDT base; the scenario's is shown (24 bits and a
            # zero byte with a 16-bit operand, SDM "SIDT").
            # The limit is the scenario's too (QEMU holds the whole table's after LIDT).
            field = slice(table_at, table_at + 6)
            stored = m.ram[field].tobytes()
            if int.from_bytes(stored[2:], "little") != AREA or m.tables is None or \
                    int.from_bytes(stored[:2], "little") != m.tables[2]:
                raise NotComparable("qemu: SIDT did not store this backend's IDTR")
            base = tables["idtr_base"] & (0xFFFFFFFF if osz32 else 0xFFFFFF)
            m.ram[field] = np.frombuffer(tables["idtr_limit"].to_bytes(2, "little")
                                         + base.to_bytes(4, "little"), dtype=np.uint8)
        elif exc is None and kind == "str":
            # QEMU's TR holds this backend's TSS selector; the scenario's TR is the reset
            # one (selector 0).
            if table_at is not None:
                if int.from_bytes(m.ram[table_at:table_at + 2].tobytes(), "little") != TSS_SEL:
                    raise NotComparable("qemu: STR did not store this backend's TR")
                m.ram[table_at:table_at + 2] = 0
            else:
                from .sdm import decode as sdm_decode

                reg = GPRS[sdm_decode(raw, True).rm]
                if regs[reg] & 0xFFFF != TSS_SEL:
                    raise NotComparable("qemu: STR did not store this backend's TR")
                regs[reg] &= ~0xFFFF
                m.write_regs({reg: regs[reg]})
        self.regs_now = regs
        if trap:
            # A single-step trap (EFLAGS.TF was set before the instruction; DR7 is clear):
            # the instruction completed and QEMU delivered the trap within the step. aero
            # takes it at the next instruction boundary, so the next step reports it; QEMU
            # is put back to the state after the instruction.
            exc = None
            m.write_regs({k: regs[k] for k in GPRS + ("eip", "eflags", "cs", "ss")})
            self.regs_now = regs
        out = {k: regs[k] for k in GPRS + ("eip", "eflags")}
        out.update({s: regs[s] & 0xFFFF for s in SEGS})
        out.update(tables)
        memory = m.ram[:RAM_SIZE].copy()
        if self.scenario is not None and self.scenario.paging is not None:
            memory[PD_ADDR + 4:PD_ADDR + 8] = 0
        res = StepResult(out, exc, memory, error_code=code, cr2=cr2)
        if trap:
            self._pending_db = res
        return res

    def _landing(self, r: dict[str, int]) -> int | None:
        """The vector whose handler execution landed on, or None."""
        if is_pm(self.mode) or r["cr0"] & 1:
            off = r["eip"] - LANDING
            if (r["cs"] & 0xFFFF) == CODE_SEL and 0 <= off < 256 * 16 and off % 16 == 0:
                return off // 16
            return None
        if (r["cs"] & 0xFFFF) == LANDING_SEG and r["eip"] % 16 == 0 and r["eip"] < 4096:
            return r["eip"] // 16
        return None

    def _unwind(self, r: dict[str, int], vector: int,
                before: dict[str, int]) -> tuple[dict[str, int], int | None]:
        """The state just before delivery, read from the frame; the error code."""
        ram = self.machine.ram
        out = dict(r)
        if not is_pm(self.mode):
            sp = (r["ss"] & 0xFFFF) * 16
            words = [int.from_bytes(ram[sp + ((r["esp"] + 2 * i) & 0xFFFF):][:2].tobytes(),
                                    "little") for i in range(3)]
            out["eip"], out["cs"] = words[0], words[1]
            # The frame holds FLAGS (16 bits); the delivery cleared AC and RF (SDM 'INT n'
            # REAL-ADDRESS-MODE: 'AC := 0'; QEMU clears RF too): those two come from before
            # the instruction, which cannot have changed them (_step refuses the one case
            # where it could).
            out["eflags"] = ((r["eflags"] & 0xFFFF0000 & ~_AC_RF) | (before["eflags"] & _AC_RF)
                             | words[2])
            out["esp"] = (r["esp"] & 0xFFFF0000) | ((r["esp"] + 6) & 0xFFFF)
            return out, None
        esp = r["esp"]
        if not 0 <= esp <= len(ram) - 24:
            raise NotComparable("qemu: exception frame outside QEMU's RAM")
        words = [int.from_bytes(ram[esp + 4 * i:esp + 4 * i + 4].tobytes(), "little")
                 for i in range(6)]
        code = None
        if vector in ERROR_CODE_VECTORS:
            code, words = words[0] & 0xFFFF, words[1:]
        out["eip"], out["cs"], out["eflags"] = words[0], words[1] & 0xFFFF, words[2]
        if self._cpl() == 3 and (words[1] & 3) == 3:
            out["esp"], out["ss"] = words[3], words[4] & 0xFFFF
        else:
            out["esp"] = (esp + 12 + (4 if code is not None else 0)) & 0xFFFFFFFF
        return out, code

    # ---- hidden state ------------------------------------------------------------------------
    def hidden_mismatches(self, aero: object, code: bytes, segs_before: dict[str, object],
                          ra: StepResult, rr: StepResult) -> list[Mismatch]:
        """After one instruction (called by :func:`~aero.fuzz.difftest.run_pair`): the
        descriptor caches and CR0-CR4 of aero and QEMU (QMP ``info registers``) compared,
        when the instruction may change them or aero's changed.

        Read when :func:`may_change_hidden` (the SDM model's decoding, never aero's) says
        the instruction may load a segment register, GDTR/IDTR/LDTR/TR or a control
        register; when aero's caches or CR0/CR3/CR4 changed anyway (an aero bug shows at
        the instruction that makes it); or after every instruction with
        :data:`HIDDEN_EVERY_STEP`. The caches cannot change otherwise (SDM Vol. 3A 3.4.3:
        only a segment-register load writes a cache), and :meth:`after_pair` reads them
        after the last instruction, so a change QEMU alone makes is caught too. After an
        exception CS and SS are not compared (QEMU delivered it through this backend's
        IDT; aero stopped before delivery)."""
        r = aero.machine.get_regs()  # type: ignore[attr-defined]
        crs = (r.cr0, r.cr3, r.cr4)
        changed = crs != self._aero_cr or any(
            (getattr(r, s).base, getattr(r, s).limit, getattr(r, s).attr)
            != (segs_before[s].base, segs_before[s].limit, segs_before[s].attr)  # type: ignore
            for s in SEGS)
        self._aero_cr = crs
        if not (HIDDEN_EVERY_STEP or changed or may_change_hidden(code, is_pm(self.mode))):
            return []
        info = self._info
        if info is None:
            try:
                info = self.machine.info_registers()
            except (GdbError, OSError) as exc:
                self.broken = True
                raise NotComparable(f"qemu: {exc}") from None
        self.hidden_reads += 1
        self._hidden_read = self._steps
        faulted = ra.exception is not None or rr.exception is not None
        return hidden_state_mismatches(aero, info, is_pm(self.mode),
                                       skip=("cs", "ss") if faulted else ())

    def after_pair(self, result: PairResult, aero: object) -> None:
        """Compare what the gdbstub does not show (CR0/CR3/CR4, descriptor caches) after
        the scenario's last instruction, when nothing diverged before, it completed and
        the state was not read after it already."""
        if not result.steps or result.divergence is not None:
            return
        last = result.steps[-1]
        if last.aero.exception is not None or self._hidden_read == self._steps:
            return
        try:
            info = self.machine.info_registers()
        except (GdbError, OSError):
            return
        self.hidden_reads += 1
        mism = hidden_state_mismatches(aero, info, is_pm(self.mode))
        last.mismatches.extend(mism)


# Instructions that raise #GP(0) at CPL > 0 before any data access (SDM Vol. 3A 5.9
# "Privileged Instructions"): LGDT, LIDT, LMSW, INVLPG, LLDT, LTR, CLTS, MOV CR/DR, HLT,
# INVD, WBINVD, RDMSR, WRMSR.
_PRIVILEGED = frozenset({(0x101, 2), (0x101, 3), (0x101, 6), (0x101, 7), (0x100, 2),
                         (0x100, 3), (0x106, None), (0x120, None), (0x121, None),
                         (0x122, None), (0x123, None), (0xF4, None), (0x108, None),
                         (0x109, None), (0x130, None), (0x132, None)})


def _faults_before_access(raw: bytes, code32: bool, cpl: int = 0) -> bool:
    """Does the SDM model say the instruction faults before any data access: an
    encoding longer than 15 bytes (#GP), one that is #UD, or a privileged instruction at
    CPL > 0 (#GP(0))?"""
    from .sdm import decode as sdm_decode
    from .sdm import is_ud

    d = sdm_decode(raw, code32)
    if d.length is None or d.length > 15 or bool(is_ud(d, not code32)):
        return True
    if (d.opcode == 0x8C and d.reg >= 6) or (d.opcode == 0x8E and d.reg in (1, 6, 7)):
        return True  # MOV with no such segment register, or MOV to CS: #UD (SDM 'MOV')
    key = (d.opcode, d.reg if d.opcode in (0x100, 0x101) else None)
    return cpl > 0 and key in _PRIVILEGED


_AC_RF = 0x40000 | 0x10000  # EFLAGS.AC, EFLAGS.RF


def _loads_eflags_high(raw: bytes) -> bool:
    """POPF or IRET with a 32-bit operand in 16-bit code (SDM model's decoding): they may
    change EFLAGS bits 16-31."""
    from .sdm import decode as sdm_decode

    d = sdm_decode(raw, False)
    return d.opcode in (0x9D, 0xCF) and d.osz32


def _is_int1(raw: bytes, code32: bool) -> bool:
    """INT1 (F1), whose #DB is its own, not a single-step trap (SDM model's decoding)."""
    from .sdm import decode as sdm_decode

    return sdm_decode(raw, code32).opcode == 0xF1


_PREFIXES = bytes([0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3])
_SOFT_INTS = (b"\xcc", b"\xcd", b"\xce", b"\xf1")


def _no_progress(before: dict[str, int], after: dict[str, int], raw: bytes) -> bool:
    """Nothing changed although the instruction is not one that may repeat in place
    (a REP string iteration, a jump to itself)."""
    keys = GPRS + ("eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
    if any(before[k] != after[k] for k in keys):
        return False
    stripped = raw.lstrip(bytes([0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0,
                                 0xF2, 0xF3]))
    rep = any(b in (0xF2, 0xF3) for b in raw[:len(raw) - len(stripped)])
    self_jump = stripped[:2] in (b"\xeb\xfe",) or stripped[:1] == b"\xf4"
    return not (rep or self_jump)


def _two_byte(raw: bytes, info: object) -> tuple[int, int] | None:
    """(second opcode byte, ModRM reg) of a 0F xx instruction, else None."""
    i = len(getattr(info, "prefixes", b""))
    if len(raw) > i + 2 and raw[i] == 0x0F:
        return raw[i + 1], (raw[i + 2] >> 3) & 7
    return None


def _loads_table(raw: bytes, code32: bool) -> bool:
    info = decode(raw, code32)
    op = _two_byte(raw, info)
    return op is not None and op[0] == 0x01 and op[1] in (2, 3)


# Opcodes (0F xx as 100h | xx) that may load a segment register, a descriptor-table
# register or a control register (SDM Vol. 2: MOV Sreg, POP Sreg, LDS/LES/LSS/LFS/LGS, far
# JMP/CALL/RET, IRET, INT n/INT3/INTO/INT1, SYSENTER/SYSEXIT, RSM, MOV CRn, CLTS), and the
# group members: FF /3 /5 (far CALL/JMP m16:xx), 0F 00 /2 /3 (LLDT, LTR), 0F 01 /2 /3 /6
# (LGDT, LIDT, LMSW).
_HIDDEN_OPCODES = frozenset({0x8E, 0x07, 0x17, 0x1F, 0x1A1, 0x1A9, 0xC4, 0xC5, 0x1B2, 0x1B4,
                             0x1B5, 0xEA, 0x9A, 0xCA, 0xCB, 0xCF, 0xCC, 0xCD, 0xCE, 0xF1,
                             0x134, 0x135, 0x1AA, 0x122, 0x106})
_HIDDEN_GROUPS = {0xFF: (3, 5), 0x100: (2, 3), 0x101: (2, 3, 6)}
# Read QEMU's hidden state after every instruction instead (the slower equivalent, kept for
# measuring what the selection saves).
HIDDEN_EVERY_STEP = False


def may_change_hidden(code: bytes, code32: bool) -> bool:
    """Can the instruction change a descriptor cache, GDTR/IDTR/LDTR/TR or CR0/CR3/CR4?
    Decided by the SDM model (:func:`aero.fuzz.sdm.decode`), never by aero's decoder;
    an undefined encoding (#UD) cannot."""
    from .sdm import decode as sdm_decode

    d = sdm_decode(code, code32)
    if not d.defined:
        return False
    if d.opcode in _HIDDEN_OPCODES:
        return True
    return d.reg in _HIDDEN_GROUPS.get(d.opcode, ())


def hidden_state_mismatches(aero: object, info: dict[str, object], pm: bool,
                            skip: Iterable[str] = ()) -> list[Mismatch]:
    """Differences of CR0/CR2/CR3/CR4 and the descriptor caches between aero and QEMU's
    ``info registers`` (attributes as aero stores them: access byte | flags << 12; in real
    mode the attributes are not compared, the gdbstub loads real-mode caches itself).
    The segment registers in ``skip`` are left out."""
    r = aero.machine.get_regs()  # type: ignore[attr-defined]
    out: list[Mismatch] = []
    for k in ("cr0", "cr2", "cr3", "cr4"):
        q = info.get(k)
        if isinstance(q, int) and q != getattr(r, k):
            out.append(Mismatch(k, getattr(r, k), q))
    for s in SEGS:
        q = info.get(s)
        if not isinstance(q, tuple) or s in skip:
            continue
        seg = getattr(r, s)
        if pm and not seg.selector & ~3:
            continue  # a null selector: the hidden part is not architectural
        _sel, base, limit, flags = q
        attr = ((flags >> 8) & 0xFF) | ((flags >> 20) & 0xF) << 12
        if base != seg.base:
            out.append(Mismatch(f"{s}.base", seg.base, base))
        if limit != seg.limit:
            out.append(Mismatch(f"{s}.limit", seg.limit, limit))
        if pm and attr != seg.attr and flags & 0x8000:
            out.append(Mismatch(f"{s}.attr", seg.attr, attr))
    return out


def qemu_references(modes: Iterable[str]) -> dict[str, QemuCPU]:
    """One QemuCPU per mode, all on one QEMU process."""
    machine = QemuMachine()
    return {m: QemuCPU(m, machine) for m in modes}


# ---- known divergences ------------------------------------------------------------------------

@dataclass(frozen=True)
class KnownQemuDivergence:
    """A documented case where QEMU deviates from the architecture (docs/known-divergences.md,
    QEMU section): ``matches`` recognises this case and nothing else."""

    key: str
    title: str
    evidence: str
    matches: Callable[[StepRecord], bool]


def _from_unicorn(keys: Iterable[str]) -> tuple[KnownQemuDivergence, ...]:
    """Unicorn's entries whose cause is QEMU's TCG (Unicorn is a fork of it): the same
    matcher and evidence apply to QEMU."""
    from .unicorn import KNOWN_DIVERGENCES

    by_key = {k.key: k for k in KNOWN_DIVERGENCES}
    return tuple(KnownQemuDivergence(
        k, by_key[k].title.replace("Unicorn", "QEMU"),
        by_key[k].evidence + " Seen against qemu-system-i386 7.2 (TCG) as well.",
        by_key[k].matches) for k in keys if k in by_key)


# The Unicorn entries confirmed to occur against qemu-system-i386 too (found by
# `aero fuzz cpu --against qemu`).
SHARED_WITH_UNICORN = ("segment-checks", "lock-prefix", "test-alias", "length-limit",
                       "code-segment-limit", "enter-mixed-sizes", "ret-imm16-sign",
                       "locked-neg-flags", "arpl-write", "cmps-operand-order",
                       "faulting-rotate-flags", "pusha-order", "push-sreg-width", "icebp",
                       "ud-operand-read")


def _bswap16(rec: StepRecord) -> bool:
    """BSWAP (0F C8+r) with a 16-bit operand, completed on both sides, where only the
    destination register differs. The instruction is read by the SDM model
    (:mod:`aero.fuzz.sdm`), never by aero's decoder."""
    from .sdm import decode

    d = decode(rec.code, rec.mode != "real")
    if not d.defined or not 0x1C8 <= d.opcode <= 0x1CF or d.osz32:
        return False
    if rec.aero.exception is not None or rec.ref.exception is not None:
        return False
    reg = GPRS[d.opcode & 7]
    return bool(rec.mismatches) and all(m.field == reg for m in rec.mismatches)


def _enter_final_check(rec: StepRecord) -> bool:
    """ENTER under paging, completed by QEMU, where aero made the SDM's check of a write at
    the final stack pointer (the SDM model's last access of ENTER) and nothing else differs:
    either aero completed with the SDM's registers and stores and the only differences are
    the accessed/dirty bits of the entries mapping that final access (set by aero's check,
    untouched by QEMU), or aero raised the #PF of that check (every earlier access of the
    instruction allowed) with nothing changed. Decided by the SDM model, never by aero's
    decoder."""
    from . import divergences as dv
    from .sdm import data_accesses
    from .sdm import decode as sdm_decode

    if rec.paging is None or rec.before_memory is None or rec.ref.exception is not None:
        return False
    d = sdm_decode(rec.code, rec.mode != "real")
    if d.opcode != 0xC8 or not dv._valid(d, rec):
        return False
    segs = dv._segs(rec)
    accesses = data_accesses(d, rec.before, dv._stack32(segs), rec.mode == "real")
    if not accesses or dv._segment_fault_predicted(rec, d) is not None:
        return False
    final = accesses[-1]
    lin = dv._linear(segs, "ss", final.offset)
    ends = (lin, (lin + final.size - 1) & 0xFFFFFFFF)
    for a in accesses[:-1]:
        x = dv._linear(segs, a.seg, a.offset)
        if any(dv._pf_code(rec, y, "w" in a.kind) is not None
               for y in (x, (x + a.size - 1) & 0xFFFFFFFF)):
            return False
    if rec.aero.exception == dv.EXC_PF:
        faults = [(y, dv._pf_code(rec, y, True)) for y in ends]
        first = next(((y, c) for y, c in faults if c is not None), None)
        if first is None:
            return False
        y, code = first
        cr2 = y if y == lin else y & ~0xFFF
        return (rec.aero.cr2 == cr2 and dv._faulted_cleanly(rec, dv.EXC_PF, None)
                and rec.aero.error_code == code)
    if rec.aero.exception is not None or any(dv._pf_code(rec, y, True) for y in ends):
        return False
    changes, stored, _slot = dv.enter_operation(rec, d)
    if not (dv._regs_are(rec, changes) and dv._memory_as_before(rec, stored)):
        return False
    entries = {e + k for y in ends for e in dv._entries(rec, y) for k in range(4)}
    if not rec.mismatches:
        return False
    for m in rec.mismatches:
        if not m.field.startswith("mem:") or int(m.field[4:], 16) not in entries:
            return False
        if (int(m.aero) ^ int(m.ref)) & ~(dv.PTE_A | dv.PTE_D) or not int(m.aero) & dv.PTE_A:
            return False
    return True


KNOWN_QEMU_DIVERGENCES: tuple[KnownQemuDivergence, ...] = _from_unicorn(SHARED_WITH_UNICORN) + (
    KnownQemuDivergence(
        "bswap-16",
        "BSWAP with a 16-bit operand: QEMU's result differs from aero's (undefined)",
        "Intel SDM Vol. 2A 'BSWAP': 'When the BSWAP instruction references a 16-bit "
        "register, the result is undefined.' Neither value is wrong; the low word of the "
        "destination is left out of the regression case.",
        _bswap16),
    KnownQemuDivergence(
        "enter-final-check",
        "ENTER does not check a write at the final stack pointer",
        "Intel SDM Vol. 2 'ENTER': 'The ENTER instruction causes a page fault whenever a "
        "write using the final value of the stack pointer (within the current stack "
        "segment) would do so'; Protected Mode Exceptions: '#PF(fault-code) If a page "
        "fault occurs or if a write using the final value of the stack pointer (within the "
        "current stack segment) would cause a page fault'. The check translates SS:(E)SP "
        "after the allocation as a write of the operand size, which sets the accessed flag "
        "of the entries it uses (Vol. 3A 4.8); aero's check sets the dirty flag too, as a "
        "locked read-for-write would (the SDM does not say whether a check that stores "
        "nothing sets it, so the matcher accepts either). QEMU's ENTER (gen_enter) stores "
        "the frame and sets ESP without that check: no #PF when the final stack page is not "
        "present or not writable, and no accessed bit for it. (A final stack pointer beyond "
        "the segment limit is the SDM model's last ENTER access and falls under "
        "'segment-checks'.)",
        _enter_final_check),
)


def explain(rec: StepRecord) -> KnownQemuDivergence | None:
    """The known QEMU divergence that explains this step record, if any."""
    return next((k for k in KNOWN_QEMU_DIVERGENCES if k.matches(rec)), None)
