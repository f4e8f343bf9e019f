"""The terminal bridge for ``aero record --interactive``: raw mode that is always restored.

Keys typed go to the guest's COM1 byte for byte (Ctrl-C included). The escape character is
Ctrl-A, as in QEMU: Ctrl-A x ends the recording, Ctrl-A Ctrl-A sends one Ctrl-A.

Invariants:

* The terminal's original mode comes back on every way out: a normal return, an exception,
  Ctrl-A x, SIGTERM/SIGHUP (handled, then re-raised as the usual exit), and interpreter exit
  (atexit). Only SIGKILL can leave the terminal raw, and ``reset`` repairs that.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import termios
import tty
from types import FrameType, TracebackType

__all__ = ["ESCAPE", "RawTerminal"]

ESCAPE = 0x01  # Ctrl-A


class RawTerminal:
    """Context manager: stdin in raw mode, polled without blocking."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._saved: list | None = None
        self._old_handlers: dict[int, object] = {}
        self._escape = False
        self.quit_requested = False

    def _restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._restore()
        self.quit_requested = True

    def __enter__(self) -> RawTerminal:
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            atexit.register(self._restore)
            tty.setraw(self.fd, termios.TCSANOW)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        atexit.unregister(self._restore)

    def poll(self) -> bytes:
        """Bytes typed since the last call, escape sequences handled."""
        out = bytearray()
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 1024)
            if not data:
                self.quit_requested = True
                break
            for b in data:
                if self._escape:
                    self._escape = False
                    if b in (ord("x"), ord("X")):
                        self.quit_requested = True
                    elif b == ESCAPE:
                        out.append(ESCAPE)
                elif b == ESCAPE:
                    self._escape = True
                else:
                    out.append(b)
        return bytes(out)
