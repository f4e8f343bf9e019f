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
* Every entry of :data:`KNOWN_DIVERGENCES` is a case where Unicorn is wrong, decided with
  the Intel SDM, with a matcher precise enough not to hide an aero bug of another kind.
  docs/known-divergences.md mirrors this list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from unicorn import (
    UC_ARCH_X86,
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

from aero.difftest import (
    CR0_PM,
    CR0_REAL,
    GPRS,
    RAM_SIZE,
    SEGS,
    InsnInfo,
    Scenario,
    StepRecord,
    StepResult,
    decode,
    effective_offset,
)

_GPR = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in GPRS}
_SEG = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in SEGS}
EXC_DB = 1
EXC_UD = 6


class UnicornCPU:
    """Unicorn as a difftest backend for one mode (``real`` or ``pm32``).

    One instance is reused for many scenarios; each :meth:`load` resets it completely.
    """

    def __init__(self, mode: str, trace_reads: bool = False) -> None:
        self.mode = mode
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32 if mode == "pm32" else UC_MODE_16)
        self.uc.mem_map(0, RAM_SIZE)
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
        uc.reg_write(X.UC_X86_REG_CR0, CR0_PM if self.mode == "pm32" else CR0_REAL)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, regs["gdtr_base"], regs["gdtr_limit"], 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, regs["idtr_base"], regs["idtr_limit"], 0))
        # LDTR and TR as aero's reset state has them (Intel SDM Vol. 3A, 'Processor State
        # Following Power-up, Reset, or INIT': base 0, limit FFFFh, present); QEMU's
        # flags layout.
        uc.reg_write(X.UC_X86_REG_LDTR, (0, 0, 0xFFFF, 0x8200))
        uc.reg_write(X.UC_X86_REG_TR, (0, 0, 0xFFFF, 0x8B00))
        # SS first: in protected mode it sets the CPL the other loads are checked against.
        for s in ("ss", "cs", "ds", "es", "fs", "gs"):
            uc.reg_write(_SEG[s], regs[s] & 0xFFFF)
        for n in GPRS:
            uc.reg_write(_GPR[n], regs[n] & 0xFFFFFFFF)
        uc.reg_write(X.UC_X86_REG_EFLAGS, regs["eflags"])
        uc.reg_write(X.UC_X86_REG_EIP, regs["eip"])
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
        if res.exception == EXC_DB and before["eflags"] & 0x100 and not self._soft_int:
            # A single-step trap (TF was set; DR7 is clear, INT1 is #UD in Unicorn, and
            # INT n/INT3/INTO report their own vector): the instruction completed. aero
            # takes the trap at the next instruction boundary, so the next step reports it.
            res.exception = None
            self._pending_trap = True
        self._undo = undo
        return res

    def _step_once(self) -> StepResult:
        uc = self.uc
        self._vector, self._size, self._accesses = None, None, []
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        cs = uc.reg_read(X.UC_X86_REG_CS)
        cs_base = 0 if self.mode == "pm32" else (cs & 0xFFFF) << 4
        start = cs_base + eip
        window = bytes(uc.mem_read(start, max(0, min(15, RAM_SIZE - start))))
        info = decode(window, self.mode == "pm32")
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
        cs_base = 0 if self.mode == "pm32" else (before["cs"] & 0xFFFF) << 4
        info = decode(bytes(self.uc.mem_read(cs_base + before["eip"], 15)),
                      self.mode == "pm32")
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
    for kind, lin, size in rec.ref.accesses:
        for s in data_segments(rec.info):
            seg = rec.segs[s]
            attr = seg.attr
            off = (lin - seg.base) & 0xFFFFFFFF
            bad = off + size - 1 > seg.limit or (attr & 0x1C) == 0x14  # limit, expand-down
            if protected and not attr & 0x80:
                bad = True  # null or not present
            if protected and s == rec.info.seg:
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
)


def explain(rec: StepRecord) -> KnownDivergence | None:
    """The known divergence that explains this step record, if any."""
    return next((k for k in KNOWN_DIVERGENCES if k.matches(rec)), None)
