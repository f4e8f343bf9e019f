"""QEMU as an instruction-level reference (aero.fuzz.qemu_cpu): state after every
instruction, exceptions through the IDT, the hidden state, process hygiene."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from aero.fuzz.difftest import (
    PD_ADDR,
    PT_ADDR,
    USER_CODE_SEL,
    USER_DATA_SEL,
    AeroCPU,
    NotComparable,
    Paging,
    Scenario,
    initial_regs,
    run_pair,
)
from aero.fuzz.qemu_cpu import QemuCPU, QemuMachine, QemuUnavailable, check_qemu, explain
from procenv import assert_gone

pytestmark = pytest.mark.skipif(subprocess.run(["which", "qemu-system-i386"],
                                               capture_output=True).returncode != 0,
                                reason="qemu-system-i386 is not installed")


@pytest.fixture(scope="module")
def machine():
    m = QemuMachine()
    yield m
    pid = m.proc.pid if m.proc else None
    m.close()
    if pid is not None:
        assert_gone(pid)


@pytest.fixture(scope="module")
def aero() -> AeroCPU:
    return AeroCPU()


def real(code: str, **regs: int) -> Scenario:
    r = initial_regs("real")
    r.update(cs=0x100, ds=0x200, es=0x300, ss=0x400, eip=0x10, esp=0x8000)
    r.update(regs)
    return Scenario("real", r, [bytes.fromhex(c) for c in code.split()], 0)


def pm(code: str, fill: int = 7, memory: list | None = None, **regs: int) -> Scenario:
    r = initial_regs("pm32")
    r.update(eip=0x5000, esp=0x9000)
    r.update(regs)
    return Scenario("pm32", r, [bytes.fromhex(c) for c in code.split()], fill, memory or [])


def paging(code: str, cpl: int = 0, wp: bool = False, pages: dict[int, int] | None = None,
           **regs: int) -> Scenario:
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


def test_sequences_agree_instruction_by_instruction(machine, aero) -> None:
    for sc in (real("b83412 01d8 50 8b0e0010", ebx=5),
               pm("b834120000 01d8 50 8b0d00100000 0fafc3", ebx=7),
               paging("b834120000 50 8b0d00500000 891d00600000", ebx=9)):
        res = run_pair(sc, aero, QemuCPU(sc.mode, machine))
        assert res.divergence is None, res.divergence
        assert len(res.steps) == len(sc.code)
        assert res.steps[-1].ref.regs["eip"] == sc.regs["eip"] + sum(map(len, sc.code))


def test_a_difference_is_reported(machine, aero) -> None:
    """The comparison is live: QEMU's memory changed behind its back shows up."""
    sc = pm("8b0d00100000")
    q = QemuCPU("pm32", machine)
    orig = q._load

    def corrupt(scenario: Scenario, image: np.ndarray) -> None:
        orig(scenario, image)
        machine.ram[0x1000] ^= 0xFF

    q._load = corrupt  # type: ignore[method-assign]
    rec = run_pair(sc, aero, q).divergence
    assert rec is not None
    assert {m.field for m in rec.mismatches} >= {"ecx"}


@pytest.mark.parametrize("sc, vector, err", [
    (real("31c0 f7f0"), 0, None),                # #DE in real mode (through the IVT)
    (pm("31c0 f7f0"), 0, None),                  # #DE in protected mode (through the IDT)
    (pm("cc"), 3, None),                         # a trap: INT3
    (pm("0f0b"), 6, None),                       # UD2
    (pm("8ed8", eax=0x50), 13, 0x50),            # #GP(selector) with an error code
])
def test_exceptions_are_identified(machine, aero, sc, vector, err) -> None:
    res = run_pair(sc, aero, QemuCPU(sc.mode, machine))
    assert res.divergence is None, res.divergence
    st = res.steps[-1]
    assert st.aero.exception == st.ref.exception == vector
    assert st.ref.error_code == err
    # The state before delivery: the frame on the scenario's stack was put back.
    assert st.ref.regs["esp"] == sc.regs["esp"]
    assert st.ref.regs["cs"] == sc.regs["cs"]


@pytest.mark.parametrize("code, cpl, wp, flags, err", [
    ("8903", 3, False, 0x05, 7),     # user write to a read-only page: P|W|U
    ("8b03", 3, False, 0x03, 5),     # user read of a supervisor page: P|U
    ("8b03", 0, False, 0x00, 0),     # supervisor read, not present
    ("8903", 0, True, 0x05, 3),      # CR0.WP: supervisor write to a read-only page
])
def test_page_faults_agree(machine, aero, code, cpl, wp, flags, err) -> None:
    sc = paging(code, cpl, wp, {0x50: flags}, ebx=0x50010, eax=0x1234, eflags=0x43)
    res = run_pair(sc, aero, QemuCPU("pm32-paging", machine))
    assert res.divergence is None, res.divergence
    st = res.steps[0]
    assert st.aero.exception == st.ref.exception == 14
    assert st.aero.error_code == st.ref.error_code == err
    assert st.aero.cr2 == st.ref.cr2 == 0x50010
    assert st.ref.regs["cs"] == (USER_CODE_SEL if cpl == 3 else 0x08)
    assert st.ref.regs["ss"] == (USER_DATA_SEL if cpl == 3 else 0x10)


def test_accessed_and_dirty_bits_are_compared(machine, aero) -> None:
    res = run_pair(paging("8903", ebx=0x50010), aero, QemuCPU("pm32-paging", machine))
    assert res.divergence is None
    mem = res.steps[0].ref.memory
    assert mem[PT_ADDR + 0x50 * 4] == 0x67 and mem[PD_ADDR] & 0x20
    # This backend's page-directory entry 1 is shown as the scenario has it.
    assert not mem[PD_ADDR + 4:PD_ADDR + 8].any()


class BuggyAero(AeroCPU):
    """aero with a segment-cache bug injected after instruction ``at`` (0-based)."""

    def __init__(self, at: int, bug) -> None:
        super().__init__()
        self.at, self.bug, self.n = at, bug, 0

    def load(self, scenario: Scenario, image: np.ndarray) -> None:
        super().load(scenario, image)
        self.n = 0

    def step(self):
        res = super().step()
        if self.n == self.at:
            r = self.machine.get_regs()
            self.bug(r)
            self.machine.set_regs(r)
            res.regs = self.regs()
        self.n += 1
        return res


def _byte_granular(r) -> None:
    """A descriptor load that ignores G: limit FFFFFh instead of FFFFFFFFh."""
    from aero.machine import Segment

    r.es = Segment(r.es.selector, r.es.base, 0xFFFFF, r.es.attr)


def _accessed_clear(r) -> None:
    """A descriptor load that leaves the cache's accessed bit clear."""
    from aero.machine import Segment

    r.ds = Segment(r.ds.selector, r.ds.base, r.ds.limit, r.ds.attr & ~1)


@pytest.mark.parametrize("at,bug,field", [
    (1, _byte_granular, "es.limit"),   # at the MOV ES that loads the cache
    (1, _accessed_clear, "ds.attr"),
    (0, _byte_granular, "es.limit"),   # an ADD that must not touch ES: still at the ADD
])
def test_hidden_state_is_compared_at_the_instruction(machine, at, bug, field) -> None:
    """Descriptor caches and control registers (QMP) after the instruction that loads a
    segment register, and after any instruction where aero's changed: an injected cache
    bug is reported at the instruction that makes it."""
    sc = pm("01d8 8ec0 8ed8 90 90", eax=0x10, ebx=0)
    q = QemuCPU("pm32", machine)
    assert run_pair(sc, AeroCPU(), q).divergence is None
    reads = q.hidden_reads
    assert reads == 2  # after MOV ES and MOV DS; not after ADD or the NOPs
    buggy = BuggyAero(at, bug if at else _byte_granular)
    if at == 0:
        sc = pm("01d8 90 90", eax=0x10, ebx=0)
    rec = run_pair(sc, buggy, q).divergence
    assert rec is not None and rec.index == at
    assert [m.field for m in rec.mismatches] == [field]


def test_hidden_state_is_compared_after_the_last_instruction(machine, aero) -> None:
    """after_pair reads the state once more when the last instruction did not."""
    sc = pm("b810000000 90", eax=0x10)
    q = QemuCPU("pm32", machine)
    res = run_pair(sc, aero, q)
    q.after_pair(res, aero)
    assert res.divergence is None and q.hidden_reads == 1
    from aero.machine import Segment

    res = run_pair(sc, aero, q)
    r = aero.machine.get_regs()
    r.es = Segment(r.es.selector, 0x1000, r.es.limit, r.es.attr)
    aero.machine.set_regs(r)
    q.after_pair(res, aero)
    assert res.divergence is not None
    assert [m.field for m in res.divergence.mismatches] == ["es.base"]


def test_hidden_state_every_step_matches_the_selection(machine, aero, monkeypatch) -> None:
    """With HIDDEN_EVERY_STEP the state is read after every instruction, with the same
    verdicts."""
    from aero.fuzz import qemu_cpu

    monkeypatch.setattr(qemu_cpu, "HIDDEN_EVERY_STEP", True)
    sc = pm("01d8 8ec0 8ed8 90 90", eax=0x10, ebx=0)
    q = QemuCPU("pm32", machine)
    assert run_pair(sc, aero, q).divergence is None
    assert q.hidden_reads == 5
    rec = run_pair(sc, BuggyAero(1, _byte_granular), q).divergence
    assert rec is not None and rec.index == 1


def test_descriptor_table_instructions_show_the_scenario_tables(machine, aero) -> None:
    """LGDT, LIDT, SIDT and STR are compared: QEMU keeps delivering exceptions through
    this backend's IDT, and SIDT/STR show the scenario's IDTR base and TR."""
    for sc in (
            # LIDT (32-bit), then a #UD delivered through this backend's IDT
            pm("0f011d00600000 0f0b", fill=9),
            # LIDT with a 16-bit operand (24-bit base), SIDT after it
            pm("660f011d00600000 0f010d00700000", fill=9),
            # LGDT (the same flat descriptors at another place), then a selector load
            pm("0f011500600000 8ed8", fill=0, eax=0x10),
            # SIDT, STR to memory and to a register, SLDT
            pm("0f010d00700000 0f000d00710000 0f00c8 0f00c1"),
            real("0f011e0010 0f0b"),
            real("0f010e0020 0f00c8")):
        if sc.code[0].startswith(b"\x0f\x01\x15"):
            gdt = bytes(8) + bytes.fromhex("ffff0000009bcf00ffff00000093cf00")
            sc.memory = [(0x6000, (len(gdt) - 1).to_bytes(2, "little")
                          + (0x6100).to_bytes(4, "little")), (0x6100, gdt)]
        q = QemuCPU(sc.mode, machine)
        res = run_pair(sc, aero, q)
        q.after_pair(res, aero)
        assert res.divergence is None, (sc.code, res.divergence)
        assert len(res.steps) == len(sc.code)


def _user_on_supervisor_directory() -> Scenario:
    """CPL 3 under a page-directory entry without U: every user access faults, and the
    #PF's delivery reads the GDT (page 0) at CPL 0."""
    sc = paging("2626f0f26626672000 00c0", cpl=3, esp=0)
    assert sc.paging is not None
    sc.paging = Paging(3, False, False, False, 3, sc.paging.ptes)
    return sc


def _too_long_on_a_large_page() -> Scenario:
    """A 16-byte LOCK SAR m8 (#GP before any access) under a 4 MB page: the #GP's frame
    sets the page's dirty bit, the instruction's write never happened."""
    sc = paging("1f 2626e000 66266626f32666666667f026d2b80000", esp=0x10000)
    assert sc.paging is not None
    sc.paging = Paging(0, False, True, True, 7, sc.paging.ptes)
    return sc


def _reserved_sreg_on_a_large_page() -> Scenario:
    sc = paging("f8 8c30 50", esp=0x10000, eax=0x10000)
    assert sc.paging is not None
    sc.paging = Paging(0, False, True, True, 7, sc.paging.ptes)
    return sc


@pytest.mark.parametrize("make", [
    lambda: paging("53", esp=0x10000, pages={3: 0}),   # the fetch faults; push not done
    _user_on_supervisor_directory,                      # a read-protection fault
    _too_long_on_a_large_page,
    # CPL 3 SETcc to a supervisor page (#PF 7): the write faults for want of U, as any
    # access would; the delivery's GDT read (page 0) set the accessed bit
    lambda: paging("670f9c00 0f04", cpl=3, esp=0, pages={0: 3}),
    # the same to a read-only user page: a write-protection fault, but SETcc reads nothing
    lambda: paging("670f9c00 0f04", cpl=3, esp=0, pages={0: 5}),
    # INVLPG at CPL 3: #GP(0) before its operand (on the GDT's page) is touched
    lambda: paging("66670f0138 0f04", cpl=3, esp=0),
    # MOV m16, Sreg 6 (no such register): #UD; the frame's push dirties the 4 MB page
    _reserved_sreg_on_a_large_page,
])
def test_accessed_bits_of_a_faulting_walk_are_the_delivery_s(machine, aero, make) -> None:
    """Entries of the faulting page that only the exception's delivery used (its frame,
    its GDT read) are put back: the faulting walk sets no accessed bit on either side."""
    sc = make()
    res = run_pair(sc, aero, QemuCPU(sc.mode, machine))
    assert res.steps[-1].aero.exception in (6, 13, 14)
    assert res.steps[-1].ref.exception == res.steps[-1].aero.exception
    assert res.divergence is None, res.divergence.mismatches


def test_pause_is_one_step(machine, aero) -> None:
    """QEMU's single step runs on past PAUSE (F3 90); the backend stops after it."""
    for sc in (pm("f390 90", fill=0), pm("f390", fill=0, eflags=0x202), real("f390 90")):
        res = run_pair(sc, aero, QemuCPU(sc.mode, machine))
        assert res.divergence is None, res.divergence
        assert len(res.steps) == len(sc.code)


def test_single_step_trap_is_reported_at_the_next_boundary(machine, aero) -> None:
    """POPF sets TF; the trap after the next instruction (MOV DI) is delivered by QEMU
    within that step and reported, as aero takes it, at the next instruction boundary."""
    sc = real("58 9d bf0000 00c0", esp=0xF)
    sc.regs.update(cs=0, ds=0, es=0, ss=0, eip=0)
    sc.memory = [(0xF, bytes.fromhex("00000301"))]  # AX = 0, FLAGS = 0103h (TF, CF)
    res = run_pair(sc, aero, QemuCPU("real", machine))
    assert res.divergence is None, res.divergence.mismatches
    assert [s.ref.exception for s in res.steps] == [None, None, None, 1]
    assert res.steps[-1].ref.regs["eip"] == 5  # after MOV DI: the trap is a trap


@pytest.mark.parametrize("make", [
    # POPF sets TF; the trap after the second POPF pushes its frame where ESP now is
    lambda: pm("9d 9d 90", fill=0, esp=0x10000, memory=[(0x10000, bytes.fromhex("03010000"))]),
    # TF already set: the PUSH's bytes stay, the trap frame below them is put back
    lambda: pm("50 90", fill=0, eflags=0x102, eax=0x11223344, esp=0x10000),
    lambda: paging("50 90", eflags=0x102, eax=0x11223344, esp=0x10000),
])
def test_single_step_trap_frames_are_put_back(machine, aero, make) -> None:
    sc = make()
    res = run_pair(sc, aero, QemuCPU(sc.mode, machine))
    assert res.divergence is None, res.divergence.mismatches
    assert res.steps[-1].ref.exception == 1


def test_reads_beyond_ram_are_refused(machine, aero) -> None:
    """A read QEMU would serve from its larger RAM (XLAT, POPF, RET beyond RAM) is not
    comparable; a push there is (the write is lost on both sides)."""
    for code, regs in (("d7", {"ebx": 0xFFFFFFFF}), ("9d", {"esp": 0x200000}),
                       ("c3", {"esp": 0x200000})):
        with pytest.raises(NotComparable, match="outside RAM"):
            run_pair(pm(code, **regs), aero, QemuCPU("pm32", machine))
    assert run_pair(pm("53 90", esp=0), aero, QemuCPU("pm32", machine)).divergence is None
    # DS loaded from the reset LDT (base 0: the scenario's memory) with base 80000000h:
    # LODSD at DS:10000h reads beyond RAM.
    desc = bytes.fromhex("ffff000000934080")
    sc = pm("1f ad", esp=0x9000, esi=0x10000, memory=[(0x9000, b"\x0c\x00"), (8, desc)])
    with pytest.raises(NotComparable, match="outside RAM"):
        run_pair(sc, aero, QemuCPU("pm32", machine))


def test_what_cannot_be_compared_is_refused(machine, aero) -> None:
    with pytest.raises(NotComparable, match="LTR"):
        run_pair(pm("0f00d8", eax=0x18), aero, QemuCPU("pm32", machine))
    with pytest.raises(NotComparable, match="outside RAM"):
        run_pair(pm("8b0d00002000"), aero, QemuCPU("pm32", machine))


def test_a_dead_or_silent_qemu_is_not_evaluated_and_replaced(aero) -> None:
    q = QemuCPU("pm32")
    pids = []
    try:
        # Dead between examples: replaced before the next one, which is evaluated.
        pids.append(q.machine.proc.pid)
        os.killpg(pids[-1], signal.SIGKILL)
        assert run_pair(pm("40"), aero, q).divergence is None
        # Dead in the middle of an example: that example is not evaluated.
        pids.append(q.machine.proc.pid)
        orig = q._load

        def then_die(scenario: Scenario, image: np.ndarray) -> None:
            orig(scenario, image)
            os.killpg(q.machine.proc.pid, signal.SIGKILL)

        q._load = then_die  # type: ignore[method-assign]
        with pytest.raises(NotComparable, match="qemu"):
            run_pair(pm("40"), aero, q)
        q._load = orig  # type: ignore[method-assign]
        assert run_pair(pm("40"), aero, q).divergence is None
        # A gdbstub that stops answering mid-example: not evaluated, QEMU replaced.
        pids.append(q.machine.proc.pid)

        def then_stop(scenario: Scenario, image: np.ndarray) -> None:
            orig(scenario, image)
            q.machine.gdb.timeout = 0.5
            os.kill(q.machine.proc.pid, signal.SIGSTOP)

        q._load = then_stop  # type: ignore[method-assign]
        with pytest.raises(NotComparable, match="stopped answering"):
            run_pair(pm("40"), aero, q)
        q._load = orig  # type: ignore[method-assign]
        assert run_pair(pm("40"), aero, q).divergence is None
        assert len(set(pids)) == 3
    finally:
        pids.append(q.machine.proc.pid if q.machine.proc else 0)
        q.close()
    for pid in pids:
        if pid:
            assert_gone(pid)


def test_missing_qemu_is_a_one_line_error(monkeypatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(QemuUnavailable, match="not installed"):
        check_qemu()


def test_known_divergences_are_explained(machine, aero) -> None:
    """QEMU performs no segment-limit checks (as Unicorn, its fork): explained."""
    sc = real("8b0effff")  # a word at DS:FFFF crosses the 64 KB limit
    rec = run_pair(sc, aero, QemuCPU("real", machine)).divergence
    assert rec is not None and rec.aero.exception == 13 and rec.ref.exception is None
    known = explain(rec)
    assert known is not None and known.key == "segment-checks"


def test_campaign_cli_against_both_references() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aero", "fuzz", "cpu", "--against", "unicorn,qemu",
         "--examples", "8", "--mode", "pm32", "--classes", "alu", "--seed", "2",
         "--jobs", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["references"]) == {"unicorn", "qemu"}
    assert out["references"]["qemu"]["examples"] == 8


def test_known_qemu_divergences_are_documented_with_cases() -> None:
    from pathlib import Path

    from aero.fuzz.qemu_cpu import KNOWN_QEMU_DIVERGENCES, SHARED_WITH_UNICORN

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "known-divergences.md").read_text()
    section = doc[doc.index("## QEMU: instruction-level"):doc.index("## Unicorn:")]
    cases = {json.loads(p.read_text()).get("known_divergence")
             for p in (root / "tests" / "regressions").glob("*.json")}
    for k in KNOWN_QEMU_DIVERGENCES:
        assert f"`{k.key}`" in section, k.key
        assert k.key in cases, f"no regression case for {k.key}"
    assert {k.key for k in KNOWN_QEMU_DIVERGENCES} >= set(SHARED_WITH_UNICORN)


def test_kept_qemu_cases_are_explained_by_their_entry(machine, aero) -> None:
    """Every regression case found against QEMU still diverges there, and its entry (judged
    by the SDM model, not aero's decoder) explains it."""
    from pathlib import Path

    from aero.fuzz.difftest import Scenario

    root = Path(__file__).resolve().parent.parent
    cases = [json.loads(p.read_text()) for p in (root / "tests" / "regressions").glob("*.json")]
    cases = [c for c in cases if c.get("reference") == "qemu" and c.get("known_divergence")]
    assert cases
    for case in cases:
        sc = Scenario.from_dict(case["scenario"])
        rec = run_pair(sc, aero, QemuCPU(sc.mode, machine)).divergence
        assert rec is not None, case["known_divergence"]
        k = explain(rec)
        assert k is not None and k.key == case["known_divergence"], (
            [(m.field, m.aero, m.ref) for m in rec.mismatches])


def test_operand_size_and_kind_come_from_the_sdm_model(machine, aero, monkeypatch) -> None:
    """The explicit operand's size and whether it is written are the SDM model's: a wrong
    row in aero's opcode table (ADD Eb,Gb given CMP Ev,Gv's row: a read-only doubleword)
    changes nothing the backend compares."""
    from aero.fuzz import difftest

    sc = paging("0003 90", ebx=0x50FFF, eax=0x12)  # ADD [EBX], AL: one byte, read and written

    def run() -> list:
        q = QemuCPU("pm32-paging", machine)
        res = run_pair(sc, aero, q)
        assert res.divergence is None, res.divergence.mismatches
        q.load(sc, sc.image())
        q.step()
        return q.retrace()

    right = run()
    assert ("r", 0x50FFF, 1) in right and ("w", 0x50FFF, 1) in right
    monkeypatch.setitem(difftest._ROWS, (0x00, None), difftest._ROWS[(0x39, None)])
    assert difftest.decode(b"\x00\x03", True).row.mnemonic == "cmp"  # the wrong row is live
    assert run() == right


def test_real_mode_delivery_keeps_the_ac_flag_of_the_state_before_it(machine, aero) -> None:
    """Real-mode delivery pushes FLAGS (16 bits) and clears AC (SDM 'INT n'): the state
    before the exception keeps AC as the instruction left it (LOCK LSL: #UD)."""
    for code in ("2666f0260f03c0", "0f0b"):
        sc = real(code, eflags=0x40002)
        res = run_pair(sc, aero, QemuCPU("real", machine))
        assert res.divergence is None, res.divergence.mismatches
        assert res.steps[0].ref.exception == 6 and res.steps[0].ref.regs["eflags"] == 0x40002
    # POPFD under TF: the trap's frame cannot show what it loaded into AC.
    sc = real("669d 90", eflags=0x102, esp=0x100)
    sc.memory = [(0x4100, (0x40002).to_bytes(4, "little"))]
    with pytest.raises(NotComparable, match="POPFD"):
        run_pair(sc, aero, QemuCPU("real", machine))


def test_pop_ev_stack_read_is_the_instruction_s(machine, aero) -> None:
    """POP m32 whose store faults (#PF, not present beyond RAM): the stack read before it
    set the stack page's accessed bit, on both sides; only the dirty bit of the exception
    frame's push there is put back."""
    sc = paging("8f80fdff0100", eax=0xF0000, esp=0x10001)
    res = run_pair(sc, aero, QemuCPU("pm32-paging", machine))
    assert res.divergence is None, res.divergence.mismatches
    st = res.steps[0]
    assert st.aero.exception == st.ref.exception == 14 and st.ref.cr2 == 0x110000
    assert st.ref.memory[PT_ADDR + 0x10 * 4] == 0x27


class ReportedWrong(AeroCPU):
    """aero with a bug injected into what each step reports."""

    def __init__(self, bug) -> None:
        super().__init__()
        self.bug = bug

    def step(self):
        res = super().step()
        res.regs = dict(res.regs)
        res.memory = res.memory.copy()
        self.bug(res)
        return res


def test_enter_final_check_is_explained_only_as_the_sdm_has_it(machine, aero) -> None:
    """ENTER 1000h, 0 with the final ESP (8400Ch) on another page than the push: QEMU makes
    no write check there (no accessed bit; no #PF when the page is not present)."""
    sc = paging("c8001000", esp=0x85010, ebp=0x10000)
    rec = run_pair(sc, aero, QemuCPU("pm32-paging", machine)).divergence
    assert rec is not None and [m.field for m in rec.mismatches] == ["mem:0x2210"]
    assert explain(rec).key == "enter-final-check"
    absent = paging("c8001000", esp=0x85010, ebp=0x10000, pages={0x84: 0})
    rec = run_pair(absent, aero, QemuCPU("pm32-paging", machine)).divergence
    assert rec.aero.exception == 14 and rec.aero.cr2 == 0x8400C and rec.ref.exception is None
    assert explain(rec).key == "enter-final-check"

    def wrong_esp(res) -> None:
        res.regs["esp"] -= 2

    def entry_changed(res) -> None:
        res.memory[PT_ADDR + 0x84 * 4] &= 0xFD  # the check clears W

    def push_missing(res) -> None:
        res.memory[0x8500C:0x85010] = 0x55

    for bug in (wrong_esp, entry_changed, push_missing):
        rec = run_pair(sc, ReportedWrong(bug), QemuCPU("pm32-paging", machine)).divergence
        assert rec is not None and explain(rec) is None, bug.__name__
    # A #PF reported at another address is not the check's.
    rec = run_pair(absent, ReportedWrong(lambda res: setattr(res, "cr2", 0x84000)),
                   QemuCPU("pm32-paging", machine)).divergence
    assert rec is not None and explain(rec) is None


def test_a_qemu_campaign_lists_the_qemu_register() -> None:
    """The report of a campaign against QEMU names the entries that explain it (its own
    included), not Unicorn's list."""
    from aero.fuzz.campaign import CampaignResult
    from aero.fuzz.qemu_cpu import KNOWN_QEMU_DIVERGENCES

    keys = [k["key"] for k in CampaignResult(0, 1, ["real"], [], reference="qemu")
            .to_dict()["known_divergences"]]
    assert keys == [k.key for k in KNOWN_QEMU_DIVERGENCES]
    assert {"bswap-16", "enter-final-check"} <= set(keys)
    assert "bswap-16" not in [k["key"] for k in CampaignResult(0, 1, ["real"], [])
                              .to_dict()["known_divergences"]]


def test_accesses_after_the_faulting_one_did_not_happen(machine, aero) -> None:
    """CALL m16 whose operand read faults (page 10h not present): the return-address push
    (onto page 0Fh, read-only for users) never happened, so the dirty bit the exception
    frame's push set there is the delivery's and is put back."""
    sc = paging("266626ff10", eax=0x10000, esp=0x10000, pages={0x10: 0, 0xF: 0x05})
    res = run_pair(sc, aero, QemuCPU("pm32-paging", machine))
    assert res.divergence is None, res.divergence.mismatches
    assert res.steps[0].ref.exception == 14 and res.steps[0].ref.cr2 == 0x10000
    assert res.steps[0].ref.memory[PT_ADDR + 0xF * 4] == 0x05


def test_rdtsc_depends_on_the_scenario_alone() -> None:
    """aero's machine is reused across scenarios and its clock keeps running: each load
    zeroes the TSC, so RDTSC reads the same value however many examples ran before (a
    campaign's records are then the same with any number of workers)."""
    r = initial_regs("real")
    r.update(eip=0x100, esp=0x8000)
    sc = Scenario("real", r, [b"\x0f\x31", b"\x90"], 0)
    cpu = AeroCPU()
    seen = set()
    for _ in range(3):
        cpu.load(sc, sc.image())
        res = cpu.step()
        seen.add((res.regs["eax"], res.regs["edx"]))
        for _ in range(40):
            cpu.load(sc, sc.image())
            cpu.step()
            cpu.step()
    assert len(seen) == 1


def test_recorded_mismatches_show_no_host_time(machine, aero) -> None:
    """LOCK RDTSC: aero #UD, QEMU reads the host's TSC. The record's mismatch list shows
    aero's value for those undefined bits, as its states do."""
    from aero.fuzz.campaign import Divergence, signature

    sc = pm("f00f31", fill=0)
    rec = run_pair(sc, aero, QemuCPU("pm32", machine)).divergence
    assert rec is not None and rec.masks.regs.get("eax") == 0xFFFFFFFF
    out = Divergence(sc, rec, signature("pm32", rec), explain(rec)).to_dict()
    regs = {m["field"]: m for m in out["mismatches"] if m["field"] in ("eax", "edx")}
    assert regs and all(m["ref"] == m["aero"] for m in regs.values())
    assert out["explanation"]["key"] == "lock-prefix"
