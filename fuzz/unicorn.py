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
* Every entry of :data:`KNOWN_DIVERGENCES` is a case where Unicorn is wrong, decided with
  the Intel SDM, with a matcher precise enough not to hide an aero bug of another kind.
  docs/known-divergences.md mirrors this list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

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
    InsnInfo,
    Scenario,
    StepRecord,
    StepResult,
    decode,
    effective_offset,
    is_pm,
    page_fault_code,
    paging_entries,
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

__all__ = ["CODE_SEL_CPL", "DATA_SEL_CPL", "EXC_DB", "EXC_UD", "FAR_RETURNS", "KNOWN_DIVERGENCES",
           "KnownDivergence", "NEAR_BRANCHES", "PAGING_TABLES", "STACK_HANDLERS",
           "STRING_HANDLERS", "STUB_ADDR", "STUB_FRAME", "UnicornCPU", "data_segments",
           "error_code_offset", "explain", "sub_flags"]

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
        elif res.exception is not None:
            return
        start = before["eip"]  # flat code segment
        length = decode(bytes(uc.mem_read(start, 15)), True).length or 15
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
        info = decode(window, is_pm(self.mode))
        length = info.length or 1
        self._soft_int = info.row is not None and info.row.handler in (
            "int_Ib", "int3", "into", "int1")
        self._start, self._fires = start, 0
        error: str | None = None
        try:
            uc.emu_start(start, start + length)
        except UcError as exc:
            if exc.errno == UC_ERR_INSN_INVALID:
                self._vector = EXC_UD
                if info.row is not None and info.row.handler == "int_Ib" and info.imm == 6:
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
        info = decode(bytes(self.uc.mem_read(cs_base + before["eip"], 15)),
                      is_pm(self.mode))
        if not info.rep or info.row is None or "str" not in info.row.flags:
            return False
        return res.regs["ecx"] & (0xFFFFFFFF if info.asz32 else 0xFFFF) == 0


# ---- known divergences ---------------------------------------------------------------------

@dataclass(frozen=True)
class KnownDivergence:
    """A documented case where Unicorn deviates from the architecture.

    ``matches`` receives the step record of the divergence and must recognise this case
    and nothing else.
    """

    key: str
    title: str
    evidence: str
    matches: Callable[[StepRecord], bool]


STACK_HANDLERS = frozenset({
    "push_Zv", "pop_Zv", "push_Ev", "pop_Ev", "push_Iz", "push_Ib", "push_sreg", "pop_sreg",
    "pusha", "popa", "pushf", "popf", "enter", "leave", "call_Jz", "call_Ev", "callf_Ap",
    "callf_Mp", "ret", "ret_Iw", "retf", "iret"})
STRING_HANDLERS = frozenset({"movs", "cmps", "stos", "lods", "scas", "ins", "outs"})


def data_segments(info: InsnInfo) -> set[str]:
    """The segments an instruction's data accesses can use."""
    segs: set[str] = set()
    row = info.row
    if row is None:
        return segs
    if info.has_memory_operand or row.handler in ("mov_ALOb", "mov_eAXOv", "mov_ObAL",
                                                  "mov_OveAX", "xlat"):
        segs.add(info.seg)
    if row.handler in STACK_HANDLERS:
        segs.add("ss")
    if row.handler in STRING_HANDLERS:
        segs.update({info.seg_override or "ds", "es"})
    return segs


def _segment_violations(rec: StepRecord) -> set[int]:
    """The exception vectors of the accesses the reference made (or tried) that the
    segment rules forbid, as aero's segment caches before the instruction define them:
    a byte beyond the limit of a segment the instruction uses, an access through a null
    or not-present segment, a write through a code or read-only segment, a read through
    an execute-only one. #SS(0) for SS, #GP(0) otherwise."""
    vectors: set[int] = set()
    protected = rec.segs["cs"].attr & 0x4000 != 0  # 32-bit code: the pm32 environment
    accesses = list(rec.ref.accesses)
    if rec.ref.exception == EXC_PF and rec.ref.cr2 is not None:
        # The access that raised Unicorn's #PF (its kind from the error code's W/R bit).
        # Its kind: a write by the error code's W/R bit, or the read that opens a
        # read-modify-write (segment checks test the write before any access).
        row = rec.info.row
        size = 1 if row is None or any("b" in o for o in row.operands) else rec.info.opsize
        rmw = row is not None and rec.info.has_memory_operand and (
            "lock" in row.flags or row.handler.startswith("rot_") or row.handler == "shxd")
        write = bool((rec.ref.error_code or 0) & 2) or rmw
        accesses.append(("w" if write else "r", rec.ref.cr2, size))
    for kind, lin, size in accesses:
        for s in data_segments(rec.info):
            seg = rec.segs[s]
            attr = seg.attr
            off = (lin - seg.base) & 0xFFFFFFFF
            bad = off + size - 1 > seg.limit or (attr & 0x1C) == 0x14  # limit, expand-down
            if protected and not attr & 0x80:
                bad = True  # null or not present
            string_dst = s == "es" and rec.info.row is not None and (
                rec.info.row.handler in STRING_HANDLERS)
            if protected and (s == rec.info.seg or string_dst):
                code, rw = attr & 0x08, attr & 0x02
                bad |= bool(kind == "w" and (code or not rw))
                bad |= bool(kind == "r" and code and not rw)
            if bad:
                vectors.add(12 if s == "ss" else 13)
    return vectors


def _no_segment_checks(rec: StepRecord) -> bool:
    # Unicorn may fault afterwards for another reason (#DE on the value it read).
    return (rec.ref.exception != rec.aero.exception
            and rec.aero.exception in _segment_violations(rec))


def _icebp(rec: StepRecord) -> bool:
    return rec.info.opcode == 0xF1 and rec.aero.exception == 1 and rec.ref.exception == EXC_UD


NEAR_BRANCHES = frozenset({"jcc", "jmp_J", "jmp_Ev", "call_Jz", "call_Ev", "ret", "ret_Iw",
                           "loopcc", "jcxz"})
FAR_RETURNS = frozenset({"retf", "iret", "jmpf_Ap", "jmpf_Mp", "callf_Ap", "callf_Mp"})


def _no_cs_limit_check(rec: StepRecord) -> bool:
    row = rec.info.row
    if row is None or row.handler not in NEAR_BRANCHES | FAR_RETURNS:
        return False
    if rec.aero.exception != 13 or rec.ref.exception is not None:
        return False
    # The target Unicorn jumped to lies outside the code segment (real mode keeps the
    # 64 KB limit when CS is reloaded).
    return rec.ref.regs["eip"] > rec.segs["cs"].limit


def _enter_frame(rec: StepRecord) -> bool:
    info, b = rec.info, rec.before
    if info.row is None or info.row.handler != "enter":
        return False
    stack32 = bool(rec.segs["ss"].attr & 0x4000)
    if stack32 == info.osz32 or rec.aero.exception is not None or rec.ref.exception:
        return False
    # The SDM's frame pointer: (E)SP after pushing (E)BP; BP gets its low half only.
    size = 4 if info.osz32 else 2
    smask = 0xFFFFFFFF if stack32 else 0xFFFF
    esp = (b["esp"] & ~smask & 0xFFFFFFFF) | ((b["esp"] - size) & smask)
    ebp = esp if info.osz32 else (b["ebp"] & 0xFFFF0000) | (esp & 0xFFFF)
    if rec.aero.regs["ebp"] != ebp or rec.ref.regs["ebp"] & 0xFFFF != ebp & 0xFFFF:
        return False
    level = info.imm2 & 31
    slot = rec.segs["ss"].base + ((b["esp"] - size * (level + 1)) & smask)
    for m in rec.mismatches:
        if m.field.startswith("mem:"):
            if not (level and slot <= int(m.field[4:], 16) < slot + size):
                return False
        elif m.field != "ebp":
            return False
    return True


def _ret_imm_sign(rec: StepRecord) -> bool:
    info, b = rec.info, rec.before
    if info.row is None or info.row.handler != "ret_Iw" or info.imm < 0x8000:
        return False
    if not rec.segs["ss"].attr & 0x4000 or [m.field for m in rec.mismatches] != ["esp"]:
        return False
    popped = b["esp"] + info.opsize
    return (rec.aero.regs["esp"] == (popped + info.imm) & 0xFFFFFFFF
            and rec.ref.regs["esp"] == (popped + info.imm - 0x10000) & 0xFFFFFFFF)


def _lock_not_checked(rec: StepRecord) -> bool:
    info = rec.info
    illegal = info.row is None or "lock" not in info.row.flags or info.mod == 3
    return (info.lock and illegal and rec.aero.exception == EXC_UD
            and rec.ref.exception != EXC_UD)


def sub_flags(a: int, b: int, size: int) -> int:
    """CF PF AF ZF SF OF of ``a - b`` for an operand of ``size`` bytes."""
    bits = size * 8
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    a, b = a & mask, b & mask
    r = (a - b) & mask
    f = 0x1 if a < b else 0
    f |= 0x4 if bin(r & 0xFF).count("1") % 2 == 0 else 0
    f |= (a ^ b ^ r) & 0x10
    f |= 0x40 if r == 0 else 0
    f |= 0x80 if r & sign else 0
    f |= 0x800 if (a ^ b) & (a ^ r) & sign else 0
    return f


def _locked_neg(rec: StepRecord) -> bool:
    info = rec.info
    if not (info.lock and info.opcode in (0xF6, 0xF7) and info.reg == 3 and info.mod != 3):
        return False
    if any(m.field != "eflags" for m in rec.mismatches) or rec.aero.exception is not None:
        return False
    size = 1 if info.opcode == 0xF6 else info.opsize
    base = rec.segs[info.seg].base
    lin = (base + effective_offset(info, rec.before)) & 0xFFFFFFFF
    new = int.from_bytes(rec.aero.memory[lin:lin + size].tobytes(), "little")
    old = -new & ((1 << (8 * size)) - 1)
    arith = 0x8D5
    return (rec.aero.regs["eflags"] & arith == sub_flags(0, old, size)
            and rec.ref.regs["eflags"] & arith == sub_flags(0, new, size))


def _test_alias(rec: StepRecord) -> bool:
    # aero executes TEST, including any exception TEST raises (a memory operand beyond a
    # limit, an instruction longer than 15 bytes); Unicorn refuses the encoding first.
    info = rec.info
    return (info.opcode in (0xF6, 0xF7) and info.reg == 1 and rec.ref.exception == EXC_UD
            and rec.aero.exception != EXC_UD)


def _length_limit(rec: StepRecord) -> bool:
    return rec.info.length is None and rec.aero.exception == 13 and rec.ref.exception == EXC_UD


def _fetch_fault_report(rec: StepRecord) -> bool:
    """Both raise #PF on fetching the instruction; aero's CR2 is the first byte of it that
    cannot be fetched and aero's error code is the SDM's for that fetch; Unicorn reports
    another byte of the instruction and/or another error code; nothing else differs but
    the accessed bits of the entries that map the instruction."""
    pg = rec.paging
    if pg is None or rec.aero.exception != EXC_PF or rec.ref.exception != EXC_PF:
        return False
    start = rec.before["eip"]  # flat code segment
    n = rec.info.length or 15
    a_cr2, r_cr2 = rec.aero.cr2, rec.ref.cr2
    if a_cr2 is None or r_cr2 is None or not start <= r_cr2 < start + n:
        return False
    mem = rec.aero.memory
    user = rec.segs["cs"].selector & 3 == 3
    first_bad = next((a for a in range(start, start + n)
                      if page_fault_code(mem, pg, a, user, False) is not None), None)
    if first_bad is None or a_cr2 != first_bad:
        return False
    if rec.aero.error_code != page_fault_code(mem, pg, a_cr2, user, False):
        return False
    entries = set(paging_entries(mem, pg, start) + paging_entries(mem, pg, start + n - 1))
    for m in rec.mismatches:
        if m.field.startswith("mem:"):
            addr = int(m.field[4:], 16)
            if addr not in entries or (m.aero or 0) ^ (m.ref or 0) != 0x20:
                return False
        elif m.field not in ("cr2", "error_code"):
            return False
    return True


def _arpl_write(rec: StepRecord) -> bool:
    """ARPL with a memory destination whose RPL needs no adjustment (ZF = 0): Unicorn
    writes the unchanged selector back, which sets the dirty bit of its page (or raises
    the #PF of a read-only page)."""
    info, pg = rec.info, rec.paging
    if pg is None or info.opcode != 0x63 or info.mod == 3 or rec.aero.exception is not None:
        return False
    if rec.aero.regs["eflags"] & 0x40:
        return False
    lin = (rec.segs[info.seg].base + effective_offset(info, rec.before)) & 0xFFFFFFFF
    if rec.ref.exception == EXC_PF:  # the needless write hit a read-only page
        cr2 = rec.ref.cr2
        return (rec.ref.error_code or 0) & 2 != 0 and cr2 is not None and lin <= cr2 < lin + 2
    if rec.ref.exception is not None:
        return False
    entries = set(paging_entries(rec.aero.memory, pg, lin)
                  + paging_entries(rec.aero.memory, pg, lin + 1))
    return bool(rec.mismatches) and all(
        m.field.startswith("mem:") and int(m.field[4:], 16) in entries
        and (m.aero or 0) ^ (m.ref or 0) == 0x40 for m in rec.mismatches)


def _only_accessed_bits(rec: StepRecord, addrs: set[int], bit: int = 0x20) -> bool:
    return bool(rec.mismatches) and all(
        m.field.startswith("mem:") and int(m.field[4:], 16) in addrs
        and (m.aero or 0) ^ (m.ref or 0) == bit for m in rec.mismatches)


def _operand_addresses(rec: StepRecord) -> list[int]:
    """Linear addresses of an instruction's explicit memory operands: the ModRM operand,
    or DS:(E)SI and ES:(E)DI of a string instruction."""
    info = rec.info
    if info.row is not None and info.row.handler in STRING_HANDLERS:
        amask = 0xFFFFFFFF if info.asz32 else 0xFFFF
        return [(rec.segs[info.seg_override or "ds"].base + (rec.before["esi"] & amask))
                & 0xFFFFFFFF, (rec.segs["es"].base + (rec.before["edi"] & amask)) & 0xFFFFFFFF]
    if info.mod == 3:
        return []
    return [(rec.segs[info.seg].base + effective_offset(info, rec.before)) & 0xFFFFFFFF]


def _ud_operand_read(rec: StepRecord) -> bool:
    """An undefined encoding, or one with an illegal LOCK prefix, with a memory operand:
    aero raises #UD, Unicorn has read the operand first (the accessed bits of the entries
    that map it differ, or the read raised #PF)."""
    info, pg = rec.info, rec.paging
    if pg is None or rec.aero.exception != EXC_UD:
        return False
    bad_lock = info.lock and info.row is not None and (
        "lock" not in info.row.flags or info.mod == 3)
    if info.row is not None and not bad_lock:
        return False
    addrs = _operand_addresses(rec)
    if not addrs:
        return False
    if rec.ref.exception == EXC_PF:  # the operand read faulted first
        return rec.ref.cr2 is not None and any(a <= rec.ref.cr2 < a + 8 for a in addrs)
    if rec.ref.exception != EXC_UD:
        return False
    mem = rec.aero.memory
    entries = {e for a in addrs for x in (a, a + 3) for e in paging_entries(mem, pg, x)}
    return _only_accessed_bits(rec, entries)


def _faulting_rotate_flags(rec: StepRecord) -> bool:
    """A shift or rotate of memory whose write raises #PF on both sides: aero leaves
    EFLAGS as before the instruction, Unicorn has already set the rotate's flags."""
    info = rec.info
    if info.row is None or not info.row.handler.startswith("rot_") or info.mod == 3:
        return False
    return (rec.aero.exception == rec.ref.exception == EXC_PF
            and [m.field for m in rec.mismatches] == ["eflags"]
            and rec.aero.regs["eflags"] == rec.before["eflags"])


def _cmps_order(rec: StepRecord) -> bool:
    """CMPS with a faulting operand: aero reads DS:ESI first, Unicorn ES:EDI. Either both
    fault on the same operand and only the other operand's accessed bits differ, or
    (both operands faulting) aero reports DS:ESI and Unicorn ES:EDI."""
    info, pg = rec.info, rec.paging
    if pg is None or info.opcode not in (0xA6, 0xA7) or rec.aero.exception != EXC_PF:
        return False
    if rec.ref.exception != EXC_PF or rec.aero.cr2 is None or rec.ref.cr2 is None:
        return False
    amask = 0xFFFFFFFF if info.asz32 else 0xFFFF
    size = 1 if info.opcode == 0xA6 else info.opsize
    dst = (rec.segs["es"].base + (rec.before["edi"] & amask)) & 0xFFFFFFFF
    src = (rec.segs[info.seg_override or "ds"].base + (rec.before["esi"] & amask)) & 0xFFFFFFFF
    a_cr2, r_cr2 = rec.aero.cr2, rec.ref.cr2
    in_src = src <= a_cr2 < src + size
    if in_src and dst <= r_cr2 < dst + size and a_cr2 != r_cr2:
        return all(m.field in ("cr2", "error_code") for m in rec.mismatches)
    if a_cr2 != r_cr2:
        return False
    if dst <= a_cr2 < dst + size:
        other = src  # aero read DS:(E)SI, then faulted on ES:(E)DI
    elif in_src:
        other = dst  # aero faulted on DS:(E)SI; Unicorn had read ES:(E)DI
    else:
        return False
    mem = rec.aero.memory
    return _only_accessed_bits(rec, set(paging_entries(mem, pg, other)
                                        + paging_entries(mem, pg, other + size - 1)))


def _pusha_order(rec: StepRecord) -> bool:
    """PUSHA onto a page that faults: aero's CR2 is the first slot, in the SDM's push order
    (EAX at ESP - size first), that cannot be written; Unicorn's is another slot."""
    info, pg = rec.info, rec.paging
    if pg is None or info.row is None or info.row.handler != "pusha":
        return False
    if rec.aero.exception != EXC_PF or rec.ref.exception != EXC_PF:
        return False
    if [m.field for m in rec.mismatches] != ["cr2"]:
        return False
    size = info.opsize
    ss = rec.segs["ss"]
    smask = 0xFFFFFFFF if ss.attr & 0x4000 else 0xFFFF
    user = rec.segs["cs"].selector & 3 == 3
    slots = [(ss.base + ((rec.before["esp"] - size * (i + 1)) & smask)) & 0xFFFFFFFF
             for i in range(8)]
    for lin in slots:
        bad = next((a for a in range(lin, lin + size)
                    if page_fault_code(rec.aero.memory, pg, a, user, True) is not None), None)
        if bad is not None:
            r_cr2 = rec.ref.cr2
            return rec.aero.cr2 == bad and r_cr2 is not None and any(
                s <= r_cr2 < s + size for s in slots)
    return False


def _push_sreg_width(rec: StepRecord) -> bool:
    """PUSH Sreg with a 32-bit operand size whose slot's upper word lies on a page that
    cannot be written: aero writes the selector with a 16-bit move and completes, Unicorn
    writes 32 bits and raises that page's #PF."""
    info = rec.info
    if info.row is None or info.row.handler != "push_sreg" or not info.osz32:
        return False
    if rec.aero.exception is not None or rec.ref.exception != EXC_PF or rec.ref.cr2 is None:
        return False
    ss = rec.segs["ss"]
    smask = 0xFFFFFFFF if ss.attr & 0x4000 else 0xFFFF
    slot = (ss.base + ((rec.before["esp"] - 4) & smask)) & 0xFFFFFFFF
    return bool((rec.ref.error_code or 0) & 2) and slot + 2 <= rec.ref.cr2 < slot + 4


KNOWN_DIVERGENCES: tuple[KnownDivergence, ...] = (
    KnownDivergence(
        "segment-checks",
        "QEMU's TCG performs no segment-limit or segment-type checks on data accesses",
        "Intel SDM Vol. 3A 5.3 (Limit Checking): an access with any byte beyond the "
        "effective limit raises #GP(0), or #SS(0) through SS; real-address mode keeps the "
        "64 KB limits (Vol. 2 instruction pages, 'Real-Address Mode Exceptions': #GP/#SS "
        "'if a memory operand effective address is outside the CS/DS/ES/FS/GS/SS segment "
        "limit'); the hardware-captured 80286 data agrees (a word at offset FFFFh faults). "
        "Vol. 3A 5.4 (Type Checking) and the 'Protected Mode Exceptions' of every "
        "instruction: #GP(0) 'if the destination is located in a non-writable segment' and "
        "for a null segment selector. Unicorn performs the access (or reports unmapped "
        "memory when the linear address leaves RAM).",
        _no_segment_checks),
    KnownDivergence(
        "length-limit",
        "An invalid encoding longer than 15 bytes is #UD in Unicorn",
        "Intel SDM Vol. 2 2.1 ('The maximum length of an Intel 64 and IA-32 instruction "
        "remains 15 bytes') and Vol. 3A 6.9 'Priority Among Simultaneous Exceptions and "
        "Interrupts': among the faults from decoding the next instruction, 'instruction "
        "length > 15 bytes' (#GP) comes before 'invalid opcode' (#UD). Unicorn rejects the "
        "opcode before it has fetched the bytes that exceed the limit.",
        _length_limit),
    KnownDivergence(
        "icebp",
        "INT1 (F1, ICEBP) raises #UD in Unicorn",
        "Intel SDM Vol. 2 'INT n/INTO/INT3/INT1': 'The INT1 instruction also uses a one-byte "
        "opcode (F1) and generates a call to the debug exception handler' (vector 1, a "
        "trap). Unicorn reports an invalid instruction.",
        _icebp),
    KnownDivergence(
        "lock-prefix",
        "LOCK on an instruction that cannot be locked, or with a register destination, "
        "is accepted by Unicorn",
        "Intel SDM Vol. 2 'LOCK': 'An undefined opcode exception will also be generated if "
        "the LOCK prefix is used with any instruction not in the above list' and #UD 'if "
        "the LOCK prefix is used ... and the destination operand is not a memory operand' "
        "(Vol. 3A 9.1.2.2). Unicorn executes the instruction (QEMU checks LOCK only on "
        "some decoder paths).",
        _lock_not_checked),
    KnownDivergence(
        "test-alias",
        "F6 /1 and F7 /1 (aliases of TEST Eb,Ib / Ev,Iz) raise #UD in Unicorn",
        "Hardware: the captured 80286 conformance data (shared/conformance/sst80286-real, "
        "files F6.1 and F7.1, metadata status 'alias') executes them as TEST; the "
        "encoding is also TEST on every later Intel processor (the SDM opcode map leaves "
        "group 3 /1 blank rather than declaring it invalid). aero passes those tests.",
        _test_alias),
    KnownDivergence(
        "locked-neg-flags",
        "LOCK NEG computes the flags from the original operand instead of the result",
        "Intel SDM Vol. 2 'NEG': 'The CF flag set to 0 if the source operand is 0; "
        "otherwise it is set to 1. The OF, SF, ZF, AF, and PF flags are set according to "
        "the result' (DEST := -DEST, the flags of 0 - DEST). With LOCK, Unicorn's "
        "compare-and-swap loop leaves the old value where the flag computation expects the "
        "result, so its flags are those of 0 - result. The memory result is right.",
        _locked_neg),
    KnownDivergence(
        "code-segment-limit",
        "Near branches and far returns to an offset beyond the CS limit do not fault",
        "Intel SDM Vol. 2 'Jcc', 'JMP', 'CALL', 'RET', 'LOOP', 'IRET': 'IF tempEIP is not "
        "within code segment limit THEN #GP(0)'; in real-address mode '#GP if the offset "
        "being jumped to is beyond the limits of the CS segment'. A 32-bit operand size "
        "(66h) in 16-bit code produces such targets. Unicorn sets EIP beyond the limit.",
        _no_cs_limit_check),
    KnownDivergence(
        "enter-mixed-sizes",
        "ENTER whose operand size differs from the stack size sets the wrong frame pointer",
        "Intel SDM Vol. 2 'ENTER' pseudo-code: FrameTemp is the stack pointer after pushing "
        "(E)BP, then 'IF OperandSize = 32 THEN EBP := FrameTemp ... ELSE BP := "
        "FrameTemp[15:0]': the operand size picks the register width. Unicorn picks it "
        "with the stack size: a 16-bit ENTER on a 32-bit stack overwrites all of EBP, a "
        "32-bit ENTER on a 16-bit stack writes only BP (and pushes that FrameTemp).",
        _enter_frame),
    KnownDivergence(
        "ret-imm16-sign",
        "RET imm16 sign-extends its immediate",
        "Intel SDM Vol. 2 'RET': the imm16 operand is the number of bytes to release, "
        "'ESP := ESP + SRC' with SRC zero-extended on a 32-bit stack. Unicorn adds the "
        "sign-extended value, so immediates of 8000h and above shrink ESP by 64 KB.",
        _ret_imm_sign),
    KnownDivergence(
        "fetch-fault-report",
        "A page fault on instruction fetch reports the wrong CR2 and error code",
        "Intel SDM Vol. 3A 4.7 (Page-Fault Exceptions): CR2 receives the linear address "
        "that caused the fault (the first byte of the instruction that cannot be fetched), "
        "and the error code's P bit is 1 for a rights violation, U/S 1 for a CPL-3 access "
        "('describes the access causing the page-fault exception'), W/R 0 for a fetch. "
        "Unicorn reports CR2 at another byte of the instruction (its last) and error code "
        "0 (not present, supervisor), also for a fetch from a supervisor page at CPL 3.",
        _fetch_fault_report),
    KnownDivergence(
        "arpl-write",
        "ARPL writes its memory operand back when the RPL is not adjusted",
        "Intel SDM Vol. 2 'ARPL' operation: 'IF DEST[RPL] < SRC[RPL] THEN ZF := 1; "
        "DEST[RPL] := SRC[RPL]; ELSE ZF := 0; FI': the destination is written only when "
        "its RPL is raised. Unicorn stores the unchanged value, so the page's dirty bit "
        "(Vol. 3A 4.8: set on a write) is set where it must stay clear.",
        _arpl_write),
    KnownDivergence(
        "ud-operand-read",
        "Some #UD encodings (undefined, or with an illegal LOCK) read their memory operand "
        "first",
        "Intel SDM Vol. 3A 6.15 'Interrupt 6 - Invalid Opcode Exception (#UD)': a fault "
        "taken before the instruction executes; Vol. 3A 4.8: the accessed flag is set when "
        "an entry is used to translate an address, and an instruction that is not executed "
        "translates no operand. Unicorn (QEMU's decoder for groups 0F BA and FF) loads the "
        "operand of /0-/3 and /7 first, as it does for an instruction whose LOCK prefix is "
        "illegal: that sets the accessed bits that map the operand, or raises its #PF "
        "instead of #UD.",
        _ud_operand_read),
    KnownDivergence(
        "cmps-operand-order",
        "CMPS reads ES:EDI before DS:ESI",
        "Intel SDM Vol. 2 'CMPS' operation: 'temp := SRC1 - SRC2', SRC1 being DS:(E)SI: the "
        "first operand is read first, so when ES:(E)DI then faults (#PF) the page of "
        "DS:(E)SI has been accessed (Vol. 3A 4.8: its accessed bits are set). Unicorn "
        "loads ES:(E)DI first and faults before touching DS:(E)SI.",
        _cmps_order),
    KnownDivergence(
        "faulting-rotate-flags",
        "A shift or rotate of memory whose write faults has already changed EFLAGS",
        "Intel SDM Vol. 3A 6.5 (Exception Classifications): a fault is reported 'so that the "
        "instruction can be restarted ... the state of the processor ... restored to that "
        "prior to the beginning of execution of the faulting instruction'. Unicorn's "
        "RCL/RCR/shift helpers write the new flags into the CPU state before the store, "
        "and the #PF of the store leaves them there.",
        _faulting_rotate_flags),
    KnownDivergence(
        "pusha-order",
        "PUSHA raises the #PF of its last push first",
        "Intel SDM Vol. 2 'PUSHA/PUSHAD' operation: 'Temp := (ESP); Push(EAX); Push(ECX); "
        "... Push(EDI)': EAX is written first, at ESP - 4 (- 2 for PUSHA), so when the "
        "stack page cannot be written the #PF reports that slot in CR2 (Vol. 3A 4.7). "
        "Unicorn stores EDI, the lowest slot, first and reports its address.",
        _pusha_order),
    KnownDivergence(
        "push-sreg-width",
        "PUSH Sreg with a 32-bit operand size writes all four bytes of the slot",
        "Intel SDM Vol. 2 'PUSH': with a 32-bit operand size 'either a zero-extended value "
        "is pushed on the stack or the segment selector is written on the stack using a "
        "16-bit move. For the last case, all recent Core and Atom processors perform a "
        "16-bit move, leaving the upper portion of the stack location unmodified.' aero "
        "does the 16-bit move; Unicorn writes 32 bits, which raises a #PF when the upper "
        "word lies on a page that cannot be written (aero's push completes).",
        _push_sreg_width),
)


def explain(rec: StepRecord) -> KnownDivergence | None:
    """The known divergence that explains this step record, if any."""
    return next((k for k in KNOWN_DIVERGENCES if k.matches(rec)), None)
