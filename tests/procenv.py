"""Processes in tests: the aero command line as a subprocess, and checks for tests that start
QEMU (nothing may be left running)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def aero_cli(*args: str, env: dict[str, str] | None = None,
             timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m aero.cli ARGS`` in this interpreter, with ``env`` added to the environment;
    stdout and stderr captured as text (undecodable bytes replaced)."""
    return subprocess.run([sys.executable, "-m", "aero.cli", *args], capture_output=True,
                          text=True, errors="replace", timeout=timeout,
                          env={**os.environ, **(env or {})})


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def assert_gone(pid: int) -> None:
    assert not Path(f"/proc/{pid}").exists(), f"QEMU process {pid} is still there"
    assert group_members(pid) == []
