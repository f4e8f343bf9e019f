"""Differential fuzzing campaigns: aero against Unicorn, instruction by instruction.

``aero fuzz cpu --against unicorn --examples N --seed S [--mode real|pm32|pm32-paging|all]``
runs
:func:`run_campaign` through ``aero fuzz cpu`` (:mod:`aero.cli.fuzz`).

Invariants:

* Deterministic for a given (examples, seed, mode, classes): Hypothesis runs with a fixed
  seed, no example database, no deadline and no time-dependent phase.
* Every divergence is shrunk by Hypothesis before it is recorded. The campaign then
  continues with a seed derived from the previous one until the example budget is used;
  a divergence whose signature (mode, opcode, prefix class) was already recorded is
  counted as a repeat, never recorded twice.
* A divergence that a :data:`~aero.fuzz.unicorn.KNOWN_DIVERGENCES` entry explains
  (Unicorn wrong, decided with the Intel SDM or hardware data) is reported as explained
  and does not fail the campaign; it is recorded as found (first occurrence per
  signature), without shrinking.
* Examples the reference cannot model (memory it does not map, instructions that rewrite
  themselves) are discarded and counted, never compared.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aero.fuzz.difftest import (
    REG_KEYS,
    AeroCPU,
    NotComparable,
    PairResult,
    Scenario,
    StepRecord,
    run_pair,
)
from aero.fuzz.unicorn import KNOWN_DIVERGENCES, KnownDivergence, UnicornCPU, explain
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis import seed as hseed
from hypothesis.errors import Unsatisfiable

from .strategies import CLASSES, EXCLUSIONS, pending_handlers, scenarios

__all__ = ["CampaignResult", "Checker", "DEFAULT_CLASSES", "Divergence", "KNOWN_DIVERGENCE_SEARCH",
           "derive_seed", "discard_reason", "find_known", "memory_changes", "print_divergence",
           "print_explained", "reduce_memory", "regression_case", "replay_regression",
           "run_campaign", "signature",
           "write_known_regressions", "write_regression"]

DEFAULT_CLASSES = tuple(c for c in CLASSES if c not in ("io", "x87"))


@dataclass
class Divergence:
    """One recorded divergence (shrunk when unexplained)."""

    scenario: Scenario
    record: StepRecord
    signature: str
    explanation: KnownDivergence | None
    occurrences: int = 1

    def __post_init__(self) -> None:
        # Keep only what changed in memory: a campaign may hold hundreds of records, and
        # the two RAM images of each would cost megabytes.
        image = self.scenario.image()
        rec = self.record
        self._aero = _state_dict(rec.aero.regs, rec.aero.exception, rec.aero.memory, image,
                                 rec.aero.error_code, rec.aero.cr2)
        # Bits the architecture leaves undefined (or that carry host time, as RDTSC's do
        # in Unicorn) show aero's value on both sides, so a record is a pure function of
        # the campaign's seed.
        ref_regs = dict(rec.ref.regs)
        for k, mask in rec.masks.regs.items():
            if k in ref_regs and k in rec.aero.regs:
                ref_regs[k] = (ref_regs[k] & ~mask) | (rec.aero.regs[k] & mask)
        self._ref = _state_dict(ref_regs, rec.ref.exception, rec.ref.memory, image,
                                rec.ref.error_code, rec.ref.cr2)
        rec.aero.memory = rec.ref.memory = np.zeros(0, dtype=np.uint8)
        rec.before_memory = None

    @property
    def explained(self) -> bool:
        return self.explanation is not None

    def to_dict(self) -> dict:
        """Everything needed to reproduce and judge the divergence. ``initial`` is the
        scenario (memory: the ``fill_seed`` pattern of :func:`aero.fuzz.difftest.fill_page`
        plus sparse writes); ``aero``/``unicorn`` give each side's registers, exception
        and memory changes after the diverging instruction; ``before`` is the register
        file just before it."""
        rec, sc = self.record, self.scenario
        return {
            "signature": self.signature,
            "mode": sc.mode,
            "bytes": sc.code[rec.index].hex(),
            "decoded": rec.info.text(),
            "step": rec.index,
            "code": [c.hex() for c in sc.code],
            "explained": self.explained,
            "explanation": None if self.explanation is None else {
                "key": self.explanation.key, "title": self.explanation.title},
            "occurrences": self.occurrences,
            "mismatches": [_masked(m, rec.masks.regs) for m in rec.mismatches],
            "initial": sc.to_dict(),
            "before": dict(rec.before),
            "aero": self._aero,
            "unicorn": self._ref,
            "undefined": {"flags": rec.masks.flags, "regs": rec.masks.regs,
                          "memory": [list(x) for x in rec.masks.memory],
                          "notes": rec.masks.notes},
        }


def _masked(m: object, masks: dict[str, int]) -> dict:
    """A mismatch as a dict, the reference's bits that the architecture leaves undefined
    (or that carry host time: RDTSC) shown with aero's value, as in the record's states."""
    out = m.to_dict()  # type: ignore[attr-defined]
    mask = masks.get(out["field"], 0)
    if mask and isinstance(out["ref"], int) and isinstance(out["aero"], int):
        out["ref"] = (out["ref"] & ~mask) | (out["aero"] & mask)
    return out


def _state_dict(regs: dict[str, int], exception: int | None, memory: np.ndarray,
                image: np.ndarray, error_code: int | None = None,
                cr2: int | None = None) -> dict:
    return {"regs": {k: regs[k] for k in REG_KEYS}, "exception": exception,
            "error_code": error_code, "cr2": cr2, "memory": memory_changes(image, memory)}


def memory_changes(before: np.ndarray, after: np.ndarray) -> list[list]:
    """Bytes of ``after`` that differ from ``before``, as ``[address, hex]`` runs."""
    idx = np.flatnonzero(before != after)
    runs: list[list] = []
    for a in idx.tolist():
        if runs and runs[-1][0] + len(runs[-1][1]) // 2 == a:
            runs[-1][1] += f"{int(after[a]):02x}"
        else:
            runs.append([a, f"{int(after[a]):02x}"])
    return runs


@dataclass
class CampaignResult:
    """What a campaign did and found."""

    examples: int
    seed: int
    modes: list[str]
    classes: list[str]
    discarded: int = 0
    runs: int = 0
    elapsed: float = 0.0
    not_implemented: list[str] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)
    explained_count: int = 0
    discard_reasons: dict[str, int] = field(default_factory=dict)  # reason -> examples
    reference: str = "unicorn"  # whose known divergences explain (and are listed)

    @property
    def unexplained(self) -> list[Divergence]:
        return [d for d in self.divergences if not d.explained]

    def to_dict(self) -> dict:
        return {
            "examples": self.examples, "seed": self.seed, "modes": self.modes,
            "classes": self.classes, "discarded": self.discarded, "runs": self.runs,
            "elapsed_seconds": round(self.elapsed, 3),
            "not_implemented": self.not_implemented,
            "unexplained": len(self.unexplained),
            "explained_occurrences": self.explained_count,
            "discard_reasons": dict(sorted(self.discard_reasons.items())),
            "divergences": [d.to_dict() for d in self.divergences],
            "exclusions": [{"key": e.key, "modes": list(e.modes), "reason": e.reason}
                           for e in EXCLUSIONS],
            "known_divergences": [{"key": k.key, "title": k.title}
                                  for k in _known_divergences(self.reference)],
        }


def _known_divergences(reference: str) -> tuple:
    """The register of known divergences that explains a campaign against ``reference``."""
    if reference == "qemu":
        from .qemu_cpu import KNOWN_QEMU_DIVERGENCES

        return KNOWN_QEMU_DIVERGENCES
    return KNOWN_DIVERGENCES


def signature(mode: str, rec: StepRecord) -> str:
    """What makes two divergences the same finding: mode, opcode and prefix class."""
    return f"{mode}:{rec.info.key()}:{rec.info.prefix_class()}"


class _Found(Exception):
    """Raised inside the property for the divergence being shrunk in this run."""

    def __init__(self, scenario: Scenario, rec: StepRecord) -> None:
        super().__init__(signature(scenario.mode, rec))
        self.scenario = scenario
        self.rec = rec


def derive_seed(seed: int, run: int) -> int:
    """The seed of the n-th Hypothesis run of a campaign (stable across platforms)."""
    if run == 0:
        return seed
    h = hashlib.sha256(f"aero-fuzz:{seed}:{run}".encode()).digest()
    return int.from_bytes(h[:8], "little")


class Checker:
    """Runs scenarios on aero and Unicorn (one Unicorn instance per mode)."""

    def __init__(self, modes: Sequence[str], reference: str = "unicorn") -> None:
        self.aero = AeroCPU()
        self.reference = reference
        self.explain: Callable[[StepRecord], KnownDivergence | None] = explain
        self.refs: dict[str, object]
        if reference == "qemu":
            from .qemu_cpu import explain as qemu_explain
            from .qemu_cpu import qemu_references

            self.refs = dict(qemu_references(modes))
            self.explain = qemu_explain
        else:
            self.refs = {m: UnicornCPU(m) for m in modes}

    def close(self) -> None:
        """End the reference processes (QEMU); Unicorn needs nothing."""
        for ref in self.refs.values():
            close = getattr(ref, "close", None)
            if close is not None:
                close()

    def run(self, scenario: Scenario) -> PairResult:
        ref = self.refs[scenario.mode]
        result = run_pair(scenario, self.aero, ref)  # type: ignore[arg-type]
        after = getattr(ref, "after_pair", None)  # state the step results do not carry
        if after is not None:
            after(result, self.aero)
        return result

    def check(self, scenario: Scenario) -> tuple[StepRecord, KnownDivergence | None] | None:
        """The first divergence of a scenario and its explanation, or None.

        Raises NotComparable when the reference failed in a way no known divergence
        explains (unmapped memory, self-modifying code).
        """
        rec = self.run(scenario).divergence
        if rec is None:
            return None
        known = self.explain(rec)
        if known is None and any(m.field.startswith("reference:") for m in rec.mismatches):
            raise NotComparable(rec.mismatches[0].field)
        return rec, known


def discard_reason(exc: Exception) -> str:
    """Why an example was not comparable, without its numbers (a stable counting key)."""
    text = re.sub(r"\s*\(.*$", "", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return re.sub(r"0x[0-9a-fA-F]+|\d{2,}", "N", text)


def _run_once(strategy: object, checker: Checker, budget: int, run_seed: int,
              result: CampaignResult, found: dict[str, Divergence],
              progress: Callable[[int], None] | None, shrink: bool = True) -> str:
    """One Hypothesis run; returns ``found`` (a new divergence, shrunk and recorded),
    ``done`` (budget used) or ``exhausted`` (no valid example could be generated)."""
    target: list[str | None] = [None]
    last: list[_Found | None] = [None]

    @settings(max_examples=budget, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
              report_multiple_bugs=False, verbosity=Verbosity.quiet, print_blob=False)
    @hseed(run_seed)
    @given(strategy)
    def prop(scenario: Scenario) -> None:
        shrinking = target[0] is not None
        try:
            out = checker.check(scenario)
        except NotComparable as exc:
            if not shrinking:
                result.discarded += 1
                why = discard_reason(exc)
                result.discard_reasons[why] = result.discard_reasons.get(why, 0) + 1
            reject()
            return
        if not shrinking:
            result.examples += 1
            if progress is not None:
                progress(result.examples)
        if out is None:
            return
        rec, known = out
        sig = signature(scenario.mode, rec)
        if known is not None:
            if not shrinking:
                result.explained_count += 1
                key = f"{known.key}|{sig}"
                if key in found:
                    found[key].occurrences += 1
                else:
                    found[key] = Divergence(scenario, rec, sig, known)
            return
        if sig in found:
            if not shrinking:
                found[sig].occurrences += 1
            return
        if target[0] is None:
            target[0] = sig
        if sig == target[0]:
            last[0] = _Found(scenario, rec)
            raise last[0]

    try:
        prop()
    except Unsatisfiable:
        return "exhausted"
    except Exception as exc:  # the shrunk _Found, possibly wrapped by Hypothesis
        f = exc if isinstance(exc, _Found) else last[0]
        if f is None:
            raise
        found[str(f)] = Divergence(f.scenario, f.rec, str(f), None)
        return "found"
    return "done"


def run_campaign(examples: int, seed: int, mode: str,
                 progress: Callable[[int], None] | None = None,
                 classes: Sequence[str] | None = None,
                 max_runs: int = 1000, reference: str = "unicorn",
                 shrink: bool = True, checker: Checker | None = None) -> CampaignResult:
    """Run ``examples`` scenarios (discarded ones not counted) and collect divergences.

    ``mode`` is ``real``, ``pm32``, ``pm32-paging`` or ``all`` (the three); ``classes``
    defaults to every comparable class. Handlers the core has not implemented yet are left
    out and listed.
    ``progress`` is called with the number of examples run so far. ``reference`` is
    ``unicorn`` or ``qemu`` (:mod:`aero.fuzz.qemu_cpu`). ``shrink=False`` with
    ``max_runs=1`` stops at the first unexplained divergence, unshrunk (a quick verdict, as
    mutation testing needs). ``checker`` (for ``modes`` and ``reference``) is used instead
    of a new one and left open, so that a worker keeps its reference process across
    chunks.
    """
    if classes is not None and "fpu" in classes:
        # The x87 class has its own generator, backends and judge (aero.fuzz.x87).
        if list(classes) != ["fpu"] or reference != "unicorn":
            raise ValueError("the fpu class runs alone and against unicorn")
        from .x87 import run_fpu_campaign

        return run_fpu_campaign(examples, seed, progress, shrink=shrink)  # type: ignore[return-value]
    modes = ["real", "pm32", "pm32-paging"] if mode == "all" else [mode]
    classes = list(classes or DEFAULT_CLASSES)
    pending = pending_handlers()
    strategy = scenarios(modes, classes)
    own = checker is None
    if checker is None:
        checker = Checker(modes, reference)
    result = CampaignResult(0, seed, modes, classes, not_implemented=sorted(pending),
                            reference=reference)
    found: dict[str, Divergence] = {}
    start = time.monotonic()
    run = 0
    while result.examples < examples and run < max_runs:
        before = result.examples
        outcome = _run_once(strategy, checker, examples - result.examples,
                            derive_seed(seed, run), result, found, progress, shrink)
        run += 1
        if outcome == "found":
            continue
        if result.examples == before or outcome == "exhausted":
            break  # nothing valid could be generated any more
        break  # the run used its whole budget without a new divergence
    if own:
        checker.close()  # (QEMU also ends at exit when an exception skips this)
    result.runs = run
    result.divergences = list(found.values())
    result.elapsed = time.monotonic() - start
    return result


# ---- regressions ------------------------------------------------------------------------------

def reduce_memory(checker: Checker, div: Divergence) -> Scenario:
    """The divergence's scenario with memory cut down to the bytes the reference read
    (the rest zero), if that still reproduces the same divergence; else the original."""
    sc = div.scenario
    ref = checker.refs[sc.mode]
    ref.trace_reads = True
    try:
        res = checker.run(sc)
    finally:
        ref.trace_reads = False
    image = sc.image()
    sparse: dict[int, int] = {}
    for step in res.steps:
        for kind, lin, n in step.ref.accesses:
            for a in range(lin, lin + n):
                if kind == "r" and 0 <= a < len(image):
                    sparse[a] = int(image[a])
    runs: list[tuple[int, bytes]] = []
    for a in sorted(sparse):
        if runs and runs[-1][0] + len(runs[-1][1]) == a:
            runs[-1] = (runs[-1][0], runs[-1][1] + bytes([sparse[a]]))
        else:
            runs.append((a, bytes([sparse[a]])))
    small = Scenario(sc.mode, dict(sc.regs), list(sc.code), 0, runs, sc.paging)
    try:
        rec = checker.run(small).divergence
    except NotComparable:
        return sc
    if rec is None or [m.field for m in rec.mismatches] != [
            m.field for m in div.record.mismatches]:
        return sc
    return small


def regression_case(checker: Checker, div: Divergence, expected: str,
                    description: str, aero_bug: str | None = None) -> dict:
    """A regression file's content: the scenario and the architecturally correct final
    state, taken from ``expected`` (``aero`` or ``unicorn``) after the diverging step.

    ``aero_bug`` (a short description) marks a case aero gets wrong today; the replay test
    then expects the failure until the core is fixed.
    """
    sc = reduce_memory(checker, div)
    res = checker.run(sc)
    rec = res.divergence or res.steps[-1]
    side = rec.aero if expected == "aero" else rec.ref
    image = sc.image()
    return {
        "description": description,
        "signature": div.signature,
        "expected_from": expected,
        "aero_bug": aero_bug,
        "scenario": sc.to_dict(),
        "steps": rec.index + 1,
        "expected": {
            "regs": {k: side.regs[k] for k in REG_KEYS},
            "exception": side.exception,
            "error_code": side.error_code,
            "cr2": side.cr2,
            "memory": memory_changes(image, side.memory),
            "undefined": {"flags": rec.masks.flags, "regs": rec.masks.regs,
                          "memory": [list(x) for x in rec.masks.memory]},
        },
    }


# ---- command line -------------------------------------------------------------------------------

def _hex(v: int | None) -> str:
    return "-" if v is None else f"{v:#x}"


def print_divergence(console: object, div: Divergence) -> None:
    """Show one divergence: instruction bytes, decoding, and the states side by side."""
    from rich.table import Table

    rec, sc = div.record, div.scenario
    code = " ".join(f"{b:02x}" for b in sc.code[rec.index])
    status = (f"[green]explained: {div.explanation.key}[/green]" if div.explanation
              else "[red]UNEXPLAINED[/red]")
    table = Table(title=f"{sc.mode}  {code}  ({rec.info.text()})  step {rec.index + 1}/"
                        f"{len(sc.code)}  x{div.occurrences}  {status}")
    for col in ("field", "before", "aero", "unicorn"):
        table.add_column(col, justify="left" if col == "field" else "right")
    bad = {m.field for m in rec.mismatches}
    table.add_row("exception", "-", _hex(rec.aero.exception), _hex(rec.ref.exception),
                  style="red" if "exception" in bad else None)
    for k in REG_KEYS:
        table.add_row(k, _hex(rec.before[k]), _hex(rec.aero.regs[k]), _hex(rec.ref.regs[k]),
                      style="red" if k in bad else None)
    for m in rec.mismatches:
        if m.field not in REG_KEYS and m.field != "exception":
            table.add_row(m.field, "", _hex(m.aero), _hex(m.ref), style="red")
    console.print(table)  # type: ignore[attr-defined]
    if len(sc.code) > 1:
        console.print("  sequence: " + " | ".join(c.hex() for c in sc.code))  # type: ignore
    if rec.masks.notes or rec.masks.flags:
        console.print(f"  undefined: flags {rec.masks.flags:#x} {rec.masks.notes}")  # type: ignore


def print_explained(console: object, divs: list[Divergence]) -> None:
    """One line per explained divergence (the known-divergence entry that covers it)."""
    if not divs:
        return
    from rich.table import Table

    table = Table(title="explained divergences (Unicorn deviates: docs/known-divergences.md)")
    for col in ("known divergence", "signature", "bytes", "instruction", "times"):
        table.add_column(col)
    for d in sorted(divs, key=lambda d: (d.explanation.key if d.explanation else "",
                                         d.signature)):
        table.add_row(d.explanation.key if d.explanation else "", d.signature,
                      d.scenario.code[d.record.index].hex(), d.record.info.text(),
                      str(d.occurrences))
    console.print(table)  # type: ignore[attr-defined]


def replay_regression(case: dict) -> list[str]:
    """Run a regression case on aero alone; the differences from its expected final state
    (empty when aero is right). Undefined flags, register bits and memory recorded in the
    case are not compared."""
    sc = Scenario.from_dict(case["scenario"])
    exp = case["expected"]
    aero = AeroCPU()
    image = sc.image()
    aero.load(sc, image)
    res = None
    for _ in range(int(case["steps"])):
        res = aero.step()
        if res.exception is not None:
            break
    assert res is not None
    out: list[str] = []
    if res.exception != exp["exception"]:
        out.append(f"exception: aero {res.exception}, expected {exp['exception']}")
    for k in ("error_code", "cr2"):
        if exp.get(k) is not None and getattr(res, k) != exp[k]:
            out.append(f"{k}: aero {getattr(res, k)}, expected {exp[k]}")
    und = exp.get("undefined", {})
    faulted = exp["exception"] is not None
    for k in REG_KEYS:
        keep = 0xFFFFFFFF
        if not faulted:
            keep &= ~int(und.get("regs", {}).get(k, 0))
            if k == "eflags":
                keep &= ~int(und.get("flags", 0))
        if (res.regs[k] ^ int(exp["regs"][k])) & keep:
            out.append(f"{k}: aero {res.regs[k]:#x}, expected {int(exp['regs'][k]):#x}")
    want = image.copy()
    for addr, data in exp["memory"]:
        want[addr:addr + len(data) // 2] = np.frombuffer(bytes.fromhex(data), dtype=np.uint8)
    got = res.memory.copy()
    if not faulted:
        for lin, n in und.get("memory", []):
            got[lin:lin + n] = want[lin:lin + n]
    for a in np.flatnonzero(got != want)[:16].tolist():
        out.append(f"memory {a:#x}: aero {int(got[a]):#04x}, expected {int(want[a]):#04x}")
    return out


def find_known(checker: Checker, key: str, mode: str, rows: Sequence[object] | None = None,
               seed: int = 0, examples: int = 3000) -> Divergence | None:
    """A shrunk example of the known divergence ``key`` in ``mode`` (None if not found
    within ``examples``), drawn from ``rows`` (default: every comparable row)."""
    import random

    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    from .strategies import scenario, select_rows

    if rows is None:
        rows = select_rows(mode, [c for c in DEFAULT_CLASSES if c != "invalid"])
    strategy = scenario(mode, rows, with_invalid=False)  # type: ignore[arg-type]

    def explained_by_key(sc: Scenario) -> bool:
        try:
            out = checker.check(sc)
        except NotComparable:
            return False
        return out is not None and out[1] is not None and out[1].key == key

    try:
        sc = find(strategy, explained_by_key,
                  settings=settings(max_examples=examples, database=None, deadline=None,
                                    suppress_health_check=list(HealthCheck),
                                    phases=[Phase.generate, Phase.shrink]),
                  random=random.Random(seed))
    except NoSuchExample:
        return None
    out = checker.check(sc)
    assert out is not None
    return Divergence(sc, out[0], signature(mode, out[0]), out[1])


# Where each known divergence is looked for when its regression case is (re)generated:
# the mode and the handlers whose rows the search draws from (a narrow set finds rare
# cases quickly; the matcher decides what counts).
KNOWN_DIVERGENCE_SEARCH: tuple[tuple[str, str, tuple[tuple[int, int | None], ...]], ...] = (
    ("segment-checks", "real", ((0x01, None), (0x8B, None), (0x50, None))),
    ("segment-checks", "pm32", ((0x00, None), (0x89, None), (0x80, 1))),
    ("lock-prefix", "real", ((0x88, None), (0x01, None), (0x40, None))),
    ("lock-prefix", "pm32", ((0x88, None), (0x01, None), (0x40, None))),
    ("test-alias", "real", ((0xF6, 1), (0xF7, 1))),
    ("test-alias", "pm32", ((0xF6, 1), (0xF7, 1))),
    ("icebp", "real", ((0xF1, None),)),
    ("length-limit", "real", ((0x103, None), (0x102, None))),
    ("code-segment-limit", "real", ((0x70, None), (0xEB, None), (0xE8, None), (0xC3, None),
                                    (0xCB, None))),
    ("enter-mixed-sizes", "real", ((0xC8, None),)),
    ("enter-mixed-sizes", "pm32", ((0xC8, None),)),
    ("ret-imm16-sign", "pm32", ((0xC2, None),)),
    ("locked-neg-flags", "pm32", ((0xF6, 3), (0xF7, 3))),
    ("fetch-fault-report", "pm32-paging", ((0x90, None), (0x40, None), (0xB8, None))),
    ("arpl-write", "pm32-paging", ((0x63, None),)),
    ("cmps-operand-order", "pm32-paging", ((0xA6, None), (0xA7, None))),
    ("faulting-rotate-flags", "pm32-paging", ((0xD1, None), (0xD3, None), (0xD2, None))),
    ("ud-operand-read", "pm32-paging", ((0x1BA, 4), (0xFF, 0))),
    ("pusha-order", "pm32-paging", ((0x60, None),)),
    ("push-sreg-width", "pm32-paging", ((0x06, None), (0x1E, None), (0x1A0, None))),
)


def write_known_regressions(directory: Path, seed: int = 1,
                            examples: int = 20000) -> list[Path]:
    """Find, shrink and save one example of every known divergence (see
    :data:`KNOWN_DIVERGENCE_SEARCH`) as ``directory/KEY-MODE.json``, with aero's final
    state (the architecturally correct one, per the evidence of the entry) expected."""
    from .strategies import opcodes

    titles = {k.key: k.title for k in KNOWN_DIVERGENCES}
    checkers = {m: Checker([m]) for m in ("real", "pm32", "pm32-paging")}
    written = []
    for key, mode, keys in KNOWN_DIVERGENCE_SEARCH:
        wanted = set(keys)
        rows = [o for o in opcodes() if o.key in wanted]
        div = find_known(checkers[mode], key, mode, rows, seed=seed, examples=examples)
        if div is None:
            continue
        case = regression_case(
            checkers[mode], div, "aero",
            f"{titles[key]} ({mode}). Unicorn deviates here; the expected state is aero's, "
            f"which follows the evidence in docs/known-divergences.md (entry '{key}').")
        case["known_divergence"] = key
        written.append(write_regression(case, directory, f"{key}-{mode}"))
    return written


def write_regression(case: dict, directory: Path, name: str) -> Path:
    """Write a regression case as ``directory/name.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(case, indent=1, sort_keys=True) + "\n")
    return path
