# ruff: noqa: E501  (the mutant catalogue quotes source lines verbatim)
"""Mutation testing of aero's evidence: does the evidence notice a plausible bug?

``python -m aero.bench.mutate [--only NAME ...] [--jobs 2] [--all-checks] [--examples 300]``

Each entry of :data:`MUTANTS` is a small textual patch of the C core (``aero/_core``) or of
the instruction table (``aero/isa.py``): a ``find`` text that must occur exactly once, and
its replacement. For each mutant the tree is copied to a temporary directory, patched and
built, and the checks of :data:`CHECKS` run against it, cheapest first, until one fails
(the mutant is *killed* by that check) or all pass (it *survives*):

* ``sst``: the hardware conformance suite (``aero.fuzz.sst.run_directory``), failures > 0;
* ``unicorn-real``, ``unicorn-pm32``, ``unicorn-pm32-paging``: a fixed-seed Unicorn
  campaign of ``--examples`` examples per mode, an unexplained divergence;
* ``unit``: a fast subset of the CPU tests (and the replay of tests/regressions/).

The kill table and the mutation score (killed / (mutants - equivalent ones that survive))
are printed and saved as JSON under benchmarks/results/. The unmutated tree runs first and
must pass every check (otherwise the checks are not trustworthy and nothing is scored).

Invariants:

* The working tree is never modified: mutants are applied to copies.
* The build compiles only what a mutant changes: objects of unchanged files come from a
  cache keyed by the file's text, every header, the generated opcode table, the core stamp
  (for the file that embeds it) and the flags.
* A check runs in its own process group with a timeout; a crash of the mutant core
  (signal) counts as a kill by that check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CFLAGS", "CHECKS", "Check", "MUTANTS", "Mutant", "MutantResult", "SST_SCRIPT",
           "apply_mutant", "build_tree", "copy_tree", "main", "make_checks", "run_mutant"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CFLAGS = ["-std=c11", "-O2", "-fno-strict-aliasing", "-fwrapv", "-Wno-unused-parameter",
          "-fPIC"]


@dataclass(frozen=True)
class Mutant:
    """A plausible bug: ``find`` (exactly once in ``path``) replaced by ``replace``.
    ``equivalent`` is the reason when the mutant cannot change observable behaviour."""

    name: str
    category: str
    path: str
    find: str
    replace: str
    equivalent: str | None = None


def _m(name: str, category: str, path: str, find: str, replace: str) -> Mutant:
    return Mutant(name, category, path, find, replace)


FL, ALU, SYS, FLOW, DATA, STR = ("aero/_core/flags.c", "aero/_core/ops_alu.c",
                                  "aero/_core/ops_system.c", "aero/_core/ops_flow.c",
                                  "aero/_core/ops_data.c", "aero/_core/ops_string.c")
SEG, MEM, DEC, ISA = "aero/_core/seg.c", "aero/_core/mem.c", "aero/_core/decode.c", "aero/isa.py"

MUTANTS: tuple[Mutant, ...] = (
    # ---- flag computations
    _m("add-cf-equal", "flags", FL, "case LF_ADD:\n        if (r < a) f |= F_CF;",
       "case LF_ADD:\n        if (r <= a) f |= F_CF;"),
    _m("adc-cf-carry-in", "flags", FL, "if (r < a || (r == a)) f |= F_CF;", "if (r < a) f |= F_CF;"),
    _m("sub-of-operands", "flags", FL,
       "case LF_SUB:\n        if (a < b) f |= F_CF;\n        if ((a ^ b) & (a ^ r) & sign)",
       "case LF_SUB:\n        if (a < b) f |= F_CF;\n        if ((a ^ b) & (b ^ r) & sign)"),
    _m("sbb-cf-borrow-in", "flags", FL, "if (a < b || (a == b)) f |= F_CF;", "if (a < b) f |= F_CF;"),
    _m("inc-of", "flags", FL, "if (r == sign) f |= F_OF;", "if (r == sign + 1) f |= F_OF;"),
    _m("dec-af", "flags", FL, "if ((r & 0xF) == 0xF) f |= F_AF;", "if ((r & 0xF) == 0) f |= F_AF;"),
    _m("inc-loses-cf", "flags", FL, "    case LF_INC:\n        f |= c->lf_b & F_CF;\n",
       "    case LF_INC:\n"),
    _m("parity-table", "flags", FL, "{P64(4), P64(0), P64(0), P64(4)}",
       "{P64(4), P64(0), P64(4), P64(0)}"),
    _m("cond-le-and", "flags", FL, "default: r = (f & F_ZF) || (", "default: r = (f & F_ZF) && ("),
    _m("cond-fast-below-equal", "flags", FL,
       "return ((c->lf_a & mask) < (c->lf_b & mask)) ^ (cc & 1);",
       "return ((c->lf_a & mask) <= (c->lf_b & mask)) ^ (cc & 1);"),
    # ---- shifts, rotates, double shifts
    _m("shift-count-zero-flags", "shift", ALU, "    count &= 0x1F;\n    if (count == 0) return a;\n",
       "    count &= 0x1F;\n"),
    _m("shr-of-zero", "shift", ALU, "of = ((r ^ (r << 1)) & sign) != 0;", "of = 0;"),
    _m("sar-cf-off-by-one", "shift", ALU, "cf = (uint32_t)(sa >> (c - 1)) & 1;",
       "cf = (uint32_t)(sa >> c) & 1;"),
    _m("rcr-of", "shift", ALU, "of = ((r & sign) != 0) ^ ((r & (sign >> 1)) != 0);",
       "of = ((r & sign) != 0) ^ cf;"),
    _m("shld-cf", "shift", ALU, "cf = (d >> (32 - count)) & 1;", "cf = (d >> (31 - count)) & 1;"),
    Mutant("shxd-flags-before-write", "restartability", ALU,
           "        if (in->mod != 3) lin_wr(m, lin, size, r); /* a #PF here must leave EFLAGS alone */\n"
           "        m->cpu.eflags = f;\n",
           "        m->cpu.eflags = f;\n        if (in->mod != 3) lin_wr(m, lin, size, r);\n",
           equivalent="the destination was read with a write check (lin_rd_w) before the flags "
                      "are computed, so the store cannot fault afterwards and the order of the "
                      "two statements is unobservable (tests/test_conditional_access.py checks "
                      "that a faulting SHLD/SHRD leaves EFLAGS alone)"),
    # ---- bit operations, exchange-and-compare
    _m("bt-offset-unsigned", "bit", ALU, "int32_t so = (int32_t)sext(offset, size);",
       "int32_t so = (int32_t)offset;"),
    _m("btr-keeps-bit", "bit", ALU, "case 2: nv = v & ~(1u << bit); break;",
       "case 2: nv = v & (1u << bit); break;"),
    _m("cmpxchg-compare-order", "alu", ALU, "(void)alu(m, OP_CMP, acc, d, size);",
       "(void)alu(m, OP_CMP, d, acc, size);"),
    Mutant("cmpxchg-no-writeback", "conditional-access", ALU,
           "        if (in->mod != 3) lin_wr(m, lin, size, d);\n        set_reg(m, R_EAX, size, d);",
           "        set_reg(m, R_EAX, size, d);",
           equivalent="the destination is read through a write translation (lin_rd_w), which "
                      "already raises the write's #PF and sets the dirty bit, and the value "
                      "written back is the value read: dropping the store changes nothing "
                      "observable (tests/test_conditional_access.py checks the #PF and the "
                      "dirty bit on both outcomes)"),
    _m("cmpxchg8b-zf-inverted", "alu", ALU,
       "        f |= F_ZF;\n    } else {\n        lin_wr(m, lin, 4, lo);",
       "    } else {\n        f |= F_ZF;\n        lin_wr(m, lin, 4, lo);"),
    _m("xadd-source-kept", "alu", ALU,
       "        lin_wr(m, lin, size, r);\n        set_reg(m, in->reg, size, d);",
       "        lin_wr(m, lin, size, r);\n        set_reg(m, in->reg, size, src);"),
    # ---- BCD and division
    _m("daa-high-threshold", "bcd", ALU, "    if (old_al > 0x99 || old_cf) {\n        al += 0x60;",
       "    if (old_al > 0x9F || old_cf) {\n        al += 0x60;"),
    Mutant("das-borrow", "bcd", ALU, "if (old_cf || al < 6) f |= F_CF;", "if (al < 6) f |= F_CF;",
           equivalent="when CF was set before, DAS's second step ('IF old_AL > 99H or old_CF "
                      "= 1 THEN AL := AL - 60H; CF := 1') sets CF anyway, so dropping old_CF "
                      "from the first step changes no result (SDM Vol. 2 'DAS')"),
    _m("das-af-not-set", "bcd", ALU, "        al -= 6;\n        f |= F_AF;", "        al -= 6;"),
    _m("aaa-no-mask", "bcd", ALU, "    ax &= 0xFF0F;", "    ax &= 0xFFFF;"),
    _m("aad-result-width", "bcd", ALU, "uint32_t r = (al + ah * base) & 0xFF;",
       "uint32_t r = (al + ah * base) & 0xFFFF;"),
    _m("idiv8-range", "alu", ALU, "if (q > 127 || q < -128)", "if (q > 127 || q < -127)"),
    # ---- string instructions
    _m("lods-advance-before-read", "restartability", STR,
       "        set_reg(m, R_EAX, size, rdn(m, in->seg, idx_get(m, in, R_ESI), size));\n"
       "        advance(m, in, R_ESI, size);",
       "        advance(m, in, R_ESI, size);\n"
       "        set_reg(m, R_EAX, size, rdn(m, in->seg, (idx_get(m, in, R_ESI) - ((m->cpu.eflags"
       " & F_DF) ? (uint32_t)-size : (uint32_t)size)) & amask(in), size));"),
    _m("cmps-operand-order", "string", STR,
       "set_lazy(m, LF_SUB, lf_size_of(size), a, b, a - b);\n        advance(m, in, R_ESI, size);",
       "set_lazy(m, LF_SUB, lf_size_of(size), b, a, b - a);\n        advance(m, in, R_ESI, size);"),
    _m("rep-zero-count-runs-once", "string", STR,
       "    if (cnt == 0) {\n        next(m, in);\n        return;\n    }",
       "    if (cnt == 0) cnt = 1;"),
    _m("repe-termination-inverted", "string", STR, "end = in->rep == 0xF3 ? !eq : eq;",
       "end = in->rep == 0xF3 ? eq : !eq;"),
    _m("string-ignores-df", "string", STR,
       "uint32_t d = (m->cpu.eflags & F_DF) ? (uint32_t)-size : (uint32_t)size;",
       "uint32_t d = (uint32_t)size;"),
    # ---- stack and flow
    _m("ret-pops-before-limit-check", "restartability", FLOW,
       "    aero_jump_near(m, target);\n    sp_set(m, sp_at(m, (uint32_t)size + imm));",
       "    sp_set(m, sp_at(m, (uint32_t)size + imm));\n    aero_jump_near(m, target);"),
    _m("loop-count-before-jump", "restartability", FLOW,
       "    if (taken) aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));\n"
       "    else next(m, in);\n    if (in->asz) m->cpu.r[R_ECX] = cnt;\n"
       "    else set_r16(m, R_ECX, (uint16_t)cnt);",
       "    if (in->asz) m->cpu.r[R_ECX] = cnt;\n    else set_r16(m, R_ECX, (uint16_t)cnt);\n"
       "    if (taken) aero_jump_near(m, near_target(in, m->cpu.eip + in->len + in->imm));\n"
       "    else next(m, in);"),
    _m("bound-unsigned-16", "flow", FLOW, "        l = (int16_t)lo;\n        h = (int16_t)hi;",
       "        l = (int32_t)lo;\n        h = (int32_t)hi;"),
    _m("leave-full-ebp", "stack", FLOW, "uint32_t sp = m->cpu.r[R_EBP] & sp_mask(m);",
       "uint32_t sp = m->cpu.r[R_EBP];"),
    _m("enter-frame-full-esp", "stack", FLOW,
       "    if (stack32(m)) frame_reg = frame;\n    else frame_reg = (frame_reg & 0xFFFF0000u) | frame;",
       "    frame_reg = frame;"),
    _m("pop-ev-ea-before-increment", "stack", FLOW,
       "        uint32_t old = m->cpu.r[R_ESP];\n        sp_set(m, nsp);\n        uint32_t a = ea(m, in);",
       "        uint32_t old = m->cpu.r[R_ESP];\n        uint32_t a = ea(m, in);"),
    _m("arpl-always-writes", "conditional-access", SYS,
       "        if (raised) lin_wr(m, lin, 2, (dst & ~3u) | src_rpl);",
       "        lin_wr(m, lin, 2, raised ? ((dst & ~3u) | src_rpl) : dst);"),
    _m("cbw-zero-extends", "data", DATA, "(uint16_t)(int16_t)(int8_t)m->cpu.r[R_EAX]",
       "(uint16_t)(uint8_t)m->cpu.r[R_EAX]"),
    _m("sahf-drops-af", "data", DATA,
       "    uint32_t mask = F_SF | F_ZF | F_AF | F_PF | F_CF;\n    set_flags_masked",
       "    uint32_t mask = F_SF | F_ZF | F_PF | F_CF;\n    set_flags_masked"),
    _m("movsx-word-zero-extends", "data", DATA, "(uint32_t)(int32_t)(int16_t)get_E(m, in, 2)",
       "(uint32_t)(uint16_t)get_E(m, in, 2)"),
    # ---- protection and fault priority
    _m("segment-fault-always-gp", "protection", SEG,
       "    aero_fault(m, seg == S_SS ? EXC_SS : EXC_GP, 0, 1);", "    aero_fault(m, EXC_GP, 0, 1);"),
    _m("segment-limit-first-byte", "protection", SEG,
       "    if (!SA_IS_EXPAND_DOWN(s->attr)) return last <= s->limit;",
       "    if (!SA_IS_EXPAND_DOWN(s->attr)) return off <= s->limit;"),
    _m("code-segment-writable", "protection", SEG, "if (attr & 0x8) return !write && (attr & 0x2);",
       "if (attr & 0x8) return (attr & 0x2) != 0;"),
    _m("near-jump-no-limit", "protection", SEG,
       "    if (target > m->cpu.seg[S_CS].limit) aero_fault(m, EXC_GP, 0, 1);\n    m->cpu.eip = target;",
       "    m->cpu.eip = target;"),
    _m("stack-slot-gp", "protection", SEG,
       "if (!aero_seg_fits(s, off, (uint32_t)size)) aero_fault(m, EXC_SS, err, 1);\n        lin[i]",
       "if (!aero_seg_fits(s, off, (uint32_t)size)) aero_fault(m, EXC_GP, err, 1);\n        lin[i]"),
    # ---- paging
    _m("pf-error-no-user-bit", "paging", MEM,
       "uint32_t err = (write ? PF_W : 0u) | (user ? PF_U : 0u);", "uint32_t err = (write ? PF_W : 0u);"),
    _m("wp-ignored-4k", "paging", MEM,
       "int ok_w = !write || (both & PTE_W) || (!user && !(m->cpu.cr0 & CR0_WP));",
       "int ok_w = !write || (both & PTE_W) || !user;"),
    _m("pte-dirty-not-set", "paging", MEM, "uint32_t npte = pte | PTE_A | (write ? PTE_D : 0);",
       "uint32_t npte = pte | PTE_A;"),
    # ---- decoder and instruction table
    _m("lock-register-form-accepted", "decoder", DEC,
       "if (lock && (!(desc.flags & AERO_OPF_LOCK) || in->mod == 3)) in->fn = aero_op_ud;",
       "if (lock && !(desc.flags & AERO_OPF_LOCK)) in->fn = aero_op_ud;"),
    _m("length-limit-16", "decoder", DEC, "if (eip - f->start >= 15 ||", "if (eip - f->start >= 16 ||"),
    _m("isa-lock-add-missing", "table", ISA, "01    add     Ev,Gv   add_EvGv    lock",
       "01    add     Ev,Gv   add_EvGv"),
    _m("isa-lock-on-mov", "table", ISA, "88    mov     Eb,Gb   mov_EbGb\n",
       "88    mov     Eb,Gb   mov_EbGb    lock\n"),
    _m("isa-lea-register-form", "table", ISA, "8D    lea     Gv,M    lea         mem",
       "8D    lea     Gv,M    lea"),
    _m("isa-test-alias-no-immediate", "table", ISA, "F6/1  test    Eb,Ib   test_EbIb",
       "F6/1  test    Eb      test_EbIb"),
)


# ---- trees and builds --------------------------------------------------------------------

_COPY = ("aero", "fuzz", "traces", "oracles", "benchmarks", "tests", "guests", "pyproject.toml",
         "setup.py")
_LINKS = {"fuzz": "fuzz", "traces": "traces", "oracles": "oracles", "bench": "benchmarks"}


def copy_tree(dest: Path, source: Path = ROOT) -> Path:
    """A copy of the source tree (no build products) in which ``import aero`` with
    ``PYTHONPATH=dest`` finds the copy: the layer folders are linked into aero/ as the
    installed package maps them."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", "_aero_core*.c", "build",
                                    ".hypothesis", "results")
    dest.mkdir(parents=True, exist_ok=True)
    for name in _COPY:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    for link, target in _LINKS.items():
        (dest / "aero" / link).symlink_to(Path("..") / target)
    return dest


def apply_mutant(tree: Path, mutant: Mutant) -> None:
    """Patch the copy; the find text must occur exactly once."""
    path = tree / mutant.path
    text = path.read_text()
    n = text.count(mutant.find)
    if n != 1:
        raise ValueError(f"{mutant.name}: the find text occurs {n} times in {mutant.path}")
    path.write_text(text.replace(mutant.find, mutant.replace))


def _run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Run in its own process group; SIGTERM then SIGKILL on timeout; output drained."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        return subprocess.CompletedProcess(cmd, -9, out + "\n[timeout]", "")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


_GEN = """
import runpy, sys
ns = runpy.run_path('aero/_build.py')
ns['ffibuilder'].emit_c_code('aero/_aero_core_gen.c')
print(ns['_stamp'])
"""


def build_tree(tree: Path, cache: Path, cflags: list[str] | None = None) -> tuple[bool, str]:
    """Compile the copy's core into aero/_aero_core*.so, reusing cached objects of files
    that did not change. (ok, log). ``cflags`` replaces :data:`CFLAGS` (e.g. -O0 for a
    quick build: optimisation does not change what the core computes)."""
    cflags = CFLAGS if cflags is None else cflags
    cache.mkdir(parents=True, exist_ok=True)
    gen = _run([sys.executable, "-c", _GEN], tree, 300)
    if gen.returncode != 0:
        return False, gen.stdout[-3000:]
    stamp = gen.stdout.strip().splitlines()[-1]
    core = tree / "aero" / "_core"
    headers = b"".join(p.read_bytes() for p in sorted(core.glob("*.h")))
    optable = (core / "optable.inc").read_bytes()
    include = sysconfig.get_paths()["include"]
    flags = cflags + [f"-I{core}", f"-I{include}", f'-DAERO_CORE_STAMP="{stamp}"']
    sources = sorted(core.glob("*.c")) + [tree / "aero" / "_aero_core_gen.c"]
    objects = []
    for src in sources:
        text = src.read_bytes()
        key = hashlib.sha256(text + headers + " ".join(cflags).encode()
                             + (optable if b"optable.inc" in text else b"")
                             + (stamp.encode() if b"AERO_CORE_STAMP" in text else b"")
                             ).hexdigest()[:24]
        obj = cache / f"{src.stem}-{key}.o"
        if not obj.exists():
            tmp = obj.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.tmp")
            res = _run(["cc", *flags, "-c", str(src), "-o", str(tmp)], tree, 600)
            if res.returncode != 0:
                return False, res.stdout[-3000:]
            tmp.replace(obj)
        objects.append(str(obj))
    target = tree / "aero" / ("_aero_core" + sysconfig.get_config_var("EXT_SUFFIX"))
    res = _run(["cc", "-shared", "-o", str(target), *objects], tree, 300)
    return res.returncode == 0, res.stdout[-3000:]


# ---- checks ---------------------------------------------------------------------------------

def _suite() -> Path | None:
    env = os.environ.get("AERO_SST_DIR")
    if env:
        return Path(env)
    for d in (ROOT, *ROOT.parents):
        p = d / "shared" / "conformance" / "sst80286-real"
        if p.is_dir():
            return p
    return None


SST_SCRIPT = """
import json, sys
from pathlib import Path
from aero.fuzz.sst import run_directory
r = run_directory(Path(sys.argv[1]), set(sys.argv[2:]) or None)
bad = [(k, f['name']) for k, o in r['opcodes'].items() for f in o['failures']]
print(json.dumps({'failed': r['failed'], 'first': bad[:3]}))
sys.exit(1 if r['failed'] else 0)
"""

_CAMPAIGN = """
import json, sys
from aero.fuzz.campaign import run_campaign
r = run_campaign(int(sys.argv[2]), 1, sys.argv[1], max_runs=1, shrink=False)
u = [d.signature for d in r.unexplained]
print(json.dumps({'unexplained': u, 'examples': r.examples}))
sys.exit(1 if u else 0)
"""

UNIT_TESTS = ("tests/test_core.py", "tests/test_flow_string.py", "tests/test_paging.py",
              "tests/test_protection.py", "tests/test_system.py", "tests/test_exceptions.py",
              "tests/test_refmodel.py", "tests/test_conditional_access.py",
              "tests/test_difftest_unicorn.py::test_regression")


@dataclass(frozen=True)
class Check:
    name: str
    command: tuple[str, ...]
    timeout: float


def make_checks(examples: int, unit: tuple[str, ...] = UNIT_TESTS) -> tuple[Check, ...]:
    suite = _suite()
    checks = []
    if suite is not None:
        checks.append(Check("sst", (sys.executable, "-c", SST_SCRIPT, str(suite)), 900))
    for mode in ("real", "pm32", "pm32-paging"):
        checks.append(Check(f"unicorn-{mode}",
                            (sys.executable, "-c", _CAMPAIGN, mode, str(examples)), 900))
    checks.append(Check("unit", (sys.executable, "-m", "pytest", "-x", "-q", "-p",
                                 "no:cacheprovider", *unit), 900))
    return tuple(checks)


CHECKS = make_checks(300)


@dataclass
class MutantResult:
    name: str
    category: str
    built: bool = False
    killed_by: str | None = None
    checks: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    equivalent: str | None = None
    log: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "category": self.category, "built": self.built,
                "killed_by": self.killed_by, "checks": self.checks,
                "seconds": round(self.seconds, 1), "equivalent": self.equivalent,
                "log": self.log[-1500:] if not self.built else ""}


def run_mutant(mutant: Mutant | None, checks: tuple[Check, ...], workdir: Path, cache: Path,
               all_checks: bool = False, cflags: list[str] | None = None) -> MutantResult:
    """Copy, patch, build and check one mutant (None: the unmutated tree)."""
    start = time.monotonic()
    name = mutant.name if mutant else "(none)"
    res = MutantResult(name, mutant.category if mutant else "-",
                       equivalent=mutant.equivalent if mutant else None)
    tree = copy_tree(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)) / "tree")
    try:
        if mutant is not None:
            apply_mutant(tree, mutant)
        res.built, res.log = build_tree(tree, cache, cflags)
        if not res.built:
            return res
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
        env.pop("CI", None)
        for check in checks:
            t0 = time.monotonic()
            out = _run(list(check.command), tree, check.timeout, env)
            killed = out.returncode != 0
            res.checks[check.name] = {"killed": killed, "returncode": out.returncode,
                                      "seconds": round(time.monotonic() - t0, 1),
                                      "detail": out.stdout.strip().splitlines()[-1][-300:]
                                      if out.stdout.strip() else ""}
            if killed and res.killed_by is None:
                res.killed_by = check.name
                if not all_checks:
                    break
        return res
    finally:
        res.seconds = time.monotonic() - start
        shutil.rmtree(tree.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aero.bench.mutate", description=__doc__)
    ap.add_argument("--only", nargs="*", help="mutant names")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--all-checks", action="store_true", help="run every check on every mutant")
    ap.add_argument("--checks", default=None, help="comma-separated subset of the checks")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    checks = make_checks(args.examples)
    if args.checks:
        keep = set(args.checks.split(","))
        checks = tuple(c for c in checks if c.name in keep)
    work = Path(tempfile.mkdtemp(prefix="aero-mutate-"))
    cache = work / "objects"
    t0 = time.monotonic()
    try:
        base = run_mutant(None, checks, work, cache, all_checks=True)
        print(f"unmutated tree: built={base.built} "
              f"{ {k: v['killed'] for k, v in base.checks.items()} }", flush=True)
        if not base.built or base.killed_by:
            print("the unmutated tree fails a check: nothing is scored")
            print(base.log[-2000:], json.dumps(base.checks, indent=1))
            return 2
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(
                lambda m: _report(run_mutant(m, checks, work, cache, args.all_checks)),
                mutants))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    built = [r for r in results if r.built]
    killed = [r for r in built if r.killed_by]
    equivalent = [r for r in built if not r.killed_by and r.equivalent]
    scored = len(built) - len(equivalent)
    score = len(killed) / scored if scored else 0.0
    print()
    print(f"{'mutant':34} {'category':18} killed by")
    for r in results:
        verdict = r.killed_by or ("not built" if not r.built else
                                  f"equivalent: {r.equivalent}" if r.equivalent else "SURVIVED")
        print(f"{r.name:34} {r.category:18} {verdict}")
    print(f"\nmutation score: {len(killed)}/{scored} = {score:.1%} "
          f"({len(results) - len(built)} not built, {len(equivalent)} equivalent) "
          f"in {time.monotonic() - t0:.0f} s")
    out = args.output or RESULTS / f"mutants-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "checks": [c.name for c in checks], "examples": args.examples,
        "all_checks": args.all_checks, "score": round(score, 4), "killed": len(killed),
        "scored": scored, "mutants": [r.to_dict() for r in results],
        "unmutated": base.to_dict()}, indent=1) + "\n")
    print(f"saved {out}")
    return 0


def _report(r: MutantResult) -> MutantResult:
    verdict = r.killed_by or ("not built" if not r.built else "survived")
    print(f"  {r.name}: {verdict} ({r.seconds:.0f} s)", flush=True)
    return r


if __name__ == "__main__":
    sys.exit(main())
