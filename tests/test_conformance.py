"""The hardware-captured 80286 SingleStepTests suite: every non-excluded test passes, the
286-only fields of faulting tests are replaced by the i386's instead of dropping the test,
and the runner reads the suite in the formats it is published in.

Where the suite comes from: docs/conformance.md. It is found through the environment
variable AERO_SST_DIR, else as ``shared/conformance/sst80286-real`` in the checkout's
directory or any directory above it. Without it the tests skip, except in CI (CI=true),
where a missing suite is a failure."""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from aero.fuzz.sst import (
    EXCLUSIONS,
    SSTRunner,
    i386_adjustment,
    iter_tests,
    premise_holds,
    read_moo,
    run_directory,
    suite_files,
)

from aero.cli import main

ROOT = Path(__file__).resolve().parents[1]
RELATIVE = Path("shared") / "conformance" / "sst80286-real"


def find_suite(start: Path = ROOT, environ: dict[str, str] | None = None) -> Path | None:
    """AERO_SST_DIR, else shared/conformance/sst80286-real in ``start`` or above it."""
    env = os.environ if environ is None else environ
    if env.get("AERO_SST_DIR"):
        path = Path(env["AERO_SST_DIR"])
        return path if path.is_dir() else None
    for d in (start, *start.parents):
        if (d / RELATIVE).is_dir():
            return d / RELATIVE
    return None


SUITE_OR_NONE = find_suite()


def require_suite() -> Path:
    """The suite's directory; a skip when it is missing, a failure when also CI=true."""
    if SUITE_OR_NONE is None:
        message = (f"the SingleStepTests 80286 suite is not present (set AERO_SST_DIR, or put "
                   f"it at {RELATIVE} beside or above {ROOT}; see docs/conformance.md)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SUITE_OR_NONE


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_suite()


@pytest.fixture(scope="module")
def result(suite: Path) -> dict:
    return run_directory(suite)


def test_every_non_excluded_test_passes(result: dict) -> None:
    failures = {k: r["failures"] for k, r in result["opcodes"].items() if r["failed"]}
    assert result["failed"] == 0, json.dumps(failures, indent=1)[:4000]
    assert result["passed"] + result["excluded"] == result["total"] > 29000
    # Every exclusion names a documented reason, and they stay a small minority.
    assert {e["reason"] for e in result["exclusions"]} <= set(EXCLUSIONS)
    assert result["excluded"] < 0.03 * result["total"]


def test_faulting_tests_are_compared_not_excluded(result: dict) -> None:
    """The tests where the 286 differs only in some fields of a fault (#GP instead of #SS,
    SI/DI/CX already advanced) are run, with those fields replaced by the i386's."""
    assert "string-fault" not in EXCLUSIONS and "ss-overrun" not in EXCLUSIONS
    adjusted = result["adjustments"]
    assert result["adjusted"] == len(adjusted) >= 50
    assert sum(a["vector"] == 12 for a in adjusted) >= 10
    assert sum(bool(a["registers"]) for a in adjusted) >= 30


def test_exclusion_premises_hold(suite: Path, result: dict) -> None:
    """Each remaining exclusion is true of every test it drops, as far as the hardware data
    shows it (e.g. every 'length' test raised #UD on the 286)."""
    dropped: dict[str, set[int]] = {}
    for e in result["exclusions"]:
        dropped.setdefault(e["opcode"], set()).add(e["idx"])
    reasons = {(e["opcode"], e["idx"]): e["reason"] for e in result["exclusions"]}
    for path in suite_files(suite):
        key = path.name.split(".json")[0]
        if key not in dropped:
            continue
        for test in iter_tests(path):
            if test["idx"] in dropped[key]:
                why = reasons[(key, test["idx"])]
                assert premise_holds(test, why), (key, test["idx"], why, test.get("exception"))


def _first(suite: Path, key: str, pred) -> dict:  # type: ignore[no-untyped-def]
    for path in suite_files(suite):
        if path.name.startswith(key + "."):
            for test in iter_tests(path):
                if pred(test):
                    return test
    raise AssertionError(f"no such test in {key}")


def test_adjusted_fields_are_checked(suite: Path) -> None:
    runner = SSTRunner()
    # LODSW at SI = FFFF: #GP, SI unchanged on the i386 (the 286 advanced it).
    t = _first(suite, "AD", lambda t: t.get("exception") and t["initial"]["regs"]["si"] == 0xFFFF)
    adj = i386_adjustment(t)
    assert adj is not None and adj.vector == 13 and adj.registers["si"] == 0xFFFF
    assert runner.run_test(t, 0xFFFF, adj) is None
    assert runner.run_test(t, 0xFFFF) is not None  # the 286's SI is not the i386's
    wrong = copy.deepcopy(adj)
    wrong.vector = 12
    failure = runner.run_test(t, 0xFFFF, wrong)
    assert failure is not None and "vector" in failure["registers"]
    # POP ES at SP = FFFF: #SS on the i386; the handler is reached through IVT entry 12.
    t = _first(suite, "07", lambda t: t.get("exception"))
    adj = i386_adjustment(t)
    assert adj is not None and adj.vector == 12 and adj.ram
    assert runner.run_test(t, 0xFFFF, adj) is None


def test_string_fault_through_es_is_not_an_ss_overrun() -> None:
    """``36 A5`` (SS: MOVSW) with DI = FFFF faults on ES:DI: #GP, not #SS."""
    regs = {"ax": 0, "bx": 0, "cx": 5, "dx": 0, "cs": 0x100, "ss": 0x200, "ds": 0x300,
            "es": 0x400, "sp": 0x100, "bp": 0, "si": 0x10, "di": 0xFFFF, "ip": 0,
            "flags": 2}
    test = {"bytes": [0x36, 0xA5, 0xF4], "initial": {"regs": regs, "ram": []},
            "exception": {"number": 13, "flag_address": 0}}
    adj = i386_adjustment(test)
    assert adj is not None and adj.vector == 13
    assert adj.registers == {"si": 0x10, "di": 0xFFFF, "cx": 5}


def test_a_wrong_expectation_is_reported(suite: Path) -> None:
    test = next(iter_tests(suite_files(suite)[0]))
    runner = SSTRunner()
    assert runner.run_test(test, 0xFFFF) is None
    bad = copy.deepcopy(test)
    bad["final"]["regs"]["ip"] = (test["initial"]["regs"]["ip"] + 99) & 0xFFFF
    failure = runner.run_test(bad, 0xFFFF)
    assert failure is not None and "ip" in failure["registers"]


# ---- the published formats ------------------------------------------------------------------

_REG_ORDER = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip",
              "flags")


def _chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body


def _moo_state(state: dict) -> bytes:
    bits = sum(1 << i for i, n in enumerate(_REG_ORDER) if n in state["regs"])
    regs = struct.pack("<H", bits) + b"".join(
        struct.pack("<H", state["regs"][n]) for n in _REG_ORDER if n in state["regs"])
    ram = struct.pack("<I", len(state["ram"])) + b"".join(
        struct.pack("<IB", a, v) for a, v in state["ram"])
    return _chunk(b"REGS", regs) + _chunk(b"RAM ", ram) + _chunk(b"QUEU", struct.pack("<I", 0))


def to_moo(tests: list[dict]) -> bytes:
    """A MOO file (github.com/dbalsom/moo; the layout tools/moo2json.py reads)."""
    header = bytes([1, 0, 0, 0]) + struct.pack("<I", len(tests)) + b"286 "
    out = b"MOO " + struct.pack("<I", len(header)) + header
    for t in tests:
        body = struct.pack("<I", t["idx"])
        name = t["name"].encode()
        body += _chunk(b"NAME", struct.pack("<I", len(name)) + name)
        body += _chunk(b"BYTS", struct.pack("<I", len(t["bytes"])) + bytes(t["bytes"]))
        body += _chunk(b"INIT", _moo_state(t["initial"]))
        body += _chunk(b"FINA", _moo_state(t["final"]))
        if t.get("exception"):
            e = t["exception"]
            body += _chunk(b"EXCP", struct.pack("<BI", e["number"], e["flag_address"]))
        body += _chunk(b"HASH", bytes.fromhex(t["hash"]))
        out += _chunk(b"TEST", body)
    return out


def test_moo_reader_round_trip(suite: Path) -> None:
    tests = list(iter_tests(suite_files(suite)[0]))[:20]
    back = read_moo(to_moo(tests))
    for a, b in zip(tests, back, strict=True):
        for k in ("idx", "name", "bytes", "hash"):
            assert a[k] == b[k]
        for side in ("initial", "final"):
            assert a[side]["regs"] == b[side]["regs"] and a[side]["ram"] == b[side]["ram"]
        assert a.get("exception") == b.get("exception")


@pytest.mark.parametrize("fmt", ["MOO.gz", "json.gz", "json"])
def test_upstream_layout_and_formats(suite: Path, tmp_path: Path, fmt: str) -> None:
    """The repository layout as published (v1_real_mode/ with metadata.json, one file per
    opcode, revocation_list.txt at the top) in the MOO form and the JSON-array form that
    tools/moo2json.py (and tools/compress.py) produce."""
    keys = ("AD", "07", "F7.6")
    root = tmp_path / "80286"
    tests_dir = root / "v1_real_mode"
    tests_dir.mkdir(parents=True)
    shutil.copy(suite / "metadata.json", tests_dir / "metadata.json")
    revoked = None
    for key in keys:
        tests = list(iter_tests(suite / f"{key}.jsonl.gz"))
        revoked = revoked or tests[1]["hash"]
        path = tests_dir / f"{key}.{fmt}"
        if fmt == "MOO.gz":
            path.write_bytes(gzip.compress(to_moo(tests)))
        elif fmt == "json.gz":
            path.write_bytes(gzip.compress(json.dumps(tests).encode()))
        else:
            path.write_text(json.dumps(tests, indent=2))
    (root / "revocation_list.txt").write_text(f"# Revocation list.\n{revoked}\n")
    got = run_directory(root)
    want = run_directory(suite, only=set(keys))
    assert got["files"] == 3 and got["total"] == want["total"]
    assert got["failed"] == 0 and got["adjusted"] == want["adjusted"]
    assert [e["reason"] for e in got["exclusions"] if e["reason"] == "revoked"] == ["revoked"]
    assert got["excluded"] == want["excluded"] + 1


# ---- finding the suite ---------------------------------------------------------------------

def test_suite_is_found_above_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "work" / "checkouts" / "aero"
    clone.mkdir(parents=True)
    assert find_suite(clone, {}) is None
    (tmp_path / "work" / RELATIVE).mkdir(parents=True)
    assert find_suite(clone, {}) == tmp_path / "work" / RELATIVE
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert find_suite(clone, {"AERO_SST_DIR": str(other)}) == other
    assert find_suite(clone, {"AERO_SST_DIR": str(tmp_path / "missing")}) is None


def test_missing_suite_fails_in_ci(tmp_path: Path) -> None:
    """Run this file's suite fixture in a subprocess with CI=true and no suite: it fails."""
    import subprocess
    import sys

    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os, pytest\n"
        "def test_probe():\n"
        "    from importlib import util\n"
        f"    spec = util.spec_from_file_location('c', {str(Path(__file__))!r})\n"
        "    m = util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "    assert m.SUITE_OR_NONE is None\n"
        "    m.require_suite()\n")
    env = dict(os.environ, CI="true", AERO_SST_DIR=str(tmp_path / "missing"))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(probe)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 1 and "is not present" in out.stdout, out.stdout[-2000:]
    env["CI"] = "false"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-rs", str(probe)], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "skipped" in out.stdout, out.stdout[-2000:]


# ---- command line ---------------------------------------------------------------------------

def test_cli_json(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "sst", str(suite), "--only", "00", "F7.6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"total", "passed", "failed", "excluded", "adjusted"} <= set(out)
    assert out["failed"] == 0 and set(out["opcodes"]) == {"00", "F7.6"}


def test_cli_rejects_a_missing_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "sst", "/nonexistent/suite"]) == 2
    assert "not a directory" in capsys.readouterr().err
