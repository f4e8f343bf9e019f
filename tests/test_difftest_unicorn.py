"""Instruction-level differential testing against Unicorn: the comparator, the strategies,
the campaign, and the shrunk regressions in tests/regressions/."""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from aero.fuzz.campaign import run_campaign, run_cli
from aero.fuzz.strategies import (
    EXCLUSIONS,
    WORKING_CLASSES,
    class_of,
    excluded_encoding,
    scenarios,
)
from hypothesis import HealthCheck, Phase, given, seed, settings

from aero import isa
from aero.difftest import (
    REG_KEYS,
    AeroCPU,
    Masks,
    NotComparable,
    Scenario,
    StepResult,
    compare_step,
    decode,
    initial_regs,
    run_pair,
    undefined_masks,
)
from aero.difftest.unicorn import KNOWN_DIVERGENCES, UnicornCPU, explain

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))
ALL_CLASSES = ["alu", "data", "stack", "flow", "string", "system", "invalid"]
QUICK = settings(max_examples=150, database=None, deadline=None,
                 suppress_health_check=list(HealthCheck), phases=[Phase.generate])


@cache
def shared_backends() -> tuple[AeroCPU, dict[str, UnicornCPU]]:
    """One aero machine and one Unicorn per mode, reused (each scenario resets them)."""
    return AeroCPU(), {m: UnicornCPU(m) for m in ("real", "pm32")}


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
    assert masks("25ffffffff").flags == 0x10            # AND: AF undefined (isa.py)


# ---- the strategies -----------------------------------------------------------------------

def test_every_handler_has_a_class() -> None:
    for row in isa.INSTRUCTIONS:
        assert class_of(row) in ("alu", "data", "stack", "flow", "string", "system", "io",
                                 "x87")


@seed(20240601)
@QUICK
@given(scenarios(["real", "pm32"], ALL_CLASSES))
def test_generated_encodings_respect_the_rules(sc: Scenario) -> None:
    for code in sc.code:
        info = decode(code, sc.code32)
        assert excluded_encoding(info, sc.mode) is None
        if info.rep:
            assert info.row is not None and "str" in info.row.flags
        assert info.length is None or info.length == len(code)


@seed(20240602)
@settings(max_examples=250, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(scenarios(["real", "pm32"], ALL_CLASSES))
def test_decoders_agree_on_lengths(sc: Scenario) -> None:
    """For the encodings the strategies generate, aero's decoder, Unicorn's and the
    strategies' own decoding agree on the instruction length."""
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
        row = st.info.row
        if (st.aero.exception is None and row is not None and not st.info.rep
                and "branch" not in row.flags and not st.mismatches):
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
    assert run_cli(args) == 0
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
