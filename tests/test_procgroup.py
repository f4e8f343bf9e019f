"""aero.procgroup: a subprocess group is ended whole (SIGTERM, then SIGKILL for what
ignores it), and the leader is reaped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from procenv import group_members

from aero.procgroup import stop_group, wait_exit


def live_members(pgid: int) -> list[int]:
    """Members of the group that are not zombies (a killed grandchild stays one until
    init reaps it)."""
    out = []
    for pid in group_members(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            out.append(pid)
    return out


# A leader that ignores SIGTERM, with a child that ignores it too.
STUBBORN = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


def test_stop_group_kills_a_group_that_ignores_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(group_members(proc.pid)) == 2
    assert not wait_exit(proc.pid, 0)
    start = time.monotonic()
    stop_group(proc, grace=0.2)
    assert time.monotonic() - start < 5
    assert proc.returncode is not None and proc.returncode < 0
    proc.stdout.close()
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped
    assert live_members(proc.pid) == []


def test_stop_group_reaps_a_leader_that_already_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    assert wait_exit(proc.pid, 30)
    assert proc.poll() is None or proc.returncode == 0  # not reaped by the wait
    stop_group(proc, exited=True)
    assert proc.returncode == 0
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped
    assert live_members(proc.pid) == []
