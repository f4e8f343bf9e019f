"""What every ``aero`` command shares: exit codes, the one-line error, the argument
grammar (ticks, sizes, speeds, files, ``latest``, ``-``), and the progress display.

Exit codes, the same for every command:

* 0: success (``run`` and ``record`` exit like qemu-system-i386 when the guest wrote the
  debug-exit port: ``(value << 1) | 1``)
* 1: the check failed (test failures, divergences)
* 2: usage error or bad input (bad argument, missing file, damaged data): one line
  ``aero: error: ...`` on stderr, never a traceback
* 125: ``replay --check`` could not evaluate the trace (for ``git bisect run``)
* 130: interrupted (Ctrl-C)
* 141: stdout was closed early (``aero run --list | head``): 128 + SIGPIPE, what a shell
  reports for a C tool killed by SIGPIPE, with nothing on stderr

Every type function below checks the value's range as well as its form, so that argparse
rejects bad values before a command starts; the messages are one line.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_ERROR, EXIT_SKIP = 0, 1, 2, 125
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE

TICK_MAX = 2**63 - 1
SPEED_MIN, SPEED_MAX = 0.001, 1000.0
RAM_MIN, RAM_MAX = 1 << 20, 0xF000_0000


class CliError(Exception):
    """A user-facing error: printed as one line ``aero: error: <message>``, exit code 2."""


class UsageError(CliError):
    """A command line argparse rejected (bad option, bad value)."""


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so an error is always a single line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip()) or \
        "unknown error"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad argument raises :class:`UsageError` (printed by
    ``aero.cli.main`` as ``aero: error: COMMAND: MESSAGE``) instead of printing the usage
    and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        where = self.prog.removeprefix("aero").strip()
        raise UsageError(f"{where}: {message}" if where else message)


# ---- numbers ----------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[0-9](_?[0-9])*")
_HEX = re.compile(r"0[xX](_?[0-9a-fA-F])+")
_SCIENTIFIC = re.compile(r"[0-9](_?[0-9])*(\.[0-9](_?[0-9])*)?[eE]\+?[0-9]+")


def parse_int(text: str, *, lo: int = 0, hi: int = TICK_MAX, what: str = "value") -> int:
    """The one integer grammar of the command line: decimal with optional ``_``
    (``20_000_000``), hexadecimal ``0x...``, or scientific notation that is an exact
    integer (``1e9``, ``2.5e6``). No sign: negative values are rejected, as are fractions,
    ``inf``/``nan`` and anything outside ``lo..hi``. Raises ArgumentTypeError (one line)."""
    s = text.strip()
    if s.startswith("-") and s[1:2].isdigit():
        raise argparse.ArgumentTypeError(f"{what} must not be negative: {text!r}")
    if _DECIMAL.fullmatch(s):
        value = int(s.replace("_", ""), 10)
    elif _HEX.fullmatch(s):
        value = int(s[2:].replace("_", ""), 16)
    elif _SCIENTIFIC.fullmatch(s):
        mantissa, _, exponent = s.replace("_", "").lower().partition("e")
        if int(exponent) > 30:
            raise argparse.ArgumentTypeError(f"{what} is too large: {text!r}")
        d = Decimal(mantissa).scaleb(int(exponent))
        if d != d.to_integral_value():
            raise argparse.ArgumentTypeError(f"{what} must be a whole number: {text!r}")
        value = int(d)
    else:
        try:
            Decimal(s.replace("_", ""))
        except InvalidOperation:
            raise argparse.ArgumentTypeError(
                f"{what} must be an integer (1000, 1_000, 0x3e8 or 1e3): {text!r}") from None
        raise argparse.ArgumentTypeError(f"{what} must be a whole number: {text!r}")
    if value < lo:
        raise argparse.ArgumentTypeError(f"{what} must be at least {lo:,}: {text!r}")
    if value > hi:
        raise argparse.ArgumentTypeError(f"{what} must be at most {hi:,}: {text!r}")
    return value


def integer(what: str, lo: int = 0, hi: int = TICK_MAX):  # noqa: ANN201 - a type function
    """An argparse type: :func:`parse_int` with a name and a range."""
    def parse(text: str) -> int:
        return parse_int(text, lo=lo, hi=hi, what=what)

    parse.__name__ = what.replace(" ", "_")
    # The grammar and range, for the tests that walk the parser with hostile values.
    parse.grammar = "integer"  # type: ignore[attr-defined]
    parse.lo, parse.hi = lo, hi  # type: ignore[attr-defined]
    return parse


tick = integer("tick")
ticks = integer("tick count")
interval = integer("interval", lo=1)
address = integer("address", hi=0xFFFF_FFFF)


def ram_size(text: str) -> int:
    """A RAM size: the integer grammar with an optional binary suffix K, M or G (also KiB,
    MB...: all powers of 1024; ``32M``); 1 MiB to 3.75 GiB, a multiple of 4 KiB."""
    m = re.fullmatch(r"(.*?)([kmg])(i?b)?", text.strip(), flags=re.I)
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()] if m else 1
    body = m.group(1) if m else text
    value = parse_int(body, lo=0, hi=RAM_MAX, what="RAM size") * scale
    if not RAM_MIN <= value <= RAM_MAX:
        raise argparse.ArgumentTypeError(
            f"RAM size must be between 1M and {RAM_MAX:#x} (3.75G): {text!r}")
    if value % 4096:
        raise argparse.ArgumentTypeError(f"RAM size must be a multiple of 4K: {text!r}")
    return value


ram_size.grammar = "size"  # type: ignore[attr-defined]


def tick_list(text: str) -> list[int]:
    """Comma-separated ticks, each in the tick grammar."""
    items = [x for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"no ticks in {text!r}")
    return [parse_int(x, what="tick") for x in items]


# ---- speeds -----------------------------------------------------------------------------------

SPEED_WORDS = "max, realtime or xN"


def speed(text: str) -> float:
    """The one speed vocabulary: ``max`` (as fast as possible: ``math.inf``), ``realtime``
    (guest time = wall time: 1.0), ``xN`` (N times real time, 0.001 <= N <= 1000: N).
    ``instant`` is accepted as another word for ``max``."""
    s = text.strip().lower()
    if s in ("max", "instant"):
        return math.inf
    if s == "realtime":
        return 1.0
    if s.startswith("x"):
        try:
            factor = float(s[1:])
        except ValueError:
            factor = math.nan
        if math.isfinite(factor) and SPEED_MIN <= factor <= SPEED_MAX:
            return factor
        if math.isfinite(factor) and factor > 0:
            raise argparse.ArgumentTypeError(
                f"speed factor must be between x{SPEED_MIN:g} and x{SPEED_MAX:g}: {text!r}")
    raise argparse.ArgumentTypeError(f"speed is {SPEED_WORDS} (N > 0), not {text!r}")


speed.grammar = "speed"  # type: ignore[attr-defined]
tick_list.grammar = "integer"  # type: ignore[attr-defined]


# ---- files ------------------------------------------------------------------------------------

STDIO = "-"


def existing_file(text: str, *, what: str = "file") -> Path:
    """A file that exists and is not a directory."""
    if not text:
        raise argparse.ArgumentTypeError(f"empty {what} name")
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a {what}")
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such {what}")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return p


def input_file(text: str) -> str:
    """An input file, or ``-`` for stdin."""
    if text == STDIO:
        return text
    return str(existing_file(text))


def script_file(text: str) -> str:
    """``record --input``: a script file, ``-`` for stdin, or the bare name of a script that
    ships with the bundled guests (``linux.script``, ``demo.script`` in guests/) when no file
    of that name exists in the current directory."""
    if text == STDIO:
        return text
    p = Path(text)
    if not p.exists() and text.endswith(".script") and p.name == text:
        from aero import guests

        bundled = guests.SOURCE_DIR / text
        if bundled.is_file():
            return str(bundled)
    return str(existing_file(text))


existing_file.grammar = "input"  # type: ignore[attr-defined]
input_file.grammar = "input"  # type: ignore[attr-defined]
script_file.grammar = "input"  # type: ignore[attr-defined]


def _writable_target(text: str, what: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError(f"empty {what} name")
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a {what}")
    parent = p.parent
    if not parent.exists():
        raise argparse.ArgumentTypeError(f"{text}: directory {parent} does not exist")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: not writable")
    return p


def output_stream(text: str) -> str:
    """An output file that may be a stream: ``-`` is stdout."""
    if text == STDIO:
        return text
    return str(_writable_target(text, "file"))


def output_file(what: str = "file"):  # noqa: ANN201 - a type function
    """An output file that must be seekable (a trace, a snapshot): ``-`` is refused."""
    def parse(text: str) -> Path:
        if text == STDIO:
            raise argparse.ArgumentTypeError(
                f"'-' (stdout) cannot take a {what}: it is written in place, give a file name")
        return _writable_target(text, what)

    parse.__name__ = what.replace(" ", "_")
    parse.grammar = "output"  # type: ignore[attr-defined]
    return parse


output_stream.grammar = "output"  # type: ignore[attr-defined]


def existing_dir(text: str) -> Path:
    """A directory that exists."""
    if not text:
        raise argparse.ArgumentTypeError("empty directory name")
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text}: not a directory{'' if p.exists() else ' (it does not exist)'}")
    return p


# ---- traces -----------------------------------------------------------------------------------

LATEST = "latest"


def latest_trace() -> Path:
    """The trace ``<trace dir>/latest`` points to (what ``aero record`` wrote last)."""
    from aero.traces.record import trace_dir

    link = trace_dir() / LATEST
    if not link.exists():
        if link.is_symlink():
            raise CliError(f"{link} points to {os.readlink(link)}, which no longer exists")
        raise CliError(f"no trace given and no {link} (record one first)")
    return link.resolve()


def resolve_trace(value: str | os.PathLike[str] | None) -> Path:
    """The one trace resolver of every command: nothing or ``latest`` is the latest
    recording, anything else a trace file that exists (``./latest`` for a file of that
    name). Raises CliError."""
    if value is None or str(value) == LATEST:
        return latest_trace()
    try:
        return existing_file(str(value), what="trace")
    except argparse.ArgumentTypeError as exc:
        raise CliError(str(exc)) from None


existing_dir.grammar = "dir"  # type: ignore[attr-defined]


def trace_path(value: Path | None) -> Path:
    """A parsed trace argument (see :func:`trace_arg`), or the latest recording for
    nothing."""
    return value if value is not None else latest_trace()


def trace_arg(text: str) -> Path:
    """argparse type of a trace argument: ``latest`` or an existing file."""
    try:
        return resolve_trace(text)
    except CliError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


trace_arg.grammar = "input"  # type: ignore[attr-defined]


def add_trace_argument(p: argparse.ArgumentParser, *, optional: bool = True,
                       name: str = "trace", help: str | None = None) -> argparse.Action:
    """A trace positional: ``latest``, a file, or (when ``optional``) nothing = latest."""
    text = help or ("trace file, or 'latest' for the latest recording" +
                    (" (the default)" if optional else ""))
    action = p.add_argument(name, nargs="?" if optional else None, type=trace_arg,
                            default=None, metavar=name.upper(), help=text)
    mark_path(action)
    return action


def mark_path(action: argparse.Action, kind: str = "file") -> argparse.Action:
    """Tell the shell-completion generator that ``action`` takes a file (or ``dir``)."""
    action.aero_complete = kind  # type: ignore[attr-defined]
    return action


# ---- options shared by run and record ---------------------------------------------------------

def add_guest_options(p: argparse.ArgumentParser, ram_default: int = 32 << 20) -> None:
    """How a guest is loaded, as ``run`` and ``record`` take it: --format, --load-addr,
    --ram, a Linux kernel's --initrd and --append, and a --disk."""
    p.add_argument("--format", choices=("auto", "flat", "rom", "multiboot", "linux"),
                   default="auto",
                   help="image format (default auto: a Linux bzImage by its HdrS header, "
                        "multiboot for ELF, rom for .rom files, flat otherwise)")
    p.add_argument("--load-addr", type=address, default=0x7C00, metavar="ADDR",
                   help="physical load and entry address of a flat binary (default 0x7C00)")
    p.add_argument("--ram", type=ram_size, default=None, metavar="BYTES",
                   help=f"RAM size: bytes or with K/M/G, a multiple of 4K from 1M to 3.75G "
                        f"(default {ram_default >> 20}M; 128M for the bundled Linux guest)")
    mark_path(p.add_argument("--initrd", metavar="FILE", default=None,
                             help="initial ramdisk for a Linux kernel"))
    mark_path(p.add_argument("--disk", metavar="FILE[,rw]", default=None,
                             help="raw disk image (a multiple of 512 bytes) on the primary IDE "
                                  "channel, read-only; FILE,rw: the guest's writes go to a "
                                  "copy-on-write overlay (the file is never written); boot it "
                                  "with the guest `pc` (SeaBIOS)"))
    mark_path(p.add_argument("--disk-save", metavar="OUT", default=None,
                             help="with --disk FILE,rw: at the end, write the disk as the guest "
                                  "left it (FILE with the overlay applied) to OUT"))
    p.add_argument("--append", metavar="CMDLINE", default=None,
                   help="kernel command line for a Linux kernel (default: the bundled "
                        "guest's, see docs/linux.md)")
    p.set_defaults(ram_default=ram_default)


# ---- progress ---------------------------------------------------------------------------------

def add_progress_options(p: argparse.ArgumentParser) -> None:
    """--progress / --no-progress (the rules are in aero.progress)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true",
                   help="report progress on stderr even with --json")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress report on stderr")


def progress_mode(args: argparse.Namespace) -> str:
    """off with --no-progress, or with --json unless --progress; auto otherwise."""
    if getattr(args, "no_progress", False):
        return "off"
    if getattr(args, "json", False) and not getattr(args, "progress", False):
        return "off"
    return "auto"


def progress(args: argparse.Namespace, description: str, total: int | None = None,
             unit: str = "", *, mode: str | None = None):  # noqa: ANN201
    """An :class:`aero.progress.Progress` on stderr following the command's options."""
    from aero.progress import Progress

    return Progress(description, total, unit=unit, mode=mode or progress_mode(args),
                    stream=sys.stderr)


def console(**kwargs: Any):  # noqa: ANN201 - a rich Console
    """A rich Console whose broken pipe is an ordinary BrokenPipeError (rich's own handler
    exits 1), so that ``aero.cli.main`` ends every command the same way (exit 141)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(**kwargs)


def write_stdout(data: bytes) -> None:
    """Guest output bytes to stdout, as they come (as Latin-1 text when stdout has no byte
    buffer, e.g. redirected in-process)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
    else:
        sys.stdout.write(data.decode("latin-1"))
    sys.stdout.flush()
