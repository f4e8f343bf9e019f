"""CPU architectural-state oracles: ``cpu`` (checkpoints and the end) and ``cpu-step``
(after every instruction, slow)."""

from __future__ import annotations

from typing import Any

from aero.machine import Regs

from .api import Context, Oracle
from .registry import register

# EFLAGS (SDM Vol. 1 §3.4.3, Figure 3-8): bit 1 reads as 1; bits 3, 5, 15 and 22-31 are
# reserved and read as 0.
EFLAGS_ONE = 1 << 1
EFLAGS_ZERO = (1 << 3) | (1 << 5) | (1 << 15) | (0x3FF << 22)
EFLAGS_VM = 1 << 17
CR0_PE, CR0_NW, CR0_CD, CR0_PG = 1 << 0, 1 << 29, 1 << 30, 1 << 31
# CR4 bits a P6-family CPU defines (SDM Vol. 3 §2.5) and the CPUID feature each needs; PCE
# (bit 8) needs none. Every other bit is reserved.
CR4_FEATURE = {0: "vme", 1: "vme", 2: "tsc", 3: "de", 4: "pse", 5: "pae", 6: "mce", 7: "pge"}
CR4_DEFINED = (1 << 8) | sum(1 << b for b in CR4_FEATURE)


def check_regs(r: Regs, features: tuple[str, ...] | None = None) -> list[tuple[str, str, dict]]:
    """The architectural invariants ``r`` breaks, as (rule, message, state)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    fl = r.eflags
    if not fl & EFLAGS_ONE or fl & EFLAGS_ZERO:
        out.append(("eflags", "EFLAGS has a reserved bit in the wrong state (bit 1 must be "
                    "1; bits 3, 5, 15 and 22-31 must be 0)",
                    {"eflags": fl, "bad_bits": (fl & EFLAGS_ZERO) | (~fl & EFLAGS_ONE)}))
    pe, v86 = bool(r.cr0 & CR0_PE), bool(fl & EFLAGS_VM)
    if pe and not v86:
        if r.cpl != r.cs.selector & 3:
            out.append(("cpl", f"CPL {r.cpl} differs from CS.RPL {r.cs.selector & 3} in "
                        f"protected mode", {"cpl": r.cpl, "cs": r.cs.selector, "cs_attr": r.cs.attr,
                                  "eip": r.eip, "cr0": r.cr0}))
        ss_dpl = (r.ss.attr >> 5) & 3
        if ss_dpl != r.cpl:
            out.append(("ss-dpl", f"SS.DPL {ss_dpl} differs from CPL {r.cpl} in protected mode",
                        {"cpl": r.cpl, "ss": r.ss.selector, "ss_attr": r.ss.attr,
                         "eip": r.eip}))
    if r.cr0 & CR0_PG and not pe:
        out.append(("cr0-pg", "CR0.PG is set without CR0.PE", {"cr0": r.cr0}))
    if r.cr0 & CR0_NW and not r.cr0 & CR0_CD:
        out.append(("cr0-nw", "CR0.NW is set without CR0.CD", {"cr0": r.cr0}))
    bad4 = r.cr4 & ~CR4_DEFINED
    if features is not None:
        for bit, feat in CR4_FEATURE.items():
            if r.cr4 >> bit & 1 and feat not in features:
                bad4 |= 1 << bit
    if bad4:
        out.append(("cr4", "CR4 has bits set that this CPU does not define or advertise",
                    {"cr4": r.cr4, "bad_bits": bad4}))
    # Expand-up code segments (the only kind): the next instruction starts within the limit.
    if r.eip > r.cs.limit:
        out.append(("eip-limit", f"EIP {r.eip:#x} is beyond the CS limit {r.cs.limit:#x}",
                    {"eip": r.eip, "cs": r.cs.selector, "cs_base": r.cs.base,
                     "cs_limit": r.cs.limit}))
    return out


@register
class CpuState(Oracle):
    """Architectural CPU invariants hold at every checkpoint and at the end.

    * EFLAGS: bit 1 is set; bits 3, 5, 15 and 22-31 are clear (SDM Vol. 1 §3.4.3).
    * In protected mode outside virtual-8086 mode, CPL equals CS.RPL (SDM Vol. 3 §5.5: "the
      CPL is stored in bits 0 and 1 of the CS and SS segment registers") and SS.DPL equals
      CPL (§5.7: a stack segment's DPL must equal CPL, checked when SS is loaded).
    * CR0: PG requires PE, and NW set with CD clear is invalid (SDM Vol. 3 §2.5; MOV to CR0
      raises #GP for either, Vol. 2 "MOV—Move to/from Control Registers").
    * CR4: only bits a P6-family CPU defines (VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE),
      each only when CPUID advertises its feature (SDM Vol. 3 §2.5; MOV to CR4 raises #GP
      for reserved bits).
    * EIP lies within the CS limit (SDM Vol. 3 §5.3: instruction fetches beyond the limit
      fault, so a valid next instruction address is at most the limit).

    Each rule is reported when it starts to fail, not again while it keeps failing. One
    legal-but-fragile state breaks the CPL rule: the instructions between setting CR0.PE
    and the far jump that reloads CS (SDM Vol. 3 §9.9.1 requires the jump to follow
    immediately); a check there with a CS selector whose low bits are not 0 reports it.
    """

    name = "cpu"

    def start(self, ctx: Context) -> None:
        self._failing: set[str] = set()

    def _check(self, ctx: Context) -> None:
        failing = set()
        for rule, message, state in check_regs(ctx.regs(), ctx.machine.config.features):
            failing.add(rule)
            if rule not in self._failing:
                self.violation(ctx, message, state={"rule": rule, **state})
        self._failing = failing

    def checkpoint(self, ctx: Context) -> None:
        self._check(ctx)

    def end(self, ctx: Context) -> None:
        self._check(ctx)


@register
class CpuStep(CpuState):
    """The ``cpu`` invariants after every instruction (slow: one Python call per instruction).

    The same invariants as ``cpu`` (SDM Vol. 1 §3.4.3; Vol. 3 §2.5, §5.3, §5.5, §5.7),
    checked after every retired instruction as well, so a violation is reported at the tick
    of the instruction that produced it. Not run by default: the replay runs one tick per
    call into the core.
    """

    name = "cpu-step"
    per_instruction = True

    def instruction(self, ctx: Context) -> None:
        self._check(ctx)
