"""The ``aero`` command: the parser, the overview, and the commands that are not about
traces (run, conformance, fuzz, bench). Exit codes are in :mod:`aero.cli_common`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from aero.cli_common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, CliError

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
  aero fuzz cpu             differential fuzzing of the CPU against Unicorn
  aero bench                guest MIPS, side by side with Unicorn and QEMU

Every data command takes --json. `aero COMMAND --help` for details.
Exit codes: 0 success, 1 check failed / divergence / violation, 2 usage or input error;
`aero run` and `aero record` exit like qemu-system-i386 when the guest writes port 0xF4:
(value << 1) | 1; `aero replay --check` exits 125 when a trace cannot be evaluated.
"""


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a guest image until it exits or halts")
    p.add_argument("guest", nargs="?",
                   help="guest image (flat binary, ROM image or Multiboot ELF), or the name "
                        "of a bundled guest (see --list)")
    p.add_argument("--list", action="store_true", help="list the bundled guests")
    p.add_argument("--format", choices=("auto", "flat", "rom", "multiboot"), default="auto")
    p.add_argument("--load-addr", type=lambda s: int(s, 0), default=0x7C00,
                   help="physical load and entry address of a flat binary (default 0x7C00)")
    p.add_argument("--ram", type=lambda s: int(s, 0), default=32 << 20,
                   help="RAM size in bytes (default 32 MB)")
    p.add_argument("--ticks", type=int, default=1_000_000_000,
                   help="stop after this many ticks (default 1e9)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aero import guests
    from aero.loader import GuestError, load_guest
    from aero.machine import Machine, MachineConfig, StopReason

    if args.list:
        for name, spec in guests.GUESTS.items():
            print(f"{name:12s} {spec.fmt:10s} {spec.description}")
        return EXIT_OK
    if not args.guest:
        raise CliError("run needs a guest image or a bundled guest name (see --list)")
    path, fmt, load_addr = args.guest, args.format, args.load_addr
    if not Path(path).exists() and path in guests.GUESTS:
        try:
            image = guests.build(path)
        except guests.ToolchainError as exc:
            raise CliError(str(exc)) from exc
        path, fmt, load_addr = str(image.path), image.fmt, image.load_addr or load_addr
    machine = Machine(MachineConfig(ram_size=args.ram))
    try:
        load_guest(machine, path, fmt=fmt, load_addr=load_addr)
    except GuestError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from exc
    from aero.events import Channel, Kind

    out = bytearray()
    while True:
        stop = machine.run(args.ticks)
        machine.take_output()
        # The debug console and COM1, in the order the guest wrote them.
        ev = machine.take_events()
        shown = ev[(ev["kind"] == Kind.OUTPUT) &
                   ((ev["a"] == Channel.DEBUGCON) | (ev["a"] == Channel.COM1))]
        chunk = shown["b"].astype("u1").tobytes()
        out += chunk
        if not args.json and chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if stop not in (StopReason.OUTPUT, StopReason.EVENTS):
            break
    status = machine.exit_status
    if args.json:
        print(json.dumps({"stop": stop.name.lower(), "ticks": machine.ticks,
                          "exit_status": status, "output": out.decode("latin-1")}))
    if stop == StopReason.EXIT and status is not None:
        # The same exit status as qemu-system-i386 with isa-debug-exit: (value << 1) | 1.
        return status & 0xFF
    return EXIT_OK if stop in (StopReason.HALT, StopReason.TICKS) else EXIT_FAIL


def _add_conformance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="hardware conformance suites")
    csub = p.add_subparsers(dest="suite", required=True)
    s = csub.add_parser("sst", help="run a SingleStepTests directory")
    s.add_argument("directory")
    s.add_argument("--only", nargs="*", help="opcode files to run (e.g. 00 80.1 F7.6)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_conformance_sst)


def cmd_conformance_sst(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aero.conformance.sst import run_directory

    directory = Path(args.directory)
    if not directory.is_dir():
        raise CliError(f"{directory}: not a directory")
    show = not args.json and not args.no_progress and sys.stderr.isatty()
    try:
        if show:
            from rich.progress import Progress

            files = len(list(directory.glob("*.jsonl.gz")))
            with Progress(transient=True) as prog:
                task = prog.add_task("conformance", total=files)
                result = run_directory(directory, set(args.only) if args.only else None,
                                       progress=lambda _k: prog.advance(task))
        else:
            result = run_directory(directory, set(args.only) if args.only else None)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result))
    else:
        _print_sst_table(result)
    return EXIT_OK if result["failed"] == 0 else EXIT_FAIL


def _print_sst_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"SingleStepTests: {result['directory']}")
    for col in ("opcode", "total", "passed", "failed", "excluded"):
        table.add_column(col, justify="right" if col != "opcode" else "left")
    for key, r in result["opcodes"].items():
        style = "red" if r["failed"] else None
        table.add_row(key, str(r["total"]), str(r["passed"]), str(r["failed"]),
                      str(r["excluded"]), style=style)
    console.print(table)
    reasons: dict[str, int] = {}
    for e in result["exclusions"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for key, n in sorted(reasons.items()):
        console.print(f"excluded {n:5d}  [{key}] {result['exclusion_reasons'][key]}")
    for key, r in result["opcodes"].items():
        for f in r["failures"]:
            console.print(f"[red]FAIL[/red] {key} #{f['idx']} {f['name']} ({f['bytes']}): "
                          f"{f['registers']} {f['ram']}")
    console.print(f"total {result['total']}  passed {result['passed']}  "
                  f"failed {result['failed']}  excluded {result['excluded']}")


def _add_fuzz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="differential fuzzing")
    fsub = p.add_subparsers(dest="target", required=True)
    c = fsub.add_parser("cpu", help="instruction-level differential fuzzing of the CPU")
    c.add_argument("--against", choices=("unicorn",), default="unicorn")
    c.add_argument("--examples", type=int, default=1000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--mode", choices=("real", "pm32", "pm32-paging", "all"), default="all",
                   help="CPU mode of the generated code: real mode, flat 32-bit protected "
                        "mode, the same with paging on (CPL 0 and 3), or all three "
                        "(default)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--classes", default=None,
                   help="comma-separated instruction classes (default: every comparable "
                        "one): alu,data,stack,flow,string,system,invalid")
    c.set_defaults(func=cmd_fuzz_cpu)


def cmd_fuzz_cpu(args: argparse.Namespace) -> int:
    from aero.fuzz.campaign import run_cli

    return run_cli(args)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="guest MIPS with Unicorn and QEMU side by side")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="shorter workloads")
    p.add_argument("--no-reference", action="store_true",
                   help="measure aero only (skip Unicorn and QEMU)")
    p.add_argument("--no-trace", action="store_true",
                   help="skip the record/replay figures (overhead, replay speed, trace "
                        "size, seek time)")
    p.add_argument("--trace-only", action="store_true",
                   help="only the record/replay figures")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from aero.bench import run_cli

    return run_cli(args)


def _commands() -> Sequence[Callable[[argparse._SubParsersAction], None]]:
    from aero import cli_check, cli_diff, cli_export, cli_trace

    return (_add_run, *cli_trace.COMMANDS, *cli_diff.COMMANDS, *cli_check.COMMANDS,
            *cli_export.COMMANDS, _add_conformance, _add_fuzz, _add_bench)


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
