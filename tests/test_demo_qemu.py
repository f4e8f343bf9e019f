"""The demo guest (guests/demo.s) under QEMU: its shell driven over COM1 and the keyboard,
the RTC formats it converts, and its input script (guests/demo.script). Also its build."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from procenv import assert_gone

from aero.guests import SOURCE_DIR, build

needs_binutils = pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                                    reason="GNU binutils (as, ld) are not installed")
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-i386") is None,
    reason="qemu-system-i386 is not installed (Debian package qemu-system-x86)")

SCRIPT = SOURCE_DIR / "demo.script"
TICK_HZ = 100_000_000
# A fixed RTC start that QEMU advances with the virtual clock: far enough from a minute
# boundary that a run of a few seconds reads the same date.
RTC_BASE = "2024-02-29T13:45:50"
HELP = [
    "help         this list",
    "ticks        PIT interrupts since boot (100 per second)",
    "uptime       RTC update interrupts since boot (seconds)",
    "time         RTC date and time",
    "keys         scancodes received, the last 8 in hex",
    "sum N N ...  decimal sum (32-bit)",
    "echo TEXT    print TEXT",
    "exit N       write N to the debug-exit port",
]




def run_demo(steps: list, *, defines: dict[str, int] | None = None, rtc: str = RTC_BASE,
             timeout: float = 30.0):
    from aero.fuzz.qemu import run_qemu_serial

    image = build("demo", defines)
    res = run_qemu_serial(image.path, image.fmt, steps, load_addr=image.load_addr,
                          timeout=timeout, extra=("-rtc", f"base={rtc},clock=vm"))
    assert_gone(res.pid)
    return res


# ---- build ----

@needs_binutils
def test_demo_builds() -> None:
    image = build("demo")
    assert (image.fmt, image.load_addr) == ("flat", 0x7C00)
    assert image.symbols["_start"] == 0x7C00
    size = image.path.stat().st_size
    assert 0 < size and 0x7C00 + size <= 0x10000
    for handler in ("irq0_pit", "irq1_kbd", "irq4_com1", "irq8_rtc", "main_loop"):
        assert image.symbols[handler] > 0x7C00
    other = build("demo", {"RTC_FORMAT": 0x04})
    assert other.path != image.path
    assert other.path.read_bytes() != image.path.read_bytes()


# ---- the input script ----

DIRECTIVE = re.compile(r'(?:at (?P<tick>\+?\d+)|on (?P<text>"(?:[^"\\]|\\.)*"))'
                       r' (?:serial (?P<data>"(?:[^"\\]|\\.)*")'
                       r'|key (?P<key>enter|space|minus|[a-z0-9])(?=\s|$))')
QCODES = {"enter": "ret", "space": "spc", "minus": "minus"}


def script_steps(text: str) -> list:
    """The directives of a demo script as QEMU steps: `on` waits for its text, `at +TICKS`
    waits that long in wall-clock time (QEMU's clock follows the host's)."""
    from aero.fuzz.qemu import SerialStep

    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = DIRECTIVE.match(line)
        assert m, f"line {n}: not a directive: {raw!r}"
        rest = line[m.end():].strip()
        assert not rest or rest.startswith("#"), f"line {n}: trailing text {rest!r}"
        wait, delay = b"", 0.0
        if m["text"] is not None:
            wait = json.loads(m["text"]).encode()
            assert wait, f"line {n}: empty text"
        else:
            assert m["tick"].startswith("+"), f"line {n}: the script uses relative ticks"
            delay = int(m["tick"][1:]) / TICK_HZ
        if m["data"] is not None:
            steps.append(SerialStep(wait, json.loads(m["data"]).encode(), delay=delay))
        else:
            steps.append(SerialStep(wait, keys=(QCODES.get(m["key"], m["key"]),),
                                    delay=delay))
    return steps


def test_script_is_well_formed() -> None:
    pytest.importorskip("aero.fuzz.qemu")
    steps = script_steps(SCRIPT.read_text())
    assert steps[0].wait == b"> " and steps[0].send == b"help\r"
    typed = "".join(s.keys[0] for s in steps if s.keys)
    assert typed == "echospchiret"
    assert [s.delay for s in steps if s.delay] == [1.0]
    assert steps[-1].send == b"exit 3\r"


# ---- the shell over COM1 ----

# Input after each prompt, and what the guest sends back: the echo, then the output lines.
# Only commands whose output does not depend on time.
SESSION: list[tuple[bytes, str]] = [
    (b"help\r", "help\r\n" + "".join(f"{h}\r\n" for h in HELP)),
    (b"sum 1 2 39\r", "sum 1 2 39\r\n42\r\n"),
    (b"sum -5 3\r", "sum -5 3\r\n-2\r\n"),
    (b"sum 4294967295 1\r", "sum 4294967295 1\r\n0\r\n"),          # 32-bit wrap-around
    (b"sum 2147483647 1\r", "sum 2147483647 1\r\n-2147483648\r\n"),  # printed signed
    (b"sum\r", "sum\r\n0\r\n"),
    (b"sum 1 x\r", "sum 1 x\r\nusage: sum N N ...\r\n"),
    (b"echo  hello   world \r", "echo  hello   world \r\nhello   world \r\n"),
    (b"echx\x7fo ok\r", "echx\b \bo ok\r\nok\r\n"),                   # DEL erases
    (b"\x08\x08x\x08echo bs\r", "x\b \becho bs\r\nbs\r\n"),           # BS on an empty line
    (b"echo crlf\r\n", "echo crlf\r\ncrlf\r\n"),                      # CR LF ends one line
    (b"echo lf\n", "echo lf\r\nlf\r\n"),
    (b"   \r", "   \r\n"),                                            # blank: a new prompt
    (b"bogus x\r", "bogus x\r\nunknown: bogus\r\n"),
    (b"helpme\r", "helpme\r\nunknown: helpme\r\n"),
    (b"exit\r", "exit\r\nusage: exit N (0-255)\r\n"),
    (b"exit 256\r", "exit 256\r\nusage: exit N (0-255)\r\n"),
    (b"exit -1\r", "exit -1\r\nusage: exit N (0-255)\r\n"),
    (b"exit 3\r", "exit 3\r\n"),
]


@needs_binutils
@needs_qemu
def test_shell_commands_in_qemu() -> None:
    from aero.fuzz.qemu import SerialStep

    res = run_demo([SerialStep(b"> ", data) for data, _ in SESSION])
    assert not res.timed_out, res.serial
    assert res.steps_done == len(SESSION)
    expected = "aero demo\r\nrtc 2024-02-29 13:45:50\r\n> "
    expected += "> ".join(out for _, out in SESSION)
    assert res.serial.decode("latin-1") == expected
    assert res.exit_status == (3 << 1) | 1 == 7
    assert res.output == b""  # nothing on the debug console: no unexpected exception


@needs_binutils
@needs_qemu
def test_typing_ahead_is_read_in_order() -> None:
    """Input sent in one burst, before the guest is ready for it, is echoed and run line by
    line: the receive FIFO and the input ring keep every byte."""
    from aero.fuzz.qemu import SerialStep

    burst = b"".join(data for data, _ in SESSION[:8]) + b"exit 5\r"
    res = run_demo([SerialStep(b"> ", burst)])
    assert res.exit_status == 11
    text = res.serial.decode("latin-1")
    assert text.endswith("> ".join(out for _, out in SESSION[:8]) + "> exit 5\r\n")


# ---- the RTC: BCD and binary, 12- and 24-hour, the century register ----

@needs_binutils
@needs_qemu
@pytest.mark.parametrize("fmt", [0x02, 0x06, 0x00, 0x04],
                         ids=["bcd-24h", "binary-24h", "bcd-12h", "binary-12h"])
@pytest.mark.parametrize(("base", "shown"), [
    ("1999-12-31T00:30:05", "rtc 1999-12-31 00:30:05"),   # 12 AM in 12-hour mode
    ("2024-02-29T13:45:50", "rtc 2024-02-29 13:45:50"),   # PM in 12-hour mode
    ("2087-07-04T12:10:20", "rtc 2087-07-04 12:10:20"),   # 12 PM
])
def test_rtc_formats_in_qemu(fmt: int, base: str, shown: str) -> None:
    from aero.fuzz.qemu import SerialStep

    res = run_demo([SerialStep(b"> ", b"time\r"), SerialStep(b"> ", b"exit 0\r")],
                   defines={"RTC_FORMAT": fmt}, rtc=base)
    lines = res.serial.decode("latin-1").split("\r\n")
    assert lines[:4] == ["aero demo", shown, "> time", shown]
    assert res.exit_status == 1


# ---- the keyboard ----

@needs_binutils
@needs_qemu
def test_keyboard_feeds_the_line_editor_in_qemu() -> None:
    """Keys pressed through QEMU's 8042 (scancode set 2, translated to set 1) type into the
    same line as COM1 input; `keys` counts make and break codes."""
    from aero.fuzz.qemu import SerialStep

    steps = [SerialStep(b"> ", b"echo "),
             SerialStep(b"echo ", keys=("h", "i", "minus", "4", "2", "ret")),
             SerialStep(b"> ", keys=("k", "e", "y", "s", "ret")),
             SerialStep(b"> ", b"exit 3\r")]
    res = run_demo(steps)
    lines = res.serial.decode("latin-1").split("\r\n")
    assert lines[2:5] == ["> echo hi-42", "hi-42", "> keys"]
    # 11 keys pressed and released; the command runs on the last key's make code, and its
    # break code arrives while the key is held (100 ms) unless the run was very slow.
    assert lines[5] in ("keys 21: a5 12 92 15 95 1f 9f 1c", "keys 22: 12 92 15 95 1f 9f 1c 9c")
    assert res.exit_status == 7


# ---- the input script ----

@needs_binutils
@needs_qemu
def test_script_in_qemu() -> None:
    res = run_demo(script_steps(SCRIPT.read_text()))
    assert res.exit_status == 7 and res.steps_done == len(script_steps(SCRIPT.read_text()))
    lines = res.serial.decode("latin-1").split("\r\n")
    fixed = ["aero demo", "rtc 2024-02-29 13:45:50", "> help", *HELP, "> sum 1 2 39", "42",
             "> echo hi", "hi", "> ticks"]
    assert lines[:len(fixed)] == fixed
    rest = lines[len(fixed):]
    assert [re.sub(r"\d+", "N", ln) for ln in rest] == [
        "ticks N", "> uptime", "uptime N", "> time", "rtc N-N-N N:N:N", "> exit N", ""]
    ticks = int(rest[0].split()[1])
    uptime = int(rest[2].split()[1])
    assert ticks >= 100  # one second after Enter at 100 Hz
    assert uptime <= ticks // 100 + 1
    assert rest[4].startswith("rtc 2024-02-29 13:45:5")


# ---- the runner ----

@needs_binutils
@needs_qemu
def test_unmatched_wait_times_out_and_leaves_no_process() -> None:
    from aero.fuzz.qemu import SerialStep

    res = run_demo([SerialStep(b"> ", b"echo waiting\r"), SerialStep(b"never shown", b"x")],
                   timeout=3.0)
    assert res.timed_out and res.exit_status is None
    assert res.steps_done == 1
    assert res.serial.endswith(b"> echo waiting\r\nwaiting\r\n> ")
