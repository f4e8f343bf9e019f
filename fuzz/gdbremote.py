"""A small client for the GDB remote serial protocol, as QEMU's gdbstub speaks it.

Only what the QEMU backend needs: registers (``g``/``G``/``p``/``P``), memory
(``m``/``M``), single-step (``s``) and the target description (``qXfer``).

Invariants: every receive has a deadline (:class:`GdbTimeout` when the stub stops
answering); after ``QStartNoAckMode`` no acknowledgements are exchanged; a reply is
returned without its framing, run-length encoding expanded.
"""

from __future__ import annotations

import re
import socket
import time

__all__ = ["GdbClient", "GdbError", "GdbTimeout"]


class GdbError(RuntimeError):
    """The stub answered with an error (``Exx``) or something unexpected."""


class GdbTimeout(GdbError):
    """The stub did not answer within the deadline."""


def _unrle(data: str) -> str:
    """Expand the protocol's run-length encoding (``c*N``: repeat c N - 29 more times)."""
    if "*" not in data:
        return data
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == "*" and out:
            out.append(out[-1] * (ord(data[i + 1]) - 29))
            i += 2
        else:
            out.append(data[i])
            i += 1
    return "".join(out)


class GdbClient:
    """One connection to a gdbstub."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.ack = True
        self.command("QStartNoAckMode")
        self.ack = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _send(self, payload: str) -> None:
        ck = sum(payload.encode()) & 0xFF
        self.sock.sendall(f"${payload}#{ck:02x}".encode())

    def _recv(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(rb"\$([^#]*)#[0-9a-fA-F]{2}", self.buf)
            if m:
                self.buf = self.buf[m.end():]
                if self.ack:
                    self.sock.sendall(b"+")
                return _unrle(m.group(1).decode("latin-1"))
            left = deadline - time.monotonic()
            if left <= 0:
                raise GdbTimeout("the gdbstub stopped answering")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise GdbTimeout("the gdbstub stopped answering") from None
            except OSError as exc:
                raise GdbError(f"gdbstub connection failed: {exc}") from None
            if not chunk:
                raise GdbError("the gdbstub closed the connection")
            self.buf += chunk

    def command(self, payload: str, timeout: float | None = None) -> str:
        """Send one packet, return the reply; ``Exx`` replies raise GdbError."""
        self._send(payload)
        reply = self._recv(self.timeout if timeout is None else timeout)
        if len(reply) == 3 and reply[0] == "E" and payload[0] not in "?s":
            raise GdbError(f"gdbstub refused {payload[:12]!r}: {reply}")
        return reply

    def ok(self, payload: str) -> None:
        reply = self.command(payload)
        if reply != "OK":
            raise GdbError(f"gdbstub answered {reply!r} to {payload[:12]!r}")

    # ---- registers and memory ----------------------------------------------------------
    def read_registers(self) -> bytes:
        return bytes.fromhex(self.command("g"))

    def write_registers(self, data: bytes) -> None:
        self.ok("G" + data.hex())

    def write_register(self, index: int, data: bytes) -> None:
        self.ok(f"P{index:x}={data.hex()}")

    def read_memory(self, addr: int, size: int) -> bytes:
        out = b""
        while len(out) < size:
            n = min(size - len(out), 0x200)
            out += bytes.fromhex(self.command(f"m{addr + len(out):x},{n:x}"))
        return out

    def write_memory(self, addr: int, data: bytes) -> None:
        for off in range(0, len(data), 0x1F0):
            part = data[off:off + 0x1F0]
            self.ok(f"M{addr + off:x},{len(part):x}:{part.hex()}")

    def step(self, timeout: float | None = None) -> str:
        """Execute one instruction; the stop reply."""
        return self.command("s", timeout)

    def xfer(self, annex: str) -> str:
        """A target-description document."""
        out, off = "", 0
        while True:
            r = self.command(f"qXfer:features:read:{annex}:{off:x},800")
            out += r[1:]
            off += len(r) - 1
            if r[:1] != "m":
                return out
