"""The hardware-captured 80286 SingleStepTests suite: every non-excluded test passes."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
from aero.fuzz.sst import EXCLUSIONS, SSTRunner, run_directory

from aero.cli import main

SUITE = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sst80286-real"
pytestmark = pytest.mark.skipif(not SUITE.is_dir(), reason=f"{SUITE} is not present")


def test_every_non_excluded_test_passes() -> None:
    result = run_directory(SUITE)
    failures = {k: r["failures"] for k, r in result["opcodes"].items() if r["failed"]}
    assert result["failed"] == 0, json.dumps(failures, indent=1)[:4000]
    assert result["passed"] + result["excluded"] == result["total"] > 29000
    # Every exclusion names a documented reason, and they stay a small minority.
    assert {e["reason"] for e in result["exclusions"]} <= set(EXCLUSIONS)
    assert result["excluded"] < 0.03 * result["total"]


def test_a_wrong_expectation_is_reported() -> None:
    with gzip.open(SUITE / "00.jsonl.gz", "rt") as f:
        test = json.loads(f.readline())
    runner = SSTRunner()
    assert runner.run_test(test, 0xFFFF) is None
    bad = copy.deepcopy(test)
    bad["final"]["regs"]["ip"] = (test["initial"]["regs"]["ip"] + 99) & 0xFFFF
    failure = runner.run_test(bad, 0xFFFF)
    assert failure is not None and "ip" in failure["registers"]


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "sst", str(SUITE), "--only", "00", "F7.6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"total", "passed", "failed", "excluded"} <= set(out)
    assert out["failed"] == 0 and set(out["opcodes"]) == {"00", "F7.6"}


def test_cli_rejects_a_missing_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "sst", "/nonexistent/suite"]) == 2
    assert "not a directory" in capsys.readouterr().err
