"""Instruction-level differential testing against Unicorn: the comparator, the strategies,
the campaign, and the shrunk regressions in tests/regressions/."""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from aero.fuzz import sdm
from aero.fuzz.campaign import run_campaign
from aero.fuzz.difftest import (
    PD_ADDR,
    PT_ADDR,
    REG_KEYS,
    USER_CODE_SEL,
    USER_DATA_SEL,
    AeroCPU,
    Masks,
    NotComparable,
    Paging,
    Scenario,
    StepResult,
    compare_step,
    decode,
    initial_regs,
    run_pair,
    undefined_masks,
)
from aero.fuzz.strategies import (
    CLASSES,
    EXCLUSIONS,
    WORKING_CLASSES,
    class_of,
    excluded_encoding,
    opcodes,
    scenarios,
    select_rows,
)
from aero.fuzz.unicorn import KNOWN_DIVERGENCES, UnicornCPU, error_code_offset, explain
from hypothesis import HealthCheck, Phase, given, seed, settings

from aero.cli.fuzz import cmd_fuzz_cpu

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))
ALL_CLASSES = ["alu", "data", "stack", "flow", "string", "system", "invalid"]
QUICK = settings(max_examples=150, database=None, deadline=None,
                 suppress_health_check=list(HealthCheck), phases=[Phase.generate])


@cache
def shared_backends() -> tuple[AeroCPU, dict[str, UnicornCPU]]:
    """One aero machine and one Unicorn per mode, reused (each scenario resets them)."""
    return AeroCPU(), {m: UnicornCPU(m) for m in ("real", "pm32", "pm32-paging")}


@pytest.fixture
def backends() -> tuple[AeroCPU, dict[str, UnicornCPU]]:
    return shared_backends()


def real_scenario(code: str, **regs: int) -> Scenario:
    r = initial_regs("real")
    r.update(cs=0x100, ds=0x200, es=0x300, ss=0x400, eip=0x10, esp=0x8000)
    r.update(regs)
    return Scenario("real", r, [bytes.fromhex(c) for c in code.split()], 0)


def pm_scenario(code: str, **regs: int) -> Scenario:
    r = initial_regs("pm32")
    r.update(eip=0x2000, esp=0x8000)
    r.update(regs)
    return Scenario("pm32", r, [bytes.fromhex(c) for c in code.split()], 0)


def paging_scenario(code: str, cpl: int = 0, wp: bool = False, pages: dict[int, int] | None = None,
                    **regs: int) -> Scenario:
    """pm32-paging: code at 0x3000, stack at 0x8000; ``pages`` overrides PTE flags."""
    r = initial_regs("pm32-paging")
    r.update(eip=0x3000, esp=0x8000)
    if cpl == 3:
        r.update({s: USER_DATA_SEL for s in ("es", "ss", "ds", "fs", "gs")}, cs=USER_CODE_SEL)
    r.update(regs)
    ptes = bytearray(Paging().ptes)
    ptes[1] = ptes[2] = 0
    for page, flags in (pages or {}).items():
        ptes[page] = flags
    return Scenario("pm32-paging", r, [bytes.fromhex(c) for c in code.split()], 0,
                    paging=Paging(cpl, wp, False, False, 7, bytes(ptes)))


# ---- regressions ---------------------------------------------------------------------------

def test_regressions_exist() -> None:
    assert REGRESSIONS, "tests/regressions/ holds the shrunk counterexamples"


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression(path: Path) -> None:
    """aero reaches the architecturally correct final state of every saved case."""
    from aero.fuzz.campaign import replay_regression

    case = json.loads(path.read_text())
    if case.get("aero_bug"):
        pytest.xfail(f"open aero bug: {case['aero_bug']}")
    assert replay_regression(case) == []


def test_regression_replay_can_fail() -> None:
    """The replay compares something: a corrupted expectation is reported."""
    from aero.fuzz.campaign import replay_regression

    case = json.loads(REGRESSIONS[0].read_text())
    case["expected"]["regs"]["eax"] ^= 0x10
    case["expected"]["exception"] = 99
    problems = replay_regression(case)
    assert any(p.startswith("exception") for p in problems)


# ---- the comparator -----------------------------------------------------------------------

def _result(regs: dict[str, int], memory: np.ndarray, exception: int | None = None) -> StepResult:
    return StepResult(dict(regs), exception, memory)


def test_comparator_detects_differences() -> None:
    regs = {k: 0 for k in REG_KEYS} | {"eflags": 0x2}
    mem = np.zeros(4096, dtype=np.uint8)
    same = compare_step(_result(regs, mem), _result(regs, mem.copy()), Masks())
    assert same == []
    other = dict(regs, eflags=0x3)
    assert [m.field for m in compare_step(_result(regs, mem), _result(other, mem), Masks())] \
        == ["eflags"]
    # An undefined flag is not compared, a defined one is.
    assert compare_step(_result(regs, mem), _result(other, mem), Masks(flags=0x1)) == []
    mem2 = mem.copy()
    mem2[0x123] = 7
    diff = compare_step(_result(regs, mem), _result(regs, mem2), Masks())
    assert [m.field for m in diff] == ["mem:0x123"]
    assert compare_step(_result(regs, mem), _result(regs, mem2), Masks(memory=[(0x120, 4)])) \
        == []
    exc = compare_step(_result(regs, mem, 13), _result(regs, mem, None), Masks())
    assert [m.field for m in exc] == ["exception"]
    # After an exception nothing is undefined: masks no longer apply.
    assert compare_step(_result(regs, mem, 6), _result(other, mem, 6), Masks(flags=0x1)) != []


class _Lying:
    """A reference backend that corrupts one register bit after every instruction."""

    def __init__(self, inner: UnicornCPU) -> None:
        self.inner = inner

    def load(self, scenario: Scenario, image: np.ndarray) -> None:
        self.inner.load(scenario, image)

    def step(self) -> StepResult:
        res = self.inner.step()
        res.regs["ebx"] ^= 0x100
        return res

    def adopt(self, regs: dict[str, int], memory: list[tuple[int, bytes]]) -> None:
        self.inner.adopt(regs, memory)


def test_run_pair_detects_a_deliberately_different_state(backends) -> None:
    aero, refs = backends
    sc = real_scenario("01d8", eax=5, ebx=7)
    assert run_pair(sc, aero, refs["real"]).divergence is None
    rec = run_pair(sc, aero, _Lying(refs["real"])).divergence
    assert rec is not None and [m.field for m in rec.mismatches] == ["ebx"]
    assert explain(rec) is None


def test_undefined_flags_resynchronised(backends) -> None:
    """An undefined flag left different by one instruction is not reported later."""
    aero, refs = backends
    res = run_pair(pm_scenario("0fbcc3 0fc8 9c", ebx=0), aero, refs["pm32"])
    assert len(res.steps) == 3 and res.divergence is None


def test_masks_follow_the_sdm() -> None:
    regs = {k: 0 for k in REG_KEYS} | {"ecx": 0}

    def masks(code: str, code32: bool = True, **r: int) -> Masks:
        info = decode(bytes.fromhex(code), code32)
        return undefined_masks(info, regs | r, lambda s: 0, lambda a, n: bytes(n))

    assert masks("d3e0", ecx=0).flags == 0              # SHL by 0: nothing changes
    assert masks("d3e0", ecx=1).flags == 0x10           # count 1: AF only
    assert masks("d3e0", ecx=2).flags == 0x810          # OF and AF
    assert masks("c0e008").flags == 0x811               # SHL r8 by 8: CF too
    assert masks("c0f808").flags == 0x810               # SAR keeps CF defined
    assert masks("d3c0", ecx=33).flags == 0             # ROL by 1 (masked): all defined
    assert masks("0fbcc3").regs == {"eax": 0xFFFFFFFF}  # BSF with a zero source
    assert masks("660fc8").regs == {"eax": 0xFFFF}      # BSWAP r16
    m = masks("660fa4c311")                             # SHLD r16 by 17
    assert m.flags == 0x8D5 and m.regs == {"ebx": 0xFFFF}
    assert masks("81c000000000").flags == 0             # ADD: everything defined
    assert masks("25ffffffff").flags == 0x10            # AND: AF undefined (SDM model)


# ---- the strategies -----------------------------------------------------------------------

def test_generation_covers_the_sdm_opcode_map() -> None:
    """Every defined opcode of the SDM model's maps has a class and is drawn from, unless an
    exclusion names it; the generator does not read aero's instruction table."""
    ops = opcodes()
    assert all(class_of(o.key) in CLASSES for o in ops)
    keys = {o.key for o in ops}
    # One-byte and two-byte opcodes aero's table may or may not have, all in the map.
    assert {(0x01, None), (0xF6, 1), (0x133, None), (0x1C8, None), (0x1BA, 4)} <= keys
    assert (0xFE, 2) not in keys and (0x10B, None) not in keys  # #UD: the invalid class
    compared = {o.key for o in select_rows("real", CLASSES)}
    assert (0xF4, None) not in compared and (0xD8, None) not in compared  # HLT, x87
    assert (0x133, None) not in compared  # RDPMC: model-specific counters
    src = (ROOT / "fuzz" / "strategies.py").read_text()
    assert "aero.isa" not in src.replace(":mod:`aero.isa`", "") and "import isa" not in src
    assert "difftest import" not in src or "decode," not in src


def test_opcode_families_weigh_as_one() -> None:
    ops = {o.key: o for o in opcodes()}
    assert ops[(0x40, None)].family == 8 and (0x41, None) not in ops
    assert ops[(0x180, None)].family == 16 and ops[(0x91, None)].family == 7


@seed(20240601)
@QUICK
@given(scenarios(["real", "pm32"], ALL_CLASSES))
def test_generated_encodings_respect_the_rules(sc: Scenario) -> None:
    for code in sc.code:
        info = decode(code, sc.code32)
        assert excluded_encoding(info, sc.mode) is None
        assert info.length is None or info.length == len(code)


@seed(20240604)
@settings(max_examples=400, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(scenarios(["real"], ALL_CLASSES))
def test_prefixes_come_from_the_whole_encoding_space(sc: Scenario) -> None:
    """LOCK and REP are not limited to the instructions the SDM lets take them."""
    for code in sc.code:
        d = sdm.decode(code, sc.code32)
        if d.lock and d.defined and d.key not in sdm.LOCKABLE:
            _SEEN.add("lock")
        if d.rep and d.defined and d.opcode not in sdm.STRING_OPS:
            _SEEN.add("rep")


_SEEN: set[str] = set()


def test_prefixes_seen_outside_the_table_flags() -> None:
    test_prefixes_come_from_the_whole_encoding_space()
    assert _SEEN == {"lock", "rep"}


@seed(20240602)
@settings(max_examples=250, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(scenarios(["real", "pm32"], ALL_CLASSES))
def test_decoders_agree_on_lengths(sc: Scenario) -> None:
    """For the encodings the strategies generate, the SDM model's length agrees with
    Unicorn's decoder and with how far aero advances EIP."""
    aero, refs = shared_backends()
    ref = refs[sc.mode]
    try:
        res = run_pair(sc, aero, ref)
    except NotComparable:
        return
    for st in res.steps:
        own = st.info.length
        if st.ref.length is not None and st.ref.exception is None and own is not None:
            assert st.ref.length == own, (sc.code[st.index].hex(), st.ref.length, own)
        d = sdm.decode(sc.code[st.index], sc.code32)
        if (st.aero.exception is None and d.defined and not st.info.rep
                and class_of(d.key if d.opcode in sdm.GROUPS else (d.opcode, None)) != "flow"
                and not st.mismatches):
            advance = (st.aero.regs["eip"] - st.before["eip"]) & 0xFFFFFFFF
            assert advance == own, (sc.code[st.index].hex(), advance, own)


@seed(20240603)
@QUICK
@given(scenarios(["real", "pm32"], ALL_CLASSES))
def test_unicorn_memory_shadow_is_exact(sc: Scenario) -> None:
    """The write-hook copy of Unicorn's memory equals its RAM read back."""
    aero, refs = shared_backends()
    ref = refs[sc.mode]
    try:
        run_pair(sc, aero, ref)
    except NotComparable:
        return
    assert np.array_equal(ref.read_all(), ref.memory())


# ---- the Unicorn backend ------------------------------------------------------------------

@pytest.mark.parametrize("code, regs, vector", [
    ("f6f3", {"eax": 5, "ebx": 0}, 0),   # DIV by zero: #DE, nothing changes
    ("0f0b", {}, 6),                     # UD2
    ("cd21", {}, 0x21),                  # INT 21h: reported, not delivered
    ("cd01", {}, 1),                     # INT 1: a software interrupt, not a trap
    ("cd06", {}, 6),                     # INT 6: not an invalid instruction
    ("8ed0", {"eax": 0x18}, None),       # real mode: any selector loads
])
def test_real_mode_exceptions_agree(backends, code, regs, vector) -> None:
    aero, refs = backends
    res = run_pair(real_scenario(code, **regs), aero, refs["real"])
    assert res.divergence is None
    assert res.steps[0].aero.exception == vector


def test_single_step_trap_is_taken_at_the_next_boundary(backends) -> None:
    """POPF sets TF; the instruction after it runs, then both report #DB."""
    aero, refs = backends
    res = run_pair(real_scenario("680201 9d 40 40"), aero, refs["real"])
    assert res.divergence is None
    assert [st.aero.exception for st in res.steps] == [None, None, None, 1]
    assert res.steps[-1].aero.regs["eip"] == 0x10 + 3 + 1 + 1


def test_protected_mode_faults_are_not_promoted(backends) -> None:
    """Two faults in a row stay #GP (Unicorn's context is restored between scenarios)."""
    aero, refs = backends
    for code, eax in (("8ed8", 0x18), ("8ed0", 0)):
        res = run_pair(pm_scenario(code, eax=eax), aero, refs["pm32"])
        assert res.divergence is None and res.steps[0].ref.exception == 13


def test_rep_iterations_and_self_modifying_code(backends) -> None:
    aero, refs = backends
    res = run_pair(pm_scenario("f3a4 f3a4 f3a4 40", ecx=2, esi=0x5000, edi=0x6000), aero,
                   refs["pm32"])
    assert res.divergence is None and len(res.steps) == 1
    # RCL of a dword in the same page as the code, past the instruction: comparable.
    res = run_pair(pm_scenario("d11580200000 40404040", eflags=3), aero, refs["pm32"])
    assert res.divergence is None
    # An instruction that rewrites itself cannot be single-stepped by Unicorn.
    with pytest.raises(NotComparable):
        from aero.fuzz.campaign import Checker

        c = Checker(["pm32"])
        c.check(pm_scenario("d11500200000"))


# ---- protected mode with paging ------------------------------------------------------------

def test_error_codes_can_be_read_from_unicorn() -> None:
    assert error_code_offset() is not None


@pytest.mark.parametrize("code, cpl, wp, flags, vector, err", [
    ("8903", 3, False, 0x05, 14, 7),     # user write to a read-only page: P|W|U
    ("8b03", 3, False, 0x03, 14, 5),     # user read of a supervisor page: P|U
    ("8b03", 0, False, 0x00, 14, 0),     # supervisor read, not present
    ("8903", 0, True, 0x05, 14, 3),      # CR0.WP: supervisor write to a read-only page
    ("8903", 0, False, 0x05, None, None),  # WP clear: the write succeeds
    ("1003", 0, True, 0x05, 14, 3),      # ADC to a read-only page: #PF, EFLAGS intact
])
def test_page_faults_agree(backends, code, cpl, wp, flags, vector, err) -> None:
    aero, refs = backends
    sc = paging_scenario(code, cpl, wp, {0x50: flags}, ebx=0x50010, eax=0x1234,
                         eflags=0x2 | 0x41)
    res = run_pair(sc, aero, refs["pm32-paging"])
    assert res.divergence is None
    st = res.steps[0]
    assert st.aero.exception == vector and st.ref.exception == vector
    if vector is not None:
        assert st.aero.error_code == st.ref.error_code == err
        assert st.aero.cr2 == st.ref.cr2 == 0x50010
        assert st.aero.regs["eflags"] == 0x43
    assert st.aero.regs["cs"] == (USER_CODE_SEL if cpl == 3 else 0x08)


def test_accessed_and_dirty_bits_are_compared(backends) -> None:
    """A store sets A and D in the PTE (and A in the PDE) on both sides; a corrupted
    dirty bit is reported as a memory difference."""
    aero, refs = backends
    sc = paging_scenario("8903", ebx=0x50010)
    res = run_pair(sc, aero, refs["pm32-paging"])
    assert res.divergence is None
    mem = res.steps[0].aero.memory
    assert mem[PT_ADDR + 0x50 * 4] == 0x67 and mem[PD_ADDR] & 0x20
    ref = res.steps[0].ref
    other = ref.memory.copy()
    other[PT_ADDR + 0x50 * 4] = 0x27
    diff = compare_step(res.steps[0].aero, StepResult(ref.regs, None, other), Masks())
    assert [m.field for m in diff] == [f"mem:{PT_ADDR + 0x50 * 4:#x}"]


def test_fetch_faults_are_explained(backends) -> None:
    """Code in a supervisor page at CPL 3: aero reports #PF(P|U) at the first byte, Unicorn
    another byte and code 0 (known divergence fetch-fault-report)."""
    aero, refs = backends
    res = run_pair(paging_scenario("b801000000", 3, pages={3: 0x03}), aero,
                   refs["pm32-paging"])
    rec = res.divergence
    assert rec is not None and rec.aero.exception == 14
    assert (rec.aero.error_code, rec.aero.cr2) == (5, 0x3000)
    known = explain(rec)
    assert known is not None and known.key == "fetch-fault-report"


def test_block_decoding_does_not_touch_the_next_page(backends) -> None:
    """An instruction near a page end followed by one that straddles into a not-present
    page: decoding ahead must not raise that page's #PF for the first instruction."""
    aero, refs = backends
    sc = paging_scenario("40", pages={4: 0x00}, eip=0x3FF0)
    sc.memory = [(0x3FF1, bytes([0x90]) * 14 + b"\xb8")]  # NOPs, then MOV EAX across
    res = run_pair(sc, aero, refs["pm32-paging"])
    assert res.divergence is None and res.steps[0].aero.exception is None


@seed(20240604)
@QUICK
@given(scenarios(["pm32-paging"], ALL_CLASSES))
def test_paging_scenarios_follow_their_invariants(sc: Scenario) -> None:
    pg = sc.paging
    assert pg is not None and sc.regs["eip"] >= 0x3000
    assert pg.ptes[1] == pg.ptes[2] == 0
    assert (sc.regs["cs"] & 3) == pg.cpl and (sc.regs["ss"] & 3) == pg.cpl
    assert not pg.large or pg.pse
    assert Scenario.from_dict(sc.to_dict()) == sc
    for code in sc.code:
        assert excluded_encoding(decode(code, True), sc.mode) is None


def test_short_paging_campaign() -> None:
    result = run_campaign(200, 5, "pm32-paging")
    assert result.examples == 200
    assert [d.signature for d in result.unexplained] == []


def test_paging_campaign_is_deterministic() -> None:
    """Unicorn's TLB and translations are flushed per scenario: same seed, same record."""
    a = run_campaign(100, 7, "pm32-paging").to_dict()
    b = run_campaign(100, 7, "pm32-paging").to_dict()
    a.pop("elapsed_seconds")
    b.pop("elapsed_seconds")
    assert a == b


# ---- campaigns ----------------------------------------------------------------------------

def test_short_campaign_on_the_working_classes() -> None:
    result = run_campaign(300, 1234, "all", classes=WORKING_CLASSES)
    assert result.examples == 300
    assert [d.signature for d in result.unexplained] == []


def test_short_campaign_on_every_class() -> None:
    result = run_campaign(300, 99, "all")
    assert result.examples == 300
    assert [d.signature for d in result.unexplained] == []


def test_campaign_is_deterministic() -> None:
    # The system class includes RDTSC, whose Unicorn values carry host time.
    a = run_campaign(200, 7, "real", classes=("alu", "system")).to_dict()
    b = run_campaign(200, 7, "real", classes=("alu", "system")).to_dict()
    a.pop("elapsed_seconds")
    b.pop("elapsed_seconds")
    assert a == b


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(examples=60, seed=3, mode="pm32", json=True, no_progress=True,
                              against="unicorn", classes="alu,data")
    assert cmd_fuzz_cpu(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 60 and isinstance(out["divergences"], list)
    for d in out["divergences"]:
        assert {"bytes", "mode", "initial", "aero", "unicorn", "explained"} <= set(d)


# ---- documentation ------------------------------------------------------------------------

def test_known_divergences_and_exclusions_are_documented() -> None:
    doc = (ROOT / "docs" / "known-divergences.md").read_text()
    for k in KNOWN_DIVERGENCES:
        assert f"`{k.key}`" in doc, k.key
    for e in EXCLUSIONS:
        assert f"`{e.key}`" in doc, e.key


def test_an_unreported_exception_does_not_make_the_next_one_a_double_fault() -> None:
    """QEMU remembers an undelivered #PF (``old_exception``); a second #PF then becomes #DF.
    ``forget_exception`` clears it, as the backend does when it drops the #PF that QEMU
    raised while fetching the next instruction's code."""
    from aero.fuzz.unicorn import forget_exception, old_exception_offset
    from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
    from unicorn import x86_const as X

    assert old_exception_offset() is not None
    vectors: list[int] = []

    def run(forget: bool) -> int:
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x10000)
        uc.hook_add(UC_HOOK_INTR, lambda u, n, _d: (vectors.append(n), u.emu_stop()))
        uc.mem_write(0x1000, (0x2000 | 7).to_bytes(4, "little") + bytes(4092))
        uc.mem_write(0x2000, b"".join(((i << 12) | (7 if i != 8 else 0)).to_bytes(4, "little")
                                      for i in range(1024)))
        uc.mem_write(0x4000, b"\x8b\x03\x8b\x03")  # MOV EAX,[EBX] twice; page 8 absent
        uc.reg_write(X.UC_X86_REG_EBX, 0x8000)
        uc.reg_write(X.UC_X86_REG_ESP, 0x6000)
        uc.reg_write(X.UC_X86_REG_CR3, 0x1000)
        uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
        vectors.clear()
        uc.emu_start(0x4000, 0x4002)
        if forget:
            forget_exception(uc)
        uc.emu_start(0x4000, 0x4002)
        return vectors[-1]

    assert run(forget=False) == 8   # QEMU's double fault: the harness must not see this
    assert run(forget=True) == 14
