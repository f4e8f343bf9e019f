"""The ``aero`` command: the parser, the overview, and the top-level handler that turns
user-input errors into one line. Exit codes are in :mod:`aero.cli.common`.

What ``main`` prints on an error: ``aero: error: <one line>`` and exit 2 for a
:class:`CliError` (bad arguments included) and for the library's user-input errors (a
damaged trace, a guest that cannot be loaded, a bad script, an oracle that cannot be built,
an OS error on a named file); anything else is a bug and keeps its traceback. A closed
stdout ends the command quietly with 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from aero.cli.common import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    ArgumentParser,
    CliError,
    one_line,
)

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_OK", "EXIT_PIPE", "CliError", "build_parser",
           "main"]

OVERVIEW = """\
aero — deterministic IA-32 PC emulation with record/replay

Commands:
  aero demo                 record and replay the bundled demo guest, show what happened
  aero run GUEST            run a guest image (flat, ROM or Multiboot ELF)
  aero record GUEST         run a guest and record it into a trace (--input, --interactive)
  aero replay [TRACE]       re-execute a trace, verifying every event and checkpoint
  aero ls                   the recorded traces in the trace directory
  aero info [TRACE]         a trace's metadata, counts, tick range and integrity
  aero pack [TRACE]         embed the guest image so the trace replays on another machine
  aero seek [TRACE] TICK    the machine state at a tick, through keyframes (--save)
  aero diff A B             the first tick and instruction where two traces differ
  aero bisect config|build|inputs
                            first difference under another configuration or build;
                            the minimal inputs that still make an oracle fail
  aero check [TRACE]        replay with invariant oracles and report violations
  aero export [TRACE]       Perfetto timeline or Tenet instruction trace
  aero query [TRACE]        history of memory, a port or a register; the last write to a
                            byte before a tick (replay --gdb: debug a trace with gdb)
  aero conformance sst DIR  check the CPU against hardware-captured SingleStepTests
  aero fuzz cpu             differential fuzzing of the CPU against Unicorn and/or QEMU
  aero fuzz inputs GUEST    fuzz a guest's input schedules against an oracle
  aero difftest GUEST       run a guest in aero and QEMU, report the first difference
  aero bench                guest MIPS, side by side with Unicorn and QEMU
  aero completion SHELL     a completion script for bash, zsh or tcsh

TRACE is a file or 'latest' (the default: the latest recording). Every data command takes
--json. `aero COMMAND --help` for details.
Exit codes: 0 success, 1 check failed / divergence / violation, 2 usage or input error;
`aero run` and `aero record` exit like qemu-system-i386 when the guest writes port 0xF4:
(value << 1) | 1; `aero replay --check` exits 125 when a trace cannot be evaluated;
141 when stdout is closed early (e.g. `| head`).
"""


def _commands() -> Sequence[Callable[[argparse._SubParsersAction], None]]:
    from aero.cli import (
        bench,
        check,
        completion,
        diff,
        difftest,
        export,
        fuzz,
        ls,
        query,
        run,
        trace,
    )

    return (*run.COMMANDS, *trace.COMMANDS, *ls.COMMANDS, *diff.COMMANDS, *check.COMMANDS,
            *export.COMMANDS, *query.COMMANDS, *fuzz.COMMANDS, *difftest.COMMANDS,
            *bench.COMMANDS, *completion.COMMANDS)


def version_text() -> str:
    """``aero VERSION (C core STAMP)``, saying when the core is stale or not built."""
    from aero import __version__
    from aero._core_loader import build_stamps

    built, sources = build_stamps()
    if built is None:
        core = "C core not built"
    elif sources is not None and sources != built:
        core = f"C core {built}, stale: the sources are {sources}"
    else:
        core = f"C core {built}"
    return f"aero {__version__} ({core})"


class _Version(argparse.Action):
    """--version: computed when asked (it imports the core), then exit 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command's parser, all of class
    :class:`aero.cli.common.ArgumentParser` (one-line errors)."""
    parser = ArgumentParser(
        prog="aero", description=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version,
                        help="print aero's version and the C core's build stamp, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _commands():
        add(sub)
    return parser


def _user_error(exc: BaseException) -> str | None:
    """The one-line message of an error that comes from the user's input, or None for
    anything else (a bug, which keeps its traceback). The library's error classes are looked
    up only in modules already imported: an error cannot come from a module never loaded."""
    if isinstance(exc, CliError):
        return one_line(str(exc))
    for module, names in _USER_ERRORS:
        mod = sys.modules.get(module)
        for name in names:
            cls = getattr(mod, name, None) if mod is not None else None
            if isinstance(cls, type) and isinstance(exc, cls):
                return one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None and \
            not isinstance(exc, BrokenPipeError):
        return one_line(f"{exc.filename}: {exc.strerror or exc}")
    return None


# Error classes the library raises for bad user input (a file, a guest, a script, an oracle).
_USER_ERRORS = (
    ("aero.traces.container", ("TraceError",)),
    ("aero.traces.replay", ("ReplayError",)),
    ("aero.traces.script", ("ScriptError",)),
    ("aero.traces.diff", ("DiffError",)),
    ("aero.traces.export", ("ExportError",)),
    ("aero.launch", ("LaunchError",)),
    ("aero.loader", ("GuestError",)),
    ("aero.guests", ("ToolchainError",)),
    ("aero.traces.snapshot", ("SnapshotError",)),
    ("aero.oracles.api", ("OracleError",)),
    ("aero._core_loader", ("CoreError",)),
)


def _stdout_is_broken() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (POLLERR on the write end),
    so that a BrokenPipeError from elsewhere (a subprocess) is not taken for it."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _fd, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _stdout_is_devnull() -> bool:
    """Whether fd 1 is /dev/null (where rich points stdout when it meets a broken pipe)."""
    try:
        st, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv); returns the exit code."""
    devnull_before = _stdout_is_devnull()
    previous: list[tuple[int, object]] = []
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else EXIT_ERROR
        if not getattr(args, "func", None):
            print(OVERVIEW, end="")
            return EXIT_OK
        previous = _exit_on_sigterm()
        code = int(args.func(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("aero: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        # A rich Console outside aero.cli (the benchmark tables) meets a broken pipe by
        # pointing stdout at /dev/null and exiting 1: the same closed pipe, the same 141.
        if exc.code == 1 and not devnull_before and _stdout_is_devnull():
            return EXIT_PIPE
        raise
    except BrokenPipeError:
        if not _stdout_is_broken():
            raise
        _silence_stdout()
        return EXIT_PIPE
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"aero: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _exit_on_sigterm() -> list[tuple[int, object]]:
    """SIGTERM and SIGHUP unwind like Ctrl-C (SystemExit 128 + the signal), so that
    temporary files are removed and a recording is closed; returns the previous handlers
    (none off the main thread)."""
    def terminate(sig: int, _frame: object) -> None:
        raise SystemExit(128 + sig)

    saved: list[tuple[int, object]] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved.append((sig, signal.signal(sig, terminate)))
    except ValueError:  # not the main thread
        pass
    return saved


if __name__ == "__main__":
    sys.exit(main())
