"""``aero record --interactive`` on a pseudo-terminal: keys reach the guest, Ctrl-A x ends the
recording, the terminal mode is restored, and the trace replays."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from aero import guests

SNIPPET = r"""
import subprocess, sys, termios
before = termios.tcgetattr(0)
rc = subprocess.call([sys.executable, "-m", "aero.cli", "record", "demo", "--interactive",
                      "-o", sys.argv[1], "--rtc", "0"], timeout=120)
after = termios.tcgetattr(0)
print("\r\nTERMINAL", "RESTORED" if before == after else "CHANGED", "RC", rc, flush=True)
"""


def _read_until(fd: int, needle: bytes, buf: bytearray, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return needle in buf
            if not data:
                break
            buf += data
    return needle in buf


@pytest.mark.skipif("demo" not in guests.GUESTS, reason="the demo guest is not bundled")
def test_interactive_session_restores_the_terminal_and_replays(tmp_path: Path) -> None:
    trace = tmp_path / "i.aerotrace"
    guests.build("demo")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a shell-like parent of aero on the pty
        try:
            os.execv(sys.executable, [sys.executable, "-c", SNIPPET, str(trace)])
        finally:
            os._exit(127)
    buf = bytearray()
    try:
        assert _read_until(fd, b"> ", buf), bytes(buf)
        for ch in b"echo hi\r":
            os.write(fd, bytes([ch]))
            time.sleep(0.01)
        assert _read_until(fd, b"hi\r\n", buf) or _read_until(fd, b"hi\n", buf), bytes(buf)
        os.write(fd, b"\x03")  # Ctrl-C goes to the guest, it does not stop aero
        time.sleep(0.2)
        os.write(fd, b"\x01x")  # Ctrl-A x ends the recording
        assert _read_until(fd, b"RC", buf), bytes(buf)
        _read_until(fd, b"\n", buf, timeout=5)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    assert b"TERMINAL RESTORED" in buf, bytes(buf)
    from aero.traces.container import open_trace
    from aero.traces.replay import Replayer, load_contents

    c = load_contents(open_trace(trace))
    assert c.summary is not None and c.summary["stop"] == "interrupted"
    typed = bytes(int(e["b"]) for e in c.inputs if int(e["kind"]) == 1)
    assert typed.startswith(b"echo hi\r") and b"\x03" in typed
    assert not Replayer(c).run().diverged
