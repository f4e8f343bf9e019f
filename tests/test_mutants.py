"""Mutation testing of the evidence (benchmarks/mutate.py): the catalogue is valid against
the current sources, and a small sample of mutants is built and killed by fast checks
(one opcode file each of the hardware conformance suite), while the unmutated tree passes
the same checks. The full catalogue runs with ``python -m aero.bench.mutate``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aero.bench.mutate import (
    MUTANTS,
    ROOT,
    SST_SCRIPT,
    Check,
    Mutant,
    apply_mutant,
    run_mutant,
)


def test_catalogue_matches_the_sources() -> None:
    assert len(MUTANTS) >= 40
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    for m in MUTANTS:
        assert (ROOT / m.path).read_text().count(m.find) == 1, m.name
        assert m.find != m.replace
    categories = {m.category for m in MUTANTS}
    assert {"flags", "restartability", "protection", "paging", "string", "stack", "decoder",
            "table", "conditional-access"} <= categories


def test_a_patch_must_match_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_text("a = 1;\na = 1;\nb = 2;\n")
    with pytest.raises(ValueError, match="2 times"):
        apply_mutant(tmp_path, Mutant("x", "t", "f.c", "a = 1;", "a = 3;"))
    with pytest.raises(ValueError, match="0 times"):
        apply_mutant(tmp_path, Mutant("x", "t", "f.c", "c = 1;", "c = 3;"))
    apply_mutant(tmp_path, Mutant("x", "t", "f.c", "b = 2;", "b = 4;"))
    assert (tmp_path / "f.c").read_text().endswith("b = 4;\n")


def _suite() -> Path | None:
    for d in (ROOT, *ROOT.parents):
        p = d / "shared" / "conformance" / "sst80286-real"
        if p.is_dir():
            return p
    return None


# (mutant, the opcode file of the conformance suite that kills it)
SAMPLE = (("lods-advance-before-read", "AD"), ("segment-fault-always-gp", "07"),
          ("isa-lock-add-missing", "01"))


@pytest.mark.skipif(_suite() is None, reason="the SingleStepTests suite is not present")
def test_sample_mutants_are_killed(tmp_path: Path) -> None:
    suite = _suite()
    by_name = {m.name: m for m in MUTANTS}
    cache = tmp_path / "objects"
    keys = [k for _n, k in SAMPLE]
    checks = (Check("sst", (sys.executable, "-c", SST_SCRIPT, str(suite), *keys), 300),)
    flags = ["-std=c11", "-O0", "-fwrapv", "-fPIC"]  # a quick build
    base = run_mutant(None, checks, tmp_path, cache, cflags=flags)
    assert base.built, base.log
    assert base.killed_by is None, base.checks
    for name, key in SAMPLE:
        one = (Check("sst", (sys.executable, "-c", SST_SCRIPT, str(suite), key), 300),)
        res = run_mutant(by_name[name], one, tmp_path, cache, cflags=flags)
        assert res.built, res.log
        assert res.killed_by == "sst", (name, res.checks)
