"""The ``aero`` command: the parser, the overview, and the commands that are not about
traces (run, conformance, fuzz, bench). Exit codes are in :mod:`aero.cli.common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from aero.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, CliError

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_OK", "CliError", "main"]

OVERVIEW = """\
aero — deterministic IA-32 PC emulation with record/replay

Commands:
  aero demo                 record and replay the bundled demo guest, show what happened
  aero run GUEST            run a guest image (flat, ROM or Multiboot ELF)
  aero record GUEST         run a guest and record it into a trace (--input, --interactive)
  aero replay [TRACE]       re-execute a trace, verifying every event and checkpoint
  aero info [TRACE]         a trace's metadata, counts, tick range and integrity
  aero pack [TRACE]         embed the guest image so the trace replays on another machine
  aero seek TRACE TICK      the machine state at a tick, through keyframes (--save)
  aero diff A B             the first tick and instruction where two traces differ
  aero bisect config|build|inputs
                            first difference under another configuration or build;
                            the minimal inputs that still make an oracle fail
  aero check [TRACE]        replay with invariant oracles and report violations
  aero export TRACE         Perfetto timeline or Tenet instruction trace
  aero conformance sst DIR  check the CPU against hardware-captured SingleStepTests
  aero fuzz cpu             differential fuzzing of the CPU against Unicorn and/or QEMU
  aero fuzz inputs GUEST    fuzz a guest's input schedules against an oracle
  aero difftest GUEST       run a guest in aero and QEMU, report the first difference
  aero bench                guest MIPS, side by side with Unicorn and QEMU

Every data command takes --json. `aero COMMAND --help` for details.
Exit codes: 0 success, 1 check failed / divergence / violation, 2 usage or input error;
`aero run` and `aero record` exit like qemu-system-i386 when the guest writes port 0xF4:
(value << 1) | 1; `aero replay --check` exits 125 when a trace cannot be evaluated.
"""


def _commands() -> Sequence[Callable[[argparse._SubParsersAction], None]]:
    from aero.cli import bench, check, diff, difftest, export, fuzz, run, trace

    return (*run.COMMANDS, *trace.COMMANDS, *diff.COMMANDS, *check.COMMANDS,
            *export.COMMANDS, *fuzz.COMMANDS, *difftest.COMMANDS, *bench.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aero", description=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="aero 0.1.0")
    sub = parser.add_subparsers(dest="command")
    for add in _commands():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        print(OVERVIEW, end="")
        return EXIT_OK
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"aero: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("aero: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
