"""The catalogue of the cases where Unicorn deviates from the architecture, and the
matchers that recognise them.

Invariants:

* No explanation consults aero: the instruction is decoded, and judged (#UD, LOCK,
  length, the accesses it makes and which of them must fault), by the SDM model in
  :mod:`aero.fuzz.sdm`; segments come from the selectors and the scenario's GDT. This
  module imports neither :mod:`aero.isa` nor aero's decoder and never reads the step
  record's ``info`` (aero's decoding). tests/test_divergences.py checks both.
* A matcher explains a step only when aero's *whole* state after it is what the SDM model
  predicts: a fault leaves every register and every byte of memory as before the
  instruction (the paging structures' accessed and dirty bits aside), with the predicted
  vector and error code; a completed instruction leaves exactly the predicted registers,
  flags and memory. The reference's side must show the deviation the entry describes.
* A step with a ``restart:`` mismatch (aero's own state after an exception is not the
  state before the instruction) is never explained.
* docs/known-divergences.md mirrors this list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .sdm import (
    Decoded,
    SegModel,
    data_accesses,
    decode,
    effective_offset,
    first_segment_fault,
    is_ud,
    lock_legal,
    segment_model,
)

if TYPE_CHECKING:
    from aero.fuzz.difftest import StepRecord

__all__ = ["KNOWN_DIVERGENCES", "KnownDivergence", "enter_operation", "explain", "sub_flags"]

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEGS = ("es", "cs", "ss", "ds", "fs", "gs")
REG_KEYS = GPRS + ("eip", "eflags") + SEGS + ("gdtr_base", "gdtr_limit", "idtr_base",
                                              "idtr_limit")
EXC_DB, EXC_UD, EXC_SS, EXC_GP, EXC_PF = 1, 6, 12, 13, 14
F_CF, F_PF, F_AF, F_ZF, F_SF, F_OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF
# pm32-paging layout (fuzz/difftest.py): page directory and page table.
PD_ADDR, PT_ADDR = 0x1000, 0x2000
PAGING_RANGE = (PD_ADDR, PT_ADDR + 0x1000)
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D, PTE_PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80


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


# ---- the SDM model applied to a step ------------------------------------------------------

def _code32(rec: StepRecord) -> bool:
    return rec.mode != "real"


def _dec(rec: StepRecord) -> Decoded:
    return decode(rec.code, _code32(rec))


def _segs(rec: StepRecord) -> dict[str, SegModel]:
    """Each segment register as its selector and the GDT in memory define it."""
    mem = rec.before_memory
    assert mem is not None
    base, limit = rec.before["gdtr_base"], rec.before["gdtr_limit"]
    gdt = mem[base:base + limit + 1].tobytes()
    real = rec.mode == "real"
    return {s: segment_model(real, rec.before[s], gdt) for s in SEGS}


def _user(rec: StepRecord) -> bool:
    return rec.mode == "pm32-paging" and rec.before["cs"] & 3 == 3


def _u32(mem: np.ndarray, addr: int) -> int:
    return int.from_bytes(mem[addr:addr + 4].tobytes(), "little")


def _pf_code(rec: StepRecord, lin: int, write: bool) -> int | None:
    """The #PF error code of an access under the paging structures before the step (SDM
    Vol. 3A 4.6, 4.7), or None when it is allowed or paging is off."""
    pg, mem = rec.paging, rec.before_memory
    if pg is None or mem is None:
        return None
    user = _user(rec)
    err = (2 if write else 0) | (4 if user else 0)
    pde = _u32(mem, PD_ADDR + (lin >> 22) * 4)
    if not pde & PTE_P:
        return err
    if pde & PTE_PS and pg.pse:
        rights = pde
    else:
        pte = _u32(mem, (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4)
        if not pte & PTE_P:
            return err
        rights = pde & pte
    if user and not rights & PTE_U:
        return err | 1
    if write and not rights & PTE_W and (user or pg.wp):
        return err | 1
    return None


def _entries(rec: StepRecord, lin: int) -> list[int]:
    """Addresses of the paging entries that map ``lin``."""
    mem = rec.before_memory
    assert mem is not None and rec.paging is not None
    pde_addr = PD_ADDR + (lin >> 22) * 4
    pde = _u32(mem, pde_addr)
    if pde & PTE_PS and rec.paging.pse:
        return [pde_addr]
    return [pde_addr, (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4]


def _memory_as_before(rec: StepRecord, allowed: dict[int, int] | None = None) -> bool:
    """aero's memory equals the memory before the step, except accessed/dirty bits of the
    paging structures and the bytes ``allowed`` gives (address -> expected value)."""
    before, after = rec.before_memory, rec.aero.memory
    if before is None or len(after) != len(before):
        return False
    diff = before != after
    if rec.paging is not None:
        lo, hi = PAGING_RANGE
        diff[lo:hi] = ((before[lo:hi] ^ after[lo:hi]) & ~np.uint8(PTE_A | PTE_D)) != 0
    for a, v in (allowed or {}).items():
        if int(after[a]) != v:
            return False
        diff[a] = False
    return not diff.any()


def _regs_are(rec: StepRecord, changes: dict[str, int], flag_mask: int = 0) -> bool:
    """aero's registers are the registers before the step with ``changes`` applied;
    ``flag_mask`` names EFLAGS bits the SDM leaves undefined (not compared)."""
    want = dict(rec.before, **changes)
    for k in REG_KEYS:
        keep = ~flag_mask if k == "eflags" else -1
        if (rec.aero.regs[k] ^ want[k]) & keep & 0xFFFFFFFF:
            return False
    return True


def _faulted_cleanly(rec: StepRecord, vector: int, error_code: int | None = 0) -> bool:
    """aero raised ``vector`` (with ``error_code`` when it has one) and left every register
    and every byte of memory as before the instruction (SDM Vol. 3A 6.5: faults are
    restartable)."""
    a = rec.aero
    if a.exception != vector:
        return False
    if vector in (8, 10, 11, 12, 13, 17) and error_code is not None \
            and a.error_code not in (None, error_code):
        return False
    return _regs_are(rec, {}) and _memory_as_before(rec)


def _next_eip(rec: StepRecord, d: Decoded) -> int:
    assert d.length is not None
    return (rec.before["eip"] + d.length) & (0xFFFFFFFF if _code32(rec) else 0xFFFF)


def _linear(segs: dict[str, SegModel], seg: str, off: int) -> int:
    return (segs[seg].base + off) & 0xFFFFFFFF


def _read(rec: StepRecord, lin: int, size: int) -> int:
    mem = rec.before_memory
    assert mem is not None
    return int.from_bytes(mem[lin:lin + size].tobytes(), "little")


def _no_restart_problem(rec: StepRecord) -> bool:
    return not any(m.field.startswith("restart:") for m in rec.mismatches)


def _valid(d: Decoded, rec: StepRecord) -> bool:
    """A defined encoding of at most 15 bytes, legal in this mode (no #UD, no length #GP)."""
    return d.length is not None and d.length <= 15 and not is_ud(d, rec.mode == "real")


def _stack32(segs: dict[str, SegModel]) -> bool:
    return segs["ss"].big


def parity(v: int) -> int:
    return F_PF if bin(v & 0xFF).count("1") % 2 == 0 else 0


def sub_flags(a: int, b: int, size: int) -> int:
    """CF PF AF ZF SF OF of ``a - b`` for an operand of ``size`` bytes."""
    bits = size * 8
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    a, b = a & mask, b & mask
    r = (a - b) & mask
    f = F_CF if a < b else 0
    f |= parity(r)
    f |= (a ^ b ^ r) & F_AF
    f |= F_ZF if r == 0 else 0
    f |= F_SF if r & sign else 0
    f |= F_OF if (a ^ b) & (a ^ r) & sign else 0
    return f


# ---- matchers -------------------------------------------------------------------------------

def _segment_fault_predicted(rec: StepRecord, d: Decoded) -> tuple[int, int] | None:
    """(vector, linear address) of the segment fault the SDM model predicts for this step,
    when the model covers the instruction and no earlier access page-faults."""
    if not _valid(d, rec):
        return None
    segs = _segs(rec)
    accesses = data_accesses(d, rec.before, _stack32(segs), rec.mode == "real")
    if accesses is None:
        return None
    fault = first_segment_fault(accesses, segs, rec.mode != "real")
    if fault is None:
        return None
    vector, bad = fault
    for a in accesses:
        if a is bad:
            break
        for k in (0, a.size - 1):
            if _pf_code(rec, _linear(segs, a.seg, a.offset + k), "w" in a.kind) is not None:
                return None
    return vector, _linear(segs, bad.seg, bad.offset)


def _no_segment_checks(rec: StepRecord) -> bool:
    """The model predicts #GP(0)/#SS(0) for the first access the segment rules forbid;
    aero raised exactly that, with its state restored; Unicorn did not raise it: another
    vector or none, or the same vector with a nonzero error code (a selector check the
    instruction makes after the access, e.g. LGS's #GP(selector) once it has read the
    selector through a null DS)."""
    d = _dec(rec)
    pred = _segment_fault_predicted(rec, d)
    if pred is None:
        return False
    vector, _ = pred
    if not _faulted_cleanly(rec, vector):
        return False
    return rec.ref.exception != vector or rec.ref.error_code not in (None, 0)


def _icebp(rec: StepRecord) -> bool:
    """INT1: a trap to vector 1 with EIP after the instruction and nothing else changed;
    Unicorn reports #UD."""
    d = _dec(rec)
    if d.opcode != 0xF1 or not _valid(d, rec) or rec.ref.exception != EXC_UD:
        return False
    return (rec.aero.exception == EXC_DB and _regs_are(rec, {"eip": _next_eip(rec, d)})
            and _memory_as_before(rec))


def _code_limit_target(rec: StepRecord, d: Decoded) -> int | None:
    """The branch target (offset in the target code segment) the SDM's operation computes,
    for near branches, far returns and far jumps/calls; None for other instructions."""
    op, b = d.opcode, rec.before
    omask = 0xFFFFFFFF if d.osz32 else 0xFFFF
    nxt = (b["eip"] + (d.length or 0)) & 0xFFFFFFFF

    def rel(v: int, bits: int) -> int:
        v -= (1 << bits) if v >> (bits - 1) & 1 else 0
        return (nxt + v) & omask

    segs = _segs(rec)
    smask = 0xFFFFFFFF if _stack32(segs) else 0xFFFF
    top = _linear(segs, "ss", b["esp"] & smask)
    if 0x70 <= op <= 0x7F or op in (0xE0, 0xE1, 0xE2, 0xE3, 0xEB):
        return rel(d.imm, 8)
    if 0x180 <= op <= 0x18F or op in (0xE8, 0xE9):
        return rel(d.imm, 32 if d.osz32 else 16)
    if op in (0xC2, 0xC3, 0xCA, 0xCB, 0xCF):
        return _read(rec, top, d.opsize) & omask
    if op in (0xEA, 0x9A):
        return d.imm & omask
    if op == 0xFF and d.reg in (2, 3, 4, 5):
        if d.mod == 3:
            return b[GPRS[d.rm]] & omask if d.reg in (2, 4) else None
        lin = _linear(segs, d.seg, effective_offset(d, b))
        return _read(rec, lin, d.opsize) & omask
    return None


def _no_cs_limit_check(rec: StepRecord) -> bool:
    """A branch whose target (computed by the model) lies beyond the CS limit: aero raises
    #GP(0) with nothing changed, Unicorn jumps there."""
    d = _dec(rec)
    if not _valid(d, rec):
        return False
    target = _code_limit_target(rec, d)
    if target is None or rec.ref.exception is not None:
        return False
    limit = 0xFFFF if rec.mode == "real" else _segs(rec)["cs"].limit
    return (target > limit and rec.ref.regs["eip"] == target
            and _faulted_cleanly(rec, EXC_GP))


def enter_operation(rec: StepRecord, d: Decoded) -> tuple[dict[str, int], dict[int, int], int]:
    """ENTER by the SDM's operation, from the state before the step: the registers it
    changes (EBP, ESP, EIP), the bytes it stores (address -> value; each frame-pointer copy
    is read after the stores before it, so a read that overlaps the pushed (E)BP sees it),
    and the linear address of the FrameTemp slot (that of the last push)."""
    b = rec.before
    segs = _segs(rec)
    stack32 = _stack32(segs)
    level = d.imm2 & 31
    size = d.opsize
    smask = 0xFFFFFFFF if stack32 else 0xFFFF

    def sp(v: int) -> int:
        return (b["esp"] & ~smask & 0xFFFFFFFF) | (v & smask)

    frame = sp(b["esp"] - size)  # FrameTemp: (E)SP after pushing (E)BP
    # The register width follows the operand size (see the entry's evidence).
    ebp = frame if d.osz32 else (b["ebp"] & 0xFFFF0000) | (frame & 0xFFFF)
    esp = sp(b["esp"] - size * (level + 1 if level else 1) - d.imm)
    stored: dict[int, int] = {}

    def read(lin: int) -> int:
        return sum((stored[a] if a in stored else _read(rec, a, 1)) << (8 * k)
                   for k, a in enumerate(range(lin, lin + size)))

    def push(n: int, v: int) -> int:
        slot = _linear(segs, "ss", (b["esp"] - n * size) & smask)
        for k in range(size):
            stored[slot + k] = (v >> (8 * k)) & 0xFF
        return slot

    slot = push(1, b["ebp"])
    for i in range(1, level):
        push(i + 1, read(_linear(segs, "ss", (b["ebp"] - i * size) & smask)))
    if level:
        slot = push(level + 1, frame)
    return {"ebp": ebp, "esp": esp, "eip": _next_eip(rec, d)}, stored, slot


def _enter_frame(rec: StepRecord) -> bool:
    """ENTER whose operand size differs from the stack size: aero's frame pointer, stack
    pointer and pushes are the SDM's; Unicorn's EBP (and its level-1 push) differ."""
    d = _dec(rec)
    if d.opcode != 0xC8 or not _valid(d, rec):
        return False
    if _stack32(_segs(rec)) == d.osz32 or rec.aero.exception is not None or rec.ref.exception:
        return False
    level = d.imm2 & 31
    size = d.opsize
    changes, allowed, slot2 = enter_operation(rec, d)
    if not (_regs_are(rec, changes) and _memory_as_before(rec, allowed)):
        return False
    if rec.ref.regs["ebp"] & 0xFFFF != changes["ebp"] & 0xFFFF:
        return False
    for m in rec.mismatches:
        if m.field.startswith("mem:"):
            if not (level and slot2 <= int(m.field[4:], 16) < slot2 + size):
                return False
        elif m.field != "ebp":
            return False
    return True


def _ret_imm_sign(rec: StepRecord) -> bool:
    """RET imm16 with imm16 >= 8000h on a 32-bit stack: aero's EIP is the popped value and
    ESP rises by 4 + imm16; Unicorn's ESP is 64 KB lower."""
    d, b = _dec(rec), rec.before
    if d.opcode != 0xC2 or d.imm < 0x8000 or not _valid(d, rec):
        return False
    segs = _segs(rec)
    if not _stack32(segs) or [m.field for m in rec.mismatches] != ["esp"]:
        return False
    target = _read(rec, _linear(segs, "ss", b["esp"]), d.opsize)
    popped = b["esp"] + d.opsize
    esp = (popped + d.imm) & 0xFFFFFFFF
    return (rec.aero.exception is None and _regs_are(rec, {"esp": esp, "eip": target})
            and _memory_as_before(rec)
            and rec.ref.regs["esp"] == (popped + d.imm - 0x10000) & 0xFFFFFFFF)


def _lock_not_checked(rec: StepRecord) -> bool:
    """LOCK where the SDM's list does not allow it: #UD with nothing changed; Unicorn runs
    the instruction."""
    d = _dec(rec)
    if not d.lock or lock_legal(d) or d.length is None or d.length > 15:
        return False
    return _faulted_cleanly(rec, EXC_UD) and rec.ref.exception != EXC_UD


def _locked_neg(rec: StepRecord) -> bool:
    """LOCK NEG m: aero stores -DEST and sets the flags of 0 - DEST (SDM 'NEG'); Unicorn's
    stored value is the same and its flags are those of 0 - result."""
    d = _dec(rec)
    if not (d.lock and d.key in ((0xF6, 3), (0xF7, 3)) and d.memory and _valid(d, rec)):
        return False
    if rec.aero.exception is not None or rec.ref.exception is not None:
        return False
    if any(m.field != "eflags" for m in rec.mismatches):
        return False
    if _segment_fault_predicted(rec, d) is not None:
        return False
    size = 1 if d.opcode == 0xF6 else d.opsize
    segs = _segs(rec)
    lin = _linear(segs, d.seg, effective_offset(d, rec.before))
    old = _read(rec, lin, size)
    new = -old & ((1 << (8 * size)) - 1)
    flags = (rec.before["eflags"] & ~ARITH) | sub_flags(0, old, size)
    allowed = {lin + k: (new >> (8 * k)) & 0xFF for k in range(size)}
    return (_regs_are(rec, {"eflags": flags, "eip": _next_eip(rec, d)})
            and _memory_as_before(rec, allowed)
            and rec.ref.regs["eflags"] & ARITH == sub_flags(0, new, size))


_REG8 = (("eax", 0), ("ecx", 0), ("edx", 0), ("ebx", 0), ("eax", 8), ("ecx", 8), ("edx", 8),
         ("ebx", 8))


def _test_alias(rec: StepRecord) -> bool:
    """F6 /1, F7 /1: aero executes TEST (SDM 'TEST': CF = OF = 0, SF ZF PF from SRC1 AND
    SRC2, AF undefined, nothing written), or raises the segment fault TEST's read raises;
    Unicorn raises #UD."""
    d = _dec(rec)
    if d.key not in ((0xF6, 1), (0xF7, 1)) or rec.ref.exception != EXC_UD:
        return False
    if d.length is not None and d.length > 15:
        return False  # the length limit, see length-limit
    if not _valid(d, rec):
        return False
    pred = _segment_fault_predicted(rec, d)
    if pred is not None:
        return _faulted_cleanly(rec, pred[0])
    size = 1 if d.opcode == 0xF6 else d.opsize
    if d.mod == 3:
        if size == 1:
            name, shift = _REG8[d.rm]
            src = (rec.before[name] >> shift) & 0xFF
        else:
            src = rec.before[GPRS[d.rm]] & ((1 << (8 * size)) - 1)
    else:
        lin = _linear(_segs(rec), d.seg, effective_offset(d, rec.before))
        if any(_pf_code(rec, lin + k, False) is not None for k in (0, size - 1)):
            return False
        src = _read(rec, lin, size)
    res = src & d.imm & ((1 << (8 * size)) - 1)
    flags = (rec.before["eflags"] & ~ARITH) | parity(res) | (F_ZF if res == 0 else 0)
    flags |= F_SF if res >> (8 * size - 1) & 1 else 0
    return (rec.aero.exception is None
            and _regs_are(rec, {"eflags": flags, "eip": _next_eip(rec, d)}, F_AF)
            and _memory_as_before(rec))


def _length_limit(rec: StepRecord) -> bool:
    """An encoding longer than 15 bytes (by the model: prefixes and opcode alone, or the
    whole decoded instruction): #GP(0) with nothing changed; Unicorn reports #UD."""
    d = _dec(rec)
    head = d.nprefixes + (2 if d.opcode >= 0x100 else 1)
    too_long = head > 15 or (d.length is not None and d.length > 15)
    return too_long and _faulted_cleanly(rec, EXC_GP) and rec.ref.exception == EXC_UD


def _fetch_fault_report(rec: StepRecord) -> bool:
    """Both raise #PF on fetching the instruction; aero's CR2 is the first byte of it that
    cannot be fetched and aero's error code is the SDM's for that fetch, with nothing else
    changed; Unicorn reports another byte of the instruction and/or another error code;
    nothing else differs but the accessed bits of the entries that map the instruction."""
    if rec.paging is None or rec.aero.exception != EXC_PF or rec.ref.exception != EXC_PF:
        return False
    d = _dec(rec)
    start = rec.before["eip"]  # flat code segment
    n = d.length if d.length is not None and d.length <= 15 else 15
    a_cr2, r_cr2 = rec.aero.cr2, rec.ref.cr2
    if a_cr2 is None or r_cr2 is None or not start <= r_cr2 < start + n:
        return False
    first_bad = next((a for a in range(start, start + n) if _pf_code(rec, a, False) is not None),
                     None)
    if first_bad is None or a_cr2 != first_bad:
        return False
    if rec.aero.error_code != _pf_code(rec, a_cr2, False) or not _faulted_cleanly(rec, EXC_PF,
                                                                                  None):
        return False
    entries = set(_entries(rec, start) + _entries(rec, start + n - 1))
    for m in rec.mismatches:
        if m.field.startswith("mem:"):
            addr = int(m.field[4:], 16)
            if addr not in entries or (m.aero or 0) ^ (m.ref or 0) != PTE_A:
                return False
        elif m.field not in ("cr2", "error_code"):
            return False
    return True


def _arpl_write(rec: StepRecord) -> bool:
    """ARPL with a memory destination whose RPL needs no adjustment: aero clears ZF and
    writes nothing (SDM 'ARPL'); Unicorn writes the unchanged selector back, which sets
    the dirty bit of its page (or raises the #PF of a read-only page)."""
    d = _dec(rec)
    if rec.paging is None or d.opcode != 0x63 or not d.memory or not _valid(d, rec):
        return False
    if rec.aero.exception is not None:
        return False
    lin = _linear(_segs(rec), d.seg, effective_offset(d, rec.before))
    dest = _read(rec, lin, 2)
    src = rec.before[GPRS[d.reg]] & 0xFFFF
    if dest & 3 < src & 3:
        return False  # the RPL is raised: the write is architectural
    if not (_regs_are(rec, {"eflags": rec.before["eflags"] & ~F_ZF, "eip": _next_eip(rec, d)})
            and _memory_as_before(rec)):
        return False
    if rec.ref.exception == EXC_PF:  # the needless write hit a read-only page
        cr2 = rec.ref.cr2
        return (rec.ref.error_code or 0) & 2 != 0 and cr2 is not None and lin <= cr2 < lin + 2
    if rec.ref.exception is not None:
        return False
    entries = set(_entries(rec, lin) + _entries(rec, lin + 1))
    return bool(rec.mismatches) and all(
        m.field.startswith("mem:") and int(m.field[4:], 16) in entries
        and (m.aero or 0) ^ (m.ref or 0) == PTE_D for m in rec.mismatches)


def _only_bits(rec: StepRecord, addrs: set[int], bit: int = PTE_A) -> bool:
    return bool(rec.mismatches) and all(
        m.field.startswith("mem:") and int(m.field[4:], 16) in addrs
        and (m.aero or 0) ^ (m.ref or 0) == bit for m in rec.mismatches)


def _operand_addresses(rec: StepRecord, d: Decoded) -> list[int]:
    """Linear addresses of the explicit memory operand (ModRM), or DS:(E)SI and ES:(E)DI of
    a string instruction."""
    segs = _segs(rec)
    amask = 0xFFFFFFFF if d.asz32 else 0xFFFF
    if d.opcode in range(0xA4, 0xB0) and d.opcode not in (0xA8, 0xA9):
        return [_linear(segs, d.seg, rec.before["esi"] & amask),
                _linear(segs, "es", rec.before["edi"] & amask)]
    if not d.memory:
        return []
    return [_linear(segs, d.seg, effective_offset(d, rec.before))]


def _ud_operand_read(rec: StepRecord) -> bool:
    """An encoding the model says is #UD (undefined, or with an illegal LOCK) with a memory
    operand: aero raises #UD with nothing changed; Unicorn has read the operand first (the
    accessed bits of the entries that map it differ, or the read raised #PF)."""
    d = _dec(rec)
    if rec.paging is None or d.length is None or d.length > 15:
        return False
    if not is_ud(d, False) or not _faulted_cleanly(rec, EXC_UD):
        return False
    addrs = _operand_addresses(rec, d)
    if not addrs:
        return False
    if rec.ref.exception == EXC_PF:  # the operand read faulted first
        return rec.ref.cr2 is not None and any(a <= rec.ref.cr2 < a + 8 for a in addrs)
    if rec.ref.exception != EXC_UD:
        return False
    entries = {e for a in addrs for x in (a, a + 3) for e in _entries(rec, x)}
    return _only_bits(rec, entries)


def _faulting_rotate_flags(rec: StepRecord) -> bool:
    """A shift or rotate of memory whose write raises #PF on both sides: aero leaves every
    register (EFLAGS included) and memory as before; Unicorn has already set the flags."""
    d = _dec(rec)
    if d.opcode not in (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3) or not d.memory:
        return False
    return (rec.ref.exception == EXC_PF and _faulted_cleanly(rec, EXC_PF, None)
            and [m.field for m in rec.mismatches] == ["eflags"])


def _cmps_order(rec: StepRecord) -> bool:
    """CMPS with a faulting operand: aero reads DS:ESI first, Unicorn ES:EDI. Either both
    fault on the same operand and only the other operand's accessed bits differ, or
    (both operands faulting) aero reports DS:ESI and Unicorn ES:EDI."""
    d = _dec(rec)
    if rec.paging is None or d.opcode not in (0xA6, 0xA7) or not _valid(d, rec):
        return False
    if rec.ref.exception != EXC_PF or not _faulted_cleanly(rec, EXC_PF, None):
        return False
    if rec.aero.cr2 is None or rec.ref.cr2 is None:
        return False
    size = 1 if d.opcode == 0xA6 else d.opsize
    src, dst = _operand_addresses(rec, d)
    first = next((a for a in range(src, src + size) if _pf_code(rec, a, False) is not None),
                 None)
    if first is None:
        first = next((a for a in range(dst, dst + size) if _pf_code(rec, a, False) is not None),
                     None)
    a_cr2, r_cr2 = rec.aero.cr2, rec.ref.cr2
    if first is None or a_cr2 != first or rec.aero.error_code != _pf_code(rec, first, False):
        return False
    in_src = src <= a_cr2 < src + size
    if in_src and dst <= r_cr2 < dst + size and a_cr2 != r_cr2:
        return all(m.field in ("cr2", "error_code") for m in rec.mismatches)
    if a_cr2 != r_cr2:
        return False
    other = src if dst <= a_cr2 < dst + size else dst
    return _only_bits(rec, set(_entries(rec, other) + _entries(rec, other + size - 1)))


def _pusha_order(rec: StepRecord) -> bool:
    """PUSHA onto a page that faults: aero's CR2 is the first slot, in the SDM's push order
    (EAX at ESP - size first), that cannot be written, with nothing changed; Unicorn's is
    another slot."""
    d = _dec(rec)
    if rec.paging is None or d.opcode != 0x60 or not _valid(d, rec):
        return False
    if rec.ref.exception != EXC_PF or not _faulted_cleanly(rec, EXC_PF, None):
        return False
    if [m.field for m in rec.mismatches] != ["cr2"]:
        return False
    size = d.opsize
    segs = _segs(rec)
    smask = 0xFFFFFFFF if _stack32(segs) else 0xFFFF
    slots = [_linear(segs, "ss", (rec.before["esp"] - size * (i + 1)) & smask)
             for i in range(8)]
    for lin in slots:
        bad = next((a for a in range(lin, lin + size) if _pf_code(rec, a, True) is not None),
                   None)
        if bad is not None:
            r_cr2 = rec.ref.cr2
            return (rec.aero.cr2 == bad and rec.aero.error_code == _pf_code(rec, bad, True)
                    and r_cr2 is not None and any(s <= r_cr2 < s + size for s in slots))
    return False


def _rep_bit_scan(rec: StepRecord) -> bool:
    """F3 0F BC / F3 0F BD: on the P6 the REP prefix is ignored and the instruction is
    BSF/BSR. aero's state is the BSF/BSR result (destination the index of the lowest or
    highest set bit, ZF clear; a zero source sets ZF and leaves the destination undefined;
    CF OF SF AF PF undefined), memory untouched; Unicorn executed TZCNT/LZCNT instead (its
    destination holds the trailing/leading zero count)."""
    d = _dec(rec)
    if d.opcode not in (0x1BC, 0x1BD) or d.rep != 0xF3 or not _valid(d, rec):
        return False
    if rec.aero.exception is not None or rec.ref.exception is not None:
        return False
    segs = _segs(rec)
    accesses = data_accesses(d, rec.before, _stack32(segs), rec.mode == "real")
    if accesses is None or first_segment_fault(accesses, segs, rec.mode != "real"):
        return False
    size = d.opsize
    bits = 8 * size
    mask = (1 << bits) - 1
    if d.mod == 3:
        src = rec.before[GPRS[d.rm]] & mask
    else:
        lin = _linear(segs, d.seg, effective_offset(d, rec.before))
        if any(_pf_code(rec, lin + k, False) is not None for k in (0, size - 1)):
            return False
        src = _read(rec, lin, size)
    dest = GPRS[d.reg]
    undefined = F_CF | F_OF | F_SF | F_AF | F_PF
    if src == 0:
        flags = rec.before["eflags"] | F_ZF
        # The destination is undefined: take aero's value of it.
        value = rec.aero.regs[dest]
        lzcnt = tzcnt = bits
    else:
        flags = rec.before["eflags"] & ~F_ZF
        index = (src & -src).bit_length() - 1 if d.opcode == 0x1BC else src.bit_length() - 1
        value = (rec.before[dest] & ~mask & 0xFFFFFFFF) | index
        tzcnt = (src & -src).bit_length() - 1
        lzcnt = bits - src.bit_length()
    if not (_regs_are(rec, {dest: value, "eflags": flags, "eip": _next_eip(rec, d)},
                      undefined) and _memory_as_before(rec)):
        return False
    count = tzcnt if d.opcode == 0x1BC else lzcnt
    return rec.ref.regs[dest] & mask == count


_PUSH_SREG = {0x06: "es", 0x0E: "cs", 0x16: "ss", 0x1E: "ds", 0x1A0: "fs", 0x1A8: "gs"}


def _push_sreg_width(rec: StepRecord) -> bool:
    """PUSH Sreg with a 32-bit operand size whose slot's upper word lies on a page that
    cannot be written: aero moves the selector with a 16-bit store and completes (ESP
    lowered by 4, the slot's low word the selector, its upper word untouched or zero);
    Unicorn writes 32 bits and raises that page's #PF."""
    d = _dec(rec)
    if d.opcode not in _PUSH_SREG or not d.osz32 or not _valid(d, rec):
        return False
    if rec.aero.exception is not None or rec.ref.exception != EXC_PF or rec.ref.cr2 is None:
        return False
    segs = _segs(rec)
    smask = 0xFFFFFFFF if _stack32(segs) else 0xFFFF
    esp = (rec.before["esp"] & ~smask & 0xFFFFFFFF) | ((rec.before["esp"] - 4) & smask)
    slot = _linear(segs, "ss", esp & smask)
    sel = rec.before[_PUSH_SREG[d.opcode]] & 0xFFFF
    if not _regs_are(rec, {"esp": esp, "eip": _next_eip(rec, d)}):
        return False
    allowed = {slot: sel & 0xFF, slot + 1: sel >> 8}
    mem = rec.aero.memory
    for k in (2, 3):  # the upper word: left alone (16-bit move) or zero
        v = int(mem[slot + k])
        if v not in (0, int(rec.before_memory[slot + k])):  # type: ignore[index]
            return False
        allowed[slot + k] = v
    if not _memory_as_before(rec, allowed):
        return False
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
        "memory when the linear address leaves RAM). The vector is that of the first "
        "access, in the order of the SDM's operation, that the rules forbid.",
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
        "rep-bit-scan",
        "F3 0F BC / F3 0F BD run as TZCNT / LZCNT",
        "Intel SDM Vol. 2 'TZCNT': 'TZCNT is an extension of the BSF instruction. The key "
        "difference ... On processors that do not support TZCNT, the instruction byte "
        "encoding is executed as BSF'; 'LZCNT': 'On processors that do not support "
        "advanced bit manipulation, the instruction byte encoding is executed as BSR'. The "
        "P6 aero models has neither (CPUID BMI1/ABM clear), so F3 is an ignored REP prefix. "
        "Unicorn's CPU model runs TZCNT/LZCNT (the zero count of the source).",
        _rep_bit_scan),
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
    """The known divergence that explains this step record, if any. A step whose aero
    state after an exception is not restartable is never explained."""
    if rec.before_memory is None or not _no_restart_problem(rec):
        return None
    return next((k for k in KNOWN_DIVERGENCES if k.matches(rec)), None)
