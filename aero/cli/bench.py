"""``aero bench``: guest MIPS beside Unicorn and QEMU, and the record/replay figures."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from aero.cli.common import CliError, add_progress_options, progress


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="guest MIPS with Unicorn and QEMU side by side")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quick", action="store_true", help="shorter workloads")
    p.add_argument("--no-reference", action="store_true",
                   help="measure aero only (skip Unicorn and QEMU)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-trace", action="store_true",
                   help="skip the record/replay figures (overhead, replay speed, trace "
                        "size, seek time)")
    g.add_argument("--trace-only", action="store_true",
                   help="only the record/replay figures")
    add_progress_options(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """``aero bench [--json] [--quick] [--no-reference]``; returns the exit code."""
    from aero.bench import mips, recordreplay
    from aero.guests import ToolchainError

    settings = mips.QUICK if args.quick else mips.FULL
    only_trace = getattr(args, "trace_only", False)
    with_trace = not getattr(args, "no_trace", False)
    report: dict[str, object] = {}
    try:
        # Each stage's message becomes the progress line's description.
        with progress(args, "bench") as prog:
            log: Callable[[str], None] = prog.note
            if not only_trace:
                report = mips.run(settings, reference=not args.no_reference, log=log)
            if with_trace or only_trace:
                report["record_replay"] = recordreplay.run(
                    100_000_000 if args.quick else 1_000_000_000, settings.repetitions, log)
    except ToolchainError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(report))
    else:
        if not only_trace:
            mips.print_table(report)
        if "record_replay" in report:
            recordreplay.print_report(report["record_replay"])  # type: ignore[arg-type]
    return 0


COMMANDS = (_add_bench,)
