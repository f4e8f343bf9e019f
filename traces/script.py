"""Scripted input for ``aero record --input FILE``: bytes and keys at given ticks, or once the
guest's output has shown some text.

One directive per line; ``#`` starts a comment::

    at 5000000 serial "help\\n"      # COM1 bytes from tick 5,000,000 (JSON string escapes)
    at +100000000 serial "ticks\\n"  # relative to the previous directive's tick
    on "> " serial "sum 1 2\\n"       # once COM1 output shows "> " (after the previous match)
    at +0 serial2 "x"                # COM2
    on "login:" key enter            # press and release a key (names: KEY_CODES)
    at 900000 key shift down         # hold a key; "up" releases it
    at 990000 reset | nmi            # the reset button, an NMI

Invariants:

* Directives run strictly in file order: a directive waits until the previous one has been
  injected in full. The recorder logs every injection with its tick, so replay never reads
  the script again: timing decisions made here are facts in the trace.
* The bytes of a string are spaced ``byte_gap`` ticks apart (one character time at
  115200 baud by default) and a key is held ``key_gap`` ticks, so a guest sees input at a
  pace real hardware could deliver.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aero.events import Kind

__all__ = ["Directive", "KEY_CODES", "MAX_DIRECTIVES", "MAX_EVENTS", "MAX_LINE", "MAX_TICK",
           "OUTPUT_WINDOW", "ScriptError", "ScriptRunner", "load", "parse", "parse_lines"]

# Set-2 make codes (extended keys as E0xxh): what AERO_EV_KEY carries.
KEY_CODES: dict[str, int] = {
    **dict(zip("abcdefghijklmnopqrstuvwxyz",
               (0x1C, 0x32, 0x21, 0x23, 0x24, 0x2B, 0x34, 0x33, 0x43, 0x3B, 0x42, 0x4B, 0x3A,
                0x31, 0x44, 0x4D, 0x15, 0x2D, 0x1B, 0x2C, 0x3C, 0x2A, 0x1D, 0x22, 0x35, 0x1A),
               strict=True)),
    **dict(zip("1234567890", (0x16, 0x1E, 0x26, 0x25, 0x2E, 0x36, 0x3D, 0x3E, 0x46, 0x45),
               strict=True)),
    "enter": 0x5A, "space": 0x29, "minus": 0x4E, "equals": 0x55, "backspace": 0x66,
    "tab": 0x0D, "esc": 0x76, "shift": 0x12, "rshift": 0x59, "ctrl": 0x14, "alt": 0x11,
    "period": 0x49, "comma": 0x41, "slash": 0x4A, "semicolon": 0x4C,
    "f1": 0x05, "f2": 0x06, "f3": 0x04, "f4": 0x0C, "f5": 0x03, "f6": 0x0B, "f7": 0x83,
    "f8": 0x0A, "f9": 0x01, "f10": 0x09, "f11": 0x78, "f12": 0x07,
    "rctrl": 0xE014, "ralt": 0xE011, "up": 0xE075, "down": 0xE072, "left": 0xE06B,
    "right": 0xE074, "home": 0xE06C, "end": 0xE069, "insert": 0xE070, "delete": 0xE071,
    "pageup": 0xE07D, "pagedown": 0xE07A,
}


class ScriptError(Exception):
    """A script that cannot be parsed: ``file:line: message``."""


@dataclass(frozen=True)
class Directive:
    line: int
    trigger: str  # "at" or "on"
    tick: int  # at: absolute tick, or the offset when relative
    relative: bool
    text: bytes  # on: the output to wait for
    action: str  # serial, serial2, key, reset, nmi, rtc
    data: bytes = b""  # serial bytes
    key: int = 0
    press: str = "both"  # key: both, down, up
    value: int = 0  # rtc seconds


_LINE = re.compile(r'^(at)\s+(\+?\d+)\s+(.*)$|^(on)\s+("(?:[^"\\]|\\.)*")\s+(.*)$')


def _string(token: str, where: str) -> bytes:
    try:
        s = json.loads(token)
    except json.JSONDecodeError:
        raise ScriptError(f"{where}: bad string {token}") from None
    if not isinstance(s, str):
        raise ScriptError(f"{where}: expected a string, got {token}")
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        raise ScriptError(f"{where}: only characters U+0000-U+00FF can be sent") from None


def _action(rest: str, where: str) -> dict:
    rest = rest.strip()
    word, _, arg = rest.partition(" ")
    arg = arg.strip()
    if word in ("serial", "serial2"):
        if not (arg.startswith('"') and arg.endswith('"') and len(arg) >= 2):
            raise ScriptError(f"{where}: {word} takes a quoted string")
        return {"action": word, "data": _string(arg, where)}
    if word == "key":
        name, _, press = arg.partition(" ")
        press = press.strip() or "both"
        if name not in KEY_CODES:
            raise ScriptError(f"{where}: unknown key {name!r} (known: {', '.join(KEY_CODES)})")
        if press not in ("both", "down", "up"):
            raise ScriptError(f"{where}: key {name} takes 'down', 'up' or nothing")
        return {"action": "key", "key": KEY_CODES[name], "press": press}
    if word in ("reset", "nmi") and not arg:
        return {"action": word}
    if word == "rtc" and re.fullmatch(r"-?\d{1,19}", arg) and abs(int(arg)) <= MAX_TICK:
        return {"action": "rtc", "value": int(arg)}
    raise ScriptError(f"{where}: unknown action {rest!r} (serial, serial2, key, reset, nmi, rtc)")


MAX_LINE = 16 << 10  # characters of one line
MAX_DIRECTIVES = 100_000  # directives in one script
MAX_EVENTS = 1 << 20  # input events one script may produce (bytes and key presses)
MAX_TICK = (1 << 63) - 1  # ticks (absolute and relative) and the RTC value are 63-bit
OUTPUT_WINDOW = 1 << 20  # "on" looks for its text in at most this much recent output


def _lines(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        nl = text.find("\n", start)
        end = len(text) if nl < 0 else nl
        yield text[start:end]
        start = end + 1


def parse(text: str, name: str = "script") -> list[Directive]:
    return parse_lines(_lines(text), name)


def parse_lines(lines: Iterable[str], name: str = "script") -> list[Directive]:
    """Directives from lines of text, within the limits above (ScriptError past them)."""
    out: list[Directive] = []
    events = 0
    for no, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE:
            raise ScriptError(f"{name}:{no}: line longer than {MAX_LINE} characters")
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        # A comment after the directive: outside any string.
        m = re.match(r'^((?:[^"#]|"(?:[^"\\]|\\.)*")*)', line)
        line = (m.group(1) if m else line).strip()
        where = f"{name}:{no}"
        mt = _LINE.match(line)
        if not mt:
            raise ScriptError(f"{where}: expected 'at TICK ACTION' or 'on \"TEXT\" ACTION'")
        if mt.group(1):
            t = mt.group(2)
            digits = t.lstrip("+")
            if len(digits) > 19 or int(digits) > MAX_TICK:
                raise ScriptError(f"{where}: tick {digits[:24]} is beyond {MAX_TICK}")
            d = Directive(no, "at", int(digits), t.startswith("+"), b"",
                          **_action(mt.group(3), where))
        else:
            d = Directive(no, "on", 0, False, _string(mt.group(5), where),
                          **_action(mt.group(6), where))
        events += len(d.data) if d.action in ("serial", "serial2") else 2
        if len(out) >= MAX_DIRECTIVES:
            raise ScriptError(f"{where}: more than {MAX_DIRECTIVES} directives")
        if events > MAX_EVENTS:
            raise ScriptError(f"{where}: the script produces more than {MAX_EVENTS} inputs")
        out.append(d)
    return out


def load(path: str | Path) -> list[Directive]:
    """Parse a script file, read line by line: a line longer than MAX_LINE is refused when
    it is met, without reading the rest of it."""
    p = Path(path)

    def lines(f: TextIO) -> Iterator[str]:
        while True:
            line = f.readline(MAX_LINE + 2)
            if not line:
                return
            if len(line) > MAX_LINE + 1 or (len(line) == MAX_LINE + 1 and
                                             not line.endswith("\n")):
                yield line  # too long: parse_lines names the line
                return
            yield line.rstrip("\n")

    try:
        with open(p, encoding="utf-8", newline="\n") as f:
            return parse_lines(lines(f), str(p))
    except OSError as exc:
        raise ScriptError(f"{p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScriptError(f"{p}: not UTF-8 text") from None


@dataclass
class ScriptRunner:
    """Turns directives into injections as the recording goes.

    The recorder calls :meth:`feed` with guest COM1 output, asks :meth:`next_tick` how far it
    may run, and takes :meth:`due` injections at the current tick."""

    directives: list[Directive]
    byte_gap: int
    key_gap: int
    _pos: int = 0
    _last_tick: int = 0
    _output: bytearray = field(default_factory=bytearray)
    _search_from: int = 0
    _queue: deque[tuple[int, int, int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._queue = deque(self._queue)  # callers may pass a list of prepared injections

    @classmethod
    def paced(cls, directives: list[Directive], tick_hz: int) -> ScriptRunner:
        """A runner at the default pace: one character time at 115200 baud 8N1 (10 bits)
        between bytes, keys held 10 ms of guest time."""
        return cls(directives, byte_gap=tick_hz * 10 // 115200, key_gap=tick_hz // 100)

    @property
    def finished(self) -> bool:
        return self._pos >= len(self.directives) and not self._queue

    @property
    def waiting_for_output(self) -> bool:
        return not self._queue and self._pos < len(self.directives) and \
            self.directives[self._pos].trigger == "on"

    def feed(self, data: bytes) -> None:
        """Guest output; only the last OUTPUT_WINDOW bytes after the previous match are
        kept for "on" to search."""
        self._output += data
        if len(self._output) > 2 * OUTPUT_WINDOW:
            cut = max(self._search_from, len(self._output) - OUTPUT_WINDOW)
            del self._output[:cut]
            self._search_from = max(0, self._search_from - cut)

    def _expand(self, d: Directive, t0: int) -> None:
        q = self._queue
        if d.action in ("serial", "serial2"):
            port = 0 if d.action == "serial" else 1
            q += [(t0 + i * self.byte_gap, Kind.SERIAL_RX, port, b) for i, b in enumerate(d.data)]
        elif d.action == "key":
            if d.press in ("both", "down"):
                q.append((t0, Kind.KEY, d.key, 1))
            if d.press in ("both", "up"):
                q.append((t0 + (self.key_gap if d.press == "both" else 0), Kind.KEY, d.key, 0))
        elif d.action == "reset":
            q.append((t0, Kind.RESET, 0, 0))
        elif d.action == "nmi":
            q.append((t0, Kind.NMI, 0, 0))
        else:
            q.append((t0, Kind.RTC_TIME, 0, d.value & 0xFFFFFFFFFFFFFFFF))
        self._last_tick = t0

    def _advance(self, now: int) -> None:
        """Trigger directives whose condition holds at tick ``now``."""
        while not self._queue and self._pos < len(self.directives):
            d = self.directives[self._pos]
            if d.trigger == "at":
                t0 = self._last_tick + d.tick if d.relative else d.tick
                self._expand(d, max(t0, now))
            else:
                i = self._output.find(d.text, self._search_from)
                if i < 0:
                    return
                self._search_from = i + len(d.text)
                self._expand(d, now)
            self._pos += 1

    def next_tick(self, now: int) -> int | None:
        """The tick of the next injection, if it is known yet."""
        self._advance(now)
        return self._queue[0][0] if self._queue else None

    def due(self, now: int) -> list[tuple[int, int, int]]:
        """Injections to make at tick ``now``, as (kind, a, b)."""
        self._advance(now)
        out = []
        while self._queue and self._queue[0][0] <= now:
            _, kind, a, b = self._queue.popleft()
            out.append((kind, a, b))
            if not self._queue:
                self._advance(now)
        return out
