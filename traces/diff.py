"""``aero diff``: where two runs of the same guest part ways, down to the instruction.

Method (docs/diff-bisect.md has the details and the costs):

1. Compare the two traces' streams (input events, device events, guest output, checkpoint
   fingerprints, the end of the run) without executing anything; the earliest difference is
   the *stream divergence* at tick S. No difference at all: the runs are identical.
2. Restore both runs from the latest keyframe at or before S that they share (the traces agree
   on everything before S, so both keyframes describe the same state), then run both forward
   with their own inputs in chunks, comparing fingerprints after each chunk.
3. Bisect the first chunk whose end differs, restoring snapshots taken at its start: the result
   is T, the smallest tick at which the two machines' fingerprints differ after running both
   to T (inputs stamped T not yet applied, as at a checkpoint).
4. Describe T: the instruction executed from T-1 to T in each run, the registers, the memory
   (page hashes first, then bytes of the differing pages) and the device fields that differ.
   When the difference at T comes from an input injected at T-1 rather than from the
   instruction, also find the first tick at which the guest *sees* it (CPU registers or RAM
   differ) and describe that instruction: the one that consumed the input.

Invariant: nothing here changes a trace; the cost is one keyframe interval of execution (plus
two chunks for the bisection), whatever the traces' length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from aero.traces.container import FrameKind, TraceError, open_trace
from aero.traces.replay import (
    ReplayError,
    TraceContents,
    load_contents,
    machine_for,
    restore_keyframe,
)

from aero import devstate
from aero.events import INPUT_LIMIT, Kind, describe, kind_name
from aero.machine import (
    GPR_NAMES,
    SEGMENT_NAMES,
    FpuRegs,
    Machine,
    MachineConfig,
    Regs,
    StopReason,
)

__all__ = ["DEFAULT_CHUNK", "DiffError", "MAIN_REGS", "MEMORY_ROWS", "PAGE", "Runner", "TERMINAL",
           "compare_states", "config_differences", "describe_step", "diff_contents", "diff_traces",
           "first_divergent_tick", "first_visible_tick", "flat_fpu", "flat_regs", "instruction_at",
           "memory_differences", "open_contents", "read_linear", "replace_inputs",
           "restore_at_keyframe", "same_state", "stream_divergences", "visible_same"]

TERMINAL = (StopReason.EXIT, StopReason.SHUTDOWN, StopReason.HALT)
DEFAULT_CHUNK = 10_000_000
MEMORY_ROWS = 64  # differing 16-byte rows reported at most
PAGE = 4096


class DiffError(Exception):
    """Two traces that cannot be compared (different guests or RAM sizes, damage)."""


# ---- one run, re-executed -------------------------------------------------------------------

class Runner:
    """A machine driven by a trace's inputs, from some state onward; saved and restored as a
    whole (machine snapshot and input position) for bisection."""

    def __init__(self, m: Machine, inputs: np.ndarray, index: int) -> None:
        self.m = m
        self.inputs = inputs
        self.i = index
        self.stopped = False
        self.events: list[np.ndarray] = []  # logged events since the last take_logged()
        self._ticks = inputs["tick"].astype(np.int64) if len(inputs) else np.zeros(0, np.int64)
        self._buf: bytearray | None = None
        self._saved = (index, False)

    def advance(self, target: int) -> None:
        """Run to ``target`` (or until the guest stops), injecting inputs at their ticks;
        inputs stamped ``target`` are left for later."""
        m, ticks, inp = self.m, self._ticks, self.inputs
        n = len(ticks)
        while not self.stopped:
            while self.i < n and ticks[self.i] < m.ticks:
                self.i += 1  # a stopped machine cannot go back for them
            while self.i < n and ticks[self.i] == m.ticks and m.ticks < target:
                m.inject(int(inp["kind"][self.i]), int(inp["a"][self.i]), int(inp["b"][self.i]))
                self.i += 1
            if m.ticks >= target:
                break
            stop = m.run(min(target, int(ticks[self.i])) if self.i < n else target)
            ev = m.take_events()
            if len(ev):
                self.events.append(ev)
            m.take_output()
            if stop in TERMINAL:
                self.stopped = True

    def take_logged(self) -> np.ndarray:
        out = np.concatenate(self.events) if self.events else np.zeros(0, self.inputs.dtype)
        self.events = []
        return out

    def save(self) -> None:
        """Remember the current state (one saved state per runner, in a buffer reused from
        save to save: a fresh 32 MB allocation per save would cost more than the copy)."""
        if self._buf is None or len(self._buf) != self.m.snapshot_size:  # a disk overlay grows
            self._buf = bytearray(self.m.snapshot_size)
        self.m.snapshot_into(self._buf)
        self._saved = (self.i, self.stopped)

    def load(self) -> None:
        """Back to the state of the last :meth:`save`."""
        if self._buf is None:
            raise RuntimeError("no saved state to go back to")
        self.m.restore(self._buf)
        self.i, self.stopped = self._saved
        self.events = []

    def pending_inputs(self) -> list[tuple[int, int, int, int]]:
        """Inputs stamped with the current tick, not injected yet."""
        out = []
        j = self.i
        while j < len(self._ticks) and self._ticks[j] == self.m.ticks:
            e = self.inputs[j]
            out.append((int(e["tick"]), int(e["kind"]), int(e["a"]), int(e["b"])))
            j += 1
        return out


def same_state(a: Runner, b: Runner) -> bool:
    return a.m.ticks == b.m.ticks and a.m.fingerprint() == b.m.fingerprint()


def visible_same(a: Runner, b: Runner) -> bool:
    """The guest cannot tell the runs apart yet: CPU state and RAM are equal."""
    if a.m.ticks != b.m.ticks or a.m.cpu_state_bytes() != b.m.cpu_state_bytes():
        return False
    a.m.fingerprint()
    b.m.fingerprint()
    return bool(np.array_equal(a.m.page_hashes(), b.m.page_hashes()))


class _Pair:
    """Two runners probed at increasing or bisected ticks. A probe runs forward from where
    the runners are when it can, else from the saved base state; the base moves up (a
    snapshot) only when it would save more than ``resave`` ticks of re-execution."""

    def __init__(self, ra: Runner, rb: Runner, resave: int) -> None:
        self.ra, self.rb, self.resave = ra, rb, resave
        self.base_tick = ra.m.ticks
        ra.save()
        rb.save()

    def goto(self, tick: int) -> None:
        if self.ra.m.ticks > tick or self.rb.m.ticks > tick:
            self.ra.load()
            self.rb.load()
        self.ra.advance(tick)
        self.rb.advance(tick)

    def passed(self, tick: int) -> None:
        """Both runs agree at ``tick`` (where the runners are)."""
        if tick - self.base_tick > self.resave:
            self.base_tick = tick
            self.ra.save()
            self.rb.save()


def _search(pair: _Pair, lo: int, end: int, same, first_step: int, grow: int) -> int | None:
    """Smallest tick in (lo, end] where ``same`` fails: probes lo+s, lo+s+s*grow, ... then
    bisects; the runners are left at T-1. None when the runs agree up to ``end``."""
    ra, rb = pair.ra, pair.rb
    step = first_step
    while True:
        if lo >= end:
            return None
        hi = min(lo + step, end)
        pair.goto(hi)
        if not same(ra, rb):
            break
        if ra.stopped and rb.stopped:
            return None
        lo = hi
        pair.passed(lo)
        step *= grow
    while hi - lo > 1:
        mid = (lo + hi) // 2
        pair.goto(mid)
        if same(ra, rb):
            lo = mid
            pair.passed(lo)
        else:
            hi = mid
    pair.goto(lo)
    return hi


def first_divergent_tick(ra: Runner, rb: Runner, end: int, chunk: int = DEFAULT_CHUNK,
                         same=same_state) -> int | None:
    """The smallest tick T in (now, end] at which ``same`` fails, with both runners left in
    the state at T-1; None when the runs agree up to ``end`` (or to where both stopped).
    Precondition: both runners at the same tick, in states ``same`` accepts. Fingerprints
    are compared every ``chunk`` ticks, then the first differing chunk is bisected."""
    pair = _Pair(ra, rb, max(chunk // 16, 100_000))
    return _search(pair, ra.m.ticks, end, same, chunk, 1)


def first_visible_tick(ra: Runner, rb: Runner, end: int) -> int | None:
    """From a tick where only device state differs: the first tick at which CPU registers or
    RAM differ, by galloping (1, 2, 4, ... ticks) then bisecting; runners left at T-1."""
    pair = _Pair(ra, rb, 1_000_000)
    return _search(pair, ra.m.ticks, end, visible_same, 1, 2)


# ---- describing a machine state ---------------------------------------------------------------

def flat_regs(r: Regs) -> dict[str, int]:
    """Every architectural register as name -> value (segments as sel/base/limit/attr)."""
    out = {n: getattr(r, n) for n in (*GPR_NAMES, "eip", "eflags")}
    for s in (*SEGMENT_NAMES, "ldtr", "tr"):
        seg = getattr(r, s)
        out[s] = seg.selector
        out[f"{s}.base"], out[f"{s}.limit"], out[f"{s}.attr"] = seg.base, seg.limit, seg.attr
    out.update({"gdtr.base": r.gdtr_base, "gdtr.limit": r.gdtr_limit, "idtr.base": r.idtr_base,
                "idtr.limit": r.idtr_limit, "cr0": r.cr0, "cr2": r.cr2, "cr3": r.cr3,
                "cr4": r.cr4, "cpl": r.cpl, "halted": int(r.halted)})
    out.update({f"dr{i}": v for i, v in enumerate(r.dr)})
    return out


def flat_fpu(f: FpuRegs) -> dict[str, int]:
    """The x87 registers as name -> value: ST(0)-ST(7) (stack order) as 80-bit integers,
    the control, status and full tag words, and the last-instruction pointers."""
    out = {f"st{i}": v for i, v in enumerate(f.st)}
    out.update({"fcw": f.fcw, "fsw": f.fsw, "ftw": f.ftw, "fop": f.fop, "fcs": f.fcs,
                "fip": f.fip, "fds": f.fds, "fdp": f.fdp})
    return out


# Shown in the register table even when equal.
MAIN_REGS = (*GPR_NAMES, "eip", "eflags", *SEGMENT_NAMES, "cr0", "cr3")


def _translate(m: Machine, r: Regs, lin: int) -> int | None:
    """Linear -> physical through the 32-bit page tables (4 KB pages, 4 MB with CR4.PSE);
    None when not present, or with PAE, which is not decoded."""
    if r.cr4 & 0x20:
        return None
    pde = int.from_bytes(m.read((r.cr3 & 0xFFFFF000) + ((lin >> 22) << 2), 4), "little")
    if not pde & 1:
        return None
    if pde & 0x80 and r.cr4 & 0x10:
        return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
    pte = int.from_bytes(m.read((pde & 0xFFFFF000) + (((lin >> 12) & 0x3FF) << 2), 4), "little")
    if not pte & 1:
        return None
    return (pte & 0xFFFFF000) | (lin & 0xFFF)


def read_linear(m: Machine, r: Regs, lin: int, n: int) -> bytes:
    """Up to ``n`` bytes at a linear address (stops at a page that is not present)."""
    out = bytearray()
    while len(out) < n:
        a = (lin + len(out)) & 0xFFFFFFFF
        if r.cr0 & 0x80000000:
            pa = _translate(m, r, a)
            if pa is None:
                break
        else:
            pa = a
        k = min(n - len(out), PAGE - (a & 0xFFF))
        out += m.read(pa, k)
    return bytes(out)


def instruction_at(m: Machine, r: Regs | None = None) -> dict:
    """The instruction at CS:EIP, disassembled (capstone) in the CPU's current mode."""
    r = r or m.get_regs()
    code16 = not r.cr0 & 1 or bool(r.eflags & 0x20000) or not r.cs.attr & 0x4000
    lin = (r.cs.base + r.eip) & 0xFFFFFFFF
    code = read_linear(m, r, lin, 15)
    out = {"tick": m.ticks, "cs": r.cs.selector, "eip": r.eip, "linear": lin,
           "mode": 16 if code16 else 32, "bytes": "", "text": "(not readable: page not present)",
           "halted": r.halted}
    if not code:
        return out
    try:
        import capstone
    except ImportError:
        out["bytes"] = code.hex()
        out["text"] = "(capstone is not installed)"
        return out
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16 if code16 else capstone.CS_MODE_32)
    insn = next(iter(md.disasm(code, lin, count=1)), None)
    if insn is None:
        out["bytes"] = code[:1].hex()
        out["text"] = "(bad)"
    else:
        out["bytes"] = bytes(insn.bytes).hex()
        out["text"] = f"{insn.mnemonic} {insn.op_str}".strip()
    if r.halted:
        out["text"] = f"(halted) {out['text']}"
    return out


def memory_differences(a: Machine, b: Machine, limit: int = MEMORY_ROWS) -> dict:
    """Differing RAM as 16-byte rows: page hashes first, then the bytes of differing pages."""
    a.fingerprint()
    b.fingerprint()
    ha, hb = a.page_hashes(), b.page_hashes()
    n = min(len(ha), len(hb))
    pages = np.flatnonzero(ha[:n] != hb[:n]).tolist()
    rows = []
    total = 0
    for p in pages:
        pa = a.ram[p * PAGE:(p + 1) * PAGE].reshape(-1, 16)
        pb = b.ram[p * PAGE:(p + 1) * PAGE].reshape(-1, 16)
        for k in np.flatnonzero(np.any(pa != pb, axis=1)).tolist():
            total += 1
            if len(rows) < limit:
                rows.append({"address": p * PAGE + 16 * k, "a": pa[k].tobytes().hex(),
                             "b": pb[k].tobytes().hex()})
    return {"pages": [p * PAGE for p in pages], "rows": rows, "differing_rows": total,
            "truncated": total > len(rows)}


def _jsonable(v: object) -> object:
    return list(v) if isinstance(v, (list, tuple)) else v


def compare_states(a: Machine, b: Machine) -> dict:
    """Registers, memory and devices of two machines at the same tick, where they differ."""
    ra = {**flat_regs(a.get_regs()), **flat_fpu(a.get_fpu())}
    rb = {**flat_regs(b.get_regs()), **flat_fpu(b.get_fpu())}
    regs = {k: {"a": ra[k], "b": rb[k]} for k in ra if ra[k] != rb[k]}
    try:
        devs = {dev: {f: [_jsonable(x), _jsonable(y)] for f, (x, y) in sorted(fields.items())}
                for dev, fields in devstate.differences(a.devices_state_bytes(),
                                                        b.devices_state_bytes()).items()}
    except ValueError as exc:
        devs = {"(undecodable)": {"error": [str(exc), str(exc)]}}
    return {"registers": regs, "all_registers": {k: {"a": ra[k], "b": rb[k]} for k in ra},
            "memory": memory_differences(a, b), "devices": devs,
            "hidden_cpu_state": not regs and a.cpu_state_bytes() != b.cpu_state_bytes(),
            "ticks": [a.ticks, b.ticks]}


def _event_dict(t: tuple[int, int, int, int]) -> dict:
    return {"tick": t[0], "kind": kind_name(t[1]), "a": t[2], "b": t[3],
            "text": describe(*t).strip()}


def _interrupts(events: np.ndarray) -> list[int]:
    return [int(e["a"]) for e in events if int(e["kind"]) == Kind.INTA]


def describe_step(ra: Runner, rb: Runner, tick: int) -> dict:
    """Both runners at ``tick - 1``: what each executes to reach ``tick``, and how the states
    differ at ``tick``. Leaves the runners at ``tick``."""
    ia, ib = ra.pending_inputs(), rb.pending_inputs()
    before = [instruction_at(r.m) for r in (ra, rb)]
    ra.take_logged()
    rb.take_logged()
    ra.advance(tick)
    rb.advance(tick)
    ints = [_interrupts(r.take_logged()) for r in (ra, rb)]
    for ins, vec in zip(before, ints, strict=True):
        ins["interrupts"] = vec
    cause = "input" if ia != ib else "execution"
    out = {"tick": tick, "cause": cause, "eip": [before[0]["eip"], before[1]["eip"]],
           "instruction": {"a": before[0], "b": before[1]},
           "inputs": {"a": [_event_dict(e) for e in ia], "b": [_event_dict(e) for e in ib]}}
    out.update(compare_states(ra.m, rb.m))
    return out


# ---- streams ---------------------------------------------------------------------------------

def _first_event_difference(a: np.ndarray, b: np.ndarray) -> dict | None:
    n = min(len(a), len(b))
    neq = np.flatnonzero(a[:n] != b[:n])
    k = int(neq[0]) if len(neq) else n
    if k == n and len(a) == len(b):
        return None
    ea = a[k] if k < len(a) else None
    eb = b[k] if k < len(b) else None
    ticks = [int(e["tick"]) for e in (ea, eb) if e is not None]

    def show(e: np.void | None) -> str | None:
        return None if e is None else describe(int(e["tick"]), int(e["kind"]), int(e["a"]),
                                               int(e["b"])).strip()
    return {"tick": min(ticks), "index": k, "a": show(ea), "b": show(eb)}


_STREAM_CHUNK = 1 << 16


def _first_stream_difference(a: TraceContents, b: TraceContents, kind: int) -> dict | None:
    """The first difference of one event stream, read frame by frame from both traces."""
    ca, cb = a.cursor(kind), b.cursor(kind)
    base = 0
    while True:
        xa, xb = ca.peek(_STREAM_CHUNK), cb.peek(_STREAM_CHUNK)
        if not len(xa) and not len(xb):
            return None
        n = min(len(xa), len(xb))
        if n < _STREAM_CHUNK or not np.array_equal(xa, xb):
            d = _first_event_difference(xa, xb)
            if d is not None:
                d["index"] += base
                return d
        ca.advance(n)
        cb.advance(n)
        base += n


def _pairs(c: TraceContents) -> Iterator[tuple[int, int]]:
    for ticks, fps in c.iter_checkpoints():
        yield from zip(ticks.tolist(), fps.tolist(), strict=True)


def _checkpoint_difference(a: TraceContents, b: TraceContents) -> dict | None:
    """The first tick up to the shorter trace's end where the checkpoints differ (one side
    without a checkpoint there counts), merging both streams in tick order."""
    limit = min(a.end_tick, b.end_tick)
    ia, ib = _pairs(a), _pairs(b)
    pa, pb = next(ia, None), next(ib, None)
    while pa is not None or pb is not None:
        ta = pa[0] if pa is not None else None
        tb = pb[0] if pb is not None else None
        t = min(x for x in (ta, tb) if x is not None)
        if t > limit:
            return None
        va = pa[1] if ta == t and pa is not None else None
        vb = pb[1] if tb == t and pb is not None else None
        if va != vb:
            return {"tick": t, "a": None if va is None else f"{va:016x}",
                    "b": None if vb is None else f"{vb:016x}"}
        if ta == t:
            pa = next(ia, None)
        if tb == t:
            pb = next(ib, None)
    return None


def stream_divergences(a: TraceContents, b: TraceContents) -> dict[str, dict]:
    """Per stream, its first difference (streams that agree are left out)."""
    out: dict[str, dict] = {}
    for name, kind in (("input", FrameKind.INPUT), ("device", FrameKind.DEVICE),
                       ("output", FrameKind.OUTPUT)):
        d = _first_stream_difference(a, b, kind)
        if d is not None:
            out[name] = d
    d = _checkpoint_difference(a, b)
    if d is not None:
        out["checkpoint"] = d
    if a.end_tick != b.end_tick or (a.summary or {}).get("exit_status") != \
            (b.summary or {}).get("exit_status"):
        sa, sb = a.summary or {}, b.summary or {}
        out["end"] = {"tick": min(a.end_tick, b.end_tick),
                      "a": f"{sa.get('stop')} at {a.end_tick} (exit status "
                           f"{sa.get('exit_status')})",
                      "b": f"{sb.get('stop')} at {b.end_tick} (exit status "
                           f"{sb.get('exit_status')})"}
    return out


# ---- the whole diff ----------------------------------------------------------------------------

def open_contents(path: Path) -> TraceContents:
    try:
        return load_contents(open_trace(path, verify=False))
    except (TraceError, ReplayError) as exc:
        raise DiffError(str(exc)) from None
    except OSError as exc:
        raise DiffError(f"{path}: {exc.strerror}") from None


def restore_at_keyframe(c: TraceContents, frame, config: MachineConfig | None = None) -> Runner:
    """A runner in the state of a keyframe of ``c`` (under ``config``, default the trace's)."""
    try:
        m, k = restore_keyframe(c, frame, machine_for(c, config))
    except ReplayError as exc:
        raise DiffError(str(exc)) from None
    except TraceError as exc:
        raise DiffError(str(exc)) from None
    return Runner(m, c.inputs, k.inputs_before)


def config_differences(a: MachineConfig, b: MachineConfig) -> dict[str, list]:
    da, db = a.to_dict(), b.to_dict()
    return {k: [da[k], db[k]] for k in da if da[k] != db[k]}


def diff_contents(a: TraceContents, b: TraceContents, *, chunk: int | None = None) -> dict:
    """The report of ``aero diff`` (see the module docstring)."""
    if a.guest.sha256 != b.guest.sha256:
        raise DiffError(f"the traces run different guests ({a.guest.name} "
                        f"{a.guest.sha256[:12]}..., {b.guest.name} {b.guest.sha256[:12]}...)")
    if a.config.ram_size != b.config.ram_size:
        raise DiffError(f"the traces have different RAM sizes ({a.config.ram_size}, "
                        f"{b.config.ram_size})")
    streams = stream_divergences(a, b)
    report: dict = {"identical": not streams, "first_divergence": None,
                    "config": config_differences(a.config, b.config),
                    "streams": streams, "stream": None,
                    "ticks": [a.end_tick, b.end_tick]}
    if not streams:
        return report
    name = min(streams, key=lambda k: streams[k]["tick"])
    report["stream"] = {"stream": name, **streams[name]}
    s = streams[name]["tick"]
    end = max(a.end_tick, b.end_tick)
    ka = {f.first_tick: f for f in a.keyframes}
    kb = {f.first_tick: f for f in b.keyframes}
    common = sorted(t for t in set(ka) & set(kb) if t <= s)
    if not common:
        raise DiffError("the traces share no keyframe at or before their first difference")
    interval = int(a.trace.metadata.get("checkpoint_interval") or DEFAULT_CHUNK)
    step = chunk or max(1, min(interval, DEFAULT_CHUNK))
    while common:
        k = common.pop()
        ra, rb = restore_at_keyframe(a, ka[k]), restore_at_keyframe(b, kb[k])
        if same_state(ra, rb):
            break
        if not common:  # they differ at the very first keyframe: nothing executed yet
            fd = {"tick": k, "cause": "initial state", "eip": [ra.m.get_regs().eip,
                                                              rb.m.get_regs().eip],
                  "instruction": None, "inputs": {"a": [], "b": []}}
            fd.update(compare_states(ra.m, rb.m))
            fd["stream"] = report["stream"]
            report["first_divergence"] = fd
            report["identical"] = False
            return report
    report["start_tick"] = k
    t = first_divergent_tick(ra, rb, end, step)
    if t is None:
        return report
    fd = describe_step(ra, rb, t)
    fd["stream"] = report["stream"]
    if fd["cause"] == "input" and not fd["registers"] and not fd["memory"]["rows"]:
        u = first_visible_tick(ra, rb, end)
        fd["consumed"] = None if u is None else describe_step(ra, rb, u)
    report["first_divergence"] = fd
    return report


def diff_traces(path_a: Path, path_b: Path, *, chunk: int | None = None) -> dict:
    a, b = open_contents(Path(path_a)), open_contents(Path(path_b))
    try:
        return diff_contents(a, b, chunk=chunk)
    except (TraceError, ReplayError) as exc:  # damage met while streaming the frames
        raise DiffError(str(exc)) from None


def replace_inputs(c: TraceContents, inputs: np.ndarray) -> TraceContents:
    """The same trace with another input stream (for predicates and bisection)."""
    assert np.all(inputs["kind"] < INPUT_LIMIT)
    return c.with_inputs(inputs)
