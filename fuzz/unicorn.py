"""Unicorn (QEMU's TCG CPU, in-process) as a reference backend, and the catalogue of the
cases where it deviates from the architecture.

Invariants:

* :meth:`UnicornCPU.load` makes Unicorn's state bit-identical to the scenario: the CPU
  context is restored from a clean snapshot first (QEMU remembers the last undelivered
  exception in ``old_exception`` and would turn the next fault into #DF), the whole RAM
  is rewritten and the translation cache flushed (Unicorn does not invalidate translated
  code on ``mem_write``).
* :meth:`UnicornCPU.step` executes exactly one instruction (one iteration of a REP string
  instruction, like aero's tick). Exceptions arrive through the interrupt hook, which
  records the vector and stops; #UD arrives as ``UC_ERR_INSN_INVALID``. Unicorn does not
  deliver either through the IVT/IDT: EIP stays at the faulting instruction (faults) or
  after it (INT n, INT3, INTO), nothing is pushed.
* ``pm32-paging``: :meth:`UnicornCPU.load` loads the segments at CPL 0 with paging off;
  a CPL 3 scenario then enters ring 3 with an IRET executed in a stub page outside RAM
  (Unicorn checks segment loads against the CPL, so ring 3 cannot be written directly);
  CR4, CR3 and CR0 (PG, WP) come last and QEMU's TLB is flushed. The accessed and dirty
  bits QEMU writes are not memory accesses its hooks report, so the paging structures are
  read back after every step. A step that writes a paging structure is not comparable
  (without INVLPG the architecture lets the TLB keep the old entry).
* Error codes: Unicorn's interrupt hook gives only the vector. The error code QEMU
  computed is read from the saved CPU context at an offset found at start-up by raising
  four page faults with distinct, known error codes (:func:`error_code_offset`); CR2 is
  an ordinary register.
* Every entry of :data:`KNOWN_DIVERGENCES` (:mod:`aero.fuzz.divergences`) is a case where
  Unicorn is wrong, decided with the Intel SDM, with a matcher that checks aero's whole
  state against an SDM model independent of aero. docs/known-divergences.md mirrors it.
"""

from __future__ import annotations

import functools

import numpy as np
from aero.fuzz.difftest import (
    CR0_PM,
    CR0_REAL,
    ERROR_CODE_VECTORS,
    EXC_PF,
    GDT_BASE,
    GDT_PAGING_BYTES,
    GPRS,
    PD_ADDR,
    PT_ADDR,
    RAM_SIZE,
    SEGS,
    USER_CODE_SEL,
    USER_DATA_SEL,
    Scenario,
    StepResult,
    is_pm,
)
from unicorn import (
    UC_ARCH_X86,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_MEM_WRITE,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_16,
    UC_MODE_32,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from .sdm import STRING_OPS
from .sdm import decode as sdm_decode

__all__ = ["CODE_SEL_CPL", "DATA_SEL_CPL", "EXC_DB", "EXC_UD", "KNOWN_DIVERGENCES",
           "KnownDivergence", "PAGING_TABLES", "STUB_ADDR", "STUB_FRAME", "UnicornCPU",
           "error_code_offset", "explain", "forget_exception", "old_exception_offset",
           "sub_flags"]

_GPR = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in GPRS}
_SEG = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in SEGS}
EXC_DB = 1
EXC_UD = 6
# A page outside RAM for the ring-3 entry stub (pm32-paging): an IRET and its frame.
STUB_ADDR = 0x7FFF0000
STUB_FRAME = STUB_ADDR + 0x800
PAGING_TABLES = (PD_ADDR, PT_ADDR + 0x1000)  # [start, end) of the paging structures


def _write_segments_cpl0(uc: Uc, regs: dict[str, int], user: bool) -> None:
    # SS first: in protected mode it sets the CPL the other loads are checked against.
    for s in ("ss", "cs", "ds", "es", "fs", "gs"):
        sel = regs[s] & 0xFFFF
        if user:
            sel = 0x08 if s == "cs" else 0x10
        uc.reg_write(_SEG[s], sel)


def _enter_ring3(uc: Uc, regs: dict[str, int]) -> None:
    """IRET from ring 0 to CS:EIP at CPL 3 with the scenario's EFLAGS, SS:ESP and data
    segments, paging still off (the stub page lies outside RAM)."""
    frame = b"".join(v.to_bytes(4, "little") for v in (
        regs["eip"], regs["cs"] & 0xFFFF, regs["eflags"], regs["esp"], regs["ss"] & 0xFFFF))
    uc.mem_write(STUB_FRAME, frame)
    uc.mem_write(STUB_ADDR, b"\xcf")  # IRETD
    uc.reg_write(X.UC_X86_REG_ESP, STUB_FRAME)
    uc.emu_start(STUB_ADDR, regs["eip"])
    if uc.reg_read(X.UC_X86_REG_CS) != regs["cs"] & 0xFFFF:
        raise RuntimeError("Unicorn did not enter ring 3")
    for s in ("ds", "es", "fs", "gs"):
        uc.reg_write(_SEG[s], regs[s] & 0xFFFF)


@functools.cache
def error_code_offset() -> int | None:
    """Where QEMU keeps the last exception's error code in Unicorn's saved context: the one
    offset holding the error code of each of four page faults (not present, read, at CPL
    3; write to a read-only user page at CPL 3; supervisor page read at CPL 3; not-present
    write at CPL 0). None when no single offset fits (then error codes are not compared)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    uc.mem_map(STUB_ADDR, 0x1000)
    uc.hook_add(UC_HOOK_INTR, lambda u, _n, _d: u.emu_stop())
    clean = uc.context_save()
    uc.mem_write(GDT_BASE, GDT_PAGING_BYTES)
    pt = b"".join(((i << 12) | (0x7 if i < 16 else 0)).to_bytes(4, "little")
                  for i in range(1024))
    contexts: list[tuple[bytes, int]] = []
    for cpl, flags, code, expected in ((3, 0, b"\x8b\x03", 4), (3, 5, b"\x89\x03", 7),
                                       (3, 3, b"\x8b\x03", 5), (0, 0, b"\x89\x03", 2)):
        uc.context_restore(clean)
        uc.mem_write(0x1000, (0x2000 | 7).to_bytes(4, "little") + bytes(4092))
        uc.mem_write(0x2000, pt[:0x20] + (0x8000 | flags).to_bytes(4, "little") + pt[0x24:])
        uc.mem_write(0x4000, code)
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PM)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_BASE, len(GDT_PAGING_BYTES) - 1, 0))
        regs = {"eip": 0x4000, "eflags": 2, "esp": 0x6000, "cs": CODE_SEL_CPL[cpl],
                "ss": DATA_SEL_CPL[cpl], "ds": DATA_SEL_CPL[cpl], "es": DATA_SEL_CPL[cpl],
                "fs": DATA_SEL_CPL[cpl], "gs": DATA_SEL_CPL[cpl]}
        _write_segments_cpl0(uc, regs, cpl == 3)
        if cpl == 3:
            _enter_ring3(uc, regs)
        else:
            uc.reg_write(X.UC_X86_REG_EIP, 0x4000)
        uc.reg_write(X.UC_X86_REG_EBX, 0x8010)
        uc.reg_write(X.UC_X86_REG_CR3, 0x1000)
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PM | 0x80000000)
        try:
            uc.emu_start(0x4000, 0x4002)
        except UcError:
            return None
        contexts.append((bytes(uc.context_save()), expected))
    size = min(len(c) for c, _ in contexts)
    fits = [o for o in range(0, size - 3, 4)
            if all(int.from_bytes(c[o:o + 4], "little") == e for c, e in contexts)]
    return fits[0] if len(fits) == 1 else None


@functools.cache
def old_exception_offset() -> int | None:
    """Where QEMU keeps ``old_exception`` (the last exception not yet delivered, -1 when
    none) in Unicorn's saved context: the one offset holding -1 in a clean context and after
    a NOP, 0 after a #DE and 13 after a #GP. None when no single offset fits."""
    def after(code: bytes, regs: dict[int, int]) -> tuple[bytes, bytes]:
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x10000)
        uc.hook_add(UC_HOOK_INTR, lambda u, _n, _d: u.emu_stop())
        clean = bytes(uc.context_save())
        uc.mem_write(GDT_BASE, GDT_PAGING_BYTES)
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PM)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_BASE, len(GDT_PAGING_BYTES) - 1, 0))
        _write_segments_cpl0(uc, {"ss": 0x10, "cs": 0x08, "ds": 0x10, "es": 0x10, "fs": 0x10,
                                  "gs": 0x10}, False)
        for reg, v in regs.items():
            uc.reg_write(reg, v)
        uc.mem_write(0x4000, code)
        try:
            uc.emu_start(0x4000, 0x4000 + len(code))
        except UcError:
            pass
        return clean, bytes(uc.context_save())

    clean, de = after(b"\xf7\xf1", {X.UC_X86_REG_ECX: 0, X.UC_X86_REG_ESP: 0x8000})
    _, gp = after(b"\x8e\xd8", {X.UC_X86_REG_EAX: 0x1234, X.UC_X86_REG_ESP: 0x8000})
    _, nop = after(b"\x90", {X.UC_X86_REG_ESP: 0x8000})

    def u32(c: bytes, o: int) -> int:
        return int.from_bytes(c[o:o + 4], "little")

    size = min(len(c) for c in (clean, de, gp, nop))
    fits = [o for o in range(0, size - 3, 4)
            if (u32(clean, o), u32(de, o), u32(gp, o), u32(nop, o))
            == (0xFFFFFFFF, 0, 13, 0xFFFFFFFF)]
    return fits[0] if len(fits) == 1 else None


def forget_exception(uc: Uc) -> None:
    """Set QEMU's ``old_exception`` back to -1: an exception the harness does not report
    (it belongs to the next instruction) must not turn that instruction's own fault into a
    double fault."""
    off = old_exception_offset()
    if off is None:
        return
    ctx = uc.context_save()
    raw = bytearray(bytes(ctx))
    raw[off:off + 4] = b"\xff\xff\xff\xff"
    fresh = type(ctx).__new__(type(ctx))
    fresh.__setstate__((bytes(raw), ctx.size, ctx.arch, ctx.mode))
    uc.context_restore(fresh)


CODE_SEL_CPL = {0: 0x08, 3: USER_CODE_SEL}
DATA_SEL_CPL = {0: 0x10, 3: USER_DATA_SEL}


class UnicornCPU:
    """Unicorn as a difftest backend for one mode (``real``, ``pm32`` or ``pm32-paging``).

    One instance is reused for many scenarios; each :meth:`load` resets it completely.
    """

    def __init__(self, mode: str, trace_reads: bool = False) -> None:
        self.mode = mode
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32 if is_pm(mode) else UC_MODE_16)
        self.uc.mem_map(0, RAM_SIZE)
        self.paging = mode == "pm32-paging"
        if self.paging:
            self.uc.mem_map(STUB_ADDR, 0x1000)
        self._code_offset = error_code_offset()
        self._vector: int | None = None
        self._accesses: list[tuple[str, int, int]] = []
        self._size: int | None = None
        self._start, self._fires = 0, 0
        self._soft_int = False
        self.uc.hook_add(UC_HOOK_INTR, self._on_intr)
        self.uc.hook_add(UC_HOOK_CODE, self._on_code)
        self.uc.hook_add(UC_HOOK_MEM_WRITE, self._on_mem)
        self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        # A read hook makes Unicorn lose the EIP that a real-mode RETF loads (the hook
        # machinery restores EIP before the CS pop), so reads are traced only on demand.
        self._read_hook: int | None = None
        self.trace_reads = trace_reads
        self._clean = self.uc.context_save()
        self._pre_context = self._clean
        self._shadow = np.zeros(RAM_SIZE, dtype=np.uint8)
        self._undo: list[tuple[int, bytes]] | None = None
        self._pending_trap = False

    @property
    def trace_reads(self) -> bool:
        return self._read_hook is not None

    @trace_reads.setter
    def trace_reads(self, on: bool) -> None:
        # With paging, reads are always traced: they tell which paging entries the
        # instruction itself used (see _undo_target_fetch).
        on = on or self.paging
        if on and self._read_hook is None:
            self._read_hook = self.uc.hook_add(UC_HOOK_MEM_READ, self._on_mem)
        elif not on and self._read_hook is not None:
            self.uc.hook_del(self._read_hook)
            self._read_hook = None

    # ---- hooks ---------------------------------------------------------------------------
    def _on_intr(self, uc: Uc, intno: int, _user: object) -> None:
        if self._vector is None:
            self._vector = intno
        uc.emu_stop()

    def _on_code(self, uc: Uc, addr: int, size: int, _user: object) -> None:
        """Stop at the first instruction boundary after the one being stepped: the next
        instruction, a branch target, or this instruction again (the next iteration of a
        REP string instruction, or a branch to itself)."""
        self._fires += 1
        if addr != self._start or self._fires > 1:
            uc.emu_stop()
            return
        # Unicorn reports a placeholder size (> 15) for instructions it cannot decode.
        self._size = size if size <= 15 else None

    def _on_mem(self, _uc: Uc, access: int, addr: int, size: int, _v: int, _u: object) -> None:
        self._accesses.append(("w" if access == UC_MEM_WRITE else "r", addr, size))

    def _on_unmapped(self, _uc: Uc, access: int, addr: int, size: int, _v: int,
                     _u: object) -> bool:
        self._accesses.append(("w" if access == UC_MEM_WRITE_UNMAPPED else "r", addr, size))
        return False

    # ---- state ---------------------------------------------------------------------------
    def load(self, scenario: Scenario, image: np.ndarray) -> None:
        if scenario.mode != self.mode:
            raise ValueError(f"this backend runs {self.mode} code, not {scenario.mode}")
        uc, regs = self.uc, scenario.regs
        self._pending_trap = False
        uc.context_restore(self._clean)
        uc.mem_write(0, image.tobytes())
        uc.ctl_flush_tb()
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PM if is_pm(self.mode) else CR0_REAL)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, regs["gdtr_base"], regs["gdtr_limit"], 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, regs["idtr_base"], regs["idtr_limit"], 0))
        # LDTR and TR as aero's reset state has them (Intel SDM Vol. 3A, 'Processor State
        # Following Power-up, Reset, or INIT': base 0, limit FFFFh, present); QEMU's
        # flags layout.
        uc.reg_write(X.UC_X86_REG_LDTR, (0, 0, 0xFFFF, 0x8200))
        uc.reg_write(X.UC_X86_REG_TR, (0, 0, 0xFFFF, 0x8B00))
        paging = scenario.paging
        user = paging is not None and paging.cpl == 3
        _write_segments_cpl0(uc, regs, user)
        for n in GPRS:
            uc.reg_write(_GPR[n], regs[n] & 0xFFFFFFFF)
        if user:
            self._start, self._fires = STUB_ADDR, 0
            _enter_ring3(uc, regs)
            self._accesses = []
        else:
            uc.reg_write(X.UC_X86_REG_EFLAGS, regs["eflags"])
            uc.reg_write(X.UC_X86_REG_EIP, regs["eip"])
        if paging is not None:
            uc.reg_write(X.UC_X86_REG_CR4, paging.cr4)
            uc.reg_write(X.UC_X86_REG_CR3, paging.cr3)
            uc.reg_write(X.UC_X86_REG_CR0, paging.cr0)
            uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
            # The IRET run translated the block at CS:EIP without paging; QEMU would reuse
            # it without checking the page's rights.
            uc.ctl_flush_tb()
        self._shadow = image.copy()
        self._undo = None

    def adopt(self, regs: dict[str, int], memory: list[tuple[int, bytes]]) -> None:
        for k, v in regs.items():
            reg = _GPR.get(k) or {"eflags": X.UC_X86_REG_EFLAGS, "eip": X.UC_X86_REG_EIP}[k]
            self.uc.reg_write(reg, v & 0xFFFFFFFF)
        for addr, data in memory:
            self.uc.mem_write(addr, data)
            self._shadow[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)
        if memory:
            self.uc.ctl_flush_tb()

    def regs(self) -> dict[str, int]:
        uc = self.uc
        out = {n: uc.reg_read(_GPR[n]) & 0xFFFFFFFF for n in GPRS}
        out["eip"] = uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFFFFFF
        out["eflags"] = uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF
        out.update({s: uc.reg_read(_SEG[s]) & 0xFFFF for s in SEGS})
        _, gb, gl, _ = uc.reg_read(X.UC_X86_REG_GDTR)
        _, ib, il, _ = uc.reg_read(X.UC_X86_REG_IDTR)
        out.update(gdtr_base=gb, gdtr_limit=gl, idtr_base=ib, idtr_limit=il)
        return out

    def memory(self) -> np.ndarray:
        """Unicorn's memory: a copy kept current from the write hook (reading all of RAM
        back after every instruction would cost more than executing it)."""
        return self._shadow

    def read_all(self) -> np.ndarray:
        """All of Unicorn's RAM, read back (to check :meth:`memory`)."""
        return np.frombuffer(bytes(self.uc.mem_read(0, RAM_SIZE)), dtype=np.uint8)

    def _apply_writes(self, accesses: list[tuple[str, int, int]],
                      undo: list[tuple[int, bytes]]) -> None:
        for kind, addr, n in accesses:
            lo, hi = max(addr, 0), min(addr + n, RAM_SIZE)
            if kind != "w" or lo >= hi:
                continue
            undo.append((lo, self._shadow[lo:hi].tobytes()))
            self._shadow[lo:hi] = np.frombuffer(bytes(self.uc.mem_read(lo, hi - lo)),
                                                dtype=np.uint8)

    def step(self) -> StepResult:
        """Execute one instruction at CS:EIP (one iteration of a REP string instruction).

        Unicorn runs from CS:EIP with the end address set to the next sequential
        instruction, so QEMU translates exactly this instruction: a write elsewhere in the
        page then cannot invalidate the running translation. (With Unicorn's instruction
        count instead, QEMU translates a long block; a write into it makes QEMU restart
        the instruction after it has already updated the flags, and the count stops it
        before the second attempt.) A code hook stops at the next instruction boundary
        (a branch target, the next REP iteration). An instruction that writes its own
        bytes still makes QEMU restart it with partially updated state: such a step carries
        ``error="self-modifying code"`` (not comparable). The last iteration of a REP
        string instruction is completed as described in :meth:`_rep_exhausted`.
        """
        if self._pending_trap:
            # The single-step trap of the previous instruction, taken at this boundary.
            self._pending_trap = False
            return StepResult(self.regs(), EXC_DB, self._shadow)
        before = self.regs()
        self._pre_context = self.uc.context_save()
        undo: list[tuple[int, bytes]] = []
        res = self._step_once()
        self._apply_writes(res.accesses, undo)
        if res.error is None and self._rep_exhausted(res, before):
            # QEMU leaves EIP on a REP string instruction after the iteration that
            # exhausts the count and leaves it in a separate pass that touches nothing
            # else; architecturally that iteration completes the instruction.
            accesses = res.accesses
            res = self._step_once()
            self._apply_writes(res.accesses, undo)
            res.accesses = accesses + res.accesses
        if self.paging:
            self._undo_target_fetch(res, before)
            lo, hi = PAGING_TABLES
            undo.append((lo, self._shadow[lo:hi].tobytes()))
            self._shadow[lo:hi] = np.frombuffer(bytes(self.uc.mem_read(lo, hi - lo)),
                                                dtype=np.uint8)
            if res.error is None and any(
                    k == "w" and a < hi and lo < a + n for k, a, n in res.accesses):
                res.error = "paging-structure write"
        if (res.exception in ERROR_CODE_VECTORS and not self._soft_int
                and self._code_offset is not None):
            ctx = bytes(self.uc.context_save())
            res.error_code = int.from_bytes(ctx[self._code_offset:self._code_offset + 4],
                                            "little")
        if res.exception == EXC_PF:
            res.cr2 = self.uc.reg_read(X.UC_X86_REG_CR2) & 0xFFFFFFFF
        if res.exception == EXC_DB and before["eflags"] & 0x100 and not self._soft_int:
            # A single-step trap (TF was set; DR7 is clear, INT1 is #UD in Unicorn, and
            # INT n/INT3/INTO report their own vector): the instruction completed. aero
            # takes the trap at the next instruction boundary, so the next step reports it.
            res.exception = None
            self._pending_trap = True
        self._undo = undo
        return res

    def _undo_target_fetch(self, res: StepResult, before: dict[str, int]) -> None:
        """When EIP has moved on, QEMU has already begun to translate the code there (the
        code hook that stops it runs inside the translated block, and the block may run on
        into the next page): it has fetched that code, setting accessed bits, or raised its
        #PF with this instruction completed. Those fetches belong to later instructions:
        report no exception, and clear again every accessed bit it set in an entry that
        maps no page this instruction used (its own bytes, its data accesses)."""
        uc = self.uc
        moved = res.regs["eip"] != before["eip"] or res.regs["cs"] != before["cs"]
        if res.error is not None or not moved:
            return
        if res.exception == EXC_PF:
            res.exception = None
            forget_exception(uc)
        elif res.exception is not None:
            return
        start = before["eip"]  # flat code segment
        length = sdm_decode(bytes(uc.mem_read(start, 15)), True).length or 15
        length = min(length, 15)
        used = [(start, length)] + [(a, n) for _k, a, n in res.accesses]
        used_pages = {p for a, n in used for p in range(a >> 12, ((a + n - 1) >> 12) + 1)}
        used_pdes = {p >> 10 for p in used_pages}
        old = self._shadow
        lo, hi = PAGING_TABLES
        new = np.frombuffer(bytes(uc.mem_read(lo, hi - lo)), dtype=np.uint8)
        changed = np.flatnonzero((new & 0x20) & ~(old[lo:hi] & 0x20))
        fixed = False
        for off in changed.tolist():
            if off % 4:
                continue
            a = lo + off
            if a < PT_ADDR:
                unused = (a - PD_ADDR) // 4 not in used_pdes
            else:
                unused = (a - PT_ADDR) // 4 not in used_pages
            if unused:
                uc.mem_write(a, bytes([int(new[off]) & ~0x20]))
                fixed = True
        if fixed:
            uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def _step_once(self) -> StepResult:
        uc = self.uc
        self._vector, self._size, self._accesses = None, None, []
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        cs = uc.reg_read(X.UC_X86_REG_CS)
        cs_base = 0 if is_pm(self.mode) else (cs & 0xFFFF) << 4
        start = cs_base + eip
        window = bytes(uc.mem_read(start, max(0, min(15, RAM_SIZE - start))))
        info = sdm_decode(window, is_pm(self.mode))
        length = info.length if info.length is not None and info.length <= 15 else 1
        # INT n, INT3, INTO, INT1: software interrupts (the SDM model's opcodes).
        self._soft_int = info.defined and info.opcode in (0xCD, 0xCC, 0xCE, 0xF1)
        self._start, self._fires = start, 0
        error: str | None = None
        try:
            uc.emu_start(start, start + length)
        except UcError as exc:
            if exc.errno == UC_ERR_INSN_INVALID:
                self._vector = EXC_UD
                if info.defined and info.opcode == 0xCD and info.imm == 6:
                    # Unicorn reports any vector 6 as an invalid instruction and leaves
                    # EIP on it; INT 6 is a valid software interrupt (EIP after it).
                    uc.reg_write(X.UC_X86_REG_EIP, (eip + length) & 0xFFFFFFFF)
            elif exc.errno == UC_ERR_FETCH_UNMAPPED and (
                    uc.reg_read(X.UC_X86_REG_EIP) != eip or uc.reg_read(X.UC_X86_REG_CS) != cs):
                pass  # a completed branch whose target Unicorn began to translate
            elif exc.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED,
                               UC_ERR_FETCH_UNMAPPED):
                error = "unmapped"
            else:
                error = str(exc)
        if error is None and any(k == "w" and a < start + length and start < a + n
                                 for k, a, n in self._accesses):
            error = "self-modifying code"
        return StepResult(self.regs(), self._vector, self._shadow, list(self._accesses),
                          self._size if self._vector is None else None, error)

    def retrace(self) -> list[tuple[str, int, int]]:
        """The memory accesses (reads included) of the last step, by running it again
        from the state before it. The backend is left in the state after that rerun
        (only :meth:`load` makes it usable again)."""
        if self._undo is None:
            return []
        for addr, data in reversed(self._undo):
            self.uc.mem_write(addr, data)
        self._undo = None
        self.uc.context_restore(self._pre_context)
        self.uc.ctl_flush_tb()
        was = self.trace_reads
        self.trace_reads = True
        try:
            return self._step_once().accesses
        finally:
            self.trace_reads = was

    def _rep_exhausted(self, res: StepResult, before: dict[str, int]) -> bool:
        if res.exception is not None or res.error is not None:
            return False
        if res.regs["eip"] != before["eip"] or res.regs["cs"] != before["cs"]:
            return False
        cs_base = 0 if is_pm(self.mode) else (before["cs"] & 0xFFFF) << 4
        info = sdm_decode(bytes(self.uc.mem_read(cs_base + before["eip"], 15)),
                          is_pm(self.mode))
        if not info.rep or info.opcode not in STRING_OPS:
            return False
        return res.regs["ecx"] & (0xFFFFFFFF if info.asz32 else 0xFFFF) == 0


# ---- known divergences ---------------------------------------------------------------------
# The catalogue and its matchers live in aero.fuzz.divergences, which judges every case with
# an SDM model independent of aero (aero.fuzz.sdm); re-exported here.
from .divergences import KNOWN_DIVERGENCES, KnownDivergence, explain, sub_flags  # noqa: E402
