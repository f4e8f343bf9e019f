"""``aero run``: run a guest image without recording it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
        "guest", nargs="?",
        help="guest image (flat binary, ROM image, Multiboot ELF or Linux bzImage), or the "
             "name of a bundled guest (see --list)"))
    p.add_argument("--list", action="store_true", help="list the bundled guests")
    add_guest_options(p)
    p.add_argument("--ticks", type=integer("tick count", lo=1), default=None,
                   help="stop after this many ticks (default 1e9; 5e9 for a Linux kernel)")
    p.add_argument("--until", metavar="TEXT", default=None,
                   help="stop once the guest's output (COM1 or the debug console) shows TEXT")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--screen", action="store_true",
                   help="show the VGA text screen at the end (with --json: a 'screen' list)")
    p.set_defaults(func=cmd_run)


def start_guest(args: argparse.Namespace):  # noqa: ANN201 - (resolved guest, Machine)
    """Resolve and load the guest ``args`` name: (resolved guest, machine). Raises CliError
    for anything that cannot be found or loaded."""
    from aero.launch import LaunchError, resolve, start_machine
    from aero.linuxguest import DEFAULT_CMDLINE
    from aero.machine import MachineConfig

    if Path(args.guest).is_dir():
        raise CliError(f"{args.guest}: is a directory, not a guest image")
    try:
        limit_ram = args.ram if args.ram is not None else args.ram_default
        disk, writable = disk_spec(getattr(args, "disk", None))
        save = getattr(args, "disk_save", None)
        if save is not None:
            if disk is None or not writable:
                raise CliError("--disk-save keeps what the guest wrote to a --disk FILE,rw; "
                               "there is no writable disk")
            if Path(save).exists() and Path(disk).exists() and \
                    Path(save).resolve() == Path(disk).resolve():
                raise CliError(f"{save}: --disk-save must not be the disk image itself (the "
                               f"image is never written)")
        r = resolve(args.guest, args.format, args.load_addr, args.initrd, ram_size=limit_ram,
                    disk=disk, disk_writable=writable)
        cmdline = args.append
        if cmdline is None:
            cmdline = (r.cmdline or DEFAULT_CMDLINE) if r.ref.fmt == "linux" else ""
        elif r.ref.fmt != "linux":
            raise CliError(f"{args.guest}: --append is for Linux kernels, and this is a "
                           f"{r.ref.fmt} image")
        ram = args.ram if args.ram is not None else (r.ram_size or args.ram_default)
        config = MachineConfig(ram_size=ram, cmdline=cmdline)
        return r, start_machine(config, r.ref, r.data, r.images)
    except (LaunchError, ValueError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{args.guest}: {exc.strerror}") from None


def disk_spec(spec: str | None) -> tuple[str | None, bool]:
    """``--disk FILE`` (read-only) or ``--disk FILE,rw`` (writes to a copy-on-write overlay):
    (FILE, writable)."""
    if spec is not None and spec.endswith(",rw"):
        return spec[:-3], True
    return spec, False


def save_disk(args: argparse.Namespace, machine) -> None:  # noqa: ANN001 - a Machine
    """With ``--disk-save OUT``: the disk as the guest left it (the image with the overlay
    applied) into OUT, a new private file written whole (through a temporary file)."""
    import os
    import tempfile

    out = getattr(args, "disk_save", None)
    if out is None:
        return
    data = machine.disk_bytes()
    target = Path(out)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".",
                               prefix=".disk-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CliError(f"{out}: {exc.strerror}") from None


def unmodelled_ata_commands(machine) -> list[int]:  # noqa: ANN001 - a Machine
    """ATA opcodes the guest issued that the disk model answered with ABRT because it does
    not implement them (each once; the bitmap is part of the device state)."""
    from aero import devstate

    ide = devstate.decode(machine.devices_state_bytes()).get("ide")
    if not ide:
        return []
    bits = ide["unmodelled"]
    assert isinstance(bits, list)
    return [op for op in range(256) if bits[op >> 3] >> (op & 7) & 1]


def cmd_run(args: argparse.Namespace) -> int:
    from aero import guests
    from aero.machine import StopReason

    if args.list:
        for name, spec in guests.GUESTS.items():
            print(f"{name:12s} {spec.fmt:10s} {spec.description}")
        print(f"{'linux':12s} {'linux':10s} Debian 12's i386 kernel with a busybox initramfs "
              f"(fetched with apt on first use; docs/linux.md)")
        return EXIT_OK
    if not args.guest:
        raise CliError("run needs a guest image or a bundled guest name (see --list)")
    r, machine = start_guest(args)
    from aero.events import Channel, Kind

    ticks = args.ticks
    if ticks is None:
        ticks = 5_000_000_000 if r.ref.fmt == "linux" else 1_000_000_000
    until = args.until.encode() if args.until else None
    out = bytearray()
    matched = False
    while True:
        # With --until, slices short enough that the run stops soon after the text shows.
        stop = machine.run(min(ticks, machine.ticks + 20_000_000) if until else ticks)
        machine.take_output()
        # The debug console and COM1, in the order the guest wrote them.
        ev = machine.take_events()
        shown = ev[(ev["kind"] == Kind.OUTPUT) &
                   ((ev["a"] == Channel.DEBUGCON) | (ev["a"] == Channel.COM1))]
        chunk = shown["b"].astype("u1").tobytes()
        out += chunk
        if not args.json and chunk:
            write_stdout(chunk)
        if until is not None:
            if until in out:
                matched = True
                break
            if stop == StopReason.TICKS and machine.ticks < ticks:
                continue
        if stop not in (StopReason.OUTPUT, StopReason.EVENTS):
            break
    status = machine.exit_status
    screen = machine.screen() if args.screen else None
    if screen is not None and not args.json:
        write_stdout(("\n" + "\n".join(screen).rstrip("\n") + "\n").encode())
    save_disk(args, machine)
    for op in unmodelled_ata_commands(machine):
        print(f"aero: note: the guest issued ATA command {op:02X}h, which is not modelled "
              f"(the drive answered it with ABRT)", file=sys.stderr)
    if args.json:
        summary = {"stop": "until" if matched else stop.name.lower(), "ticks": machine.ticks,
                   "exit_status": status, "output": out.decode("latin-1")}
        if screen is not None:
            summary["screen"] = screen
        print(json.dumps(summary))
    if matched:
        return EXIT_OK
    if stop == StopReason.EXIT and status is not None:
        # The same exit status as qemu-system-i386 with isa-debug-exit: (value << 1) | 1.
        return status & 0xFF
    return EXIT_OK if stop in (StopReason.HALT, StopReason.TICKS) else EXIT_FAIL


COMMANDS = (_add_run,)
