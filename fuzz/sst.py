"""Run a SingleStepTests directory (hardware-captured single-instruction tests) on aero.

Each test gives an initial real-mode register file and RAM, the instruction bytes followed
by HLT, and the final state captured from a real CPU. aero runs from CS:IP until the HLT
retires and compares registers (flags under the opcode's ``flags-mask``) and RAM.

The suites were captured on CPUs older than the i686 aero models. Every behaviour that
differs by design between that CPU and an i386+ is an *exclusion*, listed with its reason;
nothing is skipped silently. See docs/conformance.md.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aero.machine import Machine, MachineConfig, Regs, Segment, StopReason

__all__ = ["EXCLUSIONS", "Exclusion", "FLAGS_286_MASK", "GPR16", "LOCKABLE", "MAX_TICKS",
           "OpcodeResult", "PREFIXES", "REG16", "SEGS", "SSTRunner", "STACK_OPS", "STRING_OPS",
           "exclusion_for", "iter_tests", "run_directory"]

REG16 = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags")
GPR16 = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "sp": "esp", "bp": "ebp",
         "si": "esi", "di": "edi"}
SEGS = ("cs", "ss", "ds", "es")
PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0xF0, 0xF2, 0xF3}
LOCKABLE = {0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30,
            0x31, 0x80, 0x81, 0x82, 0x83, 0x86, 0x87, 0xF6, 0xF7, 0xFE, 0xFF}
# FLAGS bits 12-15: the 286 never sets them in real mode (IOPL/NT exist from the i386 on).
FLAGS_286_MASK = 0x0FFF
MAX_TICKS = 200_000


@dataclass
class Exclusion:
    """Why a group of tests is not compared: a documented 286-vs-i386 difference."""

    key: str
    reason: str


EXCLUSIONS: dict[str, Exclusion] = {e.key: e for e in (
    Exclusion("fpu", "x87 escape (D8-DF): the 286 under test had no coprocessor and runs ESC "
                     "as a no-op bus cycle; an i686 without x87 raises #NM/#UD (see docs/cpu.md)"),
    Exclusion("length", "instruction longer than 10 bytes: #UD on the 286, while the i386 limit "
                        "is 15 bytes"),
    Exclusion("lock", "LOCK on an instruction that cannot be locked, or with a register "
                      "destination: ignored by the 286, #UD on the i386 and later"),
    Exclusion("ss-overrun", "SS-relative access (a stack operation, or a BP-based or "
                            "SS-overridden operand) beyond the segment limit: the 286 raises "
                            "#GP (13), the i386 and later raise #SS (12) (Intel SDM, "
                            "real-address-mode exceptions of each instruction)"),
    Exclusion("string-fault", "string instruction faulting on a word at offset 0xFFFF: the 286 "
                              "has already advanced SI/DI (and CX) when it faults; on the i386 "
                              "and later faults are restartable and leave them unchanged"),
    Exclusion("operand-wrap", "a multi-part memory operand (far pointer of JMP/CALL FAR, "
                              "LDS/LES, BOUND's bounds, LGDT/LIDT/SGDT/SIDT) that runs past "
                              "offset 0xFFFF: the 286 fetches each word at its own 16-bit "
                              "offset, wrapping to 0; the i386 and later access one operand "
                              "and raise #GP when any part of it lies beyond 0xFFFF (Intel "
                              "SDM, real-address-mode exceptions: 'If any part of the operand "
                              "lies outside the effective address space from 0 to FFFFH')"),
)}


@dataclass
class OpcodeResult:
    total: int = 0
    passed: int = 0
    failed: int = 0
    excluded: int = 0
    failures: list[dict] = field(default_factory=list)


def _opcode_key(path: Path) -> str:
    return path.name.split(".jsonl")[0]


def _meta_for(meta: dict, key: str) -> dict:
    ops = meta.get("opcodes", {})
    if "." in key:
        op, reg = key.split(".")
        return ops.get(op, {}).get("reg", {}).get(reg, {})
    return ops.get(key, {})


def _instruction_opcode(code: list[int]) -> tuple[int, list[int]]:
    """(opcode byte, prefixes) of the instruction bytes."""
    i = 0
    while i < len(code) and code[i] in PREFIXES:
        i += 1
    return (code[i] if i < len(code) else -1), code[:i]


# Instructions that access the stack implicitly, and string instructions.
STACK_OPS = {0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, *range(0x50, 0x62), 0x68, 0x6A, 0x8F,
             0x9A, 0x9C, 0x9D, 0xC2, 0xC3, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xE8}
STRING_OPS = {0x6C, 0x6D, 0x6E, 0x6F, *range(0xA4, 0xA8), *range(0xAA, 0xB0)}


def _stack_overrun(regs: dict, op: int) -> bool:
    """Does an implicit stack access of this instruction straddle SS offset 0xFFFF?"""
    if op not in STACK_OPS:
        return False
    if op == 0xC9:  # LEAVE pops from SS:BP
        return regs["bp"] == 0xFFFF
    return regs["sp"] in (0xFFFF, 0x0001)


def _ss_relative(code: list[int], prefixes: list[int], op: int) -> bool:
    """Does the instruction's ModRM memory operand use SS (BP-based, or an SS override)?"""
    seg_prefixes = [p for p in prefixes if p in (0x26, 0x2E, 0x36, 0x3E)]
    if seg_prefixes:
        return seg_prefixes[-1] == 0x36
    i = len(prefixes) + 1
    if i >= len(code):
        return False
    modrm = code[i]
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return False
    return rm in (2, 3) or (rm == 6 and mod != 0)


def _ea16(code: list[int], prefixes: list[int], regs: dict) -> int | None:
    """The 16-bit effective address of the instruction's ModRM memory operand, or None."""
    i = len(prefixes) + (2 if code[len(prefixes)] == 0x0F else 1)
    if i >= len(code):
        return None
    modrm = code[i]
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return None
    base = (regs["bx"] + regs["si"], regs["bx"] + regs["di"], regs["bp"] + regs["si"],
            regs["bp"] + regs["di"], regs["si"], regs["di"], regs["bp"], regs["bx"])[rm]
    disp = 0
    if mod == 0 and rm == 6:
        base, disp = 0, code[i + 1] | code[i + 2] << 8
    elif mod == 1:
        disp = code[i + 1] - 256 * (code[i + 1] >> 7)
    elif mod == 2:
        disp = code[i + 1] | code[i + 2] << 8
    return (base + disp) & 0xFFFF


def _multipart_size(code: list[int], prefixes: list[int], op: int) -> int:
    """Bytes of a multi-part memory operand (far pointer, bound pair, table register), or 0."""
    i = len(prefixes) + 1
    reg = (code[i] >> 3) & 7 if i < len(code) else 0
    if op in (0xC4, 0xC5, 0x62) or (op == 0xFF and reg in (3, 5)):
        return 4
    if op == 0x0F and i < len(code) and code[i] == 0x01 and i + 1 < len(code):
        return 6 if ((code[i + 1] >> 3) & 7) < 4 else 0
    return 0


def exclusion_for(test: dict, key: str) -> str | None:
    """The EXCLUSIONS key that applies to this test, or None to compare it."""
    code = test["bytes"]
    op, prefixes = _instruction_opcode(code)
    if 0xD8 <= op <= 0xDF:
        return "fpu"
    # The trailing HLT is not part of the instruction.
    if len(code) - 1 > 10:
        return "length"
    size = _multipart_size(code, prefixes, op)
    if size:
        ea = _ea16(code, prefixes, test["initial"]["regs"])
        if ea is not None and ea + size - 1 > 0xFFFF:
            return "operand-wrap"
    exc = test.get("exception")
    if exc and exc.get("number") == 13:
        if _ss_relative(code, prefixes, op) or _stack_overrun(test["initial"]["regs"], op):
            return "ss-overrun"
        if op in STRING_OPS:
            return "string-fault"
    if 0xF0 in prefixes:
        modrm = code[len(prefixes) + 1] if len(code) > len(prefixes) + 1 else 0
        group_ok = op in (0x80, 0x81, 0x82, 0x83) and ((modrm >> 3) & 7) != 7
        unary_ok = op in (0xF6, 0xF7) and ((modrm >> 3) & 7) in (2, 3)
        incdec_ok = op in (0xFE, 0xFF) and ((modrm >> 3) & 7) in (0, 1)
        plain_ok = op in LOCKABLE and op not in (0x80, 0x81, 0x82, 0x83, 0xF6, 0xF7, 0xFE, 0xFF)
        if modrm >> 6 == 3 or not (group_ok or unary_ok or incdec_ok or plain_ok):
            return "lock"
    return None


def _initial_regs(init: dict) -> Regs:
    r = Regs()
    for name, full in GPR16.items():
        setattr(r, full, init[name])
    for s in SEGS:
        setattr(r, s, Segment(init[s], init[s] << 4, 0xFFFF, 0x9B if s == "cs" else 0x93))
    r.fs = Segment(0, 0, 0xFFFF, 0x93)
    r.gs = Segment(0, 0, 0xFFFF, 0x93)
    r.eip = init["ip"]
    r.eflags = (init["flags"] & FLAGS_286_MASK) | 2
    r.idtr_base, r.idtr_limit = 0, 0x3FF
    r.cr0 = 0x60000010
    return r


def _state16(regs: Regs) -> dict[str, int]:
    out = {name: getattr(regs, full) & 0xFFFF for name, full in GPR16.items()}
    for s in SEGS:
        out[s] = getattr(regs, s).selector
    out["ip"] = regs.eip & 0xFFFF
    out["flags"] = regs.eflags & 0xFFFF
    return out


class SSTRunner:
    """Runs tests on one reused machine, cleaning the RAM each test touched."""

    def __init__(self) -> None:
        # The test rig had no devices: no debug ports either (unclaimed ports read all ones).
        self.machine = Machine(MachineConfig(ram_size=16 << 20, debug_ports=False, devices=False))

    def run_test(self, test: dict, flags_mask: int) -> dict | None:
        """None when the test passes; otherwise a description of the mismatch."""
        m = self.machine
        init, final = test["initial"], test["final"]
        touched = {a for a, _ in init["ram"]} | {a for a, _ in final["ram"]}
        for a, v in init["ram"]:
            m.write(a, bytes([v]))
        m.set_regs(_initial_regs(init["regs"]))
        m.clear_exception()
        start = m.ticks
        stop = m.run(start + MAX_TICKS)
        got = _state16(m.get_regs())
        expected = dict(init["regs"])
        expected.update(final["regs"])
        mask = flags_mask & FLAGS_286_MASK
        diffs: dict[str, tuple[int, int]] = {}
        for name in REG16:
            e, g = expected[name], got[name]
            if name == "flags":
                e, g = (e & mask) | 2, (g & mask) | 2
            if e != g:
                diffs[name] = (e, g)
        # The FLAGS image an exception pushed holds the same undefined flags as FLAGS.
        exc = test.get("exception")
        flag_bytes = {}
        if exc:
            # Where the handler frame's FLAGS word went: SS:SP-2 of the initial state. (The
            # suite's flag_address is the even-aligned bus address of that word.)
            ir = init["regs"]
            fa = (ir["ss"] << 4) + ((ir["sp"] - 2) & 0xFFFF)
            flag_bytes = {fa: mask & 0xFF, fa + 1: (mask >> 8) & 0xFF}
        ram_diffs = []
        for a, v in final["ram"]:
            g = m.read(a, 1)[0]
            bm = flag_bytes.get(a, 0xFF)
            if (g & bm) != (v & bm):
                ram_diffs.append((a, v, g))
        for a in touched:
            m.write(a, b"\0")
        if stop != StopReason.HALT:
            diffs["stop"] = (int(StopReason.HALT), int(stop))
        if not diffs and not ram_diffs:
            return None
        return {"name": test["name"], "idx": test["idx"], "bytes": bytes(test["bytes"]).hex(),
                "registers": {k: [hex(e), hex(g)] for k, (e, g) in diffs.items()},
                "ram": [[hex(a), hex(e), hex(g)] for a, e, g in ram_diffs],
                "exception": test.get("exception")}


def iter_tests(path: Path) -> Iterator[dict]:
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def run_directory(directory: Path, only: set[str] | None = None, keep_failures: int = 3,
                  progress=None) -> dict:
    """Run every test file in a SingleStepTests directory; returns the summary dict."""
    directory = Path(directory)
    meta_path = directory / "metadata.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} has no metadata.json: not a SingleStepTests dir")
    meta = json.loads(meta_path.read_text())
    files = sorted(directory.glob("*.jsonl.gz"))
    if only:
        files = [f for f in files if _opcode_key(f) in only]
    runner = SSTRunner()
    per_op: dict[str, OpcodeResult] = {}
    excluded_list: list[dict] = []
    for path in files:
        key = _opcode_key(path)
        om = _meta_for(meta, key)
        flags_mask = int(om.get("flags-mask", 0xFFFF))
        res = per_op.setdefault(key, OpcodeResult())
        for test in iter_tests(path):
            res.total += 1
            why = exclusion_for(test, key)
            if why:
                res.excluded += 1
                excluded_list.append({"opcode": key, "idx": test["idx"], "name": test["name"],
                                      "reason": why})
                continue
            failure = runner.run_test(test, flags_mask)
            if failure is None:
                res.passed += 1
            else:
                res.failed += 1
                if len(res.failures) < keep_failures:
                    res.failures.append(failure)
        if progress is not None:
            progress(key)
    total = sum(r.total for r in per_op.values())
    return {
        "directory": str(directory),
        "total": total,
        "passed": sum(r.passed for r in per_op.values()),
        "failed": sum(r.failed for r in per_op.values()),
        "excluded": sum(r.excluded for r in per_op.values()),
        "exclusion_reasons": {k: e.reason for k, e in EXCLUSIONS.items()},
        "exclusions": excluded_list,
        "opcodes": {k: {"total": r.total, "passed": r.passed, "failed": r.failed,
                        "excluded": r.excluded, "failures": r.failures}
                    for k, r in per_op.items()},
    }


if __name__ == "__main__":
    import sys

    only = set(sys.argv[2:]) or None
    result = run_directory(Path(sys.argv[1]), only)
    for k, r in result["opcodes"].items():
        if r["failed"]:
            print(k, r["passed"], "/", r["total"] - r["excluded"], json.dumps(r["failures"][:2]))
    print({k: result[k] for k in ("total", "passed", "failed", "excluded")})
