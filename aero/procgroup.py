"""Ending a subprocess that runs in its own process group (QEMU, gdb): SIGTERM to the
group, a grace period, SIGKILL to whatever is left, then the leader is reaped.

Invariants:

* The leader is reaped only after the group has been killed: until then it is at least a
  zombie, which keeps the process-group id ours (it cannot be reused by an unrelated group
  that a late ``killpg`` would hit).
* Waiting never reaps (:func:`wait_exit` uses a pidfd, else ``waitid`` with WNOWAIT).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

__all__ = ["KILL_GRACE", "signal_group", "stop_group", "wait_exit"]

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` (a child) to exit, without reaping it; True once
    it has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(max(0.0, timeout) * 1000))
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def signal_group(pgid: int, sig: int) -> None:
    """``killpg`` that ignores a group that is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen, exited: bool = False,
               grace: float = KILL_GRACE) -> None:
    """End the process group led by ``proc`` (started with ``start_new_session=True`` or
    ``process_group=0``): SIGTERM unless the leader is known to have ``exited``, up to
    ``grace`` s for it to exit, SIGKILL to the whole group, then reap the leader."""
    if not exited and not wait_exit(proc.pid, 0):
        signal_group(proc.pid, signal.SIGTERM)
        wait_exit(proc.pid, grace)
    signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
