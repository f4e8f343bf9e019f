"""``aero run``: run a guest image without recording it."""

from __future__ import annotations

import argparse
import json

from aero.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_guest_options,
    integer,
    mark_path,
    write_stdout,
)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a guest image until it exits or halts")
    mark_path(p.add_argument(
        "guest", nargs="?", help="guest image (flat binary, ROM image or Multiboot ELF), or "
                                 "the name of a bundled guest (see --list)"))
    p.add_argument("--list", action="store_true", help="list the bundled guests")
    add_guest_options(p)
    p.add_argument("--ticks", type=integer("tick count", lo=1), default=1_000_000_000,
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
    if Path(path).is_dir():
        raise CliError(f"{path}: is a directory, not a guest image")
    machine = Machine(MachineConfig(ram_size=args.ram))
    try:
        load_guest(machine, path, fmt=fmt, load_addr=load_addr)
    except (GuestError, ValueError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
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
            write_stdout(chunk)
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


COMMANDS = (_add_run,)
