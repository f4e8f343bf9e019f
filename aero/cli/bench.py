"""``aero bench``: guest MIPS beside Unicorn and QEMU, and the record/replay figures; saved
runs and comparisons with them (:mod:`aero.bench.history`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from aero.cli.common import CliError, add_progress_options, progress


def _repetitions(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError("repetitions must be between 1 and 100")
    return n


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="guest MIPS with Unicorn and QEMU side by side")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quick", action="store_true",
                   help="short workloads and one repetition (a smoke test, not figures)")
    p.add_argument("--repetitions", type=_repetitions, default=None,
                   help="interleaved repetitions of every measurement (default 5; 1 with "
                        "--quick)")
    p.add_argument("--no-reference", action="store_true",
                   help="measure aero only (skip Unicorn and QEMU)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-trace", action="store_true",
                   help="skip the record/replay figures (overhead, replay speed, trace "
                        "size, seek time)")
    g.add_argument("--trace-only", action="store_true",
                   help="only the record/replay figures")
    g.add_argument("--linux", action="store_true",
                   help="only the Linux boot figures: the bundled guest to its /init marker "
                        "in aero and in qemu-system-i386, HLT time, trace sizes, replay speed "
                        "(several minutes; not part of the default run)")
    p.add_argument("--boot", action="store_true",
                   help="also time booting a PC (SeaBIOS to 'No bootable device.', and BIOS "
                        "to the Linux shell from the project-built disk) in aero and in QEMU "
                        "(opt-in: about a minute)")
    p.add_argument("--save", nargs="?", const="", default=None, metavar="FILE",
                   help="save the report with the commit and the machine description "
                        "(default file: benchmarks/results/DATE-COMMIT.json)")
    p.add_argument("--compare", metavar="FILE",
                   help="print today's figures next to a saved run, with the ratio")
    add_progress_options(p)
    p.set_defaults(func=cmd_bench)


def _print_comparison(rows: list, saved: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"today next to {saved.get('commit') or 'a saved run'}"
    if saved.get("date"):
        title += f" ({saved['date']})"
    t = Table(title=title)
    for col in ("figure", "saved", "today", "today/saved"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for r in rows:
        style = None if r.better is None else ("green" if r.better else "red")
        t.add_row(r.name, "-" if r.saved is None else f"{r.saved:,.2f}",
                  "-" if r.today is None else f"{r.today:,.2f}",
                  "-" if r.ratio is None else f"{r.ratio:.3f}", style=style)
    Console().print(t)


def cmd_bench(args: argparse.Namespace) -> int:
    """``aero bench``; returns the exit code."""
    from aero.bench import history, mips, recordreplay
    from aero.guests import ToolchainError

    saved = None
    if args.compare:
        try:
            saved = history.load(Path(args.compare))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    settings = mips.QUICK if args.quick else mips.FULL
    if args.repetitions:
        settings = dataclasses.replace(settings, repetitions=args.repetitions)
    if getattr(args, "linux", False):
        return _bench_linux(args)
    only_trace = getattr(args, "trace_only", False)
    with_trace = not getattr(args, "no_trace", False)
    report: dict[str, object] = {}
    try:
        # Each stage's message becomes the progress line's description (aero.progress: a
        # bar on a terminal, a line every few seconds otherwise).
        with progress(args, "bench") as prog:
            log: Callable[[str], None] = prog.note
            if not only_trace:
                report = mips.run(settings, reference=not args.no_reference, log=log)
            if with_trace or only_trace:
                report["record_replay"] = recordreplay.run(
                    100_000_000 if args.quick else 1_000_000_000, settings.repetitions, log)
            if getattr(args, "boot", False):
                from aero.bench import boot

                report["boot"] = boot.run(1 if args.quick else settings.repetitions,
                                          reference=not args.no_reference, log=log)
    except ToolchainError as exc:
        raise CliError(str(exc)) from exc
    if args.save is not None:
        path = history.save(report, Path(args.save) if args.save else None)
        print(f"aero bench: saved to {path}", file=sys.stderr)
    if args.json:
        out = dict(report)
        if saved is not None:
            out["comparison"] = [
                {"figure": r.name, "saved": r.saved, "today": r.today, "ratio": r.ratio,
                 "better": r.better} for r in history.compare(saved["report"], report)]
        print(json.dumps(out))
    else:
        if not only_trace:
            mips.print_table(report)
        if "record_replay" in report:
            recordreplay.print_report(report["record_replay"])  # type: ignore[arg-type]
        if "boot" in report:
            from aero.bench import boot

            boot.print_report(report["boot"])  # type: ignore[arg-type]
        if saved is not None:
            _print_comparison(history.compare(saved["report"], report), saved)
    return 0


def _bench_linux(args: argparse.Namespace) -> int:
    """``aero bench --linux``: the figures of :mod:`aero.bench.linuxboot`."""
    from aero.bench import history, linuxboot
    from aero.launch import LaunchError

    try:
        with progress(args, "bench") as prog:
            report: dict[str, object] = {"linux_boot": linuxboot.run(prog.note)}
    except LaunchError as exc:
        raise CliError(str(exc)) from None
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    if args.save is not None:
        path = history.save(report, Path(args.save) if args.save else None)
        print(f"aero bench: saved to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        linuxboot.print_report(report["linux_boot"])  # type: ignore[arg-type]
    return 0


COMMANDS = (_add_bench,)
