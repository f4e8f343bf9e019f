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

from aero.cli.common import (
    EXIT_OK,
    STDIO,
    CliError,
    add_progress_options,
    add_trace_argument,
    input_file,
    mark_path,
    output_stream,
    progress,
    tick,
    trace_path,
)


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trace: a Perfetto timeline (JSON) or a Tenet "
                                      "instruction trace")
    add_trace_argument(p)
    p.add_argument("--format", choices=("perfetto", "tenet"), required=True,
                   help="perfetto: a Chrome trace-event JSON timeline; tenet: an instruction "
                        "trace of a tick range")
    mark_path(p.add_argument("-o", "--output", type=output_stream, metavar="OUT",
                             help="output file, '-' for stdout (the default)"))
    mark_path(p.add_argument("--violations", metavar="FILE", type=input_file,
                             help="perfetto: mark oracle violations (the JSON of `aero check "
                                  "--json`; '-' for stdin)"))
    p.add_argument("--screens", choices=("keyframes", "checkpoints", "none"), default=None,
                   help="perfetto: the VGA text screen as text where it changed, read from "
                        "the keyframes (the default; no execution) or taken at every "
                        "checkpoint by replaying the trace")
    p.add_argument("--from", dest="start", type=tick, default=None, metavar="TICK",
                   help="tenet: first tick of the range")
    p.add_argument("--to", dest="end", type=tick, default=None, metavar="TICK",
                   help="tenet: end tick of the range (exclusive)")
    p.add_argument("--force", action="store_true",
                   help="tenet: allow ranges over the limit of 5,000,000 ticks")
    add_progress_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout "
                                                       "(needs -o FILE)")
    p.set_defaults(func=cmd_export)


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == STDIO:
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

    to_file = args.output not in (None, STDIO)
    if args.json and not to_file:
        raise CliError("--json prints a summary on stdout: give the export a file with -o")
    if args.format == "tenet":
        if args.start is None or args.end is None:
            raise CliError("--format tenet needs a tick range: --from T1 --to T2")
        if args.violations:
            raise CliError("--violations applies to --format perfetto only")
        if args.screens:
            raise CliError("--screens applies to --format perfetto only")
    elif args.start is not None or args.end is not None:
        raise CliError("--from/--to apply to --format tenet only")
    if args.format == "tenet" and args.end <= args.start:
        raise CliError(f"--to ({args.end:,}) must be past --from ({args.start:,})")
    path = trace_path(args.trace)
    try:
        with progress(args, f"exporting ({args.format})"):
            summary = _export(args, path)
    except (TraceError, ReplayError, export.ExportError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(summary))
    elif to_file:
        print(f"aero: wrote {summary['events']:,} {args.format} "
              f"{'lines' if args.format == 'tenet' else 'events'} to {args.output}",
              file=sys.stderr)
    return EXIT_OK


def _violations(name: str) -> list:
    """The violations file, or stdin for ``-`` (read through a temporary file, as the
    library reads a path)."""
    from aero.traces import export

    if name != STDIO:
        return export.load_violations(Path(name))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="aero-violations-") as d:
        tmp = Path(d) / "stdin.json"
        tmp.write_text(sys.stdin.read())
        try:
            return export.load_violations(tmp)
        except export.ExportError as exc:
            raise CliError(str(exc).replace(str(tmp), "<stdin>")) from None


def _export(args: argparse.Namespace, path: Path) -> dict:
    from aero.traces import export
    from aero.traces.container import open_trace
    from aero.traces.replay import load_contents

    c = load_contents(open_trace(path))
    violations = _violations(args.violations) if args.violations else []
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
            count = export.write_perfetto(c, out, violations, args.screens or "keyframes")
        summary = {"file": args.output, "format": "perfetto", "events": count,
                   "violations": len(violations), "ticks": c.end_tick}
    return summary


COMMANDS = (add_export,)
