"""The ``fpu`` class of ``aero fuzz cpu``: x87 state against Unicorn after every
instruction, judged by the exact SDM model (aero/fuzz/x87model.py), and the kept cases of
Unicorn's x87 deviations in tests/regressions/x87/."""

from __future__ import annotations

import json
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
from aero.fuzz import x87
from aero.fuzz import x87model as M
from aero.fuzz.x87 import (
    X87_DIVERGENCES,
    X87Checker,
    X87Scenario,
    explain,
    replay_case,
    run_fpu_campaign,
)

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((Path(__file__).parent / "regressions" / "x87").glob("*.json"))
ONE = M.x80(0, M.BIAS, 1 << 63)


@cache
def checker() -> X87Checker:
    return X87Checker()


def state(*st: int, fcw: int = 0x037F, fsw: int = 0, empty: int | None = None) -> M.State:
    """ST(0), ST(1), ... in the physical registers with TOP = 0."""
    regs = list(st) + [0] * (8 - len(st))
    e = (0xFF << len(st)) & 0xFF if empty is None else empty
    return M.State(regs, fcw, fsw, e)


def scenario(code: str, *st: int, fcw: int = 0x037F, fsw: int = 0, data: bytes = b"",
             empty: int | None = None) -> X87Scenario:
    s = state(*st, fcw=fcw, fsw=fsw, empty=empty)
    return X87Scenario(s.regs, s.empty, fcw, fsw, 2, data.ljust(x87.DATA_SIZE, b"\0"),
                       [bytes.fromhex(c) for c in code.split()])


# ---- the model alone ----------------------------------------------------------------------

def test_model_and_reference_do_not_import_aero() -> None:
    for name in ("x87model.py", "x87trans.py"):
        src = (ROOT / "fuzz" / name).read_text()
        assert "import aero" not in src and "from aero" not in src, name


def test_model_rounds_by_rc_and_pc() -> None:
    third = M.round80(Fraction(1, 3), 64, M.RN, 0x37F)
    assert third.bits == M.x80(0, M.BIAS - 2, 0xAAAAAAAAAAAAAAAB) and third.c1
    assert M.round80(Fraction(1, 3), 64, M.RZ, 0x37F).bits == M.x80(0, M.BIAS - 2,
                                                                      0xAAAAAAAAAAAAAAAA)
    assert M.round80(Fraction(1, 3), 24, M.RN, 0x37F).bits == M.x80(0, M.BIAS - 2,
                                                                      0xAAAAAB << 40)
    # masked overflow: infinity to nearest, the largest finite value toward zero
    big = Fraction(2) ** 16384
    assert M.round80(big, 64, M.RN, 0x37F).bits == M.x80(0, 0x7FFF, 1 << 63)
    assert M.round80(big, 64, M.RZ, 0x37F).bits == M.x80(0, 0x7FFE, (1 << 64) - 1)


def test_model_constants_follow_rc() -> None:
    pi_rn = M.step(state(), bytes.fromhex("d9eb"), None)
    pi_rz = M.step(state(fcw=0x0F7F), bytes.fromhex("d9eb"), None)
    assert pi_rn is not None and pi_rz is not None
    assert pi_rn.state.st(0) == M.x80(0, 0x4000, 0xC90FDAA22168C235)
    assert pi_rz.state.st(0) == M.x80(0, 0x4000, 0xC90FDAA22168C234)


def test_model_stack_underflow_masked_and_unmasked() -> None:
    out = M.step(state(ONE, empty=0xFE & ~1 | 0x02), bytes.fromhex("d8c1"), None)
    assert out is not None
    assert out.state.st(0) == M.INDEFINITE and out.state.fsw & (M.IE | M.SF)
    out = M.step(state(ONE, fcw=0x037E, empty=0x02), bytes.fromhex("d8c1"), None)
    assert out is not None and out.state.st(0) == ONE and out.state.fsw & M.ES


# ---- aero against Unicorn ------------------------------------------------------------------

def test_exact_operations_agree() -> None:
    """1 + 1, 1 / 1 and FSQRT of 1 are exact: aero, Unicorn and the model agree."""
    sc = scenario("d8c0 d8f0 d9fa", ONE)
    assert checker().run(sc) is None


def test_inexact_division_is_an_explained_divergence() -> None:
    """1 / 3: PE and C1 (rounded up) in aero and the model; Unicorn sets neither."""
    three = M.x80(0, M.BIAS + 1, 0xC000000000000000)
    rec = checker().run(scenario("d8f1", ONE, three))
    assert rec is not None and rec.mismatches == ["fsw"]
    assert rec.aero.state.fsw & (M.PE | M.C1) == M.PE | M.C1
    assert explain(rec) == "x87-flags"


def test_unexplained_when_aero_departs_from_the_model() -> None:
    """A divergence where aero's state is not the model's is never explained."""
    three = M.x80(0, M.BIAS + 1, 0xC000000000000000)
    rec = checker().run(scenario("d8f1", ONE, three))
    assert rec is not None
    rec.aero.state.regs[0] ^= 1  # as if aero had rounded the other way
    assert explain(rec) is None


def test_mf_at_the_next_waiting_instruction() -> None:
    """ZE unmasked and pending: aero raises #MF at FADD; Unicorn only at FWAIT."""
    rec = checker().run(scenario("d8c0", ONE, fcw=0x037B, fsw=M.ZE | M.ES | M.B))
    assert rec is not None and rec.aero.vector == M.MF and rec.ref.vector is None
    assert explain(rec) == "x87-mf-only-at-fwait"


def test_transcendental_is_judged_by_the_reference() -> None:
    c = checker()
    before = c.trans_checked
    assert c.run(scenario("d9fe", ONE)) is None  # FSIN 1.0
    assert c.trans_checked == before + 1


def aero_step(sc: X87Scenario) -> M.State:
    a = x87.AeroX87()
    a.load(sc)
    snap = a.step()
    assert snap.vector is None
    return snap.state


MINUS_PI64 = M.x80(1, M.BIAS + 1, 0xC90FDAA22168C235)  # -pi rounded to 64 bits (FLDPI)


@pytest.mark.parametrize(("rc", "want", "c1"), [
    (M.RN, M.x80(1, M.BIAS, 1 << 63), True),
    (M.RD, M.x80(1, M.BIAS, 1 << 63), True),
    (M.RU, M.x80(1, M.BIAS - 1, (1 << 64) - 1), False),
    (M.RZ, M.x80(1, M.BIAS - 1, (1 << 64) - 1), False)])
def test_fcos_just_above_minus_one_rounds_by_rc(rc: int, want: int, c1: bool) -> None:
    """cos(-pi64), reduced with the 66-bit pi, is -1 + 1.5e-39: -1 or the next value up,
    never below -1; C1 tells whether the cosine's magnitude was rounded up."""
    st = aero_step(scenario("d9ff", MINUS_PI64, fcw=0x037F | rc << 10))
    assert st.st(0) == want
    assert bool(st.fsw & M.C1) == c1 and st.fsw & M.PE


@pytest.mark.parametrize(("rc", "want"), [
    (M.RN, 1 << 63), (M.RU, 1 << 63), (M.RD, (1 << 64) - 1), (M.RZ, (1 << 64) - 1)])
def test_fsin_of_a_tiny_argument_is_just_below_it(rc: int, want: int) -> None:
    """sin(2^-70) = 2^-70 (1 - 2^-140 / 6): toward zero and down it is the value below
    (the cubic term is below the 128 bits of the wide sum, yet decides the side)."""
    st = aero_step(scenario("d9fe", M.x80(0, M.BIAS - 70, 1 << 63), fcw=0x037F | rc << 10))
    assert st.st(0) == M.x80(0, M.BIAS - 70 - (want != 1 << 63), want)


def test_transcendental_reference_checks_c1() -> None:
    from aero.fuzz.x87trans import judge

    before = state(MINUS_PI64)
    after = aero_step(scenario("d9ff", MINUS_PI64))
    assert judge(before, after, None, 0xFF) == []
    after.fsw ^= M.C1
    assert judge(before, after, None, 0xFF) == [
        "C1 0, the magnitude was rounded up"]


def test_transcendental_reference_leaves_c1_of_exact_results() -> None:
    """FYL2X of 1/16 and 0.5 is exactly -2 (no rounding, C1 0): the 80-digit reference
    is not exact there, so its side of -2 says nothing about C1."""
    from aero.fuzz.x87trans import judge

    sixteenth, half = M.x80(0, M.BIAS - 4, 1 << 63), M.x80(0, M.BIAS - 1, 1 << 63)
    before = state(sixteenth, half)
    after = aero_step(scenario("d9f1", sixteenth, half))
    assert after.st(0) == M.x80(1, M.BIAS + 1, 1 << 63) and not after.fsw & M.C1
    assert judge(before, after, None, 0xF1) == []


def test_model_memory_snan_is_an_snan_operand() -> None:
    """FMUL m32 with a binary32 SNaN and a QNaN in ST(0) gives the QNaN (table 4-7); FLD
    m32 of the same SNaN quiets it; both raise IE."""
    snan32 = (0x7F800001).to_bytes(4, "little")
    qnan = M.x80(1, 0x7FFF, 0xC000000000000000)
    read = scenario("d84b00", qnan, data=b"\0" * 0x80 + snan32).data
    s = state(qnan)
    s.ebx = x87.EBX
    out = M.step(s, bytes.fromhex("d84b00"), x87._Mem(read))
    assert out is not None and out.state.st(0) == qnan and out.state.fsw & M.IE
    s = state()
    s.ebx = x87.EBX
    out = M.step(s, bytes.fromhex("d94300"), x87._Mem(read))
    assert out is not None and out.state.st(0) == M.x80(0, 0x7FFF, 0xC000010000000000)
    assert out.state.fsw & M.IE


def test_small_seeded_campaign_has_no_unexplained_divergence() -> None:
    res = run_fpu_campaign(150, seed=1, checker=checker(), shrink=False)
    assert res.examples == 150
    bad = [(d.signature, d.record.note, d.scenario.to_dict()) for d in res.unexplained]
    assert not bad, bad
    assert res.explained_count > 0


# ---- the kept cases ------------------------------------------------------------------------

def test_every_deviation_has_a_kept_case() -> None:
    keys = {k for p in CASES for k in json.loads(p.read_text())["known_divergence"].split("+")}
    missing = {k.key for k in X87_DIVERGENCES} - keys
    assert not missing, f"no case in tests/regressions/x87 for {sorted(missing)}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_kept_case(path: Path) -> None:
    """aero reaches the expected (the SDM model's) state; Unicorn still deviates and the
    entry still explains it."""
    case = json.loads(path.read_text())
    diff, _ = replay_case(case)
    assert not diff, diff
    sc = X87Scenario.from_dict(case["scenario"])
    rec = checker().run(sc)
    assert rec is not None and rec.index + 1 == case["steps"]
    assert explain(rec) == case["known_divergence"]


# ---- the command and the documentation -------------------------------------------------------

def test_cli_runs_the_fpu_class(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from aero.cli.fuzz import cmd_fuzz_cpu

    args = argparse.Namespace(examples=30, seed=2, mode="all", json=True, no_progress=True,
                              against="unicorn", classes="fpu", jobs=1)
    assert cmd_fuzz_cpu(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 30 and out["classes"] == ["fpu"] and out["unexplained"] == 0
    assert "transcendentals" in out and "fprem_judged_by_model" in out


def test_fpu_class_cannot_be_mixed() -> None:
    from aero.fuzz.campaign import run_campaign

    with pytest.raises(ValueError):
        run_campaign(5, 1, "pm32", classes=["fpu", "alu"])


def test_x87_divergences_are_documented() -> None:
    doc = (ROOT / "docs" / "known-divergences.md").read_text()
    for k in X87_DIVERGENCES:
        assert f"`{k.key}`" in doc, k.key
