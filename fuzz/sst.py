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

from . import sdm

__all__ = ["Adjustment", "EXCLUSIONS", "Exclusion", "FLAGS_286_MASK", "GPR16", "MAX_TICKS",
           "OpcodeResult", "PREFIXES", "REG16", "SEGS", "SSTRunner", "STRING_OPS",
           "exclusion_for", "i386_adjustment", "iter_tests", "premise_holds", "read_moo",
           "run_directory", "suite_files", "suite_root"]

REG16 = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags")
GPR16 = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "sp": "esp", "bp": "ebp",
         "si": "esi", "di": "edi"}
SEGS = ("cs", "ss", "ds", "es")
# Prefixes of the 80286 (64h-67h are not prefixes there).
PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0xF0, 0xF2, 0xF3}
# FLAGS bits 12-15: the 286 never sets them in real mode (IOPL/NT exist from the i386 on).
FLAGS_286_MASK = 0x0FFF
MAX_TICKS = 200_000
# String instructions (INS/OUTS included): an i386 leaves (E)SI, (E)DI and (E)CX as they
# were before a faulting iteration.
STRING_OPS = {0x6C, 0x6D, 0x6E, 0x6F, *range(0xA4, 0xA8), *range(0xAA, 0xB0)}


@dataclass
class Exclusion:
    """Why a group of tests is not compared: a documented 286-vs-i386 difference that is
    true of every test it drops (:func:`premise_holds` checks the part the data shows)."""

    key: str
    reason: str


EXCLUSIONS: dict[str, Exclusion] = {e.key: e for e in (
    Exclusion("fpu", "x87 escape (D8-DF): the 286 under test had no coprocessor and runs ESC "
                     "as a no-op bus cycle; aero executes them on its x87 (see docs/fpu.md)"),
    Exclusion("length", "instruction longer than 10 bytes that the 286 rejected for its "
                        "length: #UD, or #GP where no operand is beyond a limit (the 286 "
                        "data shows both); the i386 limit is 15 bytes and it executes them. "
                        "A long instruction whose operand faults on both is compared"),
    Exclusion("lock", "LOCK on an instruction that cannot be locked, or with a register "
                      "destination (SDM 'LOCK', judged by aero.fuzz.sdm): ignored by the "
                      "286, #UD on the i386 and later"),
    Exclusion("operand-wrap", "a multi-part memory operand (far pointer of JMP/CALL FAR, "
                              "LDS/LES, BOUND's bounds, LGDT/LIDT/SGDT/SIDT) that runs past "
                              "offset 0xFFFF: the 286 fetches each word at its own 16-bit "
                              "offset, wrapping to 0; the i386 and later access one operand "
                              "and raise #GP when any part of it lies beyond 0xFFFF (Intel "
                              "SDM, real-address-mode exceptions: 'If any part of the operand "
                              "lies outside the effective address space from 0 to FFFFH')"),
    Exclusion("fs-gs", "MOV to or from segment register 4 or 5 (8C/8E with reg = 4, 5): the "
                       "286 has no FS/GS and raises #UD; on the i386 and later they are FS "
                       "and GS (Intel SDM Vol. 2 'MOV', Sreg encodings)"),
    Exclusion("revoked", "listed in the suite's revocation_list.txt: the capture was found "
                         "to be wrong"),
)}


@dataclass
class Adjustment:
    """How the i386+ result of a test differs from the 286's, field by field; everything
    not named here is compared with the hardware's values.

    ``vector``: the exception the i386 raises (the 286 raised #GP (13) for every segment
    overrun; the i386 raises #SS (12) when the first access beyond a limit is
    SS-relative). ``registers``: expected values that replace the 286's (a faulting string
    instruction leaves SI, DI and CX as before the faulting iteration on the i386; the
    286 has already advanced them). ``ram``: bytes written before the run so that the
    i386's vector reaches the handler the 286 reached (IVT entry 12 := entry 13).
    """

    vector: int
    registers: dict[str, int] = field(default_factory=dict)
    ram: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class OpcodeResult:
    total: int = 0
    passed: int = 0
    failed: int = 0
    excluded: int = 0
    adjusted: int = 0
    failures: list[dict] = field(default_factory=list)


def _opcode_key(path: Path) -> str:
    name = path.name
    for ext in (".jsonl.gz", ".json.gz", ".json", ".MOO.gz", ".moo.gz", ".MOO", ".moo"):
        if name.endswith(ext):
            return name[:-len(ext)]
    return name


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


def exclusion_for(test: dict, key: str, revoked: frozenset[str] = frozenset()) -> str | None:
    """The EXCLUSIONS key that applies to this test, or None to compare it."""
    if test.get("hash") in revoked:
        return "revoked"
    code = test["bytes"]
    op, prefixes = _instruction_opcode(code)
    if 0xD8 <= op <= 0xDF:
        return "fpu"
    # The trailing HLT is not part of the instruction.
    if len(code) - 1 > 10 and _length_fault_286(test):
        return "length"
    size = _multipart_size(code, prefixes, op)
    if size:
        ea = _ea16(code, prefixes, test["initial"]["regs"])
        exc = test.get("exception") or {}
        if ea is not None and ea + size - 1 > 0xFFFF and exc.get("number") != 13:
            return "operand-wrap"  # (when the 286 raised #GP too, the test is compared)
    if op in (0x8C, 0x8E) and len(code) > len(prefixes) + 1 \
            and (code[len(prefixes) + 1] >> 3) & 7 in (4, 5):
        return "fs-gs"
    if 0xF0 in prefixes and not sdm.lock_legal(sdm.decode(bytes(code), False)) \
            and (test.get("exception") or {}).get("number") != 6:
        return "lock"  # (when the 286 raised #UD too, the test is compared)
    return None


def _length_fault_286(test: dict) -> bool:
    """Did the 286 fault because of its 10-byte limit? #UD, or #GP where the i386 (by the
    SDM model) would raise no segment fault, so that the #GP is the length's."""
    number = (test.get("exception") or {}).get("number")
    return number == 6 or (number == 13 and i386_adjustment(test) is None)


def premise_holds(test: dict, key: str) -> bool:
    """Does the hardware data of an excluded test show what the exclusion says of the 286?"""
    exc = test.get("exception") or {}
    code = test["bytes"]
    op, prefixes = _instruction_opcode(code)
    if key == "length":
        return len(code) - 1 > 10 and _length_fault_286(test)
    if key == "fpu":
        return 0xD8 <= op <= 0xDF
    if key == "lock":
        # Ignored by the 286: never #UD there, while the SDM makes it #UD.
        return exc.get("number") != 6 and not sdm.lock_legal(sdm.decode(bytes(code), False))
    if key == "operand-wrap":
        return exc.get("number") != 13  # the 286 wrapped instead of faulting
    if key == "fs-gs":
        return exc.get("number") == 6
    return key == "revoked"


def _regs32(init: dict) -> dict[str, int]:
    return {full: init[name] for name, full in GPR16.items()}


def i386_adjustment(test: dict) -> Adjustment | None:
    """For a test where the 286 raised #GP (13), what an i386+ does instead, by the SDM
    model of :mod:`aero.fuzz.sdm` (not aero's decoder): the vector of the first access
    beyond a segment limit (#SS (12) when it is SS-relative), and for a string
    instruction the SI, DI and CX of before the faulting iteration. None when the model
    does not cover the instruction or predicts no segment fault (the test is then
    compared as captured)."""
    exc = test.get("exception")
    if not exc or exc.get("number") != 13:
        return None
    init = test["initial"]["regs"]
    d = sdm.decode(bytes(test["bytes"]), False)
    segs = {s: sdm.segment_model(True, init.get(s, 0), b"") for s in SEGS}
    segs.update(fs=sdm.segment_model(True, 0, b""), gs=sdm.segment_model(True, 0, b""))
    regs = _regs32(init)
    op = d.opcode
    iterations = 1
    if op in STRING_OPS and d.rep and op not in (0xA6, 0xA7, 0xAE, 0xAF):
        iterations = max(1, init["cx"])  # REP MOVS/STOS/LODS/INS/OUTS: no early exit
    fault = None
    done = 0
    while done < iterations:
        accesses = sdm.data_accesses(d, regs, False)
        if accesses is None:
            return None
        fault = sdm.first_segment_fault(accesses, segs, False)
        if fault is not None or op not in STRING_OPS:
            break
        size = 1 if op % 2 == 0 else 2
        step = -size if init["flags"] & 0x400 else size
        regs["esi"] = (regs["esi"] + (step if op in (0x6E, 0x6F, 0xA4, 0xA5, 0xAC, 0xAD)
                                      else 0)) & 0xFFFF
        regs["edi"] = (regs["edi"] + (0 if op in (0x6E, 0x6F, 0xAC, 0xAD) else step)) & 0xFFFF
        regs["ecx"] = (regs["ecx"] - 1) & 0xFFFF
        done += 1
    if fault is None:
        return None
    vector, _access = fault
    adj = Adjustment(vector)
    if op in STRING_OPS:
        adj.registers = {"si": regs["esi"], "di": regs["edi"], "cx": regs["ecx"]}
        adj.notes.append(f"string fault in iteration {done}: SI, DI, CX as before it")
    if vector == 12:
        ram = dict((a, v) for a, v in test["initial"]["ram"])
        if not all(0x34 + k in ram for k in range(4)):
            return None
        adj.ram = {0x30 + k: ram[0x34 + k] for k in range(4)}
        adj.notes.append("SS-relative overrun: #SS (12) on the i386, #GP (13) on the 286")
    return adj


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


# Software interrupts: the suite may list their vector, aero records only faults.
_SOFTWARE_INT = {0xCC, 0xCD, 0xCE}


class SSTRunner:
    """Runs tests on one reused machine, cleaning the RAM each test touched."""

    def __init__(self) -> None:
        # The test rig had no devices: no debug ports either (unclaimed ports read all ones).
        self.machine = Machine(MachineConfig(ram_size=16 << 20, debug_ports=False, devices=False))

    def run_test(self, test: dict, flags_mask: int,
                 adjustment: Adjustment | None = None) -> dict | None:
        """None when the test passes; otherwise a description of the mismatch.

        Every register, the RAM bytes the test lists and, when the hardware raised an
        exception, the vector aero raised are compared; ``adjustment`` replaces the
        286-only fields by the i386's (see :class:`Adjustment`)."""
        m = self.machine
        init, final = test["initial"], test["final"]
        touched = {a for a, _ in init["ram"]} | {a for a, _ in final["ram"]}
        for a, v in init["ram"]:
            m.write(a, bytes([v]))
        if adjustment is not None:
            for a, v in adjustment.ram.items():
                m.write(a, bytes([v]))
                touched.add(a)
        m.set_regs(_initial_regs(init["regs"]))
        m.clear_exception()
        start = m.ticks
        stop = m.run(start + MAX_TICKS)
        got = _state16(m.get_regs())
        expected = dict(init["regs"])
        expected.update(final["regs"])
        if adjustment is not None:
            expected.update(adjustment.registers)
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
            op, _ = _instruction_opcode(test["bytes"])
            want = adjustment.vector if adjustment is not None else exc.get("number")
            last = m.last_exception()
            if op not in _SOFTWARE_INT and (last is None or last[0] != want):
                diffs["vector"] = (int(want), -1 if last is None else last[0])
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


# ---- the suite's files --------------------------------------------------------------------
# The converted sample holds one JSON object per line (*.jsonl.gz). The upstream repository
# (github.com/SingleStepTests/80286, directory v1_real_mode) publishes the binary MOO format
# (*.MOO.gz); its tools/moo2json.py converts each file to one JSON array (*.json, which
# tools/compress.py gzips to *.json.gz). All of these are read.
_PATTERNS = ("*.jsonl.gz", "*.json.gz", "*.json", "*.MOO.gz", "*.moo.gz", "*.MOO", "*.moo")
_REG_ORDER = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip",
              "flags")


def suite_files(directory: Path) -> list[Path]:
    """The test files of a suite directory (metadata.json is not one), one per opcode key:
    when a key exists in several formats, the first of :data:`_PATTERNS` wins."""
    found: dict[str, Path] = {}
    for pattern in _PATTERNS:
        for path in sorted(directory.glob(pattern)):
            if path.name == "metadata.json":
                continue
            found.setdefault(_opcode_key(path), path)
    return [found[k] for k in sorted(found)]


def _u32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off:off + 4], "little")


def _moo_state(data: bytes, off: int, end: int) -> dict:
    state: dict = {"regs": {}, "ram": [], "queue": []}
    while off < end:
        tag, size = data[off:off + 4], _u32(data, off + 4)
        body = off + 8
        if tag == b"REGS":
            bits = int.from_bytes(data[body:body + 2], "little")
            p = body + 2
            for i, name in enumerate(_REG_ORDER):
                if bits >> i & 1:
                    state["regs"][name] = int.from_bytes(data[p:p + 2], "little")
                    p += 2
        elif tag == b"RAM ":
            count = _u32(data, body)
            p = body + 4
            for _ in range(count):
                state["ram"].append([_u32(data, p), data[p + 4]])
                p += 5
        elif tag == b"QUEU":
            count = _u32(data, body)
            state["queue"] = list(data[body + 4:body + 4 + count])
        off = body + size
    return state


def read_moo(data: bytes) -> list[dict]:
    """The tests of a MOO file (the chunked binary format of github.com/dbalsom/moo, as
    tools/moo2json.py of the 80286 suite reads it): the same dictionaries as the JSON form,
    without the bus cycles."""
    if data[:4] != b"MOO ":
        raise ValueError("not a MOO file")
    off = 8 + _u32(data, 4)
    tests = []
    while off + 8 <= len(data):
        tag, size = data[off:off + 4], _u32(data, off + 4)
        body = off + 8
        if tag == b"TEST":
            test: dict = {"idx": _u32(data, body)}
            p = body + 4
            while p < body + size:
                sub, slen = data[p:p + 4], _u32(data, p + 4)
                q = p + 8
                if sub == b"NAME":
                    test["name"] = data[q + 4:q + 4 + _u32(data, q)].decode()
                elif sub == b"BYTS":
                    test["bytes"] = list(data[q + 4:q + 4 + _u32(data, q)])
                elif sub in (b"INIT", b"FINA"):
                    test["initial" if sub == b"INIT" else "final"] = _moo_state(data, q, q + slen)
                elif sub == b"EXCP":
                    test["exception"] = {"number": data[q], "flag_address": _u32(data, q + 1)}
                elif sub == b"HASH":
                    test["hash"] = data[q:q + slen].hex()
                p = q + slen
            tests.append(test)
        off = body + size
    return tests


def iter_tests(path: Path) -> Iterator[dict]:
    """The tests of one file, whatever its format (see :data:`_PATTERNS`)."""
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    if name.endswith((".moo", ".moo.gz")):
        with opener(path, "rb") as f:
            yield from read_moo(f.read())
        return
    with opener(path, "rt") as f:
        if name.endswith(".jsonl.gz"):
            for line in f:
                if line.strip():
                    yield json.loads(line)
        else:
            yield from json.load(f)


def suite_root(directory: Path) -> Path:
    """The directory holding metadata.json: ``directory`` itself, or its v1_real_mode
    subdirectory when given the upstream repository's root."""
    if not (directory / "metadata.json").exists() and (directory / "v1_real_mode").is_dir():
        return directory / "v1_real_mode"
    return directory


def _revoked(directory: Path) -> frozenset[str]:
    """Hashes of revoked tests (revocation_list.txt beside the tests or one level up)."""
    for d in (directory, directory.parent):
        path = d / "revocation_list.txt"
        if path.exists():
            return frozenset(line.strip().lower() for line in path.read_text().splitlines()
                             if line.strip() and not line.startswith("#"))
    return frozenset()


def run_directory(directory: Path, only: set[str] | None = None, keep_failures: int = 3,
                  progress=None) -> dict:
    """Run every test file in a SingleStepTests directory; returns the summary dict."""
    directory = suite_root(Path(directory))
    meta_path = directory / "metadata.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} has no metadata.json: not a SingleStepTests dir")
    meta = json.loads(meta_path.read_text())
    files = suite_files(directory)
    if only:
        files = [f for f in files if _opcode_key(f) in only]
    if not files:
        raise FileNotFoundError(f"{directory}: no test files ({', '.join(_PATTERNS)})")
    revoked = _revoked(directory)
    runner = SSTRunner()
    per_op: dict[str, OpcodeResult] = {}
    excluded_list: list[dict] = []
    adjusted_list: list[dict] = []
    for path in files:
        key = _opcode_key(path)
        om = _meta_for(meta, key)
        flags_mask = int(om.get("flags-mask", 0xFFFF))
        res = per_op.setdefault(key, OpcodeResult())
        for test in iter_tests(path):
            res.total += 1
            why = exclusion_for(test, key, revoked)
            if why:
                res.excluded += 1
                excluded_list.append({"opcode": key, "idx": test["idx"], "name": test["name"],
                                      "reason": why})
                continue
            adj = i386_adjustment(test)
            if adj is not None and (adj.vector != 13 or adj.registers):
                res.adjusted += 1
                adjusted_list.append({"opcode": key, "idx": test["idx"], "name": test["name"],
                                      "vector": adj.vector, "registers": adj.registers,
                                      "notes": adj.notes})
            failure = runner.run_test(test, flags_mask, adj)
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
        "files": len(files),
        "total": total,
        "passed": sum(r.passed for r in per_op.values()),
        "failed": sum(r.failed for r in per_op.values()),
        "excluded": sum(r.excluded for r in per_op.values()),
        "adjusted": sum(r.adjusted for r in per_op.values()),
        "exclusion_reasons": {k: e.reason for k, e in EXCLUSIONS.items()},
        "exclusions": excluded_list,
        "adjustments": adjusted_list,
        "opcodes": {k: {"total": r.total, "passed": r.passed, "failed": r.failed,
                        "excluded": r.excluded, "adjusted": r.adjusted,
                        "failures": r.failures}
                    for k, r in per_op.items()},
    }


if __name__ == "__main__":
    import sys

    only = set(sys.argv[2:]) or None
    result = run_directory(Path(sys.argv[1]), only)
    for k, r in result["opcodes"].items():
        if r["failed"]:
            print(k, r["passed"], "/", r["total"] - r["excluded"], json.dumps(r["failures"][:2]))
    print({k: result[k] for k in ("total", "passed", "failed", "excluded", "adjusted")})
