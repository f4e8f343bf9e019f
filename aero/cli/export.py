"""``aero export``: a trace as a Perfetto timeline or a Tenet instruction trace
(:mod:`aero.traces.export`).

Exit codes follow aero.cli: 0 success, 2 usage or input error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from aero.cli.common import EXIT_OK, CliError, working
from aero.cli.trace import _int, _trace_arg


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trace: a Perfetto timeline (JSON) or a Tenet "
                                      "instruction trace")
    p.add_argument("trace", help="trace file ('latest' for the latest recording)")
    p.add_argument("--format", choices=("perfetto", "tenet"), required=True)
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--violations", metavar="FILE",
                   help="perfetto: mark oracle violations (the JSON of `aero check --json`)")
    p.add_argument("--from", dest="start", type=_int, default=None,
                   help="tenet: first tick of the range")
    p.add_argument("--to", dest="end", type=_int, default=None,
                   help="tenet: end tick of the range (exclusive)")
    p.add_argument("--force", action="store_true",
                   help="tenet: allow ranges over the limit of 5,000,000 ticks")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout "
                                                       "(needs -o)")
    p.set_defaults(func=cmd_export)


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    with f:
        yield f


def cmd_export(args: argparse.Namespace) -> int:
    from aero.traces import export
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    if args.json and not args.output:
        raise CliError("--json prints a summary on stdout: give the export a file with -o")
    if args.format == "tenet":
        if args.start is None or args.end is None:
            raise CliError("--format tenet needs a tick range: --from T1 --to T2")
        if args.violations:
            raise CliError("--violations applies to --format perfetto only")
    elif args.start is not None or args.end is not None:
        raise CliError("--from/--to apply to --format tenet only")
    path = _trace_arg(None if args.trace == "latest" else args.trace)
    spinner = working(args, f"exporting ({args.format})") if args.output else \
        contextlib.nullcontext()
    try:
        with spinner:
            summary = _export(args, path)
    except (TraceError, ReplayError, export.ExportError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(summary))
    elif args.output:
        print(f"aero: wrote {summary['events']:,} {args.format} "
              f"{'lines' if args.format == 'tenet' else 'events'} to {args.output}",
              file=sys.stderr)
    return EXIT_OK


def _export(args: argparse.Namespace, path: Path) -> dict:
    from aero.traces import export
    from aero.traces.container import open_trace
    from aero.traces.replay import load_contents

    c = load_contents(open_trace(path))
    violations = export.load_violations(Path(args.violations)) if args.violations else []
    if args.format == "tenet":
        # Check the range before creating the output file.
        lines = iter(export.tenet_lines(c, args.start, args.end, force=args.force))
        first = next(lines, None)
        count = 0
        with _open_output(args.output) as out:
            for line in ([first] if first is not None else []):
                out.write(line + "\n")
                count += 1
            for line in lines:
                out.write(line + "\n")
                count += 1
        summary = {"file": args.output, "format": "tenet", "from": args.start,
                   "to": args.end, "instructions": count, "events": count}
    else:
        with _open_output(args.output) as out:
            count = export.write_perfetto(c, out, violations)
        summary = {"file": args.output, "format": "perfetto", "events": count,
                   "violations": len(violations), "ticks": c.end_tick}
    return summary


COMMANDS = (add_export,)
