"""The ``fpu`` class of ``aero fuzz cpu``: x87 instruction streams against Unicorn.

A :class:`X87Scenario` is a random x87 state (the eight physical registers with special
encodings among them, empty bits, TOP, status and control words with every rounding and
precision mode and random masks), EFLAGS, a data area (operands of every memory format, and
an environment/save image) and one to six x87 instructions in flat 32-bit protected mode
with CR0.NE set (so an unmasked exception is reported as #MF). :class:`X87Checker` runs it on
aero and on Unicorn one instruction at a time and compares, after every instruction, the
eight 80-bit registers, the status word, the control word, the full tag word, EAX, EFLAGS,
EIP, the exception vector and the data area.

Invariants:

* The same state is loaded into both: aero through ``Machine.set_fpu``, Unicorn through
  its register API (``UC_X86_REG_FP0``-``FP7`` are the physical registers R0-R7,
  ``FPSW`` carries TOP, ``FPTAG`` is the full tag word of which only "empty" is state).
* Bits the SDM leaves undefined after an instruction (C0-C3 of most instructions) are
  taken from the independent model (:mod:`aero.fuzz.x87model`), masked, and aero's value
  is written into Unicorn so later steps start equal.
* Transcendental instructions are judged against :mod:`aero.fuzz.x87trans` (1 ulp), then
  aero's x87 state is written into Unicorn; the steps it cannot judge are counted.
* A divergence is explained only by an entry of :data:`X87_DIVERGENCES`, and only when
  aero's whole state after the step equals the model's prediction and Unicorn's state
  shows the deviation the entry describes (see :func:`explain`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from . import x87model as M
from .x87trans import TRANSCENDENTAL, judge

__all__ = ["DATA", "DATA_SIZE", "EBX", "ENV", "X87_DIVERGENCES", "X87Checker", "X87Divergence",
           "X87Record", "X87Scenario", "explain", "find_known", "merge_counts", "replay_case",
           "run_fpu_campaign", "scenarios", "write_case", "write_known_cases"]

CODE = 0x1000
DATA = 0x4000
DATA_SIZE = 0x200
EBX = 0x4080  # slots at [EBX - 80h + 16 k], k = 0..15
ENV = EBX + 0x100  # environment / save image, [EBX + 100h] (disp32)
GDT = 0x800
GDT_BYTES = bytes(8) + bytes.fromhex("ffff0000009bcf00") + bytes.fromhex("ffff00000093cf00")
CR0 = 0x60000031  # PE, ET, NE (CD, NW as the other campaigns)
RAM = 0x10000
FIELDS = tuple(f"r{i}" for i in range(8)) + ("fsw", "fcw", "ftw", "eax", "eflags", "eip",
                                             "exception", "memory")


# ---- scenarios ------------------------------------------------------------------------------

@dataclass
class X87Scenario:
    """One test case (see the module docstring). ``regs`` are the physical registers."""

    regs: list[int]
    empty: int
    fcw: int
    fsw: int
    eflags: int
    data: bytes
    code: list[bytes]
    eax: int = 0
    mode: str = "pm32"

    def state(self) -> M.State:
        return M.State(list(self.regs), self.fcw, self.fsw, self.empty, self.eax, self.eflags)

    def to_dict(self) -> dict:
        return {"regs": [f"{v:020x}" for v in self.regs], "empty": self.empty,
                "fcw": self.fcw, "fsw": self.fsw, "eflags": self.eflags, "eax": self.eax,
                "data": self.data.hex(), "code": [c.hex() for c in self.code]}

    @classmethod
    def from_dict(cls, d: dict) -> X87Scenario:
        return cls([int(v, 16) for v in d["regs"]], int(d["empty"]), int(d["fcw"]),
                   int(d["fsw"]), int(d["eflags"]), bytes.fromhex(d["data"]),
                   [bytes.fromhex(c) for c in d["code"]], int(d.get("eax", 0)))


_I = cache(st.integers)  # strategies built once: building one per draw costs more than a run
_S = cache(st.sampled_from)


def _x80(sign: int, exp: int, sig: int) -> int:
    return (sign << 79) | (exp << 64) | sig


_SIG = st.one_of(
    st.just(1 << 63), st.just((1 << 64) - 1), st.just(0xC000000000000000),
    st.integers(0, 0xFFFF).map(lambda v: (1 << 63) | (v << 47)),  # few significant bits
    st.integers(0, (1 << 63) - 1).map(lambda v: (1 << 63) | v),
    st.integers(0, 0xFF).map(lambda v: (1 << 63) | (v << 30) | (1 << 29)),  # near ties
)
_EXP = st.one_of(st.integers(16383 - 4, 16383 + 4), st.integers(16383 - 4, 16383 + 4),
                 st.integers(BIAS_LO := 16383 - 8, 16383 + 70), st.integers(1, 0x7FFE),
                 st.sampled_from((1, 2, 0x7FFE, 0x7FFD, 16383 - 16382 + 64, 16383 + 16383)),
                 st.integers(16383 - 130, 16383 - 120), st.integers(16383 - 1080, 16383 - 1070),
                 st.integers(16383 + 125, 16383 + 130), st.integers(16383 + 1020, 16383 + 1026))
del BIAS_LO
_SIGN = st.integers(0, 1)


@st.composite
def x80_values(draw: st.DrawFn) -> int:
    """80-bit register contents: mostly normals (of every magnitude, with few or many
    significant bits), and zeros, denormals, pseudo-denormals, unnormals, infinities,
    QNaNs, SNaNs, the indefinite, pseudo-NaNs and pseudo-infinities."""
    kind = draw(_I(0, 19))
    sign = draw(_SIGN)
    if kind <= 9:
        return _x80(sign, draw(_EXP), draw(_SIG))
    if kind == 10:
        return _x80(sign, 16383 + draw(_I(0, 62)), draw(_SIG))  # integers-ish
    if kind == 11:
        return _x80(sign, 0, 0)
    if kind == 12:
        return _x80(sign, 0, draw(_I(1, (1 << 63) - 1)))
    if kind == 13:
        return _x80(sign, 0, (1 << 63) | draw(_I(0, (1 << 63) - 1)))
    if kind == 14:
        return _x80(sign, draw(_I(1, 0x7FFE)), draw(_I(0, (1 << 63) - 1)))
    if kind == 15:
        return _x80(sign, 0x7FFF, 1 << 63)
    if kind == 16:
        return _x80(sign, 0x7FFF, (3 << 62) | draw(_I(0, (1 << 62) - 1)))
    if kind == 17:
        return _x80(sign, 0x7FFF, (1 << 63) | draw(_I(1, (1 << 62) - 1)))
    if kind == 18:
        return M.INDEFINITE
    return _x80(sign, 0x7FFF, draw(_I(0, (1 << 63) - 1)))


def _real_bytes(v: int, size: int) -> bytes:
    return v.to_bytes(size, "little")


@st.composite
def _f32(draw: st.DrawFn) -> bytes:
    kind = draw(_I(0, 7))
    sign = draw(_SIGN) << 31
    if kind <= 3:
        return _real_bytes(sign | draw(_I(1, 254)) << 23 | draw(
            _I(0, (1 << 23) - 1)), 4)
    if kind == 4:
        return _real_bytes(sign | draw(_I(0, (1 << 23) - 1)), 4)  # zero, denormal
    if kind == 5:
        return _real_bytes(sign | 0xFF << 23 | draw(_S((0, 1, 1 << 22, 0x7FFFFF))), 4)
    return _real_bytes(sign | draw(_I(120, 140)) << 23 | draw(
        _I(0, 3)) << 21, 4)


@st.composite
def _f64(draw: st.DrawFn) -> bytes:
    kind = draw(_I(0, 7))
    sign = draw(_SIGN) << 63
    if kind <= 3:
        return _real_bytes(sign | draw(_I(1, 2046)) << 52 | draw(
            _I(0, (1 << 52) - 1)), 8)
    if kind == 4:
        return _real_bytes(sign | draw(_I(0, (1 << 52) - 1)), 8)
    if kind == 5:
        return _real_bytes(sign | 0x7FF << 52 | draw(_S(
            (0, 1, 1 << 51, (1 << 52) - 1))), 8)
    return _real_bytes(sign | draw(_I(1015, 1035)) << 52 | draw(
        _I(0, 7)) << 49, 8)


_BCD_N = st.one_of(st.integers(0, 99), st.integers(0, 10 ** 18 - 1))


@st.composite
def _bcd(draw: st.DrawFn) -> bytes:
    n = draw(_BCD_N)
    out = bytearray(10)
    for i in range(9):
        lo, n = n % 10, n // 10
        hi, n = n % 10, n // 10
        out[i] = hi << 4 | lo
    if draw(_I(0, 9)) == 0:
        out[draw(_I(0, 8))] = draw(_I(0, 255))  # digits A-F
    out[9] = 0x80 if draw(_SIGN) else 0
    return bytes(out)


_INT = st.one_of(st.sampled_from((0, 1, -1, 0x7FFF, -0x8000, 0x7FFFFFFF, -0x80000000,
                                  (1 << 63) - 1, -(1 << 63), (1 << 53) + 1, (1 << 24) + 1)),
                 st.integers(-1000, 1000), st.integers(-(1 << 63), (1 << 63) - 1))
_X80 = x80_values()
_SLOT = st.one_of(
    _X80.map(lambda v: v.to_bytes(10, "little") + bytes(6)),
    _f32().map(lambda b: b + bytes(12)), _f64().map(lambda b: b + bytes(8)),
    _bcd().map(lambda b: b + bytes(6)),
    _INT.map(lambda n: (n & ((1 << 64) - 1)).to_bytes(8, "little") + bytes(8)),
    st.binary(min_size=16, max_size=16))

_RC_PC_MASKS = st.tuples(st.integers(0, 3), st.integers(0, 3), st.one_of(
    st.just(0x3F), st.just(0x3F), st.just(0x3F), st.integers(0, 0x3F)))


_FLAGS = st.one_of(st.just(0), st.just(0), st.integers(0, 0x3F))


@st.composite
def _state(draw: st.DrawFn) -> tuple[list[int], int, int, int]:
    regs = [draw(_X80) for _ in range(8)]
    empty = sum(1 << i for i in range(8) if draw(_I(0, 4)) == 0)
    if draw(_I(0, 3)) == 0:
        empty = draw(_I(0, 255))
    rc, pc, masks = draw(_RC_PC_MASKS)
    fcw = 0x40 | masks | (pc << 8) | (rc << 10)
    flags = draw(_FLAGS)
    if flags & 0x40:
        flags |= 1
    sf = 0x40 if flags & 1 and draw(_I(0, 3)) == 0 else 0
    cc = draw(_I(0, 15))
    fsw = flags | sf | (cc & 7) << 8 | (cc >> 3) << 14 | draw(_I(0, 7)) << 11
    if fsw & 0x3F & ~fcw:
        fsw |= M.ES | M.B
    return regs, empty, fcw, fsw


def _env_image(regs: list[int], empty: int, fcw: int, fsw: int) -> bytes:
    s = M.State(regs, fcw, fsw, empty)
    words = [fcw | 0xFFFF0000, fsw | 0xFFFF0000, s.tag_word() | 0xFFFF0000, 0x1234,
             0x08 | (0x1D9 << 16), 0x4100, 0x10 | 0xFFFF0000]
    env = b"".join(w.to_bytes(4, "little") for w in words)
    return env + b"".join(s.st(i).to_bytes(10, "little") for i in range(8))


# Instruction templates: (bytes before ModRM, ModRM reg or None, operand kind).
_REG = "reg"  # ModRM C0 + reg << 3 + i
_MEM = "mem"  # [EBX + disp8] on a slot
_ENVM = "env"  # [EBX + 100h]
_FIXED = "fixed"
TEMPLATES: tuple[tuple[bytes, int | None, str], ...] = tuple(
    [(bytes([e]), r, _REG) for e in (0xD8, 0xDC, 0xDE) for r in range(8)]
    + [(bytes([0xD9]), r, _REG) for r in (0, 1)]
    + [(bytes([0xDD]), r, _REG) for r in (0, 2, 3, 4, 5)]
    + [(bytes([e]), r, _REG) for e in (0xDA, 0xDB) for r in range(4)]
    + [(bytes([e]), r, _REG) for e in (0xDB, 0xDF) for r in (5, 6)]
    + [(bytes([0xD9, b]), None, _FIXED) for b in range(0xE0, 0x100)
       if b not in (0xE2, 0xE3, 0xE6, 0xE7, 0xEF)]
    + [(bytes([0xD9, 0xD0]), None, _FIXED), (bytes([0xDE, 0xD9]), None, _FIXED),
       (bytes([0xDA, 0xE9]), None, _FIXED), (bytes([0xDF, 0xE0]), None, _FIXED),
       (bytes([0xDB, 0xE2]), None, _FIXED), (bytes([0xDB, 0xE3]), None, _FIXED),
       (bytes([0x9B]), None, _FIXED)]
    + [(bytes([e]), r, _MEM) for e in (0xD8, 0xDC, 0xDA, 0xDE) for r in range(8)]
    + [(bytes([0xD9]), r, _MEM) for r in (0, 2, 3, 5, 7)]
    + [(bytes([0xDD]), r, _MEM) for r in (0, 2, 3, 7)]
    + [(bytes([0xDB]), r, _MEM) for r in (0, 2, 3, 5, 7)]
    + [(bytes([0xDF]), r, _MEM) for r in range(8) if r != 1]
    + [(bytes([0xD9]), r, _ENVM) for r in (4, 6)]
    + [(bytes([0xDD]), r, _ENVM) for r in (4, 6)]
)
_TEMPLATE = st.sampled_from(TEMPLATES)


@st.composite
def _instruction_from(draw: st.DrawFn,
                      template: st.SearchStrategy[tuple[bytes, int | None, str]]) -> bytes:
    pre, reg, kind = draw(template)
    if kind == _FIXED:
        return pre
    if kind == _REG:
        return pre + bytes([0xC0 | (reg or 0) << 3 | draw(_I(0, 7))])
    if kind == _ENVM:
        return pre + bytes([0x80 | (reg or 0) << 3 | 3]) + (0x100).to_bytes(4, "little")
    slot = draw(_I(0, 15))
    return pre + bytes([0x40 | (reg or 0) << 3 | 3, (16 * slot - 0x80) & 0xFF])


_INSN = _instruction_from(_TEMPLATE)
_STATE = _state()


@st.composite
def _scenario(draw: st.DrawFn, insn: st.SearchStrategy[bytes] = _INSN) -> X87Scenario:
    regs, empty, fcw, fsw = draw(_STATE)
    code = [draw(insn) for _ in range(draw(_I(1, 6)))]
    slots = b"".join(draw(_SLOT) for _ in range(16))
    r2, e2, c2, s2 = draw(_STATE)
    env = _env_image(r2, e2, c2, s2)
    data = slots + env + bytes(DATA_SIZE - len(slots) - len(env))
    flags = draw(_I(0, 7))
    eflags = 2 | (flags & 1) | (flags & 2) << 1 | (flags & 4) << 4
    return X87Scenario(regs, empty, fcw, fsw, eflags, data, code,
                       draw(_I(0, 0xFFFFFFFF)))


def scenarios(templates: Sequence[tuple[bytes, int | None, str]] | None = None
              ) -> st.SearchStrategy[X87Scenario]:
    """The ``fpu`` class's scenarios (``templates``: only those rows of :data:`TEMPLATES`)."""
    if templates is None:
        return _scenario()
    return _scenario(_instruction_from(st.sampled_from(list(templates))))


# ---- backends -------------------------------------------------------------------------------

@dataclass
class X87Snap:
    """One side's state after a step."""

    state: M.State
    eip: int
    vector: int | None
    data: bytes
    ptrs: tuple[int, int, int, int] | None = None  # Unicorn's FIP FCS FDP FDS before the step

    def fields(self) -> dict[str, int | None]:
        s = self.state
        out: dict[str, int | None] = {f"r{i}": s.regs[i] for i in range(8)}
        out.update(fsw=s.fsw, fcw=s.fcw, ftw=s.tag_word(), eax=s.eax, eflags=s.eflags,
                   eip=self.eip, exception=self.vector)
        return out


class AeroX87:
    """aero with a flat 32-bit protected-mode environment and CR0.NE."""

    def __init__(self) -> None:
        from aero.machine import Machine, MachineConfig

        self.m = Machine(MachineConfig(ram_size=1 << 20, devices=False))
        self.m.set_stop_on_exception(True)

    def load(self, sc: X87Scenario) -> None:
        from aero.machine import FpuRegs, Regs, Segment

        m = self.m
        m.reset()
        m.write(GDT, GDT_BYTES)
        m.write(DATA, sc.data)
        m.write(CODE, b"".join(sc.code) + b"\xf4")
        r = Regs()
        r.cs = Segment(0x08, 0, 0xFFFFFFFF, 0xC09B)
        for s in ("ds", "es", "ss", "fs", "gs"):
            setattr(r, s, Segment(0x10, 0, 0xFFFFFFFF, 0xC093))
        r.gdtr_base, r.gdtr_limit = GDT, len(GDT_BYTES) - 1
        r.cr0, r.eip, r.esp, r.ebx, r.eax = CR0, CODE, 0x8000, EBX, sc.eax
        r.eflags = sc.eflags
        m.set_regs(r)
        top = (sc.fsw >> 11) & 7
        ftw = sum(3 << (2 * p) for p in range(8) if sc.empty >> p & 1)
        m.set_fpu(FpuRegs([sc.regs[(top + i) & 7] for i in range(8)], sc.fcw, sc.fsw, ftw))
        m.clear_exception()

    def snap(self, vector: int | None) -> X87Snap:
        f = self.m.get_fpu()
        r = self.m.get_regs()
        top = (f.fsw >> 11) & 7
        regs = [0] * 8
        for i in range(8):
            regs[(top + i) & 7] = f.st[i]
        empty = sum(1 << p for p in range(8) if (f.ftw >> (2 * p)) & 3 == 3)
        st = M.State(regs, f.fcw, f.fsw, empty, r.eax, r.eflags, r.ebx, 0, f.fip, f.fcs,
                     f.fop, f.fdp, f.fds)
        return X87Snap(st, r.eip, vector, self.m.read(DATA, DATA_SIZE))

    def step(self) -> X87Snap:
        from aero.machine import StopReason

        m = self.m
        m.clear_exception()
        stop = m.step()
        vec = None
        if stop == StopReason.EXCEPTION:
            last = m.last_exception()
            vec = last[0] if last else None
        return self.snap(vec)


class UnicornX87:
    """Unicorn in the same environment; x87 state through its register API."""

    def __init__(self) -> None:
        from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc

        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.uc.mem_map(0, RAM)
        self._vector: int | None = None
        self.uc.hook_add(UC_HOOK_INTR, self._intr)
        self._clean = self.uc.context_save()

    def _intr(self, uc: object, intno: int, _u: object) -> None:
        if self._vector is None:
            self._vector = intno
        uc.emu_stop()  # type: ignore[attr-defined]

    def load(self, sc: X87Scenario) -> None:
        from unicorn import x86_const as X

        uc = self.uc
        uc.context_restore(self._clean)
        uc.mem_write(0, bytes(RAM))
        uc.mem_write(GDT, GDT_BYTES)
        uc.mem_write(DATA, sc.data)
        uc.mem_write(CODE, b"".join(sc.code) + b"\xf4")
        uc.ctl_flush_tb()
        uc.reg_write(X.UC_X86_REG_CR0, CR0)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, len(GDT_BYTES) - 1, 0))
        for r in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS,
                  X.UC_X86_REG_GS):
            uc.reg_write(r, 0x10)
        uc.reg_write(X.UC_X86_REG_CS, 0x08)
        uc.reg_write(X.UC_X86_REG_EIP, CODE)
        uc.reg_write(X.UC_X86_REG_ESP, 0x8000)
        uc.reg_write(X.UC_X86_REG_EBX, EBX)
        self.set_x87(M.State(list(sc.regs), sc.fcw, sc.fsw, sc.empty, sc.eax, sc.eflags))

    def set_x87(self, s: M.State) -> None:
        """Write the x87 state, EAX and EFLAGS."""
        from unicorn import x86_const as X

        uc = self.uc
        for p in range(8):
            v = s.regs[p]
            uc.reg_write(getattr(X, f"UC_X86_REG_FP{p}"), (v & M.M64, v >> 64))
        uc.reg_write(X.UC_X86_REG_FPCW, s.fcw)
        uc.reg_write(X.UC_X86_REG_FPSW, s.fsw)
        uc.reg_write(X.UC_X86_REG_FPTAG, sum(3 << (2 * p) for p in range(8) if s.empty >> p & 1))
        uc.reg_write(X.UC_X86_REG_EAX, s.eax)
        uc.reg_write(X.UC_X86_REG_EFLAGS, s.eflags)

    def write_data(self, data: bytes) -> None:
        self.uc.mem_write(DATA, data)

    def snap(self, vector: int | None) -> X87Snap:
        from unicorn import x86_const as X

        uc = self.uc
        regs = []
        for p in range(8):
            mant, se = uc.reg_read(getattr(X, f"UC_X86_REG_FP{p}"))
            regs.append(((se & 0xFFFF) << 64) | (mant & M.M64))
        tag = uc.reg_read(X.UC_X86_REG_FPTAG)
        empty = sum(1 << p for p in range(8) if (tag >> (2 * p)) & 3 == 3)
        st = M.State(regs, uc.reg_read(X.UC_X86_REG_FPCW), uc.reg_read(X.UC_X86_REG_FPSW),
                     empty, uc.reg_read(X.UC_X86_REG_EAX) & 0xFFFFFFFF,
                     uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF)
        return X87Snap(st, uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFFFFFF, vector,
                       bytes(uc.mem_read(DATA, DATA_SIZE)))

    def step(self, length: int) -> X87Snap:
        from unicorn import UC_ERR_INSN_INVALID, UcError
        from unicorn import x86_const as X

        uc = self.uc
        self._vector = None
        ptrs = tuple(uc.reg_read(r) & 0xFFFFFFFF for r in (
            X.UC_X86_REG_FIP, X.UC_X86_REG_FCS, X.UC_X86_REG_FDP, X.UC_X86_REG_FDS))
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        try:
            uc.emu_start(eip, eip + length)
        except UcError as exc:
            if exc.errno != UC_ERR_INSN_INVALID:
                raise
            self._vector = M.UD
        snap = self.snap(self._vector)
        snap.ptrs = ptrs  # type: ignore[assignment]
        return snap


# ---- one step, judged -----------------------------------------------------------------------

@dataclass
class X87Record:
    """The first divergence of a scenario: the step, the states before and after it on
    both sides, the model's prediction (None: not modelled) and the differing fields."""

    index: int
    code: bytes
    before: X87Snap
    aero: X87Snap
    ref: X87Snap
    model: M.Outcome | None
    mismatches: list[str]
    undefined: int = 0
    note: str = ""


class _Mem:
    """Memory reads of the model: the data area before the step (flat segments)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ebx = EBX

    def __call__(self, addr: int, n: int) -> bytes:
        off = addr - DATA
        if off < 0 or off + n > len(self.data):
            raise ValueError("operand outside the data area")
        return self.data[off:off + n]


def model_snap(before: X87Snap, code: bytes, dev: frozenset[str] = frozenset()
               ) -> tuple[M.Outcome | None, X87Snap | None]:
    """The model's outcome of one instruction (with the deviations ``dev``) and the
    snapshot it predicts."""
    state = before.state.copy()
    state.eip_now = before.eip
    out = M.step(state, code, _Mem(before.data), dev)
    if out is None:
        return None, None
    data = bytearray(before.data)
    for addr, b in out.writes:
        data[addr - DATA:addr - DATA + len(b)] = b
    eip = before.eip if out.vector is not None else before.eip + len(code)
    state = out.state if out.vector is None else before.state
    return out, X87Snap(state, eip, out.vector, bytes(data))


def differences(a: X87Snap, b: X87Snap, undefined: int = 0) -> list[str]:
    """The fields in which two snapshots differ (C bits in ``undefined`` ignored)."""
    fa, fb = a.fields(), b.fields()
    out = []
    for k in fa:
        x, y = fa[k], fb[k]
        if k == "fsw" and x is not None and y is not None:
            x, y = x & ~undefined, y & ~undefined
        if x != y:
            out.append(k)
    if a.data != b.data:
        out.append("memory")
    return out


@dataclass
class X87Divergence:
    """A recorded divergence with its explanation (None: unexplained)."""

    scenario: X87Scenario
    record: X87Record
    signature: str
    explanation: str | None
    occurrences: int = 1

    @property
    def explained(self) -> bool:
        return self.explanation is not None

    def to_dict(self) -> dict:
        rec = self.record

        def side(s: X87Snap) -> dict:
            f = s.fields()
            return {k: (None if v is None else (f"{v:020x}" if k.startswith("r") else v))
                    for k, v in f.items()}

        title = _title(self.explanation)
        return {"signature": self.signature, "mode": "pm32", "bytes": rec.code.hex(),
                "decoded": rec.code.hex(), "step": rec.index,
                "code": [c.hex() for c in self.scenario.code],
                "explained": self.explained,
                "explanation": None if self.explanation is None else {
                    "key": self.explanation, "title": title},
                "occurrences": self.occurrences,
                "mismatches": [{"field": m, "aero": rec.aero.fields().get(m),
                                "ref": rec.ref.fields().get(m)} for m in rec.mismatches],
                "initial": self.scenario.to_dict(), "before": side(rec.before),
                "aero": side(rec.aero), "unicorn": side(rec.ref),
                "model": None if rec.model is None else "modelled",
                "note": rec.note}


def _title(key: str | None) -> str:
    titles = {k.key: k.title for k in X87_DIVERGENCES}
    return "; ".join(titles[k] for k in key.split("+")) if key else ""


def signature(code: bytes, mismatches: Sequence[str]) -> str:
    """One finding per opcode row (escape and ModRM reg, or the whole register form for
    D9/DB/DE/DF rows that are single instructions) and set of differing fields."""
    if code[0] == 0x9B:
        op = "9b"
    elif code[1] >= 0xC0:
        op = f"{code[0]:02x}{code[1] & 0xF8:02x}" if code[0] in (0xD8, 0xDC, 0xDE, 0xDA,
                                                                  0xDB, 0xDD, 0xDF) and not (
            code[0] in (0xDB, 0xDE, 0xDF, 0xDA) and code[1] in (0xD9, 0xE0, 0xE2, 0xE3, 0xE9)
        ) else code[:2].hex()
    else:
        op = f"{code[0]:02x}/{(code[1] >> 3) & 7}"
    return f"fpu:{op}:{','.join(sorted(set(m.rstrip('01234567') for m in mismatches)))}"


class X87Checker:
    """Runs scenarios on aero and Unicorn and finds the first divergence."""

    def __init__(self) -> None:
        self.aero = AeroX87()
        self.ref = UnicornX87()
        self.trans_checked = 0
        self.trans_skipped = 0
        self.model_gaps = 0
        self.fprem_checked = 0
        self.gap_codes: dict[str, int] = {}

    def run(self, sc: X87Scenario) -> X87Record | None:
        self.aero.load(sc)
        self.ref.load(sc)
        before = self.aero.snap(None)
        for idx, code in enumerate(sc.code):
            a = self.aero.step()
            out, pred = model_snap(before, code)
            modrm = code[1] if len(code) > 1 else 0
            if out is None and not (code[0] == 0xD9 and modrm in TRANSCENDENTAL):
                self.model_gaps += 1
                self.gap_codes[code[:2].hex()] = self.gap_codes.get(code[:2].hex(), 0) + 1
            if code[0] == 0xD9 and modrm in TRANSCENDENTAL:
                probs = judge(before.state, a.state, a.vector, modrm)
                if probs is None:
                    self.trans_skipped += 1
                else:
                    self.trans_checked += 1
                    if probs:
                        ref = self.ref.snap(None)
                        return X87Record(idx, code, before, a, ref, None,
                                         ["transcendental"], note="; ".join(probs))
                if a.vector is not None:
                    return None
                self.ref.set_x87(a.state)
                self.ref.uc.reg_write(_eip_reg(), a.eip)
                self.ref.write_data(a.data)
                before = a
                continue
            if code[:2] in (b"\xd9\xf8", b"\xd9\xf5"):
                # FPREM/FPREM1: Unicorn computes them in host double precision; judged
                # by the exact model alone (docs/known-divergences.md).
                if pred is None:
                    return X87Record(idx, code, before, a, a, None, ["model"],
                                     note="FPREM not modelled")
                diff = differences(a, pred, out.undefined if out else 0)
                if diff:
                    return X87Record(idx, code, before, a, pred, out, ["model:" + d
                                                                     for d in diff],
                                     note="aero differs from the exact model")
                self.fprem_checked += 1
                if a.vector is not None:
                    return None
                self.ref.set_x87(a.state)
                self.ref.uc.reg_write(_eip_reg(), a.eip)
                before = a
                continue
            r = self.ref.step(len(code))
            undefined = out.undefined if out is not None else 0
            diff = differences(a, r, undefined)
            if diff:
                return X87Record(idx, code, before, a, r, out, diff, undefined)
            if a.vector is not None:
                return None
            if undefined and a.state.fsw != r.state.fsw:
                self.ref.set_x87(a.state)
            before = a
        return None


def _eip_reg() -> int:
    from unicorn import x86_const as X

    return X.UC_X86_REG_EIP


# ---- known divergences of Unicorn's x87 ----------------------------------------------------

@dataclass(frozen=True)
class X87Known:
    """A documented way in which Unicorn's x87 deviates from the SDM. ``dev`` names the
    switch of :func:`aero.fuzz.x87model.step` that applies exactly this deviation to the
    SDM model."""

    key: str
    dev: str
    title: str
    evidence: str


X87_DIVERGENCES: tuple[X87Known, ...] = (
    X87Known("x87-flags", "flags",
             "Unicorn's x87 reports no exception flag raised inside its soft-float (IE, DE, "
             "PE, UE, OE) and never writes C1 (round-up indicator, stack fault direction); "
             "the one flag it reports is ZE, for any division by a zero divisor",
             "SDM Vol. 1, 4.9.1 and 8.5 (each flag is set when its condition occurs, masked "
             "or not), 8.1.3.3 and the instruction pages (C1 'set if result was rounded "
             "up'); FDIV: 0/0 and NaN/0 are #IA or NaN propagation, not #Z. QEMU 5.0's "
             "fpu_helper.c sets FPUS_ZE in helper_fdiv when the divisor is zero and does not "
             "merge the soft-float flags (that came with QEMU 5.1)."),
    X87Known("x87-stack", "stack",
             "Unicorn's x87 does not detect stack overflow or underflow: an empty register "
             "is read as the value it last held, a push overwrites a full one",
             "SDM Vol. 1, 8.5.1.1 (stack overflow or underflow: IE and SF, C1 the "
             "direction; masked, the QNaN indefinite is the result)."),
    X87Known("x87-unmasked-response", "suppress",
             "Unicorn's x87 gives the masked response to unmasked exceptions: the result "
             "is written (and the stack popped) where the SDM leaves the destination "
             "unchanged, and overflow/underflow results are not rescaled by 2^24576",
             "SDM Vol. 1, 4.9.2 / 8.5 ('the destination operand is not changed' for "
             "unmasked #IA, #D, #Z), 8.5.4-8.5.5 (unmasked overflow/underflow: the "
             "exponent is adjusted by 24576 for register destinations)."),
    X87Known("x87-mf-only-at-fwait", "mf",
             "Unicorn raises #MF for a pending unmasked exception only at FWAIT, not at the "
             "next waiting x87 instruction",
             "SDM Vol. 1, 8.6 ('the x87 FPU ... checks for pending unmasked exceptions "
             "before executing a waiting floating-point instruction' and signals #MF)."),
    X87Known("x87-constants-not-rounded", "const",
             "Unicorn's FLDL2T, FLDL2E, FLDPI, FLDLG2 and FLDLN2 load the round-to-nearest "
             "constant whatever RC says",
             "SDM Vol. 1, 8.3.8 ('the rounding control field ... selects the rounding of "
             "the constants'), FLD1/FLDL2T/... page: rounded per RC."),
    X87Known("x87-fsqrt-negative-c2", "fsqrt",
             "Unicorn's FSQRT of an operand with the sign bit set sets C2 and clears C0, C1 "
             "and C3",
             "SDM Vol. 2, FSQRT: C1 is the round-up indicator (0 when not rounded up or "
             "on #IA), C0, C2, C3 undefined. QEMU 5.0 helper_fsqrt writes 0400h into the "
             "condition codes for negative operands."),
    X87Known("x87-fcw-bit6", "bit6",
             "Unicorn keeps FCW bit 6 as loaded by FLDCW/FLDENV/FRSTOR; it reads as 1 on "
             "Intel processors (FNINIT's 037Fh)",
             "SDM Vol. 1, figure 8-6 (bit 6 reserved) and FINIT (037Fh); docs/fpu.md "
             "'Choices where the SDM leaves freedom'."),
    X87Known("x87-environment-pointers", "env",
             "Unicorn's FNSTENV/FNSAVE image has FOP zero and the reserved halves of the "
             "32-bit layout zero, and its FIP/FCS/FDP/FDS are its own pointer registers, "
             "which only memory-operand instructions update",
             "SDM Vol. 1, 8.1.10 and figure 8-9 (the opcode of the last non-control "
             "instruction is stored, and its FIP/FCS whatever its operands; reserved halves: "
             "docs/fpu.md stores FFFFh, the value Intel processors store)."),
)
X87_DIVERGENCES += (
    X87Known("x87-fbstp-negative-zero", "bcdsign",
             "Unicorn's FBSTP stores a negative value that rounds to zero as +0 (sign byte "
             "00h)",
             "SDM Vol. 2, FBSTP: the sign of the source is stored (table 'FBSTP Results': "
             "-0 or a value rounding to -0 stores -0). QEMU 5.0 helper_fbst_ST0 takes the "
             "sign from the int64 conversion."),
)
X87_DIVERGENCES += (
    X87Known("x87-fbstp-range", "bcdrange",
             "Unicorn's FBSTP does not check the 18-digit range: a NaN, infinity or a value "
             "of 10^18 or more is converted to a 64-bit integer (saturated) and its low 18 "
             "digits are stored instead of the packed BCD indefinite",
             "SDM Vol. 2, FBSTP: #IA 'source operand is empty; or if it contains an "
             "infinity, a NaN, or an unsupported format; or if the source is too large for "
             "the destination' (masked: the packed BCD indefinite is stored)."),
    X87Known("x87-fscale-nan", "fscale",
             "Unicorn's FSCALE copies a NaN in ST(1) to ST(0) as it is (an SNaN is not "
             "quieted and no IE is raised)",
             "SDM Vol. 1, 4.8.3.5 and table 4-7: an SNaN operand raises #IA and the result "
             "is the SNaN quieted; FSCALE's table: 'NaN' for a NaN operand."),
    X87Known("x87-pseudo-denormal-add", "pdenorm",
             "Unicorn adds two exponent-0 operands of the same sign, one a pseudo-denormal, "
             "whose significands sum to 2^64 as +-0 (the carry out of the significand is "
             "lost)",
             "SDM Vol. 1, 8.2.2 (pseudo-denormals are operands with the value of the "
             "denormal of the same significand, i.e. exponent -16382): the exact sum is "
             "+-2^-16381, a normal number. QEMU fixed addFloatx80Sigs for pseudo-denormals "
             "in 5.1."),
)
X87_DIVERGENCES += (
    X87Known("x87-fxtract-raw", "fxtract",
             "Unicorn's FXTRACT takes the biased exponent field as it is: a denormal gives "
             "-16383 and an unnormalized significand, a NaN or infinity gives 16384 and "
             "the significand with exponent 3FFFh",
             "SDM Vol. 2, FXTRACT: the exponent of the normalized value (denormals raise #D "
             "and are normalized); table 'FXTRACT Results': NaN gives NaN, infinity gives "
             "+inf and the infinity."),
    X87Known("x87-snan-store-not-quieted", "snanstore",
             "Unicorn's FST/FSTP m32/m64 of an SNaN stores it truncated without setting "
             "the quiet bit (the default NaN when the truncated fraction is zero)",
             "SDM Vol. 1, 4.8.3.4 and table 4-7 ('SNaN ... converted to a QNaN'), FST: "
             "#IA for an SNaN source; masked, the QNaN is stored."),
)
X87_DIVERGENCES += (
    X87Known("x87-fnstenv-no-mask", "envmask",
             "Unicorn's FNSTENV leaves the exception masks as they were",
             "SDM Vol. 2, FSTENV/FNSTENV Operation: 'FPUControlWord.ExceptionMasks <- "
             "111111B' after the environment is stored."),
)
X87_DIVERGENCES += (
    X87Known("x87-fscale-precision-control", "pcscale",
             "Unicorn's FSCALE rounds its result to the precision-control precision (24 or "
             "53 bits)",
             "SDM Vol. 1, 8.1.5.2: precision control affects only FADD, FADDP, FIADD, FSUB, "
             "FSUBP, FISUB, FSUBR, FSUBRP, FISUBR, FMUL, FMULP, FIMUL, FDIV, FDIVP, FIDIV, "
             "FDIVR, FDIVRP, FIDIVR and FSQRT."),
)
X87_DIVERGENCES += (
    X87Known("x87-fxam-unsupported", "fxam",
             "Unicorn's FXAM classifies a pseudo-NaN or pseudo-infinity as a NaN (C0) and "
             "an unnormal as a normal number (C2)",
             "SDM Vol. 2, FXAM table: 'Unsupported' is C3 C2 C0 = 000; Vol. 1, 8.2.2: "
             "pseudo-NaNs, pseudo-infinities and unnormals are unsupported formats."),
)
X87_DIVERGENCES += (
    X87Known("x87-fscale-scale-as-integer", "fscaleint",
             "Unicorn's FSCALE converts an infinite or unsupported ST(1) to a 32-bit integer "
             "and scales ST(0) by it, clamped to 2^+-65536: an unnormal or pseudo-infinity "
             "(the integer indefinite) scales by 2^-65536 instead of raising #IA, an "
             "infinity by 2^+-65536, so a finite ST(0) overflows or underflows as RC and PC "
             "say instead of becoming the infinity or zero, and a zero or infinite ST(0) "
             "is kept where 0 x 2^+inf and inf x 2^-inf are #IA",
             "SDM Vol. 2, FSCALE results table (ST(1) = +inf: +-inf for a finite ST(0), "
             "#IA for a zero; ST(1) = -inf: +-0, #IA for an infinity); Vol. 1, 8.2.2 and "
             "8.5.1 (an unsupported operand is #IA). QEMU 5.0 helper_fscale converts ST(1) "
             "with floatx80_to_int32_round_to_zero (1 << 31 for an invalid encoding, "
             "saturated for an infinity) and floatx80_scalbn clamps the scale to "
             "+-0x10000."),
    X87Known("x87-snan-load-not-quieted", "snanload",
             "Unicorn's FLD m32/m64 of an SNaN loads it without setting the quiet bit",
             "SDM Vol. 2, FLD: #IA 'source operand is an SNaN' (not for m80fp); Vol. 1, "
             "4.8.3.4 and table 4-7: masked, the SNaN is converted to a QNaN. QEMU 5.0 "
             "float32_to_floatx80 / float64_to_floatx80 go through commonNaNToFloatx80, "
             "which keeps the fraction as it is."),
)
_DEV_KEY = {k.dev: k.key for k in X87_DIVERGENCES}


def _subsets(names: Sequence[str]) -> list[frozenset[str]]:
    from itertools import combinations

    return [frozenset(c) for n in range(1, len(names) + 1) for c in combinations(names, n)]


def _relevant_subsets(rec: X87Record) -> list[frozenset[str]]:
    """The deviation sets worth trying for this step (a deviation that cannot change the
    outcome of this instruction from this state is left out: same result, fewer trials)."""
    s, code = rec.before.state, rec.code
    modrm = code[1] if len(code) > 1 else 0
    reg = (modrm >> 3) & 7
    names = ["flags", "stack"]
    if (s.fcw & 0x3F) != 0x3F:
        names.append("suppress")
    if s.fsw & M.ES:
        names.append("mf")
    if code[0] == 0xD9 and 0xE9 <= modrm <= 0xED:
        names.append("const")
    if code[:2] == b"\xd9\xfa":
        names.append("fsqrt")
    if modrm < 0xC0 and code[0] in (0xD9, 0xDD) and reg in (4, 5):
        names.append("bit6")
    if modrm < 0xC0 and code[0] in (0xD9, 0xDD) and reg == 6:
        names += ["env", "envmask"]
    if modrm < 0xC0 and code[0] == 0xDF and reg == 6:
        names += ["bcdsign", "bcdrange"]
    if code[:2] == b"\xd9\xfd":
        names += ["fscale", "pcscale", "fscaleint"]
    if modrm < 0xC0 and code[0] in (0xD9, 0xDD) and reg == 0:
        names.append("snanload")
    if code[:2] == b"\xd9\xf4":
        names.append("fxtract")
    if code[:2] == b"\xd9\xe5":
        names.append("fxam")
    if modrm < 0xC0 and code[0] in (0xD9, 0xDD) and reg in (2, 3):
        names.append("snanstore")
    if code[0] in (0xD8, 0xDC, 0xDE) and modrm >= 0xC0 and reg in (0, 4, 5):
        names.append("pdenorm")
    return _subsets(names)


def explain(rec: X87Record) -> str | None:
    """The entries that explain a divergence (``+``-joined keys), or None.

    Explained only when the model covers the instruction, aero's snapshot equals the
    model's prediction in every field (C bits the SDM leaves undefined aside), and
    Unicorn's snapshot equals the model's prediction with a set of the documented
    deviations applied, the smallest set that reproduces it exactly."""
    if rec.model is None or rec.mismatches == ["transcendental"]:
        return None
    _, pred = model_snap(rec.before, rec.code)
    assert pred is not None
    if differences(rec.aero, pred, rec.undefined):
        return None
    for dev in _relevant_subsets(rec):
        before = rec.before
        if "env" in dev and rec.ref.ptrs is not None:
            st = before.state.copy()
            st.fip, st.fcs, st.fdp, st.fds = rec.ref.ptrs
            before = X87Snap(st, before.eip, before.vector, before.data)
        out, want = model_snap(before, rec.code, dev)
        if want is not None and out is not None and not differences(rec.ref, want,
                                                                    out.undefined):
            return "+".join(_DEV_KEY[d] for d in sorted(dev, key=list(_DEV_KEY).index))
    return None


# ---- the campaign ---------------------------------------------------------------------------

@dataclass
class X87Result:
    """What an ``fpu`` campaign did and found (the shape of the other campaigns' results)."""

    examples: int
    seed: int
    discarded: int = 0
    runs: int = 0
    elapsed: float = 0.0
    divergences: list[X87Divergence] = field(default_factory=list)
    explained_count: int = 0
    trans_checked: int = 0
    trans_skipped: int = 0
    model_gaps: int = 0
    fprem_checked: int = 0

    @property
    def unexplained(self) -> list[X87Divergence]:
        return [d for d in self.divergences if not d.explained]

    def to_dict(self) -> dict:
        return {"examples": self.examples, "seed": self.seed, "modes": ["pm32"],
                "classes": ["fpu"], "discarded": self.discarded, "runs": self.runs,
                "elapsed_seconds": round(self.elapsed, 3), "not_implemented": [],
                "unexplained": len(self.unexplained),
                "explained_occurrences": self.explained_count,
                "divergences": [d.to_dict() for d in self.divergences],
                "transcendentals": {"checked": self.trans_checked,
                                    "not_judged": self.trans_skipped},
                "fprem_judged_by_model": self.fprem_checked,
                "not_modelled_steps": self.model_gaps,
                "exclusions": [],
                "known_divergences": [{"key": k.key, "title": k.title}
                                      for k in X87_DIVERGENCES]}


class _Found(Exception):
    def __init__(self, sig: str, sc: X87Scenario, rec: X87Record) -> None:
        super().__init__(sig)
        self.sig, self.sc, self.rec = sig, sc, rec


def _derive_seed(seed: int, run: int) -> int:
    if run == 0:
        return seed
    h = hashlib.sha256(f"aero-fuzz-fpu:{seed}:{run}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def run_fpu_campaign(examples: int, seed: int,
                     progress: Callable[[int], None] | None = None,
                     max_runs: int = 200, shrink: bool = True,
                     checker: X87Checker | None = None) -> X87Result:
    """Run ``examples`` scenarios of the ``fpu`` class; deterministic for (examples, seed).

    Every unexplained divergence is shrunk and recorded once per signature; the campaign
    then goes on with a derived seed until the budget is used. Explained divergences are
    counted and recorded (first occurrence per entry and signature), not shrunk."""
    checker = checker or X87Checker()
    result = X87Result(0, seed)
    found: dict[str, X87Divergence] = {}
    start = time.monotonic()
    strategy = scenarios()
    run = 0
    while result.examples < examples and run < max_runs:
        found_one = _one_run(strategy, checker, examples - result.examples,
                             _derive_seed(seed, run), result, found, progress, shrink)
        run += 1
        if not found_one:
            break
    result.runs = run
    result.divergences = list(found.values())
    result.elapsed = time.monotonic() - start
    result.trans_checked = checker.trans_checked
    result.trans_skipped = checker.trans_skipped
    result.model_gaps = checker.model_gaps
    result.fprem_checked = checker.fprem_checked
    return result


def _one_run(strategy: st.SearchStrategy[X87Scenario], checker: X87Checker, budget: int,
             run_seed: int, result: X87Result, found: dict[str, X87Divergence],
             progress: Callable[[int], None] | None, shrink: bool) -> bool:
    """One Hypothesis run; True when it found (and shrank) a new unexplained divergence."""
    target: list[str | None] = [None]
    last: list[_Found | None] = [None]

    @settings(max_examples=budget, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
              report_multiple_bugs=False, verbosity=Verbosity.quiet, print_blob=False)
    @hseed(run_seed)
    @given(strategy)
    def prop(sc: X87Scenario) -> None:
        shrinking = target[0] is not None
        rec = checker.run(sc)
        if not shrinking:
            result.examples += 1
            if progress is not None:
                progress(result.examples)
        if rec is None:
            return
        sig = signature(rec.code, rec.mismatches)
        if shrinking and sig != target[0]:
            return
        known = explain(rec)
        if known is not None:
            if not shrinking:
                result.explained_count += 1
                key = f"{known}|{sig}"
                if key in found:
                    found[key].occurrences += 1
                else:
                    found[key] = X87Divergence(sc, rec, sig, known)
            return
        if sig in found:
            if not shrinking:
                found[sig].occurrences += 1
            return
        if target[0] is None:
            target[0] = sig
        if sig == target[0]:
            last[0] = _Found(sig, sc, rec)
            raise last[0]

    try:
        with _quiet_generation():  # type: ignore[attr-defined]
            prop()
    except Exception as exc:
        f = exc if isinstance(exc, _Found) else last[0]
        if f is None:
            raise
        found[f.sig] = X87Divergence(f.sc, f.rec, f.sig, None)
        return True
    return False


def merge_counts(parts: Sequence[dict]) -> dict:
    """The fpu class's own counts summed over chunk results (:meth:`X87Result.to_dict`)."""
    return {"transcendentals": {k: sum(p["transcendentals"][k] for p in parts)
                                for k in ("checked", "not_judged")},
            "fprem_judged_by_model": sum(p["fprem_judged_by_model"] for p in parts),
            "not_modelled_steps": sum(p["not_modelled_steps"] for p in parts)}


def _quiet_generation() -> object:
    from .executor import module_independent_generation

    return module_independent_generation()


# ---- regression cases -----------------------------------------------------------------------

def write_case(div: X87Divergence, directory: Path, name: str) -> Path:
    """Save a divergence as ``directory/name.json``: the scenario, the step, and aero's
    state after it (the SDM's, by the model) as the expected state."""
    rec = div.record
    case = {"description": _title(div.explanation) or "x87 divergence",
            "known_divergence": div.explanation, "signature": div.signature,
            "scenario": div.scenario.to_dict(), "steps": rec.index + 1,
            "undefined_fsw": rec.undefined,
            "expected": _snap_dict(rec.aero), "unicorn": _snap_dict(rec.ref)}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(case, indent=1, sort_keys=True) + "\n")
    return path


def _snap_dict(s: X87Snap) -> dict:
    f = s.fields()
    return {"fields": {k: v for k, v in f.items()}, "data": s.data.hex(),
            "empty": s.state.empty}


def replay_case(case: dict, reference: str = "aero") -> tuple[list[str], X87Snap]:
    """Run a kept case on aero (or on Unicorn with ``reference='unicorn'``) and return the
    fields that differ from the expected state (C bits left undefined aside)."""
    sc = X87Scenario.from_dict(case["scenario"])
    snap: X87Snap | None = None
    if reference == "aero":
        a = AeroX87()
        a.load(sc)
        for _ in range(int(case["steps"])):
            snap = a.step()
    else:
        u = UnicornX87()
        u.load(sc)
        for code in sc.code[:int(case["steps"])]:
            snap = u.step(len(code))
    assert snap is not None
    exp = case["expected"]["fields"]
    got = snap.fields()
    und = int(case.get("undefined_fsw", 0))
    out = [k for k in exp if (got[k] if k != "fsw" else (got[k] or 0) & ~und)
           != (exp[k] if k != "fsw" else (exp[k] or 0) & ~und)]
    if snap.data.hex() != case["expected"]["data"]:
        out.append("memory")
    return out, snap


# The instruction rows a search for each deviation draws from (None: every row).
_SEARCH: dict[str, tuple[tuple[bytes, int | None], ...] | None] = {
    "x87-fsqrt-negative-c2": ((b"\xd9\xfa", None),),
    "x87-fcw-bit6": ((b"\xd9", 5), (b"\xd9", 4), (b"\xdd", 4)),
    "x87-environment-pointers": ((b"\xd9", 6), (b"\xdd", 6), (b"\xd8", 0), (b"\xdc", 1)),
    "x87-fnstenv-no-mask": ((b"\xd9", 6),),
    "x87-fbstp-negative-zero": ((b"\xdf", 6),),
    "x87-fbstp-range": ((b"\xdf", 6),),
    "x87-fscale-nan": ((b"\xd9\xfd", None),),
    "x87-fscale-precision-control": ((b"\xd9\xfd", None),),
    "x87-fxtract-raw": ((b"\xd9\xf4", None),),
    "x87-snan-store-not-quieted": ((b"\xd9", 2), (b"\xd9", 3), (b"\xdd", 2), (b"\xdd", 3)),
    "x87-pseudo-denormal-add": ((b"\xd8", 0), (b"\xdc", 0), (b"\xde", 0)),
    "x87-fxam-unsupported": ((b"\xd9\xe5", None),),
    "x87-fscale-scale-as-integer": ((b"\xd9\xfd", None),),
    "x87-snan-load-not-quieted": ((b"\xd9", 0), (b"\xdd", 0)),
}


def find_known(checker: X87Checker, key: str, seed: int = 0, examples: int = 3000
               ) -> X87Divergence | None:
    """An example whose explanation includes the entry ``key``, its instruction stream cut
    after the diverging step (None if none was found within ``examples``)."""
    import random

    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    def explained_by(sc: X87Scenario) -> bool:
        rec = checker.run(sc)
        if rec is None:
            return False
        got = explain(rec)
        return got is not None and key in got.split("+")

    try:
        with _quiet_generation():  # type: ignore[attr-defined]
            rows = _SEARCH.get(key)
            templates = None if rows is None else [
                t for t in TEMPLATES if (t[0], t[1]) in rows]
            sc = find(scenarios(templates), explained_by,
                      settings=settings(max_examples=examples, database=None, deadline=None,
                                        suppress_health_check=list(HealthCheck),
                                        phases=[Phase.generate]),
                      random=random.Random(seed))
    except NoSuchExample:
        return None
    rec = checker.run(sc)
    assert rec is not None
    # Shrinking a whole x87 state is slow; cut the stream after the diverging step instead.
    sc.code = sc.code[:rec.index + 1]
    rec = checker.run(sc)
    assert rec is not None
    return X87Divergence(sc, rec, signature(rec.code, rec.mismatches), explain(rec))


def write_known_cases(directory: Path, seed: int = 1) -> list[Path]:
    """One shrunk case per entry of :data:`X87_DIVERGENCES` as ``directory/KEY.json``."""
    checker = X87Checker()
    out = []
    for k in X87_DIVERGENCES:
        div = find_known(checker, k.key, seed)
        if div is not None:
            out.append(write_case(div, directory, k.key))
    return out
