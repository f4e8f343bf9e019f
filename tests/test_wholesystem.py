"""Whole-system differential runs (aero.fuzz.wholesystem, `aero difftest`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aero.fuzz import wholesystem

pytestmark = pytest.mark.skipif(subprocess.run(["which", "qemu-system-i386"],
                                               capture_output=True).returncode != 0,
                                reason="qemu-system-i386 is not installed")


def children() -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                out.add(int(entry.name))
    return out


def test_identical_guest() -> None:
    before = children()
    r = wholesystem.difftest_guest("cpu_alu", max_steps=200)
    assert r["identical"] and r["first_divergence"] is None
    assert r["lockstep_steps"] == 200
    assert r["exit_status"] == {"aero": 1, "qemu": 1}
    assert children() <= before


def test_a_register_difference_is_the_first_divergence(monkeypatch) -> None:
    """The lockstep compares: aero's EBX changed after the 50th instruction is reported
    there, with the instruction and both values."""
    real = wholesystem._aero_regs
    calls = [0]

    def skewed(m):  # noqa: ANN001
        calls[0] += 1
        r = real(m)
        if calls[0] >= 51:
            r["ebx"] ^= 0x100
        return r

    monkeypatch.setattr(wholesystem, "_aero_regs", skewed)
    r = wholesystem.lockstep("cpu_alu", max_steps=200)
    d = r["divergence"]
    assert d is not None and d["kind"] == "registers" and d["step"] == 50
    assert set(d["registers"]) == {"ebx"}
    assert d["registers"]["ebx"]["aero"] ^ d["registers"]["ebx"]["qemu"] == 0x100


def test_cli_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "aero", "difftest", "pmode", "--against",
                           "qemu", "--max-steps", "100", "--json", "--jobs", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["identical"] is True and out["first_divergence"] is None
    assert {"lockstep", "lockstep_steps", "exit_status", "output"} <= set(out)


def test_cli_unknown_guest() -> None:
    proc = subprocess.run([sys.executable, "-m", "aero", "difftest", "no-such-guest",
                           "--jobs", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_flat_guests_find_the_8042_as_a_bios_leaves_it(tmp_path) -> None:
    """QEMU's boot ROM for flat guests leaves the 8042 as aero starts it (self-test passed:
    status 1Ch): a guest that reads the status port and exits with it agrees in
    lockstep and in its exit status."""
    image = tmp_path / "kbc-status.bin"
    image.write_bytes(bytes.fromhex("e464" "e6f4" "f4"))  # in al, 64h; out f4h, al; hlt
    r = wholesystem.difftest_guest(str(image), max_steps=10)
    assert r["first_divergence"] is None, r["first_divergence"]
    assert r["exit_status"] == {"aero": 0x1C * 2 + 1, "qemu": 0x1C * 2 + 1}
