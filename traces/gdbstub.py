"""A GDB remote-protocol server on a replay: registers, memory, breakpoints, watchpoints,
forward and reverse execution (``aero replay TRACE --gdb PORT``).

Invariants:

* One client at a time; the server ends when it detaches, kills or disconnects. It listens
  on 127.0.0.1 unless another address is given explicitly.
* A replay is read-only: register and memory writes (G, P, M, X) get an error reply and a
  console message; nothing a client sends changes the trace.
* Every packet gets a reply (the empty one when unknown or malformed); no packet can crash
  the server or leave the client waiting: the end of the trace and a divergence are stops
  with a reason (``replaylog:end`` and a console message).
* Addresses are linear (CS base + EIP for breakpoints; memory reads go through the current
  page tables); the PC gdb sees is EIP.
* Execution is :class:`aero.traces.timetravel.TimeTravel`: forward runs go in slices and
  poll the socket for the interrupt byte (0x03) between them.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable

from aero.traces.replay import TraceContents
from aero.traces.timetravel import Point, Stop, TimeTravel, TravelError

from aero.devstate import decode as decode_devices
from aero.machine import SEGMENT_NAMES, WATCH_MAX, Regs

__all__ = ["CORE_REGS", "GdbServer", "SYSTEM_REGS", "TARGET_XML", "serve"]

PACKET_SIZE = 0x4000
READ_ONLY = ("aero: a replay cannot be edited: registers and memory are read-only (the "
             "write was refused)\n")
SIGTRAP, SIGINT = 5, 2

# The i386 core feature: gdb's register numbering (16 general, 8 x87 stack, 8 x87 control).
CORE_REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
             "cs", "ss", "ds", "es", "fs", "gs")
X87_REGS = tuple(f"st{i}" for i in range(8)) + (
    "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
SYSTEM_REGS = ("cr0", "cr2", "cr3", "cr4", "gdtr_base", "gdtr_limit", "idtr_base",
               "idtr_limit", "ldtr", "tr", "es_base", "cs_base", "ss_base", "ds_base",
               "fs_base", "gs_base", "dr0", "dr1", "dr2", "dr3", "dr6", "dr7", "cpl")
FIRST_SYSTEM = len(CORE_REGS) + len(X87_REGS)


def _target_xml() -> str:
    core = []
    types = {"eip": "code_ptr", "esp": "data_ptr", "ebp": "data_ptr", "eflags": "i386_eflags"}
    for i, name in enumerate(CORE_REGS):
        core.append(f'<reg name="{name}" bitsize="32" type="{types.get(name, "int32")}" '
                    f'regnum="{i}"/>')
    for i, name in enumerate(X87_REGS):
        n = len(CORE_REGS) + i
        if name.startswith("st"):
            core.append(f'<reg name="{name}" bitsize="80" type="i387_ext" regnum="{n}"/>')
        else:
            core.append(f'<reg name="{name}" bitsize="32" type="int" group="float" '
                        f'regnum="{n}"/>')
    flags = [f.split(":") for f in ("CF:0 PF:2 AF:4 ZF:6 SF:7 TF:8 IF:9 DF:10 OF:11 NT:14 "
                                    "RF:16 VM:17 AC:18 VIF:19 VIP:20 ID:21").split()]
    fields = "".join(f'<field name="{n}" start="{b}" end="{b}"/>' for n, b in flags)
    system = "".join(f'<reg name="{name}" bitsize="32" '
                     f'type="{"data_ptr" if "base" in name else "int"}" '
                     f'group="system" regnum="{FIRST_SYSTEM + i}"/>'
                     for i, name in enumerate(SYSTEM_REGS))
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            '<target version="1.0"><architecture>i386</architecture>'
            '<feature name="org.gnu.gdb.i386.core">'
            f'<flags id="i386_eflags" size="4">{fields}</flags>{"".join(core)}</feature>'
            f'<feature name="org.aero.i386.system">{system}</feature></target>')


TARGET_XML = _target_xml()


def _reg_values(r: Regs) -> dict[str, int]:
    v = {name: getattr(r, name) for name in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi",
                                              "edi", "eip", "eflags")}
    for name in SEGMENT_NAMES:
        seg = getattr(r, name)
        v[name] = seg.selector
        v[f"{name}_base"] = seg.base
    v.update(cr0=r.cr0, cr2=r.cr2, cr3=r.cr3, cr4=r.cr4, gdtr_base=r.gdtr_base,
             gdtr_limit=r.gdtr_limit, idtr_base=r.idtr_base, idtr_limit=r.idtr_limit,
             ldtr=r.ldtr.selector, tr=r.tr.selector, dr0=r.dr[0], dr1=r.dr[1], dr2=r.dr[2],
             dr3=r.dr[3], dr6=r.dr[6], dr7=r.dr[7], cpl=r.cpl)
    return v


def _le32(value: int) -> str:
    return struct.pack("<I", value & 0xFFFFFFFF).hex()


def _checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def _escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


class ClientGone(Exception):
    """The client closed the connection."""


class GdbServer:
    """Serves one connected gdb on a :class:`TimeTravel` engine."""

    def __init__(self, tt: TimeTravel, conn: socket.socket,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.tt = tt
        self.conn = conn
        self.log = log
        self.buf = bytearray()
        self.ack = True
        self.breaks: dict[tuple[str, int, int], Point] = {}
        self.last_stop: Stop | None = None
        self.done = False
        self.pending_console = ""  # a console message for the next stop reply

    # ---- transport -------------------------------------------------------------------
    def _recv(self) -> None:
        data = self.conn.recv(65536)
        if not data:
            raise ClientGone
        self.buf += data

    def read_packet(self) -> bytes | None:
        """The next packet's payload (None for a lone interrupt byte). A packet with a bad
        checksum is answered '-' (in acknowledgment mode) and skipped."""
        while True:
            while self.buf[:1] in (b"+", b"-"):
                del self.buf[0]
            if self.buf[:1] == b"\x03":
                del self.buf[0]
                return None
            if self.buf and self.buf[:1] != b"$":
                start = self.buf.find(b"$")
                del self.buf[:start if start > 0 else len(self.buf)]  # noise
                continue
            end = self.buf.find(b"#")
            if self.buf and end > 0 and len(self.buf) >= end + 3:
                payload = bytes(self.buf[1:end])
                csum = bytes(self.buf[end + 1:end + 3])
                del self.buf[:end + 3]
                if self.ack:
                    if csum.lower() != _checksum(payload):
                        self.conn.sendall(b"-")
                        continue
                    self.conn.sendall(b"+")
                return _unescape(payload)
            self._recv()

    def send(self, payload: str | bytes) -> None:
        data = payload.encode("latin-1") if isinstance(payload, str) else payload
        data = _escape(data)
        self.conn.sendall(b"$" + data + b"#" + _checksum(data))
        if self.ack:
            # Wait for the acknowledgment (a retransmission request resends once).
            while True:
                while not self.buf:
                    self._recv()
                c = self.buf[0]
                if c == ord("+"):
                    del self.buf[0]
                    return
                if c == ord("-"):
                    del self.buf[0]
                    self.conn.sendall(b"$" + data + b"#" + _checksum(data))
                    continue
                return  # a packet arrived without an ack: take it as acknowledged

    def console(self, text: str) -> None:
        """A console message (an 'O' packet) gdb prints as it comes."""
        for i in range(0, len(text), 512):
            self.send("O" + text[i:i + 512].encode().hex())

    def _interrupted(self) -> bool:
        """Did the client send the interrupt byte (or hang up)? Polled between slices."""
        if b"\x03" in self.buf:  # it came with the resume packet
            del self.buf[self.buf.index(b"\x03")]
            return True
        r, _, _ = select.select([self.conn], [], [], 0)
        if r:
            try:
                self._recv()
            except (ClientGone, OSError):
                self.done = True
                return True
            if b"\x03" in self.buf:
                i = self.buf.index(b"\x03")
                del self.buf[i]
                return True
        return False

    # ---- the session -----------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self.done:
                pkt = self.read_packet()
                if pkt is None:
                    continue  # an interrupt while stopped: nothing to stop
                try:
                    reply = self.handle(pkt)
                except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                    reply = ""  # malformed
                except (ClientGone, ConnectionError):
                    raise
                except Exception as exc:  # noqa: BLE001 - the session must outlive any request
                    self.log(f"aero: {pkt[:40]!r} failed: {type(exc).__name__}: {exc}")
                    reply = "E01"
                if reply is not None:
                    self.send(reply)
        except (ClientGone, ConnectionError, OSError):
            self.log("gdb disconnected")

    def handle(self, pkt: bytes) -> str | None:
        s = pkt.decode("latin-1")
        if not s:
            return ""
        c, rest = s[0], s[1:]
        if s.startswith("qSupported"):
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;QStartNoAckMode+;"
                    "ReverseStep+;ReverseContinue+;swbreak+;hwbreak+;vContSupported+")
        if s == "QStartNoAckMode":
            self.send("OK")
            self.ack = False
            return None
        if s.startswith("qXfer:features:read:"):
            return self._xfer(s[len("qXfer:features:read:"):])
        if c == "?":
            return self._stop_reply(self.last_stop or Stop("step", self.tt.tick), signal=SIGTRAP)
        if c == "g":
            return self._g()
        if c == "p":
            return self._p(int(rest, 16))
        if c in "GPMX":
            # gdb takes console output only around a stop: the message goes out with the
            # next one; the error reply carries it as text for the gdbs that show it.
            self.pending_console = READ_ONLY
            return "E.a replay cannot be edited"
        if c == "m":
            addr, length = (int(x, 16) for x in rest.split(","))
            data = self.tt.read_linear(addr, min(length, PACKET_SIZE // 2))
            return data.hex() if data or not length else "E14"
        if c in "zZ":
            return self._point(c == "Z", rest)
        if c == "H" or s.startswith("T") or s == "qSymbol::":
            return "OK"
        if s == "qC":
            return "QC1"
        if s == "qfThreadInfo":
            return "m1"
        if s == "qsThreadInfo":
            return "l"
        if s.startswith("qAttached"):
            return "1"
        if s.startswith("qRcmd,"):
            return self._monitor(bytes.fromhex(s[6:]).decode("utf-8", "replace"))
        if s == "vCont?":
            return "vCont;c;C;s;S"
        if s.startswith("vCont;"):
            action = s[6:].split(";")[0].split(":")[0]
            if action[:1] in ("c", "C"):
                return self._resume("c")
            if action[:1] in ("s", "S"):
                return self._resume("s")
            return ""
        if c in "cCsS" and (c in "cs" or rest[:2]):
            return self._resume(c.lower())
        if s in ("bc", "bs"):
            return self._resume(s)
        if c == "D":
            self.done = True
            self.send("OK")
            self.log("gdb detached")
            return None
        if c == "k" or s.startswith("vKill"):
            self.done = True
            if s.startswith("vKill"):
                self.send("OK")
            self.log("gdb killed the session")
            return None
        return ""

    # ---- registers -------------------------------------------------------------------
    def _g(self) -> str:
        v = _reg_values(self.tt.m.get_regs())
        out = "".join(_le32(v[name]) for name in CORE_REGS)
        out += "xx" * (10 * 8 + 4 * 8)  # no x87 unit: unavailable
        return out

    def _p(self, n: int) -> str:
        v = _reg_values(self.tt.m.get_regs())
        if n < len(CORE_REGS):
            return _le32(v[CORE_REGS[n]])
        if n < FIRST_SYSTEM:
            return "xx" * (10 if n < len(CORE_REGS) + 8 else 4)
        if n - FIRST_SYSTEM < len(SYSTEM_REGS):
            return _le32(v[SYSTEM_REGS[n - FIRST_SYSTEM]])
        return "E45"

    def _xfer(self, arg: str) -> str:
        annex, span = arg.split(":", 1)
        if annex != "target.xml":
            return "E00"
        off, length = (int(x, 16) for x in span.split(","))
        chunk = TARGET_XML[off:off + length]
        return ("l" if off + length >= len(TARGET_XML) else "m") + chunk

    # ---- breakpoints and watchpoints ----------------------------------------------------
    def _point(self, insert: bool, rest: str) -> str:
        kind_s, addr_s, size_s = rest.split(";")[0].split(",")
        kind = int(kind_s)
        addr, size = int(addr_s, 16), int(size_s, 16)
        if kind not in range(5):
            return ""
        pk = ("exec", "exec", "write", "read", "access")[kind]
        key = (pk, addr, 1 if pk == "exec" else size)
        if insert:
            if key in self.breaks:
                return "OK"
            if len(self.breaks) >= WATCH_MAX:
                return "E0e"  # gdb reports it cannot insert more
            self.breaks[key] = Point(pk, addr, key[2])
        else:
            self.breaks.pop(key, None)
        try:
            self.tt.set_points(list(self.breaks.values()))
        except TravelError:
            self.breaks.pop(key, None)
            return "E0e"
        return "OK"

    # ---- execution -------------------------------------------------------------------
    def _resume(self, how: str) -> str:
        tt = self.tt
        if how == "c":
            stop = tt.cont(poll=self._interrupted)
        elif how == "s":
            stop = tt.step()
        elif how == "bs":
            stop = tt.reverse_step()
        else:
            stop = tt.reverse_cont(poll=self._interrupted)
        self.last_stop = stop
        if self.done:
            return ""
        if self.pending_console:
            self.console(self.pending_console)
            self.pending_console = ""
        if stop.reason == "divergence":
            self.console(f"aero: the replay diverged at tick {stop.tick}: {stop.detail}\n")
        elif stop.reason == "end":
            self.console(f"aero: {stop.detail}\n")
        return self._stop_reply(stop, SIGINT if stop.reason == "interrupt" else SIGTRAP)

    def _stop_reply(self, stop: Stop, signal: int) -> str:
        r = self.tt.m.get_regs()
        parts = [f"T{signal:02x}", f"08:{_le32(r.eip)};04:{_le32(r.esp)};05:{_le32(r.ebp)};",
                 "thread:1;"]
        if stop.reason in ("write", "read", "access"):
            name = {"write": "watch", "read": "rwatch", "access": "awatch"}[stop.reason]
            parts.append(f"{name}:{stop.addr:x};")
        elif stop.reason == "exec":
            parts.append("swbreak:;")
        elif stop.reason == "begin":
            parts.append("replaylog:begin;")
        elif stop.reason in ("end", "divergence"):
            parts.append("replaylog:end;")
        return "".join(parts)

    # ---- monitor -----------------------------------------------------------------------
    def _monitor(self, cmd: str) -> str:
        words = cmd.split()
        tt = self.tt
        if words == ["tick"]:
            self.console(f"{tt.tick}\n")
        elif len(words) == 2 and words[0] == "seek":
            try:
                tick = int(words[1], 0)
            except ValueError:
                self.console(f"aero: not a tick: {words[1]}\n")
                return "OK"
            stop = tt.goto(tick)
            self.last_stop = stop
            self.console(f"at tick {tt.tick}, eip {tt.m.get_regs().eip:#x} (run "
                         f"'maint flush register-cache' to see the new registers)\n")
        elif words == ["info", "devices"]:
            lines = []
            for dev, fields in decode_devices(tt.m.devices_state_bytes()).items():
                lines.append(f"{dev}:")
                lines += [f"  {k} = {v}" for k, v in fields.items()]
            self.console("\n".join(lines) + "\n")
        elif words == ["info", "trace"]:
            self.console(f"ticks {tt.begin_tick}-{tt.end_tick}, at {tt.tick}; "
                         f"{len(tt.c.keyframes)} keyframes, {len(tt.c.inputs)} inputs\n")
        else:
            self.console("aero monitor commands: tick | seek TICK | info devices | "
                         "info trace\n")
        return "OK"


def _unescape(data: bytes) -> bytes:
    if b"}" not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            out.append(next(it, 0x20) ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def parse_address(spec: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port_s = spec.rpartition(":")
    port = int(port_s, 10)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return (host.strip("[]") or "127.0.0.1"), port


def serve(contents: TraceContents, address: str, *, start_tick: int = 0,
          log: Callable[[str], None] = print,
          ready: Callable[[int], None] | None = None) -> int:
    """Listen on ``address`` ([HOST:]PORT), serve one gdb until it detaches or goes away.
    Returns the number of the port it listened on (useful with port 0)."""
    host, port = parse_address(address)
    tt = TimeTravel(contents)
    if start_tick:
        tt.goto(start_tick)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        bound = srv.getsockname()[1]
        log(f"aero: gdb server on {host}:{bound} at tick {tt.tick} (of {tt.end_tick}); "
            f"connect with: gdb -ex 'set architecture i386' -ex 'target remote "
            f"{host}:{bound}'")
        if ready is not None:
            ready(bound)
        conn, peer = srv.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log(f"aero: gdb connected from {peer[0]}")
        GdbServer(tt, conn, log).serve()
    return bound
