"""The gdb server on a replay (traces/gdbstub.py, traces/timetravel.py), driven by the real
gdb in batch mode and by a raw protocol client. Expected ticks and registers are computed
independently with the library's seek."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aero.traces.container import open_trace
from aero.traces.query import register_history
from aero.traces.replay import load_contents, seek
from aero.traces.timetravel import Point, TimeTravel
from procenv import assert_gone

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "corpus" / "demo.aerotrace"
TICKS = 0x20000  # the demo guest's PIT interrupt counter (guests/demo.s: STATE + 0)
GDB = shutil.which("gdb")

needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed (apt-get install gdb)")


@pytest.fixture(scope="module")
def contents():
    return load_contents(open_trace(DEMO))


def _counter(c, tick: int) -> tuple[int, int]:
    """(TICKS value, EIP) of the replay at ``tick``."""
    m, _ = seek(c, tick)
    return int.from_bytes(m.read(TICKS, 4), "little"), m.get_regs().eip


def _first_tick_with(c, value: int, lo: int = 0) -> int:
    """The first tick at which the counter holds ``value`` (it only grows)."""
    hi = c.end_tick
    while lo < hi:
        mid = (lo + hi) // 2
        if _counter(c, mid)[0] >= value:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _halt_start(c, lo: int, hi: int) -> int:
    """The first tick of the halt that lasts up to ``hi``: one tick after the last HLT
    executed before it, from the register history (traces/query.py steps the replay one
    instruction at a time, independently of the time-travel engine)."""
    changes, _ = register_history(c, "eip", lo, hi)
    hlt = [ch.tick for ch in changes if ch.insn == "hlt"]
    assert hlt and all(ch.tick <= hlt[-1] for ch in changes)
    return hlt[-1] + 1


@pytest.fixture(scope="module")
def changes(contents) -> list[int]:
    """The ticks right after the counter's first three increments."""
    out, lo = [], 0
    for v in (1, 2, 3):
        lo = _first_tick_with(contents, v, lo)
        out.append(lo)
    return out


class Server:
    """``aero replay TRACE --gdb 127.0.0.1:0`` in its own process group."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aero.cli", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        line = self._line()
        m = re.search(r"gdb server on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise AssertionError(f"no server banner: {line!r}")
        self.port = int(m.group(1))

    def _line(self) -> str:
        import select
        assert self.proc.stderr is not None
        r, _, _ = select.select([self.proc.stderr], [], [], 60)
        return self.proc.stderr.readline() if r else ""

    def wait(self) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return self.proc.returncode, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc.communicate()


def _gdb(port: int, *commands: str) -> str:
    args = [GDB, "-batch", "-nx", "-ex", "set architecture i386", "-ex",
            f"target remote 127.0.0.1:{port}"]
    for c in commands:
        args += ["-ex", c]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError(f"gdb timed out:\n{out}") from None
    assert_gone(p.pid)
    return out


def _ticks(out: str) -> list[int]:
    """The values printed by `monitor tick` (lines holding only a number)."""
    return [int(x) for x in re.findall(r"^(\d+)$", out, re.M)]


@needs_gdb
def test_gdb_watch_reverse_continue_and_reverse_stepi(contents, changes) -> None:
    t1, t2, _t3 = changes
    _, eip1 = _counter(contents, t1)
    _, eip_write = _counter(contents, t2 - 1)
    # The interrupt woke a halt: one reverse step goes back to its HLT.
    assert seek(contents, t2 - 2)[0].get_regs().halted
    halt = _halt_start(contents, t1, t2 - 2)
    _, eip_before = _counter(contents, halt - 1)
    srv = Server("replay", str(DEMO), "--gdb", "127.0.0.1:0")
    try:
        out = _gdb(srv.port, "watch *(int*)0x20000", "continue", "monitor tick",
                   "printf \"EIP=%x\\n\", $eip", "continue", "monitor tick",
                   "reverse-continue", "monitor tick", "printf \"EIP=%x\\n\", $eip",
                   "printf \"VAL=%d\\n\", *(int*)0x20000", "reverse-stepi", "monitor tick",
                   "printf \"EIP=%x\\n\", $eip", "x/i $pc", "printf \"CR0=%x\\n\", $cr0",
                   "detach")
        code, err = srv.wait()
    finally:
        srv.stop()
    assert_gone(srv.proc.pid)
    assert code == 0, err
    assert _ticks(out) == [t1, t2, t2 - 1, halt - 1], out
    eips = [int(x, 16) for x in re.findall(r"^EIP=([0-9a-f]+)$", out, re.M)]
    assert eips == [eip1, eip_write, eip_before], out
    assert "VAL=1" in out and "Old value = 1\nNew value = 2" in out
    m, _ = seek(contents, halt - 1)
    assert f"CR0={m.get_regs().cr0:x}" in out and "hlt" in out
    assert "gdb detached" in err


@needs_gdb
def test_gdb_breakpoint_continue_memory_and_monitor(contents, changes) -> None:
    _t1, t2, t3 = changes
    _, handler = _counter(contents, t2 - 1)  # the instruction that increments the counter
    srv = Server("seek", str(DEMO), str(t2 - 5), "--gdb", "127.0.0.1:0")
    try:
        out = _gdb(srv.port, f"break *{handler:#x}", "continue", "monitor tick",
                   "x/1dw 0x20000", "continue", "monitor tick", "reverse-continue",
                   "monitor tick", "monitor info devices", "set {int}0x20000 = 5",
                   "x/1dw 0x20000", "monitor seek 1000", "monitor tick", "kill")
        code, err = srv.wait()
    finally:
        srv.stop()
    assert_gone(srv.proc.pid)
    assert code == 0, err
    assert _ticks(out) == [t2 - 1, t3 - 1, t2 - 1, 1000], out
    # Both reads (before and after the refused write) show the replay's value.
    assert len(re.findall(r"^0x20000:\s+1$", out, re.M)) == 2, out
    assert "Cannot access memory at address 0x20000" in out  # the refused write
    assert "pit:" in out and "pic:" in out and "rtc:" in out, out


@needs_gdb
def test_gdb_end_of_trace_is_a_stop_with_a_reason(contents) -> None:
    end = contents.end_tick
    srv = Server("seek", str(DEMO), str(end - 3), "--gdb", "127.0.0.1:0")
    try:
        out = _gdb(srv.port, "continue", "monitor tick", "stepi", "reverse-stepi",
                   "monitor tick", "detach")
        code, err = srv.wait()
    finally:
        srv.stop()
    assert code == 0, err
    assert "the end of the trace" in out and "No more reverse-execution history" in out, out
    assert _ticks(out) == [end, end - 1], out


# ---- the protocol, byte by byte ----------------------------------------------------------

class Client:
    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def _more(self) -> None:
        data = self.s.recv(65536)
        assert data, "the server closed the connection"
        self.buf += data

    def packet(self, payload: str) -> str:
        data = payload.encode()
        self.raw(b"$" + data + b"#%02x" % (sum(data) & 0xFF))
        return self.reply()

    def reply(self) -> str:
        """The next non-console reply (console messages collected in self.console)."""
        self.console = ""
        while True:
            while b"#" not in self.buf[self.buf.find(b"$"):] or len(self.buf) < \
                    self.buf.find(b"#", self.buf.find(b"$")) + 3 or b"$" not in self.buf:
                self._more()
            start = self.buf.index(b"$")
            end = self.buf.index(b"#", start)
            body = self.buf[start + 1:end].decode()
            self.buf = self.buf[end + 3:]
            self.raw(b"+")
            if body.startswith("O") and body != "OK":
                self.console += bytes.fromhex(body[1:]).decode()
                continue
            return body

    def close(self) -> None:
        self.s.close()


def test_protocol_bad_input_is_answered_and_the_replay_stays_usable(contents) -> None:
    srv = Server("replay", str(DEMO), "--gdb", "127.0.0.1:0")
    try:
        c = Client(srv.port)
        c.raw(b"$qSupported#00")  # bad checksum: a retransmission request
        assert c.s.recv(1) == b"-"
        assert "ReverseContinue+" in c.packet("qSupported:swbreak+")
        assert c.packet("qNoSuchThing") == ""
        assert c.packet("m-zz,4") == ""  # malformed
        assert c.packet("Z7,0,1") == ""  # unknown breakpoint kind
        assert c.packet("M20000,4:01020304") == "E.a replay cannot be edited"
        assert c.packet("G" + "00" * 64) == "E.a replay cannot be edited"
        assert c.packet("m20000,4") == "00000000"
        for i in range(16):
            assert c.packet(f"Z2,{0x30000 + 4 * i:x},4") == "OK"
        assert c.packet("Z2,40000,4") == "E0e"  # more than the core can watch
        for i in range(16):
            assert c.packet(f"z2,{0x30000 + 4 * i:x},4") == "OK"
        stop = c.packet("bs")
        assert "replaylog:begin" in stop  # at tick 0 there is nothing before
        assert "cannot be edited" in c.console  # told with the next stop
        stop = c.packet("vCont;s:1")
        assert stop.startswith("T05")
        assert c.packet("qRcmd," + b"tick".hex()) == "OK" and c.console == "1\n"
        c.close()  # hang up without detaching
        code, err = srv.wait()
    finally:
        srv.stop()
    assert_gone(srv.proc.pid)
    assert code == 0 and "gdb disconnected" in err, err


def test_interrupt_stops_a_continue(contents) -> None:
    srv = Server("replay", str(DEMO), "--gdb", "127.0.0.1:0")
    try:
        c = Client(srv.port)
        c.packet("QStartNoAckMode")
        c.raw(b"$c#63")
        c.raw(b"\x03")
        stop = c.reply()
        # Either the interrupt arrived during the run (SIGINT), or the run ended first.
        assert stop.startswith("T02") or "replaylog:end" in stop, stop
        assert c.packet("qC") == "QC1"
        c.packet("D")
        code, _ = srv.wait()
    finally:
        srv.stop()
    assert code == 0


def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "aero.cli", "replay", str(DEMO), "--gdb",
                            str(port)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    assert p.returncode == 2
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert lines == [f"aero: error: cannot listen on {port}: the port is in use"], p.stderr


# ---- the engine ---------------------------------------------------------------------------

def test_reverse_steps_match_seek_and_reuse_snapshots(contents, changes) -> None:
    t1, t2 = changes[0], changes[1]
    tt = TimeTravel(contents)
    tt.goto(t2 + 3)  # in the interrupt handler
    for back in range(1, 5):
        assert tt.reverse_step().tick == t2 + 3 - back
        m, _ = seek(contents, t2 + 3 - back)
        assert tt.m.fingerprint() == m.fingerprint()
    executed = tt.stats["ticks_executed"]
    tt.reverse_step()  # over the halt the interrupt ended, to its HLT
    halt = _halt_start(contents, t1, t2 - 2)
    assert tt.tick == halt - 1 and not tt.m.get_regs().halted
    assert tt.m.fingerprint() == seek(contents, halt - 1)[0].fingerprint()
    assert tt.read_linear((tt.m.get_regs().cs.base + tt.m.get_regs().eip), 1) == b"\xf4"
    assert tt.stats["ticks_executed"] - executed < t2 - t1
    # Forward, a halt is one step too: from the HLT to the handler's first instruction.
    assert tt.step().tick == t2 - 1


def test_reverse_continue_finds_the_last_write(contents, changes) -> None:
    t1, t2, t3 = changes
    tt = TimeTravel(contents)
    tt.set_points([Point("write", TICKS, 4)])
    tt.goto(t3 + 10)
    stop = tt.reverse_cont()
    assert (stop.reason, stop.tick, stop.addr) == ("write", t3 - 1, TICKS)
    assert tt.reverse_cont().tick == t2 - 1
    assert tt.reverse_cont().tick == t1 - 1
    stop = tt.cont()
    assert (stop.reason, stop.tick) == ("write", t1)


def test_a_divergence_is_a_stop_with_its_reason(tmp_path: Path) -> None:
    """A trace whose inputs were tampered with: continuing reports the checkpoint that the
    replay no longer reproduces, and the engine stays usable."""
    from traceenv import alter_inputs

    bad = tmp_path / "bad.aerotrace"
    alter_inputs(DEMO, bad, lambda ev: ev[ev["kind"] != ev["kind"][-1]])  # drop a kind
    c = load_contents(open_trace(bad))
    tt = TimeTravel(c)
    stop = tt.cont()
    assert stop.reason == "divergence" and "checkpoint" in stop.detail
    assert stop.tick in {int(t) for t in c.cp_ticks}
    assert tt.reverse_step().tick < stop.tick
